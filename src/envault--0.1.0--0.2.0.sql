/*
 * envault upgrade script 0.1.0 -> 0.2.0.  Run by ALTER EXTENSION envault
 * UPDATE; it leaves a 0.1.0 database exactly as CREATE EXTENSION envault
 * leaves a new one (test/t/060_upgrade.pl compares the two, object by
 * object), and keeps every row: no ciphertext is re-encrypted, no key is
 * rewrapped, no token changes.
 *
 * What changes for existing data:
 * - envault.key_events, append-only by a PL/pgSQL trigger in 0.1.0,
 *   becomes an audit chain per tenant like in a new install: its existing
 *   rows are linked to their tenants' chains by enable_audit_chain()
 *   (envault_at of each is the time of the upgrade; "at" keeps the time of
 *   the event), and verify_chain() checks them from then on;
 * - data_keys.purpose also accepts "_secrets", the purpose of the secrets
 *   store;
 * - revoke_token() and revoke_tenant_tokens() are C functions (not
 *   SECURITY DEFINER any more), which also end the tenant contexts the
 *   tokens set in other sessions; isolate_table(), isolation_report() and
 *   reencrypt_column() have the bodies of 0.2.0.
 * Everything else is new: audit chains, checkpoints, the access log, the
 * secrets store, the pgcrypto migration.
 *
 * The objects are created in the order of src/envault.sql, so that the
 * chain ids match a new install (access_log 1, key_events 2): checkpoints
 * are dumped with their chain id, and a restore recreates envault's own
 * chains with the ids of a new install.
 */
\echo Use "ALTER EXTENSION envault UPDATE TO '0.2.0'" to load this file. \quit

-- Key operations wait until the upgrade commits: key_events is rewritten
-- while it becomes a chain, and no row may be added in between.
LOCK TABLE envault.key_events, envault.data_keys IN ACCESS EXCLUSIVE MODE;

-- The secrets store keeps its values under the purpose "_secrets".
ALTER TABLE envault.data_keys DROP CONSTRAINT data_keys_purpose_check,
	ADD CONSTRAINT data_keys_purpose_check
	CHECK (purpose OPERATOR(pg_catalog.~) '^((_bidx\.)?[a-z0-9][a-z0-9_.-]{0,62}|_secrets)$'
		   AND pg_catalog.length(purpose) OPERATOR(pg_catalog.<=) 63);

-- key_events: the audit chain (enabled below, after access_log, as in a
-- new install) replaces the append-only trigger; the trigger would also
-- refuse the updates that link the existing rows.
COMMENT ON TABLE envault.key_events IS
	'Every key operation: who, when, which key; an audit chain per tenant, no key material';
DROP TRIGGER key_events_append_only ON envault.key_events;
DROP TRIGGER key_events_no_truncate ON envault.key_events;
DROP FUNCTION envault.key_events_append_only();

-- Data path

CREATE FUNCTION envault.key_state(ciphertext bytea)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_key_state'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION envault.key_state(bytea) IS
	'State of the data key a value is under: active, rotated, retired, destroyed, tenant revoked or tenant destroyed; decrypts nothing';

-- API tokens: in C, and they end the tenant contexts of revoked tokens

CREATE OR REPLACE FUNCTION envault.revoke_token(token_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'envault_revoke_token'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.revoke_token(text) IS
	'Revoke a token at once, ending the tenant contexts it set in every session; false if it was already revoked';

CREATE OR REPLACE FUNCTION envault.revoke_tenant_tokens(tenant text)
RETURNS integer
AS 'MODULE_PATHNAME', 'envault_revoke_tenant_tokens'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.revoke_tenant_tokens(text) IS
	'Revoke every token of a tenant at once; returns how many were revoked';

-- Row-level security

CREATE FUNCTION envault.isolation_expr(tbl regclass, tenant_column name)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	-- (SELECT ...) makes the tenant an InitPlan: evaluated once per query
	SELECT pg_catalog.format('(%I OPERATOR(pg_catalog.=) (SELECT envault.current_tenant())::%s)',
							 a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod))
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid OPERATOR(pg_catalog.=) tbl
	   AND a.attname OPERATOR(pg_catalog.=) tenant_column
	   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
$$;
COMMENT ON FUNCTION envault.isolation_expr(regclass, name) IS
	'The expression of the policy isolate_table creates for a tenant column (NULL if there is no such column)';

