-- chain_vectors: the worked example of docs/audit-chain.md ("Worked example
-- and test vectors"), loaded into a chained table with its chain values,
-- verified, and exported again byte for byte: envault's C implementation
-- checked against the document, which test/vectors/check_chain.py checks
-- independently.
SET search_path = public, envault;
\set SHOW_CONTEXT never

CREATE TABLE orders_audit (id bigint, tenant text NOT NULL, action text,
                           amount numeric(10,2), approved boolean);
SELECT envault.enable_audit_chain('orders_audit', 'tenant');

-- A superuser supplies the vector's chain values; the insert trigger keeps
-- them because each row is exactly the next link (same number, the previous
-- hash, and a hash that matches the row with its envault_at)
INSERT INTO orders_audit (id, tenant, action, amount, approved,
                          envault_seq, envault_at, envault_prev, envault_hash)
VALUES
  (1, 'acme', 'login', NULL, 'true',
   1, '2026-12-01T10:27:31.679273Z',
   decode('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', 'base64'),
   decode('QBPHWk4vNT4QTNrQpmfqtQ1cUDkBZLCFrfySIPz1SlY=', 'base64')),
  (2, 'acme', 'paiement reçu', '12.50', 'true',
   2, '2026-12-01T10:27:31.679879Z',
   decode('QBPHWk4vNT4QTNrQpmfqtQ1cUDkBZLCFrfySIPz1SlY=', 'base64'),
   decode('sV/c08nXQdbOjk2wGU4IAJtl3ceH6pVxXxYCv/ZSIyw=', 'base64')),
  (3, 'acme', 'refund', '-3.25', 'false',
   3, '2026-12-01T10:27:31.680440Z',
   decode('sV/c08nXQdbOjk2wGU4IAJtl3ceH6pVxXxYCv/ZSIyw=', 'base64'),
   decode('41wTlh9SDWyc0LmgCJ5xPc++HjQQF1mVOBF3vSnupmo=', 'base64')),
  (4, 'acme', 'logout', NULL, NULL,
   4, '2026-12-01T10:27:31.683574Z',
   decode('41wTlh9SDWyc0LmgCJ5xPc++HjQQF1mVOBF3vSnupmo=', 'base64'),
   decode('xsHNDoQWllco1l1yQAOT6Qqbdm5FPuZY9Pc3k8QV9N0=', 'base64'));
SELECT envault_seq,
       to_char(envault_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at,
       encode(envault_hash, 'base64') AS hash
  FROM orders_audit ORDER BY envault_seq;

-- the vector's checkpoint of row 3, the head row's hash as envault 0.2.0
-- signed it (under the key's own name, "envault") before the database was
-- upgraded, with the key of regress.conf (envault.signing_key is the
-- vector's seed), in a database whose identity is "appdb" (that of a
-- database named so when it was upgraded from 0.2.0; made here by a
-- superuser with an older row, which counts); tree_root is NULL for it
INSERT INTO envault.database_identity VALUES ('appdb', '2026-01-01T00:00:00Z');
SELECT envault.database_id();
SELECT envault.signing_public_key();
INSERT INTO envault.checkpoints (chain_id, tenant, seq, head_hash, signed_at,
                                 key_name, key_id, note, signed_by)
SELECT chain_id, 'acme', 3, envault_hash, '2026-12-01T10:27:31.680995Z',
       'envault', '\x18a0a827', $note$envault/appdb/public.orders_audit/acme
3
41wTlh9SDWyc0LmgCJ5xPc++HjQQF1mVOBF3vSnupmo=
time 2026-12-01T10:27:31.680995Z

— envault GKCoJ6ideOQy5USw4eoyBk5xSXQc70RWlaIWxwzCns8+wkJznlzlV6xKb+QnuEM3TPwAd2biWyNAqg6a0fGGA+EKxQE=
$note$, current_user
  FROM envault.audit_chains, orders_audit
 WHERE tbl = 'orders_audit'::regclass AND envault_seq = 3;

-- the vector's tree-head checkpoint of the 4 rows, as envault 0.3.0 signs
-- it: the Merkle tree head (head-4 of the document's tree block) under the
-- origin as key name, with the same key; and the test witness's
-- cosignature of it (witness.example/w1, cosignature/v1), which envault
-- keeps apart and appends to the note
INSERT INTO envault.checkpoints (chain_id, tenant, seq, head_hash, signed_at,
                                 key_name, key_id, note, signed_by, tree_root)
SELECT chain_id, 'acme', 4, envault_hash, '2026-12-01T10:27:31.684012Z',
       'envault/appdb/public.orders_audit/acme', '\x355eb5e9', $note$envault/appdb/public.orders_audit/acme
4
x6mb5ytuXSr+LhoxxP5dDx22QUtgpETDUNG0EsVjOXQ=
time 2026-12-01T10:27:31.684012Z

— envault/appdb/public.orders_audit/acme NV616dO10FD1aryAerhJOygUzGiYIG3lxVyxIv/zbGPVt03e+qWZdUQL4aD34SfjOl8aIkTembRp3mBXLJtZLxJRug4=
$note$, current_user,
       '\xc7a99be72b6e5d2afe2e1a31c4fe5d0f1db6414b60a444c350d1b412c5633974'
  FROM envault.audit_chains, orders_audit
 WHERE tbl = 'orders_audit'::regclass AND envault_seq = 4;
INSERT INTO envault.checkpoint_cosignatures (checkpoint_id, witness, line, cosigned_at,
                                             requested_by)
SELECT checkpoint_id, 'witness.example/w1',
       $line$— witness.example/w1 vQJMFgAAAABpLW2Uo0nBoYYyK0XyPnqY/Yfx+VYB/IWRfebuFcKgevI30whsroVbXduCTTo02PDv1rPLEekuVUz40aw8fbZlAqmSAA==
$line$, to_timestamp(1764584852), current_user
  FROM envault.checkpoints
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'orders_audit'::regclass)
   AND seq = 4;
SELECT seq, key_name, encode(key_id, 'hex') AS key_id,
       encode(head_hash, 'base64') AS head_hash, encode(tree_root, 'base64') AS tree_root,
       tree_root = (envault.tree_head('orders_audit', 'acme', seq)).root AS tree_head
  FROM envault.checkpoints
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'orders_audit'::regclass)
 ORDER BY seq;
SELECT * FROM envault.verify_chain('orders_audit');

-- export_chain gives back the vector exactly: format v2, tree_frontier null
-- (the export starts at row 1), both checkpoints in the order of their
-- numbers, the cosignature appended to the tree head's note
SELECT envault.export_chain('orders_audit', 'acme')::text
       = $vector${"format": "envault-chain-export-v2", "database": "appdb", "chain": "public.orders_audit", "tenant": "acme", "columns": [["id", "bigint"], ["tenant", "pg_catalog.text"], ["action", "pg_catalog.text"], ["amount", "numeric(10,2)"], ["approved", "boolean"]], "rows": [
  {"seq": 1, "at": "2026-12-01T10:27:31.679273Z", "prev": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "hash": "QBPHWk4vNT4QTNrQpmfqtQ1cUDkBZLCFrfySIPz1SlY=", "values": ["1", "acme", "login", null, "true"]},
  {"seq": 2, "at": "2026-12-01T10:27:31.679879Z", "prev": "QBPHWk4vNT4QTNrQpmfqtQ1cUDkBZLCFrfySIPz1SlY=", "hash": "sV/c08nXQdbOjk2wGU4IAJtl3ceH6pVxXxYCv/ZSIyw=", "values": ["2", "acme", "paiement reçu", "12.50", "true"]},
  {"seq": 3, "at": "2026-12-01T10:27:31.680440Z", "prev": "sV/c08nXQdbOjk2wGU4IAJtl3ceH6pVxXxYCv/ZSIyw=", "hash": "41wTlh9SDWyc0LmgCJ5xPc++HjQQF1mVOBF3vSnupmo=", "values": ["3", "acme", "refund", "-3.25", "false"]},
  {"seq": 4, "at": "2026-12-01T10:27:31.683574Z", "prev": "41wTlh9SDWyc0LmgCJ5xPc++HjQQF1mVOBF3vSnupmo=", "hash": "xsHNDoQWllco1l1yQAOT6Qqbdm5FPuZY9Pc3k8QV9N0=", "values": ["4", "acme", "logout", null, null]}
], "tree_frontier": null, "checkpoints": [
  "envault/appdb/public.orders_audit/acme\n3\n41wTlh9SDWyc0LmgCJ5xPc++HjQQF1mVOBF3vSnupmo=\ntime 2026-12-01T10:27:31.680995Z\n\n— envault GKCoJ6ideOQy5USw4eoyBk5xSXQc70RWlaIWxwzCns8+wkJznlzlV6xKb+QnuEM3TPwAd2biWyNAqg6a0fGGA+EKxQE=\n",
  "envault/appdb/public.orders_audit/acme\n4\nx6mb5ytuXSr+LhoxxP5dDx22QUtgpETDUNG0EsVjOXQ=\ntime 2026-12-01T10:27:31.684012Z\n\n— envault/appdb/public.orders_audit/acme NV616dO10FD1aryAerhJOygUzGiYIG3lxVyxIv/zbGPVt03e+qWZdUQL4aD34SfjOl8aIkTembRp3mBXLJtZLxJRug4=\n— witness.example/w1 vQJMFgAAAABpLW2Uo0nBoYYyK0XyPnqY/Yfx+VYB/IWRfebuFcKgevI30whsroVbXduCTTo02PDv1rPLEekuVUz40aw8fbZlAqmSAA==\n"
]}
$vector$ AS export_is_the_vector;
SELECT r->>'seq' AS seq, r->>'hash' AS hash, r->'values' AS values
  FROM json_array_elements(envault.export_chain('orders_audit', 'acme')->'rows') r;

-- the same chain exported from row 3 (since its envault_at): rows 3 and 4,
-- the frontier of the 2 rows before them (u64 size 2, then head-2: one
-- perfect subtree) and the checkpoints from row 3 on, as the document's
-- second export vector
SELECT envault.export_chain('orders_audit', 'acme', '2026-12-01T10:27:31.680440Z')::text
       = $vector${"format": "envault-chain-export-v2", "database": "appdb", "chain": "public.orders_audit", "tenant": "acme", "columns": [["id", "bigint"], ["tenant", "pg_catalog.text"], ["action", "pg_catalog.text"], ["amount", "numeric(10,2)"], ["approved", "boolean"]], "rows": [
  {"seq": 3, "at": "2026-12-01T10:27:31.680440Z", "prev": "sV/c08nXQdbOjk2wGU4IAJtl3ceH6pVxXxYCv/ZSIyw=", "hash": "41wTlh9SDWyc0LmgCJ5xPc++HjQQF1mVOBF3vSnupmo=", "values": ["3", "acme", "refund", "-3.25", "false"]},
  {"seq": 4, "at": "2026-12-01T10:27:31.683574Z", "prev": "41wTlh9SDWyc0LmgCJ5xPc++HjQQF1mVOBF3vSnupmo=", "hash": "xsHNDoQWllco1l1yQAOT6Qqbdm5FPuZY9Pc3k8QV9N0=", "values": ["4", "acme", "logout", null, null]}
], "tree_frontier": "AAAAAAAAAALVfu+Q6C6PeLhug23HUn4KL824tZ3WhiOCNHld6pR+GA==", "checkpoints": [
  "envault/appdb/public.orders_audit/acme\n3\n41wTlh9SDWyc0LmgCJ5xPc++HjQQF1mVOBF3vSnupmo=\ntime 2026-12-01T10:27:31.680995Z\n\n— envault GKCoJ6ideOQy5USw4eoyBk5xSXQc70RWlaIWxwzCns8+wkJznlzlV6xKb+QnuEM3TPwAd2biWyNAqg6a0fGGA+EKxQE=\n",
  "envault/appdb/public.orders_audit/acme\n4\nx6mb5ytuXSr+LhoxxP5dDx22QUtgpETDUNG0EsVjOXQ=\ntime 2026-12-01T10:27:31.684012Z\n\n— envault/appdb/public.orders_audit/acme NV616dO10FD1aryAerhJOygUzGiYIG3lxVyxIv/zbGPVt03e+qWZdUQL4aD34SfjOl8aIkTembRp3mBXLJtZLxJRug4=\n— witness.example/w1 vQJMFgAAAABpLW2Uo0nBoYYyK0XyPnqY/Yfx+VYB/IWRfebuFcKgevI30whsroVbXduCTTo02PDv1rPLEekuVUz40aw8fbZlAqmSAA==\n"
]}
$vector$ AS export_since_is_the_vector;
SELECT e->>'format' AS format, e->>'tree_frontier' AS tree_frontier,
       encode(decode(e->>'tree_frontier', 'base64'), 'hex') AS frontier_hex,
       json_array_length(e->'rows') AS rows, json_array_length(e->'checkpoints') AS checkpoints
  FROM envault.export_chain('orders_audit', 'acme', '2026-12-01T10:27:31.680440Z') e;

-- the Merkle tree block of the document: heads of every size, the audit
-- path of row 2 in the tree of 4 rows, the consistency proof from 3 to 4
SELECT (SELECT array_agg(encode((envault.tree_head('orders_audit', 'acme', s)).root, 'hex') ORDER BY s)
          FROM generate_series(1, 4) s)
       = ARRAY['e745a55f87046367d01c12d961a3b3fbd57a58d3452af5e5964bb668f1e17bb9',
               'd57eef90e82e8f78b86e836dc7527e0a2fcdb8b59dd686238234795dea947e18',
               '7934e0b3fc279cacfb48d5d6df5e672babef7b452e60b9eef4a5caaac0e3529b',
               'c7a99be72b6e5d2afe2e1a31c4fe5d0f1db6414b60a444c350d1b412c5633974'] AS heads_are_the_vector,
       (SELECT array_agg(encode(h, 'hex') ORDER BY o)
          FROM unnest(envault.inclusion_proof('orders_audit', 'acme', 2, 4)) WITH ORDINALITY p (h, o))
       = ARRAY['e745a55f87046367d01c12d961a3b3fbd57a58d3452af5e5964bb668f1e17bb9',
               '34581065d1c5b33e664ab93f765f707393dc4848b076cfb41430ab798339636d'] AS inclusion_is_the_vector,
       (SELECT array_agg(encode(h, 'hex') ORDER BY o)
          FROM unnest(envault.consistency_proof('orders_audit', 'acme', 3, 4)) WITH ORDINALITY p (h, o))
       = ARRAY['3542e507a55fb3da3b767d8576859c4e70c0fdde3f345fd899acdf90674f1320',
               '6be6ff30061d13e45d1698229de568e84ba0459f9fe002d0210d0c12ca98fbf5',
               'd57eef90e82e8f78b86e836dc7527e0a2fcdb8b59dd686238234795dea947e18'] AS consistency_is_the_vector;

-- C2SP signed notes: signature lines of unknown keys are ignored, whatever
-- their name (here not ASCII) and length (here ML-DSA-65's 3309 bytes);
-- a second line by the trusted key that does not verify makes the
-- checkpoint fail, next to the valid one
CREATE FUNCTION regress_sig_line(name text, raw bytea) RETURNS text LANGUAGE sql
AS $$ SELECT E'\u2014 ' || name || ' ' || translate(encode(raw, 'base64'), E'\n', '') || E'\n' $$;
INSERT INTO envault.checkpoints (chain_id, tenant, seq, head_hash, signed_at,
                                 key_name, key_id, note, signed_by)
SELECT chain_id, tenant, seq, head_hash, signed_at, key_name, key_id,
       note || regress_sig_line('témoin.example/w1', '\x01020304'::bytea || sha512('a')::bytea)
            || regress_sig_line('pq.example/log', '\x05060708'::bytea || decode(repeat('00', 3309), 'hex')),
       signed_by
  FROM envault.checkpoints
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'orders_audit'::regclass);
SELECT count(*) AS checkpoints, max(length(note)) > 4400 AS long_note
  FROM envault.checkpoints
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'orders_audit'::regclass);
SELECT * FROM envault.verify_chain('orders_audit');

-- a tree head and a head row's hash cannot pass for each other: the tree
-- head's signature line moved under the key's own name, with that name's
-- key ID (the signature does not cover the name), verifies as a head row's
-- hash, which row 4's hash is not; the row-3 checkpoint's line moved under
-- the origin verifies as a tree head, which row 3's hash is not
CREATE FUNCTION regress_relabel(note text, name text, key_id bytea) RETURNS text LANGUAGE sql
AS $$ SELECT split_part(note, E'\n\n', 1) || E'\n\n'
             || regress_sig_line(name, key_id || substring(decode(rtrim(split_part(
                    split_part(note, E'\n\n', 2), ' ', 3), E'\n'), 'base64') FROM 5)) $$;
BEGIN;
INSERT INTO envault.checkpoints (chain_id, tenant, seq, head_hash, signed_at,
                                 key_name, key_id, note, signed_by)
SELECT chain_id, tenant, seq, head_hash, signed_at, 'envault', '\x18a0a827',
       regress_relabel(note, 'envault', '\x18a0a827'), signed_by
  FROM envault.checkpoints
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'orders_audit'::regclass)
 ORDER BY checkpoint_id OFFSET 1 LIMIT 1;
