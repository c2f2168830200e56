-- lifecycle: rotation at the data key and tenant key levels, re-encryption,
-- retirement, destruction, crypto-shredding, revocation, and the key events
-- that record all of it.
SET search_path = public, envault;
\set SHOW_CONTEXT never
SELECT envault.create_tenant('lc');
SELECT envault.create_tenant('lc-other');
CREATE FUNCTION regress_version(c bytea) RETURNS integer
LANGUAGE sql AS $$
	SELECT version FROM envault.data_keys
	 WHERE key_id = ('x' || encode(substr(c, 5, 8), 'hex'))::bit(64)::bigint
$$;
-- each value is bound to its row by aad, kept in a generated column
CREATE TABLE regress_docs (id int PRIMARY KEY, body bytea,
                           aad bytea GENERATED ALWAYS AS (int4send(id)) STORED);
INSERT INTO regress_docs
SELECT g, env_encrypt('lc', 'docs', 'document ' || g, int4send(g)) FROM generate_series(1, 25) g;

-- a value kept under version 1 for the end of its life
CREATE TABLE regress_kept AS SELECT env_encrypt('lc', 'docs', 'kept under v1') AS c;

-- Rotating a data key: a new active version; the old one still decrypts,
-- never encrypts; existing ciphertexts are untouched
SELECT envault.rotate_data_key('lc', 'docs') AS new_version;
SELECT version, state FROM envault.data_keys
 WHERE tenant = 'lc' AND purpose = 'docs' ORDER BY version;
SELECT regress_version(env_encrypt('lc', 'docs', 'new')) AS encrypts_under;
SELECT count(*) FILTER (WHERE env_decrypt_text(body, int4send(id)) = 'document ' || id) AS readable,
       count(*) FILTER (WHERE regress_version(body) = 1) AS still_v1,
       count(*) FILTER (WHERE env_is_current(body)) AS current
  FROM regress_docs;

-- env_reencrypt: under the active version, same aad; unchanged if current
SELECT regress_version(env_reencrypt(body, int4send(id))) AS now_under,
       env_decrypt_text(env_reencrypt(body, int4send(id)), int4send(id)) AS same_plaintext
  FROM regress_docs WHERE id = 1;
SELECT env_reencrypt(c, NULL) = c AS unchanged_when_current
  FROM (SELECT env_encrypt('lc', 'docs', 'x') AS c) x;
SELECT env_reencrypt(body) FROM regress_docs WHERE id = 1;    -- wrong aad
SELECT env_reencrypt(NULL) IS NULL AS null_in_null_out, env_is_current(NULL) IS NULL AS null_current;

-- reencrypt_column moves a whole column, batch by batch
CALL envault.reencrypt_column('regress_docs', 'body', 'aad', batch_size => 10);
SELECT count(*) FILTER (WHERE env_decrypt_text(body, int4send(id)) = 'document ' || id) AS readable,
       count(*) FILTER (WHERE regress_version(body) = 2) AS under_v2
  FROM regress_docs;
-- a second run has nothing to do
CALL envault.reencrypt_column('regress_docs', 'body', 'aad', batch_size => 10);
CALL envault.reencrypt_column('regress_docs', 'nope');
CALL envault.reencrypt_column('regress_docs', 'id');
CALL envault.reencrypt_column('regress_docs', 'body', 'id');
CALL envault.reencrypt_column('regress_docs', 'body', 'nope');
-- the same checks, the same SQLSTATEs, as migrate_pgcrypto_column (42703
-- for a missing column, 42804 for one not of type bytea)
\set VERBOSITY sqlstate
CALL envault.reencrypt_column('regress_docs', 'nope');
CALL envault.reencrypt_column('regress_docs', 'id');
\set VERBOSITY default
CREATE TABLE regress_nopk (body bytea);
CALL envault.reencrypt_column('regress_nopk', 'body');
CALL envault.reencrypt_column('regress_docs', 'body', batch_size => 0);

