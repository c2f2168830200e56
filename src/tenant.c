/*-------------------------------------------------------------------------
 *
 * tenant.c
 *		The current tenant of a session, and who may use which tenant's keys.
 *
 * The tenant context lives in this backend's memory only: no setting, no
 * table, nothing SQL can write.  It is set by envault.authenticate() from a
 * verified token, or by envault.set_tenant() for envault_admin.  By default
 * it lasts until the end of the transaction, so that a connection returned
 * to a transaction-pooling pooler never carries one request's tenant into
 * the next.  A transaction that aborts, and a subtransaction rolled back
 * (ROLLBACK TO SAVEPOINT, an exception block), restore the context they
 * started with.
 *
 * A context set from a token lasts only as long as the token is valid: its
 * expiry is checked at every use, and after any key-state change noticed by
 * the key store (revoke_token, revoke_tenant_tokens, revoke_tenant and
 * destroy_tenant are such changes, in any backend) the token is looked up
 * again before the context is used.  A context whose token is no longer
 * valid is dropped, with an error saying why.
 *
 * Roles that are not members of envault_admin (nor superusers) may encrypt,
 * decrypt and compute blind indexes only for the current tenant.
 *
 * Row-level security on the current tenant (envault.isolate_table) is
 * judged by the definition of its policy, never by its name: see
 * envault_policy_isolates().
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "scaleout.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_policy.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/nodes.h"
#include "parser/parse_clause.h"
#include "parser/parse_collate.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"
#include "utils/uuid.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

typedef struct TenState
{
	bool		is_set;
	bool		local;			/* ends with the transaction */
	bool		from_token;		/* set by authenticate() */
	char		tenant[ENV_TENANT_MAXLEN + 1];
	char		token_id[ENV_TOKEN_ID_HEXLEN + 1];
	TimestampTz expires_at;		/* of the token; DT_NOEND for none */
	bool		from_proof;		/* adopted from a coordinator's proof */
	uint64		proof_serial;	/* env_scaleout_proof_serial() then */
	uint64		verified;		/* env_keystore_changes() when last verified */
} TenState;

/*
 * The context as it was when a (sub)transaction first changed it, so that
 * its abort can restore it; innermost first.
 */
typedef struct TenSaved
{
	SubTransactionId subid;
	TenState	state;
	struct TenSaved *next;
} TenSaved;

static char *ten_columns_setting = NULL;
static ProcessUtility_hook_type ten_prev_process_utility = NULL;

static TenState ten_current;
static TenSaved *ten_saved = NULL;

/* is the current user an envault admin?  Cached per user id. */
static Oid	ten_admin_cache_user = InvalidOid;
static bool ten_admin_cache_value = false;

/* Remember the context before the current (sub)transaction changes it. */
static void
ten_save(void)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	TenSaved   *e;

	if (ten_saved != NULL && ten_saved->subid == subid)
		return;
	e = MemoryContextAlloc(TopMemoryContext, sizeof(TenSaved));
	e->subid = subid;
	e->state = ten_current;
	e->next = ten_saved;
	ten_saved = e;
}

static void
ten_pop(void)
{
	TenSaved   *e = ten_saved;

	ten_saved = e->next;
	pfree(e);
}

static void
ten_set(const char *tenant, size_t len, bool local)
{
	ten_save();
	memset(&ten_current, 0, sizeof(ten_current));
	memcpy(ten_current.tenant, tenant, len);
	ten_current.tenant[len] = '\0';
	ten_current.is_set = true;
	ten_current.local = local;
}

static void
ten_clear(void)
{
	ten_save();
	memset(&ten_current, 0, sizeof(ten_current));
}

static void
ten_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* the outermost saved state is the one the transaction began with */
			if (ten_saved != NULL)
			{
				TenSaved   *e = ten_saved;

				while (e->next != NULL)
					e = e->next;
				ten_current = e->state;
			}
			/* FALLTHROUGH */
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			while (ten_saved != NULL)
				ten_pop();
			if (ten_current.is_set && ten_current.local)
				memset(&ten_current, 0, sizeof(ten_current));
			break;
		default:
			break;
	}
}

