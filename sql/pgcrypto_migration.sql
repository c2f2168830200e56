-- pgcrypto_migration: moving a column from pgp_sym_encrypt() under one
-- server-wide key to envault, tenant by tenant, with both kinds of values
-- readable throughout.
SET search_path = public, envault;
\set SHOW_CONTEXT never
CREATE EXTENSION IF NOT EXISTS pgcrypto;

SELECT envault.create_tenant('mig-a');
SELECT envault.create_tenant('mig-b');
CREATE TABLE regress_legacy (id int PRIMARY KEY, org text NOT NULL, token bytea,
                             aad bytea GENERATED ALWAYS AS (int4send(id)) STORED);
INSERT INTO regress_legacy (id, org, token)
SELECT g, CASE WHEN g % 2 = 0 THEN 'mig-a' ELSE 'mig-b' END,
       pgp_sym_encrypt('secret ' || g, 'old server key')
  FROM generate_series(1, 40) g;
INSERT INTO regress_legacy (id, org, token) VALUES (41, 'mig-a', NULL);

-- during the migration the application reads with the compat function
CREATE FUNCTION regress_readable() RETURNS TABLE (org text, envault bigint, legacy bigint, readable bigint)
LANGUAGE sql AS $$
	SELECT org,
	       count(*) FILTER (WHERE substr(token, 1, 4) = '\x45560101'),
	       count(*) FILTER (WHERE substr(token, 1, 4) <> '\x45560101'),
	       count(*) FILTER (WHERE env_decrypt_text_compat(token, 'old server key', aad) = 'secret ' || id)
	  FROM regress_legacy WHERE token IS NOT NULL GROUP BY org ORDER BY org
$$;
SELECT * FROM regress_readable();

-- one tenant first, in small batches, binding each value to its row
CALL envault.migrate_pgcrypto_column('regress_legacy', 'token', 'org', 'tokens',
                                     'old server key', only_tenant => 'mig-a',
                                     aad_col => 'aad', batch_size => 7);
SELECT * FROM regress_readable();
-- under the tenant's own data key
SELECT count(DISTINCT k.tenant) AS tenants, min(k.tenant) AS tenant, min(k.purpose) AS purpose
  FROM regress_legacy l
  JOIN envault.data_keys k ON k.key_id = ('x' || encode(substr(l.token, 5, 8), 'hex'))::bit(64)::bigint
 WHERE substr(l.token, 1, 4) = '\x45560101';
-- then the rest; running it again finds nothing left, and NULLs stay NULL
CALL envault.migrate_pgcrypto_column('regress_legacy', 'token', 'org', 'tokens',
                                     'old server key', aad_col => 'aad');
CALL envault.migrate_pgcrypto_column('regress_legacy', 'token', 'org', 'tokens',
                                     'old server key', aad_col => 'aad');
SELECT * FROM regress_readable();
SELECT token IS NULL AS still_null FROM regress_legacy WHERE id = 41;
SELECT count(*) FILTER (WHERE env_decrypt_text(token, aad) = 'secret ' || id) AS readable
  FROM regress_legacy WHERE token IS NOT NULL;

-- refusals
CALL envault.migrate_pgcrypto_column('regress_legacy', 'token', 'org', 'tokens', NULL);
CALL envault.migrate_pgcrypto_column('regress_legacy', 'nope', 'org', 'tokens', 'k');
CALL envault.migrate_pgcrypto_column('regress_legacy', 'token', 'nope', 'tokens', 'k');
CALL envault.migrate_pgcrypto_column('regress_legacy', 'org', 'org', 'tokens', 'k');
CALL envault.migrate_pgcrypto_column('regress_legacy', 'token', 'org', 'tokens', 'k', aad_col => 'nope');
CALL envault.migrate_pgcrypto_column('regress_legacy', 'token', 'org', 'tokens', 'k', aad_col => 'org');
\set VERBOSITY sqlstate
CALL envault.migrate_pgcrypto_column('regress_legacy', 'nope', 'org', 'tokens', 'k');
CALL envault.migrate_pgcrypto_column('regress_legacy', 'org', 'org', 'tokens', 'k');
\set VERBOSITY default
CREATE TABLE regress_legacy_nopk (org text, token bytea);
CALL envault.migrate_pgcrypto_column('regress_legacy_nopk', 'token', 'org', 'tokens', 'k');
DROP TABLE regress_legacy_nopk;
CALL envault.migrate_pgcrypto_column('regress_legacy', 'token', 'org', 'tokens', 'k', batch_size => 0);
-- a wrong legacy key stops the batch with pgcrypto's error, nothing changed
INSERT INTO regress_legacy (id, org, token) VALUES (42, 'mig-b', pgp_sym_encrypt('late', 'old server key'));
CALL envault.migrate_pgcrypto_column('regress_legacy', 'token', 'org', 'tokens', 'wrong key');
SELECT substr(token, 1, 4) <> '\x45560101' AS still_legacy FROM regress_legacy WHERE id = 42;
SELECT env_decrypt_text_compat(token, 'old server key') FROM regress_legacy WHERE id = 42;
