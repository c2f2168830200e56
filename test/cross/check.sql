-- test/cross/check.sql: after the restore into the newer major, every
-- value decrypts, every token verifies, the secret reads back, every chain
-- (the user table's, key_events, the access log) verifies with its
-- checkpoints, and signing goes on where it stopped.  One line per check:
-- "ok - ..." or "not ok - ...".
\set ON_ERROR_STOP on
\set QUIET on
\pset format unaligned
\pset tuples_only on
SET search_path = public, envault;
\set dbid `cat "$CROSS_DIR/database_id"`
SELECT CASE WHEN count(*) = 300 AND bool_and(env_decrypt_text(email) = email_plain)
            THEN 'ok' ELSE 'not ok' END || ' - every value decrypts to its original (' || count(*) || ')'
  FROM customers;
SELECT CASE WHEN count(*) = 6 AND bool_and(envault.verify_token(token) = tenant)
            THEN 'ok' ELSE 'not ok' END || ' - every token verifies for its tenant'
  FROM tokens_given;
SELECT CASE WHEN envault.verify_token(token || 'x') IS NULL THEN 'ok' ELSE 'not ok' END
       || ' - a mistyped token does not' FROM tokens_given LIMIT 1;
SELECT CASE WHEN envault.get_secret('acme', 'stripe') = 'sk_live_cross_version_0123456789'
            THEN 'ok' ELSE 'not ok' END || ' - the secret reads back';
SELECT CASE WHEN envault.database_id() = :'dbid' THEN 'ok' ELSE 'not ok' END
       || ' - the database keeps its identity';
SELECT CASE WHEN bool_and(v.ok) AND count(*) = 2 THEN 'ok' ELSE 'not ok' END
       || ' - the audit chain verifies with its checkpoints and the purge statement'
  FROM envault.verify_chain('audit') v;
SELECT CASE WHEN bool_and(v.ok) THEN 'ok' ELSE 'not ok' END || ' - key_events verifies'
  FROM envault.verify_chain('envault.key_events') v;
SELECT CASE WHEN bool_and(v.ok) THEN 'ok' ELSE 'not ok' END || ' - the access log verifies'
  FROM envault.verify_chain('envault.access_log') v;
INSERT INTO audit (id, tenant, what, detail) SELECT g, 'acme', 'on the new major ' || g, '{"n": 1}'
  FROM generate_series(621, 640) g;
SELECT CASE WHEN count(*) = 1 THEN 'ok' ELSE 'not ok' END
       || ' - a new checkpoint extends the ones signed on PostgreSQL 15'
  FROM envault.checkpoint('audit', 'acme');
SELECT CASE WHEN bool_and(v.ok) THEN 'ok' ELSE 'not ok' END || ' - and verifies'
  FROM envault.verify_chain('audit') v;
INSERT INTO customers VALUES (301, 'acme', env_encrypt('acme', 'email', 'new@example.com'), 'new@example.com');
SELECT CASE WHEN env_decrypt_text(email) = 'new@example.com' THEN 'ok' ELSE 'not ok' END
       || ' - new values encrypt and decrypt' FROM customers WHERE id = 301;