CREATE FUNCTION envault.policy_isolates(tbl regclass, expr text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'envault_policy_isolates'
LANGUAGE C STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION envault.policy_isolates(regclass, text) IS
	'Is envault_tenant_isolation on the table exactly the policy isolate_table creates with this expression (permissive, all commands, PUBLIC, USING and WITH CHECK)?';

CREATE OR REPLACE FUNCTION envault.isolate_table(tbl regclass, tenant_column name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	expr text := envault.isolation_expr(tbl, tenant_column);
BEGIN
	IF expr IS NULL THEN
		RAISE EXCEPTION 'column "%" of relation % does not exist', tenant_column, tbl
			USING ERRCODE = 'undefined_column';
	END IF;
	EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
	EXECUTE pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);

	-- the same policy again changes nothing; a policy of that name with any
	-- other definition (another column, altered expressions, restrictive,
	-- for some commands or roles only) is replaced
	IF envault.policy_isolates(tbl, expr) THEN
		RETURN;
	END IF;
	IF EXISTS (SELECT FROM pg_catalog.pg_policy p
				WHERE p.polrelid OPERATOR(pg_catalog.=) tbl
				  AND p.polname OPERATOR(pg_catalog.=) 'envault_tenant_isolation') THEN
		EXECUTE pg_catalog.format('DROP POLICY envault_tenant_isolation ON %s', tbl);
	END IF;
	EXECUTE pg_catalog.format('CREATE POLICY envault_tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING %s WITH CHECK %s',
							  tbl, expr, expr);
END
$$;
COMMENT ON FUNCTION envault.isolate_table(regclass, name) IS
	'Enable and force row-level security with a policy on the current tenant';

CREATE OR REPLACE FUNCTION envault.isolation_report()
RETURNS TABLE (table_name regclass, tenant_column name, owner name,
			   rls_enabled boolean, rls_forced boolean, policies text[],
			   isolated boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT c.oid::pg_catalog.regclass, a.attname, r.rolname,
		   c.relrowsecurity, c.relforcerowsecurity,
		   COALESCE((SELECT pg_catalog.array_agg(p.polname::pg_catalog.text ORDER BY p.polname)
					   FROM pg_catalog.pg_policy p
					  WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid), '{}'),
		   c.relrowsecurity AND c.relforcerowsecurity
		   -- judged by the policy's definition, not by its name
		   AND envault.policy_isolates(c.oid, envault.isolation_expr(c.oid, a.attname))
		   -- any other permissive policy would widen access beyond the tenant
		   AND NOT EXISTS (SELECT FROM pg_catalog.pg_policy p
						   WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid
							 AND p.polpermissive
							 AND p.polname OPERATOR(pg_catalog.<>) 'envault_tenant_isolation')
	  FROM pg_catalog.pg_class c
	  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
	  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) c.relowner
	  JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid
	   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
	 WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog."char"[])
	   AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{pg_catalog,information_schema,envault}'::pg_catalog.name[])
	   AND n.nspname OPERATOR(pg_catalog.!~) '^pg_(toast|temp)'
	   AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) ANY (
			pg_catalog.string_to_array(pg_catalog.replace(
				COALESCE(pg_catalog.current_setting('envault.tenant_columns', true),
						 'tenant,tenant_id'), ' ', ''), ','))
	 ORDER BY c.oid::pg_catalog.regclass::pg_catalog.text, a.attname
$$;
COMMENT ON FUNCTION envault.isolation_report() IS
	'Every table with a tenant column, and whether envault isolates it';

-- Key lifecycle

CREATE OR REPLACE PROCEDURE envault.reencrypt_column(tbl regclass, col name,
										  aad_col name DEFAULT NULL,
										  batch_size integer DEFAULT 10000)
LANGUAGE plpgsql
-- No SET search_path: PostgreSQL forbids COMMIT in a procedure with SET
-- options.  It runs with its caller's rights (SECURITY INVOKER), and every
-- name in it is schema-qualified, the types of its variables too: they are
-- looked up on the caller's search_path when the procedure is compiled.
AS $$
DECLARE
	pk pg_catalog.name;
	pktype pg_catalog.text;
	coltype pg_catalog.regtype;
	aad_expr pg_catalog.text;
	remaining bigint;
	done bigint := 0;
	hi pg_catalog.text;
	lo pg_catalog.text;
	n bigint;
	m bigint;
	skipped bigint;
	bounds pg_catalog.text;
	s_retired bigint;
	s_destroyed bigint;
	s_revoked bigint;
	s_shredded bigint;
	n_retired bigint := 0;
	n_destroyed bigint := 0;
	n_revoked bigint := 0;
	n_shredded bigint := 0;
