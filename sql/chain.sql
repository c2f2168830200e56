-- chain: audit chains.  Turning a table into a chain, what every insert
-- gets, what is refused, checkpoints, verification, export and purging.
-- Tampering and its detection are in chain_tamper.
SET search_path = public, envault;
\set SHOW_CONTEXT never

-- regress.conf sets the checkpoint signing key (envault.signing_key); the
-- key file and its checks are tested in test/t/

-- An independent implementation of the row hash of docs/audit-chain.md,
-- in SQL, from the export: str(x) = u32 length || x, opt(x) = 0x00 for
-- NULL, else 0x01 || str(x).
CREATE FUNCTION regress_str(t text) RETURNS bytea LANGUAGE sql IMMUTABLE
AS $$ SELECT int4send(octet_length(t)) || convert_to(t, 'UTF8') $$;
CREATE FUNCTION regress_opt(t text) RETURNS bytea LANGUAGE sql IMMUTABLE
AS $$ SELECT CASE WHEN t IS NULL THEN '\x00'::bytea ELSE '\x01'::bytea || regress_str(t) END $$;
CREATE FUNCTION regress_row_hashes_ok(export json) RETURNS TABLE (seq bigint, ok boolean)
LANGUAGE sql AS $$
	SELECT (r->>'seq')::bigint,
	       sha256(convert_to('envault/v1/chain-row', 'UTF8')
	              || regress_str(export->>'chain')
	              || regress_opt(export->>'tenant')
	              || int8send((r->>'seq')::bigint)
	              || regress_str(r->>'at')
	              || decode(r->>'prev', 'base64')
	              || sha256(convert_to('envault/v1/chain-columns', 'UTF8')
	                        || int4send(json_array_length(export->'columns'))
	                        || (SELECT string_agg(regress_str(c->>0) || regress_str(c->>1), ''::bytea
	                                              ORDER BY n)
	                              FROM json_array_elements(export->'columns') WITH ORDINALITY AS cs(c, n)))
	              || (SELECT string_agg(regress_opt(v), ''::bytea ORDER BY n)
	                    FROM json_array_elements_text(r->'values') WITH ORDINALITY AS vs(v, n)))
	       = decode(r->>'hash', 'base64')
	  FROM json_array_elements(export->'rows') r
$$;

-- an ordinary table becomes a chain; the caller must own it
CREATE TABLE regress_audit (id bigserial PRIMARY KEY, tenant text NOT NULL,
                            action text, amount numeric);
SELECT envault.enable_audit_chain('regress_audit', 'tenant') AS rows_linked;
SELECT attname, format_type(atttypid, atttypmod), attnotnull
  FROM pg_attribute WHERE attrelid = 'regress_audit'::regclass AND attnum > 0
 ORDER BY attnum;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'regress_audit'::regclass ORDER BY tgname;
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'regress_audit'::regclass AND contype IN ('u', 'c') ORDER BY conname;
-- the head of each tenant's chain is kept in envault.chain_heads: the chain
-- needs no index of its own
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'regress_audit'::regclass;
SELECT tbl, identity, tenant_column, min_retention, builtin FROM envault.audit_chains
 ORDER BY chain_id;

-- refusals of enable_audit_chain
SELECT envault.enable_audit_chain('regress_audit', 'tenant');
CREATE VIEW regress_view AS SELECT 1 AS tenant;
SELECT envault.enable_audit_chain('regress_view', 'tenant');
CREATE TEMP TABLE regress_temp (tenant text);
SELECT envault.enable_audit_chain('regress_temp', 'tenant');
CREATE TABLE regress_reg (tenant text, t regclass);
SELECT envault.enable_audit_chain('regress_reg', 'tenant');
-- a column of a temporary type would vanish with the session that made it
CREATE DOMAIN pg_temp.regress_mood AS text;
CREATE TABLE regress_tempcol (tenant text, mood pg_temp.regress_mood);
SELECT envault.enable_audit_chain('regress_tempcol', 'tenant');
DROP TABLE regress_tempcol;
CREATE TABLE regress_taken (tenant text, envault_seq int);
SELECT envault.enable_audit_chain('regress_taken', 'tenant');
SELECT envault.enable_audit_chain('regress_taken', 'nope');
SELECT envault.enable_audit_chain(NULL, 'tenant');

