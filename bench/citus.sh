#!/usr/bin/env bash
# envault on Citus: bench/citus.sh
#
# Builds (or reuses) Citus (scripts/citus.sh), starts a coordinator and two
# workers on this machine, envault preloaded on each with the same master
# key and pepper, makes the key tables reference tables (envault.scale_out)
# and measures, side by side in one run:
#   bulk    SELECT sum(length(env_decrypt_text(v))) over every row of a table
#           distributed by tenant (8 shards on 2 workers), against
#           sum(length(p)) of the same rows' plaintext column (no envault),
#           and both again on a copy of the table on one node;
#   online  pgbench -M prepared, 8 clients, one row per statement through
#           the coordinator: SELECT env_decrypt_text(v) against SELECT p of
#           a random row of a random tenant; and the decryption again with
#           the workers' access logs off (envault.access_log), for their
#           share of the cost;
#   chains  INSERT of one row per statement (pgbench, 8 clients, 30
#           tenants) into a distributed table chained by envault
#           (enable_audit_chain) against the same table unchained, and an
#           INSERT ... SELECT of BENCH_CHAIN_ROWS rows into each.
# fsync stays on: every decryption on a worker is committed to its access
# log, every chained insert to the worker's WAL, and that cost is part of
# what is measured.
# Timings are medians of BENCH_REPS rounds (rounds alternate which query goes
# first); ratios are of medians.  Never asserts a timing.  The output is also
# saved to bench/out/citus-<UTC time>.txt.  See docs/scale-out.md.
#
# Environment (all optional):
#   BENCH_CITUS_ROWS=300000  rows of the distributed table (3 tenants)
#   BENCH_REPS=7             timed rounds per case
#   BENCH_PGBENCH_TX=2000    transactions per pgbench client
#   BENCH_CHAIN_ROWS=30000   rows of each bulk INSERT ... SELECT (chains)
#   BENCH_PORT=54395         coordinator port (workers: the next two)
#   BENCH_SKIP_BUILD=1       use the installed envault as it is
#
# Run as root (the clusters run as the postgres user) or as a sudoer.

source "$(dirname "$0")/../scripts/lib.sh"
source "$ENVAULT_ROOT/scripts/citus.sh"

rows=${BENCH_CITUS_ROWS:-300000}
reps=${BENCH_REPS:-7}
pgbench_tx=${BENCH_PGBENCH_TX:-2000}
chain_rows=${BENCH_CHAIN_ROWS:-30000}
port=${BENCH_PORT:-54395}
for n in "$rows" "$reps" "$pgbench_tx" "$chain_rows" "$port"; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "bench/citus.sh: not a positive integer: $n" >&2; exit 2; }
done

install_deps
[ -n "${BENCH_SKIP_BUILD:-}" ] || build_and_install
citus_ensure

dir=$(pg_workdir bench-citus)
ports=("$port" $((port + 1)) $((port + 2)))
stop_all() {
	local p
	for p in "${ports[@]}"; do cluster_stop "$dir/n$p"; done
	rm -rf "$dir"
}
trap stop_all EXIT

say "starting a coordinator and two workers on ports ${ports[*]} in $dir"
new_key_file "$dir/master.key"
new_key_file "$dir/pepper.key"
for p in "${ports[@]}"; do
	as_pg mkdir -p "$dir/n$p"
	as_pg "$PGBIN/initdb" -D "$dir/n$p/data" -A trust -U postgres --no-sync >/dev/null
	as_pg tee -a "$dir/n$p/data/postgresql.conf" >/dev/null <<-EOF
		port = $p
		listen_addresses = ''
		unix_socket_directories = '$dir'
		shared_preload_libraries = 'citus, envault'
		envault.master_key_file = '$dir/master.key'
		envault.pepper_file = '$dir/pepper.key'
		citus.node_conninfo = 'sslmode=disable'
		citus.propagate_set_commands = 'local'
		max_prepared_transactions = 100
		shared_buffers = '512MB'
		jit = off
		autovacuum = off
	EOF
	as_pg "$PGBIN/pg_ctl" -D "$dir/n$p/data" -l "$dir/n$p.log" -w start >/dev/null
	as_pg "$PGBIN/psql" -h "$dir" -p "$p" -d postgres -qX -c "CREATE EXTENSION citus"
done

