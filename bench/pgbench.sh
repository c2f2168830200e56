# bench/pgbench.sh: chained inserts under pgbench (topic pgbench).
#
# Sourced by bench/run.sh after the SQL topics, with the throwaway cluster
# running: uses psql_bench, as_pg, $PGBIN, $dir, $port, $reps and
# $pgbench_tx from there.
#
# One INSERT of one audit row per transaction, the way an application
# writes its audit trail, into a chained table and into the same table
# unchained, in three scenarios:
#   1 client        one session, tenants chosen at random among 8;
#   8 clients, 8 tenants   each client writes its own tenant's chain;
#   8 clients, 1 tenant    every client writes the same chain, so the
#                   chained inserts take turns (one transaction at a time
#                   holds the tenant's chain lock).
# Each run is a fixed number of transactions per client ($pgbench_tx; the
# single client runs 8 times as many), with prepared statements (-M
# prepared, as application drivers do).  Its time is the transactions
# divided by pgbench's tps (without connection time); the timings go into
# bench.timings like every other case, so the report shows them as
# "ms (median)" of the whole run and ratios of times: a time ratio of 1.25
# is a throughput of 0.8.  Rounds interleave the scenarios and alternate
# which table goes first.  After the last round the chained table is
# verified (untimed): every tenant's chain must be intact and hold every
# row the runs inserted.

pgbench_stage() {
	local scripts="$dir/pgbench"
	local -a names=("1 client" "8 clients, 8 tenants" "8 clients, 1 tenant")
	local -a opts=("-c 1 -j 1" "-c 8 -j 2" "-c 8 -j 2")
	local -a tenant=("'tenant_' || :t" "'tenant_' || :client_id" "'tenant_1'")
	local -a txs=($((pgbench_tx * 8)) "$pgbench_tx" "$pgbench_tx")
	local i r k tbl first second tps ms total

	as_pg mkdir -p "$scripts"
	psql_bench <<-'EOF'
		CREATE TABLE bench.pgb_plain (LIKE bench.audit_row INCLUDING ALL);
		CREATE TABLE bench.pgb_chained (LIKE bench.pgb_plain INCLUDING ALL);
		SELECT envault.enable_audit_chain('bench.pgb_chained', 'tenant') \g /dev/null
	EOF
	for i in 0 1 2; do
		total=$(( ${txs[$i]} * $(sed 's/-c \([0-9]*\).*/\1/' <<<"${opts[$i]}") ))
		for tbl in plain chained; do
			as_pg tee "$scripts/$i-$tbl.sql" >/dev/null <<-EOF
				\set t random(1, 8)
				INSERT INTO bench.pgb_$tbl (tenant, actor, action, object_id, detail) VALUES (${tenant[$i]}, 'user_' || :client_id, 'order.update', :t, '{"field": "status", "to": "paid"}');
			EOF
		done
		psql_bench -c "CALL bench.add_external_case('pgbench', 'pgbench ${names[$i]}, plain', NULL,
			'pgbench -M prepared ${opts[$i]} -t ${txs[$i]}: INSERT one row per transaction, tenant ${tenant[$i]//\'/\'\'}', $total, $reps)" \
			-c "CALL bench.add_external_case('pgbench', 'pgbench ${names[$i]}, chained', 'pgbench ${names[$i]}, plain',
			'the same into the chained table', $total, $reps)"
	done
	psql_bench <<-'EOF'
		CALL bench.add_ratio('chained / plain time, pgbench 1 client',
			'pgbench 1 client, chained', 'pgbench 1 client, plain', NULL, 1.5);
		CALL bench.add_ratio('chained / plain time, pgbench 8 clients, 8 tenants',
			'pgbench 8 clients, 8 tenants, chained', 'pgbench 8 clients, 8 tenants, plain', NULL, 1.25);
		CALL bench.add_ratio('chained / plain time, pgbench 8 clients, 1 tenant',
			'pgbench 8 clients, 1 tenant, chained', 'pgbench 8 clients, 1 tenant, plain');
		INSERT INTO bench.facts (fact, value) VALUES ('pgbench: transactions',
			'one INSERT of one audit row each, -M prepared, fsync off: CPU-bound');
	EOF

	for r in $(seq 1 "$reps"); do
		echo "pgbench round $r/$reps" >&2
		for i in 0 1 2; do
			if (( (r + i) % 2 )); then first=plain second=chained; else first=chained second=plain; fi
			for tbl in $first $second; do
				tps=$(as_pg "$PGBIN/pgbench" -h "$dir" -p "$port" -n -M prepared ${opts[$i]} \
						-t "${txs[$i]}" -f "$scripts/$i-$tbl.sql" postgres 2>&1 |
					  sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p')
				[ -n "$tps" ] || { echo "bench/pgbench.sh: pgbench failed (${names[$i]}, $tbl)" >&2; return 1; }
				total=$(( ${txs[$i]} * $(sed 's/-c \([0-9]*\).*/\1/' <<<"${opts[$i]}") ))
				ms=$(awk -v n="$total" -v tps="$tps" 'BEGIN { printf "%.3f", n * 1000 / tps }')
				psql_bench -c "INSERT INTO bench.timings VALUES ('pgbench ${names[$i]}, $tbl', $r, $ms)"
			done
		done
	done

	# untimed: concurrent writers left every chain intact and complete
	psql_bench <<-'EOF'
		DO $$
		DECLARE
			bad		bigint;
			rows	bigint;
		BEGIN
			SELECT count(*) FILTER (WHERE NOT ok), sum(rows_checked)
			INTO bad, rows FROM envault.verify_chain('bench.pgb_chained');
			IF bad <> 0 OR rows <> (SELECT count(*) FROM bench.pgb_chained)
			   OR rows <> (SELECT count(*) FROM bench.pgb_plain) THEN
				RAISE EXCEPTION 'after pgbench: % bad chains, % rows checked, % chained rows, % plain rows',
					bad, rows, (SELECT count(*) FROM bench.pgb_chained),
					(SELECT count(*) FROM bench.pgb_plain);
			END IF;
		END
		$$;
		INSERT INTO bench.facts (fact, value)
		SELECT 'pgbench: chained table after the runs',
			   sum(rows_checked) || ' rows in ' || count(*) || ' chains, all verified'
		FROM envault.verify_chain('bench.pgb_chained');
	EOF
}
