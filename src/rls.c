/*-------------------------------------------------------------------------
 *
 * rls.c
 *		Row-level security on the current tenant: the expression of the
 *		policy envault.isolate_table creates, and the check that a table's
 *		policy is that expression.
 *
 * Row-level security on the current tenant (envault.isolate_table) is
 * judged by the definition of its policy, never by its name: see
 * envault_policy_isolates().  The current tenant itself is tenant.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "rls.h"

#include "scaleout.h"
#include "tenant.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_policy.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "nodes/nodes.h"
#include "parser/parse_clause.h"
#include "parser/parse_collate.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"
#include "utils/uuid.h"

static char *rls_columns_setting = NULL;

#define RLS_POLICY_NAME "envault_tenant_isolation"

/*
 * Is the tenant's name the canonical text of an integer in [min, max]?
 * Only then does it name one: "007", "+7", " 7" and "7.0" name no integer
 * tenant, so that no two tenant names map to one value.
 */
static bool
rls_parse_integer(const char *s, int64 min, int64 max, int64 *out)
{
	const char *p = s;
	bool		neg = (*p == '-');
	uint64		v = 0;
	uint64		limit = neg ? (uint64) (-(min + 1)) + 1 : (uint64) max;

	if (neg)
		p++;
	if (*p < '0' || *p > '9' || (*p == '0' && (p[1] != '\0' || neg)))
		return false;
	for (; *p; p++)
	{
		if (*p < '0' || *p > '9')
			return false;
		if (v > (limit - (uint64) (*p - '0')) / 10)
			return false;
		v = v * 10 + (uint64) (*p - '0');
	}
	*out = neg ? (int64) (0 - v) : (int64) v;
	return true;
}

/* Is the tenant's name the canonical (lowercase) text of a uuid? */
static bool
rls_is_canonical_uuid(const char *s)
{
	int			i;

	if (strlen(s) != 36)
		return false;
	for (i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return true;
}

/*
 * SQL function: envault.current_tenant_as(type_of anyelement) returns anyelement
 *
 * The current tenant as a value of a tenant column's type (int2, int4,
 * int8 or uuid), for the policies isolate_table creates: NULL when no
 * tenant is set, and also when the tenant's name is not exactly the text
 * PostgreSQL writes for such a value, so that tenant "007" or an uppercase
 * uuid matches no row of tenant "7" or of the lowercase uuid.  A cast
 * would normalise them into the same value.
 */
PG_FUNCTION_INFO_V1(envault_current_tenant_as);
Datum
envault_current_tenant_as(PG_FUNCTION_ARGS)
{
	Oid			typid = getBaseType(get_fn_expr_argtype(fcinfo->flinfo, 0));
	const char *tenant;
	int64		v;

	if (typid != INT2OID && typid != INT4OID && typid != INT8OID && typid != UUIDOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("envault.current_tenant_as() does not support type %s",
						format_type_be(typid)),
				 errhint("Tenant columns of type text or varchar compare with envault.current_tenant().")));
	tenant = env_tenant_current();
	if (tenant == NULL)
		PG_RETURN_NULL();
	switch (typid)
	{
		case INT2OID:
			if (!rls_parse_integer(tenant, PG_INT16_MIN, PG_INT16_MAX, &v))
				PG_RETURN_NULL();
			PG_RETURN_INT16((int16) v);
		case INT4OID:
			if (!rls_parse_integer(tenant, PG_INT32_MIN, PG_INT32_MAX, &v))
				PG_RETURN_NULL();
			PG_RETURN_INT32((int32) v);
		case INT8OID:
			if (!rls_parse_integer(tenant, PG_INT64_MIN, PG_INT64_MAX, &v))
				PG_RETURN_NULL();
			PG_RETURN_INT64(v);
		case UUIDOID:
			if (!rls_is_canonical_uuid(tenant))
				PG_RETURN_NULL();
			return DirectFunctionCall1(uuid_in, CStringGetDatum(tenant));
	}
	PG_RETURN_NULL();			/* not reached */
}

