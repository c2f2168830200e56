-- chain_tree: the Merkle tree (RFC 6962 / RFC 9162) of each tenant's chain.
-- Tree heads and proofs checked against an independent implementation in
-- PL/pgSQL written from RFC 9162 (sections 2.1.1, 2.1.3.2 and 2.1.4.2).
SET search_path = public, envault;
\set SHOW_CONTEXT never

-- MTH over leaf hashes, and the two verification algorithms of RFC 9162
CREATE FUNCTION regress_mth(leaves bytea[]) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	n int := coalesce(array_length(leaves, 1), 0);
	k int := 1;
BEGIN
	IF n = 0 THEN RETURN sha256(''); END IF;
	IF n = 1 THEN RETURN leaves[1]; END IF;
	WHILE k * 2 < n LOOP k := k * 2; END LOOP;
	RETURN sha256('\x01'::bytea || regress_mth(leaves[1:k]) || regress_mth(leaves[k + 1:n]));
END $$;
CREATE FUNCTION regress_verify_inclusion(idx bigint, size bigint, leaf bytea,
                                         proof bytea[], root bytea)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	fn bigint := idx;
	sn bigint := size - 1;
	r bytea := leaf;
	p bytea;
BEGIN
	IF idx >= size THEN RETURN false; END IF;
	FOREACH p IN ARRAY proof LOOP
		IF sn = 0 THEN RETURN false; END IF;
		IF fn % 2 = 1 OR fn = sn THEN
			r := sha256('\x01'::bytea || p || r);
			WHILE fn % 2 = 0 AND fn <> 0 LOOP fn := fn / 2; sn := sn / 2; END LOOP;
		ELSE
			r := sha256('\x01'::bytea || r || p);
		END IF;
		fn := fn / 2; sn := sn / 2;
	END LOOP;
	RETURN sn = 0 AND r = root;
END $$;
CREATE FUNCTION regress_verify_consistency(m bigint, n bigint, old_root bytea,
                                           new_root bytea, proof bytea[])
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	path bytea[] := proof;
	fn bigint := m - 1;
	sn bigint := n - 1;
	fr bytea;
	sr bytea;
	i int;
BEGIN
	IF m < 1 OR m > n THEN RETURN false; END IF;
	IF m = n THEN RETURN cardinality(proof) = 0 AND old_root = new_root; END IF;
	IF cardinality(proof) = 0 THEN RETURN false; END IF;
	IF m & (m - 1) = 0 THEN path := old_root || path; END IF;
	WHILE fn % 2 = 1 LOOP fn := fn / 2; sn := sn / 2; END LOOP;
	fr := path[1];
	sr := path[1];
	FOR i IN 2 .. cardinality(path) LOOP
		IF sn = 0 THEN RETURN false; END IF;
		IF fn % 2 = 1 OR fn = sn THEN
			fr := sha256('\x01'::bytea || path[i] || fr);
			sr := sha256('\x01'::bytea || path[i] || sr);
			WHILE fn % 2 = 0 AND fn <> 0 LOOP fn := fn / 2; sn := sn / 2; END LOOP;
		ELSE
			sr := sha256('\x01'::bytea || sr || path[i]);
		END IF;
		fn := fn / 2; sn := sn / 2;
	END LOOP;
	RETURN sn = 0 AND fr = old_root AND sr = new_root;
END $$;

-- a chain with the (tenant, envault_seq) index, one without
CREATE TABLE regress_tree (tenant text, n int);
SELECT envault.enable_audit_chain('regress_tree', 'tenant');
CREATE INDEX ON regress_tree (tenant, envault_seq);
INSERT INTO regress_tree SELECT 'a', g FROM generate_series(1, 700) g;
INSERT INTO regress_tree SELECT 'b', g FROM generate_series(1, 5) g;
INSERT INTO regress_tree SELECT NULL, g FROM generate_series(1, 3) g;
CREATE TABLE regress_tree_noidx (tenant text, n int);
SELECT envault.enable_audit_chain('regress_tree_noidx', 'tenant');
INSERT INTO regress_tree_noidx SELECT 'a', g FROM generate_series(1, 300) g;

