#!/usr/bin/env bash
# envault benchmarks: bench/run.sh
#
# Installs what is needed, builds and installs envault, starts a throwaway
# PostgreSQL 15 cluster (envault preloaded, fresh master key and pepper
# files, pgcrypto), runs bench/harness.sql, each topic file bench/<topic>.sql
# and bench/report.sql in ONE psql session, prints the tables, then stops and
# removes the cluster.  Benchmarks never assert timings: they print medians
# and ratios measured side by side in the same run.  See docs/benchmarks.md.
#
# Run as root (the cluster runs as the postgres user) or as a sudoer.
#
# Environment (all optional):
#   BENCH_ROWS=200000       rows of 64-byte values (topic encrypt)
#   BENCH_VALUE_BYTES=67108864  bytes of values of each size (topic values;
#                           64-byte values get a sixteenth)
#   BENCH_LARGE_ROWS=1000000  rows of the tables of topics tenancy (RLS) and
#                           lifecycle (reencrypt_column)
#   BENCH_TOKENS=20000      API tokens per verify_token pass (topic tenancy)
#   BENCH_DATA_KEYS=1000    data keys of the tenant whose key is rotated
#                           (topic lifecycle)
#   BENCH_REPS=7            timed rounds per case (median reported)
#   BENCH_SLOW_REPS=3       timed rounds for the slow cases (pgp_sym_*,
#                           verify_token on first use, reencrypt_column)
#   BENCH_AUDIT_ROWS=100000 rows per chained INSERT (topic audit)
#   BENCH_TREE_ROWS=1000000 rows of the chain whose Merkle tree is proved
#                           (topic tree)
#   BENCH_PGBENCH_TX=2500   transactions per pgbench client (topic pgbench;
#                           the single-client run does 8 times as many)
#   BENCH_ACCESSLOG_TX=1000 transactions per client at 8 clients (topic
#                           accesslog; at 64 clients an eighth of that)
#   BENCH_TOPICS="encrypt values tenancy lifecycle audit tree pgbench accesslog"
#                           topics to run: bench/<topic>.sql files in order,
#                           then pgbench (bench/pgbench.sh) and accesslog
#                           (bench/accesslog.sh, with fsync on)
#   BENCH_PORT=54392        port of the throwaway cluster
#   BENCH_SHARED_BUFFERS=1GB  large enough that the table stays in shared buffers
#   BENCH_SKIP_BUILD=1      skip build_and_install (for iterating on bench/;
#                           the installed envault is used as it is)
# The output is also saved to bench/out/<UTC time>.txt (git-ignored).

source "$(dirname "$0")/../scripts/lib.sh"

rows=${BENCH_ROWS:-200000}
large_rows=${BENCH_LARGE_ROWS:-1000000}
tokens=${BENCH_TOKENS:-20000}
data_keys=${BENCH_DATA_KEYS:-1000}
reps=${BENCH_REPS:-7}
slow_reps=${BENCH_SLOW_REPS:-3}
audit_rows=${BENCH_AUDIT_ROWS:-100000}
tree_rows=${BENCH_TREE_ROWS:-1000000}
pgbench_tx=${BENCH_PGBENCH_TX:-2500}
accesslog_tx=${BENCH_ACCESSLOG_TX:-1000}
topics=${BENCH_TOPICS:-encrypt values tenancy lifecycle audit tree pgbench accesslog}
value_bytes=${BENCH_VALUE_BYTES:-67108864}
port=${BENCH_PORT:-54392}
shared_buffers=${BENCH_SHARED_BUFFERS:-1GB}
bench="$ENVAULT_ROOT/bench"

for n in "$rows" "$value_bytes" "$large_rows" "$tokens" "$data_keys" "$reps" "$slow_reps" "$port" \
	"$audit_rows" "$tree_rows" "$pgbench_tx" "$accesslog_tx"; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "bench/run.sh: not a positive integer: $n" >&2; exit 2; }
done
sql_topics=
run_pgbench=
run_accesslog=
for t in $topics; do
	if [ "$t" = pgbench ]; then
		run_pgbench=1
		continue
	fi
	if [ "$t" = accesslog ]; then
		run_accesslog=1
		continue
	fi
	[ -f "$bench/$t.sql" ] || { echo "bench/run.sh: no topic file bench/$t.sql" >&2; exit 2; }
	sql_topics="$sql_topics $t"
