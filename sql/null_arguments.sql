-- null_arguments: every SQL entry point of envault answers NULL arguments
-- with SQLSTATE 22004 (null_value_not_allowed) or with a NULL result that
-- is documented (STRICT functions, and arguments where NULL means "none"
-- or "all"), never with a misleading error.  Each function and procedure
-- with arguments is called with all of them NULL; trigger functions are
-- left out (they cannot be called).
SET search_path = public, envault;
CREATE FUNCTION regress_call_with_nulls(f regprocedure) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	p pg_catalog.pg_proc;
	args text;
	res text;
	st text;
	msg text;
BEGIN
	SELECT * INTO p FROM pg_catalog.pg_proc WHERE oid = f;
	SELECT string_agg(CASE WHEN t = 'anyelement'::regtype THEN 'NULL::integer'
						   ELSE 'NULL::' || format_type(t, NULL) END, ', ' ORDER BY i)
	  INTO args
	  FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i);
	BEGIN
		IF p.prokind = 'p' THEN
			EXECUTE format('CALL %s(%s)', f::oid::regproc, args);
			res := 'done';
		ELSIF p.proretset THEN
			EXECUTE format('SELECT count(*) FROM %s(%s)', f::oid::regproc, args) INTO res;
			res := res || ' rows';
		ELSE
			EXECUTE format('SELECT CASE WHEN x IS NULL THEN ''NULL'' ELSE ''a value'' END FROM %s(%s) x',
						   f::oid::regproc, args) INTO res;
		END IF;
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
		res := st || ': ' || msg;
	END;
	RETURN res;
END
$$;
SELECT p.oid::regprocedure AS routine, regress_call_with_nulls(p.oid) AS with_all_arguments_null
  FROM pg_proc p
 WHERE p.pronamespace = 'envault'::regnamespace
   AND p.pronargs > 0
   AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
 ORDER BY p.oid::regprocedure::text;
DROP FUNCTION regress_call_with_nulls(regprocedure);