-- the leaf hashes of a tenant's rows, in order
CREATE FUNCTION regress_leaves(tbl regclass, t text, upto bigint) RETURNS bytea[]
LANGUAGE plpgsql AS $$
DECLARE r bytea[];
BEGIN
	EXECUTE format('SELECT array_agg(sha256(''\x00''::bytea || envault_hash) ORDER BY envault_seq)
	                  FROM %s WHERE tenant IS NOT DISTINCT FROM $1 AND envault_seq <= $2', tbl)
	   INTO r USING t, upto;
	RETURN coalesce(r, '{}');
END $$;

-- tree heads at the sizes where the tree's shape changes, against MTH
SELECT s AS tree_size,
       (envault.tree_head('regress_tree', 'a', s)).root
         = regress_mth(regress_leaves('regress_tree', 'a', s)) AS root_ok
  FROM unnest(ARRAY[1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257, 511, 512, 513, 699, 700]) s;
SELECT tree_size, root = regress_mth(regress_leaves('regress_tree', 'a', 700)) AS root_ok
  FROM envault.tree_head('regress_tree', 'a');
SELECT tree_size, root = regress_mth(regress_leaves('regress_tree', 'b', 5)) AS root_ok
  FROM envault.tree_head('regress_tree', 'b');
SELECT tree_size, root = regress_mth(regress_leaves('regress_tree', NULL, 3)) AS root_ok
  FROM envault.tree_head('regress_tree', NULL);
SELECT tree_size, root = regress_mth(regress_leaves('regress_tree_noidx', 'a', 300)) AS root_ok
  FROM envault.tree_head('regress_tree_noidx', 'a');

-- what is stored: the frontier at the head, the subtrees of 256 and 512 rows
SELECT t.tenant, t.size, length(t.frontier) AS frontier_bytes
  FROM envault.chain_trees t JOIN envault.audit_chains c USING (chain_id)
 WHERE c.tbl = 'regress_tree'::regclass ORDER BY t.tenant;
SELECT level, idx,
       hash = regress_mth((regress_leaves('regress_tree', 'a', 700))[idx * 2 ^ level + 1 : (idx + 1) * 2 ^ level]) AS hash_ok
  FROM envault.chain_nodes n JOIN envault.audit_chains c USING (chain_id)
 WHERE c.tbl = 'regress_tree'::regclass ORDER BY level, idx;

-- every inclusion proof of trees of 700, 513 and 256 rows verifies; a proof
-- for the wrong row, a changed hash or a tree of another shape does not (a
-- size of the same shape near the row does: what binds the size is the
-- root, which a checkpoint signs with it)
SELECT size, count(*) AS proofs,
       count(*) FILTER (WHERE regress_verify_inclusion(seq - 1, size, leaves[seq],
                               envault.inclusion_proof('regress_tree', 'a', seq, size), root)) AS verified,
       max(cardinality(envault.inclusion_proof('regress_tree', 'a', seq, size))) AS longest
  FROM unnest(ARRAY[700, 513, 256]) size,
       LATERAL (SELECT regress_leaves('regress_tree', 'a', size) AS leaves,
                       (envault.tree_head('regress_tree', 'a', size)).root AS root) x,
       generate_series(1, size) seq
 GROUP BY size ORDER BY size;
WITH x AS (SELECT regress_leaves('regress_tree', 'a', 700) AS leaves,
                  (envault.tree_head('regress_tree', 'a')).root AS root,
                  envault.inclusion_proof('regress_tree', 'a', 300, 700) AS proof)
SELECT regress_verify_inclusion(299, 700, leaves[300], proof, root) AS right_row,
       regress_verify_inclusion(299, 700, leaves[301], proof, root) AS wrong_row,
       regress_verify_inclusion(299, 700, leaves[300],
                                proof[1:2] || overlay(proof[3] placing '\xff' from 1) || proof[4:], root) AS changed_hash,
       regress_verify_inclusion(299, 699, leaves[300], proof, root) AS size_699,
       regress_verify_inclusion(299, 300, leaves[300], proof, root) AS size_300
  FROM x;
-- the tree of a chain without the index gives the same proofs
SELECT count(*) FILTER (WHERE regress_verify_inclusion(seq - 1, 300, leaves[seq],
                               envault.inclusion_proof('regress_tree_noidx', 'a', seq, 300), root)) AS verified
  FROM (SELECT regress_leaves('regress_tree_noidx', 'a', 300) AS leaves,
               (envault.tree_head('regress_tree_noidx', 'a')).root AS root) x,
       generate_series(1, 300, 7) seq;

-- consistency proofs between every pair of sizes below, both ways wrong
-- roots refused
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE regress_verify_consistency(m, n, mr, nr,
                               envault.consistency_proof('regress_tree', 'a', m, n))) AS verified,
       count(*) FILTER (WHERE m < n AND regress_verify_consistency(m, n, nr, nr,
                               envault.consistency_proof('regress_tree', 'a', m, n))) AS wrong_old_root,
       count(*) FILTER (WHERE m < n AND regress_verify_consistency(m, n, mr, mr,
                               envault.consistency_proof('regress_tree', 'a', m, n))) AS wrong_new_root
  FROM (SELECT s, (envault.tree_head('regress_tree', 'a', s)).root AS r
          FROM unnest(ARRAY[1, 2, 3, 4, 7, 8, 9, 255, 256, 257, 300, 511, 512, 513, 700]) s) a (m, mr),
       (SELECT s, (envault.tree_head('regress_tree', 'a', s)).root AS r
          FROM unnest(ARRAY[1, 2, 3, 4, 7, 8, 9, 255, 256, 257, 300, 511, 512, 513, 700]) s) b (n, nr)
 WHERE m <= n;

