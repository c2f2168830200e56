-- Fixtures of the SQL examples in README.md and docs/operations.md
-- (test/docs/run_examples.py).  Each example runs in a database of its own
-- after the fixture named by the comment <!-- example: NAME --> before it
-- (default: keys); a fixture starts at its "-- fixture: NAME" line and
-- ends at the next one; "-- include: NAME" stands for fixture NAME.

-- fixture: none

-- fixture: extension
CREATE EXTENSION envault;

-- fixture: keys
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
SELECT envault.issue_token('acme', 'example') IS NOT NULL AS token_issued;

-- fixture: messages
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
CREATE TABLE messages (id int PRIMARY KEY, tenant text NOT NULL,
                       body bytea NOT NULL, body_aad bytea NOT NULL);
INSERT INTO messages
SELECT g, 'acme', envault.env_encrypt('acme', 'messages', 'message ' || g, int4send(g)), int4send(g)
  FROM generate_series(1, 20) g;

-- fixture: byok
-- bigcorp's values were encrypted under the master key; then its owner
-- brought its own key (envault.customer_key_command of the test cluster)
CREATE EXTENSION envault;
SELECT envault.create_tenant('bigcorp');
CREATE TABLE invoices (id int PRIMARY KEY, tenant text NOT NULL,
                       body bytea NOT NULL, aad bytea NOT NULL);
INSERT INTO invoices
SELECT g, 'bigcorp', envault.env_encrypt('bigcorp', 'invoices', 'invoice ' || g, int4send(g)), int4send(g)
  FROM generate_series(1, 20) g;
SELECT envault.use_customer_key('bigcorp');

-- fixture: byok_reencrypted
-- include: byok
CALL envault.reencrypt_column('invoices', 'body', 'aad');

-- fixture: pgcrypto
-- orders of two tenants, encrypted by the application with pgcrypto
CREATE EXTENSION pgcrypto;
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
SELECT envault.create_tenant('globex');
CREATE TABLE orders (id int PRIMARY KEY, tenant_id text NOT NULL, card bytea NOT NULL);
INSERT INTO orders
SELECT g, CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END,
       pgp_sym_encrypt('4111 1111 1111 ' || lpad(g::text, 4, '0'), 'the legacy key')
  FROM generate_series(1, 20) g;
\set legacy_key 'the legacy key'

-- fixture: messages_rotated
-- the messages of acme, then its data key rotated (version 2 active)
-- include: messages
SELECT envault.rotate_data_key('acme', 'messages');