BEGIN
	IF batch_size IS NULL OR batch_size OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT a.atttypid::pg_catalog.regtype INTO coltype
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) col
	   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
	IF coltype IS NULL THEN
		RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl
			USING ERRCODE = 'undefined_column';
	END IF;
	IF coltype OPERATOR(pg_catalog.<>) 'pg_catalog.bytea'::pg_catalog.regtype THEN
		RAISE EXCEPTION 'column "%" of relation % is not of type bytea', col, tbl
			USING ERRCODE = 'datatype_mismatch';
	END IF;
	-- the key's type by schema and name: format_type() leaves pg_catalog's
	-- types unqualified, and the casts below run on the caller's search_path
	SELECT a.attname, pg_catalog.format('%I.%I', tn.nspname, t.typname) INTO pk, pktype
	  FROM pg_catalog.pg_index i
	  JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
	   AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
	  JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
	  JOIN pg_catalog.pg_namespace tn ON tn.oid OPERATOR(pg_catalog.=) t.typnamespace
	 WHERE i.indrelid OPERATOR(pg_catalog.=) tbl AND i.indisprimary
	   AND i.indnatts OPERATOR(pg_catalog.=) 1;
	IF pk IS NULL THEN
		RAISE EXCEPTION 'relation % has no single-column primary key', tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'reencrypt_column walks the table in primary key order, one batch per transaction.';
	END IF;
	IF aad_col IS NOT NULL AND NOT EXISTS (
			SELECT FROM pg_catalog.pg_attribute a
			 WHERE a.attrelid OPERATOR(pg_catalog.=) tbl
			   AND a.attname OPERATOR(pg_catalog.=) aad_col
			   AND a.atttypid OPERATOR(pg_catalog.=) 'pg_catalog.bytea'::pg_catalog.regtype
			   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
		RAISE EXCEPTION 'aad column "%" of relation % does not exist or is not of type bytea', aad_col, tbl
			USING ERRCODE = 'datatype_mismatch',
				  HINT = 'Keep the associated data in a bytea column, for example GENERATED ALWAYS AS (int4send(id)) STORED.';
	END IF;
	aad_expr := CASE WHEN aad_col IS NULL THEN 'NULL'
					 ELSE pg_catalog.format('%I', aad_col) END;

	-- Rows under a rotated data key are re-encrypted; rows under a key that
	-- opens nothing (retired or destroyed, or of a revoked or destroyed
	-- tenant) cannot be, and are skipped and counted.
	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.count(*) FILTER (WHERE s OPERATOR(pg_catalog.=) ''rotated''),'
		'       pg_catalog.count(*) FILTER (WHERE s OPERATOR(pg_catalog.<>) ALL (''{active,rotated}''))'
		'  FROM (SELECT envault.key_state(%I) AS s FROM %s WHERE %I IS NOT NULL) x',
		col, tbl, col) INTO remaining, n;
	RAISE NOTICE 'reencrypt_column: % rows of % to re-encrypt', remaining, tbl;
	IF n OPERATOR(pg_catalog.>) 0 THEN
		RAISE NOTICE 'reencrypt_column: % rows of % are under keys that open nothing and will be skipped', n, tbl;
	END IF;

	-- Each batch's bounds; with rows to skip, also their counts by reason
	-- (which costs reading the column; without, only the key is read, and
	-- a row that becomes unusable during the run is still skipped, and
	-- counted at the end as not done).
	bounds := pg_catalog.format(
		CASE WHEN n OPERATOR(pg_catalog.>) 0 THEN
			'SELECT pg_catalog.max(k)::pg_catalog.text, pg_catalog.count(*),'
			'       pg_catalog.count(*) FILTER (WHERE s OPERATOR(pg_catalog.=) ''retired''),'
			'       pg_catalog.count(*) FILTER (WHERE s OPERATOR(pg_catalog.=) ''destroyed''),'
			'       pg_catalog.count(*) FILTER (WHERE s OPERATOR(pg_catalog.=) ''tenant revoked''),'
			'       pg_catalog.count(*) FILTER (WHERE s OPERATOR(pg_catalog.=) ''tenant destroyed'')'
			'  FROM (SELECT %1$I AS k, envault.key_state(%5$I) AS s FROM %2$s'
			'         WHERE $1 IS NULL OR %1$I OPERATOR(pg_catalog.>) $1::%3$s'
			'         ORDER BY %1$I LIMIT %4$s) b'
		ELSE
			'SELECT pg_catalog.max(k)::pg_catalog.text, pg_catalog.count(*), 0, 0, 0, 0'
			'  FROM (SELECT %1$I AS k FROM %2$s'
			'         WHERE $1 IS NULL OR %1$I OPERATOR(pg_catalog.>) $1::%3$s'
			'         ORDER BY %1$I LIMIT %4$s) b'
		END, pk, tbl, pktype, batch_size, col);

	-- walk the table in primary key order, one committed batch at a time;
	-- a restart walks it again, but rows already current are not rewritten
	LOOP
		EXECUTE bounds INTO hi, n, s_retired, s_destroyed, s_revoked, s_shredded USING lo;
		EXIT WHEN n OPERATOR(pg_catalog.=) 0;
		n_retired := n_retired OPERATOR(pg_catalog.+) s_retired;
		n_destroyed := n_destroyed OPERATOR(pg_catalog.+) s_destroyed;
		n_revoked := n_revoked OPERATOR(pg_catalog.+) s_revoked;
		n_shredded := n_shredded OPERATOR(pg_catalog.+) s_shredded;
		EXECUTE pg_catalog.format(
			'UPDATE %2$s SET %3$I = envault.env_reencrypt(%3$I, %4$s)'
			' WHERE ($1 IS NULL OR %1$I OPERATOR(pg_catalog.>) $1::%5$s)'
			'   AND %1$I OPERATOR(pg_catalog.<=) $2::%5$s'
			'   AND %3$I IS NOT NULL'
			'   AND envault.key_state(%3$I) OPERATOR(pg_catalog.=) ''rotated''',
			pk, tbl, col, aad_expr, pktype) USING lo, hi;
		GET DIAGNOSTICS m = ROW_COUNT;
		done := done OPERATOR(pg_catalog.+) m;
		remaining := GREATEST(remaining OPERATOR(pg_catalog.-) m, 0);
		lo := hi;
		COMMIT;
		IF m OPERATOR(pg_catalog.>) 0 THEN
			RAISE NOTICE 'reencrypt_column: % rows re-encrypted, % remaining', done, remaining;
		END IF;
	END LOOP;
	skipped := n_retired OPERATOR(pg_catalog.+) n_destroyed
			   OPERATOR(pg_catalog.+) n_revoked OPERATOR(pg_catalog.+) n_shredded;
	IF remaining OPERATOR(pg_catalog.>) 0 THEN
		RAISE NOTICE 'reencrypt_column: % of the rows counted at the start were not re-encrypted (deleted, or their keys changed state during the run); call it again to see why', remaining;
	END IF;
	IF skipped OPERATOR(pg_catalog.=) 0 THEN
		RAISE NOTICE 'reencrypt_column: done, % rows re-encrypted', done;
	ELSE
		RAISE NOTICE 'reencrypt_column: done, % rows re-encrypted, % skipped: %', done, skipped,
			pg_catalog.array_to_string(ARRAY[
				CASE WHEN n_retired OPERATOR(pg_catalog.>) 0
					 THEN n_retired OPERATOR(pg_catalog.||) ' under retired data keys' END,
				CASE WHEN n_destroyed OPERATOR(pg_catalog.>) 0
					 THEN n_destroyed OPERATOR(pg_catalog.||) ' under destroyed data keys' END,
				CASE WHEN n_revoked OPERATOR(pg_catalog.>) 0
					 THEN n_revoked OPERATOR(pg_catalog.||) ' of revoked tenants' END,
				CASE WHEN n_shredded OPERATOR(pg_catalog.>) 0
					 THEN n_shredded OPERATOR(pg_catalog.||) ' of destroyed tenants' END],
				', ');
	END IF;