-- the tree grows with the chain, and a rolled-back build leaves nothing
INSERT INTO regress_tree SELECT 'a', g FROM generate_series(701, 800) g;
SELECT tree_size, root = regress_mth(regress_leaves('regress_tree', 'a', 800)) AS root_ok
  FROM envault.tree_head('regress_tree', 'a');
BEGIN;
INSERT INTO regress_tree SELECT 'a', g FROM generate_series(801, 900) g;
SELECT tree_size FROM envault.tree_head('regress_tree', 'a');
ROLLBACK;
SELECT t.size, (SELECT count(*) FROM envault.chain_nodes n
                 WHERE n.chain_id = t.chain_id AND n.tenant = 'a') AS nodes
  FROM envault.chain_trees t JOIN envault.audit_chains c USING (chain_id)
 WHERE c.tbl = 'regress_tree'::regclass AND t.tenant = 'a';

-- a purge keeps the tree's heads, and the proofs of rows from its anchor
-- on, while the rows before it go
CREATE TABLE regress_tree_p (tenant text, n int);
SELECT envault.enable_audit_chain('regress_tree_p', 'tenant');
CREATE INDEX ON regress_tree_p (tenant, envault_seq);
INSERT INTO regress_tree_p SELECT 'p', g FROM generate_series(1, 300) g;
SELECT seq FROM envault.checkpoint('regress_tree_p', 'p');
INSERT INTO regress_tree_p SELECT 'p', g FROM generate_series(301, 600) g;
CREATE TEMP TABLE regress_before AS
SELECT s, (envault.tree_head('regress_tree_p', 'p', s)).root
  FROM unnest(ARRAY[300, 301, 333, 511, 512, 513, 600]) s;
SELECT envault.purge_chain('regress_tree_p', 'p', clock_timestamp()) AS purged;
SELECT min(envault_seq) AS first_row FROM regress_tree_p;
SELECT count(*) AS heads, count(*) FILTER (WHERE (envault.tree_head('regress_tree_p', 'p', s)).root = root) AS same
  FROM regress_before;
SELECT count(*) AS proofs,
       count(*) FILTER (WHERE regress_verify_inclusion(r.envault_seq - 1, 600,
                               sha256('\x00'::bytea || r.envault_hash),
                               envault.inclusion_proof('regress_tree_p', 'p', r.envault_seq, 600),
                               (SELECT root FROM regress_before WHERE s = 600))) AS verified
  FROM regress_tree_p r;
SELECT regress_verify_consistency(m, 600, (SELECT root FROM regress_before WHERE s = m),
                                  (SELECT root FROM regress_before WHERE s = 600),
                                  envault.consistency_proof('regress_tree_p', 'p', m, 600)) AS consistent
  FROM unnest(ARRAY[300, 301, 333, 511, 512, 513]) m;
\set VERBOSITY terse
SELECT envault.inclusion_proof('regress_tree_p', 'p', 10, 600);
\set VERBOSITY default

-- Checkpoints sign tree heads (the one that anchors the purge above too);
-- the purge signed one of the whole chain that says so ("purge 300"),
-- once its tree was shown to extend the anchor's; verify_chain recomputes
-- both, from the frontier the purge kept
SELECT c.seq, c.tree_root = b.root AS signed_head,
       split_part(c.note, E'\n', 5) AS purge_statement
  FROM envault.checkpoints c JOIN regress_before b ON b.s = c.seq
 WHERE c.chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'regress_tree_p'::regclass)
 ORDER BY c.seq;