-- every row gets the next number of its tenant's chain, 1, 2, 3 ..., the
-- previous row's hash and its own
INSERT INTO regress_audit (tenant, action, amount)
VALUES ('acme', 'login', NULL), ('acme', 'pay', 10.50), ('globex', 'login', 1),
       ('acme', 'logout', NULL);
INSERT INTO regress_audit (tenant, action)
SELECT CASE WHEN g % 3 = 0 THEN 'globex' ELSE 'acme' END, 'bulk ' || g
  FROM generate_series(1, 30) g;
SELECT tenant, count(*), min(envault_seq), max(envault_seq),
       count(DISTINCT envault_seq) AS distinct_seqs
  FROM regress_audit GROUP BY tenant ORDER BY tenant;
SELECT tenant, envault_seq, octet_length(envault_hash) AS hash_bytes,
       envault_prev = '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea AS from_genesis
  FROM regress_audit WHERE envault_seq = 1 ORDER BY tenant;
SELECT h.tenant, h.seq, h.hash = a.envault_hash AS newest_row
  FROM envault.chain_heads h JOIN envault.audit_chains c USING (chain_id)
  JOIN regress_audit a ON a.tenant = h.tenant AND a.envault_seq = h.seq
 WHERE c.tbl = 'regress_audit'::regclass ORDER BY h.tenant;
-- each link is the hash of the row before
SELECT count(*) AS links, count(*) FILTER (WHERE b.envault_prev = a.envault_hash) AS linked
  FROM regress_audit a JOIN regress_audit b
    ON b.tenant = a.tenant AND b.envault_seq = a.envault_seq + 1;
-- the inserter cannot choose the chain values
INSERT INTO regress_audit (tenant, action, envault_seq, envault_prev, envault_hash, envault_at)
VALUES ('acme', 'forged', 1, '\x00', '\x00', '2000-01-01');
SELECT envault_seq, octet_length(envault_hash), envault_at > '2020-01-01' AS at_now
  FROM regress_audit WHERE action = 'forged';

-- a rolled-back insert leaves no trace, nor does a rolled-back savepoint
BEGIN;
INSERT INTO regress_audit (tenant, action) VALUES ('acme', 'rolled back');
ROLLBACK;
BEGIN;
INSERT INTO regress_audit (tenant, action) VALUES ('acme', 'kept 1');
SAVEPOINT s;
INSERT INTO regress_audit (tenant, action) VALUES ('acme', 'undone'), ('globex', 'undone');
ROLLBACK TO SAVEPOINT s;
INSERT INTO regress_audit (tenant, action) VALUES ('acme', 'kept 2'), ('globex', 'kept 3');
COMMIT;
-- and an error caught inside a function
DO $$
BEGIN
	BEGIN
		INSERT INTO regress_audit (tenant, action) VALUES ('acme', 'undone');
		RAISE EXCEPTION 'undo it';
	EXCEPTION WHEN raise_exception THEN
		NULL;
	END;
	INSERT INTO regress_audit (tenant, action) VALUES ('acme', 'kept 4');
END
$$;
SELECT action, tenant, envault_seq FROM regress_audit
 WHERE action LIKE 'kept%' OR action IN ('rolled back', 'undone') ORDER BY id;
SELECT * FROM envault.verify_chain('regress_audit');

-- rows can only be added: for the owner, and a superuser, too
UPDATE regress_audit SET action = 'changed' WHERE id = 1;
DELETE FROM regress_audit WHERE id = 1;
TRUNCATE regress_audit;
INSERT INTO regress_audit (tenant, action) VALUES ('acme', 'x') ON CONFLICT DO NOTHING;
WITH i AS (INSERT INTO regress_audit (tenant, action) VALUES ('acme', 'x')
           ON CONFLICT DO NOTHING RETURNING 1)
