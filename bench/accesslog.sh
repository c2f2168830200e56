# bench/accesslog.sh: the access log under an online workload (topic
# accesslog).
#
# Sourced by bench/run.sh like bench/pgbench.sh, with the throwaway cluster
# running.  fsync is turned ON for this topic (and off again after it):
# what it measures is the cost of making each statement's access record
# durable before its result, which is only real with fsync on.
# synchronous_commit stays on (the default).
#
# One statement per transaction, the way an online application reads: a
# 64-byte value found by primary key among 10,000 rows, pgbench -M
# prepared, at 8 and at 64 clients:
#   plain          SELECT secret FROM t WHERE id = $1 (the plaintext column)
#   log off        SELECT env_decrypt_text(ct, int4send(id)) ..., with
#                  envault.access_log = off for the session
#   log on         the same with the access log on
#   app logs       what applications do today instead: BEGIN; SELECT the
#                  plaintext; INSERT a row into their own log table; COMMIT
# Each run is a fixed number of transactions ($accesslog_tx per client at 8
# clients, an eighth of that at 64), timed like bench/pgbench.sh (time =
# transactions / tps), rounds interleaved.  After the runs, the records per
# commit of the access log worker go into the facts: every commit carries
# the records of the sessions waiting at that moment (counted in
# envault.access_log: the records of the log-on runs, and the transactions,
# by xmin, that wrote them).

accesslog_stage() {
	local scripts="$dir/accesslog"
	local -a clients=(8 64)
	local c r k tps ms total tx first opts name
	local -a order

	as_pg mkdir -p "$scripts"
	psql_bench <<-'EOF'
		SELECT envault.create_tenant('al_bench') \g /dev/null
		CREATE TABLE bench.al_t (id int PRIMARY KEY, secret text NOT NULL, ct bytea NOT NULL);
		INSERT INTO bench.al_t
		SELECT g, v, envault.env_encrypt('al_bench', 'pii', v, int4send(g))
		  FROM generate_series(1, 10000) g, LATERAL (SELECT repeat(md5(g::text), 2) AS v) s;
		CREATE TABLE bench.al_applog (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),
									  who name NOT NULL, row_id int NOT NULL);
		VACUUM ANALYZE bench.al_t;
		ALTER SYSTEM SET fsync = on;
		SELECT pg_reload_conf() \g /dev/null
	EOF
	as_pg tee "$scripts/plain.sql" >/dev/null <<-'EOF'
		\set id random(1, 10000)
		SELECT secret FROM bench.al_t WHERE id = :id;
	EOF
	as_pg tee "$scripts/decrypt.sql" >/dev/null <<-'EOF'
		\set id random(1, 10000)
		SELECT envault.env_decrypt_text(ct, int4send(id)) FROM bench.al_t WHERE id = :id;
	EOF
	as_pg tee "$scripts/applog.sql" >/dev/null <<-'EOF'
		\set id random(1, 10000)
		BEGIN;
		SELECT secret FROM bench.al_t WHERE id = :id;
		INSERT INTO bench.al_applog (who, row_id) VALUES (current_user, :id);
		COMMIT;
	EOF

	for c in "${clients[@]}"; do
		tx=$(( accesslog_tx * 8 / c ))
		total=$(( tx * c ))
		psql_bench <<-EOF
			CALL bench.add_external_case('accesslog', 'online $c clients: plain SELECT', NULL,
				'pgbench -M prepared -c $c -t $tx, fsync on: SELECT secret FROM t WHERE id = \$1', $total, $reps);
			CALL bench.add_external_case('accesslog', 'online $c clients: decrypt, log off', 'online $c clients: plain SELECT',
				'SELECT env_decrypt_text(ct, int4send(id)) FROM t WHERE id = \$1, envault.access_log = off', $total, $reps);
			CALL bench.add_external_case('accesslog', 'online $c clients: decrypt, log on', 'online $c clients: decrypt, log off',
				'the same, access log on: its record durable before the row', $total, $reps);
			CALL bench.add_external_case('accesslog', 'online $c clients: app logs itself', 'online $c clients: plain SELECT',
				'BEGIN; SELECT secret ...; INSERT INTO applog ...; COMMIT', $total, $reps);
			CALL bench.add_ratio('log on / log off time, $c clients',
				'online $c clients: decrypt, log on', 'online $c clients: decrypt, log off', NULL,
				$( [ "$c" = 8 ] && echo 2.0 || echo 1.25 ));
			CALL bench.add_ratio('log on / app logs itself time, $c clients',
				'online $c clients: decrypt, log on', 'online $c clients: app logs itself', NULL,
				$( [ "$c" = 8 ] && echo 0.25 || echo NULL ));
			CALL bench.add_ratio('log off / plain SELECT time, $c clients',
				'online $c clients: decrypt, log off', 'online $c clients: plain SELECT', NULL, 1.11);
		EOF
	done
	psql_bench -c "INSERT INTO bench.facts (fact, value) VALUES ('accesslog: transactions',
		'one statement each, pgbench -M prepared, fsync on, synchronous_commit on')"

	for r in $(seq 1 "$reps"); do
		echo "accesslog round $r/$reps" >&2
		for c in "${clients[@]}"; do
			tx=$(( accesslog_tx * 8 / c ))
			total=$(( tx * c ))
			if (( r % 2 )); then order=(plain off on applog); else order=(applog on off plain); fi
			for k in "${order[@]}"; do
				opts=
				case $k in
					plain) first=plain.sql; name='plain SELECT' ;;
					off) first=decrypt.sql; name='decrypt, log off'; opts='-c envault.access_log=off' ;;
					on) first=decrypt.sql; name='decrypt, log on' ;;
					applog) first=applog.sql; name='app logs itself' ;;
				esac
				tps=$(as_pg env PGOPTIONS="$opts" PGAPPNAME="bench accesslog $k" "$PGBIN/pgbench" -h "$dir" -p "$port" \
						-n -M prepared -c "$c" -j 2 -t "$tx" -f "$scripts/$first" postgres 2>&1 |
					  sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p')
				[ -n "$tps" ] || { echo "bench/accesslog.sh: pgbench failed ($c clients, $name)" >&2; return 1; }
				ms=$(awk -v n="$total" -v tps="$tps" 'BEGIN { printf "%.3f", n * 1000 / tps }')
				psql_bench -c "INSERT INTO bench.timings VALUES ('online $c clients: $name', $r, $ms)"
			done
		done
	done

	psql_bench <<-'EOF'
		SELECT envault.flush_access_log() \g /dev/null
		INSERT INTO bench.facts (fact, value)
		SELECT 'accesslog: records per worker commit (log on runs)',
			   round(count(*)::numeric / nullif(count(DISTINCT xmin::text), 0), 2)
			   || ' (' || count(*) || ' records in ' || count(DISTINCT xmin::text) || ' commits)'
		  FROM envault.access_log WHERE application_name = 'bench accesslog on';
		ALTER SYSTEM RESET fsync;
		SELECT pg_reload_conf() \g /dev/null
	EOF
}
