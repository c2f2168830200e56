-- setup: install envault in the regression database; later files use it.
CREATE EXTENSION envault;
SELECT extname, extversion, nspname AS schema
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'envault';
-- the extension's roles exist, cannot log in, and are granted nothing else
SELECT rolname, rolcanlogin, rolsuper FROM pg_roles
 WHERE rolname IN ('envault_admin', 'envault_user') ORDER BY rolname;
