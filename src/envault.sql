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
	rekeyed_at	timestamptz,	-- by rekey_tenant or use_customer_key
	name_encoding text NOT NULL DEFAULT pg_catalog.getdatabaseencoding(),
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
COMMENT ON COLUMN envault.tenants.rekeyed_at IS
	'When the tenant was last re-keyed: data keys created before are superseded (destroy_superseded_keys)';
COMMENT ON COLUMN envault.tenants.name_encoding IS
	'The database encoding the tenant was created in: its name is bound into its keys as bytes of that encoding';
COMMENT ON COLUMN envault.tenants.customer_kcv IS
	'Check value of the customer-managed key that wraps this tenant key (BYOK); the key itself is never stored';

CREATE TABLE envault.data_keys (
	key_id		bigint PRIMARY KEY,
	tenant		text NOT NULL REFERENCES envault.tenants (tenant),
	purpose		text NOT NULL
				CHECK (purpose OPERATOR(pg_catalog.~) '^((_bidx\.)?[a-z0-9][a-z0-9_.-]{0,62}|_secrets)$'
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
	'Every key operation: who, when, which key; an audit chain per tenant, no key material';

-- key_events is an audit chain (see "Audit chains" below): rows can only
-- be added, and every row is linked to its tenant's chain.

-- API tokens: only HMAC-SHA256(pepper, ...) of each token is kept.  Token
-- ids are hex, compared byte for byte (COLLATE "C"): every verify_token
-- descends this primary key, and a locale's collation costs several times
-- more per comparison while meaning nothing for hex.  verify_token sets
-- last_used_at about once a minute per token: the room that fillfactor
-- leaves on each page keeps those updates HOT, so they add no index
-- entries (dead entries of earlier versions cost every later lookup).
CREATE TABLE envault.tokens (
	token_id	text COLLATE "C" PRIMARY KEY,
	tenant		text NOT NULL REFERENCES envault.tenants (tenant),
	token_hmac	bytea NOT NULL,
	pepper_version text NOT NULL,
	label		text NOT NULL,
	created_by	name NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	expires_at	timestamptz,
	last_used_at timestamptz,
	revoked_at	timestamptz
) WITH (fillfactor = 80);
CREATE INDEX tokens_tenant ON envault.tokens (tenant);
COMMENT ON TABLE envault.tokens IS
	'API tokens, stored as pepper-HMACs; the token itself is shown once';
COMMENT ON COLUMN envault.tokens.pepper_version IS
	'Check value of the pepper that made token_hmac (first 8 bytes, hex)';
COMMENT ON COLUMN envault.tokens.revoked_at IS
	'Set by versions before 0.3.0 (and in their dumps); revocations are rows of envault.token_revocations since';

-- Revoked tokens have a row here, never an update of their own row: a
-- transaction that used a token (and updated its row) cannot make a
-- revocation wait for it.
CREATE TABLE envault.token_revocations (
	token_id	text COLLATE "C" PRIMARY KEY REFERENCES envault.tokens (token_id),
	revoked_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	revoked_by	name
);
COMMENT ON TABLE envault.token_revocations IS
	'Revoked API tokens: verify_token and authenticate refuse them';
COMMENT ON COLUMN envault.token_revocations.revoked_by IS
	'Who revoked the token (NULL for revocations made before 0.3.0)';

SELECT pg_catalog.pg_extension_config_dump('envault.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('envault.data_keys', '');
SELECT pg_catalog.pg_extension_config_dump('envault.tokens', '');
SELECT pg_catalog.pg_extension_config_dump('envault.token_revocations', '');
SELECT pg_catalog.pg_extension_config_dump('envault.key_events_seq', '');

REVOKE ALL ON envault.tenants, envault.data_keys, envault.tokens,
	envault.token_revocations, envault.key_events, envault.key_events_seq FROM PUBLIC;
GRANT SELECT ON envault.tenants, envault.data_keys, envault.tokens,
	envault.token_revocations, envault.key_events TO envault_admin;

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
LANGUAGE C STABLE PARALLEL RESTRICTED
-- costly enough that the planner decrypts above a sort or limit, not below:
-- ORDER BY ... LIMIT 20 decrypts (and logs) 20 rows, not every match
COST 100;
COMMENT ON FUNCTION envault.env_decrypt(bytea, bytea) IS
	'Decrypt and authenticate an envault ciphertext';

CREATE FUNCTION envault.env_decrypt_text(ciphertext bytea, aad bytea DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_env_decrypt_text'
LANGUAGE C STABLE PARALLEL RESTRICTED
-- costly enough that the planner decrypts above a sort or limit, not below:
-- ORDER BY ... LIMIT 20 decrypts (and logs) 20 rows, not every match
COST 100;
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

CREATE FUNCTION envault.key_state(ciphertext bytea)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_key_state'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION envault.key_state(bytea) IS
	'State of the data key a value is under: active, rotated, retired, destroyed, tenant revoked or tenant destroyed; decrypts nothing';

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
	'Deprecated alias of envault.use_tenant(tenant, session => NOT is_local), removed in 0.4.0';

CREATE FUNCTION envault.use_tenant(tenant text, session boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_use_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.use_tenant(text, boolean) IS
	'Make a tenant current without a token until the end of the transaction (or session); trusted middleware, envault_admin only';

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
AS 'MODULE_PATHNAME', 'envault_revoke_token'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.revoke_token(text) IS
	'Revoke a token at once, ending the tenant contexts it set in every session; false if it was already revoked';

CREATE FUNCTION envault.revoke_tenant_tokens(tenant text)
RETURNS integer
AS 'MODULE_PATHNAME', 'envault_revoke_tenant_tokens'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.revoke_tenant_tokens(text) IS
	'Revoke every token of a tenant at once; returns how many were revoked';

CREATE FUNCTION envault.pepper_hmac(data bytea)
RETURNS bytea
AS 'MODULE_PATHNAME', 'envault_pepper_hmac'
LANGUAGE C STABLE PARALLEL SAFE STRICT;
COMMENT ON FUNCTION envault.pepper_hmac(bytea) IS
	'HMAC-SHA256 of data under the current pepper';

-- Row-level security

CREATE FUNCTION envault.current_tenant_as(type_of anyelement)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'envault_current_tenant_as'
-- restricted like current_tenant(): parallel workers do not share the context
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION envault.current_tenant_as(anyelement) IS
	'The current tenant as a value of the type of the argument (int2, int4, int8, uuid); NULL unless the tenant name is exactly that value''s text';

CREATE FUNCTION envault.isolation_expr(tbl regclass, tenant_column name)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_isolation_expr'
LANGUAGE C STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION envault.isolation_expr(regclass, name) IS
	'The expression of the policy isolate_table creates for a tenant column (NULL if there is no such column, or if its type or collation cannot tell every tenant name apart)';

CREATE FUNCTION envault.policy_isolates(tbl regclass, expr text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'envault_policy_isolates'
LANGUAGE C STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION envault.policy_isolates(regclass, text) IS
	'Is envault_tenant_isolation on the table exactly the policy isolate_table creates with this expression (permissive, all commands, PUBLIC, USING and WITH CHECK)?';

CREATE FUNCTION envault.isolate_table(tbl regclass, tenant_column name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	expr text := envault.isolation_expr(tbl, tenant_column);
	coltype text;
BEGIN
	IF tbl IS NULL OR tenant_column IS NULL THEN
		RAISE EXCEPTION '% must not be null', CASE WHEN tbl IS NULL THEN 'tbl' ELSE 'tenant_column' END
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF expr IS NULL THEN
		SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)
			   OPERATOR(pg_catalog.||) COALESCE(' COLLATE ' OPERATOR(pg_catalog.||)
					pg_catalog.quote_ident(c.collname::pg_catalog.text), '')
		  INTO coltype
		  FROM pg_catalog.pg_attribute a
		  LEFT JOIN pg_catalog.pg_collation c
			ON c.oid OPERATOR(pg_catalog.=) a.attcollation
		   AND a.attcollation OPERATOR(pg_catalog.<>) 100
		 WHERE a.attrelid OPERATOR(pg_catalog.=) tbl
		   AND a.attname OPERATOR(pg_catalog.=) tenant_column
		   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
		IF coltype IS NULL THEN
			RAISE EXCEPTION 'column "%" of relation % does not exist', tenant_column, tbl
				USING ERRCODE = 'undefined_column';
		END IF;
		RAISE EXCEPTION 'tenant column "%" of relation % cannot isolate tenants exactly', tenant_column, tbl
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = pg_catalog.format('Its type is %s: two tenant names could compare equal to one value (a cast truncates, pads or normalises them, or the collation folds them).', coltype),
				  HINT = 'Use a text or varchar column with a deterministic collation, or an int2, int4, int8 or uuid column.';
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
	'Deprecated alias of envault.unretire_data_key(), removed in 0.4.0';

CREATE FUNCTION envault.unretire_data_key(tenant text, purpose text, version integer)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_restore_data_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.unretire_data_key(text, text, integer) IS
	'Let a retired data key version decrypt again (undo envault.retire_data_key())';

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
COMMENT ON FUNCTION envault.restore_tenant(text) IS
	'Deprecated alias of envault.unrevoke_tenant(), removed in 0.4.0';

CREATE FUNCTION envault.unrevoke_tenant(tenant text)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_restore_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.unrevoke_tenant(text) IS 'Undo envault.revoke_tenant()';

CREATE FUNCTION envault.use_customer_key(tenant text)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_use_customer_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.use_customer_key(text) IS
	'Onboard a tenant to the customer-managed key that envault.customer_key_command returns (BYOK): fresh tenant and data keys under it';

CREATE FUNCTION envault.rekey_tenant(tenant text)
RETURNS integer
AS 'MODULE_PATHNAME', 'envault_rekey_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.rekey_tenant(text) IS
	'Fresh tenant and data keys under the key that wraps the tenant key now; returns the number of new active data keys';

CREATE FUNCTION envault.destroy_superseded_keys(tenant text)
RETURNS integer
AS 'MODULE_PATHNAME', 'envault_destroy_superseded_keys'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.destroy_superseded_keys(text) IS
	'Destroy the data keys a re-keying superseded, once their values are re-encrypted; returns how many';

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
	IF batch_size IS NULL THEN
		RAISE EXCEPTION 'batch_size must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
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

CREATE FUNCTION envault.prepare_column_walk(tbl regclass, col name, aad_col name,
											tenant_column name, caller text,
											OUT pk name, OUT pk_type text)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	what pg_catalog.text;
	c pg_catalog.name;
	must_be_bytea boolean;
	coltype pg_catalog.regtype;
BEGIN
	IF tbl IS NULL OR col IS NULL OR caller IS NULL THEN
		RAISE EXCEPTION '% must not be null',
			CASE WHEN tbl IS NULL THEN 'tbl' WHEN col IS NULL THEN 'col' ELSE 'caller' END
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- the column to rewrite, the one that holds its associated data, and
	-- the one that names each row's tenant (any type)
	FOR what, c, must_be_bytea IN
		SELECT v.w, v.c, v.b
		  FROM (VALUES (1, 'column', col, true), (2, 'aad column', aad_col, true),
					   (3, 'column', tenant_column, false)) v(i, w, c, b)
		 WHERE v.c IS NOT NULL ORDER BY v.i LOOP
		coltype := NULL;
		SELECT a.atttypid::pg_catalog.regtype INTO coltype
		  FROM pg_catalog.pg_attribute a
		 WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) c
		   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
		IF coltype IS NULL THEN
			RAISE EXCEPTION '% "%" of relation % does not exist', what, c, tbl
				USING ERRCODE = 'undefined_column';
		END IF;
		IF must_be_bytea AND coltype OPERATOR(pg_catalog.<>) 'pg_catalog.bytea'::pg_catalog.regtype THEN
			RAISE EXCEPTION '% "%" of relation % is not of type bytea', what, c, tbl
				USING ERRCODE = 'datatype_mismatch',
					  HINT = CASE WHEN what OPERATOR(pg_catalog.=) 'column'
							 THEN 'envault ciphertexts are bytea values.'
							 ELSE 'Keep the associated data in a bytea column, for example GENERATED ALWAYS AS (int4send(id)) STORED.' END;
		END IF;
	END LOOP;
	-- the key's type by schema and name: format_type() leaves pg_catalog's
	-- types unqualified, and the callers' casts run on their search_path
	SELECT a.attname, pg_catalog.format('%I.%I', tn.nspname, t.typname) INTO pk, pk_type
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
				  HINT = pg_catalog.format('%s walks the table in primary key order, one batch per transaction.', caller);
	END IF;
END
$$;
COMMENT ON FUNCTION envault.prepare_column_walk(regclass, name, name, name, text) IS
	'Internal to reencrypt_column and migrate_pgcrypto_column: check the columns they read, and return the single-column primary key they walk';

CREATE PROCEDURE envault.reencrypt_column(tbl regclass, col name,
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
	IF tbl IS NULL OR col IS NULL OR batch_size IS NULL THEN
		RAISE EXCEPTION '% must not be null',
			CASE WHEN tbl IS NULL THEN 'tbl' WHEN col IS NULL THEN 'col' ELSE 'batch_size' END
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF batch_size OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT w.pk, w.pk_type INTO pk, pktype
	  FROM envault.prepare_column_walk(tbl, col, aad_col, NULL, 'reencrypt_column') w;
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
	enabled_by	name NOT NULL,
	columns_meaning text
);
COMMENT ON TABLE envault.audit_chains IS
	'Tables whose rows are chained per tenant by SHA-256 hashes';
COMMENT ON COLUMN envault.audit_chains.identity IS
	'The chain''s name as row hashes and checkpoints cover it: the table''s schema-qualified name when it was chained';
COMMENT ON COLUMN envault.audit_chains.columns_meaning IS
	'What the table''s columns meant when it was chained (envault.chain_meaning()); the DDL guard refuses any command that changes it';

-- The Merkle tree of each tenant's chain (chaintree.c), built when asked
-- for: its frontier, and the roots of its perfect subtrees of 256 leaves
-- or more
CREATE TABLE envault.chain_trees (
	chain_id	integer NOT NULL,
	tenant		text,
	size		bigint NOT NULL CHECK (size OPERATOR(pg_catalog.>) 0),
	frontier	bytea NOT NULL,
	UNIQUE NULLS NOT DISTINCT (chain_id, tenant)
);
COMMENT ON TABLE envault.chain_trees IS
	'Per audit chain and tenant, the Merkle tree built so far: its size and frontier (u64 size, then the roots of its perfect subtrees, largest first)';
CREATE TABLE envault.chain_nodes (
	chain_id	integer NOT NULL,
	tenant		text,
	level		smallint NOT NULL CHECK (level OPERATOR(pg_catalog.>=) 0),
	idx			bigint NOT NULL CHECK (idx OPERATOR(pg_catalog.>=) 0),
	hash		bytea NOT NULL,
	UNIQUE NULLS NOT DISTINCT (chain_id, tenant, level, idx)
);
COMMENT ON TABLE envault.chain_nodes IS
	'Roots of the perfect subtrees (2^level leaves, the idx-th at that level) of audit chains'' Merkle trees: level 8 and up, and below where a purge deleted rows; what proofs read';
SELECT pg_catalog.pg_extension_config_dump('envault.chain_trees', '');
SELECT pg_catalog.pg_extension_config_dump('envault.chain_nodes', '');
REVOKE ALL ON envault.chain_trees, envault.chain_nodes FROM PUBLIC;
GRANT SELECT ON envault.chain_trees, envault.chain_nodes TO envault_admin;

-- The identity checkpoints name this database by (docs/audit-chain.md,
-- "Checkpoints"): random, made here; a restore brings back the original
-- row beside this one, and the oldest row counts.
CREATE TABLE envault.database_identity (
	database_id	text PRIMARY KEY CHECK (database_id OPERATOR(pg_catalog.<>) ''),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE envault.database_identity IS
	'The identity that checkpoint origins name this database by: the oldest row (envault.database_id())';
INSERT INTO envault.database_identity (database_id)
	VALUES (pg_catalog.gen_random_uuid()::pg_catalog.text);
SELECT pg_catalog.pg_extension_config_dump('envault.database_identity', '');
REVOKE ALL ON envault.database_identity FROM PUBLIC;
GRANT SELECT ON envault.database_identity TO envault_admin;

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
	signed_by	name NOT NULL,
	tree_root	bytea
);
CREATE INDEX checkpoints_chain ON envault.checkpoints (chain_id, tenant, seq);
COMMENT ON TABLE envault.checkpoints IS
	'Signed checkpoints (C2SP signed notes) of audit chain heads; also written to the server log';
COMMENT ON COLUMN envault.checkpoints.tenant IS
	'Canonical text of the tenant value; NULL for the chain of rows without a tenant';
COMMENT ON COLUMN envault.checkpoints.note IS
	'The signed note; seq, head_hash and signed_at repeat what it signs';
COMMENT ON COLUMN envault.checkpoints.head_hash IS
	'The hash of row seq, the chain''s head when signed';
COMMENT ON COLUMN envault.checkpoints.tree_root IS
	'The Merkle tree head of rows 1 to seq, which the note signs; NULL for a checkpoint of envault 0.2.0, which signed head_hash';

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

CREATE SEQUENCE envault.checkpoint_cosignatures_seq;
CREATE TABLE envault.checkpoint_cosignatures (
	cosignature_id bigint PRIMARY KEY
				DEFAULT pg_catalog.nextval('envault.checkpoint_cosignatures_seq'::pg_catalog.regclass),
	checkpoint_id bigint NOT NULL REFERENCES envault.checkpoints (checkpoint_id),
	witness		text NOT NULL,
	line		text NOT NULL,
	cosigned_at	timestamptz NOT NULL,
	requested_by name NOT NULL
);
CREATE INDEX checkpoint_cosignatures_checkpoint
	ON envault.checkpoint_cosignatures (checkpoint_id);
COMMENT ON TABLE envault.checkpoint_cosignatures IS
	'Witness cosignatures (C2SP tlog-cosignature) of checkpoints, appended to their notes in exports';
CREATE TRIGGER checkpoint_cosignatures_append_only
	BEFORE UPDATE OR DELETE ON envault.checkpoint_cosignatures
	FOR EACH ROW EXECUTE FUNCTION envault.append_only();
CREATE TRIGGER checkpoint_cosignatures_no_truncate
	BEFORE TRUNCATE ON envault.checkpoint_cosignatures
	FOR EACH STATEMENT EXECUTE FUNCTION envault.append_only();
SELECT pg_catalog.pg_extension_config_dump('envault.checkpoint_cosignatures', '');
SELECT pg_catalog.pg_extension_config_dump('envault.checkpoint_cosignatures_seq', '');
REVOKE ALL ON envault.checkpoint_cosignatures, envault.checkpoint_cosignatures_seq FROM PUBLIC;
GRANT SELECT ON envault.checkpoint_cosignatures TO envault_admin;

CREATE FUNCTION envault.chain_insert()
RETURNS trigger
AS 'MODULE_PATHNAME', 'envault_chain_insert'
LANGUAGE C;
COMMENT ON FUNCTION envault.chain_insert() IS
	'Trigger: link each inserted row to its tenant''s audit chain';

CREATE FUNCTION envault.chain_store_heads()
RETURNS trigger
AS 'MODULE_PATHNAME', 'envault_chain_store_heads'
LANGUAGE C;
COMMENT ON FUNCTION envault.chain_store_heads() IS
	'Trigger: write the heads an INSERT statement advanced to envault.chain_heads';
CREATE FUNCTION envault.chain_heads()
RETURNS trigger
AS 'MODULE_PATHNAME', 'envault_chain_store_heads'
LANGUAGE C;
COMMENT ON FUNCTION envault.chain_heads() IS
	'Deprecated alias of envault.chain_store_heads(), for the triggers of chains made before 0.3.0; removed in 0.4.0';

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

CREATE FUNCTION envault.tree_head(tbl regclass, tenant text, size bigint DEFAULT NULL,
								  OUT tree_size bigint, OUT root bytea)
AS 'MODULE_PATHNAME', 'envault_tree_head'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.tree_head(regclass, text, bigint) IS
	'The Merkle tree head (RFC 6962) of a tenant''s chain: of its first size rows, or of all';
CREATE FUNCTION envault.inclusion_proof(tbl regclass, tenant text, seq bigint, tree_size bigint)
RETURNS bytea[]
AS 'MODULE_PATHNAME', 'envault_inclusion_proof'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.inclusion_proof(regclass, text, bigint, bigint) IS
	'The audit path (RFC 9162) proving that row seq is in the Merkle tree of tree_size rows of a tenant''s chain';
CREATE FUNCTION envault.consistency_proof(tbl regclass, tenant text, old_size bigint, new_size bigint)
RETURNS bytea[]
AS 'MODULE_PATHNAME', 'envault_consistency_proof'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.consistency_proof(regclass, text, bigint, bigint) IS
	'The proof (RFC 9162) that the Merkle tree of old_size rows of a tenant''s chain is the start of that of new_size rows';

CREATE FUNCTION envault.database_id()
RETURNS text
AS 'MODULE_PATHNAME', 'envault_database_id'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION envault.database_id() IS
	'The identity checkpoint origins name this database by; auditors pin it (envault-verify --database)';

CREATE FUNCTION envault.chain_meaning(tbl regclass)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_chain_meaning'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION envault.chain_meaning(regclass) IS
	'What a table''s columns mean (names, types down to enum labels and composite attributes, collations, generated columns, parents), as the audit chain DDL guard compares it';

CREATE FUNCTION envault.distribute_audit_chain(tbl regclass, shard_count integer DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'envault_distribute_audit_chain'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.distribute_audit_chain(regclass, integer) IS
	'On a Citus coordinator: distribute a chained table by its tenant column, its chain with it (docs/scale-out.md)';

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
	'Sign the Merkle tree head of every (or one) tenant''s chain that grew since its last checkpoint, once shown to extend it';

CREATE FUNCTION envault.cosign(tbl regclass, tenant text DEFAULT NULL, witness text DEFAULT NULL)
RETURNS TABLE (tenant text, seq bigint, witness text, cosigned_at timestamptz)
AS 'MODULE_PATHNAME', 'envault_cosign'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.cosign(regclass, text, text) IS
	'Have the witnesses of envault.witness_keys (or one) cosign the newest checkpoint of every (or one) tenant''s chain';

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
CREATE FUNCTION envault.verify_chain_json(tbl regclass, tenant text,
										  cp_tenants text[], cp_sizes bigint[],
										  cp_roots bytea[])
RETURNS json
AS 'MODULE_PATHNAME', 'envault_verify_chain_json'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.verify_chain_json(regclass, text, text[], bigint[], bytea[]) IS
	'Internal: verify_chain() of a Citus shard as one value, with the coordinator''s checkpoints as tree heads to find (docs/scale-out.md)';

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
			   to_server_log bigint, commits bigint)
AS 'MODULE_PATHNAME', 'envault_access_log_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.access_log_status() IS
	'The access log queue of each database in use: its worker, records queued, written, sent to the server log instead, and the transactions that wrote them';

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
	PRIMARY KEY (tenant, name),
	aad_version	smallint NOT NULL DEFAULT 2
				CHECK (aad_version OPERATOR(pg_catalog.=) ANY ('{1,2}'::pg_catalog.int2[]))
);
COMMENT ON TABLE envault.secrets IS
	'Per-tenant third-party credentials, encrypted; read them with envault.get_secret()';
COMMENT ON COLUMN envault.secrets.aad_version IS
	'The associated data the value is bound to: 2, envault''s secrets label, the tenant and the name; 1, the name alone (values stored by 0.2.0)';
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

CREATE PROCEDURE envault.migrate_pgcrypto_column(tbl regclass, col name, tenant_column name,
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
	IF tbl IS NULL OR col IS NULL OR tenant_column IS NULL OR purpose IS NULL
	   OR legacy_key IS NULL OR batch_size IS NULL THEN
		RAISE EXCEPTION '% must not be null',
			CASE WHEN tbl IS NULL THEN 'tbl' WHEN col IS NULL THEN 'col'
				 WHEN tenant_column IS NULL THEN 'tenant_column' WHEN purpose IS NULL THEN 'purpose'
				 WHEN legacy_key IS NULL THEN 'legacy_key' ELSE 'batch_size' END
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF batch_size OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT n.nspname INTO nsp FROM pg_catalog.pg_extension e
	  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
	 WHERE e.extname OPERATOR(pg_catalog.=) 'pgcrypto';
	IF nsp IS NULL THEN
		RAISE EXCEPTION 'pgcrypto is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'The migration opens the old values with pgcrypto''s pgp_sym_decrypt_bytea().';
	END IF;
	SELECT w.pk, w.pk_type INTO pk, pktype
	  FROM envault.prepare_column_walk(tbl, col, aad_col, tenant_column,
									   'migrate_pgcrypto_column') w;
	aad_expr := CASE WHEN aad_col IS NULL THEN 'NULL' ELSE pg_catalog.format('%I', aad_col) END;
	tenant_filter := CASE WHEN only_tenant IS NULL THEN 'true'
						  ELSE pg_catalog.format('%I::pg_catalog.text OPERATOR(pg_catalog.=) %L',
												 tenant_column, only_tenant) END;

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
			pk, tbl, col, tenant_column, aad_expr, nsp, pktype, tenant_filter)
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

SELECT envault.enable_audit_chain('envault.key_events', 'tenant');
-- rows restored by pg_restore reload through the chain trigger, in order
SELECT pg_catalog.pg_extension_config_dump('envault.key_events', 'ORDER BY envault_seq');

-- every command: one on a parent table, a type or a collation can change a
-- chained table too (chainguard.c)
CREATE EVENT TRIGGER envault_chain_ddl_guard ON ddl_command_end
	EXECUTE FUNCTION envault.chain_ddl_guard();
CREATE EVENT TRIGGER envault_chain_drop_guard ON sql_drop
	EXECUTE FUNCTION envault.chain_drop_guard();

-- Privileges: nothing for PUBLIC, the data path for both roles,
-- management for envault_admin.

-- Scale-out on Citus (docs/scale-out.md).  Whoever writes the key tables,
-- every backend drops its cached keys once the change commits; on a Citus
-- node the trigger also runs on the node's copies of them, whose changes
-- commit in two phases.
CREATE FUNCTION envault.key_tables_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'envault_key_tables_changed'
LANGUAGE C;
COMMENT ON FUNCTION envault.key_tables_changed() IS
	'Statement trigger of the key tables: every backend drops its cached keys when the change commits';
CREATE TRIGGER tenants_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON envault.tenants
	FOR EACH STATEMENT EXECUTE FUNCTION envault.key_tables_changed();
CREATE TRIGGER data_keys_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON envault.data_keys
	FOR EACH STATEMENT EXECUTE FUNCTION envault.key_tables_changed();

CREATE FUNCTION envault.scale_out()
RETURNS TABLE (key_table regclass, nodes integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Citus's notices about the tables' local data, which scale_out() removes
SET client_min_messages = warning
AS $scale_out$
DECLARE
	t	regclass;
	c	record;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_extension WHERE extname OPERATOR(=) 'citus') THEN
		RAISE EXCEPTION 'Citus is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Run CREATE EXTENSION citus first (docs/scale-out.md).';
	END IF;
	IF NOT pg_catalog.citus_is_coordinator() THEN
		RAISE EXCEPTION 'envault.scale_out() runs on the Citus coordinator'
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_node WHERE groupid OPERATOR(=) 0) THEN
		RAISE EXCEPTION 'the coordinator is not in the Citus metadata'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'envault reads its key tables on the coordinator from the coordinator''s own copy.',
				  HINT = 'Run SELECT citus_set_coordinator_host(host, port) on the coordinator.';
	END IF;
	IF pg_catalog.current_setting('shared_preload_libraries')
		   OPERATOR(pg_catalog.!~) '(^|[\s,"])envault($|[\s,"])' THEN
		RAISE EXCEPTION 'envault is not in shared_preload_libraries'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'On a Citus node, key changes commit in two phases, which envault follows through shared memory.',
				  HINT = 'Add envault to shared_preload_libraries on every node and restart them.';
	END IF;

	-- Citus allows no plain table to reference a reference table: the key
	-- tables' foreign keys go (envault's functions keep what they checked:
	-- a tenant's rows are only written after its row is locked, and
	-- tenants are never deleted).
	FOR c IN
		SELECT conrelid::regclass AS rel, conname
		  FROM pg_constraint
		 WHERE contype OPERATOR(=) 'f'
		   AND confrelid OPERATOR(=) 'envault.tenants'::regclass
	LOOP
		EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', c.rel, c.conname);
	END LOOP;

	-- the statement triggers above go with the tables onto every node
	PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
	FOREACH t IN ARRAY ARRAY['envault.tenants', 'envault.data_keys']::regclass[] LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
						WHERE logicalrelid OPERATOR(=) t) THEN
			PERFORM pg_catalog.create_reference_table(t);
			PERFORM pg_catalog.truncate_local_data_after_distributing_table(t);
		END IF;
		key_table := t;
		nodes := (SELECT pg_catalog.count(*)::integer
					FROM pg_catalog.pg_dist_placement p
					JOIN pg_catalog.pg_dist_shard s USING (shardid)
				   WHERE s.logicalrelid OPERATOR(=) t);
		RETURN NEXT;
	END LOOP;
END
$scale_out$;
COMMENT ON FUNCTION envault.scale_out() IS
	'On a Citus coordinator: make the key tables reference tables, held by every node (docs/scale-out.md)';
REVOKE ALL ON FUNCTION envault.key_tables_changed(), envault.scale_out() FROM PUBLIC;

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
	envault.current_tenant_as(anyelement),
	envault.verify_token(text),
	envault.pepper_hmac(bytea)
	TO envault_user, envault_admin;
GRANT EXECUTE ON FUNCTION
	envault.create_tenant(text),
	envault.create_data_key(text, text),
	envault.set_tenant(text, boolean),
	envault.use_tenant(text, boolean),
	envault.issue_token(text, text, timestamptz),
	envault.revoke_token(text),
	envault.revoke_tenant_tokens(text),
	envault.key_state(bytea),
	envault.isolate_table(regclass, name),
	envault.isolation_expr(regclass, name),
	envault.policy_isolates(regclass, text),
	envault.isolation_report(),
	envault.rotate_data_key(text, text),
	envault.rotate_tenant_key(text),
	envault.retire_data_key(text, text, integer),
	envault.restore_data_key(text, text, integer),
	envault.unretire_data_key(text, text, integer),
	envault.destroy_data_key(text, text, integer),
	envault.destroy_tenant(text),
	envault.revoke_tenant(text),
	envault.restore_tenant(text),
	envault.unrevoke_tenant(text)
	TO envault_admin;
GRANT EXECUTE ON FUNCTION
	envault.master_key_status(),
	envault.rewrap_tenant_keys(integer),
	envault.use_customer_key(text),
	envault.use_master_key(text),
	envault.rekey_tenant(text),
	envault.destroy_superseded_keys(text)
	TO envault_admin;
REVOKE ALL ON PROCEDURE envault.reencrypt_column(regclass, name, name, integer),
	envault.rotate_master_key(integer) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE envault.reencrypt_column(regclass, name, name, integer),
	envault.rotate_master_key(integer)
	TO envault_admin;
GRANT EXECUTE ON FUNCTION envault.prepare_column_walk(regclass, name, name, name, text) TO envault_admin;
GRANT EXECUTE ON FUNCTION
	envault.chain_insert(),
	envault.chain_heads(),
	envault.chain_store_heads(),
	envault.chain_refuse(),
	envault.enable_audit_chain(regclass, name),
	envault.distribute_audit_chain(regclass, integer),
	envault.chain_meaning(regclass),
	envault.database_id(),
	envault.tree_head(regclass, text, bigint),
	envault.inclusion_proof(regclass, text, bigint, bigint),
	envault.consistency_proof(regclass, text, bigint, bigint),
	envault.disable_audit_chain(regclass),
	envault.checkpoint(regclass, text),
	envault.cosign(regclass, text, text),
	envault.signing_public_key(),
	envault.verify_chain(regclass, text),
	envault.verify_chain_json(regclass, text, text[], bigint[], bytea[]),
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