SELECT count(*) FROM i;
-- nor can the table change shape, lose its triggers or be dropped
ALTER TABLE regress_audit ADD COLUMN extra int;
ALTER TABLE regress_audit DROP COLUMN amount;
ALTER TABLE regress_audit ALTER COLUMN amount TYPE float8;
ALTER TABLE regress_audit DISABLE TRIGGER ALL;
ALTER TABLE regress_audit RENAME COLUMN action TO what;
ALTER TABLE regress_audit RENAME TO regress_renamed;
ALTER TABLE regress_audit DROP CONSTRAINT regress_audit_pkey;
DROP TRIGGER zz_envault_chain ON regress_audit;
CREATE RULE regress_rule AS ON INSERT TO regress_audit DO INSTEAD NOTHING;
DROP TABLE regress_audit;
CREATE FUNCTION regress_touch() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN NEW.action := NEW.action || ' (touched)'; RETURN NEW; END $$;
CREATE TRIGGER zzz_touch BEFORE INSERT ON regress_audit
	FOR EACH ROW EXECUTE FUNCTION regress_touch();
CREATE TRIGGER zz_envault_chain_2 BEFORE INSERT ON regress_audit
	FOR EACH ROW EXECUTE FUNCTION envault.chain_insert();
-- nor renamed to fire after envault's
CREATE TRIGGER aaa_rename BEFORE INSERT ON regress_audit
	FOR EACH ROW EXECUTE FUNCTION regress_touch();
ALTER TRIGGER aaa_rename ON regress_audit RENAME TO zzz_rename;
ALTER TRIGGER zz_envault_chain ON regress_audit RENAME TO zz_envault_other;
DROP TRIGGER aaa_rename ON regress_audit;
-- no table may inherit from it: its rows would show without being chained
CREATE TABLE regress_child () INHERITS (regress_audit);
CREATE TABLE regress_child (LIKE regress_audit INCLUDING CONSTRAINTS);
ALTER TABLE regress_child INHERIT regress_audit;
DROP TABLE regress_child;
-- what does not change the rows is allowed
CREATE TRIGGER aaa_touch BEFORE INSERT ON regress_audit
	FOR EACH ROW EXECUTE FUNCTION regress_touch();
CREATE INDEX regress_audit_action ON regress_audit (action);
-- an index on the tenant and envault_seq lets one tenant's chain be checked
-- and exported without reading the others
CREATE INDEX regress_audit_chain ON regress_audit (tenant, envault_seq);
ALTER TABLE regress_audit SET (fillfactor = 90);
-- a primary key (as pg_restore adds it) sets NOT NULL, which changes no
-- hash; dropping NOT NULL stays refused (by the DDL guard, or, from
-- PostgreSQL 18 on, where a NOT NULL is a constraint, by the drop guard:
-- the messages differ, the SQLSTATE does not)
CREATE TABLE regress_pk (id int, tenant text);
SELECT envault.enable_audit_chain('regress_pk', 'tenant');
ALTER TABLE regress_pk ADD PRIMARY KEY (id);
ALTER TABLE regress_pk ALTER COLUMN tenant SET NOT NULL;
\set VERBOSITY sqlstate
ALTER TABLE regress_pk ALTER COLUMN envault_seq DROP NOT NULL;
\set VERBOSITY default
SELECT count(*) AS still_not_null FROM pg_attribute
 WHERE attrelid = 'regress_pk'::regclass AND attname = 'envault_seq' AND attnotnull;
SELECT envault.disable_audit_chain('regress_pk');
DROP TABLE regress_pk;
COMMENT ON TABLE regress_audit IS 'chained';
INSERT INTO regress_audit (tenant, action) VALUES ('globex', 'after DDL');
SELECT action FROM regress_audit WHERE action LIKE 'after DDL%';
DROP TRIGGER aaa_touch ON regress_audit;

-- the chain without tenant: rows whose tenant column is NULL
CREATE TABLE regress_events (id serial PRIMARY KEY, tenant_id bigint, what text);
SELECT envault.enable_audit_chain('regress_events', 'tenant_id');
INSERT INTO regress_events (tenant_id, what) VALUES (7, 'a'), (NULL, 'b'), (7, 'c'), (NULL, 'd');
SELECT tenant_id, what, envault_seq FROM regress_events ORDER BY id;
SELECT * FROM envault.verify_chain('regress_events');
SELECT * FROM envault.verify_chain('regress_events', '7');

