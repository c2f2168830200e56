/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *		States of data keys and tenants: retire, unretire, destroy, and
 *		crypto-shredding and revocation of whole tenants.
 *
 * Data key states: active (encrypts and decrypts), rotated (decrypts only),
 * retired (neither, reversibly), destroyed (its wrapped key is gone).
 * Tenant states: active, revoked (nothing opens until unrevoked), destroyed
 * (every key gone for good).  Each change locks the tenant's row, is
 * recorded in envault.key_events, and, once committed, empties the key
 * cache of every backend before its next key lookup.
 *
 * Nothing here handles key material: destroying a key is overwriting its
 * wrapped form with NULL.  (The old row version stays in the table until
 * VACUUM, and in WAL and backups; docs/operations.md says what that means.)
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

typedef struct LcKey
{
	char	   *tenant;
	char	   *purpose;
	int32		version;
} LcKey;

static void
lc_key_args(FunctionCallInfo fcinfo, LcKey *k)
{
	k->tenant = text_to_cstring(env_arg_text(fcinfo, 0, "tenant"));
	k->purpose = text_to_cstring(env_arg_text(fcinfo, 1, "purpose"));
	env_arg_not_null(fcinfo, 2, "version");
	k->version = PG_GETARG_INT32(2);
	env_check_tenant_name(k->tenant, strlen(k->tenant));
	env_check_purpose_name(k->purpose, strlen(k->purpose));
}

/* The tenant argument (the first) of a SQL function, its name checked */
static char *
lc_tenant_arg(FunctionCallInfo fcinfo)
{
	char	   *tenant = text_to_cstring(env_arg_text(fcinfo, 0, "tenant"));

	env_check_tenant_name(tenant, strlen(tenant));
	return tenant;
}

#define LC_Q_LOCK_TENANT \
	"SELECT state FROM envault.tenants WHERE tenant OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE"

/*
 * Lock a tenant's row, whatever its state, and return the state (palloc'd);
 * raises if the tenant does not exist.
 */
static char *
lc_lock_tenant(EnvSpi *s, const char *tenant)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;

	values[0] = CStringGetTextDatum(tenant);
	env_spi_run(LC_Q_LOCK_TENANT, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("envault tenant \"%s\" does not exist", tenant)));
	return env_spi_cstring(s, 1, &isnull);
}

#define LC_Q_KEY_STATE \
	"SELECT state FROM envault.data_keys" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND purpose OPERATOR(pg_catalog.=) $2" \
	"   AND version OPERATOR(pg_catalog.=) $3 FOR UPDATE"

#define LC_Q_SET_KEY_STATE \
	"UPDATE envault.data_keys SET state = $4, state_changed_at = pg_catalog.now()," \
	"       wrapped_key = CASE WHEN $4 OPERATOR(pg_catalog.=) 'destroyed' THEN NULL" \
	"                          ELSE wrapped_key END" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND purpose OPERATOR(pg_catalog.=) $2" \
	"   AND version OPERATOR(pg_catalog.=) $3"

/*
 * Lock the tenant and the data key version, and return the key's state
 * (palloc'd); raises if the key does not exist.
 */
static char *
lc_lock_key(EnvSpi *s, const LcKey *k)
{
	Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};
	Datum		values[3];
	bool		isnull;

	env_keystore_lock_tenant(s, k->tenant, NULL);
	values[0] = CStringGetTextDatum(k->tenant);
	values[1] = CStringGetTextDatum(k->purpose);
	values[2] = Int32GetDatum(k->version);
	env_spi_run(LC_Q_KEY_STATE, 3, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("data key of tenant \"%s\", purpose \"%s\", version %d does not exist",
						k->tenant, k->purpose, k->version)));
	return env_spi_cstring(s, 1, &isnull);
}

static void
lc_set_key_state(EnvSpi *s, const LcKey *k, const char *state,
				 const char *event)
{
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(k->tenant);
	values[1] = CStringGetTextDatum(k->purpose);
	values[2] = Int32GetDatum(k->version);
	values[3] = CStringGetTextDatum(state);
	env_spi_run(LC_Q_SET_KEY_STATE, 4, types, values, SPI_OK_UPDATE);
	env_key_event(s, event, k->tenant, k->purpose, k->version, NULL);
	env_keystore_changed();
}

static int
lc_errhint(const char *hint)
{
	if (hint)
		errhint("%s", hint);
	return 0;
}

static void
lc_refuse(const LcKey *k, const char *what, const char *state, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s data key of tenant \"%s\", purpose \"%s\", version %d: it is %s",
					what, k->tenant, k->purpose, k->version, state),
			 lc_errhint(hint)));
}

/*
 * What a change of a data key's state (retire, restore, destroy) does from
 * the state the key is in: refuse, saying what the key is (with a hint, or
 * not), change the state, or do nothing (the key is there already).
 */
