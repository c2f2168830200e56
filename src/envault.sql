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
	key_version	integer NOT NULL DEFAULT 1
				CHECK (key_version OPERATOR(pg_catalog.>=) 1),
	wrapped_key	bytea NOT NULL,
	master_kcv	bytea NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by	name NOT NULL
);
COMMENT ON TABLE envault.tenants IS
	'One key per tenant (a key-encryption key), wrapped by the master key';
COMMENT ON COLUMN envault.tenants.master_kcv IS
	'Check value of the master key that wrapped this tenant key';

CREATE TABLE envault.data_keys (
	key_id		bigint PRIMARY KEY,
	tenant		text NOT NULL REFERENCES envault.tenants (tenant),
	purpose		text NOT NULL
				CHECK (purpose OPERATOR(pg_catalog.~) '^[a-z0-9][a-z0-9_.-]{0,62}$'),
	version		integer NOT NULL CHECK (version OPERATOR(pg_catalog.>=) 1),
	state		text NOT NULL DEFAULT 'active'
				CHECK (state OPERATOR(pg_catalog.=) 'active'),
	wrapped_key	bytea NOT NULL,
	tenant_key_version integer NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_by	name NOT NULL,
	UNIQUE (tenant, purpose, version)
);
CREATE UNIQUE INDEX data_keys_one_active
	ON envault.data_keys (tenant, purpose)
	WHERE state OPERATOR(pg_catalog.=) 'active';
COMMENT ON TABLE envault.data_keys IS
	'Data keys per (tenant, purpose, version), wrapped by the tenant key';

SELECT pg_catalog.pg_extension_config_dump('envault.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('envault.data_keys', '');

REVOKE ALL ON envault.tenants, envault.data_keys FROM PUBLIC;
GRANT SELECT ON envault.tenants, envault.data_keys TO envault_admin;

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

-- Privileges: nothing for PUBLIC, the data path for both roles,
-- management for envault_admin.

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA envault FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	envault.env_encrypt(text, text, bytea, bytea),
	envault.env_encrypt(text, text, text, bytea),
	envault.env_decrypt(bytea, bytea),
	envault.env_decrypt_text(bytea, bytea)
	TO envault_user, envault_admin;
GRANT EXECUTE ON FUNCTION
	envault.create_tenant(text),
	envault.create_data_key(text, text)
	TO envault_admin;
