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
 * the next; a transaction that aborts restores the context it started with.
 *
 * Roles that are not members of envault_admin (nor superusers) may encrypt,
 * decrypt and compute blind indexes only for the current tenant.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/syscache.h"

typedef struct TenState
{
	bool		is_set;
	bool		local;			/* ends with the transaction */
	char		tenant[ENV_TENANT_MAXLEN + 1];
} TenState;

static char *ten_columns_setting = NULL;

static TenState ten_current;
static TenState ten_at_xact_start;	/* valid while ten_changed */
static bool ten_changed = false;

/* is the current user an envault admin?  Cached per user id. */
static Oid	ten_admin_cache_user = InvalidOid;
static bool ten_admin_cache_value = false;

static void
ten_set(const char *tenant, size_t len, bool local)
{
	if (!ten_changed)
	{
		ten_at_xact_start = ten_current;
		ten_changed = true;
	}
	memcpy(ten_current.tenant, tenant, len);
	ten_current.tenant[len] = '\0';
	ten_current.is_set = true;
	ten_current.local = local;
}

static void
ten_clear(void)
{
	if (!ten_changed)
	{
		ten_at_xact_start = ten_current;
		ten_changed = true;
	}
	memset(&ten_current, 0, sizeof(ten_current));
}

static void
ten_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (ten_changed)
				ten_current = ten_at_xact_start;
			/* FALLTHROUGH */
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			if (ten_current.is_set && ten_current.local)
				memset(&ten_current, 0, sizeof(ten_current));
			ten_changed = false;
			break;
		default:
			break;
	}
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
 * May the current role use this tenant's keys?  Admins may use any tenant;
 * everybody else only the current one.  for_ciphertext says the tenant was
 * read from a ciphertext, whose tenant the caller may not know: its name is
 * then kept out of the message.
 */
void
env_tenant_check(const char *tenant, size_t len, bool for_ciphertext)
{
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
	bool		session = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);

	if (PG_ARGISNULL(0) || !env_token_verify(PG_GETARG_TEXT_PP(0), tenant))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("envault token is not valid"),
				 errdetail("The token is unknown, expired, revoked or malformed.")));
	ten_set(tenant, strlen(tenant), !session);
	PG_RETURN_TEXT_P(cstring_to_text(tenant));
}

/* SQL function: envault.set_tenant(tenant text, is_local boolean) returns void */
PG_FUNCTION_INFO_V1(envault_set_tenant);
Datum
envault_set_tenant(PG_FUNCTION_ARGS)
{
	bool		local = PG_ARGISNULL(1) || PG_GETARG_BOOL(1);
	text	   *tenant;

	if (PG_ARGISNULL(0))
	{
		ten_clear();
		PG_RETURN_VOID();
	}
	tenant = PG_GETARG_TEXT_PP(0);
	if (!env_keystore_tenant_exists(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("envault tenant \"%s\" does not exist",
						text_to_cstring(tenant))));
	ten_set(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant), local);
	PG_RETURN_VOID();
}

/* SQL function: envault.reset_tenant() returns void */
PG_FUNCTION_INFO_V1(envault_reset_tenant);
Datum
envault_reset_tenant(PG_FUNCTION_ARGS)
{
	ten_clear();
	PG_RETURN_VOID();
}

/* SQL function: envault.current_tenant() returns text */
PG_FUNCTION_INFO_V1(envault_current_tenant);
Datum
envault_current_tenant(PG_FUNCTION_ARGS)
{
	if (!ten_current.is_set)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(ten_current.tenant));
}

void
env_tenant_init(void)
{
	DefineCustomStringVariable("envault.tenant_columns",
							   gettext_noop("Comma-separated column names that mark a table as tenant-owned."),
							   gettext_noop("envault.isolation_report() lists every table with such a column."),
							   &ten_columns_setting,
							   "tenant,tenant_id",
							   PGC_SUSET, GUC_LIST_INPUT,
							   NULL, NULL, NULL);
	RegisterXactCallback(ten_xact_callback, NULL);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, ten_role_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, ten_role_changed, (Datum) 0);
}