psql_c() {
	as_pg "$PGBIN/psql" -h "$dir" -p "$port" -d postgres -X -q -v ON_ERROR_STOP=1 "$@"
}
psql_c <<-EOF
	SELECT citus_set_coordinator_host('$dir', $port) \g /dev/null
	SELECT citus_add_node('$dir', ${ports[1]}) \g /dev/null
	SELECT citus_add_node('$dir', ${ports[2]}) \g /dev/null
	CREATE EXTENSION envault;
	SELECT envault.create_tenant(t), envault.create_data_key(t, 'bench')
	  FROM unnest(ARRAY['acme', 'globex', 'initech']) t \g /dev/null
	SELECT envault.scale_out() \g /dev/null
	CREATE TABLE bench_dist (tenant text NOT NULL, id int NOT NULL, v bytea NOT NULL,
	                         p text NOT NULL, PRIMARY KEY (tenant, id));
	SELECT create_distributed_table('bench_dist', 'tenant', shard_count => 8) \g /dev/null
	INSERT INTO bench_dist
	SELECT t, g, envault.env_encrypt(t, 'bench', x, NULL), x
	  FROM generate_series(1, $rows) g,
	       LATERAL (SELECT (ARRAY['acme', 'globex', 'initech'])[g % 3 + 1],
	                       md5(g::text) || md5((g + 1)::text)) s(t, x);
	CREATE TABLE bench_one AS SELECT * FROM bench_dist;
	ALTER TABLE bench_one ADD PRIMARY KEY (tenant, id);
	VACUUM ANALYZE bench_one;
	SELECT run_command_on_workers('VACUUM ANALYZE') \g /dev/null
	-- the same table chained and not, each with one unique index
	CREATE TABLE chain_dist (tenant text NOT NULL, id bigserial, what text NOT NULL);
	SELECT create_distributed_table('chain_dist', 'tenant', shard_count => 8) \g /dev/null
	SELECT envault.enable_audit_chain('chain_dist', 'tenant') \g /dev/null
	CREATE TABLE plain_dist (tenant text NOT NULL, id bigserial, what text NOT NULL,
	                         UNIQUE (tenant, id));
	SELECT create_distributed_table('plain_dist', 'tenant', shard_count => 8) \g /dev/null
	CREATE TABLE timings (name text, ms float8);
EOF

# one timed statement: its time in ms (psql's \timing), stored under $1
timed() {
	local name=$1 sql=$2 ms
	ms=$(psql_c -c '\timing on' -c "$sql" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)
	psql_c -c "INSERT INTO timings VALUES ('$name', $ms)"
}

say "bulk: $rows rows, $reps rounds"
declare -A q=(
	["distributed, plain"]="SELECT sum(length(p)) FROM bench_dist"
	["distributed, env_decrypt_text"]="SELECT sum(length(envault.env_decrypt_text(v))) FROM bench_dist"
	["one node, plain"]="SELECT sum(length(p)) FROM bench_one"
	["one node, env_decrypt_text"]="SELECT sum(length(envault.env_decrypt_text(v))) FROM bench_one"
)
order=("distributed, plain" "distributed, env_decrypt_text" "one node, plain" "one node, env_decrypt_text")
# a warm-up round, untimed
for name in "${order[@]}"; do psql_c -c "${q[$name]}" >/dev/null; done
for ((r = 1; r <= reps; r++)); do
	if ((r % 2)); then seq=(0 1 2 3); else seq=(1 0 3 2); fi
	for i in "${seq[@]}"; do timed "${order[$i]}" "${q[${order[$i]}]}"; done
done

say "online: pgbench -M prepared -c 8 -j 2 -t $pgbench_tx, $reps rounds"
scripts="$dir/pgbench"
as_pg mkdir -p "$scripts"
as_pg tee "$scripts/plain.sql" >/dev/null <<-EOF
	\set t random(0, 2)
	\set id random(1, $rows / 3) * 3 + :t
	SELECT p FROM bench_dist WHERE tenant = (ARRAY['acme', 'globex', 'initech'])[:t + 1] AND id = :id;
EOF
as_pg tee "$scripts/decrypt.sql" >/dev/null <<-EOF
	\set t random(0, 2)
	\set id random(1, $rows / 3) * 3 + :t
	SELECT envault.env_decrypt_text(v) FROM bench_dist WHERE tenant = (ARRAY['acme', 'globex', 'initech'])[:t + 1] AND id = :id;
EOF
for t in chain plain; do
	as_pg tee "$scripts/insert, $t.sql" >/dev/null <<-EOF
		\set t random(1, 30)
		INSERT INTO ${t}_dist (tenant, what) VALUES ('tenant' || :t, 'event of client ' || :client_id);
	EOF
