/*-------------------------------------------------------------------------
 *
 * keys.c
 *		SQL wrappers of key management: creating tenants and data keys, and
 *		rotating them.
 *
 * EXECUTE on these is granted to envault_admin only; the key store does the
 * work with the privileges of the extension's owner.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"

#include "fmgr.h"
#include "utils/builtins.h"

static text *
keys_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	return PG_GETARG_TEXT_PP(argno);
}

/* SQL function: envault.create_tenant(tenant text) returns void */
PG_FUNCTION_INFO_V1(envault_create_tenant);
Datum
envault_create_tenant(PG_FUNCTION_ARGS)
{
	text	   *tenant = keys_arg(fcinfo, 0, "tenant");

	env_keystore_create_tenant(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant));
	PG_RETURN_VOID();
}

/* SQL function: envault.create_data_key(tenant text, purpose text) returns integer */
PG_FUNCTION_INFO_V1(envault_create_data_key);
Datum
envault_create_data_key(PG_FUNCTION_ARGS)
{
	text	   *tenant = keys_arg(fcinfo, 0, "tenant");
	text	   *purpose = keys_arg(fcinfo, 1, "purpose");

	PG_RETURN_INT32(env_keystore_create_data_key(VARDATA_ANY(tenant),
												 VARSIZE_ANY_EXHDR(tenant),
												 VARDATA_ANY(purpose),
												 VARSIZE_ANY_EXHDR(purpose)));
}

/* SQL function: envault.rotate_data_key(tenant text, purpose text) returns integer */
PG_FUNCTION_INFO_V1(envault_rotate_data_key);
Datum
envault_rotate_data_key(PG_FUNCTION_ARGS)
{
	text	   *tenant = keys_arg(fcinfo, 0, "tenant");
	text	   *purpose = keys_arg(fcinfo, 1, "purpose");

	PG_RETURN_INT32(env_keystore_rotate_data_key(VARDATA_ANY(tenant),
												 VARSIZE_ANY_EXHDR(tenant),
												 VARDATA_ANY(purpose),
												 VARSIZE_ANY_EXHDR(purpose)));
}

/* SQL function: envault.rotate_tenant_key(tenant text) returns integer */
PG_FUNCTION_INFO_V1(envault_rotate_tenant_key);
Datum
envault_rotate_tenant_key(PG_FUNCTION_ARGS)
{
	text	   *tenant = keys_arg(fcinfo, 0, "tenant");

	PG_RETURN_INT32(env_keystore_rotate_tenant_key(VARDATA_ANY(tenant),
												   VARSIZE_ANY_EXHDR(tenant)));
}
