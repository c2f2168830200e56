-- test/cross/setup.sql: what a PostgreSQL 15 database with envault holds
-- before it moves to a newer major (test/cross/dump.sh): tenants and data
-- keys (one rotated), encrypted values with their plaintexts beside them
-- (for the check, not as anyone would keep them), tokens, a secret, and a
-- chained table with signed checkpoints and a purge.
\set ON_ERROR_STOP on
CREATE EXTENSION envault;
SET search_path = public, envault;
SELECT envault.create_tenant(t) FROM unnest(ARRAY['acme', 'globex', 'Ünïcode']) t;
CREATE TABLE customers (id int PRIMARY KEY, tenant text NOT NULL,
                        email bytea, email_plain text);
INSERT INTO customers
SELECT g, (ARRAY['acme', 'globex', 'Ünïcode'])[g % 3 + 1], NULL,
       'user' || g || '@example.com ' || repeat('é', g % 7)
  FROM generate_series(1, 300) g;
UPDATE customers SET email = env_encrypt(tenant, 'email', email_plain) WHERE id <= 150;
SELECT envault.rotate_data_key('acme', 'email');
UPDATE customers SET email = env_encrypt(tenant, 'email', email_plain) WHERE id > 150;
CREATE TABLE tokens_given (tenant text, token text);
INSERT INTO tokens_given
SELECT t, envault.issue_token(t, 'cross-version ' || g)
  FROM unnest(ARRAY['acme', 'globex']) t, generate_series(1, 3) g;
SELECT envault.put_secret('acme', 'stripe', 'sk_live_cross_version_0123456789');
-- (json columns: PostgreSQL 17 names the type differently, which the
-- chain's columns hash must not see)
CREATE TABLE audit (id int, tenant text, what text, detail json, tags json[],
                    meta jsonb, at timestamptz DEFAULT '2026-12-05 10:00:00+00');
SELECT envault.enable_audit_chain('audit', 'tenant');
INSERT INTO audit (id, tenant, what, detail, tags, meta)
SELECT g, (ARRAY['acme', 'globex'])[g % 2 + 1], 'event ' || g,
       json_build_object('n', g, 'b', g % 2 = 0), ARRAY['{"x": 1}'::json],
       jsonb_build_object('k', g)
  FROM generate_series(1, 400) g;
SELECT count(*) FROM envault.checkpoint('audit');
INSERT INTO audit (id, tenant, what) SELECT g, (ARRAY['acme', 'globex'])[g % 2 + 1], 'event ' || g
  FROM generate_series(401, 600) g;
SELECT count(*) FROM envault.checkpoint('audit');
SELECT envault.purge_chain('audit', 'globex', clock_timestamp());
INSERT INTO audit (id, tenant, what) SELECT g, 'acme', 'after the purge ' || g FROM generate_series(601, 620) g;
SELECT count(*) FROM envault.checkpoint('audit');
