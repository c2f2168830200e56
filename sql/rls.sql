-- rls: row-level security that the application cannot bypass, blind
-- indexes, and the plain pepper HMAC.
SET search_path = public, envault;
\set SHOW_CONTEXT never
CREATE ROLE regress_rls_app LOGIN;
GRANT envault_user TO regress_rls_app;
SELECT envault.issue_token('acme', 'rls') AS tok_acme \gset
SELECT envault.issue_token('globex', 'rls') AS tok_globex \gset

-- tables owned by the superuser; the application role owns none
CREATE TABLE regress_orders (id int PRIMARY KEY, tenant text NOT NULL, amount int);
INSERT INTO regress_orders VALUES (1, 'acme', 10), (2, 'acme', 20), (3, 'globex', 30);
CREATE TABLE regress_uuid (id int, tenant_id uuid);
CREATE TABLE regress_bigint (id int, tenant_id bigint);
CREATE TABLE regress_open (id int, tenant text);
CREATE TABLE regress_leaky (id int, tenant text);
GRANT SELECT, INSERT, UPDATE, DELETE ON regress_orders TO regress_rls_app;

SELECT envault.isolate_table('regress_orders', 'tenant');
SELECT envault.isolate_table('regress_uuid', 'tenant_id');
SELECT envault.isolate_table('regress_bigint', 'tenant_id');
SELECT envault.isolate_table('regress_leaky', 'tenant');
CREATE POLICY too_wide ON regress_leaky USING (true);

-- the policy: all commands, USING and WITH CHECK on the current tenant,
-- cast to the column's type, behind a sub-select (evaluated once per query)
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, p.polname, p.polcmd,
       p.polpermissive, p.polroles = '{0}' AS to_public,
       pg_get_expr(p.polqual, p.polrelid) AS using_expr,
       pg_get_expr(p.polqual, p.polrelid) = pg_get_expr(p.polwithcheck, p.polrelid) AS check_same
  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
 WHERE p.polname = 'envault_tenant_isolation'
 ORDER BY c.relname;

-- calling it twice changes nothing
SELECT oid AS policy_oid FROM pg_policy WHERE polrelid = 'regress_orders'::regclass \gset
SELECT envault.isolate_table('regress_orders', 'tenant');
SELECT oid = :policy_oid AS same_policy, count(*) OVER () AS policies
  FROM pg_policy WHERE polrelid = 'regress_orders'::regclass;
SELECT envault.isolate_table('regress_orders', 'no_such_column');

-- the report: every table with a tenant column, and whether it is isolated
SELECT table_name, tenant_column, owner, rls_enabled, rls_forced, policies, isolated
  FROM envault.isolation_report()
 WHERE table_name::text IN ('regress_orders', 'regress_uuid', 'regress_bigint',
                            'regress_open', 'regress_leaky');
-- Isolation is judged by the policy's definition, not its name: a policy
-- called envault_tenant_isolation that is anything but what isolate_table
-- creates is reported as not isolating, and isolate_table replaces it
CREATE FUNCTION regress_isolated(t regclass) RETURNS text
LANGUAGE sql AS $$
	SELECT string_agg(tenant_column || ':' || isolated, ' ' ORDER BY tenant_column)
	  FROM envault.isolation_report() WHERE table_name = t
$$;
CREATE FUNCTION regress_policy(t regclass) RETURNS text
LANGUAGE sql AS $$
	SELECT string_agg(polname || ' ' || polcmd::text || ' ' || polpermissive || ' ' ||
	                  polroles::text || ' ' || pg_get_expr(polqual, polrelid) || ' / ' ||
	                  coalesce(pg_get_expr(polwithcheck, polrelid), '-'), ', ')
	  FROM pg_policy WHERE polrelid = t
$$;
CREATE TABLE regress_two (id int, tenant text, tenant_id text);
SELECT envault.isolate_table('regress_two', 'tenant_id');
SELECT regress_isolated('regress_two') AS isolated_by, regress_policy('regress_two');
-- another column replaces the policy
SELECT envault.isolate_table('regress_two', 'tenant');
SELECT regress_isolated('regress_two') AS isolated_by, regress_policy('regress_two');
-- tampering: each kind is reported, then repaired
SELECT oid AS policy_oid FROM pg_policy WHERE polrelid = 'regress_orders'::regclass \gset
ALTER POLICY envault_tenant_isolation ON regress_orders USING (tenant IS NOT NULL);
SELECT regress_isolated('regress_orders') AS altered_using;
SELECT envault.isolate_table('regress_orders', 'tenant');
SELECT regress_isolated('regress_orders') AS repaired, regress_policy('regress_orders');
ALTER POLICY envault_tenant_isolation ON regress_orders WITH CHECK (true);
SELECT regress_isolated('regress_orders') AS altered_check;
SELECT envault.isolate_table('regress_orders', 'tenant');
SELECT regress_isolated('regress_orders') AS repaired;
ALTER POLICY envault_tenant_isolation ON regress_orders TO regress_rls_app;
SELECT regress_isolated('regress_orders') AS for_one_role;
SELECT envault.isolate_table('regress_orders', 'tenant');
SELECT regress_isolated('regress_orders') AS repaired;
DROP POLICY envault_tenant_isolation ON regress_orders;
CREATE POLICY envault_tenant_isolation ON regress_orders AS RESTRICTIVE
	USING (tenant = (SELECT envault.current_tenant()))
	WITH CHECK (tenant = (SELECT envault.current_tenant()));