-- Retiring: that version stops decrypting, with an error that names it;
-- unretiring brings it back (restore_data_key is its deprecated alias); the active version cannot be retired
INSERT INTO regress_docs VALUES (100, env_encrypt('lc', 'docs', 'under v2', int4send(100)));
SELECT envault.rotate_data_key('lc', 'docs');
SELECT envault.retire_data_key('lc', 'docs', 2);
SELECT env_decrypt_text(body, int4send(id)) FROM regress_docs WHERE id = 100;
SELECT envault.retire_data_key('lc', 'docs', 3);
SELECT envault.unretire_data_key('lc', 'docs', 2);
SELECT env_decrypt_text(body, int4send(id)) FROM regress_docs WHERE id = 100;
SELECT envault.restore_data_key('lc', 'docs', 2);
SELECT envault.retire_data_key('lc', 'docs', 99);
SELECT envault.retire_data_key('nobody', 'docs', 1);

-- Destroying: irreversible, refused for the active version
SELECT envault.destroy_data_key('lc', 'docs', 3);
SELECT envault.destroy_data_key('lc', 'docs', 1);
SELECT version, state, wrapped_key IS NULL AS wiped FROM envault.data_keys
 WHERE tenant = 'lc' AND purpose = 'docs' ORDER BY version;
SELECT envault.restore_data_key('lc', 'docs', 1);
SELECT envault.retire_data_key('lc', 'docs', 1);
-- a value under the destroyed version is unreadable; the others are not
SELECT env_decrypt_text(c) FROM regress_kept;
SELECT env_decrypt_text(env_encrypt('lc', 'docs', 'v3 still works'));

-- Rotating the tenant key rewraps every data key; no ciphertext changes
SELECT key_version FROM envault.tenants WHERE tenant = 'lc';
CREATE TEMP TABLE regress_wraps AS
SELECT key_id, wrapped_key FROM envault.data_keys WHERE tenant = 'lc';
SELECT envault.rotate_tenant_key('lc') AS new_tenant_key_version;
SELECT key_version FROM envault.tenants WHERE tenant = 'lc';
SELECT count(*) AS rewrapped,
       count(*) FILTER (WHERE d.tenant_key_version = 2) AS under_v2
  FROM envault.data_keys d JOIN regress_wraps w USING (key_id)
 WHERE d.wrapped_key IS DISTINCT FROM w.wrapped_key AND d.state <> 'destroyed';
SELECT count(*) FILTER (WHERE env_decrypt_text(body, int4send(id)) IS NOT NULL) AS readable
  FROM regress_docs;
SELECT envault.rotate_tenant_key('nobody');

-- Revoking a tenant: nothing of it opens, nor do its tokens, until unrevoked
-- (restore_tenant is the deprecated alias of unrevoke_tenant)
SELECT envault.issue_token('lc', 'lc app') AS lc_token \gset
SELECT envault.revoke_tenant('lc');
SELECT env_decrypt_text(body, int4send(id)) FROM regress_docs WHERE id = 1;
SELECT env_encrypt('lc', 'docs', 'x');
SELECT envault.verify_token(:'lc_token') IS NULL AS token_refused;
SELECT envault.revoke_tenant('lc');
SELECT envault.unrevoke_tenant('lc');
SELECT env_decrypt_text(body, int4send(id)) FROM regress_docs WHERE id = 1;
SELECT envault.verify_token(:'lc_token');
SELECT envault.restore_tenant('lc');

-- Crypto-shredding: every key wiped, every ciphertext unreadable for good
SELECT envault.destroy_tenant('lc');
SELECT env_decrypt_text(body, int4send(id)) FROM regress_docs WHERE id = 1;
SELECT env_encrypt('lc', 'docs', 'x');
SELECT state, wrapped_key IS NULL AS wiped, master_kcv IS NULL AS no_kcv
  FROM envault.tenants WHERE tenant = 'lc';
SELECT count(*) AS keys, count(*) FILTER (WHERE state = 'destroyed' AND wrapped_key IS NULL) AS wiped
  FROM envault.data_keys WHERE tenant = 'lc';
