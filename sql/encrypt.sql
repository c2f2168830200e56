-- encrypt: the everyday data path, with envault on the search path so the
-- data-path functions read unqualified.
SET search_path = public, envault;
-- the data key id a ciphertext names (bytes 5 to 12, big-endian)
CREATE FUNCTION regress_key_id(c bytea) RETURNS bigint
LANGUAGE sql AS $$ SELECT ('x' || encode(substr(c, 5, 8), 'hex'))::bit(64)::bigint $$;
SELECT envault.create_tenant('acme');
SELECT envault.create_tenant('globex');

-- text and bytea round trips
SELECT env_decrypt_text(env_encrypt('acme', 'secrets', 'sk-live-1234'));
SELECT env_decrypt(env_encrypt('acme', 'files', '\x00ff10'::bytea));
SELECT env_decrypt_text(env_encrypt('globex', 'secrets', 'grüße, 東京'));

-- empty values round-trip to empty values, not to NULL
SELECT env_decrypt_text(env_encrypt('acme', 'secrets', '')) = '' AS empty_text,
       env_decrypt(env_encrypt('acme', 'files', ''::bytea)) = ''::bytea AS empty_bytea;

-- NULL in, NULL out
SELECT env_encrypt('acme', 'secrets', NULL::text) IS NULL AS enc_text,
       env_encrypt('acme', 'secrets', NULL::bytea) IS NULL AS enc_bytea,
       env_decrypt(NULL) IS NULL AS dec,
       env_decrypt_text(NULL) IS NULL AS dec_text;

-- layout: "EV", format 1, algorithm 1 (XAES-256-GCM); 52 bytes of overhead
SELECT substr(env_encrypt('acme', 'secrets', 'x'), 1, 4) AS header,
       octet_length(env_encrypt('acme', 'secrets', '')) AS empty_len,
       octet_length(env_encrypt('acme', 'secrets', repeat('x', 100))) AS len_100;

-- the header names the active data key of the tenant and purpose
SELECT d.tenant, d.purpose, d.version, d.state
  FROM envault.data_keys d
 WHERE d.key_id = regress_key_id(env_encrypt('acme', 'secrets', 'x'));

-- a fresh random nonce every time: equal plaintexts never give equal ciphertexts
SELECT count(DISTINCT env_encrypt('acme', 'secrets', 'same')) AS distinct_ciphertexts,
       count(DISTINCT substr(env_encrypt('acme', 'secrets', 'same'), 13, 24)) AS distinct_nonces
  FROM generate_series(1, 1000);

-- aad binds a value to its row: each row decrypts with its own id
CREATE TABLE regress_notes (id int PRIMARY KEY, body bytea);
INSERT INTO regress_notes
SELECT g, env_encrypt('acme', 'messages', 'note ' || g, int4send(g))
  FROM generate_series(1, 5) g;
SELECT id, env_decrypt_text(body, int4send(id)) FROM regress_notes ORDER BY id;

-- a NULL aad is the same as an empty one
SELECT env_decrypt_text(env_encrypt('acme', 'secrets', 'no aad', NULL), ''::bytea),
       env_decrypt_text(env_encrypt('acme', 'secrets', 'no aad', ''::bytea));

-- one active data key per (tenant, purpose), created on first use, wrapped
-- into 73 bytes; one key per tenant, wrapped by the master key
SELECT tenant, purpose, version, state, octet_length(wrapped_key) AS wrapped_len,
       tenant_key_version
  FROM envault.data_keys ORDER BY tenant, purpose;
SELECT tenant, key_version, octet_length(wrapped_key) AS wrapped_len,
       octet_length(master_kcv) AS kcv_len
  FROM envault.tenants ORDER BY tenant;
-- every wrapped key is different, and so is every key id
SELECT count(DISTINCT wrapped_key) = count(*) AS distinct_wraps,
       count(DISTINCT key_id) = count(*) AS distinct_ids
  FROM envault.data_keys;
-- all tenants were wrapped by the same, configured, master key
SELECT count(DISTINCT master_kcv) FROM envault.tenants;