SELECT regress_isolated('regress_orders') AS restrictive;
SELECT envault.isolate_table('regress_orders', 'tenant');
SELECT regress_isolated('regress_orders') AS repaired;
DROP POLICY envault_tenant_isolation ON regress_orders;
CREATE POLICY envault_tenant_isolation ON regress_orders FOR SELECT
	USING (tenant = (SELECT envault.current_tenant()));
SELECT regress_isolated('regress_orders') AS select_only;
SELECT envault.isolate_table('regress_orders', 'tenant');
SELECT regress_isolated('regress_orders') AS repaired, regress_policy('regress_orders');
-- the same definition written by hand, as pg_dump writes it back, counts,
-- and isolate_table keeps it
DROP POLICY envault_tenant_isolation ON regress_orders;
CREATE POLICY envault_tenant_isolation ON regress_orders
	USING ((tenant = ( SELECT envault.current_tenant() AS current_tenant)))
	WITH CHECK ((tenant = ( SELECT envault.current_tenant() AS current_tenant)));
SELECT oid AS policy_oid FROM pg_policy WHERE polrelid = 'regress_orders'::regclass \gset
SELECT regress_isolated('regress_orders') AS as_dumped;
SELECT envault.isolate_table('regress_orders', 'tenant');
SELECT oid = :policy_oid AS kept FROM pg_policy WHERE polrelid = 'regress_orders'::regclass;
-- the helpers: the expression for a column, and NULL for no such column
SELECT envault.isolation_expr('regress_uuid', 'tenant_id'),
       envault.isolation_expr('regress_uuid', 'nope') IS NULL AS no_column,
       envault.policy_isolates('regress_uuid', envault.isolation_expr('regress_uuid', 'tenant_id')) AS uuid_isolates,
       envault.policy_isolates('regress_open', envault.isolation_expr('regress_open', 'tenant')) AS open_isolates,
       envault.policy_isolates('regress_uuid', NULL) AS null_expr;
SELECT envault.policy_isolates('regress_uuid', 'true) OR (true');
DROP TABLE regress_two;
DROP FUNCTION regress_isolated(regclass), regress_policy(regclass);

-- which columns mark a tenant-owned table is a setting
SET envault.tenant_columns = 'id';
SELECT array_agg(table_name ORDER BY table_name::text) AS tables_with_id
  FROM envault.isolation_report()
 WHERE table_name::text IN ('regress_orders', 'regress_uuid', 'regress_bigint',
                            'regress_open', 'regress_leaky');
RESET envault.tenant_columns;

-- The application sees and writes only its tenant's rows
SET ROLE regress_rls_app;
SELECT count(*) AS rows_without_tenant FROM regress_orders;
BEGIN;
SELECT envault.authenticate(:'tok_acme');
SELECT id, tenant, amount FROM regress_orders ORDER BY id;
INSERT INTO regress_orders VALUES (4, 'acme', 40);
INSERT INTO regress_orders VALUES (5, 'globex', 50);
COMMIT;
BEGIN;
SELECT envault.authenticate(:'tok_acme');
UPDATE regress_orders SET tenant = 'globex' WHERE id = 1;
COMMIT;
BEGIN;
SELECT envault.authenticate(:'tok_acme');
UPDATE regress_orders SET amount = amount + 1;
DELETE FROM regress_orders WHERE id = 3;
SELECT id, tenant, amount FROM regress_orders ORDER BY id;
COMMIT;
BEGIN;
SELECT envault.authenticate(:'tok_globex');
SELECT id, tenant, amount FROM regress_orders ORDER BY id;
-- the tenant is computed once per query: an InitPlan, not a per-row call
EXPLAIN (COSTS OFF) SELECT count(*) FROM regress_orders;
COMMIT;
-- it cannot turn the policy off
ALTER TABLE regress_orders DISABLE ROW LEVEL SECURITY;
ALTER TABLE regress_orders NO FORCE ROW LEVEL SECURITY;
DROP POLICY envault_tenant_isolation ON regress_orders;
RESET ROLE;

