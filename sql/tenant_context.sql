-- tenant_context: API tokens stored as pepper-HMACs, and the current tenant
-- they set, which SQL cannot forge.
SET search_path = public, envault;
\set SHOW_CONTEXT never
CREATE EXTENSION pgcrypto;

-- CRC-32 (IEEE, as zlib), the way a client checks a token offline
CREATE FUNCTION regress_crc32(s text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	crc bigint := 4294967295;
	b bytea := convert_to(s, 'UTF8');
BEGIN
	FOR i IN 0 .. length(b) - 1 LOOP
		crc := crc # get_byte(b, i);
		FOR k IN 1 .. 8 LOOP
			crc := (crc >> 1) # (3988292384 * (crc & 1));
		END LOOP;
	END LOOP;
	RETURN lpad(to_hex(crc # 4294967295), 8, '0');
END
$$;

-- Issue: shown once, in a recognisable, checksummed format
SELECT envault.issue_token('acme', 'api server') AS tok \gset
SELECT length(:'tok') AS len,
       :'tok' ~ '^evt_[0-9a-f]{16}_[0-9a-f]{64}_[0-9a-f]{8}$' AS format,
       regress_crc32(left(:'tok', 85)) = right(:'tok', 8) AS checksum_ok;

-- Stored: id, tenant, HMAC(pepper, "envault/v1/token" || id || secret),
-- pepper version, label, creator, times; never the token or its secret
SELECT token_id = substr(:'tok', 5, 16) AS id_matches, tenant,
       octet_length(token_hmac) AS hmac_len, label, created_by,
       expires_at IS NULL AS no_expiry, last_used_at IS NULL AS unused,
       NOT EXISTS (SELECT FROM envault.token_revocations r
                    WHERE r.token_id = k.token_id) AS not_revoked
  FROM envault.tokens k WHERE label = 'api server';
SELECT token_hmac = hmac(convert_to('envault/v1/token', 'UTF8')
                         || decode(substr(:'tok', 5, 16), 'hex')
                         || decode(substr(:'tok', 22, 64), 'hex'),
                         '\xf0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00112233445566778899aabbccddeeff'::bytea,
                         'sha256') AS hmac_is_pepper_hmac
  FROM envault.tokens WHERE label = 'api server';
SELECT count(*) AS rows_holding_the_secret
  FROM envault.tokens t
 WHERE strpos(t::text, substr(:'tok', 22, 64)) > 0
    OR strpos(encode(t.token_hmac, 'hex'), substr(:'tok', 22, 64)) > 0;
-- the pepper version is the pepper's check value (first 8 bytes)
SELECT pepper_version = left(encode(hmac('envault/v1/pepper-check-value',
        '\xf0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00112233445566778899aabbccddeeff'::bytea,
        'sha256'), 'hex'), 16) AS version_is_check_value
  FROM envault.tokens WHERE label = 'api server';

-- Verify: the tenant, and last_used_at is recorded
SELECT envault.verify_token(:'tok');
SELECT last_used_at IS NOT NULL AS used FROM envault.tokens WHERE label = 'api server';
-- ... by a HOT update (envault.tokens leaves room on its pages), which adds
-- no index entry for later lookups to step over (counted in the
-- transaction: the counts may include earlier ones not yet reported)
BEGIN;
SELECT envault.issue_token('acme', 'hot update') AS tok_hot \gset
SELECT pg_stat_get_xact_tuples_updated('envault.tokens'::regclass) AS upd0,
       pg_stat_get_xact_tuples_hot_updated('envault.tokens'::regclass) AS hot0 \gset
SELECT envault.verify_token(:'tok_hot');
SELECT pg_stat_get_xact_tuples_updated('envault.tokens'::regclass) - :upd0 AS updated,
       pg_stat_get_xact_tuples_hot_updated('envault.tokens'::regclass) - :hot0 AS hot_updated;
ROLLBACK;
SELECT reloptions FROM pg_class WHERE oid = 'envault.tokens'::regclass;
-- verify_token remembers where it found a token's row; a row that has moved
-- since (an update of an indexed column is not HOT: the row gets a new index
-- entry) or is gone is found, or not, as if nothing had been remembered
SELECT envault.issue_token('acme', 'moves') AS tok_move \gset
SELECT envault.issue_token('acme', 'goes') AS tok_gone \gset
SELECT envault.verify_token(:'tok_move') AS before_move,
       envault.verify_token(:'tok_gone') AS before_delete;
UPDATE envault.tokens SET tenant = 'globex' WHERE token_id = substr(:'tok_move', 5, 16);
DELETE FROM envault.tokens WHERE token_id = substr(:'tok_gone', 5, 16);
SELECT envault.verify_token(:'tok_move') AS after_move,
       envault.verify_token(:'tok_gone') IS NULL AS after_delete;
SELECT envault.revoke_token(substr(:'tok_move', 5, 16));
SELECT envault.verify_token(:'tok_move') IS NULL AS after_revoke;

-- Everything else gets NULL: mistyped, malformed, forged, unknown, NULL
SELECT envault.verify_token(overlay(:'tok' PLACING
         CASE WHEN substr(:'tok', 30, 1) = 'a' THEN 'b' ELSE 'a' END FROM 30 FOR 1)) IS NULL AS mistyped,
       envault.verify_token(upper(:'tok')) IS NULL AS uppercase,
       envault.verify_token(left(:'tok', 93)) IS NULL AS truncated,
       envault.verify_token(:'tok' || ' ') IS NULL AS trailing_space,
       envault.verify_token('evt_') IS NULL AS prefix_only,
       envault.verify_token('') IS NULL AS empty,
       envault.verify_token(NULL) IS NULL AS null_token;
-- a forged token: the right id, an invented secret, a correct checksum
SELECT left(:'tok', 21) || repeat('ab', 32) AS forged_body \gset
SELECT envault.verify_token(:'forged_body' || '_' || regress_crc32(:'forged_body')) IS NULL AS forged;
-- an unknown id with a correct checksum
SELECT 'evt_00000000000000ff_' || repeat('cd', 32) AS unknown_body \gset
SELECT envault.verify_token(:'unknown_body' || '_' || regress_crc32(:'unknown_body')) IS NULL AS unknown;

-- Expired and revoked tokens get NULL at once
SELECT envault.issue_token('acme', 'short-lived', now() + interval '1 hour') AS tok_exp \gset
SELECT envault.verify_token(:'tok_exp');
UPDATE envault.tokens SET expires_at = now() - interval '1 second'
 WHERE token_id = substr(:'tok_exp', 5, 16);
SELECT envault.verify_token(:'tok_exp') IS NULL AS expired;
SELECT envault.issue_token('acme', 'to revoke') AS tok_rev \gset
SELECT envault.verify_token(:'tok_rev');
SELECT envault.revoke_token(substr(:'tok_rev', 5, 16)) AS revoked,
       envault.revoke_token(substr(:'tok_rev', 5, 16)) AS revoked_again;
SELECT envault.verify_token(:'tok_rev') IS NULL AS after_revoke;
SELECT envault.revoke_token('0000000000000000');
SELECT envault.issue_token('globex', 'g1') AS tok_g1 \gset
SELECT envault.issue_token('globex', 'g2') AS tok_g2 \gset
SELECT envault.revoke_tenant_tokens('globex') AS revoked_count;
SELECT envault.verify_token(:'tok_g1') IS NULL AS g1_null,
       envault.verify_token(:'tok_g2') IS NULL AS g2_null;
SELECT envault.issue_token('globex', 'after revocation') AS tok_g \gset
SELECT envault.verify_token(:'tok_g');

-- Issuing refuses bad requests
SELECT envault.issue_token('nobody', 'x');
SELECT envault.issue_token('acme', NULL);
SELECT envault.issue_token('acme', 'late', now() - interval '1 minute');

-- The tenant context: NULL until authenticated
SELECT envault.current_tenant() IS NULL AS unset;
SELECT envault.authenticate('evt_nonsense');
SELECT envault.authenticate(:'tok_rev');
-- by default it lasts until the end of the transaction
BEGIN;
SELECT envault.authenticate(:'tok');
SELECT envault.current_tenant();
COMMIT;
SELECT envault.current_tenant() IS NULL AS cleared_by_commit;
BEGIN;
SELECT envault.authenticate(:'tok');
ROLLBACK;
SELECT envault.current_tenant() IS NULL AS cleared_by_rollback;
-- in autocommit, each statement is its own transaction
SELECT envault.authenticate(:'tok');
SELECT envault.current_tenant() IS NULL AS cleared_after_statement;
-- session scope, on request; an aborted transaction restores the context
-- it started with; reset_tenant clears it
SELECT envault.authenticate(:'tok', true);
SELECT envault.current_tenant() AS session_tenant;
BEGIN;
SELECT envault.authenticate(:'tok_g');
SELECT envault.current_tenant();
ROLLBACK;
SELECT envault.current_tenant() AS restored;
SELECT envault.reset_tenant();
SELECT envault.current_tenant() IS NULL AS reset;

-- SQL cannot set it: there is no setting to forge
SET envault.current_tenant = 'globex';
SELECT set_config('envault.tenant', 'globex', false);
SELECT set_config('app.current_tenant', 'globex', false);
SELECT envault.current_tenant() IS NULL AS still_unset;

-- An application role: not a superuser, no BYPASSRLS, owns no table
CREATE ROLE regress_tc_app LOGIN;
GRANT envault_user TO regress_tc_app;
CREATE TABLE regress_shared (id int PRIMARY KEY, tenant text, secret bytea);
INSERT INTO regress_shared VALUES
	(1, 'acme', env_encrypt('acme', 'secrets', 'acme secret')),
	(2, 'globex', env_encrypt('globex', 'secrets', 'globex secret'));
GRANT SELECT, INSERT ON regress_shared TO regress_tc_app;
SET ROLE regress_tc_app;
-- without a tenant: nothing
SELECT env_encrypt('acme', 'secrets', 'x');
SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 1;
-- cannot pick a tenant without a token
SELECT envault.set_tenant('acme');
-- nor with SET or set_config, before or after authenticating
SET envault.current_tenant = 'globex';
SELECT set_config('envault.tenant', 'globex', false);
SELECT set_config('app.current_tenant', 'globex', false);
SET app.current_org_id = 'globex';
SELECT envault.current_tenant() IS NULL AS still_no_tenant;
SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 2;
BEGIN;
SELECT envault.authenticate(:'tok');
SAVEPOINT s;
SET LOCAL envault.current_tenant = 'globex';
ROLLBACK TO s;
SELECT set_config('envault.current_tenant', 'globex', true);
ROLLBACK TO s;
SELECT set_config('app.current_tenant', 'globex', true);
SELECT envault.current_tenant() AS still_acme;
SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 2;
ROLLBACK;
RESET app.current_tenant;
RESET app.current_org_id;
-- the tenant ends with the transaction, committed or rolled back
BEGIN;
SELECT envault.authenticate(:'tok');
SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 1;
COMMIT;
SELECT envault.current_tenant() IS NULL AS cleared_by_commit;
SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 1;
BEGIN;
SELECT envault.authenticate(:'tok');
ROLLBACK;
SELECT envault.current_tenant() IS NULL AS cleared_by_rollback;
SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 1;
-- a mistyped token (one character changed: its checksum fails) gets nothing
SELECT envault.authenticate(overlay(:'tok' PLACING
         CASE WHEN substr(:'tok', 30, 1) = 'a' THEN 'b' ELSE 'a' END FROM 30 FOR 1));
SELECT envault.current_tenant() IS NULL AS nothing;
BEGIN;
SELECT envault.authenticate(:'tok');
-- its own tenant's data only, even in rows it can read
SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 1;
SELECT env_decrypt_text(env_encrypt('acme', 'secrets', 'own tenant'));
COMMIT;
BEGIN;
SELECT envault.authenticate(:'tok');
SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 2;
ROLLBACK;
BEGIN;
SELECT envault.authenticate(:'tok');
SELECT env_encrypt('globex', 'secrets', 'x');
ROLLBACK;
BEGIN;
SELECT envault.authenticate(:'tok');
SELECT envault.blind_index('globex', 'email', 'x');
ROLLBACK;
-- the next transaction has no tenant again
SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 1;
-- an expired, revoked, mistyped or forged token gets nothing
SELECT envault.authenticate(:'tok_exp');
SELECT envault.authenticate(:'tok_rev');
SELECT envault.authenticate(:'forged_body' || '_' || regress_crc32(:'forged_body'));
SELECT envault.current_tenant() IS NULL AS nothing;
RESET ROLE;

-- Savepoints: rolling back to one undoes authenticate(), set_tenant() and
-- reset_tenant() done since; releasing one keeps them
SET ROLE regress_tc_app;
BEGIN;
SAVEPOINT a;
SELECT envault.authenticate(:'tok');
ROLLBACK TO a;
SELECT envault.current_tenant() IS NULL AS undone;
SELECT envault.authenticate(:'tok');
SAVEPOINT b;
SELECT envault.authenticate(:'tok_g');
SELECT envault.current_tenant() AS inside_b;
ROLLBACK TO b;
SELECT envault.current_tenant() AS back_to_acme;
SAVEPOINT c;
SELECT envault.reset_tenant();
ROLLBACK TO c;
SELECT envault.current_tenant() AS reset_undone;
-- nested: a change released into an outer savepoint is undone with it
SAVEPOINT outer_sp;
SAVEPOINT inner_sp;
SELECT envault.authenticate(:'tok_g');
RELEASE inner_sp;
SELECT envault.current_tenant() AS released;
ROLLBACK TO outer_sp;
SELECT envault.current_tenant() AS outer_undone;
SAVEPOINT d;
SELECT envault.authenticate(:'tok_g');
RELEASE d;
SELECT envault.current_tenant() AS kept_after_release;
COMMIT;
SELECT envault.current_tenant() IS NULL AS cleared_by_commit;
-- an exception block is a subtransaction too
SELECT set_config('regress.tok', :'tok', false) IS NOT NULL AS stashed;
DO $$
BEGIN
	BEGIN
		PERFORM envault.authenticate(current_setting('regress.tok'), true);
		RAISE EXCEPTION 'fail after authenticating';
	EXCEPTION WHEN raise_exception THEN
		RAISE NOTICE 'after the failed block: %', coalesce(envault.current_tenant(), 'no tenant');
	END;
END
$$;
SELECT envault.current_tenant() IS NULL AS nothing_after_the_block;
-- a session context survives a rolled-back savepoint in a later transaction
SELECT envault.authenticate(:'tok', true);
BEGIN;
SAVEPOINT e;
SELECT envault.reset_tenant();
ROLLBACK TO e;
COMMIT;
SELECT envault.current_tenant() AS session_context_kept;
SELECT envault.reset_tenant();
RESET ROLE;
-- set_tenant (an admin) likewise
BEGIN;
SELECT envault.set_tenant('acme');
SAVEPOINT f;
SELECT envault.set_tenant('globex');
ROLLBACK TO f;
SELECT envault.current_tenant() AS admin_back_to_acme;
COMMIT;

-- Revoking a token ends the contexts it set, at their next use: here a
-- session context of the application role, in this same session.  (The
-- error names the token, whose id is random: regress_error masks it.)
CREATE FUNCTION regress_error(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	state text;
	msg text;
	detail text;
	hint text;
BEGIN
	EXECUTE sql;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	RETURN state || ': ' || msg || E'\nDETAIL: '
		|| regexp_replace(detail, 'Token [0-9a-f]{16} ', 'Token <id> ')
		|| E'\nHINT: ' || hint;
END
$$;
SELECT envault.issue_token('acme', 'session to revoke') AS tok_s \gset
SET ROLE regress_tc_app;
SELECT envault.authenticate(:'tok_s', true);
SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 1;
RESET ROLE;
SELECT envault.revoke_token(substr(:'tok_s', 5, 16));
SET ROLE regress_tc_app;
SELECT regress_error('SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 1');
SELECT envault.current_tenant() IS NULL AS context_gone;
SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 1;
-- revoke_tenant_tokens likewise, seen first by current_tenant() (which the
-- isolate_table policies call)
RESET ROLE;
SELECT envault.issue_token('globex', 'session to revoke') AS tok_gs \gset
SET ROLE regress_tc_app;
SELECT envault.authenticate(:'tok_gs', true);
RESET ROLE;
SELECT envault.revoke_tenant_tokens('globex') AS revoked_count;
SET ROLE regress_tc_app;
SELECT regress_error('SELECT envault.current_tenant()');
SELECT envault.current_tenant() IS NULL AS context_gone;
-- and an expired token ends its context at the first use past its expiry
RESET ROLE;
SELECT envault.issue_token('acme', 'four seconds', clock_timestamp() + interval '4 seconds') AS tok_2s \gset
SET ROLE regress_tc_app;
SELECT envault.authenticate(:'tok_2s', true);
SELECT envault.current_tenant() AS before_expiry;
SELECT pg_sleep(4.5);
SELECT regress_error('SELECT env_decrypt_text(secret) FROM regress_shared WHERE id = 1');
SELECT envault.current_tenant() IS NULL AS context_gone;
RESET ROLE;
SELECT envault.revoke_token(NULL);
SELECT envault.revoke_tenant_tokens(NULL);

-- Another tenant's ciphertext is refused with the same error whatever state
-- that tenant and its keys are in: the application learns neither.  Tenant
-- "regress-hidden" has values under a retired, a destroyed, a tampered and
-- the active data key version; an admin sees why each one fails.
SELECT envault.create_tenant('regress-hidden');
CREATE TABLE regress_hidden (version int PRIMARY KEY, c bytea);
INSERT INTO regress_hidden VALUES (1, env_encrypt('regress-hidden', 'docs', 'v1'));
SELECT envault.rotate_data_key('regress-hidden', 'docs');
INSERT INTO regress_hidden VALUES (2, env_encrypt('regress-hidden', 'docs', 'v2'));
SELECT envault.rotate_data_key('regress-hidden', 'docs');
INSERT INTO regress_hidden VALUES (3, env_encrypt('regress-hidden', 'docs', 'v3'));
SELECT envault.rotate_data_key('regress-hidden', 'docs');
INSERT INTO regress_hidden VALUES (4, env_encrypt('regress-hidden', 'docs', 'v4'));
SELECT envault.retire_data_key('regress-hidden', 'docs', 1);
SELECT envault.destroy_data_key('regress-hidden', 'docs', 2);
-- version 3: its wrapped key swapped with that of version 4, behind envault's back
UPDATE envault.data_keys d SET wrapped_key = o.wrapped_key
  FROM envault.data_keys o
 WHERE d.tenant = 'regress-hidden' AND d.version = 3
   AND o.tenant = 'regress-hidden' AND o.version = 4;
GRANT SELECT ON regress_hidden TO regress_tc_app;
\c
SET search_path = public, envault;
\set SHOW_CONTEXT never
SELECT env_decrypt_text(c) FROM regress_hidden WHERE version = 1;
SELECT env_decrypt_text(c) FROM regress_hidden WHERE version = 2;
\set VERBOSITY terse
SELECT env_decrypt_text(c) FROM regress_hidden WHERE version = 3;
\set VERBOSITY default
-- (and version 4 decrypts, leaving its key in this session's cache)
SELECT env_decrypt_text(c) FROM regress_hidden WHERE version = 4;
SET ROLE regress_tc_app;
BEGIN;
SELECT envault.authenticate(:'tok');
SAVEPOINT s;
SELECT env_decrypt_text(c) FROM regress_hidden WHERE version = 1;
ROLLBACK TO s;
SELECT env_decrypt_text(c) FROM regress_hidden WHERE version = 2;
ROLLBACK TO s;
SELECT env_decrypt_text(c) FROM regress_hidden WHERE version = 3;
ROLLBACK TO s;
SELECT env_decrypt_text(c) FROM regress_hidden WHERE version = 4;
ROLLBACK TO s;
SELECT env_is_current(c) FROM regress_hidden WHERE version = 1;
ROLLBACK TO s;
SELECT env_reencrypt(c) FROM regress_hidden WHERE version = 2;
COMMIT;
RESET ROLE;
-- the same once the tenant is revoked, and once it is destroyed
SELECT envault.revoke_tenant('regress-hidden');
SELECT env_decrypt_text(c) FROM regress_hidden WHERE version = 4;
SET ROLE regress_tc_app;
BEGIN;
SELECT envault.authenticate(:'tok');
SAVEPOINT s;
SELECT env_decrypt_text(c) FROM regress_hidden WHERE version = 4;
ROLLBACK TO s;
SELECT env_is_current(c) FROM regress_hidden WHERE version = 4;
ROLLBACK TO s;
SELECT env_reencrypt(c) FROM regress_hidden WHERE version = 4;
COMMIT;
RESET ROLE;
SELECT envault.destroy_tenant('regress-hidden');
SELECT env_decrypt_text(c) FROM regress_hidden WHERE version = 4;
SET ROLE regress_tc_app;
BEGIN;
SELECT envault.authenticate(:'tok');
SELECT env_decrypt_text(c) FROM regress_hidden WHERE version = 4;
COMMIT;
RESET ROLE;
DROP TABLE regress_hidden;

-- Admins keep explicit cross-tenant access, with or without a context
SELECT envault.set_tenant('acme');
SELECT env_decrypt_text(secret) FROM regress_shared ORDER BY id;
SELECT envault.set_tenant('nobody');
SELECT envault.set_tenant('globex', false);
SELECT envault.current_tenant();
SELECT envault.set_tenant(NULL);
SELECT envault.current_tenant() IS NULL AS cleared;

-- DISCARD ALL, the reset query of session poolers, and RESET ALL end a
-- session-scoped context: the next client of the connection starts without
SELECT envault.set_tenant('globex', false);
DISCARD ALL;
SET search_path = public, envault;
SELECT envault.current_tenant() IS NULL AS discarded;
SELECT envault.set_tenant('globex', false);
RESET ALL;
SET search_path = public, envault;
SELECT envault.current_tenant() IS NULL AS reset;
-- ... also one that authenticate() set for the session
SELECT envault.issue_token('acme', 'pooled') AS tok_pooled \gset
SELECT envault.authenticate(:'tok_pooled', true);
DISCARD ALL;
SET search_path = public, envault;
SELECT envault.current_tenant() IS NULL AS discarded;
-- RESET ALL inside a transaction that rolls back leaves the context as it was
SELECT envault.set_tenant('globex', false);
BEGIN;
RESET ALL;
SELECT envault.current_tenant() IS NULL AS reset_in_transaction;
ROLLBACK;
SET search_path = public, envault;
SELECT envault.current_tenant();
SELECT envault.reset_tenant();

-- use_tenant: the scope flag means what authenticate()'s does (session,
-- default false); set_tenant(tenant, is_local) is its deprecated alias
BEGIN;
SELECT envault.use_tenant('globex');
SELECT envault.current_tenant() AS in_transaction;
COMMIT;
SELECT envault.current_tenant() IS NULL AS gone_after_commit;
SELECT envault.use_tenant('globex', true);
SELECT envault.current_tenant() AS for_the_session;
SELECT envault.use_tenant(NULL);
SELECT envault.current_tenant() IS NULL AS cleared;
SELECT envault.use_tenant('globex', NULL);
SELECT envault.use_tenant('nobody');

DROP TABLE regress_shared;
DROP FUNCTION regress_error(text);
DROP ROLE regress_tc_app;
