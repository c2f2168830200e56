-- bench/tenancy.sql: the cost of tenant isolation and of API tokens.
--
-- Row-level security: SELECT count(*) through a table isolated with
-- envault.isolate_table() (policy tenant = (SELECT current_tenant())),
-- run as an application role after envault.authenticate(token), against
-- the same count with a hand-written WHERE tenant = '<tenant>' on an
-- identical copy without row-level security, run as the same role.
-- The role is what an application connects as: a member of envault_user,
-- not a superuser, without BYPASSRLS, owning no table (superusers and
-- roles with BYPASSRLS skip every policy).  The harness switches to it
-- with SET ROLE around each timed query only (run_as).
--
-- Tokens: envault.verify_token() per call, against the same lookup and
-- HMAC written by hand in SQL (one index lookup per token, HMAC under the
-- pepper with envault.pepper_hmac) and against pgcrypto's hmac() alone.
-- verify_token writes last_used_at at most once a minute per token: the
-- plain case measures the calls that do not write (its untimed run right
-- before writes it), the "first use" case a fresh set of tokens per round,
-- where every call writes.
--
-- psql variables (set by bench/run.sh): large_rows, tokens, reps, slow_reps.
-- Needs envault.pepper (bench/run.sh configures envault.pepper_file).

\echo '-- topic tenancy: preparing' :large_rows 'rows in 8 tenants,' :tokens 'tokens'

DO $$
BEGIN
	FOR t IN 1 .. 8 LOOP
		PERFORM envault.create_tenant('tenant_' || t);
	END LOOP;
END
$$;

-- The application role.
CREATE ROLE bench_app NOLOGIN NOSUPERUSER NOBYPASSRLS IN ROLE envault_user;
GRANT USAGE ON SCHEMA bench TO bench_app;

-- Two identical tables, the tenants interleaved row by row; no index, so
-- both sides scan the whole table and evaluate the tenant test per row.
CREATE TABLE bench.rls_isolated (
	id			bigint NOT NULL,
	tenant		text NOT NULL,
	payload		text NOT NULL
);
INSERT INTO bench.rls_isolated
SELECT i, 'tenant_' || (i % 8 + 1), md5(i::text)
FROM generate_series(1, :large_rows) i;
CREATE TABLE bench.rls_plain (LIKE bench.rls_isolated);
INSERT INTO bench.rls_plain SELECT * FROM bench.rls_isolated ORDER BY id;
DO $$ BEGIN PERFORM envault.isolate_table('bench.rls_isolated', 'tenant'); END $$;
GRANT SELECT ON bench.rls_isolated, bench.rls_plain TO bench_app;
VACUUM (FREEZE, ANALYZE) bench.rls_isolated, bench.rls_plain;

SELECT count(*) AS rls_tenant_rows FROM bench.rls_plain
WHERE tenant = 'tenant_3' \gset

-- The application authenticates once for the whole session (session =>
-- true): the harness commits after every round, and a transaction-scoped
-- tenant would be gone by then.
DO $$
DECLARE
	tok		text := envault.issue_token('tenant_3', 'bench app');
BEGIN
	SET ROLE bench_app;
	IF envault.authenticate(tok, true) IS DISTINCT FROM 'tenant_3' THEN
		RAISE EXCEPTION 'authenticate did not verify the application token';
	END IF;
	RESET ROLE;
END
$$;

