/*
 * envault install script (source).  The Makefile copies this file to
 * envault--<version>.sql; upgrade scripts live beside it as
 * src/envault--<from>--<to>.sql.
 */
\echo Use "CREATE EXTENSION envault" to load this file. \quit

-- Roles are shared by every database of the cluster: create them once.
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'envault_user') THEN
		CREATE ROLE envault_user NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'envault_admin') THEN
		CREATE ROLE envault_admin NOLOGIN;
	END IF;
END
$roles$;

COMMENT ON SCHEMA envault IS 'envault: envelope encryption with per-tenant keys';
REVOKE ALL ON SCHEMA envault FROM PUBLIC;
GRANT USAGE ON SCHEMA envault TO envault_user, envault_admin;

-- Key tables: wrapped keys only, never readable by envault_user.

CREATE TABLE envault.tenants (
	tenant		text PRIMARY KEY
				CHECK (pg_catalog.octet_length(tenant) OPERATOR(pg_catalog.<=) 255),
	state		text NOT NULL DEFAULT 'active'
				CHECK (state OPERATOR(pg_catalog.=) ANY ('{active,revoked,destroyed}'::pg_catalog.text[])),
	key_version	integer NOT NULL DEFAULT 1
				CHECK (key_version OPERATOR(pg_catalog.>=) 1),
	key_source	text NOT NULL DEFAULT 'master'
				CHECK (key_source OPERATOR(pg_catalog.=) ANY ('{master,customer}'::pg_catalog.text[])),
	wrapped_key	bytea,
	master_kcv	bytea,
	customer_kcv bytea,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by	name NOT NULL,
	state_changed_at timestamptz,
	-- a destroyed tenant keeps its name and history, never its key
	CHECK ((state OPERATOR(pg_catalog.=) 'destroyed') OPERATOR(pg_catalog.=) (wrapped_key IS NULL)),
	-- the check value of whichever key wraps the tenant key, and only that
	CHECK (state OPERATOR(pg_catalog.=) 'destroyed' OR
		   (master_kcv IS NOT NULL) OPERATOR(pg_catalog.=) (key_source OPERATOR(pg_catalog.=) 'master')),
	CHECK (state OPERATOR(pg_catalog.=) 'destroyed' OR
		   (customer_kcv IS NOT NULL) OPERATOR(pg_catalog.=) (key_source OPERATOR(pg_catalog.=) 'customer')),
	CHECK (state OPERATOR(pg_catalog.<>) 'destroyed' OR
		   (master_kcv IS NULL AND customer_kcv IS NULL))
);
COMMENT ON TABLE envault.tenants IS
	'One key per tenant (a key-encryption key), wrapped by the master key';
COMMENT ON COLUMN envault.tenants.master_kcv IS
	'Check value of the master key that wrapped this tenant key';
COMMENT ON COLUMN envault.tenants.customer_kcv IS
	'Check value of the customer-managed key that wraps this tenant key (BYOK); the key itself is never stored';

CREATE TABLE envault.data_keys (
	key_id		bigint PRIMARY KEY,
	tenant		text NOT NULL REFERENCES envault.tenants (tenant),
	purpose		text NOT NULL
				CHECK (purpose OPERATOR(pg_catalog.~) '^(_bidx\.)?[a-z0-9][a-z0-9_.-]{0,62}$'
				       AND pg_catalog.length(purpose) OPERATOR(pg_catalog.<=) 63),
	version		integer NOT NULL CHECK (version OPERATOR(pg_catalog.>=) 1),
	state		text NOT NULL DEFAULT 'active'
				CHECK (state OPERATOR(pg_catalog.=) ANY ('{active,rotated,retired,destroyed}'::pg_catalog.text[])),
	wrapped_key	bytea,
	tenant_key_version integer NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by	name NOT NULL,
	state_changed_at timestamptz,
	UNIQUE (tenant, purpose, version),
	CHECK ((state OPERATOR(pg_catalog.=) 'destroyed') OPERATOR(pg_catalog.=) (wrapped_key IS NULL))
);
CREATE UNIQUE INDEX data_keys_one_active
	ON envault.data_keys (tenant, purpose)
	WHERE state OPERATOR(pg_catalog.=) 'active';
