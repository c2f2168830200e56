-- secrets_store: per-tenant third-party credentials in envault.secrets.
SET search_path = public, envault;
\set SHOW_CONTEXT never

SELECT envault.create_tenant('ss');
SELECT envault.create_tenant('ss-other');

-- put_secret returns a masked preview, never the value
SELECT envault.put_secret('ss', 'openai', 'sk-proj-0123456789abcdefWXYZ');
SELECT envault.put_secret('ss', 'webhook', 'whsec_ØÆÅ-ünïcödé-12');
SELECT envault.put_secret('ss', 'pin', '1234');
SELECT envault.put_secret('ss-other', 'openai', 'sk-other-tenant-key-0000');
-- the value is stored encrypted under the tenant's own "_secrets" data key
SELECT tenant, name, preview, substr(ciphertext, 1, 4) AS header,
       position(convert_to('sk-proj', 'UTF8') IN ciphertext) AS plaintext_at
  FROM envault.secrets ORDER BY tenant, name;
SELECT tenant, purpose, version, state FROM envault.data_keys
 WHERE purpose = '_secrets' ORDER BY tenant;
-- the user cannot name that purpose
SELECT env_encrypt('ss', '_secrets', 'x');

-- get_secret decrypts, and is recorded under the secret's name
SET application_name = 'regress-ss-get';
SELECT envault.get_secret('ss', 'openai');
SELECT envault.get_secret('ss', 'webhook');
RESET application_name;
SELECT tenant, purpose, secret_name, count FROM envault.access_log
 WHERE application_name = 'regress-ss-get' ORDER BY secret_name;
SELECT name, last_used_at IS NOT NULL AS used FROM envault.secrets
 WHERE tenant = 'ss' ORDER BY name;

-- replacing keeps one row, a new value and preview; verification is reset
SELECT envault.record_verification('ss', 'openai', 'ok');
SELECT verify_status, last_verified_at IS NOT NULL AS verified
  FROM envault.secrets WHERE tenant = 'ss' AND name = 'openai';
SELECT envault.put_secret('ss', 'openai', 'sk-proj-rotated-9876543210');
SELECT envault.get_secret('ss', 'openai');
SELECT count(*), max(verify_status) FROM envault.secrets WHERE tenant = 'ss' AND name = 'openai';

-- errors
SELECT envault.get_secret('ss', 'nope');
SELECT envault.delete_secret('ss', 'nope');
SELECT envault.record_verification('ss', 'nope', 'ok');
SELECT envault.put_secret('ss', '', 'x');
SELECT envault.put_secret('ss', E'tab\there', 'x');
SELECT envault.put_secret('ss', repeat('n', 256), 'x');
SELECT envault.put_secret('ss', 'x', NULL);
SELECT envault.put_secret(NULL, 'x', 'y');
SELECT envault.record_verification('ss', 'pin', '');
SELECT envault.put_secret('nobody', 'x', 'y');
-- a ciphertext moved to another name no longer opens
SELECT envault.put_secret('ss', 'copy', 'placeholder value');
UPDATE envault.secrets SET ciphertext = (SELECT ciphertext FROM envault.secrets
                                          WHERE tenant = 'ss' AND name = 'openai')
 WHERE tenant = 'ss' AND name = 'copy';
SELECT envault.get_secret('ss', 'copy');
-- ... nor does one copied from another tenant's secret of the same name
-- (refused before decrypting: it is not under this tenant's secrets key),
-- nor a value of an ordinary purpose of the same tenant
UPDATE envault.secrets SET ciphertext = (SELECT ciphertext FROM envault.secrets
                                          WHERE tenant = 'ss-other' AND name = 'openai')
 WHERE tenant = 'ss' AND name = 'openai';
SELECT envault.get_secret('ss', 'openai');
UPDATE envault.secrets SET ciphertext = env_encrypt('ss', 'copies', 'x', convert_to('copy', 'UTF8'))
 WHERE tenant = 'ss' AND name = 'copy';
SELECT envault.get_secret('ss', 'copy');
SELECT envault.delete_secret('ss', 'copy');
SELECT envault.put_secret('ss', 'openai', 'sk-proj-rotated-9876543210');
-- the associated data carries a label of the secrets store's own and the
-- tenant, not the bare name: the stored value does not open as a plain
-- envault value bound to the name
SELECT aad_version FROM envault.secrets WHERE tenant = 'ss' AND name = 'openai';
SELECT env_decrypt_text(ciphertext, convert_to('openai', 'UTF8'))
  FROM envault.secrets WHERE tenant = 'ss' AND name = 'openai';

-- secrets of every size round-trip: in the row, compressed, and in TOAST
-- (read back after the query that fetched it has ended: a detoasted copy
-- freed with it crashed the server)
SELECT envault.put_secret('ss', 'small', repeat('v', 10000)) AS compressed;
SELECT envault.get_secret('ss', 'small') = repeat('v', 10000) AS round_trip;
SELECT envault.put_secret('ss', 'random', r) AS toasted
  FROM (SELECT string_agg(md5(g::text), '') AS r FROM generate_series(1, 4000) g) x;
SELECT envault.get_secret('ss', 'random')
       = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g) AS round_trip;
SELECT envault.put_secret('ss', 'big', repeat('v', 50000000)) AS big;
SELECT length(envault.get_secret('ss', 'big')) AS length,
       envault.get_secret('ss', 'big') = repeat('v', 50000000) AS round_trip;
SELECT envault.delete_secret('ss', n) FROM unnest(ARRAY['small', 'random', 'big']) n;

-- an application role sees and uses only the current tenant's secrets, and
-- never a ciphertext
CREATE ROLE regress_ss_app LOGIN IN ROLE envault_user;
SET ROLE regress_ss_app;
SELECT * FROM envault.list_secrets();
SELECT envault.get_secret('ss', 'openai');
RESET ROLE;
SELECT envault.set_tenant('ss', false);
SET ROLE regress_ss_app;
SELECT tenant, name, preview, created_by, verify_status FROM envault.list_secrets();
SELECT envault.get_secret('ss', 'webhook');
SELECT envault.get_secret('ss-other', 'openai');
SELECT envault.put_secret('ss-other', 'x', 'y');
SELECT tenant, name FROM envault.secrets ORDER BY name;
SELECT ciphertext FROM envault.secrets;
UPDATE envault.secrets SET preview = 'x';
SELECT envault.put_secret('ss', 'from-app', 'application-set value');
SELECT envault.record_verification('ss', 'from-app', 'rejected');
SELECT envault.delete_secret('ss', 'from-app');
SELECT envault.delete_secret('ss-other', 'openai');
RESET ROLE;
SELECT envault.reset_tenant();
-- an administrator sees every tenant's
SELECT tenant, name, preview FROM envault.list_secrets();

-- destroying a tenant makes its secrets unreadable too
SELECT envault.destroy_tenant('ss-other');
SELECT envault.get_secret('ss-other', 'openai');
DROP ROLE regress_ss_app;
