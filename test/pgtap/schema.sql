-- Schema lock: envault's objects, their signatures and who may use them.
-- A change to any of these must be deliberate, and shows up here first.
BEGIN;
SELECT plan(142);

SELECT has_extension('envault');
SELECT has_schema('envault');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'envault'), false,
          'envault is not relocatable');
SELECT has_role('envault_user');
SELECT has_role('envault_admin');
SELECT is((SELECT bool_or(rolcanlogin) FROM pg_roles
            WHERE rolname IN ('envault_user', 'envault_admin')), false,
          'the extension roles cannot log in');

SELECT tables_are('envault', ARRAY['tenants', 'data_keys', 'tokens', 'token_revocations', 'key_events',
                                   'audit_chains', 'checkpoints', 'chain_anchors',
                                   'chain_heads', 'access_log', 'secrets', 'database_identity',
                                   'chain_trees', 'chain_nodes', 'checkpoint_cosignatures']);
SELECT functions_are('envault', ARRAY['env_encrypt', 'env_decrypt', 'env_decrypt_text',
                                      'blind_index', 'create_tenant', 'create_data_key',
                                      'authenticate', 'set_tenant', 'use_tenant', 'reset_tenant',
                                      'current_tenant', 'current_tenant_as', 'issue_token', 'verify_token',
                                      'revoke_token', 'revoke_tenant_tokens', 'pepper_hmac',
                                      'isolate_table', 'isolation_report', 'isolation_expr', 'policy_isolates',
                                      'env_reencrypt', 'env_is_current', 'key_state', 'rotate_data_key',
                                      'rotate_tenant_key', 'retire_data_key', 'restore_data_key', 'unretire_data_key',
                                      'destroy_data_key', 'destroy_tenant', 'revoke_tenant',
                                      'restore_tenant', 'unrevoke_tenant', 'reencrypt_column', 'prepare_column_walk',
                                      'master_key_status',
                                      'rewrap_tenant_keys', 'rotate_master_key',
                                      'use_customer_key', 'rekey_tenant', 'destroy_superseded_keys', 'use_master_key',
                                      'append_only', 'chain_insert', 'chain_heads', 'chain_store_heads', 'chain_refuse',
                                      'chain_ddl_guard', 'chain_drop_guard', 'chain_meaning',
                                      'database_id', 'tree_head', 'inclusion_proof', 'consistency_proof',
                                      'enable_audit_chain', 'distribute_audit_chain', 'disable_audit_chain',
                                      'checkpoint', 'cosign', 'signing_public_key', 'verify_chain', 'verify_chain_json',
                                      'export_chain', 'purge_chain', 'set_chain_retention',
                                      'flush_access_log', 'access_log_status',
                                      'put_secret', 'get_secret', 'delete_secret',
                                      'record_verification', 'list_secrets',
                                      'env_decrypt_text_compat', 'migrate_pgcrypto_column',
                                      'key_tables_changed', 'scale_out']);

-- signatures
SELECT function_returns('envault', 'env_encrypt', ARRAY['text', 'text', 'bytea', 'bytea'], 'bytea');
SELECT function_returns('envault', 'env_encrypt', ARRAY['text', 'text', 'text', 'bytea'], 'bytea');
SELECT function_returns('envault', 'env_decrypt', ARRAY['bytea', 'bytea'], 'bytea');
SELECT function_returns('envault', 'env_decrypt_text', ARRAY['bytea', 'bytea'], 'text');
SELECT function_returns('envault', 'create_tenant', ARRAY['text'], 'void');
SELECT function_returns('envault', 'create_data_key', ARRAY['text', 'text'], 'integer');
SELECT is((SELECT pronargdefaults FROM pg_proc
            WHERE oid = 'envault.env_decrypt(bytea, bytea)'::regprocedure), 1::smallint,
          'env_decrypt: aad has a default');