static void
ten_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	if (ten_saved == NULL || ten_saved->subid != mySubid)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		ten_current = ten_saved->state;
		ten_pop();
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* the parent's own saved state, if any, is the older one */
		if (ten_saved->next != NULL && ten_saved->next->subid == parentSubid)
			ten_pop();
		else
			ten_saved->subid = parentSubid;
	}
}

/*
 * Drop a context whose token is no longer valid, everywhere it is kept, so
 * that no rollback brings it back, and say why.
 */
static void
ten_drop(EnvTokenState why)
{
	char		tenant[ENV_TENANT_MAXLEN + 1];
	char		token_id[ENV_TOKEN_ID_HEXLEN + 1];
	TenSaved   *e;

	strlcpy(tenant, ten_current.tenant, sizeof(tenant));
	strlcpy(token_id, ten_current.token_id, sizeof(token_id));
	for (e = ten_saved; e != NULL; e = e->next)
		if (e->state.from_token && strcmp(e->state.token_id, token_id) == 0)
			memset(&e->state, 0, sizeof(TenState));
	memset(&ten_current, 0, sizeof(ten_current));
	/* nor may a proof of it, on Citus, bring it back in this transaction */
	env_scaleout_context_dropped();
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("envault token of the current tenant context is no longer valid"),
			 errdetail("Token %s %s; the context of tenant \"%s\" that it set has been cleared.",
					   token_id, env_token_state_text(why), tenant),
			 errhint("Call envault.authenticate() with a valid token.")));
}

/*
 * A context set from a token is used only while the token is valid: not
 * past its expiry, and, after any key-state change since it was last
 * verified (a token revocation is one), still valid in its table.
 */
static inline void
ten_revalidate(void)
{
	uint64		changes;
	EnvTokenState st;

	/*
	 * A Citus worker: no context of our own, or one adopted from a proof
	 * that has changed since; the coordinator's proof, if any, decides.
	 */
	if (!ten_current.is_set ||
		(ten_current.from_proof &&
		 ten_current.proof_serial != env_scaleout_proof_serial()))
	{
		char		tenant[ENV_TENANT_MAXLEN + 1];

		if (ten_current.from_proof)
			ten_clear();
		if (env_scaleout_context(tenant))
		{
			ten_set(tenant, strlen(tenant), true);
			ten_current.from_proof = true;
			ten_current.proof_serial = env_scaleout_proof_serial();
		}
	}
	if (!ten_current.is_set || !ten_current.from_token)
		return;
	if (!TIMESTAMP_NOT_FINITE(ten_current.expires_at) &&
		GetCurrentStatementStartTimestamp() >= ten_current.expires_at)
		ten_drop(ENV_TOKEN_EXPIRED);
	changes = env_keystore_changes();
	if (changes == ten_current.verified)
		return;
	/* changes noticed during the lookup make it look again next time */
	st = env_token_state(ten_current.token_id, ten_current.tenant,
						 &ten_current.expires_at);
	if (st != ENV_TOKEN_ALIVE)
		ten_drop(st);
	ten_current.verified = changes;
}

/* The checks of ten_revalidate(), for each statement on a Citus node */
void
env_tenant_revalidate(void)
{
	ten_revalidate();
}

static void
ten_role_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	ten_admin_cache_user = InvalidOid;
}

static bool
ten_is_admin(void)
{
	Oid			user = GetUserId();

	if (user != ten_admin_cache_user)
	{
		Oid			admin = get_role_oid("envault_admin", true);

		ten_admin_cache_value = superuser_arg(user) ||
			(OidIsValid(admin) && has_privs_of_role(user, admin));
		ten_admin_cache_user = user;
	}
	return ten_admin_cache_value;
}

/*
 * The id of the token that set the current tenant context, or NULL when
 * no token did (no context, or set_tenant()).  For the access log's
 * attribution of reads behind a connection pooler.
 */
const char *
env_tenant_token_id(void)
{
	if (!ten_current.is_set || !ten_current.from_token)
		return NULL;
	return ten_current.token_id;
}