done
pgb() {				# pgb SCRIPT [warm-up: not recorded]
	local tps
	tps=$(as_pg "$PGBIN/pgbench" -n -M prepared -c 8 -j 2 -t "$pgbench_tx" -h "$dir" -p "$port" \
		-f "$scripts/$1.sql" postgres 2>&1 | sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p')
	[ -n "$tps" ] || { echo "bench/citus.sh: pgbench $1 failed" >&2; exit 1; }
	# time of the run, without connections: transactions / tps
	[ -z "${2:-}" ] || return 0
	psql_c -c "INSERT INTO timings VALUES ('pgbench 8 clients, $1', $((8 * pgbench_tx)) / $tps * 1000)"
}
# the workers' access logs, on (the default) or off, for the case that
# shows their share
worker_log() {
	local p
	for p in "${ports[@]:1}"; do
		as_pg "$PGBIN/psql" -h "$dir" -p "$p" -d postgres -X -q -v ON_ERROR_STOP=1 \
			-c "ALTER SYSTEM SET envault.access_log = $1" -c "SELECT pg_reload_conf()" >/dev/null
	done
}
as_pg cp "$scripts/decrypt.sql" "$scripts/decrypt, access log off on the workers.sql"
pgb plain warm-up
for ((r = 1; r <= reps; r++)); do
	if ((r % 2)); then pgb plain; pgb decrypt; else pgb decrypt; pgb plain; fi
	worker_log off
	pgb "decrypt, access log off on the workers"
	worker_log on
done

say "chains: pgbench inserts and INSERT ... SELECT of $chain_rows rows, $reps rounds"
bulk_insert() {
	timed "INSERT ... SELECT, $1" \
		"INSERT INTO $1_dist (tenant, what) SELECT 'tenant' || (g % 30 + 1), 'bulk row ' || g FROM generate_series(1, $chain_rows) g"
}
pgb "insert, chain" warm-up
pgb "insert, plain" warm-up
for ((r = 1; r <= reps; r++)); do
	if ((r % 2)); then
		pgb "insert, plain"; pgb "insert, chain"; bulk_insert plain; bulk_insert chain
	else
		pgb "insert, chain"; pgb "insert, plain"; bulk_insert chain; bulk_insert plain
	fi
done
psql_c -At -c "SELECT 'chains verified: ' || count(*) FILTER (WHERE ok) || ' of ' || count(*) || ' tenants, '
	|| sum(rows_checked) || ' rows' FROM envault.verify_chain('chain_dist')" >"$dir/verified"

mkdir -p "$ENVAULT_ROOT/bench/out"
out="$ENVAULT_ROOT/bench/out/citus-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
	echo "== Machine"
	echo "nproc:      $(nproc)"
	echo "CPU:        $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "PostgreSQL: $("$PGBIN/postgres" --version); Citus $(psql_c -Atc "SELECT extversion FROM pg_extension WHERE extname = 'citus'")"
	rev=$(git -C "$ENVAULT_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
	git -C "$ENVAULT_ROOT" diff --quiet HEAD -- src 2>/dev/null || rev="$rev, src/ modified"
	echo "envault:    commit $rev"
	echo "command:    bench/citus.sh (rows=$rows reps=$reps pgbench_tx=$pgbench_tx chain_rows=$chain_rows)"
	psql_c -P footer=off <<-'EOF'
		\echo '== Timings (median of the rounds)'
		SELECT name AS "case", round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS "ms (median)",
		       count(*) AS rounds
		  FROM timings GROUP BY name ORDER BY name;
		\echo '== Ratios (of medians)'
		WITH m AS (SELECT name, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms FROM timings GROUP BY name)
		SELECT r.what AS ratio, round((a.ms / b.ms)::numeric, 2) AS value
		  FROM (VALUES
		        ('distributed: env_decrypt_text / plain', 'distributed, env_decrypt_text', 'distributed, plain'),
		        ('one node: env_decrypt_text / plain', 'one node, env_decrypt_text', 'one node, plain'),
		        ('decrypt: distributed / one node', 'distributed, env_decrypt_text', 'one node, env_decrypt_text'),
		        ('pgbench: decrypt / plain time (1/throughput)', 'pgbench 8 clients, decrypt', 'pgbench 8 clients, plain'),
		        ('pgbench: decrypt, access log off on the workers / plain time',
		         'pgbench 8 clients, decrypt, access log off on the workers', 'pgbench 8 clients, plain'),
		        ('pgbench: chained insert / plain insert time', 'pgbench 8 clients, insert, chain',
		         'pgbench 8 clients, insert, plain'),
		        ('INSERT ... SELECT: chained / plain', 'INSERT ... SELECT, chain',
		         'INSERT ... SELECT, plain')) r(what, x, y)
		  JOIN m a ON a.name = r.x JOIN m b ON b.name = r.y;
	EOF
	psql_c -At -c "WITH m AS (SELECT name, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms FROM timings GROUP BY name)
		SELECT 'decryption cost per row: distributed ' || round((((SELECT ms FROM m WHERE name = 'distributed, env_decrypt_text')
		      - (SELECT ms FROM m WHERE name = 'distributed, plain')) * 1000 / $rows)::numeric, 3) || ' us, one node '
		   || round((((SELECT ms FROM m WHERE name = 'one node, env_decrypt_text')
		      - (SELECT ms FROM m WHERE name = 'one node, plain')) * 1000 / $rows)::numeric, 3) || ' us'"
	cat "$dir/verified"
} | tee "$out"
say "saved to ${out#"$ENVAULT_ROOT"/}"
