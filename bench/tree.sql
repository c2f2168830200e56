-- bench/tree.sql: Merkle tree heads and proofs of an audit chain.
--
-- One tenant's chain of :tree_rows rows (with the (tenant, envault_seq)
-- index that docs/audit-chain.md recommends), its tree built once (the
-- time it took is a fact of the report, as rows per second).  Then 1000
-- inclusion proofs at random rows of the whole tree, and 1000 consistency
-- proofs from random old sizes to the whole tree, against 1000 lookups of
-- one row by (tenant, envault_seq) through the same index: the cheapest
-- thing a proof must do at least once.  The number to read is microseconds
-- per proof.
--
-- psql variables (set by bench/run.sh): tree_rows, reps.

\echo '-- topic tree: preparing' :tree_rows 'chained rows'

CREATE TABLE bench.tree_chain (tenant text NOT NULL, n integer NOT NULL);
SELECT envault.enable_audit_chain('bench.tree_chain', 'tenant') AS linked \gset
CREATE INDEX ON bench.tree_chain (tenant, envault_seq);
INSERT INTO bench.tree_chain SELECT 'big', g FROM generate_series(1, :tree_rows) g;
VACUUM ANALYZE bench.tree_chain;

-- building the tree of every row, once
SELECT clock_timestamp() AS build_start \gset
SELECT tree_size AS built FROM envault.tree_head('bench.tree_chain', 'big') \gset
INSERT INTO bench.facts (fact, value)
SELECT 'tree: chain', :tree_rows || ' rows of one tenant, index on (tenant, envault_seq), '
	   || pg_size_pretty(pg_table_size('bench.tree_chain'))
UNION ALL
SELECT 'tree: building the whole tree once',
	   round(:built / extract(epoch FROM clock_timestamp() - :'build_start'::timestamptz))
	   || ' rows per second; ' || (SELECT count(*) FROM envault.chain_nodes n
									 JOIN envault.audit_chains c USING (chain_id)
									WHERE c.tbl = 'bench.tree_chain'::regclass)
	   || ' stored subtree roots';

CREATE TABLE bench.tree_at AS
SELECT 1 + floor(random() * :tree_rows)::bigint AS seq FROM generate_series(1, 1000);

CALL bench.add_case('tree', 'row lookup by (tenant, envault_seq), x1000', NULL,
	$q$SELECT count(h) FROM bench.tree_at a,
	          LATERAL (SELECT envault_hash AS h FROM bench.tree_chain
	                    WHERE tenant = 'big' AND envault_seq = a.seq) r$q$,
	1000, :reps);
CALL bench.add_case('tree', 'inclusion_proof, x1000', 'row lookup by (tenant, envault_seq), x1000',
	format($q$SELECT count(envault.inclusion_proof('bench.tree_chain', 'big', seq, %s))
	            FROM bench.tree_at$q$, :tree_rows),
	1000, :reps);
CALL bench.add_case('tree', 'consistency_proof, x1000', 'row lookup by (tenant, envault_seq), x1000',
	format($q$SELECT count(envault.consistency_proof('bench.tree_chain', 'big', seq, %s))
	            FROM bench.tree_at$q$, :tree_rows),
	1000, :reps);
CALL bench.add_limit('inclusion_proof (5 ms each)', 'inclusion_proof, x1000', 'us per row', 5000);
CALL bench.add_limit('consistency_proof (5 ms each)', 'consistency_proof, x1000', 'us per row', 5000);

\echo '-- topic tree: running (progress on stderr)'
CALL bench.run('tree');