-- existing rows are linked in their physical order when the chain is enabled
CREATE TABLE regress_existing (tenant uuid, note text);
INSERT INTO regress_existing VALUES
	('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'one'), ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'two'),
	('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', 'three');
SELECT envault.enable_audit_chain('regress_existing', 'tenant') AS rows_linked;
SELECT tenant, note, envault_seq FROM regress_existing ORDER BY note;
SELECT * FROM envault.verify_chain('regress_existing');
-- a tenant given as text is read as the column's type
SELECT * FROM envault.verify_chain('regress_existing', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11');
-- jsonb is hashed as exactly the text of its output function
CREATE TABLE regress_json (id int, tenant text, j jsonb);
SELECT envault.enable_audit_chain('regress_json', 'tenant') AS rows_linked;
INSERT INTO regress_json VALUES
	(1, 't', 'null'), (2, 't', 'true'), (3, 't', 'false'), (4, 't', '0'),
	(5, 't', '-1.50e3'), (6, 't', '1e-7'), (7, 't', '"text"'), (8, 't', '""'),
	(9, 't', '[]'), (10, 't', '{}'), (11, 't', '[[], {}, [[]], {"a": {}}, [{}]]'),
	(12, 't', '{"b": 1, "a": [1, "x", null, true, {"c": false}], "": "empty key", "aa": [[1, 2], [3]]}'),
	(13, 't', to_jsonb(E'quote " backslash \\ slash / tab \t nl \n cr \r bs \b ff \f ctl \u0001 \u001f del \u007f \u00e9 \U0001F600'::text)),
	(14, 't', jsonb_build_object(E'k\n"', E'v\\', 'nested',
	                             jsonb_build_array(1.0, 1.10, -0.0, 123456789012345678901234567890, 'NaN'::text))),
	(15, 't', NULL);
INSERT INTO regress_json
SELECT 100 + g, 't', jsonb_build_object(
	(SELECT string_agg(chr(1 + (g * 7919 + i * 104729) % 300), '') FROM generate_series(1, 12) i),
	(SELECT string_agg(chr(1 + (g * 104723 + i * 7907) % 300), '') FROM generate_series(1, 40) i),
	'n', g * 1.25, 'a', jsonb_build_array(g, g::text, g % 2 = 0, NULL))
FROM generate_series(1, 300) g;
SELECT count(*) AS rows,
       count(*) FILTER (WHERE e.value IS NOT DISTINCT FROM r.j::text) AS same_as_output
  FROM regress_json r
  JOIN (SELECT (x -> 'values' ->> 0)::int AS id, x -> 'values' ->> 2 AS value
          FROM json_array_elements(envault.export_chain('regress_json', 't') -> 'rows') x) e
 USING (id);
SELECT tenant, rows_checked, ok FROM envault.verify_chain('regress_json');
SELECT envault.disable_audit_chain('regress_json');
DROP TABLE regress_json;
-- ... also by a key administrator who is not a superuser, owning the table
CREATE ROLE regress_chain_owner IN ROLE envault_admin;
CREATE TABLE regress_owned (tenant text, note text);
INSERT INTO regress_owned VALUES ('x', 'one'), ('y', 'two'), ('x', 'three');
ALTER TABLE regress_owned OWNER TO regress_chain_owner;
SET ROLE regress_chain_owner;
SELECT envault.enable_audit_chain('regress_owned', 'tenant') AS rows_linked;
INSERT INTO regress_owned VALUES ('x', 'four');
SELECT tenant, rows_checked, ok FROM envault.verify_chain('regress_owned');
RESET ROLE;
SELECT h.tenant, h.seq, h.builtin FROM envault.chain_heads h
  JOIN envault.audit_chains c USING (chain_id)
 WHERE c.tbl = 'regress_owned'::regclass ORDER BY h.tenant;
SELECT envault.disable_audit_chain('regress_owned');
DROP TABLE regress_owned;
DROP ROLE regress_chain_owner;
-- with rows and UPDATE triggers, linking them would fire the triggers
CREATE TABLE regress_upd (tenant text);
INSERT INTO regress_upd VALUES ('x');
CREATE TRIGGER t BEFORE UPDATE ON regress_upd FOR EACH ROW EXECUTE FUNCTION regress_touch();
SELECT envault.enable_audit_chain('regress_upd', 'tenant');

-- who may: enabling takes owning the table, verifying and exporting its
-- SELECT privilege, without row-level security applying to the caller
CREATE ROLE regress_chain_admin IN ROLE envault_admin;
SET ROLE regress_chain_admin;
SELECT envault.enable_audit_chain('regress_upd', 'tenant');
SELECT * FROM envault.verify_chain('regress_audit');
SELECT envault.export_chain('regress_audit', 'acme') IS NOT NULL;
SELECT envault.purge_chain('regress_audit', 'acme', now());
RESET ROLE;
GRANT SELECT ON regress_audit TO regress_chain_admin;
SET ROLE regress_chain_admin;
SELECT tenant, ok FROM envault.verify_chain('regress_audit');
RESET ROLE;
ALTER TABLE regress_audit ENABLE ROW LEVEL SECURITY;
SET ROLE regress_chain_admin;
SELECT tenant, ok FROM envault.verify_chain('regress_audit');
RESET ROLE;
ALTER TABLE regress_audit DISABLE ROW LEVEL SECURITY;
REVOKE SELECT ON regress_audit FROM regress_chain_admin;
DROP ROLE regress_chain_admin;
SET ROLE envault_user;
SELECT * FROM envault.verify_chain('regress_audit');
RESET ROLE;

-- Checkpoints: the Merkle tree head of each tenant's chain, signed under
-- its origin as key name; again only once the chain has grown
-- (the origin names the database by envault.database_id(), a random UUID
-- made by CREATE EXTENSION, shown here as <database-id>)
SELECT envault.database_id() ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS random_uuid,
       envault.database_id() = (SELECT database_id FROM envault.database_identity) AS the_one_row;
SELECT tenant, seq, replace(split_part(checkpoint, E'\n', 1),
                            envault.database_id(), '<database-id>') AS origin,
       split_part(checkpoint, E'\n', 2) AS seq_line,
       length(split_part(checkpoint, E'\n', 3)) AS hash_b64,
       split_part(checkpoint, E'\n', 4) ~ '^time \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$' AS time_line,
       split_part(checkpoint, E'\n', 5) = '' AS blank,
       split_part(checkpoint, E'\n', 6) ~ ('^— ' || split_part(checkpoint, E'\n', 1)
                                            || ' [A-Za-z0-9+/]{91}=$') AS signed_under_origin
  FROM envault.checkpoint('regress_audit');
SELECT count(*) AS again FROM envault.checkpoint('regress_audit');
INSERT INTO regress_audit (tenant, action) VALUES ('acme', 'more');
SELECT tenant, seq FROM envault.checkpoint('regress_audit');
SELECT tenant, seq FROM envault.checkpoint('regress_audit', 'globex');
SELECT tenant, seq FROM envault.checkpoint('regress_events');
-- only committed rows are signed: not those the same transaction adds
BEGIN;
INSERT INTO regress_audit (tenant, action) VALUES ('acme', 'not yet committed');
SELECT tenant, seq FROM envault.checkpoint('regress_audit');
ROLLBACK;
-- each is stored, with what it signs: the tree head of its rows (the hash
-- line), and the hash of its last row
SELECT c.tenant, c.seq, c.head_hash = (SELECT envault_hash FROM regress_audit a
                                        WHERE a.tenant = c.tenant AND a.envault_seq = c.seq) AS head,
       c.tree_root = (envault.tree_head('regress_audit', c.tenant, c.seq)).root AS tree_root,
       encode(c.tree_root, 'base64') = split_part(c.note, E'\n', 3) AS signed_root,
       replace(c.key_name, envault.database_id(), '<database-id>') AS key_name,
       c.key_name = split_part(c.note, E'\n', 1) AS key_name_is_origin
  FROM envault.checkpoints c JOIN envault.audit_chains a USING (chain_id)
 WHERE a.tbl = 'regress_audit'::regclass ORDER BY c.checkpoint_id;
-- the public key, as a signed-note verifier key (its name is that of
-- checkpoints of envault 0.2.0); the key ID of a checkpoint is that of the
-- same key under the checkpoint's origin
SELECT split_part(envault.signing_public_key(), '+', 1) AS name,
       split_part(envault.signing_public_key(), '+', 3) AS key,
       (SELECT substr(sha256(convert_to(c.key_name || E'\n', 'UTF8') ||
                             substr(decode(split_part(envault.signing_public_key(), '+', 3), 'base64'), 1, 33)),
                      1, 4) = c.key_id
          FROM envault.checkpoints c ORDER BY checkpoint_id LIMIT 1) AS key_id_under_origin;
SELECT * FROM envault.verify_chain('regress_audit');
-- checkpoints are append-only too
UPDATE envault.checkpoints SET seq = 1;
DELETE FROM envault.checkpoints;

-- Export: the rows of one tenant's chain with their canonical values and
-- the checkpoints that sign them; the SQL implementation above recomputes
-- every row hash from it
SELECT json_typeof(e), e->>'format' AS format, e->>'chain' AS chain, e->>'tenant' AS tenant,
       e->'columns' AS columns, json_array_length(e->'rows') AS rows,
       json_array_length(e->'checkpoints') AS checkpoints
  FROM envault.export_chain('regress_audit', 'acme') e;
SELECT count(*) AS rows, count(*) FILTER (WHERE ok) AS hashes_recomputed
  FROM regress_row_hashes_ok(envault.export_chain('regress_audit', 'acme'));
SELECT count(*) AS rows, count(*) FILTER (WHERE ok) AS hashes_recomputed
  FROM regress_row_hashes_ok(envault.export_chain('regress_events', NULL));
SELECT json_array_length(envault.export_chain('regress_audit', 'acme', until => '2000-01-01')->'rows') AS none;
SELECT replace(envault.export_chain('regress_audit', 'nobody')::text,
               envault.database_id(), '<database-id>');

-- Canonical values: the same whatever the session's settings
CREATE TABLE regress_types (tenant text, b boolean, i2 smallint, i4 int, i8 bigint,
	f4 real, f8 double precision, n numeric, t text, vc varchar(5), c char(4),
	nm name, by bytea, u uuid, d date, tm time, ttz timetz, ts timestamp,
	tstz timestamptz, iv interval, js json, jb jsonb, ip inet, m money,
	arr int[], tsarr timestamptz[], e_infinite timestamptz);
SELECT envault.enable_audit_chain('regress_types', 'tenant');
INSERT INTO regress_types VALUES ('t', true, -2, 2147483647, -9223372036854775808,
	1.5, 0.1, 123.4500, 'tëxt', 'ab', 'ab', 'nm', '\x00ff', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
	'2026-02-28', '13:14:15.5', '13:14:15+05:30', '2026-02-28 13:14:15.000001',
	'2026-02-28 13:14:15.25+01', '1 year 2 days 3 hours', '{"b": 1,  "a": [2]}',
	'{"b": 1,  "a": [2]}', '192.168.0.1/24', 12.34, '{1,2,NULL}',
	'{"2026-01-01 00:00:00+00"}', 'infinity');
INSERT INTO regress_types (tenant, f8, f4, n, d) VALUES ('t', 'NaN', '-Infinity', 'NaN', '0044-03-15 BC');
SET DateStyle = 'German, DMY';
SET TimeZone = 'America/New_York';
SET IntervalStyle = 'sql_standard';
SET extra_float_digits = -3;
SET bytea_output = 'escape';
SELECT c->>0 AS name, c->>1 AS type, r1->>(n::int - 1) AS first_row, r2->>(n::int - 1) AS second_row
  FROM envault.export_chain('regress_types', 't') e,
       json_array_elements(e->'columns') WITH ORDINALITY AS cs(c, n),
       LATERAL (SELECT e->'rows'->0->'values' AS r1, e->'rows'->1->'values' AS r2) r
 ORDER BY n;
SELECT * FROM envault.verify_chain('regress_types');
SELECT count(*) FILTER (WHERE ok) AS hashes_recomputed
  FROM regress_row_hashes_ok(envault.export_chain('regress_types', 't'));
RESET DateStyle;
RESET TimeZone;
RESET IntervalStyle;
RESET extra_float_digits;
RESET bytea_output;

-- Purging: rows before the newest checkpoint older than older_than go; that
-- checkpoint's row stays as the anchor the chain verifies from
SELECT envault.purge_chain('regress_events', '7', '2000-01-01');
SELECT envault.purge_chain('regress_audit', 'acme', clock_timestamp()) AS purged;
SELECT min(envault_seq), max(envault_seq), count(*) FROM regress_audit WHERE tenant = 'acme';
-- the Merkle tree was built before the rows went: its heads and proofs
-- above the anchor stay (chain_tree tests the tree itself)
SELECT h.tree_size = (SELECT max(envault_seq) FROM regress_audit WHERE tenant = 'acme') AS whole_tree,
       cardinality(envault.inclusion_proof('regress_audit', 'acme', h.tree_size, h.tree_size)) > 0 AS proof
  FROM envault.tree_head('regress_audit', 'acme') h;
SELECT * FROM envault.verify_chain('regress_audit');
SELECT tenant, seq, rows_purged FROM envault.chain_anchors;
SELECT envault.purge_chain('regress_audit', 'acme', clock_timestamp()) AS nothing_more;
SELECT count(*) AS rows, count(*) FILTER (WHERE ok) AS hashes_recomputed,
       min(seq) AS starts_at
  FROM regress_row_hashes_ok(envault.export_chain('regress_audit', 'acme'));
-- a minimum retention can be set and only raised
SELECT envault.set_chain_retention('regress_audit', '30 days');
SELECT envault.set_chain_retention('regress_audit', '1 day');
\set VERBOSITY terse
SELECT envault.purge_chain('regress_audit', 'globex', clock_timestamp());
\set VERBOSITY default
SELECT min_retention FROM envault.audit_chains WHERE tbl = 'regress_audit'::regclass;

-- envault's own key events are a chain
SELECT count(*) > 0 AS chains, bool_and(ok) AS all_ok,
       sum(rows_checked) = (SELECT count(*) FROM envault.key_events) AS every_event
  FROM envault.verify_chain('envault.key_events');
SELECT operation, detail FROM envault.key_events
 WHERE operation LIKE 'audit chain%' ORDER BY event_id;

-- disabling a chain keeps its rows, drops its triggers and checkpoints, and
-- makes the table an ordinary one again
SELECT envault.disable_audit_chain('regress_events');
SELECT count(*) AS rows FROM regress_events;
SELECT count(*) AS chain_triggers FROM pg_trigger WHERE tgrelid = 'regress_events'::regclass;
UPDATE regress_events SET what = 'changed';
DROP TABLE regress_events;
SELECT envault.verify_chain('regress_view');
SELECT envault.disable_audit_chain('envault.key_events');

-- rows routed to a chained partition through its parent: PostgreSQL fires no
-- statement trigger on the partition, and the heads are written at commit
-- instead; every transaction continues the chain where the last one ended
-- (since 0.3.0 a chained table cannot become a partition, nor a partition
-- be chained: chain_meaning tests it; such a partition made by 0.2.0 is
-- made here by a superuser with the guard disabled)
CREATE TABLE regress_part (tenant text NOT NULL, v text);
SELECT envault.enable_audit_chain('regress_part', 'tenant');
CREATE TABLE regress_parent (LIKE regress_part) PARTITION BY LIST (tenant);
ALTER EVENT TRIGGER envault_chain_ddl_guard DISABLE;
ALTER TABLE regress_parent ATTACH PARTITION regress_part FOR VALUES IN ('a', 'b');
ALTER EVENT TRIGGER envault_chain_ddl_guard ENABLE;
UPDATE envault.audit_chains SET columns_meaning = envault.chain_meaning(tbl)
 WHERE tbl = 'regress_part'::regclass;
INSERT INTO regress_parent (tenant, v) VALUES ('a', '1');
INSERT INTO regress_parent (tenant, v) VALUES ('a', '2'), ('b', '3');
BEGIN;
INSERT INTO regress_parent (tenant, v) VALUES ('a', '4');
SAVEPOINT s;
INSERT INTO regress_parent (tenant, v) VALUES ('a', 'rolled back');
ROLLBACK TO s;
COMMIT;
INSERT INTO regress_part (tenant, v) VALUES ('a', '5');
SELECT tenant, envault_seq, v FROM regress_part ORDER BY v;
SELECT tenant, rows_checked, ok, first_bad_seq, reason
  FROM envault.verify_chain('regress_part');

-- Writers of one tenant's chain try for its lock for this many microseconds,
-- yielding the CPU, before they queue and sleep (a superuser setting)
SHOW envault.chain_lock_spin;
SELECT context, unit, min_val, max_val FROM pg_settings WHERE name = 'envault.chain_lock_spin';