SELECT seq, substring(note FROM E'\n\n(.*) ') AS signed_under FROM envault.checkpoints
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'orders_audit'::regclass)
 ORDER BY checkpoint_id DESC LIMIT 1;
SELECT * FROM envault.verify_chain('orders_audit');
ROLLBACK;
BEGIN;
INSERT INTO envault.checkpoints (chain_id, tenant, seq, head_hash, signed_at,
                                 key_name, key_id, note, signed_by)
SELECT chain_id, tenant, seq, head_hash, signed_at,
       'envault/appdb/public.orders_audit/acme', '\x355eb5e9',
       regress_relabel(note, 'envault/appdb/public.orders_audit/acme', '\x355eb5e9'), signed_by
  FROM envault.checkpoints
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'orders_audit'::regclass)
 ORDER BY checkpoint_id LIMIT 1;
SELECT seq, substring(note FROM E'\n\n(.*) ') AS signed_under FROM envault.checkpoints
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'orders_audit'::regclass)
 ORDER BY checkpoint_id DESC LIMIT 1;
SELECT * FROM envault.verify_chain('orders_audit');
ROLLBACK;

-- under the origin, as under the key's name, every line by the key must
-- verify: a second, invalid one makes the tree head fail
BEGIN;
INSERT INTO envault.checkpoints (chain_id, tenant, seq, head_hash, signed_at,
                                 key_name, key_id, note, signed_by)
