-- envault demo: run by scripts/demo.sh on a throwaway cluster.
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = notice;

\echo
\echo '--- 1. install envault and create two tenants (each gets its own key, wrapped by the master key)'
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
SELECT envault.create_tenant('globex');
SELECT tenant, key_version, encode(substr(wrapped_key, 1, 12), 'hex') || '...' AS wrapped_key_prefix
  FROM envault.tenants ORDER BY tenant;

\echo
\echo '--- 2. an application table with per-tenant encrypted columns'
SET search_path = public, envault;
CREATE TABLE customers (
	id      int PRIMARY KEY,
	tenant  text NOT NULL,
	email   bytea NOT NULL,    -- env_encrypt(tenant, 'pii', email, aad => id)
	api_key bytea NOT NULL     -- env_encrypt(tenant, 'secrets', key)
);
INSERT INTO customers VALUES
	(1, 'acme',   env_encrypt('acme',   'pii', 'alice@acme.example',  int4send(1)),
	              env_encrypt('acme',   'secrets', 'sk-acme-4f1c9e')),
	(2, 'acme',   env_encrypt('acme',   'pii', 'bob@acme.example',    int4send(2)),
	              env_encrypt('acme',   'secrets', 'sk-acme-77d0b2')),
	(3, 'globex', env_encrypt('globex', 'pii', 'carol@globex.example', int4send(3)),
	              env_encrypt('globex', 'secrets', 'sk-globex-0aa3f1'));

\echo 'what is stored: self-describing ciphertexts, nothing readable'
SELECT id, tenant, encode(substr(email, 1, 20), 'hex') || '...' AS email_stored,
       octet_length(email) AS bytes
  FROM customers ORDER BY id;

\echo
\echo '--- 3. decrypt: the everyday call'
SELECT id, tenant, env_decrypt_text(email, int4send(id)) AS email,
       env_decrypt_text(api_key) AS api_key
  FROM customers ORDER BY id;

\echo 'one data key per (tenant, purpose), created on first use, wrapped by the tenant key'
SELECT tenant, purpose, version, state FROM envault.data_keys ORDER BY tenant, purpose;

\echo
\echo '--- 4. one tenant''s ciphertext does not open under another tenant''s keys'
\echo 'take acme''s ciphertext and make its header name globex''s data key:'
DO $$
DECLARE
	c bytea;
BEGIN
	SELECT overlay(api_key PLACING
	               (SELECT substr(api_key, 5, 8) FROM customers WHERE id = 3)
	               FROM 5 FOR 8)
	  INTO c FROM customers WHERE id = 1;
	PERFORM envault.env_decrypt(c);
	RAISE EXCEPTION 'DEMO FAILED: acme''s value opened under globex''s key';
EXCEPTION WHEN SQLSTATE '22V01' THEN
	RAISE NOTICE 'refused, SQLSTATE %: %', SQLSTATE, SQLERRM;
END
$$;
\echo 'and a value copied to another row is refused too (the row id is bound in as aad):'
DO $$
BEGIN
	PERFORM envault.env_decrypt(email, int4send(2)) FROM customers WHERE id = 1;
	RAISE EXCEPTION 'DEMO FAILED: row 1''s value opened as row 2';
EXCEPTION WHEN SQLSTATE '22V01' THEN
	RAISE NOTICE 'refused, SQLSTATE %: %', SQLSTATE, SQLERRM;
END
$$;

\echo
\echo '--- 5. a tampered ciphertext is refused: flip one bit of the stored value'
UPDATE customers SET api_key = set_byte(api_key, 40, get_byte(api_key, 40) # 1) WHERE id = 2;
DO $$
BEGIN
	PERFORM envault.env_decrypt_text(api_key) FROM customers WHERE id = 2;
	RAISE EXCEPTION 'DEMO FAILED: a tampered value was accepted';
EXCEPTION WHEN SQLSTATE '22V01' THEN
	RAISE NOTICE 'refused, SQLSTATE %: %', SQLSTATE, SQLERRM;
END
$$;

\echo
\echo '--- 6. the application: a token per tenant, a tenant context SQL cannot forge'
CREATE ROLE demo_app LOGIN;
GRANT envault_user TO demo_app;
GRANT SELECT ON customers TO demo_app;
SELECT envault.issue_token('globex', 'globex api') AS globex_token \gset
\echo 'an API token (shown once; only its HMAC is stored):'
SELECT left(:'globex_token', 24) || '...' AS token;
SET ROLE demo_app;
BEGIN;
SELECT envault.authenticate(:'globex_token') AS authenticated_as;
SELECT id, env_decrypt_text(email, int4send(id)) AS email FROM customers WHERE id = 3;
\echo 'acme''s row is visible to this role, but its ciphertext does not open under globex''s context:'
SAVEPOINT s;
DO $$
BEGIN
	PERFORM envault.env_decrypt_text(email, int4send(id)) FROM customers WHERE id = 1;
	RAISE EXCEPTION 'DEMO FAILED: globex opened acme''s value';
EXCEPTION WHEN insufficient_privilege THEN
	RAISE NOTICE 'refused, SQLSTATE %: %', SQLSTATE, SQLERRM;
END
$$;
\echo 'and the tenant cannot be switched with SQL:'
DO $$
BEGIN
	PERFORM set_config('envault.current_tenant', 'acme', true);
	RAISE EXCEPTION 'DEMO FAILED: the tenant setting was forged';
EXCEPTION WHEN invalid_name THEN
	RAISE NOTICE 'refused, SQLSTATE %: %', SQLSTATE, SQLERRM;
END
$$;
COMMIT;
\echo 'the context ended with the transaction, so a pooled connection carries nothing over:'
SELECT envault.current_tenant() IS NULL AS no_tenant_now;
DO $$
BEGIN
	PERFORM wrapped_key FROM envault.data_keys;
	RAISE EXCEPTION 'DEMO FAILED: the application role read the key table';
EXCEPTION WHEN insufficient_privilege THEN
	RAISE NOTICE 'and the key tables stay closed: SQLSTATE %: %', SQLSTATE, SQLERRM;
END
$$;
RESET ROLE;

\echo
\echo '--- 7. key lifecycle: rotate without downtime, then crypto-shred a tenant'
SELECT envault.rotate_data_key('acme', 'pii') AS new_pii_version;
SELECT id, env_decrypt_text(email, int4send(id)) AS still_readable FROM customers WHERE tenant = 'acme' ORDER BY id;
SELECT envault.destroy_tenant('globex');
DO $$
BEGIN
	PERFORM envault.env_decrypt_text(api_key) FROM customers WHERE id = 3;
	RAISE EXCEPTION 'DEMO FAILED: a shredded tenant''s value opened';
EXCEPTION WHEN object_not_in_prerequisite_state THEN
	RAISE NOTICE 'refused, SQLSTATE %: %', SQLSTATE, SQLERRM;
END
$$;
SELECT operation, tenant, purpose, version FROM envault.key_events ORDER BY event_id;

\echo
\echo 'demo finished: every value decrypted, every forgery and cross-tenant read was refused'