COMMENT ON TABLE envault.data_keys IS
	'Data keys per (tenant, purpose, version), wrapped by the tenant key';
COMMENT ON COLUMN envault.data_keys.state IS
	'active: encrypts and decrypts; rotated: decrypts only; retired: neither, reversibly; destroyed: key wiped';

-- Every key operation, append-only.  Never holds key material.
CREATE SEQUENCE envault.key_events_seq;
CREATE TABLE envault.key_events (
	event_id	bigint PRIMARY KEY
				DEFAULT pg_catalog.nextval('envault.key_events_seq'::pg_catalog.regclass),
	at			timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	actor		name NOT NULL,
	operation	text NOT NULL,
	tenant		text,
	purpose		text,
	version		integer,
	detail		text
);
COMMENT ON TABLE envault.key_events IS
	'Every key operation: who, when, which key; append-only, no key material';

CREATE FUNCTION envault.key_events_append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'envault.key_events is append-only'
		USING ERRCODE = 'insufficient_privilege',
			  DETAIL = pg_catalog.format('%s is refused, for every role.', TG_OP);
END
$$;
CREATE TRIGGER key_events_append_only
	BEFORE UPDATE OR DELETE ON envault.key_events
	FOR EACH ROW EXECUTE FUNCTION envault.key_events_append_only();
CREATE TRIGGER key_events_no_truncate
	BEFORE TRUNCATE ON envault.key_events
	FOR EACH STATEMENT EXECUTE FUNCTION envault.key_events_append_only();

-- API tokens: only HMAC-SHA256(pepper, ...) of each token is kept.
CREATE TABLE envault.tokens (
	token_id	text PRIMARY KEY,
	tenant		text NOT NULL REFERENCES envault.tenants (tenant),
	token_hmac	bytea NOT NULL,
	pepper_version text NOT NULL,
	label		text NOT NULL,
	created_by	name NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	expires_at	timestamptz,
	last_used_at timestamptz,
	revoked_at	timestamptz
);
CREATE INDEX tokens_tenant ON envault.tokens (tenant);
COMMENT ON TABLE envault.tokens IS
	'API tokens, stored as pepper-HMACs; the token itself is shown once';
COMMENT ON COLUMN envault.tokens.pepper_version IS
	'Check value of the pepper that made token_hmac (first 8 bytes, hex)';