-- volatility and parallel safety: encryption creates keys, decryption only reads
SELECT volatility_is('envault', 'env_encrypt', ARRAY['text', 'text', 'bytea', 'bytea'], 'volatile');
SELECT volatility_is('envault', 'env_decrypt', ARRAY['bytea', 'bytea'], 'stable');
SELECT volatility_is('envault', 'env_decrypt_text', ARRAY['bytea', 'bytea'], 'stable');
SELECT is((SELECT proparallel FROM pg_proc
            WHERE oid = 'envault.env_decrypt(bytea, bytea)'::regprocedure), 'r'::"char",
          'env_decrypt is parallel restricted');
SELECT is_empty($$SELECT proname FROM pg_proc
                   WHERE pronamespace = 'envault'::regnamespace AND prosecdef$$,
                'no function is SECURITY DEFINER: the C functions act as the schema owner internally');
SELECT is((SELECT count(*)::int FROM pg_proc
            WHERE pronamespace = 'envault'::regnamespace AND prolang <> 13
              AND prokind = 'f'
              AND NOT ('search_path=pg_catalog, pg_temp' = ANY (proconfig))), 0,
          'every SQL-language function pins search_path (procedures cannot: they COMMIT)');
SELECT is((SELECT proparallel FROM pg_proc
            WHERE oid = 'envault.current_tenant()'::regprocedure), 'r'::"char",
          'current_tenant is parallel restricted: workers do not share the context');
SELECT is((SELECT proparallel FROM pg_proc
            WHERE oid = 'envault.current_tenant_as(anyelement)'::regprocedure), 'r'::"char",
          'current_tenant_as is parallel restricted too');