typedef struct LcFrom
{
	const char *state;			/* NULL: any state not listed before */
	const char *refusal;		/* refuse, saying it is this; NULL: don't */
	const char *hint;
	bool		change;
} LcFrom;

typedef struct LcChange
{
	const char *verb;			/* for the refusal: "cannot retire ..." */
	const char *to;				/* the new state */
	const char *event;			/* recorded in envault.key_events */
	LcFrom		from[4];		/* ends with the entry of state NULL */
} LcChange;

#define LC_ROTATE_FIRST "Rotate it first with envault.rotate_data_key()."

static const LcChange lc_retire = {
	"retire", "retired", "data key retired",
	{
		{"active", "the active version", LC_ROTATE_FIRST, false},
		{"destroyed", "destroyed", NULL, false},
		{"rotated", NULL, NULL, true},
		{NULL, NULL, NULL, false}
	}
};

static const LcChange lc_unretire = {
	"unretire", "rotated", "data key restored",
	{
		{"destroyed", "destroyed", "A destroyed data key is gone for good.", false},
		{"retired", NULL, NULL, true},
		{NULL, "not retired", NULL, false}
	}
};

static const LcChange lc_destroy = {
	"destroy", "destroyed", "data key destroyed",
	{
		{"active", "the active version", LC_ROTATE_FIRST, false},
		{"destroyed", NULL, NULL, false},
		{NULL, NULL, NULL, true}
	}
};

/* Change the state of the data key the arguments name, as c says. */
static void
lc_change_key(FunctionCallInfo fcinfo, const LcChange *c)
{
	LcKey		k;
	EnvSpi		s;
	char	   *state;
	const LcFrom *from;

	lc_key_args(fcinfo, &k);
	env_spi_begin(&s);
	state = lc_lock_key(&s, &k);
	for (from = c->from; from->state != NULL; from++)
		if (strcmp(state, from->state) == 0)
			break;
	if (from->refusal != NULL)
		lc_refuse(&k, c->verb, from->refusal, from->hint);
	if (from->change)
		lc_set_key_state(&s, &k, c->to, c->event);
	env_spi_end(&s);
}

/* SQL function: envault.retire_data_key(tenant text, purpose text, version integer) returns void */
PG_FUNCTION_INFO_V1(envault_retire_data_key);
Datum
envault_retire_data_key(PG_FUNCTION_ARGS)
{
	lc_change_key(fcinfo, &lc_retire);
	PG_RETURN_VOID();
}

/*
 * SQL function: envault.unretire_data_key(tenant text, purpose text,
 * version integer) returns void, and its deprecated alias restore_data_key
 */
PG_FUNCTION_INFO_V1(envault_restore_data_key);
Datum
envault_restore_data_key(PG_FUNCTION_ARGS)
{
	lc_change_key(fcinfo, &lc_unretire);
	PG_RETURN_VOID();
}

/* SQL function: envault.destroy_data_key(tenant text, purpose text, version integer) returns void */
PG_FUNCTION_INFO_V1(envault_destroy_data_key);
Datum
envault_destroy_data_key(PG_FUNCTION_ARGS)
{
	lc_change_key(fcinfo, &lc_destroy);
	PG_RETURN_VOID();
}

#define LC_Q_REKEYED_AT \
	"SELECT rekeyed_at FROM envault.tenants WHERE tenant OPERATOR(pg_catalog.=) $1"

#define LC_Q_DESTROY_SUPERSEDED \
	"UPDATE envault.data_keys SET state = 'destroyed', wrapped_key = NULL," \
	"       state_changed_at = pg_catalog.now()" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1" \
	"   AND state OPERATOR(pg_catalog.=) ANY ('{rotated,retired}'::pg_catalog.text[])" \
	"   AND created_at OPERATOR(pg_catalog.<) $2" \
	" RETURNING purpose, version"

/*
 * SQL function: envault.destroy_superseded_keys(tenant text) returns integer
 *
 * The last step of re-keying a tenant (use_customer_key, rekey_tenant):
 * destroy every data key version created before it, once the values under
 * them were re-encrypted (reencrypt_column).  A value still under one of
 * them can no longer be decrypted.  Returns the number of keys destroyed.
 */
