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

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

/* SQL function: envault.create_tenant(tenant text) returns void */
PG_FUNCTION_INFO_V1(envault_create_tenant);
Datum
envault_create_tenant(PG_FUNCTION_ARGS)
{
	text	   *tenant = env_arg_text(fcinfo, 0, "tenant");

	env_keystore_create_tenant(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant));
	PG_RETURN_VOID();
}

/* SQL function: envault.create_data_key(tenant text, purpose text) returns integer */
PG_FUNCTION_INFO_V1(envault_create_data_key);
Datum
envault_create_data_key(PG_FUNCTION_ARGS)
{
	text	   *tenant = env_arg_text(fcinfo, 0, "tenant");
	text	   *purpose = env_arg_text(fcinfo, 1, "purpose");

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
	text	   *tenant = env_arg_text(fcinfo, 0, "tenant");
	text	   *purpose = env_arg_text(fcinfo, 1, "purpose");

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
	text	   *tenant = env_arg_text(fcinfo, 0, "tenant");

	PG_RETURN_INT32(env_keystore_rotate_tenant_key(VARDATA_ANY(tenant),
												   VARSIZE_ANY_EXHDR(tenant)));
}

/*
 * SQL function: envault.rewrap_tenant_keys(batch_size integer,
 *                   OUT rewrapped bigint, OUT remaining bigint) returns record
 *
 * One batch of a master key rotation, in the caller's transaction; see the
 * procedure envault.rotate_master_key(), which commits batch by batch.
 */
PG_FUNCTION_INFO_V1(envault_rewrap_tenant_keys);
Datum
envault_rewrap_tenant_keys(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int64		remaining;

	env_arg_not_null(fcinfo, 0, "batch_size");
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum(env_keystore_rewrap_tenants(PG_GETARG_INT32(0),
														  &remaining));
	values[1] = Int64GetDatum(remaining);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/*
 * SQL function: envault.master_key_status(OUT master_key text,
 *                   OUT check_value text) returns setof record
 *
 * The check values of the configured master keys: 'current' and, during a
 * rotation, 'previous'.
 */
PG_FUNCTION_INFO_V1(envault_master_key_status);
Datum
envault_master_key_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	const uint8 *pkcv;

	InitMaterializedSRF(fcinfo, 0);
	values[0] = CStringGetTextDatum("current");
	values[1] = CStringGetTextDatum(env_kcv_fingerprint(env_master_kcv()));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	if (env_previous_master_key(&pkcv) != NULL)
	{
		values[0] = CStringGetTextDatum("previous");
		values[1] = CStringGetTextDatum(env_kcv_fingerprint(pkcv));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * SQL function: envault.use_customer_key(tenant text) returns void
 *
 * Onboard a tenant to its customer-managed key: it is re-keyed (a fresh
 * tenant key, wrapped by the customer key, and fresh active data keys), so
 * that no copy of the key tables from before onboarding opens anything
 * encrypted from then on (see env_keystore_rekey_tenant).
 */
PG_FUNCTION_INFO_V1(envault_use_customer_key);
Datum
envault_use_customer_key(PG_FUNCTION_ARGS)
{
	text	   *tenant = env_arg_text(fcinfo, 0, "tenant");

	(void) env_keystore_rekey_tenant(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant), true);
	PG_RETURN_VOID();
}

/*
 * SQL function: envault.rekey_tenant(tenant text) returns integer
 *
 * Fresh keys for a tenant under the key that wraps its tenant key now (the
 * master key, or its customer-managed key); returns the number of new
 * active data keys.
 */
PG_FUNCTION_INFO_V1(envault_rekey_tenant);
Datum
envault_rekey_tenant(PG_FUNCTION_ARGS)
{
	text	   *tenant = env_arg_text(fcinfo, 0, "tenant");

	PG_RETURN_INT32(env_keystore_rekey_tenant(VARDATA_ANY(tenant),
											  VARSIZE_ANY_EXHDR(tenant), false));
}

/* SQL function: envault.use_master_key(tenant text) returns void */
PG_FUNCTION_INFO_V1(envault_use_master_key);
Datum
envault_use_master_key(PG_FUNCTION_ARGS)
{
	text	   *tenant = env_arg_text(fcinfo, 0, "tenant");

	env_keystore_use_master_key(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant));
	PG_RETURN_VOID();
}
