-- errors: every way the data path and key management refuse bad input.
SET search_path = public, envault;
\set SHOW_CONTEXT never

-- Runs a statement and reports its SQLSTATE and message instead of failing.
CREATE FUNCTION regress_try(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

CREATE TABLE regress_ct AS
SELECT env_encrypt('acme', 'secrets', 'attack at dawn', 'row:1'::bytea) AS c;

-- The one authentication failure: same SQLSTATE and message for all of these.
SELECT env_decrypt(c, 'row:2'::bytea) FROM regress_ct;              -- wrong aad
SELECT env_decrypt(c) FROM regress_ct;                              -- missing aad
SELECT env_decrypt('\xdeadbeef'::bytea);                            -- not a ciphertext
SELECT env_decrypt(''::bytea);                                      -- empty
SELECT env_decrypt(substr(c, 1, octet_length(c) - 1), 'row:1') FROM regress_ct;  -- truncated

-- Every single-byte change and every truncation, outside the key id bytes,
-- fails authentication; none ever returns a plaintext.
SELECT outcome, count(*)
  FROM regress_ct,
       LATERAL (SELECT i FROM generate_series(0, octet_length(c) - 1) i
                 WHERE i NOT BETWEEN 4 AND 11) pos,
       LATERAL (SELECT regress_try(format('SELECT envault.env_decrypt(%L::bytea, %L::bytea)',
                    set_byte(c, i, get_byte(c, i) # 1), 'row:1')) AS outcome) t
 GROUP BY outcome;
SELECT outcome, count(*)
  FROM regress_ct,
       LATERAL generate_series(0, octet_length(c) - 1) len,
       LATERAL (SELECT regress_try(format('SELECT envault.env_decrypt(%L::bytea, %L::bytea)',
                    substr(c, 1, len), 'row:1')) AS outcome) t
 GROUP BY outcome;
-- a changed key id names a data key that does not exist; the detail names
-- the id (random, so compared rather than shown)
\set VERBOSITY terse
SELECT env_decrypt(set_byte(c, 11, get_byte(c, 11) # 1), 'row:1') FROM regress_ct;
\set VERBOSITY default
CREATE FUNCTION regress_detail(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	d text;
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
	RETURN d;
END
$$;
SELECT regress_detail(format('SELECT envault.env_decrypt(%L::bytea)', bad))
       = format('The ciphertext names data key id %s, which is not in envault.data_keys.',
                ('x' || encode(substr(bad, 5, 8), 'hex'))::bit(64)::bigint) AS detail_names_id
  FROM (SELECT set_byte(c, 11, get_byte(c, 11) # 1) AS bad FROM regress_ct) x;

-- A ciphertext moved to another tenant: give acme's ciphertext globex's
-- key id.  The key differs and the tenant is bound into the associated data.
SELECT env_decrypt(overlay(c PLACING substr(env_encrypt('globex', 'secrets', 'x'), 5, 8)
                           FROM 5 FOR 8), 'row:1') FROM regress_ct;
-- ... or another purpose of the same tenant
SELECT env_decrypt(overlay(c PLACING substr(env_encrypt('acme', 'messages', 'x'), 5, 8)
                           FROM 5 FOR 8), 'row:1') FROM regress_ct;

-- Bytes that are not text in the database encoding
SELECT env_decrypt_text(env_encrypt('acme', 'files', '\xc328ff'::bytea));
SELECT env_decrypt(env_encrypt('acme', 'files', '\xc328ff'::bytea));

-- Tenants and purposes
SELECT env_encrypt('nobody', 'secrets', 'x');
SELECT env_encrypt('', 'secrets', 'x');
SELECT env_encrypt(E'acme\n', 'secrets', 'x');
SELECT env_encrypt(repeat('t', 256), 'secrets', 'x');
SELECT env_encrypt('acme', 'Secrets', 'x');
SELECT env_encrypt('acme', '', 'x');
SELECT env_encrypt('acme', '_hidden', 'x');
SELECT env_encrypt('acme', repeat('p', 64), 'x');
SELECT env_encrypt(NULL, 'secrets', 'x');
SELECT env_encrypt('acme', NULL, 'x');
SELECT envault.create_tenant('acme');
SELECT envault.create_tenant(NULL);
SELECT envault.create_tenant('');
SELECT envault.create_data_key('nobody', 'secrets');
SELECT envault.create_data_key('acme', 'Bad Purpose');
-- the longest names are accepted
SELECT envault.create_tenant(repeat('t', 255));
SELECT env_decrypt_text(env_encrypt(repeat('t', 255), repeat('p', 63), 'long names'));

-- Master key settings are fixed at server start and never shown
SET envault.master_key = '00';
SET envault.master_key_file = '/tmp/key';
SET envault.master_key_command = 'echo';
SHOW envault.master_key;
SHOW envault.master_key_command;
SELECT name FROM pg_settings WHERE name LIKE 'envault.%' ORDER BY name;
ALTER SYSTEM SET envault.master_key = '00';

-- Key rows that were tampered with are detected, and not mistaken for a wrong
-- master key.  Swap the wrapped keys of two data keys of the same tenant:
-- each is bound to its own tenant, purpose, version and key id.
CREATE TABLE regress_saved AS SELECT * FROM envault.data_keys;
UPDATE envault.data_keys d SET wrapped_key = o.wrapped_key
  FROM envault.data_keys o
 WHERE d.tenant = 'acme' AND d.purpose = 'secrets'
   AND o.tenant = 'acme' AND o.purpose = 'messages';
\c
SET search_path = public, envault;
\set SHOW_CONTEXT never
\set VERBOSITY terse
SELECT env_decrypt(c, 'row:1') FROM regress_ct;
\set VERBOSITY default
UPDATE envault.data_keys d SET wrapped_key = s.wrapped_key
  FROM regress_saved s WHERE s.key_id = d.key_id;
\c
SET search_path = public, envault;
\set SHOW_CONTEXT never
SELECT env_decrypt_text(c, 'row:1') FROM regress_ct;

-- A data key row that claims to be wrapped under another tenant key version
UPDATE envault.data_keys SET tenant_key_version = 7
 WHERE tenant = 'acme' AND purpose = 'secrets';
\c
SET search_path = public, envault;
\set SHOW_CONTEXT never
SELECT env_decrypt(c, 'row:1') FROM regress_ct;
UPDATE envault.data_keys SET tenant_key_version = 1
 WHERE tenant = 'acme' AND purpose = 'secrets';

-- Swap the wrapped keys of two tenants
CREATE TABLE regress_saved_t AS SELECT * FROM envault.tenants;
UPDATE envault.tenants t SET wrapped_key = o.wrapped_key
  FROM envault.tenants o WHERE t.tenant = 'acme' AND o.tenant = 'globex';
\c
SET search_path = public, envault;
\set SHOW_CONTEXT never
SELECT env_decrypt(c, 'row:1') FROM regress_ct;

-- A tenant wrapped by another master key (simulated through its check value)
UPDATE envault.tenants t SET wrapped_key = s.wrapped_key,
       master_kcv = '\x00112233445566778899aabbccddeeff'
  FROM regress_saved_t s WHERE s.tenant = t.tenant AND t.tenant = 'acme';
\c
SET search_path = public, envault;
\set SHOW_CONTEXT never
SELECT env_decrypt(c, 'row:1') FROM regress_ct;
UPDATE envault.tenants t SET master_kcv = s.master_kcv
  FROM regress_saved_t s WHERE s.tenant = t.tenant;
\c
SET search_path = public, envault;
SELECT env_decrypt_text(c, 'row:1') FROM regress_ct;