END
$$;
COMMENT ON PROCEDURE envault.reencrypt_column(regclass, name, name, integer) IS
	'Move a column onto the active data keys, one committed batch at a time; restartable';

-- Audit chains

CREATE SEQUENCE envault.audit_chains_seq AS integer;
CREATE TABLE envault.audit_chains (
	chain_id	integer PRIMARY KEY
				DEFAULT pg_catalog.nextval('envault.audit_chains_seq'::pg_catalog.regclass),
	tbl			regclass NOT NULL UNIQUE,
	identity	text NOT NULL UNIQUE,
	tenant_column name NOT NULL,
	min_retention interval NOT NULL DEFAULT '0'::pg_catalog.interval
				CHECK (min_retention OPERATOR(pg_catalog.>=) '0'::pg_catalog.interval),
	builtin		boolean NOT NULL DEFAULT false,
	enabled_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	enabled_by	name NOT NULL
);
COMMENT ON TABLE envault.audit_chains IS
	'Tables whose rows are chained per tenant by SHA-256 hashes';
COMMENT ON COLUMN envault.audit_chains.identity IS
	'The chain''s name as row hashes and checkpoints cover it: the table''s schema-qualified name when it was chained';

CREATE SEQUENCE envault.checkpoints_seq;
CREATE TABLE envault.checkpoints (
	checkpoint_id bigint PRIMARY KEY
				DEFAULT pg_catalog.nextval('envault.checkpoints_seq'::pg_catalog.regclass),
	chain_id	integer NOT NULL REFERENCES envault.audit_chains (chain_id),
	tenant		text,
	seq			bigint NOT NULL CHECK (seq OPERATOR(pg_catalog.>) 0),
	head_hash	bytea NOT NULL,
	signed_at	timestamptz NOT NULL,
	key_name	text NOT NULL,
	key_id		bytea NOT NULL,
	note		text NOT NULL,
	signed_by	name NOT NULL
);
CREATE INDEX checkpoints_chain ON envault.checkpoints (chain_id, tenant, seq);
COMMENT ON TABLE envault.checkpoints IS
	'Signed checkpoints (C2SP signed notes) of audit chain heads; also written to the server log';
COMMENT ON COLUMN envault.checkpoints.tenant IS
	'Canonical text of the tenant value; NULL for the chain of rows without a tenant';
COMMENT ON COLUMN envault.checkpoints.note IS
	'The signed note; seq, head_hash and signed_at repeat what it signs';

CREATE TABLE envault.chain_heads (
	chain_id	integer NOT NULL REFERENCES envault.audit_chains (chain_id),
	tenant		text,
	seq			bigint NOT NULL CHECK (seq OPERATOR(pg_catalog.>) 0),
	hash		bytea NOT NULL,
	builtin		boolean NOT NULL DEFAULT false,
	UNIQUE NULLS NOT DISTINCT (chain_id, tenant)
) WITH (fillfactor = 10);	-- room for HOT updates, pruned often: short chains
COMMENT ON TABLE envault.chain_heads IS
	'The newest row of each tenant''s chain: its sequence number and hash';

CREATE TABLE envault.chain_anchors (
	chain_id	integer NOT NULL REFERENCES envault.audit_chains (chain_id),
	tenant		text,
	seq			bigint NOT NULL,
	checkpoint_id bigint NOT NULL REFERENCES envault.checkpoints (checkpoint_id),
	rows_purged	bigint NOT NULL,
	purged_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	purged_by	name NOT NULL
);
COMMENT ON TABLE envault.chain_anchors IS
	'Purges of audit chains: rows before seq were deleted; the checkpoint signs the row the chain verifies from';

CREATE FUNCTION envault.append_only()
RETURNS trigger
AS 'MODULE_PATHNAME', 'envault_append_only'
LANGUAGE C;
CREATE TRIGGER checkpoints_append_only
	BEFORE UPDATE OR DELETE ON envault.checkpoints
	FOR EACH ROW EXECUTE FUNCTION envault.append_only();