SELECT pg_catalog.pg_extension_config_dump('envault.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('envault.data_keys', '');
SELECT pg_catalog.pg_extension_config_dump('envault.tokens', '');
SELECT pg_catalog.pg_extension_config_dump('envault.key_events', '');
SELECT pg_catalog.pg_extension_config_dump('envault.key_events_seq', '');

REVOKE ALL ON envault.tenants, envault.data_keys, envault.tokens,
	envault.key_events, envault.key_events_seq FROM PUBLIC;
GRANT SELECT ON envault.tenants, envault.data_keys, envault.tokens,
	envault.key_events TO envault_admin;

-- Data path

CREATE FUNCTION envault.env_encrypt(tenant text, purpose text,
									plaintext bytea, aad bytea DEFAULT NULL)
RETURNS bytea
AS 'MODULE_PATHNAME', 'envault_env_encrypt'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.env_encrypt(text, text, bytea, bytea) IS
	'Encrypt bytes under the active data key of (tenant, purpose)';

CREATE FUNCTION envault.env_encrypt(tenant text, purpose text,
									plaintext text, aad bytea DEFAULT NULL)
RETURNS bytea
AS 'MODULE_PATHNAME', 'envault_env_encrypt'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.env_encrypt(text, text, text, bytea) IS
	'Encrypt text under the active data key of (tenant, purpose)';

CREATE FUNCTION envault.env_decrypt(ciphertext bytea, aad bytea DEFAULT NULL)
RETURNS bytea
AS 'MODULE_PATHNAME', 'envault_env_decrypt'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION envault.env_decrypt(bytea, bytea) IS
	'Decrypt and authenticate an envault ciphertext';

CREATE FUNCTION envault.env_decrypt_text(ciphertext bytea, aad bytea DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_env_decrypt_text'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION envault.env_decrypt_text(bytea, bytea) IS
	'Decrypt and authenticate an envault ciphertext holding text';

-- Key management

CREATE FUNCTION envault.create_tenant(tenant text)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_create_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.create_tenant(text) IS
	'Create a tenant with a new tenant key wrapped by the master key';

CREATE FUNCTION envault.create_data_key(tenant text, purpose text)
RETURNS integer
AS 'MODULE_PATHNAME', 'envault_create_data_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.create_data_key(text, text) IS
	'Make sure (tenant, purpose) has an active data key; returns its version';

CREATE FUNCTION envault.blind_index(tenant text, purpose text, value text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'envault_blind_index'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION envault.blind_index(text, text, text) IS
	'Keyed hash of a value for equality lookups, per tenant and purpose';

CREATE FUNCTION envault.env_reencrypt(ciphertext bytea, aad bytea DEFAULT NULL)
RETURNS bytea
AS 'MODULE_PATHNAME', 'envault_env_reencrypt'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.env_reencrypt(bytea, bytea) IS
	'The value under the active data key of its tenant and purpose (unchanged if it already is)';

CREATE FUNCTION envault.env_is_current(ciphertext bytea)
RETURNS boolean
AS 'MODULE_PATHNAME', 'envault_env_is_current'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION envault.env_is_current(bytea) IS
	'Is the value under the active data key of its tenant and purpose?  Decrypts nothing';

-- Tenant context

CREATE FUNCTION envault.authenticate(token text, session boolean DEFAULT false)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_authenticate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.authenticate(text, boolean) IS
	'Verify an API token and make its tenant current until the end of the transaction (or session)';

CREATE FUNCTION envault.set_tenant(tenant text, is_local boolean DEFAULT true)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_set_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.set_tenant(text, boolean) IS
	'Make a tenant current without a token (trusted middleware; envault_admin only)';

CREATE FUNCTION envault.reset_tenant()
RETURNS void
AS 'MODULE_PATHNAME', 'envault_reset_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.reset_tenant() IS 'Clear the current tenant';

CREATE FUNCTION envault.current_tenant()
RETURNS text
AS 'MODULE_PATHNAME', 'envault_current_tenant'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION envault.current_tenant() IS
	'The current tenant, or NULL; held in backend memory, not settable by SQL';

-- API tokens

CREATE FUNCTION envault.issue_token(tenant text, label text,
									expires_at timestamptz DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_issue_token'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.issue_token(text, text, timestamptz) IS
	'Issue an API token for a tenant; the token is returned once and never stored';

CREATE FUNCTION envault.verify_token(token text)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_verify_token'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.verify_token(text) IS
	'The tenant of a valid token; NULL for an unknown, expired, revoked or malformed one';

CREATE FUNCTION envault.revoke_token(token_id text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE envault.tokens t SET revoked_at = pg_catalog.now()
	 WHERE t.token_id OPERATOR(pg_catalog.=) revoke_token.token_id
	   AND t.revoked_at IS NULL;
	IF FOUND THEN
		RETURN true;
	END IF;
	IF NOT EXISTS (SELECT FROM envault.tokens t
				   WHERE t.token_id OPERATOR(pg_catalog.=) revoke_token.token_id) THEN
		RAISE EXCEPTION 'envault token "%" does not exist', token_id
			USING ERRCODE = 'undefined_object';
	END IF;
	RETURN false;
END
$$;
COMMENT ON FUNCTION envault.revoke_token(text) IS
	'Revoke a token at once; false if it was already revoked';

CREATE FUNCTION envault.revoke_tenant_tokens(tenant text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n integer;
BEGIN
	UPDATE envault.tokens t SET revoked_at = pg_catalog.now()
	 WHERE t.tenant OPERATOR(pg_catalog.=) revoke_tenant_tokens.tenant
	   AND t.revoked_at IS NULL;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION envault.revoke_tenant_tokens(text) IS
	'Revoke every token of a tenant at once; returns how many were revoked';

CREATE FUNCTION envault.pepper_hmac(data bytea)
RETURNS bytea
AS 'MODULE_PATHNAME', 'envault_pepper_hmac'
LANGUAGE C STABLE PARALLEL SAFE STRICT;
COMMENT ON FUNCTION envault.pepper_hmac(bytea) IS
	'HMAC-SHA256 of data under the current pepper';

-- Row-level security

CREATE FUNCTION envault.isolate_table(tbl regclass, tenant_column name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	coltype text;
	expr text;
	existing text;
BEGIN
	SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) INTO coltype
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid OPERATOR(pg_catalog.=) tbl
	   AND a.attname OPERATOR(pg_catalog.=) tenant_column
	   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
	IF coltype IS NULL THEN
		RAISE EXCEPTION 'column "%" of relation % does not exist', tenant_column, tbl
			USING ERRCODE = 'undefined_column';
	END IF;

	-- (SELECT ...) makes the tenant an InitPlan: evaluated once per query
	expr := pg_catalog.format('(%I OPERATOR(pg_catalog.=) (SELECT envault.current_tenant())::%s)',
							  tenant_column, coltype);
	EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
	EXECUTE pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);

	SELECT pg_catalog.pg_get_expr(p.polqual, p.polrelid) INTO existing
	  FROM pg_catalog.pg_policy p
	 WHERE p.polrelid OPERATOR(pg_catalog.=) tbl
	   AND p.polname OPERATOR(pg_catalog.=) 'envault_tenant_isolation';
	IF existing IS NOT NULL THEN
		-- the same policy again changes nothing; another column replaces it
		IF existing OPERATOR(pg_catalog.=) (SELECT pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)
											 FROM pg_catalog.pg_policy p
											WHERE p.polrelid OPERATOR(pg_catalog.=) tbl
											  AND p.polname OPERATOR(pg_catalog.=) 'envault_tenant_isolation')
		   AND pg_catalog.strpos(existing, pg_catalog.quote_ident(tenant_column)) OPERATOR(pg_catalog.>) 0 THEN
			RETURN;
		END IF;
		EXECUTE pg_catalog.format('DROP POLICY envault_tenant_isolation ON %s', tbl);
	END IF;
	EXECUTE pg_catalog.format('CREATE POLICY envault_tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING %s WITH CHECK %s',
							  tbl, expr, expr);
END
$$;
COMMENT ON FUNCTION envault.isolate_table(regclass, name) IS
	'Enable and force row-level security with a policy on the current tenant';

CREATE FUNCTION envault.isolation_report()
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
		   AND EXISTS (SELECT FROM pg_catalog.pg_policy p
					   WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid
						 AND p.polname OPERATOR(pg_catalog.=) 'envault_tenant_isolation')
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

CREATE FUNCTION envault.rotate_data_key(tenant text, purpose text)
RETURNS integer
AS 'MODULE_PATHNAME', 'envault_rotate_data_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.rotate_data_key(text, text) IS
	'Make a new data key version active; the previous one only decrypts from now on';

CREATE FUNCTION envault.rotate_tenant_key(tenant text)
RETURNS integer
AS 'MODULE_PATHNAME', 'envault_rotate_tenant_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.rotate_tenant_key(text) IS
	'A new tenant key, with every data key of the tenant rewrapped under it';

CREATE FUNCTION envault.retire_data_key(tenant text, purpose text, version integer)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_retire_data_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.retire_data_key(text, text, integer) IS
	'Stop a rotated data key version from decrypting (reversible)';

CREATE FUNCTION envault.restore_data_key(tenant text, purpose text, version integer)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_restore_data_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.restore_data_key(text, text, integer) IS
	'Let a retired data key version decrypt again';

CREATE FUNCTION envault.destroy_data_key(tenant text, purpose text, version integer)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_destroy_data_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.destroy_data_key(text, text, integer) IS
	'Wipe a data key version that is not active: its values become unreadable (irreversible)';

CREATE FUNCTION envault.destroy_tenant(tenant text)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_destroy_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.destroy_tenant(text) IS
	'Crypto-shred a tenant: wipe every key, revoke every token (irreversible)';

CREATE FUNCTION envault.revoke_tenant(tenant text)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_revoke_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.revoke_tenant(text) IS
	'Make a tenant''s data unreadable at once, in every session (reversible)';

CREATE FUNCTION envault.restore_tenant(tenant text)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_restore_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.restore_tenant(text) IS 'Undo envault.revoke_tenant()';

CREATE FUNCTION envault.use_customer_key(tenant text)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_use_customer_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.use_customer_key(text) IS
	'Wrap the tenant key under the customer-managed key that envault.customer_key_command returns (BYOK)';

CREATE FUNCTION envault.use_master_key(tenant text)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_use_master_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.use_master_key(text) IS
	'Wrap the tenant key under the master key again (needs the customer key once more)';

CREATE FUNCTION envault.master_key_status(OUT master_key text, OUT check_value text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'envault_master_key_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.master_key_status() IS
	'Check values of the configured master keys (current, and previous during a rotation)';

CREATE FUNCTION envault.rewrap_tenant_keys(batch_size integer DEFAULT 1000,
										   OUT rewrapped bigint, OUT remaining bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'envault_rewrap_tenant_keys'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.rewrap_tenant_keys(integer) IS
	'One batch of a master key rotation: rewrap tenant keys from the previous master key to the current one';

CREATE PROCEDURE envault.rotate_master_key(batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
-- No SET search_path: it COMMITs (see reencrypt_column); names are qualified.
AS $$
DECLARE
	r record;
	total bigint := 0;
BEGIN
	LOOP
		SELECT * INTO r FROM envault.rewrap_tenant_keys(batch_size);
		total := total OPERATOR(pg_catalog.+) r.rewrapped;
		COMMIT;
		RAISE NOTICE 'rotate_master_key: % tenant keys rewrapped, % remain', total, r.remaining;
		EXIT WHEN r.rewrapped OPERATOR(pg_catalog.=) 0 OR r.remaining OPERATOR(pg_catalog.=) 0;
	END LOOP;
	IF r.remaining OPERATOR(pg_catalog.=) 0 THEN
		RAISE NOTICE 'rotate_master_key: every tenant key is wrapped by the current master key; the previous master key can be removed from the configuration';
	ELSE
		RAISE NOTICE 'rotate_master_key: % tenant keys are locked by other transactions; call again', r.remaining;
	END IF;
END
$$;
COMMENT ON PROCEDURE envault.rotate_master_key(integer) IS
	'Rewrap every tenant key still under the previous master key, one committed batch at a time; resumable';

CREATE PROCEDURE envault.reencrypt_column(tbl regclass, col name,
										  aad_col name DEFAULT NULL,
										  batch_size integer DEFAULT 10000)
LANGUAGE plpgsql
-- No SET search_path: PostgreSQL forbids COMMIT in a procedure with SET
-- options.  It runs with its caller's rights (SECURITY INVOKER), and every
-- name in it is schema-qualified.
AS $$
DECLARE
	pk name;
	pktype text;
	coltype regtype;
	aad_expr text;
	remaining bigint;
	done bigint := 0;
	hi text;
	lo text;
	n bigint;
	m bigint;
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
	IF coltype OPERATOR(pg_catalog.<>) 'bytea'::pg_catalog.regtype THEN
		RAISE EXCEPTION 'column "%" of relation % is not of type bytea', col, tbl
			USING ERRCODE = 'datatype_mismatch';
	END IF;
	SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) INTO pk, pktype
	  FROM pg_catalog.pg_index i
	  JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
	   AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
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
			   AND a.atttypid OPERATOR(pg_catalog.=) 'bytea'::pg_catalog.regtype
			   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
		RAISE EXCEPTION 'aad column "%" of relation % does not exist or is not of type bytea', aad_col, tbl
			USING ERRCODE = 'datatype_mismatch',
				  HINT = 'Keep the associated data in a bytea column, for example GENERATED ALWAYS AS (int4send(id)) STORED.';
	END IF;
	aad_expr := CASE WHEN aad_col IS NULL THEN 'NULL'
					 ELSE pg_catalog.format('%I', aad_col) END;

	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.count(*) FROM %s WHERE %I IS NOT NULL AND NOT envault.env_is_current(%I)',
		tbl, col, col) INTO remaining;
	RAISE NOTICE 'reencrypt_column: % rows of % to re-encrypt', remaining, tbl;

	-- walk the table in primary key order, one committed batch at a time;
	-- a restart walks it again, but rows already current are not rewritten
	LOOP
		EXECUTE pg_catalog.format(
			'SELECT pg_catalog.max(k)::pg_catalog.text, pg_catalog.count(*) FROM'
			' (SELECT %1$I AS k FROM %2$s WHERE $1 IS NULL OR %1$I OPERATOR(pg_catalog.>) $1::%3$s'
			'  ORDER BY %1$I LIMIT %4$s) b',
			pk, tbl, pktype, batch_size) INTO hi, n USING lo;
		EXIT WHEN n OPERATOR(pg_catalog.=) 0;
		EXECUTE pg_catalog.format(
			'UPDATE %2$s SET %3$I = envault.env_reencrypt(%3$I, %4$s)'
			' WHERE ($1 IS NULL OR %1$I OPERATOR(pg_catalog.>) $1::%5$s)'
			'   AND %1$I OPERATOR(pg_catalog.<=) $2::%5$s'
			'   AND %3$I IS NOT NULL AND NOT envault.env_is_current(%3$I)',
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
	RAISE NOTICE 'reencrypt_column: done, % rows re-encrypted', done;
END
$$;
COMMENT ON PROCEDURE envault.reencrypt_column(regclass, name, name, integer) IS
	'Move a column onto the active data keys, one committed batch at a time; restartable';

-- Privileges: nothing for PUBLIC, the data path for both roles,
-- management for envault_admin.

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA envault FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	envault.env_encrypt(text, text, bytea, bytea),
	envault.env_encrypt(text, text, text, bytea),
	envault.env_decrypt(bytea, bytea),
	envault.env_decrypt_text(bytea, bytea),
	envault.blind_index(text, text, text),
	envault.env_reencrypt(bytea, bytea),
	envault.env_is_current(bytea),
	envault.authenticate(text, boolean),
	envault.reset_tenant(),
	envault.current_tenant(),
	envault.verify_token(text),
	envault.pepper_hmac(bytea)
	TO envault_user, envault_admin;
GRANT EXECUTE ON FUNCTION
	envault.create_tenant(text),
	envault.create_data_key(text, text),
	envault.set_tenant(text, boolean),
	envault.issue_token(text, text, timestamptz),
	envault.revoke_token(text),
	envault.revoke_tenant_tokens(text),
	envault.isolate_table(regclass, name),
	envault.isolation_report(),
	envault.rotate_data_key(text, text),
	envault.rotate_tenant_key(text),
	envault.retire_data_key(text, text, integer),
	envault.restore_data_key(text, text, integer),
	envault.destroy_data_key(text, text, integer),
	envault.destroy_tenant(text),
	envault.revoke_tenant(text),
	envault.restore_tenant(text)
	TO envault_admin;
GRANT EXECUTE ON FUNCTION
	envault.master_key_status(),
	envault.rewrap_tenant_keys(integer),
	envault.use_customer_key(text),
	envault.use_master_key(text)
	TO envault_admin;
REVOKE ALL ON PROCEDURE envault.reencrypt_column(regclass, name, name, integer),
	envault.rotate_master_key(integer) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE envault.reencrypt_column(regclass, name, name, integer),
	envault.rotate_master_key(integer)
	TO envault_admin;
