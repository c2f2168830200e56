-- privileges: what envault_user, envault_admin and everybody else may do.
CREATE ROLE regress_app LOGIN;
GRANT envault_user TO regress_app;
CREATE ROLE regress_keyadmin LOGIN;
GRANT envault_admin TO regress_keyadmin;
CREATE ROLE regress_nobody LOGIN;
CREATE TABLE regress_app_data (id int PRIMARY KEY, secret bytea);
GRANT ALL ON regress_app_data TO regress_app;
-- the application's request token for tenant acme
SELECT envault.issue_token('acme', 'regress app') AS acme_token \gset

-- Every function and who may execute it; PUBLIC may execute none.
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args,
       has_function_privilege('envault_user', p.oid, 'EXECUTE') AS "user",
       has_function_privilege('envault_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('regress_nobody', p.oid, 'EXECUTE') AS nobody,
       p.prosecdef AS secdef
  FROM pg_proc p WHERE p.pronamespace = 'envault'::regnamespace
 ORDER BY 1, 2;
-- Tables: admins read, nobody else does anything
SELECT c.relname,
       has_table_privilege('envault_user', c.oid, 'SELECT') AS user_select,
       has_table_privilege('envault_admin', c.oid, 'SELECT') AS admin_select,
       has_table_privilege('envault_admin', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE') AS admin_write,
       has_table_privilege('regress_nobody', c.oid, 'SELECT') AS nobody_select
  FROM pg_class c WHERE c.relnamespace = 'envault'::regnamespace AND c.relkind = 'r'
 ORDER BY 1;

-- An application role, authenticated as tenant acme for the session,
-- encrypts and decrypts, and cannot touch the keys.
SET ROLE regress_app;
SET search_path = public, envault;
SELECT envault.authenticate(:'acme_token', true);
INSERT INTO regress_app_data VALUES (1, env_encrypt('acme', 'secrets', 'from the app', int4send(1)));
SELECT env_decrypt_text(secret, int4send(id)) FROM regress_app_data;
-- a purpose never used before: the key store creates its data key for the app
SELECT env_decrypt_text(env_encrypt('acme', 'app-created', 'new purpose'));
SELECT * FROM envault.tenants;
SELECT * FROM envault.data_keys;
SELECT envault.create_tenant('mallory');
SELECT envault.create_data_key('acme', 'x');
INSERT INTO envault.tenants (tenant, wrapped_key, master_kcv, created_by) VALUES ('mallory', '\x00', '\x00', 'me');
DELETE FROM envault.data_keys;
RESET ROLE;

-- The new key was recorded as created by the app role, not by the owner.
SELECT tenant, purpose, created_by FROM envault.data_keys WHERE purpose = 'app-created';

-- Neither the extension's functions nor its tables for anybody else.
SET ROLE regress_nobody;
SELECT envault.env_encrypt('acme', 'secrets', 'x');
SELECT envault.env_decrypt('\x00'::bytea);
SELECT * FROM envault.tenants;
RESET ROLE;

-- A key administrator creates tenants and reads wrapped keys, but cannot
-- write to the key tables directly.
SET ROLE regress_keyadmin;
SELECT envault.create_tenant('initech');
SELECT envault.create_data_key('initech', 'secrets');
SELECT tenant, created_by FROM envault.tenants WHERE tenant = 'initech';
SELECT envault.issue_token('initech', 'regress app') AS initech_token \gset
UPDATE envault.tenants SET key_version = 2;
DELETE FROM envault.data_keys;
DELETE FROM envault.tokens;
RESET ROLE;

-- The key store's own queries are immune to the caller's search_path: an
-- application role that shadows "=" for text, and puts its schema first,
-- still gets the right keys, and its operator is never called.
CREATE SCHEMA regress_evil AUTHORIZATION regress_app;
SET ROLE regress_app;
CREATE FUNCTION regress_evil.texteq_evil(text, text) RETURNS boolean
  LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'evil operator called'; RETURN true; END $$;
CREATE OPERATOR regress_evil.= (LEFTARG = text, RIGHTARG = text,
                                PROCEDURE = regress_evil.texteq_evil);
CREATE FUNCTION regress_evil.max(integer) RETURNS integer
  LANGUAGE sql AS $$ SELECT 1000 $$;
SET search_path = regress_evil, envault, pg_catalog;
SELECT envault.authenticate(:'initech_token', true);
SELECT env_decrypt_text(env_encrypt('initech', 'evil-test', 'still correct'));
SELECT envault.verify_token(:'initech_token');
SELECT envault.authenticate(:'acme_token', true);
SELECT env_decrypt_text(secret, int4send(id)) FROM public.regress_app_data;
SELECT envault.reset_tenant();
RESET ROLE;
RESET search_path;
SELECT tenant, purpose, version FROM envault.data_keys WHERE purpose = 'evil-test';

DROP SCHEMA regress_evil CASCADE;
DROP TABLE regress_app_data;
DROP ROLE regress_app, regress_keyadmin, regress_nobody;