-- function privileges per role
SELECT function_privs_are('envault', 'env_encrypt', ARRAY['text', 'text', 'bytea', 'bytea'], 'envault_user', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'env_encrypt', ARRAY['text', 'text', 'text', 'bytea'], 'envault_user', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'env_decrypt', ARRAY['bytea', 'bytea'], 'envault_user', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'env_decrypt_text', ARRAY['bytea', 'bytea'], 'envault_user', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'create_tenant', ARRAY['text'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'create_data_key', ARRAY['text', 'text'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'env_encrypt', ARRAY['text', 'text', 'bytea', 'bytea'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'env_decrypt', ARRAY['bytea', 'bytea'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'create_tenant', ARRAY['text'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'create_data_key', ARRAY['text', 'text'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'authenticate', ARRAY['text', 'boolean'], 'envault_user', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'current_tenant', ARRAY[]::text[], 'envault_user', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'reset_tenant', ARRAY[]::text[], 'envault_user', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'verify_token', ARRAY['text'], 'envault_user', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'blind_index', ARRAY['text', 'text', 'text'], 'envault_user', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'set_tenant', ARRAY['text', 'boolean'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'issue_token', ARRAY['text', 'text', 'timestamptz'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'revoke_token', ARRAY['text'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'isolate_table', ARRAY['regclass', 'name'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'policy_isolates', ARRAY['regclass', 'text'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'policy_isolates', ARRAY['regclass', 'text'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'key_state', ARRAY['bytea'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'key_state', ARRAY['bytea'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'set_tenant', ARRAY['text', 'boolean'], 'envault_admin', ARRAY['EXECUTE']);
-- the names of 0.3.0 and their deprecated aliases: the same rights
SELECT function_privs_are('envault', 'use_tenant', ARRAY['text', 'boolean'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'use_tenant', ARRAY['text', 'boolean'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'unretire_data_key', ARRAY['text', 'text', 'integer'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'unrevoke_tenant', ARRAY['text'], 'envault_admin', ARRAY['EXECUTE']);
SELECT is((SELECT array_agg(proname::text ORDER BY proname) FROM pg_proc
            WHERE pronamespace = 'envault'::regnamespace
              AND obj_description(oid, 'pg_proc') LIKE 'Deprecated alias of %'),
          ARRAY['chain_heads', 'restore_data_key', 'restore_tenant', 'set_tenant'],
          'the deprecated aliases of 0.3.0 say so');
SELECT function_privs_are('envault', 'issue_token', ARRAY['text', 'text', 'timestamptz'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'revoke_tenant_tokens', ARRAY['text'], 'envault_admin', ARRAY['EXECUTE']);
-- scale_out() converts the key tables (superuser only); the trigger
-- function is no one's to call
SELECT function_privs_are('envault', 'scale_out', ARRAY[]::text[], 'envault_admin', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'key_tables_changed', ARRAY[]::text[], 'envault_admin', ARRAY[]::text[]);
SELECT is((SELECT count(*)::int FROM pg_proc
            WHERE pronamespace = 'envault'::regnamespace
              AND has_function_privilege('public', oid, 'EXECUTE')), 0,
          'PUBLIC may execute no envault function');

-- schema and table privileges
SELECT schema_privs_are('envault', 'envault_user', ARRAY['USAGE']);
SELECT schema_privs_are('envault', 'envault_admin', ARRAY['USAGE']);
SELECT is(has_schema_privilege('public', 'envault', 'USAGE'), false,
          'PUBLIC has no usage on schema envault');
SELECT table_privs_are('envault', 'tenants', 'envault_user', ARRAY[]::text[]);
SELECT table_privs_are('envault', 'data_keys', 'envault_user', ARRAY[]::text[]);
SELECT table_privs_are('envault', 'tenants', 'envault_admin', ARRAY['SELECT']);
SELECT table_privs_are('envault', 'data_keys', 'envault_admin', ARRAY['SELECT']);
SELECT table_privs_are('envault', 'tokens', 'envault_user', ARRAY[]::text[]);
SELECT table_privs_are('envault', 'tokens', 'envault_admin', ARRAY['SELECT']);
SELECT table_privs_are('envault', 'token_revocations', 'envault_user', ARRAY[]::text[]);
SELECT table_privs_are('envault', 'token_revocations', 'envault_admin', ARRAY['SELECT']);
SELECT table_privs_are('envault', 'key_events', 'envault_user', ARRAY[]::text[]);
SELECT table_privs_are('envault', 'key_events', 'envault_admin', ARRAY['SELECT']);
-- every change of the key tables, by anyone, flushes every session's key cache
SELECT has_trigger('envault', 'tenants', 'tenants_changed'::name,
                   'tenants: key_tables_changed');
SELECT has_trigger('envault', 'data_keys', 'data_keys_changed'::name,
                   'data_keys: key_tables_changed');
SELECT trigger_is('envault', 'tenants', 'tenants_changed', 'envault', 'key_tables_changed');
SELECT trigger_is('envault', 'data_keys', 'data_keys_changed', 'envault', 'key_tables_changed');
SELECT has_trigger('envault', 'key_events', 'zz_envault_chain'::name,
                   'key_events is an audit chain');
SELECT has_trigger('envault', 'key_events', 'zz_envault_chain_refuse'::name,
                   'key_events refuses UPDATE and DELETE');
SELECT has_trigger('envault', 'key_events', 'zz_envault_chain_truncate'::name,
                   'key_events refuses TRUNCATE');
SELECT has_trigger('envault', 'key_events', 'zz_envault_chain_heads'::name,
                   'key_events keeps its heads');
SELECT is((SELECT tenant_column::text FROM envault.audit_chains
            WHERE tbl = 'envault.key_events'::regclass AND builtin), 'tenant',
          'key_events is chained by tenant, as envault''s own');
SELECT has_trigger('envault', 'checkpoints', 'checkpoints_append_only'::name,
                   'checkpoints are append-only');
SELECT has_trigger('envault', 'chain_anchors', 'chain_anchors_append_only'::name,
                   'chain anchors are append-only');
SELECT has_trigger('envault', 'checkpoint_cosignatures', 'checkpoint_cosignatures_append_only'::name,
                   'cosignatures are append-only');
SELECT table_privs_are('envault', 'checkpoint_cosignatures', 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'cosign', ARRAY['regclass', 'text', 'text'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'cosign', ARRAY['regclass', 'text', 'text'], 'envault_user', ARRAY[]::text[]);
SELECT bag_eq($$SELECT evtname::text || ':' || evtevent FROM pg_event_trigger
                WHERE evtfoid::regproc::text LIKE 'envault.%'$$,
              ARRAY['envault_chain_ddl_guard:ddl_command_end', 'envault_chain_drop_guard:sql_drop'],
              'event triggers guard chained tables');
SELECT table_privs_are('envault', 'checkpoints', 'envault_user', ARRAY[]::text[]);
SELECT table_privs_are('envault', 'checkpoints', 'envault_admin', ARRAY['SELECT']);
SELECT table_privs_are('envault', 'audit_chains', 'envault_admin', ARRAY['SELECT']);
SELECT table_privs_are('envault', 'database_identity', 'envault_admin', ARRAY['SELECT']);
SELECT table_privs_are('envault', 'database_identity', 'envault_user', ARRAY[]::text[]);
SELECT is((SELECT count(*)::int FROM envault.database_identity), 1,
          'CREATE EXTENSION makes one database identity');
SELECT function_privs_are('envault', 'database_id', ARRAY[]::text[], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'chain_meaning', ARRAY['regclass'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'inclusion_proof', ARRAY['regclass', 'text', 'bigint', 'bigint'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'consistency_proof', ARRAY['regclass', 'text', 'bigint', 'bigint'], 'envault_admin', ARRAY['EXECUTE']);
SELECT table_privs_are('envault', 'chain_nodes', 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'enable_audit_chain', ARRAY['regclass', 'name'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'enable_audit_chain', ARRAY['regclass', 'name'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'verify_chain', ARRAY['regclass', 'text'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'verify_chain', ARRAY['regclass', 'text'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_returns('envault', 'verify_chain', ARRAY['regclass', 'text'], 'setof record');
SELECT function_privs_are('envault', 'distribute_audit_chain', ARRAY['regclass', 'integer'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'verify_chain_json', ARRAY['regclass', 'text', 'text[]', 'bigint[]', 'bytea[]'],
                          'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'verify_chain_json', ARRAY['regclass', 'text', 'text[]', 'bigint[]', 'bytea[]'],
                          'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'prepare_column_walk', ARRAY['regclass', 'name', 'name', 'name', 'text'],
                          'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'prepare_column_walk', ARRAY['regclass', 'name', 'name', 'name', 'text'],
                          'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'env_reencrypt', ARRAY['bytea', 'bytea'], 'envault_user', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'rotate_data_key', ARRAY['text', 'text'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'rotate_data_key', ARRAY['text', 'text'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'destroy_tenant', ARRAY['text'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'destroy_tenant', ARRAY['text'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'revoke_tenant', ARRAY['text'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'rewrap_tenant_keys', ARRAY['integer'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'rewrap_tenant_keys', ARRAY['integer'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'use_customer_key', ARRAY['text'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'use_customer_key', ARRAY['text'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'rekey_tenant', ARRAY['text'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'rekey_tenant', ARRAY['text'], 'envault_admin', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'destroy_superseded_keys', ARRAY['text'], 'envault_user', ARRAY[]::text[]);
SELECT function_privs_are('envault', 'destroy_superseded_keys', ARRAY['text'], 'envault_admin', ARRAY['EXECUTE']);
SELECT is(has_table_privilege('public', 'envault.tenants', 'SELECT'), false,
          'PUBLIC cannot read envault.tenants');

-- key tables: keys, constraints, dump
SELECT col_is_pk('envault', 'tenants', 'tenant', 'tenants is keyed by tenant');
SELECT col_is_pk('envault', 'data_keys', 'key_id', 'data_keys is keyed by key_id');
SELECT fk_ok('envault', 'data_keys', 'tenant', 'envault', 'tenants', 'tenant');
SELECT col_is_unique('envault', 'data_keys', ARRAY['tenant', 'purpose', 'version']);
SELECT index_is_unique('envault', 'data_keys', 'data_keys_one_active');
SELECT is((SELECT count(*)::int FROM pg_constraint
            WHERE conrelid = 'envault.tenants'::regclass AND contype = 'c'
              AND pg_get_constraintdef(oid) ~ 'destroyed.*(wrapped_key|master_kcv) IS NULL'), 2,
          'a tenant has a wrapped key and a master key check value unless destroyed');
SELECT is((SELECT count(*)::int FROM pg_constraint
            WHERE conrelid = 'envault.data_keys'::regclass AND contype = 'c'
              AND pg_get_constraintdef(oid) ~ 'destroyed.*wrapped_key IS NULL'), 1,
          'a data key is stored wrapped unless destroyed');
SELECT col_type_is('envault', 'data_keys', 'key_id', 'bigint', 'key ids are bigint');
SELECT bag_eq($$SELECT unnest(extconfig)::regclass::text FROM pg_extension
                WHERE extname = 'envault'$$,
              ARRAY['envault.tenants', 'envault.data_keys', 'envault.tokens', 'envault.token_revocations',
                    'envault.key_events', 'envault.key_events_seq',
                    'envault.audit_chains', 'envault.audit_chains_seq',
                    'envault.checkpoints', 'envault.checkpoints_seq',
                    'envault.chain_anchors', 'envault.chain_heads',
                    'envault.access_log', 'envault.secrets', 'envault.database_identity',
                    'envault.chain_trees', 'envault.chain_nodes',
                    'envault.checkpoint_cosignatures', 'envault.checkpoint_cosignatures_seq'],
              'key tables, events, chains, the access log and secrets are dumped by pg_dump');
SELECT is((SELECT tenant_column::text FROM envault.audit_chains
            WHERE tbl = 'envault.access_log'::regclass AND builtin), 'tenant',
          'the access log is chained by tenant, as envault''s own');
SELECT table_privs_are('envault', 'access_log', 'envault_user', ARRAY[]::text[]);
SELECT table_privs_are('envault', 'access_log', 'envault_admin', ARRAY['SELECT']);
SELECT is(has_column_privilege('envault_user', 'envault.secrets', 'ciphertext', 'SELECT'), false,
          'envault_user cannot read the ciphertext of secrets');
SELECT is(has_column_privilege('envault_user', 'envault.secrets', 'preview', 'SELECT'), true,
          'envault_user can read the preview of secrets (row-level security applies)');
SELECT is((SELECT relrowsecurity FROM pg_class WHERE oid = 'envault.secrets'::regclass), true,
          'secrets are isolated by tenant with row-level security');
SELECT function_privs_are('envault', 'get_secret', ARRAY['text', 'text'], 'envault_user', ARRAY['EXECUTE']);
SELECT function_privs_are('envault', 'access_log_status', ARRAY[]::text[], 'envault_user', ARRAY[]::text[]);
SELECT is((SELECT extcondition[array_position(extconfig, 'envault.key_events'::regclass)]
             FROM pg_extension WHERE extname = 'envault'), 'ORDER BY envault_seq',
          'key_events are dumped in chain order, so that they reload through the chain trigger');

-- settings: secret ones are hidden from SHOW ALL and pg_settings
SELECT is((SELECT count(*)::int FROM pg_settings
            WHERE name IN ('envault.master_key', 'envault.master_key_command',
                           'envault.previous_master_key', 'envault.previous_master_key_command',
                           'envault.pepper', 'envault.previous_pepper',
                           'envault.customer_key_command', 'envault.signing_key')), 0,
          'secret settings are not listed in pg_settings');
SELECT is(current_setting('envault.master_key'), '', 'master_key is unset here');

SELECT * FROM finish();
ROLLBACK;