CREATE TRIGGER checkpoints_no_truncate
	BEFORE TRUNCATE ON envault.checkpoints
	FOR EACH STATEMENT EXECUTE FUNCTION envault.append_only();
CREATE TRIGGER chain_anchors_append_only
	BEFORE UPDATE OR DELETE ON envault.chain_anchors
	FOR EACH ROW EXECUTE FUNCTION envault.append_only();
CREATE TRIGGER chain_anchors_no_truncate
	BEFORE TRUNCATE ON envault.chain_anchors
	FOR EACH STATEMENT EXECUTE FUNCTION envault.append_only();

-- envault's own chains (and their heads) are created by this script and not
-- dumped: the restored database recreates them, with the same chain_id,
-- before their rows load through the chain trigger
SELECT pg_catalog.pg_extension_config_dump('envault.audit_chains', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('envault.audit_chains_seq', '');
SELECT pg_catalog.pg_extension_config_dump('envault.checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('envault.checkpoints_seq', '');
SELECT pg_catalog.pg_extension_config_dump('envault.chain_anchors', '');
SELECT pg_catalog.pg_extension_config_dump('envault.chain_heads', 'WHERE NOT builtin');
REVOKE ALL ON envault.audit_chains, envault.audit_chains_seq, envault.checkpoints,
	envault.checkpoints_seq, envault.chain_anchors, envault.chain_heads FROM PUBLIC;
GRANT SELECT ON envault.audit_chains, envault.checkpoints, envault.chain_anchors,
	envault.chain_heads TO envault_admin;

CREATE FUNCTION envault.chain_insert()
RETURNS trigger
AS 'MODULE_PATHNAME', 'envault_chain_insert'
LANGUAGE C;
COMMENT ON FUNCTION envault.chain_insert() IS
	'Trigger: link each inserted row to its tenant''s audit chain';

CREATE FUNCTION envault.chain_heads()
RETURNS trigger
AS 'MODULE_PATHNAME', 'envault_chain_store_heads'
LANGUAGE C;
COMMENT ON FUNCTION envault.chain_heads() IS
	'Trigger: write the heads an INSERT statement advanced to envault.chain_heads';

CREATE FUNCTION envault.chain_refuse()
RETURNS trigger
AS 'MODULE_PATHNAME', 'envault_chain_refuse'
LANGUAGE C;
COMMENT ON FUNCTION envault.chain_refuse() IS
	'Trigger: refuse UPDATE, DELETE and TRUNCATE on an audit chain';

CREATE FUNCTION envault.chain_ddl_guard()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'envault_chain_ddl_guard'
LANGUAGE C;

CREATE FUNCTION envault.chain_drop_guard()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'envault_chain_drop_guard'
LANGUAGE C;

CREATE FUNCTION envault.enable_audit_chain(tbl regclass, tenant_column name)
RETURNS bigint
AS 'MODULE_PATHNAME', 'envault_enable_audit_chain'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.enable_audit_chain(regclass, name) IS
	'Turn a table into an audit chain per tenant; returns how many existing rows were linked';

CREATE FUNCTION envault.disable_audit_chain(tbl regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_disable_audit_chain'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.disable_audit_chain(regclass) IS
	'Stop chaining a table (its rows stay, its checkpoints go); recorded in key_events';

CREATE FUNCTION envault.checkpoint(tbl regclass, tenant text DEFAULT NULL)
RETURNS TABLE (tenant text, seq bigint, checkpoint text)
AS 'MODULE_PATHNAME', 'envault_checkpoint'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.checkpoint(regclass, text) IS
	'Sign the head of every (or one) tenant''s chain that grew since its last checkpoint';

CREATE FUNCTION envault.signing_public_key()
RETURNS text
AS 'MODULE_PATHNAME', 'envault_signing_public_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.signing_public_key() IS
	'The checkpoint signing key''s public key, as a signed-note verifier key';

CREATE FUNCTION envault.verify_chain(tbl regclass, tenant text DEFAULT NULL)
RETURNS TABLE (tenant text, rows_checked bigint, ok boolean,
			   first_bad_seq bigint, reason text)
AS 'MODULE_PATHNAME', 'envault_verify_chain'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.verify_chain(regclass, text) IS
	'Recompute every row hash, check sequence, links and signed checkpoints';

CREATE FUNCTION envault.export_chain(tbl regclass, tenant text,
									 since timestamptz DEFAULT NULL,
									 until timestamptz DEFAULT NULL)
RETURNS json
AS 'MODULE_PATHNAME', 'envault_export_chain'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.export_chain(regclass, text, timestamptz, timestamptz) IS
	'One tenant''s chain with its checkpoints, for envault-verify';

CREATE FUNCTION envault.purge_chain(tbl regclass, tenant text, older_than timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'envault_purge_chain'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.purge_chain(regclass, text, timestamptz) IS
	'Delete a tenant''s rows before its newest checkpoint older than older_than, outside the minimum retention';

CREATE FUNCTION envault.set_chain_retention(tbl regclass, min_retention interval)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_set_chain_retention'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.set_chain_retention(regclass, interval) IS
	'Raise the minimum time rows of a chain are kept (it can never be lowered)';

-- Secret access log: every decryption, written by envault's background
-- worker in its own transactions; an audit chain per tenant.

CREATE TABLE envault.access_log (
	at			timestamptz NOT NULL,
	last_at		timestamptz NOT NULL,
	event		text NOT NULL DEFAULT 'decrypt'
				CHECK (event OPERATOR(pg_catalog.=) ANY ('{decrypt,access log off}'::pg_catalog.text[])),
	tenant		text,
	purpose		text,
	key_version	integer,
	secret_name	text,
	count		bigint NOT NULL CHECK (count OPERATOR(pg_catalog.>=) 0),
	role		name,
	session_role name,
	application_name text,
	client_addr	inet,
	backend_pid	integer NOT NULL,
	backend_start timestamptz NOT NULL,
	statement_seq bigint NOT NULL,
	query_id	bigint
);
COMMENT ON TABLE envault.access_log IS
	'Who decrypted what, and when: counts per statement, tenant, purpose and key version; an audit chain per tenant';
COMMENT ON COLUMN envault.access_log.at IS 'First decryption the record counts';
COMMENT ON COLUMN envault.access_log.last_at IS 'When the backend handed the record to the access log worker';
COMMENT ON COLUMN envault.access_log.statement_seq IS
	'Top-level statement of the backend (backend_pid, backend_start) that decrypted';
SELECT envault.enable_audit_chain('envault.access_log', 'tenant');
SELECT pg_catalog.pg_extension_config_dump('envault.access_log', 'ORDER BY envault_seq');
REVOKE ALL ON envault.access_log FROM PUBLIC;
GRANT SELECT ON envault.access_log TO envault_admin;

CREATE FUNCTION envault.flush_access_log()
RETURNS void
AS 'MODULE_PATHNAME', 'envault_flush_access_log'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.flush_access_log() IS
	'Wait until every access record of this session is committed to envault.access_log';

CREATE FUNCTION envault.access_log_status()
RETURNS TABLE (database name, worker_pid integer, queued bigint, written bigint,
			   to_server_log bigint)
AS 'MODULE_PATHNAME', 'envault_access_log_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.access_log_status() IS
	'The access log queue of each database in use: its worker, records queued, written, and sent to the server log instead';

-- Secrets store: per-tenant credentials, encrypted under the tenant's
-- "_secrets" data key, bound to their name.

CREATE TABLE envault.secrets (
	tenant		text NOT NULL REFERENCES envault.tenants (tenant),
	name		text NOT NULL
				CHECK (pg_catalog.octet_length(name) OPERATOR(pg_catalog.<=) 255),
	ciphertext	bytea NOT NULL,
	preview		text NOT NULL,
	created_by	name NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	last_used_at timestamptz,
	last_verified_at timestamptz,
	verify_status text,
	PRIMARY KEY (tenant, name)
);
COMMENT ON TABLE envault.secrets IS
	'Per-tenant third-party credentials, encrypted; read them with envault.get_secret()';
COMMENT ON COLUMN envault.secrets.preview IS
	'"..." and the last 4 characters of a value of at least 12 characters; "..." otherwise';
SELECT pg_catalog.pg_extension_config_dump('envault.secrets', '');
ALTER TABLE envault.secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY secrets_tenant_isolation ON envault.secrets AS PERMISSIVE FOR ALL TO PUBLIC
	USING (tenant OPERATOR(pg_catalog.=) (SELECT envault.current_tenant())
		   OR pg_catalog.pg_has_role('envault_admin', 'MEMBER'))
	WITH CHECK (tenant OPERATOR(pg_catalog.=) (SELECT envault.current_tenant())
		   OR pg_catalog.pg_has_role('envault_admin', 'MEMBER'));
REVOKE ALL ON envault.secrets FROM PUBLIC;
-- everything but the ciphertext, and only through row-level security
GRANT SELECT (tenant, name, preview, created_by, created_at, updated_at,
			  last_used_at, last_verified_at, verify_status)
	ON envault.secrets TO envault_user, envault_admin;

CREATE FUNCTION envault.put_secret(tenant text, name text, value text)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_put_secret'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.put_secret(text, text, text) IS
	'Store or replace a tenant''s secret; returns its masked preview, never the value';

CREATE FUNCTION envault.get_secret(tenant text, name text)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_get_secret'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.get_secret(text, text) IS
	'Decrypt a tenant''s secret; recorded in the access log';

CREATE FUNCTION envault.delete_secret(tenant text, name text)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_delete_secret'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.delete_secret(text, text) IS 'Delete a tenant''s secret';

CREATE FUNCTION envault.record_verification(tenant text, name text, status text)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_record_verification'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.record_verification(text, text, text) IS
	'Note that a secret was checked against its provider, and the outcome';

CREATE FUNCTION envault.list_secrets()
RETURNS TABLE (tenant text, name text, preview text, created_by name,
			   created_at timestamptz, updated_at timestamptz,
			   last_used_at timestamptz, last_verified_at timestamptz,
			   verify_status text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	-- the ciphertext is not even selected; row-level security applies
	SELECT s.tenant, s.name, s.preview, s.created_by, s.created_at, s.updated_at,
		   s.last_used_at, s.last_verified_at, s.verify_status
	  FROM envault.secrets s
	 ORDER BY s.tenant, s.name
$$;
COMMENT ON FUNCTION envault.list_secrets() IS
	'The secrets the caller may see (the current tenant''s, or all for envault_admin), without their values';

-- Migration from pgcrypto's pgp_sym_encrypt

CREATE FUNCTION envault.env_decrypt_text_compat(ciphertext bytea, legacy_key text,
												aad bytea DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	nsp name;
	plaintext text;
BEGIN
	IF ciphertext IS NULL THEN
		RETURN NULL;
	END IF;
	IF substr(ciphertext, 1, 4) OPERATOR(pg_catalog.=) '\x45560101'::bytea THEN
		RETURN envault.env_decrypt_text(ciphertext, aad);
	END IF;
	SELECT n.nspname INTO nsp FROM pg_catalog.pg_extension e
	  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
	 WHERE e.extname OPERATOR(pg_catalog.=) 'pgcrypto';
	IF nsp IS NULL THEN
		RAISE EXCEPTION 'value is not an envault ciphertext, and pgcrypto is not installed'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Values not yet migrated from pgp_sym_encrypt() need CREATE EXTENSION pgcrypto.';
	END IF;
	EXECUTE pg_catalog.format('SELECT %I.pgp_sym_decrypt($1, $2)', nsp)
		INTO plaintext USING ciphertext, legacy_key;
	RETURN plaintext;
END
$$;
COMMENT ON FUNCTION envault.env_decrypt_text_compat(bytea, text, bytea) IS
	'During a migration from pgcrypto: env_decrypt_text() for envault values, pgp_sym_decrypt() for the others';

CREATE PROCEDURE envault.migrate_pgcrypto_column(tbl regclass, col name, tenant_col name,
												 purpose text, legacy_key text,
												 only_tenant text DEFAULT NULL,
												 aad_col name DEFAULT NULL,
												 batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
-- No SET search_path: it COMMITs (see reencrypt_column); names are qualified.
AS $$
DECLARE
	nsp pg_catalog.name;
	pk pg_catalog.name;
	pktype pg_catalog.text;
	aad_expr pg_catalog.text;
	tenant_filter pg_catalog.text;
	remaining bigint;
	done bigint := 0;
	hi pg_catalog.text;
	lo pg_catalog.text;
	n bigint;
	m bigint;
BEGIN
	IF batch_size IS NULL OR batch_size OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF purpose IS NULL OR legacy_key IS NULL OR tenant_col IS NULL THEN
		RAISE EXCEPTION 'tenant_col, purpose and legacy_key must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT n.nspname INTO nsp FROM pg_catalog.pg_extension e
	  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
	 WHERE e.extname OPERATOR(pg_catalog.=) 'pgcrypto';
	IF nsp IS NULL THEN
		RAISE EXCEPTION 'pgcrypto is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'The migration opens the old values with pgcrypto''s pgp_sym_decrypt_bytea().';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
				    WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) col
					  AND a.atttypid OPERATOR(pg_catalog.=) 'pg_catalog.bytea'::pg_catalog.regtype
					  AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
		RAISE EXCEPTION 'column "%" of relation % does not exist or is not of type bytea', col, tbl
			USING ERRCODE = 'datatype_mismatch';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
				    WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) tenant_col
					  AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
		RAISE EXCEPTION 'column "%" of relation % does not exist', tenant_col, tbl
			USING ERRCODE = 'undefined_column';
	END IF;
	IF aad_col IS NOT NULL AND NOT EXISTS (
			SELECT FROM pg_catalog.pg_attribute a
			 WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) aad_col
			   AND a.atttypid OPERATOR(pg_catalog.=) 'pg_catalog.bytea'::pg_catalog.regtype
			   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
		RAISE EXCEPTION 'aad column "%" of relation % does not exist or is not of type bytea', aad_col, tbl
			USING ERRCODE = 'datatype_mismatch';
	END IF;
	-- the key's type by schema and name: format_type() leaves pg_catalog's
	-- types unqualified, and the casts below run on the caller's search_path
	SELECT a.attname, pg_catalog.format('%I.%I', tn.nspname, t.typname) INTO pk, pktype
	  FROM pg_catalog.pg_index i
	  JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
	   AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
	  JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
	  JOIN pg_catalog.pg_namespace tn ON tn.oid OPERATOR(pg_catalog.=) t.typnamespace
	 WHERE i.indrelid OPERATOR(pg_catalog.=) tbl AND i.indisprimary
	   AND i.indnatts OPERATOR(pg_catalog.=) 1;
	IF pk IS NULL THEN
		RAISE EXCEPTION 'relation % has no single-column primary key', tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'migrate_pgcrypto_column walks the table in primary key order, one batch per transaction.';
	END IF;
	aad_expr := CASE WHEN aad_col IS NULL THEN 'NULL' ELSE pg_catalog.format('%I', aad_col) END;
	tenant_filter := CASE WHEN only_tenant IS NULL THEN 'true'
						  ELSE pg_catalog.format('%I::pg_catalog.text OPERATOR(pg_catalog.=) %L',
												 tenant_col, only_tenant) END;

	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.count(*) FROM %s WHERE %I IS NOT NULL'
		' AND pg_catalog.substr(%I, 1, 4) OPERATOR(pg_catalog.<>) ''\x45560101''::pg_catalog.bytea AND %s',
		tbl, col, col, tenant_filter) INTO remaining;
	RAISE NOTICE 'migrate_pgcrypto_column: % rows of % to migrate', remaining, tbl;
	LOOP
		EXECUTE pg_catalog.format(
			'SELECT pg_catalog.max(k)::pg_catalog.text, pg_catalog.count(*) FROM'
			' (SELECT %1$I AS k FROM %2$s WHERE $1 IS NULL OR %1$I OPERATOR(pg_catalog.>) $1::%3$s'
			'  ORDER BY %1$I LIMIT %4$s) b',
			pk, tbl, pktype, batch_size) INTO hi, n USING lo;
		EXIT WHEN n OPERATOR(pg_catalog.=) 0;
		EXECUTE pg_catalog.format(
			'UPDATE %2$s SET %3$I = envault.env_encrypt(%4$I::pg_catalog.text, $3,'
			'       %6$I.pgp_sym_decrypt_bytea(%3$I, $4), %5$s)'
			' WHERE ($1 IS NULL OR %1$I OPERATOR(pg_catalog.>) $1::%7$s)'
			'   AND %1$I OPERATOR(pg_catalog.<=) $2::%7$s'
			'   AND %3$I IS NOT NULL'
			'   AND pg_catalog.substr(%3$I, 1, 4) OPERATOR(pg_catalog.<>) ''\x45560101''::pg_catalog.bytea'
			'   AND %8$s',
			pk, tbl, col, tenant_col, aad_expr, nsp, pktype, tenant_filter)
			USING lo, hi, purpose, legacy_key;
		GET DIAGNOSTICS m = ROW_COUNT;
		done := done OPERATOR(pg_catalog.+) m;
		remaining := GREATEST(remaining OPERATOR(pg_catalog.-) m, 0);
		lo := hi;
		COMMIT;
		IF m OPERATOR(pg_catalog.>) 0 THEN
			RAISE NOTICE 'migrate_pgcrypto_column: % rows migrated, % remaining', done, remaining;
		END IF;
	END LOOP;
	RAISE NOTICE 'migrate_pgcrypto_column: done, % rows migrated', done;
END
$$;
COMMENT ON PROCEDURE envault.migrate_pgcrypto_column(regclass, name, name, text, text, text, name, integer) IS
	'Re-encrypt a column from pgp_sym_encrypt() to envault, one committed batch at a time, optionally one tenant; restartable';

-- The existing rows of key_events are linked now, tenant by tenant; the
-- chain is envault's own (builtin), as creating_extension is true during
-- ALTER EXTENSION UPDATE too, so enabling it records no event.
SELECT envault.enable_audit_chain('envault.key_events', 'tenant');
-- (The heads of the linked rows are envault's own too: like the chain,
-- they are not dumped, but recreated by the restore as the rows load.)
-- rows restored by pg_restore reload through the chain trigger, in order
-- (in 0.1.0 they were dumped without condition)
SELECT pg_catalog.pg_extension_config_dump('envault.key_events', 'ORDER BY envault_seq');

CREATE EVENT TRIGGER envault_chain_ddl_guard ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'CREATE TRIGGER', 'ALTER TRIGGER',
				 'CREATE RULE')
	EXECUTE FUNCTION envault.chain_ddl_guard();
CREATE EVENT TRIGGER envault_chain_drop_guard ON sql_drop
	WHEN TAG IN ('DROP TABLE', 'DROP TRIGGER', 'ALTER TABLE', 'DROP SCHEMA',
				 'DROP OWNED', 'DROP INDEX')
	EXECUTE FUNCTION envault.chain_drop_guard();


-- Privileges of the new functions and procedures, as in a new install:
-- nothing for PUBLIC, the data path for both roles, management for
-- envault_admin.  Those of 0.1.0 keep theirs (CREATE OR REPLACE keeps a
-- function's privileges).

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA envault FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	envault.key_state(bytea),
	envault.isolation_expr(regclass, name),
	envault.policy_isolates(regclass, text)
	TO envault_admin;
GRANT EXECUTE ON FUNCTION
	envault.chain_insert(),
	envault.chain_heads(),
	envault.chain_refuse(),
	envault.enable_audit_chain(regclass, name),
	envault.disable_audit_chain(regclass),
	envault.checkpoint(regclass, text),
	envault.signing_public_key(),
	envault.verify_chain(regclass, text),
	envault.export_chain(regclass, text, timestamptz, timestamptz),
	envault.purge_chain(regclass, text, timestamptz),
	envault.set_chain_retention(regclass, interval)
	TO envault_admin;
GRANT EXECUTE ON FUNCTION
	envault.put_secret(text, text, text),
	envault.get_secret(text, text),
	envault.delete_secret(text, text),
	envault.record_verification(text, text, text),
	envault.list_secrets(),
	envault.env_decrypt_text_compat(bytea, text, bytea),
	envault.flush_access_log()
	TO envault_user, envault_admin;
GRANT EXECUTE ON FUNCTION envault.access_log_status() TO envault_admin;
REVOKE ALL ON PROCEDURE envault.migrate_pgcrypto_column(regclass, name, name, text, text, text, name, integer)
	FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE envault.migrate_pgcrypto_column(regclass, name, name, text, text, text, name, integer)
	TO envault_admin;
