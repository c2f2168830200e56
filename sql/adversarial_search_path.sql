-- adversarial_search_path: roles without privileges of their own (an
-- application role, a member of envault_user, and a key administrator, a
-- member of envault_admin who is not a superuser) shadow the operators,
-- functions, aggregates, types and tables that SQL could pick up by name:
-- in a schema each controls, first on its search_path, and in pg_temp,
-- which is searched for relations and types before pg_catalog.  Then each
-- calls every envault function.  envault's SECURITY DEFINER functions pin
-- their search_path; its C functions, which read and write the key tables
-- as the owner of schema envault, and its procedures, which cannot pin it,
-- name everything with its schema.  So every function behaves exactly as it
-- does without the shadows, and no shadow is ever called: each records its
-- calls in a trace that stays empty.
\set SHOW_CONTEXT never
SELECT current_user AS regress_superuser \gset

-- 1. Every SECURITY DEFINER function in schema envault pins search_path to
-- exactly pg_catalog, pg_temp.  envault has none today (its C functions run
-- their SQL as the owner of schema envault instead); the check is there for
-- any added later, and shown to catch one.
CREATE FUNCTION regress_adv_unpinned() RETURNS TABLE (func regprocedure, config text[])
LANGUAGE sql STABLE AS $$
	SELECT p.oid::regprocedure, p.proconfig
	  FROM pg_proc p
	 WHERE p.pronamespace = 'envault'::regnamespace AND p.prosecdef
	   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
	 ORDER BY p.oid::regprocedure::text
$$;
SELECT count(*) > 0 AS has_security_definer_functions,
       (SELECT count(*) FROM regress_adv_unpinned()) AS not_pinned
  FROM pg_proc WHERE pronamespace = 'envault'::regnamespace AND prosecdef;
SELECT * FROM regress_adv_unpinned();
-- the check catches a function that pins nothing, or the wrong path
BEGIN;
CREATE FUNCTION envault.regress_adv_bad1() RETURNS int
  LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;
CREATE FUNCTION envault.regress_adv_bad2() RETURNS int
  LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_catalog AS $$ SELECT 1 $$;
CREATE FUNCTION envault.regress_adv_good() RETURNS int
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT 1 $$;
SELECT * FROM regress_adv_unpinned();
ROLLBACK;

-- 2. The attackers, their schemas, and the trace.  The trace is a table
-- (what, as which role) and a sequence, which no rollback can undo.
CREATE ROLE regress_adv_app LOGIN;
GRANT envault_user TO regress_adv_app;
CREATE ROLE regress_adv_keyadmin LOGIN;
GRANT envault_admin TO regress_adv_keyadmin;
-- the application's active keys are rotated once a day old
ALTER ROLE regress_adv_app SET envault.data_key_max_age = '1d';
CREATE SCHEMA regress_adv_shadow_app AUTHORIZATION regress_adv_app;
CREATE SCHEMA regress_adv_shadow_admin AUTHORIZATION regress_adv_keyadmin;
CREATE TABLE regress_adv_trace (what text, by_role name, session_role name);
CREATE SEQUENCE regress_adv_trace_calls;
GRANT INSERT ON regress_adv_trace TO PUBLIC;
GRANT USAGE ON SEQUENCE regress_adv_trace_calls TO PUBLIC;