/*
 * May the current role use this tenant's keys?  Admins may use any tenant;
 * everybody else only the current one.  for_ciphertext says the tenant was
 * read from a ciphertext, whose tenant the caller may not know: its name is
 * then kept out of the message.
 */
void
env_tenant_check(const char *tenant, size_t len, bool for_ciphertext)
{
	ten_revalidate();
	if (ten_current.is_set && strlen(ten_current.tenant) == len &&
		memcmp(ten_current.tenant, tenant, len) == 0)
		return;
	if (ten_is_admin())
		return;
	if (!ten_current.is_set)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("no envault tenant is set"),
				 errdetail("Roles that are not members of envault_admin can use only the keys of the current tenant."),
				 errhint("Call envault.authenticate() with the request's token first.")));
	if (for_ciphertext)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("envault ciphertext belongs to another tenant"),
				 errdetail("The current tenant is \"%s\".", ten_current.tenant)));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("envault tenant \"%s\" is not the current tenant",
					pnstrdup(tenant, len)),
			 errdetail("The current tenant is \"%s\".", ten_current.tenant)));
}

/* SQL function: envault.authenticate(token text, session boolean) returns text */
PG_FUNCTION_INFO_V1(envault_authenticate);
Datum
envault_authenticate(PG_FUNCTION_ARGS)
{
	char		tenant[ENV_TENANT_MAXLEN + 1];
	char		token_id[ENV_TOKEN_ID_HEXLEN + 1];
	TimestampTz expires;
	bool		session;
	uint64		changes;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", PG_ARGISNULL(0) ? "token" : "session")));
	session = PG_GETARG_BOOL(1);

	/*
	 * Read the count of key-state changes before the token: a revocation
	 * that the lookup misses is counted after it, and so caught at the next
	 * check.
	 */
	changes = env_keystore_changes();
	if (!env_token_verify_ex(PG_GETARG_TEXT_PP(0), tenant, token_id, &expires))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("envault token is not valid"),
				 errdetail("The token is unknown, expired, revoked or malformed.")));
	ten_set(tenant, strlen(tenant), !session);
	ten_current.from_token = true;
	strlcpy(ten_current.token_id, token_id, sizeof(ten_current.token_id));
	ten_current.expires_at = expires;
	ten_current.verified = changes;
	env_scaleout_context_set(tenant);
	PG_RETURN_TEXT_P(cstring_to_text(tenant));
}

/* SQL function: envault.set_tenant(tenant text, is_local boolean) returns void */
PG_FUNCTION_INFO_V1(envault_set_tenant);
Datum
envault_set_tenant(PG_FUNCTION_ARGS)
{
	bool		local;
	text	   *tenant;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("is_local must not be null")));
	local = PG_GETARG_BOOL(1);
	/* a NULL tenant clears the context, as reset_tenant() does */
	if (PG_ARGISNULL(0))
	{
		ten_clear();
		env_scaleout_context_set(NULL);
		PG_RETURN_VOID();
	}
	tenant = PG_GETARG_TEXT_PP(0);
	if (!env_keystore_tenant_exists(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("envault tenant \"%s\" does not exist",
						text_to_cstring(tenant))));
	ten_set(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant), local);
	env_scaleout_context_set(ten_current.tenant);
	PG_RETURN_VOID();
}

/* SQL function: envault.reset_tenant() returns void */
PG_FUNCTION_INFO_V1(envault_reset_tenant);
Datum
envault_reset_tenant(PG_FUNCTION_ARGS)
{
	ten_clear();
	env_scaleout_context_set(NULL);
	PG_RETURN_VOID();
}

/* SQL function: envault.current_tenant() returns text */
PG_FUNCTION_INFO_V1(envault_current_tenant);
Datum
envault_current_tenant(PG_FUNCTION_ARGS)
{
	ten_revalidate();
	if (!ten_current.is_set)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(ten_current.tenant));
}

/* --- row-level security -------------------------------------------------- */

#define TEN_POLICY_NAME "envault_tenant_isolation"

/*
 * Is the tenant's name the canonical text of an integer in [min, max]?
 * Only then does it name one: "007", "+7", " 7" and "7.0" name no integer
 * tenant, so that no two tenant names map to one value.
 */