-- Blind indexes: deterministic per (tenant, purpose), unrelated across them
SELECT octet_length(envault.blind_index('acme', 'email', 'alice@example.com')) AS len,
       envault.blind_index('acme', 'email', 'alice@example.com')
         = envault.blind_index('acme', 'email', 'alice@example.com') AS deterministic,
       envault.blind_index('acme', 'email', 'alice@example.com')
         <> envault.blind_index('globex', 'email', 'alice@example.com') AS per_tenant,
       envault.blind_index('acme', 'email', 'alice@example.com')
         <> envault.blind_index('acme', 'login', 'alice@example.com') AS per_purpose,
       envault.blind_index('acme', 'email', 'alice@example.com')
         <> envault.blind_index('acme', 'email', 'Alice@example.com') AS exact_match,
       envault.blind_index('acme', 'email', NULL) IS NULL AS null_in_null_out;
-- it has a key of its own, under a purpose no user purpose can name
SELECT tenant, purpose, version FROM envault.data_keys
 WHERE purpose LIKE '\_bidx.%' ORDER BY tenant, purpose;
SELECT env_encrypt('acme', '_bidx.email', 'x');
SELECT envault.blind_index('acme', repeat('p', 58), 'x');
-- a lookup through an ordinary index
CREATE TABLE regress_people (id int, email bytea, email_idx bytea);
CREATE INDEX ON regress_people (email_idx);
INSERT INTO regress_people
SELECT g, env_encrypt('acme', 'pii', 'user' || g || '@example.com'),
       envault.blind_index('acme', 'email', 'user' || g || '@example.com')
  FROM generate_series(1, 100) g;
SELECT id, env_decrypt_text(email) FROM regress_people
 WHERE email_idx = envault.blind_index('acme', 'email', 'user42@example.com');

-- The plain pepper HMAC is HMAC-SHA256 under the configured pepper
CREATE EXTENSION IF NOT EXISTS pgcrypto;
SELECT envault.pepper_hmac('hello'::bytea)
       = hmac('hello'::bytea,
              '\xf0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00112233445566778899aabbccddeeff'::bytea,
              'sha256') AS matches,
       envault.pepper_hmac(NULL) IS NULL AS null_in_null_out;
-- ... for data of every length around SHA-256's 64-byte blocks and padding
SELECT n, envault.pepper_hmac(d)
          = hmac(d, '\xf0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00112233445566778899aabbccddeeff'::bytea,
                 'sha256') AS matches
  FROM (SELECT n, pg_catalog.convert_to(repeat('x', n), 'UTF8') AS d
          FROM unnest(ARRAY[0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 100000]) AS n) AS lens;

