/*-------------------------------------------------------------------------
 *
 * tenant.c
 *		The current tenant of a session, and who may use which tenant's keys.
 *
 * The tenant context lives in this backend's memory only: no setting, no
 * table, nothing SQL can write.  It is set by envault.authenticate() from a
 * verified token, or by envault.use_tenant() for envault_admin.  By default
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
 * Row-level security on the current tenant is rls.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "tenant.h"

#include "scaleout.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
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
	 * A Citus worker: no context of our own, or one adopted from a proof that
	 * has changed since; the coordinator's proof, if any, decides.
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
 * no token did (no context, or use_tenant()).  For the access log's
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

	env_arg_not_null(fcinfo, 0, "token");
	env_arg_not_null(fcinfo, 1, "session");
	session = PG_GETARG_BOOL(1);

	/*
	 * Read the count of key-state changes before the token: a revocation that
	 * the lookup misses is counted after it, and so caught at the next check.
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

static Datum ten_use(FunctionCallInfo fcinfo, bool local);

/*
 * SQL function: envault.use_tenant(tenant text, session boolean) returns void
 *
 * Make a tenant current without a token, for the transaction or, with
 * session, for the session: the same flag as authenticate()'s.
 */
PG_FUNCTION_INFO_V1(envault_use_tenant);
Datum
envault_use_tenant(PG_FUNCTION_ARGS)
{
	env_arg_not_null(fcinfo, 1, "session");
	return ten_use(fcinfo, !PG_GETARG_BOOL(1));
}

/*
 * SQL function: envault.set_tenant(tenant text, is_local boolean) returns void
 *
 * Deprecated (0.3.0) for use_tenant(), whose flag means what
 * authenticate()'s does: set_tenant(t, false) is use_tenant(t, true).
 */
PG_FUNCTION_INFO_V1(envault_set_tenant);
Datum
envault_set_tenant(PG_FUNCTION_ARGS)
{
	env_arg_not_null(fcinfo, 1, "is_local");
	return ten_use(fcinfo, PG_GETARG_BOOL(1));
}

/* use_tenant() and set_tenant(): the tenant (argument 0), for local or not */
static Datum
ten_use(FunctionCallInfo fcinfo, bool local)
{
	text	   *tenant;

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

/*
 * The current tenant, NULL when none is set; a context whose token is no
 * longer valid is dropped first, with an error saying why.
 */
const char *
env_tenant_current(void)
{
	ten_revalidate();
	return ten_current.is_set ? ten_current.tenant : NULL;
}

/* SQL function: envault.current_tenant() returns text */
PG_FUNCTION_INFO_V1(envault_current_tenant);
Datum
envault_current_tenant(PG_FUNCTION_ARGS)
{
	const char *tenant = env_tenant_current();

	if (tenant == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(tenant));
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
	RegisterXactCallback(ten_xact_callback, NULL);
	RegisterSubXactCallback(ten_subxact_callback, NULL);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, ten_role_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, ten_role_changed, (Datum) 0);
}