static bool
ten_parse_integer(const char *s, int64 min, int64 max, int64 *out)
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
ten_is_canonical_uuid(const char *s)
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
	int64		v;

	if (typid != INT2OID && typid != INT4OID && typid != INT8OID && typid != UUIDOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("envault.current_tenant_as() does not support type %s",
						format_type_be(typid)),
				 errhint("Tenant columns of type text or varchar compare with envault.current_tenant().")));
	ten_revalidate();
	if (!ten_current.is_set)
		PG_RETURN_NULL();
	switch (typid)
	{
		case INT2OID:
			if (!ten_parse_integer(ten_current.tenant, PG_INT16_MIN, PG_INT16_MAX, &v))
				PG_RETURN_NULL();
			PG_RETURN_INT16((int16) v);
		case INT4OID:
			if (!ten_parse_integer(ten_current.tenant, PG_INT32_MIN, PG_INT32_MAX, &v))
				PG_RETURN_NULL();
			PG_RETURN_INT32((int32) v);
		case INT8OID:
			if (!ten_parse_integer(ten_current.tenant, PG_INT64_MIN, PG_INT64_MAX, &v))
				PG_RETURN_NULL();
			PG_RETURN_INT64(v);
		case UUIDOID:
			if (!ten_is_canonical_uuid(ten_current.tenant))
				PG_RETURN_NULL();
			return DirectFunctionCall1(uuid_in, CStringGetDatum(ten_current.tenant));
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
	 * function is called per row instead of once per statement (it is
	 * STABLE, so an index on the column still serves).
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
ten_policy_parse_context(void *arg)
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
ten_policy_tree(Relation rel, const char *expr)
{
	char	   *sql = psprintf("SELECT WHERE %s", expr);
	ErrorContextCallback errcb;
	List	   *raw;
	SelectStmt *sel = NULL;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	Node	   *tree;

	errcb.callback = ten_policy_parse_context;
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
ten_tree_is(Datum stored, bool isnull, Node *expected)
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
				F_NAMEEQ, CStringGetDatum(TEN_POLICY_NAME));
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
		Node	   *expected = ten_policy_tree(rel, text_to_cstring(PG_GETARG_TEXT_PP(1)));
		Datum		d;

		d = heap_getattr(tup, Anum_pg_policy_polqual, RelationGetDescr(pol),
						 &isnull);
		ok = ten_tree_is(d, isnull, expected);
		d = heap_getattr(tup, Anum_pg_policy_polwithcheck,
						 RelationGetDescr(pol), &isnull);
		ok = ok && ten_tree_is(d, isnull, expected);
		relation_close(rel, AccessShareLock);
	}
	table_close(pol, AccessShareLock);
	PG_RETURN_BOOL(ok);
}

/*
 * DISCARD ALL (the reset query of session poolers) and RESET ALL end the
 * tenant context, whatever its scope: the next client of a pooled
 * connection must not inherit the previous one's tenant.
 */
static void
ten_process_utility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	bool		resets = (IsA(stmt, DiscardStmt) &&
						  ((DiscardStmt *) stmt)->target == DISCARD_ALL) ||
		(IsA(stmt, VariableSetStmt) &&
		 ((VariableSetStmt *) stmt)->kind == VAR_RESET_ALL);

	if (ten_prev_process_utility)
		ten_prev_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
	if (resets)
		ten_clear();
}

void
env_tenant_init(void)
{
	ten_prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = ten_process_utility;
	DefineCustomStringVariable("envault.tenant_columns",
							   gettext_noop("Comma-separated column names that mark a table as tenant-owned."),
							   gettext_noop("envault.isolation_report() lists every table with such a column."),
							   &ten_columns_setting,
							   "tenant,tenant_id",
							   PGC_SUSET, GUC_LIST_INPUT,
							   NULL, NULL, NULL);
	RegisterXactCallback(ten_xact_callback, NULL);
	RegisterSubXactCallback(ten_subxact_callback, NULL);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, ten_role_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, ten_role_changed, (Datum) 0);
}