SELECT count(*) FILTER (WHERE r.token_id IS NULL) AS live_tokens
  FROM envault.tokens k LEFT JOIN envault.token_revocations r USING (token_id) WHERE tenant = 'lc';
SELECT envault.destroy_tenant('lc');
SELECT envault.restore_tenant('lc');
SELECT envault.create_tenant('lc');
-- the other tenant is untouched
SELECT env_decrypt_text(env_encrypt('lc-other', 'docs', 'unaffected'));

-- Every operation is recorded, with actor and key, and never key material
SELECT operation, tenant, purpose, version, detail, actor = current_user AS by_me
  FROM envault.key_events WHERE tenant = 'lc' ORDER BY event_id;
-- ... a revocation in the chain of no tenant, naming the tenant: the
-- tenant's own chain can be locked by a transaction of its token holders,
-- and a revocation must not wait for one
SELECT operation, tenant IS NULL AS no_tenant, detail, actor = current_user AS by_me
  FROM envault.key_events WHERE operation = 'tenant revoked' AND detail = 'tenant ''lc''';
UPDATE envault.key_events SET detail = 'forged';
DELETE FROM envault.key_events;
TRUNCATE envault.key_events;

-- A data key whose creation fails after its row is written (here recording
-- its event fails) leaves no prepared key behind: 400 such failures take no
-- locked memory (VmLck of this backend; a page holds 170 prepared keys)
CREATE FUNCTION regress_no_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'no key events today';
END
$$;
CREATE TRIGGER regress_no_event BEFORE INSERT ON envault.key_events
	FOR EACH ROW WHEN (NEW.operation = 'data key created')
	EXECUTE FUNCTION regress_no_event();
SELECT env_encrypt('lc-other', 'no-event', 'x');
CREATE FUNCTION regress_locked_kb() RETURNS bigint
LANGUAGE sql AS $$
	SELECT substring(pg_read_file('/proc/' || pg_backend_pid() || '/status')
	                 FROM 'VmLck:\s+(\d+) kB')::bigint
$$;
SELECT regress_locked_kb() AS locked_before \gset
DO $$
BEGIN
	FOR i IN 1 .. 400 LOOP
		BEGIN
			PERFORM envault.env_encrypt('lc-other', 'no-event-' || i, 'x');
		EXCEPTION WHEN raise_exception THEN
			NULL;
		END;
	END LOOP;
END
$$;
SELECT regress_locked_kb() - :locked_before AS more_locked_kb;
DROP TRIGGER regress_no_event ON envault.key_events;
DROP FUNCTION regress_no_event(), regress_locked_kb();
SELECT count(*) AS data_keys_left FROM envault.data_keys WHERE purpose LIKE 'no-event%';

-- Automatic rotation by age, off by default: an active key older than
-- envault.data_key_max_age is rotated before it encrypts again
SHOW envault.data_key_max_age;
SELECT envault.create_tenant('lc-age');
SELECT regress_version(env_encrypt('lc-age', 'p', 'first')) AS version;
UPDATE envault.data_keys SET created_at = now() - interval '2 days' WHERE tenant = 'lc-age';
\c
SET search_path = public, envault;
SELECT regress_version(env_encrypt('lc-age', 'p', 'no limit, no rotation')) AS version;
SET envault.data_key_max_age = '1d';
SELECT regress_version(env_encrypt('lc-age', 'p', 'rotated first')) AS version;
SELECT regress_version(env_encrypt('lc-age', 'p', 'fresh key')) AS version;
-- read-only transactions keep using an old key: they cannot rotate
UPDATE envault.data_keys SET created_at = now() - interval '2 days'
 WHERE tenant = 'lc-age' AND version = 2;
\c
SET search_path = public, envault;
SET envault.data_key_max_age = '1d';
BEGIN READ ONLY;
SELECT regress_version(env_encrypt('lc-age', 'p', 'read only')) AS version;
COMMIT;
SELECT regress_version(env_encrypt('lc-age', 'p', 'read write')) AS version;
SELECT version, state FROM envault.data_keys WHERE tenant = 'lc-age' ORDER BY version;
SELECT operation, version, detail FROM envault.key_events
 WHERE tenant = 'lc-age' AND operation = 'data key rotated' ORDER BY event_id;