/*
 * SQL function: envault.isolation_expr(tbl regclass, tenant_column name)
 *               returns text
 *
 * The expression of the policy isolate_table creates for a tenant column:
 * one that compares the column with the current tenant exactly, so that
 * no tenant name other than the one that wrote a row can see it.  Types and
 * collations where two tenant names could map to one value get NULL (as
 * does a column that does not exist): a cast of the tenant to varchar(n)
 * truncates it, to char(n) pads it, to a number or a uuid normalises it, a
 * nondeterministic collation folds case or accents.
 *	- text and varchar (and domains over them) with a deterministic
 *	  collation compare as text: the tenant is never cast to the column's
 *	  type, and the column keeps its own collation, so its indexes serve;
 *	- int2, int4, int8 and uuid (and domains over them) compare with
 *	  current_tenant_as(), which names a value only for the one canonical
 *	  spelling of it.
 */
PG_FUNCTION_INFO_V1(envault_isolation_expr);
Datum
envault_isolation_expr(PG_FUNCTION_ARGS)
{
	Oid			relid;
	AttrNumber	att;
	Oid			typid;
	int32		typmod;
	Oid			coll;
	const char *col;
	char	   *expr = NULL;
	bool		citus;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	relid = PG_GETARG_OID(0);
	col = NameStr(*PG_GETARG_NAME(1));
	att = get_attnum(relid, col);
	if (att <= 0)
		PG_RETURN_NULL();
	get_atttypetypmodcoll(relid, att, &typid, &typmod, &coll);

	/*
	 * Citus refuses subqueries in the policies of its tables: there, the
	 * function is called per row instead of once per statement (it is STABLE,
	 * so an index on the column still serves).
	 */
	citus = env_is_citus_table(relid);
	switch (getBaseType(typid))
	{
		case TEXTOID:
		case VARCHAROID:
			if (!OidIsValid(coll) || !get_collation_isdeterministic(coll))
				break;
			expr = psprintf(citus ?
							"(%s OPERATOR(pg_catalog.=) envault.current_tenant()%s%s)" :
							"(%s OPERATOR(pg_catalog.=) (SELECT envault.current_tenant())::text%s%s)",
							quote_identifier(col),
							coll == DEFAULT_COLLATION_OID ? "" : " COLLATE ",
							coll == DEFAULT_COLLATION_OID ? "" : generate_collation_name(coll));
			break;
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case UUIDOID:
			expr = psprintf(citus ?
							"(%s OPERATOR(pg_catalog.=) envault.current_tenant_as(NULL::%s))" :
							"(%s OPERATOR(pg_catalog.=) (SELECT envault.current_tenant_as(NULL::%s)))",
							quote_identifier(col),
							format_type_be_qualified(getBaseType(typid)));
			break;
		default:
			break;
	}
	if (expr == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(expr));
}

/* Errors while parsing point into the internal query, not the caller's. */
static void
rls_policy_parse_context(void *arg)
{
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery((const char *) arg);
	}
}

/*
 * Parse a policy expression on a table as CREATE POLICY does, into the tree
 * PostgreSQL would store for it.
 */
