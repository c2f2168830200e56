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
\echo '--- 8. a tamper-evident audit trail: a hash chain per tenant, signed checkpoints'
CREATE TABLE audit_trail (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
						  tenant text NOT NULL, actor text NOT NULL, action text NOT NULL);
SELECT envault.enable_audit_chain('audit_trail', 'tenant') AS rows_linked;
INSERT INTO audit_trail (tenant, actor, action) VALUES
	('acme', 'alice', 'invoice 17 created'), ('acme', 'bob', 'invoice 17 paid'),
	('globex', 'carol', 'tenant off-boarded'), ('acme', 'alice', 'invoice 17 refunded');
SELECT id, tenant, action, envault_seq, left(encode(envault_hash, 'hex'), 16) || '...' AS hash
  FROM audit_trail ORDER BY id;
\echo 'the heads, signed with Ed25519 (the note is also written to the server log):'
SELECT tenant, seq FROM envault.checkpoint('audit_trail') ORDER BY tenant;
SELECT tenant, rows_checked, ok FROM envault.verify_chain('audit_trail') ORDER BY tenant;
\echo 'nobody can change a row, the owner and superusers included:'
DO $$
BEGIN
	UPDATE audit_trail SET action = 'invoice 17 cancelled' WHERE id = 2;
	RAISE EXCEPTION 'DEMO FAILED: a chained row was updated';
EXCEPTION WHEN insufficient_privilege THEN
	RAISE NOTICE 'refused, SQLSTATE %: %', SQLSTATE, SQLERRM;
END
$$;
\echo 'a superuser who goes around the triggers is caught by verification:'
SET session_replication_role = replica;
UPDATE audit_trail SET action = 'invoice 17 cancelled' WHERE id = 2;
RESET session_replication_role;
SELECT tenant, rows_checked, ok, first_bad_seq, reason
  FROM envault.verify_chain('audit_trail') ORDER BY tenant;
\echo 'an auditor verifies an export with envault-verify, the public key and the database identity they pin, without the database:'
SELECT envault.signing_public_key() AS verifier_key, envault.database_id() AS database_id;

\echo
\echo '--- 9. every decryption is in the access log, a rolled-back one too'
BEGIN;
SELECT count(env_decrypt_text(email, int4send(id))) AS decrypted FROM customers WHERE tenant = 'acme';
ROLLBACK;
DO $$ BEGIN PERFORM envault.flush_access_log(); END $$;
SELECT tenant, purpose, key_version, count, role, statement_seq
  FROM envault.access_log WHERE tenant = 'acme' ORDER BY envault_seq DESC LIMIT 2;
SELECT tenant, ok FROM envault.verify_chain('envault.access_log') ORDER BY tenant;
\echo 'third-party credentials in the secrets store: only a masked preview is ever shown'
SELECT envault.put_secret('acme', 'openai', 'sk-demo-0123456789abcdef') AS preview;
SELECT tenant, name, preview FROM envault.list_secrets();
SELECT envault.get_secret('acme', 'openai') = 'sk-demo-0123456789abcdef' AS opens;

\echo
\echo 'demo finished: every value decrypted, every forgery and cross-tenant read was refused, and the tampered row was found'