-- Plans, as the application role sees them, for the report.
CREATE FUNCTION bench.plan(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	line	text;
	plan	text := '';
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
		plan := plan || CASE WHEN plan = '' THEN '' ELSE ' | ' END
				|| regexp_replace(trim(line), '^-> *', '');
	END LOOP;
	RETURN plan;
END
$$;
SET ROLE bench_app;
SELECT bench.plan('SELECT count(*) FROM bench.rls_isolated') AS plan_rls,
	   bench.plan('SELECT count(*) FROM bench.rls_plain WHERE tenant = ''tenant_3''')
	   AS plan_plain \gset
RESET ROLE;

-- Tokens: :tokens for the repeated cases, and :slow_reps fresh sets of
-- :tokens for the first-use case (one set per round).  Tenants round-robin.
CREATE TABLE bench.tokens (
	n			integer NOT NULL,
	tok			text NOT NULL
);
INSERT INTO bench.tokens
SELECT g, envault.issue_token('tenant_' || (g % 8 + 1), 'bench ' || g)
FROM generate_series(1, :tokens) g;

CREATE TABLE bench.fresh_tokens (
	batch		integer NOT NULL,
	tok			text NOT NULL
);
INSERT INTO bench.fresh_tokens
SELECT b, envault.issue_token('tenant_' || (g % 8 + 1), 'fresh ' || b || '.' || g)
FROM generate_series(1, :slow_reps) b, generate_series(1, :tokens) g;
CREATE SEQUENCE bench.fresh_batch;

VACUUM (FREEZE, ANALYZE) bench.tokens, bench.fresh_tokens;
VACUUM (ANALYZE) envault.tokens, envault.tenants;
CHECKPOINT;

-- Sanity, untimed: every token verifies to its tenant, by envault and by
-- the hand-written SQL of the case below.
DO $$
DECLARE
	bad		bigint;
BEGIN
	SELECT count(*) INTO bad FROM bench.tokens
	WHERE envault.verify_token(tok) IS DISTINCT FROM 'tenant_' || (n % 8 + 1);
	IF bad <> 0 THEN
		RAISE EXCEPTION 'bench.tokens: % tokens do not verify to their tenant', bad;
	END IF;
	SELECT count(*) INTO bad FROM bench.tokens x
	WHERE (SELECT k.tenant FROM envault.tokens k
		   WHERE k.token_id = substr(x.tok, 5, 16)
			 AND k.token_hmac = envault.pepper_hmac(
					convert_to('envault/v1/token', 'UTF8')
					|| decode(substr(x.tok, 5, 16), 'hex')
					|| decode(substr(x.tok, 22, 64), 'hex')))
		  IS DISTINCT FROM 'tenant_' || (x.n % 8 + 1);
	IF bad <> 0 THEN
		RAISE EXCEPTION 'bench.tokens: % tokens do not match by hand', bad;
	END IF;
END
$$;

INSERT INTO bench.facts (fact, value)
SELECT 'tenancy: rows per table', count(*) || ' in 8 tenants, interleaved; '
	   || :rls_tenant_rows || ' of tenant_3; no index'
FROM bench.rls_plain
UNION ALL
SELECT 'tenancy: table size', pg_size_pretty(pg_table_size('bench.rls_plain'))
	   || ' each (bench.rls_isolated, bench.rls_plain)'
UNION ALL
SELECT 'tenancy: role of the RLS cases', 'bench_app: member of envault_user, '
	   || CASE WHEN r.rolsuper THEN 'SUPERUSER' ELSE 'not superuser' END || ', '
	   || CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' ELSE 'no BYPASSRLS' END
	   || ', owns ' || (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid)
	   || ' relations; envault.authenticate(token, true) as tenant_3'
FROM pg_roles r WHERE r.rolname = 'bench_app'
UNION ALL
SELECT 'tenancy: isolation_report', string_agg(table_name || ': isolated='
	   || isolated, ', ')
FROM envault.isolation_report() WHERE table_name::text LIKE 'bench.rls%'
UNION ALL
SELECT 'tenancy: plan, isolated', :'plan_rls'
UNION ALL
SELECT 'tenancy: plan, WHERE by hand', :'plan_plain'
UNION ALL
SELECT 'tenancy: tokens', count(*) || ' valid, in 8 tenants (envault.tokens holds '
	   || (SELECT count(*) FROM envault.tokens) || ')'
FROM bench.tokens;

-- Row-level security, as bench_app.
CALL bench.add_case('tenancy', 'count(*), every row (scan floor)', NULL,
	$q$SELECT count(*) FROM bench.rls_plain$q$, :large_rows, :reps,
	run_as => 'bench_app');
CALL bench.add_case('tenancy', 'WHERE tenant = constant', 'count(*), every row (scan floor)',
	$q$SELECT count(*) FROM bench.rls_plain WHERE tenant = 'tenant_3'$q$,
	:rls_tenant_rows, :reps, run_as => 'bench_app');
CALL bench.add_case('tenancy', 'WHERE tenant = (SELECT current_tenant())', 'WHERE tenant = constant',
	$q$SELECT count(*) FROM bench.rls_plain WHERE tenant = (SELECT envault.current_tenant())$q$,
	:rls_tenant_rows, :reps, run_as => 'bench_app');
CALL bench.add_case('tenancy', 'isolate_table (RLS), no WHERE', 'WHERE tenant = constant',
	$q$SELECT count(*) FROM bench.rls_isolated$q$,
	:rls_tenant_rows, :reps, run_as => 'bench_app');

-- Tokens, as the superuser (the hand-written case reads envault.tokens).
CALL bench.add_case('tenancy', 'count(tok), no function', NULL,
	$q$SELECT count(tok) FROM bench.tokens$q$, :tokens, :reps);
CALL bench.add_case('tenancy', 'hmac(tok) sha256, pgcrypto', 'count(tok), no function',
	$q$SELECT count(hmac(tok, 'bench key', 'sha256')) FROM bench.tokens$q$,
	:tokens, :reps);
CALL bench.add_case('tenancy', 'lookup + pepper_hmac, by hand', 'hmac(tok) sha256, pgcrypto',
	$q$SELECT count((SELECT k.tenant FROM envault.tokens k
		JOIN envault.tenants t ON t.tenant = k.tenant
		WHERE k.token_id = substr(x.tok, 5, 16)
		  AND k.token_hmac = envault.pepper_hmac(convert_to('envault/v1/token', 'UTF8')
				|| decode(substr(x.tok, 5, 16), 'hex') || decode(substr(x.tok, 22, 64), 'hex'))
		  AND NOT EXISTS (SELECT FROM envault.token_revocations r WHERE r.token_id = k.token_id) AND t.state = 'active'
		  AND (k.expires_at IS NULL OR k.expires_at > now())))
	FROM bench.tokens x$q$,
	:tokens, :reps);
CALL bench.add_case('tenancy', 'verify_token', 'lookup + pepper_hmac, by hand',
	$q$SELECT count(envault.verify_token(tok)) FROM bench.tokens$q$,
	:tokens, :reps);
CALL bench.add_case('tenancy', 'verify_token, first use (writes last_used_at)', 'verify_token',
	$q$SELECT count(envault.verify_token(tok)) FROM bench.fresh_tokens
	WHERE batch = (SELECT nextval('bench.fresh_batch'))$q$,
	:tokens, :slow_reps, false);

CALL bench.add_ratio('RLS / WHERE tenant = constant', 'isolate_table (RLS), no WHERE',
					 'WHERE tenant = constant', 'count(*), every row (scan floor)', 1.1);
CALL bench.add_ratio('RLS / WHERE tenant = (SELECT current_tenant())',
					 'isolate_table (RLS), no WHERE',
					 'WHERE tenant = (SELECT current_tenant())',
					 'count(*), every row (scan floor)');
CALL bench.add_ratio('verify_token / by hand in SQL', 'verify_token',
					 'lookup + pepper_hmac, by hand', 'count(tok), no function');
CALL bench.add_ratio('verify_token / pgcrypto hmac', 'verify_token',
					 'hmac(tok) sha256, pgcrypto', 'count(tok), no function');
CALL bench.add_ratio('verify_token first use / verify_token',
					 'verify_token, first use (writes last_used_at)', 'verify_token',
					 'count(tok), no function');

CALL bench.add_limit('verify_token, per call', 'verify_token', 'us per row', 5);

\echo '-- topic tenancy: running (progress on stderr)'
CALL bench.run('tenancy');

-- The session's tenant and the tables are not needed by later topics.
DO $$ BEGIN PERFORM envault.reset_tenant(); END $$;
DROP TABLE bench.rls_isolated, bench.rls_plain, bench.tokens, bench.fresh_tokens;