static Node *
rls_policy_tree(Relation rel, const char *expr)
{
	char	   *sql = psprintf("SELECT WHERE %s", expr);
	ErrorContextCallback errcb;
	List	   *raw;
	SelectStmt *sel = NULL;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	Node	   *tree;

	errcb.callback = rls_policy_parse_context;
	errcb.arg = sql;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	raw = raw_parser(sql, RAW_PARSE_DEFAULT);

	if (list_length(raw) == 1 &&
		IsA(((RawStmt *) linitial(raw))->stmt, SelectStmt))
		sel = (SelectStmt *) ((RawStmt *) linitial(raw))->stmt;
	if (sel == NULL || sel->op != SETOP_NONE || sel->whereClause == NULL ||
		sel->targetList != NIL || sel->fromClause != NIL ||
		sel->groupClause != NIL || sel->havingClause != NULL ||
		sel->sortClause != NIL || sel->limitCount != NULL ||
		sel->lockingClause != NIL || sel->withClause != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid policy expression")));

	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = sql;
	nsitem = addRangeTableEntryForRelation(pstate, rel, AccessShareLock,
										   NULL, false, false);
	addNSItemToQuery(pstate, nsitem, false, true, true);
	tree = transformWhereClause(pstate, sel->whereClause, EXPR_KIND_POLICY,
								"POLICY");
	assign_expr_collations(pstate, tree);
	free_parsestate(pstate);
	error_context_stack = errcb.previous;
	return tree;
}

/* Is a stored policy expression (pg_node_tree text) the expected tree? */
static bool
rls_tree_is(Datum stored, bool isnull, Node *expected)
{
	if (isnull)
		return false;
	return equal(stringToNode(TextDatumGetCString(stored)), expected);
}

/*
 * SQL function: envault.policy_isolates(tbl regclass, expr text) returns boolean
 *
 * Does tbl have the policy that isolate_table creates with expr, exactly:
 * named envault_tenant_isolation, permissive, for all commands, for PUBLIC,
 * with USING and WITH CHECK both expr?  The expressions are compared as
 * parsed trees (ignoring only where in the text each part was), so a
 * policy restored by pg_dump still counts, and any other definition does
 * not, whatever its name.
 */
PG_FUNCTION_INFO_V1(envault_policy_isolates);
Datum
envault_policy_isolates(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Relation	pol;
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	bool		isnull;
	bool		ok = false;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	relid = PG_GETARG_OID(0);

	pol = table_open(PolicyRelationId, AccessShareLock);
	ScanKeyInit(&keys[0], Anum_pg_policy_polrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	ScanKeyInit(&keys[1], Anum_pg_policy_polname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(RLS_POLICY_NAME));
	scan = systable_beginscan(pol, PolicyPolrelidPolnameIndexId, true, NULL,
							  2, keys);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		tup = heap_copytuple(tup);
	systable_endscan(scan);

	if (HeapTupleIsValid(tup))
	{
		Form_pg_policy form = (Form_pg_policy) GETSTRUCT(tup);
		Datum		roles = heap_getattr(tup, Anum_pg_policy_polroles,
										 RelationGetDescr(pol), &isnull);

		ok = form->polpermissive && form->polcmd == '*' && !isnull;
		if (ok)
		{
			Datum	   *elems;
			bool	   *nulls;
			int			n;

			deconstruct_array(DatumGetArrayTypeP(roles), OIDOID, sizeof(Oid),
							  true, TYPALIGN_INT, &elems, &nulls, &n);
			ok = n == 1 && !nulls[0] &&
				DatumGetObjectId(elems[0]) == ACL_ID_PUBLIC;
		}
	}
	if (ok)
	{
		/* only now the table itself: its columns, for parsing expr */
		Relation	rel = relation_open(relid, AccessShareLock);
		Node	   *expected = rls_policy_tree(rel, text_to_cstring(PG_GETARG_TEXT_PP(1)));
		Datum		d;

		d = heap_getattr(tup, Anum_pg_policy_polqual, RelationGetDescr(pol),
						 &isnull);
		ok = rls_tree_is(d, isnull, expected);
		d = heap_getattr(tup, Anum_pg_policy_polwithcheck,
						 RelationGetDescr(pol), &isnull);
		ok = ok && rls_tree_is(d, isnull, expected);
		relation_close(rel, AccessShareLock);
	}
	table_close(pol, AccessShareLock);
	PG_RETURN_BOOL(ok);
}


void
env_rls_init(void)
{
	DefineCustomStringVariable("envault.tenant_columns",
							   gettext_noop("Comma-separated column names that mark a table as tenant-owned."),
							   gettext_noop("envault.isolation_report() lists every table with such a column."),
							   &rls_columns_setting,
							   "tenant,tenant_id",
							   PGC_SUSET, GUC_LIST_INPUT,
							   NULL, NULL, NULL);
}