-- explicit creation returns the active version and is idempotent
SELECT envault.create_data_key('globex', 'messages');
SELECT envault.create_data_key('globex', 'messages');
SELECT count(*) FROM envault.data_keys WHERE tenant = 'globex' AND purpose = 'messages';

-- a large value through a TOASTed column
CREATE TABLE regress_big (v bytea);
INSERT INTO regress_big
SELECT env_encrypt('acme', 'files', convert_to(repeat('abcdefgh', 262144), 'UTF8'));
SELECT octet_length(env_decrypt(v)) AS len,
       env_decrypt(v) = convert_to(repeat('abcdefgh', 262144), 'UTF8') AS same
  FROM regress_big;

-- with a cache of one key every value forces an unwrap; results are unchanged
SET envault.key_cache_size = 1;
CREATE TABLE regress_mixed AS
SELECT g, CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END AS tenant,
       env_encrypt(CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END,
                   CASE WHEN g % 3 = 0 THEN 'secrets' ELSE 'messages' END,
                   'value ' || g) AS c
  FROM generate_series(1, 30) g;
SELECT count(*) FILTER (WHERE env_decrypt_text(c) = 'value ' || g) AS correct,
       count(*) AS total
  FROM regress_mixed;
RESET envault.key_cache_size;

-- a data key created in a rolled-back transaction never encrypts anything
BEGIN;
SELECT envault.create_data_key('globex', 'files');
ROLLBACK;
SELECT count(*) FROM envault.data_keys WHERE tenant = 'globex' AND purpose = 'files';
-- the next encryption names a key that exists in the table (a key of the
-- aborted transaction would still decrypt from the cache, so check the id)
CREATE TABLE regress_after AS
SELECT env_encrypt('globex', 'files', 'after rollback') AS c;
SELECT d.version, env_decrypt_text(a.c)
  FROM regress_after a JOIN envault.data_keys d ON d.key_id = regress_key_id(a.c);

-- likewise for a rolled-back savepoint: the outer transaction gets a new key
BEGIN;
SAVEPOINT s1;
SELECT envault.create_data_key('acme', 'avatars');
ROLLBACK TO SAVEPOINT s1;
CREATE TEMP TABLE regress_sp AS SELECT env_encrypt('acme', 'avatars', 'kept') AS c;
COMMIT;
SELECT d.version, env_decrypt_text(s.c)
  FROM regress_sp s JOIN envault.data_keys d ON d.key_id = regress_key_id(s.c);
SELECT count(*) FROM envault.data_keys WHERE tenant = 'acme' AND purpose = 'avatars';

-- keys created in a committed subtransaction stay usable
BEGIN;
SAVEPOINT s2;
SELECT envault.create_data_key('acme', 'billing');
RELEASE SAVEPOINT s2;
SELECT env_decrypt_text(env_encrypt('acme', 'billing', 'released'));
COMMIT;
SELECT env_decrypt_text(env_encrypt('acme', 'billing', 'after commit'));

-- a function named decrypt elsewhere on the path does not interfere
CREATE SCHEMA regress_other;
CREATE FUNCTION regress_other.decrypt(bytea) RETURNS text
  LANGUAGE sql AS $$ SELECT 'not envault' $$;
SET search_path = regress_other, envault;
SELECT env_decrypt_text(env_encrypt('acme', 'secrets', 'no collision'));
RESET search_path;

-- Decrypting costs enough that the planner decrypts above a sort and a
-- limit: ORDER BY ... LIMIT 2 decrypts (and records in the access log) two
-- rows, not every row it sorts
CREATE TABLE regress_cost (id int, ct bytea);
INSERT INTO regress_cost
SELECT g, envault.env_encrypt('acme', 'secrets', 'row ' || g) FROM generate_series(1, 50) g;
ANALYZE regress_cost;
SET compute_query_id = off;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id, envault.env_decrypt_text(ct) FROM regress_cost ORDER BY id DESC LIMIT 2;
SELECT id, envault.env_decrypt_text(ct) FROM regress_cost ORDER BY id DESC LIMIT 2;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id, envault.env_decrypt(ct) FROM regress_cost ORDER BY id LIMIT 2;
RESET compute_query_id;
DROP TABLE regress_cost;