SELECT * FROM envault.verify_chain('regress_tree_p');
-- an anchor without the signed statement (the purge's checkpoint deleted
-- by a superuser, or an anchor row made up): refused; the next
-- checkpoint signs it again, visibly
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM envault.checkpoints
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'regress_tree_p'::regclass)
   AND seq = 600;
SELECT * FROM envault.verify_chain('regress_tree_p');
SELECT seq, split_part(checkpoint, E'\n', 5) AS purge_statement
  FROM envault.checkpoint('regress_tree_p', 'p');
SELECT * FROM envault.verify_chain('regress_tree_p');
ROLLBACK;
-- a stored tree made up below the anchor leads to another head than the
-- one the anchor's checkpoint signed
BEGIN;
UPDATE envault.chain_nodes SET hash = sha256(hash)
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'regress_tree_p'::regclass)
   AND level = 8 AND idx = 0;
SELECT * FROM envault.verify_chain('regress_tree_p');
ROLLBACK;

-- A chain forked below its last checkpoint: rows 5 to 10 replaced (deleted
-- behind envault's back, its head set back to row 4, new rows chained
-- after it) and the stored tree dropped, so that it is built again from
-- the rows.  verify_chain sees it at the checkpoint; checkpoint() refuses
-- to sign before signing anything
CREATE TABLE regress_tree_f (tenant text, n int);
SELECT envault.enable_audit_chain('regress_tree_f', 'tenant');
INSERT INTO regress_tree_f SELECT 'f', g FROM generate_series(1, 10) g;
SELECT seq FROM envault.checkpoint('regress_tree_f', 'f');
SET session_replication_role = replica;
DELETE FROM regress_tree_f WHERE envault_seq > 4;
UPDATE envault.chain_heads
   SET seq = 4, hash = (SELECT envault_hash FROM regress_tree_f WHERE envault_seq = 4)
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'regress_tree_f'::regclass);
DELETE FROM envault.chain_nodes
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'regress_tree_f'::regclass);
DELETE FROM envault.chain_trees
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'regress_tree_f'::regclass);
RESET session_replication_role;
INSERT INTO regress_tree_f SELECT 'f', -g FROM generate_series(5, 12) g;
SELECT * FROM envault.verify_chain('regress_tree_f');
SELECT envault.checkpoint('regress_tree_f', 'f');
SELECT count(*) AS checkpoints FROM envault.checkpoints
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'regress_tree_f'::regclass);
-- (with the checkpoint deleted as well, nothing in the database remembers
-- it: a signer outside keeps that memory, test/t/014_external_signer.pl)

-- bad arguments
\set VERBOSITY terse
SELECT envault.tree_head('regress_tree', 'a', 0);
SELECT envault.tree_head('regress_tree', 'a', 801);
SELECT envault.tree_head('regress_tree', 'nobody');
SELECT envault.inclusion_proof('regress_tree', 'a', 0, 10);
SELECT envault.inclusion_proof('regress_tree', 'a', 11, 10);
SELECT envault.inclusion_proof('regress_tree', 'a', 1, NULL);
SELECT envault.consistency_proof('regress_tree', 'a', 0, 10);
SELECT envault.consistency_proof('regress_tree', 'a', 11, 10);
SELECT envault.consistency_proof('regress_tree', 'a', 1, 900);
SELECT envault.tree_head('pg_class', 'a');
SELECT envault.tree_head(NULL, 'a');
-- a row gone behind the chain's back: the tree cannot be built past it
INSERT INTO regress_tree SELECT 'c', g FROM generate_series(1, 5) g;
SET session_replication_role = replica;
DELETE FROM regress_tree WHERE tenant = 'c' AND envault_seq = 3;
RESET session_replication_role;
SELECT envault.tree_head('regress_tree', 'c');
\set VERBOSITY default

-- only envault_admin may ask
SET ROLE envault_user;
SELECT envault.tree_head('regress_tree', 'a');
RESET ROLE;

SELECT envault.disable_audit_chain('regress_tree');
SELECT envault.disable_audit_chain('regress_tree_noidx');
SELECT envault.disable_audit_chain('regress_tree_p');
SELECT envault.disable_audit_chain('regress_tree_f');
SELECT count(*) AS trees_left FROM envault.chain_trees t
 WHERE NOT EXISTS (SELECT FROM envault.audit_chains c WHERE c.chain_id = t.chain_id);
DROP TABLE regress_tree, regress_tree_noidx, regress_tree_p, regress_tree_f;
