-- The policies that envault.isolate_table() creates, checked with pgTAP.
BEGIN;
SELECT plan(30);
SET LOCAL search_path = public;

CREATE TABLE tap_orders (id int PRIMARY KEY, tenant text NOT NULL);
CREATE TABLE tap_accounts (id int PRIMARY KEY, tenant_id uuid NOT NULL);
SELECT lives_ok($$SELECT envault.isolate_table('tap_orders', 'tenant')$$, 'isolate a text column');
SELECT lives_ok($$SELECT envault.isolate_table('tap_accounts', 'tenant_id')$$, 'isolate a uuid column');

SELECT policies_are('public', 'tap_orders', ARRAY['envault_tenant_isolation']);
SELECT policy_cmd_is('public'::name, 'tap_orders'::name, 'envault_tenant_isolation'::name, 'all'::text);
-- (pgTAP's policy_roles_are cannot name PUBLIC, role 0: check directly)
SELECT is((SELECT polroles FROM pg_policy WHERE polrelid = 'tap_orders'::regclass),
          '{0}'::oid[], 'the policy applies to PUBLIC, so to every role');
SELECT is((SELECT polpermissive FROM pg_policy
            WHERE polrelid = 'tap_orders'::regclass), true, 'the policy is permissive');
SELECT is((SELECT relrowsecurity AND relforcerowsecurity FROM pg_class
            WHERE oid = 'tap_orders'::regclass), true, 'RLS is enabled and forced');
SELECT is((SELECT pg_get_expr(polqual, polrelid) FROM pg_policy
            WHERE polrelid = 'tap_orders'::regclass),
          '(tenant = ( SELECT envault.current_tenant() AS current_tenant))',
          'USING compares the column with the current tenant, in a sub-select');
SELECT is((SELECT pg_get_expr(polwithcheck, polrelid) FROM pg_policy
            WHERE polrelid = 'tap_orders'::regclass),
          '(tenant = ( SELECT envault.current_tenant() AS current_tenant))',
          'WITH CHECK is the same expression');
SELECT is((SELECT pg_get_expr(polqual, polrelid) FROM pg_policy
            WHERE polrelid = 'tap_accounts'::regclass),
          '(tenant_id = ( SELECT envault.current_tenant_as(NULL::uuid) AS current_tenant_as))',
          'a uuid column compares with the tenant as a uuid, named only by its canonical text');
SELECT policies_are('public', 'tap_accounts', ARRAY['envault_tenant_isolation']);

-- idempotent
SELECT lives_ok($$SELECT envault.isolate_table('tap_orders', 'tenant')$$, 'isolate again');
SELECT policies_are('public', 'tap_orders', ARRAY['envault_tenant_isolation'],
                    'still exactly one policy');

-- the report agrees, and flags a table that is not isolated
CREATE TABLE tap_open (id int, tenant text);
SELECT is((SELECT isolated FROM envault.isolation_report() WHERE table_name = 'tap_orders'::regclass),
          true, 'the report says tap_orders is isolated');
SELECT is((SELECT isolated FROM envault.isolation_report() WHERE table_name = 'tap_open'::regclass),
          false, 'the report says tap_open is not');

-- judged by definition, not name: a tampered policy is reported and repaired
SELECT lives_ok($$ALTER POLICY envault_tenant_isolation ON tap_orders USING (tenant IS NOT NULL)$$,
                'tamper with the policy''s USING expression');
SELECT is((SELECT isolated FROM envault.isolation_report() WHERE table_name = 'tap_orders'::regclass),
          false, 'the report says a tampered tap_orders is not isolated');
SELECT lives_ok($$SELECT envault.isolate_table('tap_orders', 'tenant')$$, 'isolate the tampered table');
SELECT is((SELECT pg_get_expr(polqual, polrelid) FROM pg_policy
            WHERE polrelid = 'tap_orders'::regclass),
          '(tenant = ( SELECT envault.current_tenant() AS current_tenant))',
          'isolate_table replaced the tampered USING expression');
SELECT is((SELECT isolated FROM envault.isolation_report() WHERE table_name = 'tap_orders'::regclass),
          true, 'and the report says tap_orders is isolated again');
SELECT lives_ok($$ALTER POLICY envault_tenant_isolation ON tap_orders TO envault_user$$,
                'narrow the policy to one role');
SELECT is((SELECT isolated FROM envault.isolation_report() WHERE table_name = 'tap_orders'::regclass),
          false, 'a policy for one role only is not isolation');
SELECT lives_ok($$SELECT envault.isolate_table('tap_orders', 'tenant')$$, 'isolate it again');
SELECT is((SELECT polroles FROM pg_policy WHERE polrelid = 'tap_orders'::regclass),
          '{0}'::oid[], 'the policy applies to PUBLIC again');

-- another column replaces the policy
CREATE TABLE tap_both (id int PRIMARY KEY, tenant text, tenant_id text);
SELECT lives_ok($$SELECT envault.isolate_table('tap_both', 'tenant_id')$$, 'isolate on tenant_id');
SELECT lives_ok($$SELECT envault.isolate_table('tap_both', 'tenant')$$, 'then on tenant');
SELECT is((SELECT pg_get_expr(polqual, polrelid) FROM pg_policy
            WHERE polrelid = 'tap_both'::regclass),
          '(tenant = ( SELECT envault.current_tenant() AS current_tenant))',
          'the policy now compares the column tenant');
SELECT policies_are('public', 'tap_both', ARRAY['envault_tenant_isolation'],
                    'still exactly one policy on tap_both');

-- bad input
SELECT throws_ok($$SELECT envault.isolate_table('tap_orders', 'nope')$$, '42703',
                 'column "nope" of relation public.tap_orders does not exist', 'unknown column');
SELECT throws_ok($$SELECT envault.isolate_table('no_such_table', 'tenant')$$, '42P01', NULL,
                 'unknown table');

SELECT * FROM finish();
ROLLBACK;