-- Tenant columns of other types are compared exactly, never through a
-- cast of the tenant that truncates (varchar(4): "acme-evil" saw acme's
-- rows), pads (char(n)), normalises ("007" saw tenant 7, an uppercase uuid
-- the lowercase one's) or folds (a nondeterministic collation)
SELECT envault.create_tenant(t)
  FROM unnest(ARRAY['acme-evil', 'acme ', 'ACME', '7', '007', '-0', '+7',
                    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
                    'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11']) t;
CREATE TABLE regress_vc (id int, tenant varchar(4));
INSERT INTO regress_vc VALUES (1, 'acme');
CREATE TABLE regress_int (id int, tenant_id int);
INSERT INTO regress_int VALUES (1, 7), (2, 0);
CREATE TABLE regress_uuid2 (id int, tenant_id uuid);
INSERT INTO regress_uuid2 VALUES (1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
CREATE DOMAIN regress_tenant_name AS text COLLATE "C";
CREATE TABLE regress_dom (id int, tenant regress_tenant_name);
INSERT INTO regress_dom VALUES (1, 'acme');
GRANT SELECT ON regress_vc, regress_int, regress_uuid2, regress_dom TO regress_rls_app;
SELECT envault.isolate_table('regress_vc', 'tenant');
SELECT envault.isolate_table('regress_int', 'tenant_id');
SELECT envault.isolate_table('regress_uuid2', 'tenant_id');
SELECT envault.isolate_table('regress_dom', 'tenant');
SELECT polrelid::regclass AS table_name, pg_get_expr(polqual, polrelid) AS using_expr,
       pg_get_expr(polqual, polrelid) = pg_get_expr(polwithcheck, polrelid) AS check_same
  FROM pg_policy
 WHERE polrelid IN ('regress_vc'::regclass, 'regress_int'::regclass,
                    'regress_uuid2'::regclass, 'regress_dom'::regclass)
 ORDER BY 1;
-- what the application role sees under each tenant
CREATE FUNCTION regress_rows_seen(tenants text[])
RETURNS TABLE (tenant text, varchar_4 bigint, int4 bigint, uuid bigint, text_domain bigint)
LANGUAGE plpgsql AS $$
BEGIN
	FOREACH tenant IN ARRAY tenants LOOP
		PERFORM envault.set_tenant(tenant);
		SET LOCAL ROLE regress_rls_app;
		varchar_4 := (SELECT count(*) FROM regress_vc);
		int4 := (SELECT count(*) FROM regress_int);
		uuid := (SELECT count(*) FROM regress_uuid2);
		text_domain := (SELECT count(*) FROM regress_dom);
		RESET ROLE;
		RETURN NEXT;
	END LOOP;
	PERFORM envault.reset_tenant();
END
$$;
SELECT * FROM regress_rows_seen(ARRAY['acme', 'acme-evil', 'acme ', 'ACME', '7', '007',
                                      '-0', '+7', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
                                      'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11']);
-- current_tenant_as() names a value only for its one canonical spelling
CREATE FUNCTION regress_tenant_as(tenants text[])
RETURNS TABLE (tenant text, i2 int2, i4 int4, i8 int8, u uuid)
LANGUAGE plpgsql AS $$
BEGIN
	FOREACH tenant IN ARRAY tenants LOOP
		PERFORM envault.set_tenant(tenant);
		i2 := envault.current_tenant_as(NULL::int2);
		i4 := envault.current_tenant_as(NULL::int4);
		i8 := envault.current_tenant_as(NULL::int8);
		u := envault.current_tenant_as(NULL::uuid);
		RETURN NEXT;
	END LOOP;
	PERFORM envault.reset_tenant();
END
$$;
SELECT envault.create_tenant(t)
  FROM unnest(ARRAY['32767', '32768', '-32768', '2147483648', '9223372036854775807',
                    '9223372036854775808', '-9223372036854775808', '-9223372036854775809']) t;
SELECT * FROM regress_tenant_as(ARRAY['7', '007', '-0', '+7', '32767', '32768', '-32768',
                                      '2147483648', '9223372036854775807',
                                      '9223372036854775808', '-9223372036854775808',
                                      '-9223372036854775809', 'acme',
                                      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
                                      'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11']);
SELECT envault.current_tenant_as(NULL::int4) IS NULL AS null_without_tenant;
SELECT envault.current_tenant_as(NULL::numeric);
-- the policy leaves the column's index usable
CREATE INDEX ON regress_vc (tenant);
CREATE INDEX ON regress_int (tenant_id);
BEGIN;
SELECT envault.set_tenant('acme');
SET LOCAL enable_seqscan = off;
SET LOCAL ROLE regress_rls_app;
EXPLAIN (COSTS OFF) SELECT id FROM regress_vc;
EXPLAIN (COSTS OFF) SELECT id FROM regress_int;
ROLLBACK;
-- refused: types and collations that cannot tell every tenant name apart
CREATE TABLE regress_char (id int, tenant char(8));
CREATE COLLATION regress_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE regress_ci (id int, tenant text COLLATE regress_ci);
CREATE TABLE regress_num (id int, tenant_id numeric);
SELECT envault.isolate_table('regress_char', 'tenant');
SELECT envault.isolate_table('regress_ci', 'tenant');
SELECT envault.isolate_table('regress_num', 'tenant_id');
SELECT envault.isolate_table(NULL, 'tenant');
SELECT envault.isolate_table('regress_char', NULL);
-- and the report flags such a table, also with the policy 0.2.0 created
ALTER TABLE regress_char ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY envault_tenant_isolation ON regress_char
	USING (tenant OPERATOR(pg_catalog.=) (SELECT envault.current_tenant())::character(8))
	WITH CHECK (tenant OPERATOR(pg_catalog.=) (SELECT envault.current_tenant())::character(8));
SELECT table_name, tenant_column, isolated
  FROM envault.isolation_report()
 WHERE table_name::text IN ('regress_vc', 'regress_int', 'regress_uuid2', 'regress_dom',
                            'regress_char', 'regress_ci', 'regress_num')
 ORDER BY 1;
DROP TABLE regress_vc, regress_int, regress_uuid2, regress_dom, regress_char, regress_ci,
           regress_num;
DROP FUNCTION regress_rows_seen(text[]), regress_tenant_as(text[]);
DROP DOMAIN regress_tenant_name;
DROP COLLATION regress_ci;

DROP TABLE regress_orders, regress_uuid, regress_bigint, regress_open, regress_leaky,
           regress_people;
DROP ROLE regress_rls_app;