-- The shadows, one row each: what it shadows, how it is created (%S is the
-- attacker's schema), and a statement that reaches it by its bare name.
CREATE TABLE regress_adv_shadows (what text PRIMARY KEY, ddl text, control text);
-- operators: (name, left type, right type, result type)
INSERT INTO regress_adv_shadows
SELECT format('%s(%s,%s)', o.op, o.l, o.r),
       format($d$CREATE FUNCTION %%S.shadow_op_%s(a pg_catalog.%s, b pg_catalog.%s) RETURNS pg_catalog.%s
                 LANGUAGE plpgsql AS $f$ BEGIN PERFORM %%S.shadow_called(%L);
                 RETURN a OPERATOR(pg_catalog.%s) b; END $f$;
                 CREATE OPERATOR %%S.%s (LEFTARG = pg_catalog.%s, RIGHTARG = pg_catalog.%s,
                                         FUNCTION = %%S.shadow_op_%s)$d$,
              o.n, o.l, o.r, o.res, format('%s(%s,%s)', o.op, o.l, o.r), o.op, o.op, o.l, o.r, o.n),
       format('SELECT NULL::pg_catalog.%s %s NULL::pg_catalog.%s', o.l, o.op, o.r)
  FROM (VALUES
    (1, '=', 'text', 'text', 'bool'), (2, '<>', 'text', 'text', 'bool'),
    (3, '<', 'text', 'text', 'bool'), (4, '<=', 'text', 'text', 'bool'),
    (5, '>', 'text', 'text', 'bool'), (6, '>=', 'text', 'text', 'bool'),
    (7, '~', 'text', 'text', 'bool'), (8, '!~', 'text', 'text', 'bool'),
    (9, '||', 'text', 'text', 'text'),
    (10, '=', 'bytea', 'bytea', 'bool'), (11, '<>', 'bytea', 'bytea', 'bool'),
    (12, '=', 'int8', 'int8', 'bool'), (13, '<>', 'int8', 'int8', 'bool'),
    (14, '<', 'int8', 'int8', 'bool'), (15, '>', 'int8', 'int8', 'bool'),
    (16, '+', 'int8', 'int8', 'int8'), (17, '-', 'int8', 'int8', 'int8'),
    (18, '=', 'int4', 'int4', 'bool'), (19, '<>', 'int4', 'int4', 'bool'),
    (20, '<', 'int4', 'int4', 'bool'), (21, '<=', 'int4', 'int4', 'bool'),
    (22, '>', 'int4', 'int4', 'bool'), (23, '>=', 'int4', 'int4', 'bool'),
    (24, '+', 'int4', 'int4', 'int4'), (25, '-', 'int4', 'int4', 'int4'),
    (26, '=', 'name', 'name', 'bool'), (27, '<>', 'name', 'name', 'bool'),
    (28, '=', 'oid', 'oid', 'bool'),
    (29, '<', 'timestamptz', 'timestamptz', 'bool'), (30, '<=', 'timestamptz', 'timestamptz', 'bool'),
    (31, '>=', 'timestamptz', 'timestamptz', 'bool'),
    (32, '-', 'timestamptz', 'timestamptz', 'interval'),
    (33, '-', 'timestamptz', 'interval', 'timestamptz'),
    (34, '>=', 'interval', 'interval', 'bool'),
    (35, '=', 'bool', 'bool', 'bool')) o(n, op, l, r, res);
-- functions: (name, arguments, result, body, call)
INSERT INTO regress_adv_shadows
SELECT format('%s(%s)', f.name, f.args),
       format($d$CREATE FUNCTION %%S.%s(%s) RETURNS %s
                 LANGUAGE plpgsql AS $f$ BEGIN PERFORM %%S.shadow_called(%L); RETURN %s; END $f$$d$,
              f.name, f.params, f.res, format('%s(%s)', f.name, f.args), f.body),
       'SELECT ' || f.call
  FROM (VALUES
    ('now', '', '', 'pg_catalog.timestamptz', 'pg_catalog.now()', 'now()'),
    ('clock_timestamp', '', '', 'pg_catalog.timestamptz', 'pg_catalog.clock_timestamp()', 'clock_timestamp()'),
    ('statement_timestamp', '', '', 'pg_catalog.timestamptz', 'pg_catalog.statement_timestamp()', 'statement_timestamp()'),
    ('make_interval', 'secs', 'secs pg_catalog.float8', 'pg_catalog.interval',
     'pg_catalog.make_interval(secs => secs)', 'make_interval(secs => 1)'),
    ('nextval', 'regclass', 'r pg_catalog.regclass', 'pg_catalog.int8', 'pg_catalog.nextval(r)',
     'nextval(''%S.shadow_seq'')'),
    ('octet_length', 'text', 't pg_catalog.text', 'pg_catalog.int4', 'pg_catalog.octet_length(t)',
     'octet_length(NULL::pg_catalog.text)'),
    ('octet_length', 'bytea', 't pg_catalog.bytea', 'pg_catalog.int4', 'pg_catalog.octet_length(t)',
     'octet_length(NULL::pg_catalog.bytea)'),
    ('length', 'text', 't pg_catalog.text', 'pg_catalog.int4', 'pg_catalog.length(t)',
     'length(NULL::pg_catalog.text)'),
    ('strpos', 'text,text', 'a pg_catalog.text, b pg_catalog.text', 'pg_catalog.int4',
     'pg_catalog.strpos(a, b)', 'strpos(NULL::pg_catalog.text, NULL::pg_catalog.text)'),
    ('replace', 'text,text,text', 'a pg_catalog.text, b pg_catalog.text, c pg_catalog.text', 'pg_catalog.text',
     'pg_catalog.replace(a, b, c)', 'replace(NULL::pg_catalog.text, NULL::pg_catalog.text, NULL::pg_catalog.text)'),
    ('string_to_array', 'text,text', 'a pg_catalog.text, b pg_catalog.text', 'pg_catalog.text[]',
     'pg_catalog.string_to_array(a, b)', 'string_to_array(NULL::pg_catalog.text, NULL::pg_catalog.text)'),
    ('quote_ident', 'text', 't pg_catalog.text', 'pg_catalog.text', 'pg_catalog.quote_ident(t)',
     'quote_ident(NULL::pg_catalog.text)'),
    ('quote_literal', 'text', 't pg_catalog.text', 'pg_catalog.text', 'pg_catalog.quote_literal(t)',
     'quote_literal(NULL::pg_catalog.text)'),
    ('quote_nullable', 'text', 't pg_catalog.text', 'pg_catalog.text', 'pg_catalog.quote_nullable(t)',
     'quote_nullable(NULL::pg_catalog.text)'),
    ('format', 'text', 't pg_catalog.text', 'pg_catalog.text', 'pg_catalog.format(t)',
     'format(NULL::pg_catalog.text)'),
    ('format_type', 'oid,int4', 'o pg_catalog.oid, m pg_catalog.int4', 'pg_catalog.text',
     'pg_catalog.format_type(o, m)', 'format_type(NULL::pg_catalog.oid, NULL::pg_catalog.int4)'),
    ('pg_get_expr', 'pg_node_tree,oid', 'e pg_catalog.pg_node_tree, r pg_catalog.oid', 'pg_catalog.text',
     'pg_catalog.pg_get_expr(e, r)', 'pg_get_expr(NULL, NULL::pg_catalog.oid)'),
    ('current_setting', 'text,bool', 'n pg_catalog.text, m pg_catalog.bool', 'pg_catalog.text',
     'pg_catalog.current_setting(n, m)', 'current_setting(NULL::pg_catalog.text, NULL::pg_catalog.bool)'),
    ('encode', 'bytea,text', 'b pg_catalog.bytea, f pg_catalog.text', 'pg_catalog.text',
     'pg_catalog.encode(b, f)', 'encode(NULL::pg_catalog.bytea, NULL::pg_catalog.text)'),
    ('int4send', 'int4', 'i pg_catalog.int4', 'pg_catalog.bytea', 'pg_catalog.int4send(i)',
     'int4send(NULL::pg_catalog.int4)'),
    ('set_config', 'text,text,bool', 'n pg_catalog.text, v pg_catalog.text, l pg_catalog.bool', 'pg_catalog.text',
     'pg_catalog.set_config(n, v, l)', 'set_config(''regress.adv'', ''x'', true)')
  ) f(name, args, params, res, body, call);
-- aggregates: (name, arguments, state type, next state, call)
INSERT INTO regress_adv_shadows
SELECT format('%s(%s)', a.name, a.args),
       format($d$CREATE FUNCTION %%S.shadow_agg_%s(s pg_catalog.%s%s) RETURNS pg_catalog.%s
                 LANGUAGE plpgsql AS $f$ BEGIN PERFORM %%S.shadow_called(%L); RETURN %s; END $f$;
                 CREATE AGGREGATE %%S.%s(%s) (SFUNC = %%S.shadow_agg_%s, STYPE = pg_catalog.%s%s)$d$,
              a.n, a.stype, a.params, a.stype, format('%s(%s)', a.name, a.args), a.step,
              a.name, a.aggargs, a.n, a.stype, coalesce(', INITCOND = ' || quote_literal(a.init), '')),
       a.call
  FROM (VALUES
    (1, 'max', 'int4', ', v pg_catalog.int4', 'pg_catalog.int4', 'int4',
     'CASE WHEN s IS NULL OR v OPERATOR(pg_catalog.>) s THEN v ELSE s END', NULL,
     'SELECT max(x) FROM (VALUES (1::pg_catalog.int4)) v(x)'),
    (2, 'max', 'int8', ', v pg_catalog.int8', 'pg_catalog.int8', 'int8',
     'CASE WHEN s IS NULL OR v OPERATOR(pg_catalog.>) s THEN v ELSE s END', NULL,
     'SELECT max(x) FROM (VALUES (1::pg_catalog.int8)) v(x)'),
    (3, 'count', '*', '', '*', 'int8', 's OPERATOR(pg_catalog.+) 1', '0',
     'SELECT count(*) FROM (VALUES (1)) v(x)'),
    (4, 'string_agg', 'text,text', ', v pg_catalog.text, d pg_catalog.text',
     'pg_catalog.text, pg_catalog.text', 'text',
     'CASE WHEN v IS NULL THEN s WHEN s IS NULL THEN v ELSE pg_catalog.concat(s, d, v) END', NULL,
     'SELECT string_agg(x, NULL::pg_catalog.text) FROM (VALUES (NULL::pg_catalog.text)) v(x)')
  ) a(n, name, args, params, aggargs, stype, step, init, call);
-- types: a domain of that name whose check is a call ("interval" is a
-- keyword: only the quoted name reaches the domain)
INSERT INTO regress_adv_shadows
SELECT 'type ' || t,
       format($d$CREATE DOMAIN %%S.%s AS pg_catalog.%s CHECK (%%S.shadow_called(%L))$d$, t, t, 'type ' || t),
       format('SELECT NULL::%I', t)
  FROM unnest('{text,bytea,name,regtype,regclass,interval,int8,int4,timestamptz,bool,oid,float8}'::text[]) t;
-- relations: a view of that name that calls when read (once, before it
-- reads any row), and whose writes call too; envault's tables, and the
-- catalogs its SQL reads
INSERT INTO regress_adv_shadows
SELECT 'table ' || r.name,
       format($d$CREATE VIEW %%S.%s AS SELECT %s WHERE (SELECT %%S.shadow_called(%L));
                 CREATE TRIGGER shadow_write INSTEAD OF INSERT OR UPDATE OR DELETE ON %%S.%s
                   FOR EACH ROW EXECUTE FUNCTION %%S.shadow_write()$d$,
              r.name, r.cols, 'table ' || r.name, r.name),
       format('SELECT 1 FROM %%S.%s', r.name)
  FROM (VALUES
    ('tenants', 'NULL::pg_catalog.text AS tenant, NULL::pg_catalog.text AS state, NULL::pg_catalog.int4 AS key_version,
                 NULL::pg_catalog.text AS key_source, NULL::pg_catalog.bytea AS wrapped_key,
                 NULL::pg_catalog.bytea AS master_kcv, NULL::pg_catalog.bytea AS customer_kcv,
                 NULL::pg_catalog.timestamptz AS created_at, NULL::pg_catalog.name AS created_by,
                 NULL::pg_catalog.timestamptz AS state_changed_at'),
    ('data_keys', 'NULL::pg_catalog.int8 AS key_id, NULL::pg_catalog.text AS tenant, NULL::pg_catalog.text AS purpose,
                   NULL::pg_catalog.int4 AS version, NULL::pg_catalog.text AS state,
                   NULL::pg_catalog.bytea AS wrapped_key, NULL::pg_catalog.int4 AS tenant_key_version,
                   NULL::pg_catalog.timestamptz AS created_at, NULL::pg_catalog.name AS created_by,
                   NULL::pg_catalog.timestamptz AS state_changed_at'),
    ('tokens', 'NULL::pg_catalog.text AS token_id, NULL::pg_catalog.text AS tenant, NULL::pg_catalog.bytea AS token_hmac,
                NULL::pg_catalog.text AS pepper_version, NULL::pg_catalog.text AS label,
                NULL::pg_catalog.name AS created_by, NULL::pg_catalog.timestamptz AS created_at,
                NULL::pg_catalog.timestamptz AS expires_at, NULL::pg_catalog.timestamptz AS last_used_at,
                NULL::pg_catalog.timestamptz AS revoked_at'),
    ('token_revocations', 'NULL::pg_catalog.text AS token_id, NULL::pg_catalog.timestamptz AS revoked_at,
                NULL::pg_catalog.name AS revoked_by'),
    ('key_events', 'NULL::pg_catalog.int8 AS event_id, NULL::pg_catalog.timestamptz AS at, NULL::pg_catalog.name AS actor,
                    NULL::pg_catalog.text AS operation, NULL::pg_catalog.text AS tenant,
                    NULL::pg_catalog.text AS purpose, NULL::pg_catalog.int4 AS version,
                    NULL::pg_catalog.text AS detail'),
    ('pg_class', '*'), ('pg_namespace', '*'), ('pg_index', '*'),
    ('pg_attribute', 'attrelid, attname, atttypid, atttypmod, attnum, attisdropped'),
    ('pg_policy', '*'), ('pg_roles', '*'), ('pg_proc', '*')) r(name, cols);
UPDATE regress_adv_shadows
   SET ddl = regexp_replace(ddl, ' WHERE ', format(' FROM pg_catalog.%s WHERE ', substr(what, 7)))
 WHERE what ~ '^table pg_';
SELECT count(*) AS shadows FROM regress_adv_shadows;

-- Creates the shadows in schema sch, as the current role.  Each shadow
-- calls shadow_called(what), which records the call (and warns), then does
-- what the shadowed object does.
CREATE FUNCTION regress_adv_make_shadows(sch text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	s record;
	n bigint := 0;
BEGIN
	EXECUTE replace($d$
		CREATE FUNCTION %S.shadow_called(what pg_catalog.text) RETURNS pg_catalog.bool
		LANGUAGE plpgsql AS $f$
		BEGIN
			PERFORM pg_catalog.nextval('public.regress_adv_trace_calls');
			INSERT INTO public.regress_adv_trace VALUES (what, CURRENT_USER, SESSION_USER);
			RAISE WARNING 'shadow % called as %', what, CURRENT_USER;
			RETURN true;
		END $f$;
		CREATE FUNCTION %S.shadow_write() RETURNS trigger
		LANGUAGE plpgsql AS $f$
		BEGIN
			PERFORM %S.shadow_called(pg_catalog.concat('write to ', TG_TABLE_NAME));
			RETURN NULL;
		END $f$;
		CREATE SEQUENCE %S.shadow_seq$d$, '%S', sch);
	FOR s IN SELECT * FROM public.regress_adv_shadows ORDER BY what COLLATE "C" LOOP
		EXECUTE replace(s.ddl, '%S', sch);
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
-- The same relations and types in pg_temp, recording themselves as "temp
-- table ..." and "temp type ...": any role may create them, and pg_temp is
-- searched for relations and types first, even before pg_catalog, unless
-- the search_path names it.
CREATE FUNCTION regress_adv_make_temp_shadows(sch text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	s record;
	n bigint := 0;
BEGIN
	FOR s IN SELECT * FROM public.regress_adv_shadows
			  WHERE what LIKE 'table %' OR what LIKE 'type %' ORDER BY what COLLATE "C" LOOP
		EXECUTE replace(replace(replace(replace(replace(replace(s.ddl,
					'CREATE VIEW %S.', 'CREATE VIEW pg_temp.'),
					'CREATE DOMAIN %S.', 'CREATE DOMAIN pg_temp.'),
					' ON %S.', ' ON pg_temp.'), '%S', sch),
					'''table ', '''temp table '), '''type ', '''temp type ');
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

-- 3. The workload: every envault function, as the key administrator
-- ("admin", and "admin2" after the application), and as the application
-- ("app"), on tenant %T (and %T-app), with tables suffixed %M.  Each
-- statement names everything it uses by schema, so that only envault can
-- reach a shadow.
CREATE TABLE regress_adv_workload (who text, step int, stmt text, PRIMARY KEY (who, step));
INSERT INTO regress_adv_workload VALUES
('admin', 1, $q$SELECT envault.create_tenant('%T')$q$),
('admin', 2, $q$SELECT envault.create_tenant('%T-app')$q$),
('admin', 3, $q$SELECT envault.create_tenant('%T')$q$),
('admin', 4, $q$SELECT envault.create_data_key('%T', 'secrets')$q$),
('admin', 5, $q$SELECT envault.create_data_key('%T', 'secrets')$q$),
('admin', 6, $q$SELECT envault.env_decrypt_text(envault.env_encrypt('%T', 'secrets', 'admin text', 'row 1'), 'row 1')$q$),
('admin', 7, $q$SELECT envault.env_decrypt_text(envault.env_encrypt('%T', 'secrets', 'admin text', 'row 1'), 'row 2')$q$),
('admin', 8, $q$SELECT pg_catalog.encode(envault.env_decrypt(envault.env_encrypt('%T', 'files', '\x00ff'::pg_catalog.bytea)), 'hex')$q$),
('admin', 9, $q$SELECT envault.env_decrypt_text(envault.env_encrypt('%T', 'files', '\xff'::pg_catalog.bytea))$q$),
('admin', 10, $q$INSERT INTO public.regress_adv_vals SELECT '%T', envault.env_encrypt('%T', 'secrets', 'kept under v1') RETURNING tenant$q$),
('admin', 11, $q$SELECT envault.env_is_current(v.c) FROM public.regress_adv_vals v WHERE v.tenant OPERATOR(pg_catalog.=) '%T'$q$),
('admin', 12, $q$SELECT envault.rotate_data_key('%T', 'secrets')$q$),
('admin', 13, $q$SELECT envault.env_is_current(v.c) FROM public.regress_adv_vals v WHERE v.tenant OPERATOR(pg_catalog.=) '%T'$q$),
('admin', 14, $q$SELECT envault.env_decrypt_text(envault.env_reencrypt(v.c)) FROM public.regress_adv_vals v WHERE v.tenant OPERATOR(pg_catalog.=) '%T'$q$),
('admin', 15, $q$SELECT envault.env_is_current(envault.env_reencrypt(v.c)) FROM public.regress_adv_vals v WHERE v.tenant OPERATOR(pg_catalog.=) '%T'$q$),
('admin', 16, $q$SELECT envault.rotate_tenant_key('%T')$q$),
('admin', 17, $q$SELECT envault.env_decrypt_text(v.c) FROM public.regress_adv_vals v WHERE v.tenant OPERATOR(pg_catalog.=) '%T'$q$),
('admin', 18, $q$SELECT envault.retire_data_key('%T', 'secrets', 1)$q$),
('admin', 19, $q$SELECT envault.env_decrypt_text(v.c) FROM public.regress_adv_vals v WHERE v.tenant OPERATOR(pg_catalog.=) '%T'$q$),
('admin', 20, $q$SELECT envault.restore_data_key('%T', 'secrets', 1)$q$),
('admin', 21, $q$SELECT envault.env_decrypt_text(v.c) FROM public.regress_adv_vals v WHERE v.tenant OPERATOR(pg_catalog.=) '%T'$q$),
('admin', 22, $q$SELECT envault.destroy_data_key('%T', 'secrets', 1)$q$),
('admin', 23, $q$SELECT envault.env_decrypt_text(v.c) FROM public.regress_adv_vals v WHERE v.tenant OPERATOR(pg_catalog.=) '%T'$q$),
('admin', 24, $q$SELECT envault.blind_index('%T', 'email', 'a@example.com') OPERATOR(pg_catalog.=) envault.blind_index('%T', 'email', 'a@example.com')$q$),
('admin', 25, $q$SELECT envault.blind_index('%T', 'email', 'a@example.com') OPERATOR(pg_catalog.=) envault.blind_index('%T', 'email', 'b@example.com')$q$),
('admin', 26, $q$SELECT pg_catalog.encode(envault.pepper_hmac('abc'), 'hex')$q$),
('admin', 27, $q$SELECT envault.verify_token(envault.issue_token('%T', 'admin token'))$q$),
('admin', 28, $q$INSERT INTO public.regress_adv_tokens SELECT '%T-app', envault.issue_token('%T-app', 'app token') RETURNING tenant$q$),
('admin', 29, $q$SELECT envault.revoke_token('0123456789abcdef')$q$),
('admin', 30, $q$SELECT envault.revoke_tenant_tokens('%T')$q$),
('admin', 31, $q$SELECT envault.revoke_token(k.token_id) FROM envault.tokens k WHERE k.tenant OPERATOR(pg_catalog.=) '%T'$q$),
('admin', 32, $q$SELECT envault.set_tenant('%T')$q$),
('admin', 33, $q$SELECT envault.current_tenant()$q$),
('admin', 34, $q$SELECT envault.reset_tenant()$q$),
('admin', 35, $q$SELECT envault.current_tenant()$q$),
('admin', 36, $q$SELECT envault.isolate_table('public.regress_adv_rls_%M', 'tenant')$q$),
('admin', 37, $q$SELECT envault.isolate_table('public.regress_adv_rls_%M', 'tenant')$q$),
('admin', 38, $q$SELECT pg_catalog.concat_ws(' ', r.tenant_column, r.rls_enabled, r.rls_forced, r.policies, r.isolated) FROM envault.isolation_report() r WHERE r.table_name OPERATOR(pg_catalog.=) 'public.regress_adv_rls_%M'::pg_catalog.regclass$q$),
('admin', 39, $q$SELECT envault.revoke_tenant('%T')$q$),
('admin', 40, $q$SELECT envault.env_encrypt('%T', 'secrets', 'x')$q$),
('admin', 41, $q$SELECT envault.restore_tenant('%T')$q$),
('admin', 42, $q$SELECT envault.env_encrypt('%T', 'secrets', 'x') IS NOT NULL$q$),
('admin', 43, $q$SELECT pg_catalog.concat_ws(' ', m.master_key, m.check_value) FROM envault.master_key_status() m$q$),
('admin', 44, $q$SELECT envault.rewrap_tenant_keys()$q$),
('admin', 45, $q$SELECT envault.use_customer_key('%T')$q$),
('admin', 46, $q$SELECT envault.use_master_key('%T')$q$),
('admin', 47, $q$SELECT envault.create_data_key('%T-app', 'aged')$q$),
('admin', 48, $q$INSERT INTO public.regress_adv_docs_%M (id, body) SELECT g, envault.env_encrypt('%T', 'docs', pg_catalog.concat('doc ', g), pg_catalog.int4send(g)) FROM pg_catalog.generate_series(1, 5) g RETURNING id$q$),
('admin', 49, $q$SELECT envault.rotate_data_key('%T', 'docs')$q$),
('admin', 50, $q$SELECT envault.enable_audit_chain('public.regress_adv_chain_%M', 'tenant')$q$),
('admin', 51, $q$INSERT INTO public.regress_adv_chain_%M (tenant, what) SELECT '%T', pg_catalog.concat('event ', g) FROM pg_catalog.generate_series(1, 3) g RETURNING envault_seq$q$),
('admin', 52, $q$SELECT pg_catalog.count(*) FROM envault.checkpoint('public.regress_adv_chain_%M')$q$),
('admin', 53, $q$SELECT pg_catalog.concat_ws(' ', v.tenant, v.rows_checked, v.ok, v.first_bad_seq, v.reason) FROM envault.verify_chain('public.regress_adv_chain_%M') v$q$),
('admin', 54, $q$SELECT pg_catalog.json_array_length(envault.export_chain('public.regress_adv_chain_%M', '%T') OPERATOR(pg_catalog.->) 'rows')$q$),
('admin', 55, $q$SELECT envault.signing_public_key()$q$),
('admin', 56, $q$SELECT envault.set_chain_retention('public.regress_adv_chain_%M', '1 day')$q$),
('admin', 57, $q$SELECT envault.purge_chain('public.regress_adv_chain_%M', '%T', pg_catalog.now())$q$),
('admin', 58, $q$SELECT envault.put_secret('%T', 'llm', 'sk-live-0123456789abcd')$q$),
('admin', 59, $q$SELECT envault.put_secret('%T-app', 'shared', 'webhook-secret-wxyz')$q$),
('admin', 60, $q$SELECT envault.get_secret('%T', 'llm')$q$),
('admin', 61, $q$SELECT envault.record_verification('%T', 'llm', 'valid')$q$),
('admin', 62, $q$SELECT pg_catalog.string_agg(pg_catalog.concat_ws(' ', s.tenant, s.name, s.preview, s.verify_status), ', ' ORDER BY s.tenant COLLATE pg_catalog."C") FROM envault.list_secrets() s WHERE s.tenant OPERATOR(pg_catalog.~~) '%T%'$q$),
('admin', 63, $q$SELECT envault.flush_access_log()$q$),
('admin', 64, $q$SELECT pg_catalog.sum(a.count) FROM envault.access_log a WHERE a.tenant OPERATOR(pg_catalog.=) '%T' AND a.secret_name OPERATOR(pg_catalog.=) 'llm'$q$),
('admin', 65, $q$SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 FROM envault.access_log_status()$q$),
('admin', 66, $q$SELECT envault.env_decrypt_text_compat(public.pgp_sym_encrypt('legacy value', 'legacy key'), 'legacy key')$q$),
('admin', 67, $q$SELECT envault.env_decrypt_text_compat(envault.env_encrypt('%T', 'secrets', 'new value'), 'legacy key')$q$),
('admin', 68, $q$INSERT INTO public.regress_adv_mig_%M (id, tenant, card) SELECT pg_catalog.concat('k', g), '%T-app', public.pgp_sym_encrypt(pg_catalog.concat('card ', g), 'legacy key') FROM pg_catalog.generate_series(1, 3) g RETURNING id$q$),
('app', 1, $q$SELECT envault.authenticate(k.token, true) FROM public.regress_adv_tokens k WHERE k.tenant OPERATOR(pg_catalog.=) '%T-app'$q$),
('app', 2, $q$SELECT envault.current_tenant()$q$),
('app', 3, $q$SELECT envault.verify_token(k.token) FROM public.regress_adv_tokens k WHERE k.tenant OPERATOR(pg_catalog.=) '%T-app'$q$),
('app', 4, $q$SELECT envault.env_decrypt_text(envault.env_encrypt('%T-app', 'secrets', 'from the app', 'row 7'), 'row 7')$q$),
('app', 5, $q$SELECT envault.env_encrypt('%T', 'secrets', 'x')$q$),
('app', 6, $q$SELECT envault.env_decrypt_text(v.c) FROM public.regress_adv_vals v WHERE v.tenant OPERATOR(pg_catalog.=) '%T'$q$),
('app', 7, $q$SELECT envault.env_decrypt_text(envault.env_encrypt('%T-app', 'aged', 'under an aged key'))$q$),
('app', 8, $q$SELECT envault.env_is_current(envault.env_encrypt('%T-app', 'secrets', 'x'))$q$),
('app', 9, $q$SELECT envault.env_decrypt_text(envault.env_reencrypt(envault.env_encrypt('%T-app', 'secrets', 'reencrypted')))$q$),
('app', 10, $q$SELECT envault.blind_index('%T-app', 'email', 'x') OPERATOR(pg_catalog.=) envault.blind_index('%T-app', 'email', 'x')$q$),
('app', 11, $q$SELECT pg_catalog.encode(envault.pepper_hmac('abc'), 'hex')$q$),
('app', 12, $q$SELECT envault.create_tenant('%T-evil')$q$),
('app', 13, $q$SELECT t.tenant FROM envault.tenants t$q$),
('app', 14, $q$SELECT envault.reset_tenant()$q$),
('app', 15, $q$SELECT envault.env_encrypt('%T-app', 'secrets', 'x')$q$),
('app', 16, $q$SELECT envault.authenticate('evt_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000_00000000')$q$),
('app', 17, $q$SELECT envault.authenticate(k.token, true) FROM public.regress_adv_tokens k WHERE k.tenant OPERATOR(pg_catalog.=) '%T-app'$q$),
('app', 18, $q$SELECT envault.get_secret('%T-app', 'shared')$q$),
('app', 19, $q$SELECT pg_catalog.string_agg(pg_catalog.concat_ws(' ', s.tenant, s.name, s.preview), ', ') FROM envault.list_secrets() s$q$),
('app', 20, $q$SELECT envault.get_secret('%T', 'llm')$q$),
('app', 21, $q$SELECT envault.put_secret('%T', 'planted', 'from the app, for another tenant')$q$),
('app', 22, $q$WITH i AS (INSERT INTO public.regress_adv_chain_%M (tenant, what) VALUES ('%T-app', 'from the app') RETURNING 1) SELECT pg_catalog.count(*) FROM i$q$),
('app', 23, $q$SELECT pg_catalog.count(*) FROM envault.verify_chain('public.regress_adv_chain_%M')$q$),
('app', 24, $q$SELECT envault.flush_access_log()$q$),
('admin2', 1, $q$SELECT pg_catalog.string_agg(pg_catalog.concat_ws(' ', d.purpose, d.version, d.state, d.created_by), ', ' ORDER BY d.purpose COLLATE pg_catalog."C", d.version) FROM envault.data_keys d WHERE d.tenant OPERATOR(pg_catalog.=) '%T-app'$q$),
('admin2', 2, $q$SELECT pg_catalog.string_agg(k.operation, ', ' ORDER BY k.event_id) FROM envault.key_events k WHERE k.tenant OPERATOR(pg_catalog.=) '%T'$q$),
('admin2', 3, $q$SELECT pg_catalog.count(*) FROM public.regress_adv_docs_%M d WHERE envault.env_is_current(d.body) AND envault.env_decrypt_text(d.body, d.aad) OPERATOR(pg_catalog.=) pg_catalog.concat('doc ', d.id)$q$),
('admin2', 4, $q$SELECT envault.destroy_tenant('%T')$q$),
('admin2', 5, $q$SELECT envault.env_decrypt_text(v.c) FROM public.regress_adv_vals v WHERE v.tenant OPERATOR(pg_catalog.=) '%T'$q$),
('admin2', 6, $q$SELECT envault.destroy_tenant('%T')$q$),
('admin2', 7, $q$SELECT envault.restore_tenant('%T')$q$),
('admin2', 8, $q$SELECT pg_catalog.string_agg(pg_catalog.concat_ws(' ', m.id, envault.env_decrypt_text(m.card)), ', ' ORDER BY m.id COLLATE pg_catalog."C") FROM public.regress_adv_mig_%M m$q$),
('admin2', 9, $q$SELECT pg_catalog.string_agg(pg_catalog.concat_ws(' ', v.tenant, v.rows_checked, v.ok), ', ' ORDER BY v.tenant COLLATE pg_catalog."C") FROM envault.verify_chain('public.regress_adv_chain_%M') v$q$),
('admin2', 10, $q$SELECT pg_catalog.sum(a.count) FROM envault.access_log a WHERE a.tenant OPERATOR(pg_catalog.=) '%T-app' AND a.secret_name OPERATOR(pg_catalog.=) 'shared'$q$),
('admin2', 11, $q$SELECT envault.delete_secret('%T-app', 'shared')$q$),
('admin2', 12, $q$SELECT pg_catalog.string_agg(pg_catalog.concat_ws(' ', c.tenant, c.seq), ', ' ORDER BY c.tenant COLLATE pg_catalog."C") FROM envault.checkpoint('public.regress_adv_chain_%M') c$q$),
('admin2', 13, $q$SELECT envault.disable_audit_chain('public.regress_adv_chain_%M')$q$);
-- and, to show that every shadow is live, a statement that reaches it by
-- its bare name: through the attacker's schema, and through pg_temp
INSERT INTO regress_adv_workload
SELECT 'control', row_number() OVER (ORDER BY what COLLATE "C"), control FROM regress_adv_shadows;
INSERT INTO regress_adv_workload
SELECT 'control-temp', row_number() OVER (ORDER BY what COLLATE "C"),
       CASE WHEN what LIKE 'table %' THEN format('SELECT 1 FROM %I', substr(what, 7))
            ELSE format('SELECT NULL::%I', substr(what, 6)) END
  FROM regress_adv_shadows WHERE what LIKE 'table %' OR what LIKE 'type %';

-- Runs the workload of who, in mode, for tenant and schema sch, recording
-- each outcome with the names of this mode replaced by %T, %M and %S.  It
-- names everything by schema too: it runs under the attackers' search_path.
CREATE TABLE regress_adv_results (mode text, who text, step int, stmt text, outcome text);
GRANT SELECT ON regress_adv_shadows, regress_adv_workload TO PUBLIC;
GRANT INSERT ON regress_adv_results TO PUBLIC;
CREATE FUNCTION regress_adv_run(mode pg_catalog.text, who pg_catalog.text,
                                tenant pg_catalog.text, sch pg_catalog.text)
RETURNS pg_catalog.int8
LANGUAGE plpgsql AS $$
DECLARE
	w record;
	stmt pg_catalog.text;
	r pg_catalog.text;
	outcome pg_catalog.text;
	st pg_catalog.text;
	msg pg_catalog.text;
	n pg_catalog.int8 := 0;
BEGIN
	FOR w IN SELECT x.step, x.stmt FROM public.regress_adv_workload x
			  WHERE x.who OPERATOR(pg_catalog.=) regress_adv_run.who ORDER BY x.step LOOP
		stmt := pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(w.stmt,
					'%T', tenant), '%M', mode), '%S', sch);
		BEGIN
			EXECUTE stmt INTO r;
			outcome := pg_catalog.concat('returned ', pg_catalog.quote_nullable(r));
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
			outcome := pg_catalog.concat(st, ': ', msg);
		END;
		outcome := pg_catalog.replace(pg_catalog.replace(outcome, tenant, '%T'), mode, '%M');
		INSERT INTO public.regress_adv_results VALUES (mode, who, w.step, w.stmt, outcome);
		n := n OPERATOR(pg_catalog.+) 1;
	END LOOP;
	RETURN n;
END
$$;

-- What the workload reads and writes besides envault
CREATE TABLE regress_adv_vals (tenant text, c bytea);
CREATE TABLE regress_adv_tokens (tenant text, token text);
GRANT SELECT, INSERT ON regress_adv_vals, regress_adv_tokens TO regress_adv_keyadmin, regress_adv_app;
CREATE TABLE regress_adv_rls_plain (tenant text, v int);
CREATE TABLE regress_adv_rls_shadowed (tenant text, v int);
CREATE TABLE regress_adv_docs_plain (id int PRIMARY KEY, body bytea,
                                     aad bytea GENERATED ALWAYS AS (int4send(id)) STORED);
CREATE TABLE regress_adv_docs_shadowed (id int PRIMARY KEY, body bytea,
                                        aad bytea GENERATED ALWAYS AS (int4send(id)) STORED);
ALTER TABLE regress_adv_rls_plain OWNER TO regress_adv_keyadmin;
ALTER TABLE regress_adv_rls_shadowed OWNER TO regress_adv_keyadmin;
ALTER TABLE regress_adv_docs_plain OWNER TO regress_adv_keyadmin;
ALTER TABLE regress_adv_docs_shadowed OWNER TO regress_adv_keyadmin;
-- an audit chain, and a column to migrate from pgcrypto whose key is text
-- (a type that has a shadow)
CREATE TABLE regress_adv_chain_plain (tenant text, what text);
CREATE TABLE regress_adv_chain_shadowed (tenant text, what text);
ALTER TABLE regress_adv_chain_plain OWNER TO regress_adv_keyadmin;
ALTER TABLE regress_adv_chain_shadowed OWNER TO regress_adv_keyadmin;
GRANT INSERT ON regress_adv_chain_plain, regress_adv_chain_shadowed TO regress_adv_app;
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA public;
RESET client_min_messages;
CREATE TABLE regress_adv_mig_plain (id text PRIMARY KEY, tenant text, card bytea);
CREATE TABLE regress_adv_mig_shadowed (id text PRIMARY KEY, tenant text, card bytea);
ALTER TABLE regress_adv_mig_plain OWNER TO regress_adv_keyadmin;
ALTER TABLE regress_adv_mig_shadowed OWNER TO regress_adv_keyadmin;

-- 4. The shadows, created by each attacker, and proof that they are live:
-- each is reached by its bare name under the attacker's search_path, and
-- those in pg_temp even under the default search_path.
\c - regress_adv_keyadmin
SELECT regress_adv_make_shadows('regress_adv_shadow_admin') AS shadows;
SET search_path = regress_adv_shadow_admin, public, pg_catalog;
SET client_min_messages = error;
SELECT regress_adv_run('control', 'control', 'none', 'regress_adv_shadow_admin') AS reached;
RESET search_path;
SELECT regress_adv_make_temp_shadows('regress_adv_shadow_admin') AS temp_shadows;
SELECT regress_adv_run('control', 'control-temp', 'none', 'regress_adv_shadow_admin') AS reached;
RESET client_min_messages;
\c - regress_adv_app
SELECT regress_adv_make_shadows('regress_adv_shadow_app') AS shadows;
SET search_path = regress_adv_shadow_app, public, pg_catalog;
SET client_min_messages = error;
SELECT regress_adv_run('control', 'control', 'none', 'regress_adv_shadow_app') AS reached;
RESET search_path;
SELECT regress_adv_make_temp_shadows('regress_adv_shadow_app') AS temp_shadows;
SELECT regress_adv_run('control', 'control-temp', 'none', 'regress_adv_shadow_app') AS reached;
RESET client_min_messages;
\c - :regress_superuser
-- every shadow was called, by each attacker, as that attacker
SELECT e.what,
       count(*) FILTER (WHERE t.by_role = 'regress_adv_keyadmin') > 0 AS by_admin,
       count(*) FILTER (WHERE t.by_role = 'regress_adv_app') > 0 AS by_app
  FROM (SELECT what FROM regress_adv_shadows
        UNION ALL
        SELECT 'temp ' || what FROM regress_adv_shadows
         WHERE what LIKE 'table %' OR what LIKE 'type %') e
  LEFT JOIN regress_adv_trace t ON t.what = e.what
 GROUP BY e.what ORDER BY e.what COLLATE "C";
SELECT count(*) > 0 AS trace_table, (SELECT is_called FROM regress_adv_trace_calls) AS trace_sequence
  FROM regress_adv_trace;
TRUNCATE regress_adv_trace;
SELECT setval('regress_adv_trace_calls', 1, false);
DELETE FROM regress_adv_results WHERE mode = 'control';

-- 5. The workload without shadows ("plain": the default search_path) ...
\set mode plain
\set tenant adv-sp-plain
\c - regress_adv_keyadmin
SELECT regress_adv_run(:'mode', 'admin', :'tenant', 'none') AS steps;
CALL envault.reencrypt_column('public.regress_adv_docs_plain', 'body', 'aad', 2);
CALL envault.migrate_pgcrypto_column('public.regress_adv_mig_plain', 'card', 'tenant', 'cards', 'legacy key', batch_size => 2);
CALL envault.rotate_master_key();
\c - :regress_superuser
UPDATE envault.data_keys SET created_at = created_at - interval '2 days'
 WHERE tenant = :'tenant' || '-app' AND purpose = 'aged';
\c - regress_adv_app
SELECT regress_adv_run(:'mode', 'app', :'tenant', 'none') AS steps;
\c - regress_adv_keyadmin
SELECT regress_adv_run(:'mode', 'admin2', :'tenant', 'none') AS steps;

-- ... and with every shadow first on each attacker's search_path
\set mode shadowed
\set tenant adv-sp-shadowed
\c - regress_adv_keyadmin
SELECT regress_adv_make_temp_shadows('regress_adv_shadow_admin') AS temp_shadows;
SET search_path = regress_adv_shadow_admin, public, pg_catalog;
SELECT regress_adv_run(:'mode', 'admin', :'tenant', 'regress_adv_shadow_admin') AS steps;
CALL envault.reencrypt_column('public.regress_adv_docs_shadowed', 'body', 'aad', 2);
CALL envault.migrate_pgcrypto_column('public.regress_adv_mig_shadowed', 'card', 'tenant', 'cards', 'legacy key', batch_size => 2);
CALL envault.rotate_master_key();
\c - :regress_superuser
UPDATE envault.data_keys SET created_at = created_at - interval '2 days'
 WHERE tenant = :'tenant' || '-app' AND purpose = 'aged';
\c - regress_adv_app
SELECT regress_adv_make_temp_shadows('regress_adv_shadow_app') AS temp_shadows;
SET search_path = regress_adv_shadow_app, public, pg_catalog;
SELECT regress_adv_run(:'mode', 'app', :'tenant', 'regress_adv_shadow_app') AS steps;
\c - regress_adv_keyadmin
SELECT regress_adv_make_temp_shadows('regress_adv_shadow_admin') AS temp_shadows;
SET search_path = regress_adv_shadow_admin, public, pg_catalog;
SELECT regress_adv_run(:'mode', 'admin2', :'tenant', 'regress_adv_shadow_admin') AS steps;
RESET search_path;
\c - :regress_superuser

-- 6. Every outcome, the same in both modes; and no shadow was ever called
SELECT s.who, s.step, s.stmt, s.outcome
  FROM regress_adv_results s
 WHERE s.mode = 'shadowed'
 ORDER BY s.who = 'admin2', s.who = 'app', s.step;
SELECT mode, count(*) AS outcomes FROM regress_adv_results GROUP BY 1 ORDER BY 1;
SELECT count(*) FILTER (WHERE p.outcome IS NOT DISTINCT FROM s.outcome) AS same,
       count(*) FILTER (WHERE p.outcome IS DISTINCT FROM s.outcome) AS different
  FROM regress_adv_results p JOIN regress_adv_results s USING (who, step)
 WHERE p.mode = 'plain' AND s.mode = 'shadowed';
SELECT p.who, p.step, p.outcome AS plain, s.outcome AS shadowed
  FROM regress_adv_results p JOIN regress_adv_results s USING (who, step)
 WHERE p.mode = 'plain' AND s.mode = 'shadowed' AND p.outcome IS DISTINCT FROM s.outcome;
SELECT what, by_role, count(*) AS calls FROM regress_adv_trace GROUP BY 1, 2 ORDER BY what COLLATE "C", by_role;
SELECT is_called AS any_shadow_called FROM regress_adv_trace_calls;

SET client_min_messages = warning;
DROP SCHEMA regress_adv_shadow_app, regress_adv_shadow_admin CASCADE;
RESET client_min_messages;
DROP TABLE regress_adv_trace, regress_adv_shadows, regress_adv_workload, regress_adv_results,
	regress_adv_vals, regress_adv_tokens, regress_adv_rls_plain, regress_adv_rls_shadowed,
	regress_adv_docs_plain, regress_adv_docs_shadowed, regress_adv_chain_plain,
	regress_adv_chain_shadowed, regress_adv_mig_plain, regress_adv_mig_shadowed;
DROP SEQUENCE regress_adv_trace_calls;
DROP FUNCTION regress_adv_unpinned(), regress_adv_make_shadows(text),
	regress_adv_make_temp_shadows(text), regress_adv_run(text, text, text, text);
DROP ROLE regress_adv_app, regress_adv_keyadmin;