SELECT chain_id, tenant, seq, head_hash, signed_at, key_name, key_id,
       note || regress_sig_line('envault/appdb/public.orders_audit/acme',
                                '\x355eb5e9'::bytea || decode(repeat('00', 64), 'hex')),
       signed_by
  FROM envault.checkpoints
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'orders_audit'::regclass)
 ORDER BY checkpoint_id OFFSET 1 LIMIT 1;
SELECT * FROM envault.verify_chain('orders_audit');
ROLLBACK;

INSERT INTO envault.checkpoints (chain_id, tenant, seq, head_hash, signed_at,
                                 key_name, key_id, note, signed_by)
SELECT chain_id, tenant, seq, head_hash, signed_at, key_name, key_id,
       note || regress_sig_line('envault', '\x18a0a827'::bytea || decode(repeat('00', 64), 'hex')),
       signed_by
  FROM envault.checkpoints
 WHERE chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'orders_audit'::regclass)
 ORDER BY checkpoint_id LIMIT 1;
SELECT * FROM envault.verify_chain('orders_audit');

-- in a database of another identity, the vector's checkpoints name another
-- database and do not count: a bad signature at the first number they sign
DELETE FROM envault.database_identity WHERE database_id = 'appdb';
SELECT envault.database_id() <> 'appdb' AS other_identity;
SELECT * FROM envault.verify_chain('orders_audit');
INSERT INTO envault.database_identity VALUES ('appdb', '2026-01-01T00:00:00Z');

-- a value changed behind envault's back: row 2, as in check_chain.py
SET session_replication_role = replica;
UPDATE orders_audit SET action = 'paiement recu' WHERE envault_seq = 2;
RESET session_replication_role;
SELECT * FROM envault.verify_chain('orders_audit');

DELETE FROM envault.database_identity WHERE database_id = 'appdb';