PG_FUNCTION_INFO_V1(envault_destroy_superseded_keys);
Datum
envault_destroy_superseded_keys(PG_FUNCTION_ARGS)
{
	char	   *tenant = lc_tenant_arg(fcinfo);
	EnvSpi		s;
	Oid			types[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		values[2];
	bool		isnull;
	uint64		i;
	uint64		n;

	env_spi_begin(&s);
	env_keystore_lock_tenant(&s, tenant, NULL);
	values[0] = CStringGetTextDatum(tenant);
	env_spi_run(LC_Q_REKEYED_AT, 1, types, values, SPI_OK_SELECT);
	values[1] = env_spi_col(&s, 1, &isnull, true, 8);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("envault tenant \"%s\" was never re-keyed", tenant),
				 errhint("Re-key it with envault.rekey_tenant() or envault.use_customer_key(), then re-encrypt its values with envault.reencrypt_column().")));
	env_spi_run(LC_Q_DESTROY_SUPERSEDED, 2, types, values, SPI_OK_UPDATE_RETURNING);
	n = SPI_processed;
	if (n > 0)
	{
		SPITupleTable *rows = SPI_tuptable;

		for (i = 0; i < n; i++)
		{
			char	   *purpose = TextDatumGetCString(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
			int32		version = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull));

			env_key_event(&s, "data key destroyed", tenant, purpose, version,
						  "superseded by re-keying");
		}
		env_keystore_changed();
	}
	env_spi_end(&s);
	PG_RETURN_INT32((int32) n);
}

#define LC_Q_SHRED_KEYS \
	"UPDATE envault.data_keys SET state = 'destroyed', wrapped_key = NULL," \
	"       state_changed_at = pg_catalog.now()" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.<>) 'destroyed'"

#define LC_Q_SHRED_TENANT \
	"UPDATE envault.tenants SET state = 'destroyed', wrapped_key = NULL," \
	"       master_kcv = NULL, customer_kcv = NULL, state_changed_at = pg_catalog.now()" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1"

/*
 * SQL function: envault.destroy_tenant(tenant text) returns void
 *
 * Crypto-shredding: every key of the tenant is wiped and its tokens are
 * revoked.  Irreversible.  A revoked tenant can be destroyed too.
 */
PG_FUNCTION_INFO_V1(envault_destroy_tenant);
Datum
envault_destroy_tenant(PG_FUNCTION_ARGS)
{
	char	   *tenant = lc_tenant_arg(fcinfo);
	EnvSpi		s;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *state;
	uint64		nkeys;
	char		detail[64];

	env_spi_begin(&s);
	state = lc_lock_tenant(&s, tenant);
	values[0] = CStringGetTextDatum(tenant);
	if (strcmp(state, "destroyed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the keys of envault tenant \"%s\" were already destroyed", tenant)));
	env_spi_run(LC_Q_SHRED_KEYS, 1, types, values, SPI_OK_UPDATE);
	nkeys = SPI_processed;
	env_spi_run(LC_Q_SHRED_TENANT, 1, types, values, SPI_OK_UPDATE);
	(void) env_tokens_revoke_tenant(&s, values[0]);
	snprintf(detail, sizeof(detail), UINT64_FORMAT " data keys destroyed", nkeys);
	env_key_event(&s, "tenant destroyed", tenant, NULL, -1, detail);
	env_keystore_changed();
	env_spi_end(&s);
	PG_RETURN_VOID();
}

/* Move a tenant from one state to another, or raise. */
static void
lc_tenant_state(FunctionCallInfo fcinfo, const char *from, const char *to,
				const char *event)
{
	char	   *tenant = lc_tenant_arg(fcinfo);
	EnvSpi		s;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *state;

	env_spi_begin(&s);
	state = lc_lock_tenant(&s, tenant);
	values[0] = CStringGetTextDatum(tenant);
	if (strcmp(state, from) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("envault tenant \"%s\" is %s, not %s", tenant, state, from)));
	env_spi_run(psprintf("UPDATE envault.tenants SET state = '%s', state_changed_at = pg_catalog.now()"
						 " WHERE tenant OPERATOR(pg_catalog.=) $1", to),
				1, types, values, SPI_OK_UPDATE);

	/*
	 * A revocation is recorded in the chain of no tenant: the tenant's own
	 * chain is locked until commit by any transaction of the tenant that
	 * creates or rotates a data key (its token holders' too), and a
	 * revocation must not wait for those.
	 */
	if (strcmp(to, "revoked") == 0)
		env_key_event(&s, event, NULL, NULL, -1,
					  psprintf("tenant %s", quote_literal_cstr(tenant)));
	else
		env_key_event(&s, event, tenant, NULL, -1, NULL);
	env_keystore_changed();
	env_spi_end(&s);
}

/*
 * SQL function: envault.revoke_tenant(tenant text) returns void
 *
 * Nothing of the tenant opens any more, in any backend, from its next
 * statement on, cached keys or not.  Reversible with unrevoke_tenant.
 */
PG_FUNCTION_INFO_V1(envault_revoke_tenant);
Datum
envault_revoke_tenant(PG_FUNCTION_ARGS)
{
	lc_tenant_state(fcinfo, "active", "revoked", "tenant revoked");
	PG_RETURN_VOID();
}

/* SQL function: envault.unrevoke_tenant(tenant text) returns void (alias restore_tenant) */
PG_FUNCTION_INFO_V1(envault_restore_tenant);
Datum
envault_restore_tenant(PG_FUNCTION_ARGS)
{
	lc_tenant_state(fcinfo, "revoked", "active", "tenant restored");
	PG_RETURN_VOID();
}
