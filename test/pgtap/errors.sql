-- Errors with their SQLSTATEs and messages, as an application sees them.
BEGIN;
SELECT plan(34);
SET LOCAL search_path = public, envault;

SELECT lives_ok($$SELECT envault.create_tenant('tap-acme')$$, 'create a tenant');
SELECT lives_ok($$SELECT envault.create_tenant('tap-globex')$$, 'create a second tenant');
CREATE TEMP TABLE ct AS
SELECT env_encrypt('tap-acme', 'secrets', 'tap secret', '\x01'::bytea) AS c;

SELECT is(env_decrypt_text(c, '\x01'::bytea), 'tap secret', 'round trip') FROM ct;

-- one SQLSTATE and one message for every authentication failure
SELECT throws_ok(format('SELECT env_decrypt(%L::bytea, %L::bytea)', c, '\x02'),
                 '22V01', 'envault ciphertext failed authentication', 'wrong aad') FROM ct;
SELECT throws_ok(format('SELECT env_decrypt(%L::bytea)', c),
                 '22V01', 'envault ciphertext failed authentication', 'missing aad') FROM ct;
SELECT throws_ok(format('SELECT env_decrypt(%L::bytea, %L::bytea)',
                        set_byte(c, octet_length(c) - 1, get_byte(c, octet_length(c) - 1) # 128), '\x01'),
                 '22V01', 'envault ciphertext failed authentication', 'changed tag') FROM ct;
SELECT throws_ok(format('SELECT env_decrypt(%L::bytea, %L::bytea)',
                        set_byte(c, 40, get_byte(c, 40) # 1), '\x01'),
                 '22V01', 'envault ciphertext failed authentication', 'changed body') FROM ct;
SELECT throws_ok(format('SELECT env_decrypt(%L::bytea, %L::bytea)', substr(c, 1, 51), '\x01'),
                 '22V01', 'envault ciphertext failed authentication', 'truncated below the minimum') FROM ct;
SELECT throws_ok($$SELECT env_decrypt('plain text, not a ciphertext'::bytea)$$,
                 '22V01', 'envault ciphertext failed authentication', 'not a ciphertext');
SELECT throws_ok(format('SELECT env_decrypt(%L::bytea, %L::bytea)',
                        overlay(c PLACING substr(env_encrypt('tap-globex', 'secrets', 'x'), 5, 8)
                                FROM 5 FOR 8), '\x01'),
                 '22V01', 'envault ciphertext failed authentication',
                 'ciphertext relabelled to another tenant') FROM ct;
SELECT throws_ok(format('SELECT env_decrypt(%L::bytea, %L::bytea)',
                        set_byte(c, 4, get_byte(c, 4) # 64), '\x01'),
                 '42704', 'envault data key of this ciphertext does not exist',
                 'unknown data key') FROM ct;

SELECT throws_ok($$SELECT env_decrypt_text(env_encrypt('tap-acme', 'files', '\xff'::bytea))$$,
                 '22021', 'decrypted value is not valid text in encoding "UTF8"',
                 'invalid text');

-- tenants and purposes
SELECT throws_ok($$SELECT env_encrypt('tap-nobody', 'secrets', 'x')$$,
                 '42704', 'envault tenant "tap-nobody" does not exist', 'unknown tenant');
SELECT throws_ok($$SELECT envault.create_tenant('tap-acme')$$,
                 '42710', 'envault tenant "tap-acme" already exists', 'duplicate tenant');
SELECT throws_ok($$SELECT env_encrypt('', 'secrets', 'x')$$,
                 '22023', 'invalid tenant name', 'empty tenant');
SELECT throws_ok($$SELECT env_encrypt('tap-acme', 'Upper', 'x')$$,
                 '22023', 'invalid purpose name', 'bad purpose');
SELECT throws_ok($$SELECT env_encrypt(NULL, 'secrets', 'x')$$,
                 '22004', 'tenant must not be null', 'null tenant');
SELECT throws_ok($$SELECT envault.create_data_key('tap-acme', NULL)$$,
                 '22004', 'purpose must not be null', 'null purpose');

-- settings
SELECT throws_ok($$SET envault.master_key = '00'$$, '55P02',
                 'parameter "envault.master_key" cannot be changed without restarting the server',
                 'master key cannot be SET');
SELECT throws_ok($$SET envault.key_cache_size = 0$$, '22023', NULL,
                 'cache size must be at least 1');

-- privileges, as roles without them
CREATE ROLE tap_app;
GRANT envault_user TO tap_app;
CREATE ROLE tap_nobody;
CREATE TEMP TABLE other AS SELECT env_encrypt('tap-globex', 'secrets', 'x') AS c;
GRANT SELECT ON other TO tap_app;
SELECT envault.issue_token('tap-acme', 'tap') AS tok \gset
SET LOCAL ROLE tap_app;
-- without a tenant, an application role uses no key at all
SELECT throws_ok($$SELECT env_encrypt('tap-acme', 'secrets', 'x')$$,
                 '42501', 'no envault tenant is set', 'no tenant, no encryption');
SELECT throws_ok($$SELECT envault.set_tenant('tap-acme')$$,
                 '42501', 'permission denied for function set_tenant',
                 'envault_user cannot pick a tenant');
SELECT throws_ok($$SELECT envault.authenticate('evt_0000')$$,
                 '28000', 'envault token is not valid', 'a malformed token');
-- with one, only that tenant's keys
SELECT is(envault.authenticate(:'tok'), 'tap-acme', 'authenticate with a token');
SELECT is(env_decrypt_text(env_encrypt('tap-acme', 'secrets', 'app')), 'app',
          'envault_user encrypts and decrypts for the current tenant');
SELECT throws_ok($$SELECT env_decrypt(c) FROM other$$,
                 '42501', 'envault ciphertext belongs to another tenant',
                 'another tenant''s ciphertext is refused');
SELECT throws_ok($$SELECT env_encrypt('tap-globex', 'secrets', 'x')$$,
                 '42501', 'envault tenant "tap-globex" is not the current tenant',
                 'encrypting for another tenant is refused');
SELECT throws_ok($$SELECT envault.create_tenant('tap-mallory')$$,
                 '42501', 'permission denied for function create_tenant',
                 'envault_user cannot create tenants');
SELECT throws_ok($$SELECT wrapped_key FROM envault.data_keys$$,
                 '42501', 'permission denied for table data_keys',
                 'envault_user cannot read data keys');
SELECT throws_ok($$SELECT wrapped_key FROM envault.tenants$$,
                 '42501', 'permission denied for table tenants',
                 'envault_user cannot read tenant keys');
SELECT throws_ok($$SELECT token_hmac FROM envault.tokens$$,
                 '42501', 'permission denied for table tokens',
                 'envault_user cannot read tokens');
SELECT throws_ok($$SHOW envault.master_key$$, '42501', NULL,
                 'envault_user cannot SHOW the master key setting');
RESET ROLE;
SET LOCAL ROLE tap_nobody;
SELECT throws_ok($$SELECT envault.env_decrypt('\x00'::bytea)$$,
                 '42501', 'permission denied for schema envault',
                 'other roles cannot even reach the schema');
RESET ROLE;
-- the 'files' key was created inside a statement that failed (invalid text,
-- above): it was rolled back with that statement's savepoint
SELECT is((SELECT array_agg(purpose)::text FROM envault.data_keys WHERE tenant = 'tap-acme'),
          '{secrets}', 'a data key created by a failed statement is rolled back with it');

SELECT * FROM finish();
ROLLBACK;