RESET envault.data_key_max_age;

-- Master key rotation needs a previous master key; only the current one is
-- configured here (docs/operations.md; test/t/009_master_rotation.pl)
SELECT master_key, check_value FROM envault.master_key_status();
SELECT * FROM envault.rewrap_tenant_keys(100);
CALL envault.rotate_master_key();

-- reencrypt_column skips the values it cannot move (under a retired or
-- destroyed data key, or of a revoked or destroyed tenant), counts them by
-- reason, and moves the rest; envault.key_state tells them apart
SELECT envault.create_tenant('lc-mix');
SELECT envault.create_tenant('lc-rev');
SELECT envault.create_tenant('lc-gone');
CREATE TABLE regress_skips (id int PRIMARY KEY, body bytea);
INSERT INTO regress_skips VALUES
	(1, env_encrypt('lc-mix', 'docs', 'under v1')),
	(2, env_encrypt('lc-mix', 'docs', 'under v1 too')),
	(3, env_encrypt('lc-rev', 'docs', 'revoked tenant')),
	(4, env_encrypt('lc-gone', 'docs', 'destroyed tenant')),
	(5, NULL);
SELECT envault.rotate_data_key('lc-mix', 'docs');
INSERT INTO regress_skips VALUES (6, env_encrypt('lc-mix', 'docs', 'under v2'));
SELECT envault.rotate_data_key('lc-mix', 'docs');
INSERT INTO regress_skips VALUES
	(7, env_encrypt('lc-mix', 'docs', 'under v3')),
	(8, env_encrypt('lc-mix', 'docs', 'under v3 too'));
SELECT envault.rotate_data_key('lc-mix', 'docs');
INSERT INTO regress_skips VALUES (9, env_encrypt('lc-mix', 'docs', 'under v4'));
SELECT envault.rotate_data_key('lc-rev', 'docs');
SELECT envault.retire_data_key('lc-mix', 'docs', 1);
SELECT envault.destroy_data_key('lc-mix', 'docs', 2);
SELECT envault.revoke_tenant('lc-rev');
SELECT envault.destroy_tenant('lc-gone');
SELECT id, regress_version(body) AS version, envault.key_state(body) FROM regress_skips ORDER BY id;
CALL envault.reencrypt_column('regress_skips', 'body', batch_size => 3);
SELECT id, regress_version(body) AS version, envault.key_state(body) FROM regress_skips ORDER BY id;
SELECT env_decrypt_text(body) FROM regress_skips WHERE id IN (7, 8, 9) ORDER BY id;
-- a second run skips the same rows and has nothing to move
CALL envault.reencrypt_column('regress_skips', 'body', batch_size => 3);
-- once the tenant is restored and the version brought back, they move too
SELECT envault.restore_tenant('lc-rev');
SELECT envault.restore_data_key('lc-mix', 'docs', 1);
CALL envault.reencrypt_column('regress_skips', 'body', batch_size => 3);
SELECT id, regress_version(body) AS version, envault.key_state(body) FROM regress_skips ORDER BY id;
-- a key that stops opening during the run: its rows are skipped, and said
-- to be not done (here a trigger revokes a tenant while the first batch is
-- being written)
SELECT envault.create_tenant('lc-mid');
TRUNCATE regress_skips;
INSERT INTO regress_skips SELECT g, env_encrypt('lc-mix', 'docs', 'mix ' || g) FROM generate_series(1, 3) g;
INSERT INTO regress_skips SELECT g, env_encrypt('lc-mid', 'docs', 'mid ' || g) FROM generate_series(4, 6) g;
SELECT envault.rotate_data_key('lc-mix', 'docs'), envault.rotate_data_key('lc-mid', 'docs');
CREATE FUNCTION regress_revoke_mid() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id = 1 THEN
		PERFORM envault.revoke_tenant('lc-mid');
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER regress_revoke_mid BEFORE UPDATE ON regress_skips
	FOR EACH ROW EXECUTE FUNCTION regress_revoke_mid();