done

install_deps
if [ -n "${BENCH_SKIP_BUILD:-}" ]; then
	say "BENCH_SKIP_BUILD set: using the installed envault as it is"
else
	build_and_install
fi

dir=$(pg_workdir bench)
trap 'cluster_stop "$dir"; rm -rf "$dir"' EXIT

say "starting a throwaway cluster on port $port in $dir"
new_key_file "$dir/master.key"
new_key_file "$dir/pepper.key"
new_signing_key "$dir/signing.pem"
# jit off: JIT compile time would land in some cases and not others.
# No parallel query: env_encrypt is PARALLEL UNSAFE and env_decrypt
# PARALLEL RESTRICTED, while md5 and pgcrypto are PARALLEL SAFE; with
# parallel workers the comparison would measure worker counts, not functions.
# autovacuum off: the tables are vacuumed and analyzed explicitly.
# max_wal_size 4GB: no checkpoint is triggered by WAL volume in the middle
# of a timed statement (a 1,000,000-row UPDATE writes several hundred MB of
# WAL).  Topics that write run CHECKPOINT before their timed statements.
cluster_start "$dir" "$port" \
	"envault.master_key_file = '$dir/master.key'" \
	"envault.pepper_file = '$dir/pepper.key'" \
	"envault.signing_key_file = '$dir/signing.pem'" \
	"shared_buffers = '$shared_buffers'" \
	"jit = off" \
	"max_parallel_workers_per_gather = 0" \
	"autovacuum = off" \
	"max_wal_size = '4GB'"

psql_bench() {
	as_pg "$PGBIN/psql" -h "$dir" -p "$port" -d postgres -X -q \
		-v ON_ERROR_STOP=1 -v rows="$rows" -v value_bytes="$value_bytes" -v large_rows="$large_rows" \
		-v tokens="$tokens" -v data_keys="$data_keys" -v audit_rows="$audit_rows" -v tree_rows="$tree_rows" \
		-v reps="$reps" -v slow_reps="$slow_reps" "$@"
}
psql_bench -c "CREATE EXTENSION pgcrypto" -c "CREATE EXTENSION envault"

mkdir -p "$bench/out"
out="$bench/out/$(date -u +%Y%m%dT%H%M%SZ).txt"

machine() {
	local mem rev
	mem=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
	echo "== Machine"
	echo "nproc:      $(nproc)"
	echo "CPU:        $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "RAM:        $mem"
	echo "Debian:     $(cat /etc/debian_version 2>/dev/null || echo unknown)"
	echo "PostgreSQL: $("$PGBIN/postgres" --version)"
	echo "OpenSSL:    $(openssl version)"
	if rev=$(git -C "$ENVAULT_ROOT" rev-parse --short HEAD 2>/dev/null); then
		git -C "$ENVAULT_ROOT" diff --quiet HEAD -- src || rev="$rev, src/ modified"
	else
		rev="unknown (not a git checkout)"
	fi
	[ -z "${BENCH_SKIP_BUILD:-}" ] || rev="$rev, not rebuilt (BENCH_SKIP_BUILD)"
	echo "envault:    commit $rev"
	echo "command:    bench/run.sh (rows=$rows value_bytes=$value_bytes large_rows=$large_rows tokens=$tokens data_keys=$data_keys audit_rows=$audit_rows tree_rows=$tree_rows pgbench_tx=$pgbench_tx accesslog_tx=$accesslog_tx reps=$reps slow_reps=$slow_reps topics=\"$topics\")"
}

say "running topics: $topics ($rows rows, $large_rows large, $reps rounds, $slow_reps for slow cases)"
source "$bench/pgbench.sh"
source "$bench/accesslog.sh"
{
	machine
	{
		cat "$bench/harness.sql"
		for t in $sql_topics; do cat "$bench/$t.sql"; done
	} | psql_bench
	[ -z "$run_pgbench" ] || pgbench_stage
	[ -z "$run_accesslog" ] || accesslog_stage
	psql_bench -f - < "$bench/report.sql"
} | tee "$out"

say "saved to ${out#"$ENVAULT_ROOT"/}; stopping and removing the cluster"