CALL envault.reencrypt_column('regress_skips', 'body', batch_size => 3);
DROP TRIGGER regress_revoke_mid ON regress_skips;
DROP FUNCTION regress_revoke_mid();
CALL envault.reencrypt_column('regress_skips', 'body', batch_size => 3);
SELECT envault.restore_tenant('lc-mid');
SELECT envault.key_state(NULL) IS NULL AS null_in_null_out;
SELECT envault.key_state('\x00'::bytea);
DROP TABLE regress_skips;

-- Re-keying a tenant: a fresh tenant key, every data key rewrapped under it,
-- a fresh active data key per purpose; values under the superseded keys
-- still decrypt until they are re-encrypted and the keys destroyed
SELECT envault.create_tenant('lc-rekey');
CREATE TABLE regress_rekey (id int PRIMARY KEY,
                            aad bytea GENERATED ALWAYS AS (int4send(id)) STORED,
                            body bytea);
INSERT INTO regress_rekey (id, body) VALUES
  (1, env_encrypt('lc-rekey', 'docs', 'one', int4send(1))),
  (2, env_encrypt('lc-rekey', 'notes', 'two', int4send(2)));
SELECT key_version, rekeyed_at IS NULL AS never_rekeyed FROM envault.tenants WHERE tenant = 'lc-rekey';
SELECT envault.destroy_superseded_keys('lc-rekey');
SELECT envault.rekey_tenant('lc-rekey') AS new_data_keys;
SELECT key_version, key_source, rekeyed_at IS NOT NULL AS rekeyed
  FROM envault.tenants WHERE tenant = 'lc-rekey';
SELECT purpose, version, state, tenant_key_version FROM envault.data_keys
 WHERE tenant = 'lc-rekey' ORDER BY purpose, version;
SELECT operation, detail FROM envault.key_events
 WHERE tenant = 'lc-rekey' AND operation LIKE 'tenant re-keyed%';
SELECT id, env_decrypt_text(body, int4send(id)), envault.env_is_current(body)
  FROM regress_rekey ORDER BY id;
-- destroying before re-encrypting would shred the old values: re-encrypt first
CALL envault.reencrypt_column('regress_rekey', 'body', 'aad');
SELECT id, env_decrypt_text(body, int4send(id)), envault.env_is_current(body)
  FROM regress_rekey ORDER BY id;
SELECT envault.destroy_superseded_keys('lc-rekey') AS destroyed;
SELECT purpose, version, state FROM envault.data_keys
 WHERE tenant = 'lc-rekey' ORDER BY purpose, version;
SELECT id, env_decrypt_text(body, int4send(id)) FROM regress_rekey ORDER BY id;
SELECT envault.destroy_superseded_keys('lc-rekey') AS nothing_more;
SELECT envault.rekey_tenant('nobody');
SELECT envault.destroy_superseded_keys('nobody');
DROP TABLE regress_rekey;

-- Only admins manage keys
CREATE ROLE regress_lc_app;
GRANT envault_user TO regress_lc_app;
SET ROLE regress_lc_app;
SELECT envault.rotate_data_key('lc-other', 'docs');
SELECT envault.rotate_tenant_key('lc-other');
SELECT envault.rekey_tenant('lc-other');
SELECT envault.destroy_superseded_keys('lc-other');
SELECT envault.retire_data_key('lc-other', 'docs', 1);
SELECT envault.destroy_tenant('lc-other');
SELECT envault.revoke_tenant('lc-other');
CALL envault.reencrypt_column('regress_docs', 'body');
CALL envault.rotate_master_key();
SELECT * FROM envault.master_key_status();
SELECT * FROM envault.key_events;
SELECT envault.key_state(env_encrypt('lc-other', 'docs', 'x'));
RESET ROLE;
DROP ROLE regress_lc_app;
DROP TABLE regress_docs, regress_nopk, regress_kept;
