/*-------------------------------------------------------------------------
 *
 * keystore.c
 *		Tenant keys and data keys: reading and writing the key tables,
 *		looking keys up, creating and rotating them.
 *
 * Key tables (envault.tenants, envault.data_keys) hold only wrapped keys.
 * Roles that may encrypt cannot read them, so this module reads and writes
 * them through the privileged SPI of spi.c, with every operator and
 * function schema-qualified so that a caller's search_path cannot
 * interfere.  That happens only on a miss of the key cache (keycache.c);
 * keywrap.c wraps and unwraps what the rows hold.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "keystore.h"

#include "keycache.h"
#include "keywrap.h"
#include "spi.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

/* settings */
static int	ks_data_key_max_age = 0;

static int32 ks_rotate(const char *tenant, const char *purpose, int max_age);

#define KS_Q_NAME_ENCODING \
	"SELECT name_encoding FROM envault.tenants WHERE tenant OPERATOR(pg_catalog.=) $1"

/*
 * A tenant's name is bound into its keys and values as bytes in the
 * database encoding of the day it was created (tenants.name_encoding).  A
 * dump restored into a database of another encoding changes those bytes
 * for a name that is not ASCII, and its keys no longer open: say so, rather
 * than suggest that the row was tampered with.  Called when a tenant key
 * fails authentication; returns if that is not the reason.
 */
static void
ks_check_name_encoding(const char *tenant)
{
	EnvSpi		s;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	char	   *created_in = NULL;
	const char *p;

	for (p = tenant; *p && !IS_HIGHBIT_SET(*p); p++)
		;
	if (*p == '\0')
		return;					/* ASCII reads the same in every encoding */
	env_spi_begin(&s);
	values[0] = CStringGetTextDatum(tenant);
	env_spi_run(KS_Q_NAME_ENCODING, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed > 0)
		created_in = env_spi_cstring(&s, 1, &isnull);
	env_spi_end(&s);
	if (created_in != NULL && strcmp(created_in, GetDatabaseEncodingName()) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("envault tenant \"%s\" was created in a database of encoding %s, not %s",
						tenant, created_in, GetDatabaseEncodingName()),
				 errdetail("A tenant's name is bound into its keys and values as bytes of the encoding it was created in, and this name is not ASCII."),
				 errhint("Restore the dump into a database of encoding %s.", created_in)));
}

/*
 * The tenant key, from the cache or unwrapped from its row.  The check value
 * stored with the row tells a wrong master key from a damaged row.
 *
 * Never inlined: inlined into the callers that rotate under PG_TRY, its
 * locals would be open to longjmp clobbering.
 */
static pg_noinline const EnvXaesKey *
ks_tenant_key(const char *tenant, const EnvTenantRow *row)
{
	EnvXaesKey *xk;
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;

	xk = env_keycache_tenant_key(tenant, row->key_version);
	if (xk != NULL)
		return xk;

	aad_len = env_tenant_wrap_aad(aad, tenant, strlen(tenant),
								  (uint32) row->key_version);
	if (row->customer)
		xk = env_keywrap_unwrap_customer(tenant, row, aad, aad_len);
	else
		xk = env_keywrap_unwrap(env_keywrap_master_for(tenant, row->kcv),
								row->wrapped, aad, aad_len);
	if (xk == NULL)
	{
		ks_check_name_encoding(tenant);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("wrapped key of tenant \"%s\" failed authentication", tenant),
				 errdetail("Its row in envault.tenants was altered or copied from another tenant.")));
	}

	env_keycache_add_tenant_key(tenant, row->key_version, row->customer, xk);
	return xk;
}

/* --- queries ------------------------------------------------------------ */

/* columns 1-4 and 10: the tenant (see ks_tenant_row); 5-9: the data key */
#define KS_Q_ACTIVE \
	"SELECT t.state, t.key_version, t.wrapped_key," \
	"       COALESCE(t.master_kcv, t.customer_kcv)," \
	"       d.key_id, d.version, d.wrapped_key, d.tenant_key_version, d.created_at," \
	"       t.key_source" \
	"  FROM envault.tenants t" \
	"  LEFT JOIN envault.data_keys d" \
	"    ON d.tenant OPERATOR(pg_catalog.=) t.tenant" \
	"   AND d.purpose OPERATOR(pg_catalog.=) $2" \
	"   AND d.state OPERATOR(pg_catalog.=) 'active'::pg_catalog.text" \
	" WHERE t.tenant OPERATOR(pg_catalog.=) $1"

/* columns 1-4 and 12: the tenant; 5-11: the data key */
#define KS_Q_BY_ID \
	"SELECT t.state, t.key_version, t.wrapped_key," \
	"       COALESCE(t.master_kcv, t.customer_kcv)," \
	"       d.key_id, d.version, d.wrapped_key, d.tenant_key_version," \
	"       d.tenant, d.purpose, d.state, t.key_source" \
	"  FROM envault.data_keys d" \
	"  JOIN envault.tenants t ON t.tenant OPERATOR(pg_catalog.=) d.tenant" \
	" WHERE d.key_id OPERATOR(pg_catalog.=) $1"

/* columns 1-4 and 5: the tenant (see ks_tenant_row) */
#define KS_Q_SHARE_TENANT \
	"SELECT state, key_version, wrapped_key, COALESCE(master_kcv, customer_kcv)," \
	"       key_source FROM envault.tenants" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 FOR KEY SHARE"

static void ks_tenant_row(EnvSpi *s, const char *tenant, EnvTenantRow *row,
						  int source_col);
static void ks_no_tenant(const char *tenant);

/*
 * How the transactions that touch a tenant's keys order themselves, so that
 * none of a tenant's own token holders can make a revocation wait:
 *	- creating a data key (a first encryption, put_secret) locks the
 *	  tenant's row FOR KEY SHARE only, as the foreign key of its insert
 *	  does anyway;
 *	- rotating or re-keying the tenant key locks the row FOR UPDATE, which
 *	  waits for every transaction holding it FOR KEY SHARE, that is for
 *	  every data key being created, so that none is wrapped under a tenant
 *	  key about to be replaced (and makes new creations wait for it);
 *	- rotating a data key by hand (rotate_data_key) locks the row FOR
 *	  UPDATE as well, so that it waits for a creation of the same
 *	  (tenant, purpose) instead of colliding with it;
 *	- the automatic rotation of an old data key (envault.data_key_max_age),
 *	  which may run in a token holder's transaction, takes the purpose lock
 *	  below and reads the row FOR KEY SHARE;
 *	- revoke_tenant locks the row FOR NO KEY UPDATE, which no FOR KEY SHARE
 *	  holder stands in the way of, and takes no other lock.
 * The purpose lock is one of envault's own, in the advisory lock space with
 * a field4 that SQL cannot name (SQL's advisory locks use 1 and 2; the
 * audit chains use CH_LOCK_FIELD4), so no role can take or hold it but
 * through envault.
 */
#define KS_LOCK_PURPOSE		0x4558

static void
ks_lock_purpose(const char *tenant, const char *purpose)
{
	LOCKTAG		tag;
	uint64		h = hash_bytes_extended((const unsigned char *) tenant,
										(int) strlen(tenant), KS_LOCK_PURPOSE);

	h = hash_bytes_extended((const unsigned char *) purpose,
							(int) strlen(purpose), h);
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 KS_LOCK_PURPOSE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* Read a tenant's row (as ks_tenant_row) and lock it FOR KEY SHARE. */
static void
ks_share_tenant(EnvSpi *s, const char *tenant, EnvTenantRow *row)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(tenant);
	env_spi_run(KS_Q_SHARE_TENANT, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ks_no_tenant(tenant);
	ks_tenant_row(s, tenant, row, 5);
}

#define KS_Q_EVENT \
	"INSERT INTO envault.key_events" \
	"  (actor, operation, tenant, purpose, version, detail)" \
	" VALUES ($1, $2, $3, $4, $5, $6)"

/*
 * Record a key operation in envault.key_events.  tenant, purpose, version
 * (when negative) and detail may be NULL.
 */
void
env_key_event(EnvSpi *s, const char *operation, const char *tenant,
			  const char *purpose, int32 version, const char *detail)
{
	Oid			types[6] = {NAMEOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID};
	Datum		values[6];
	char		nulls[6 + 1] = "      ";

	values[0] = CStringGetDatum(s->caller_name);
	values[1] = CStringGetTextDatum(operation);
	if (tenant)
		values[2] = CStringGetTextDatum(tenant);
	else
		nulls[2] = 'n';
	if (purpose)
		values[3] = CStringGetTextDatum(purpose);
	else
		nulls[3] = 'n';
	values[4] = Int32GetDatum(version);
	if (version < 0)
		nulls[4] = 'n';
	if (detail)
		values[5] = CStringGetTextDatum(detail);
	else
		nulls[5] = 'n';
	if (SPI_execute_with_args(KS_Q_EVENT, 6, types, values, nulls, false, 0)
		!= SPI_OK_INSERT)
		elog(ERROR, "could not record a key event");
}

/*
 * Read the tenant columns of the current result row.  A tenant whose keys
 * were destroyed, or that is revoked, opens nothing: raise that here, before
 * its (possibly NULL) key is looked at.
 */
static void
ks_tenant_row(EnvSpi *s, const char *tenant, EnvTenantRow *row, int source_col)
{
	bool		isnull;
	char	   *state = env_spi_cstring(s, 1, &isnull);

	if (strcmp(state, "destroyed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the keys of envault tenant \"%s\" were destroyed", tenant),
				 errdetail("The tenant was crypto-shredded: its data can never be decrypted again.")));
	if (strcmp(state, "revoked") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("envault tenant \"%s\" is revoked", tenant),
				 errdetail("Its keys cannot be used until it is unrevoked."),
				 errhint("An administrator can unrevoke it with envault.unrevoke_tenant().")));
	row->key_version = DatumGetInt32(env_spi_col(s, 2, &isnull, true, 4));
	row->wrapped = DatumGetByteaPP(env_spi_col(s, 3, &isnull, false, -1));
	row->kcv = DatumGetByteaPP(env_spi_col(s, 4, &isnull, false, -1));
	row->customer = strcmp(TextDatumGetCString(env_spi_col(s, source_col, &isnull,
														   false, -1)),
						   "customer") == 0;
}

#define KS_Q_NEXT_VERSION \
	"SELECT COALESCE(pg_catalog.max(version), 0) OPERATOR(pg_catalog.+) 1" \
	"  FROM envault.data_keys" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND purpose OPERATOR(pg_catalog.=) $2"

#define KS_Q_INSERT_DATA_KEY \
	"INSERT INTO envault.data_keys" \
	"  (key_id, tenant, purpose, version, state, wrapped_key," \
	"   tenant_key_version, created_by)" \
	" VALUES ($1, $2, $3, $4, 'active', $5, $6, $7)" \
	" ON CONFLICT DO NOTHING"

#define KS_Q_INSERT_TENANT \
	"INSERT INTO envault.tenants" \
	"  (tenant, key_version, wrapped_key, master_kcv, created_by)" \
	" VALUES ($1, 1, $2, $3, $4)" \
	" ON CONFLICT (tenant) DO NOTHING"

static uint64
ks_new_key_id(void)
{
	uint64		id = 0;

	while (id == 0)
	{
		if (!env_random_bytes((uint8 *) &id, sizeof(id)))
			env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "generating a key id");
		id &= UINT64CONST(0x7FFFFFFFFFFFFFFF);	/* a positive bigint */
	}
	return id;
}

/*
 * Create the next data key version for (tenant, purpose), active.  Returns
 * NULL if another transaction created one first; the caller looks again.
 */
static EnvDataKey *
ks_create_data_key(EnvSpi *s, const EnvXaesKey *tenant_key, const char *tenant,
				   const char *purpose, int32 tenant_key_version, bool customer)
{
	Oid			types[7] = {INT8OID, TEXTOID, TEXTOID, INT4OID, BYTEAOID,
	INT4OID, NAMEOID};
	Datum		values[7];
	bool		isnull;
	int32		version;
	uint64		key_id = ks_new_key_id();
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	EnvXaesKey *xk;
	bytea	   *wrapped;

	values[0] = CStringGetTextDatum(tenant);
	values[1] = CStringGetTextDatum(purpose);
	env_spi_run(KS_Q_NEXT_VERSION, 2, types + 1, values, SPI_OK_SELECT);
	version = DatumGetInt32(env_spi_col(s, 1, &isnull, true, 4));

	aad_len = env_dek_wrap_aad(aad, tenant, strlen(tenant), purpose,
							   strlen(purpose), (uint32) version, key_id);
	wrapped = env_keywrap_new_key(tenant_key, aad, aad_len, &xk);

	values[0] = Int64GetDatum((int64) key_id);
	values[1] = CStringGetTextDatum(tenant);
	values[2] = CStringGetTextDatum(purpose);
	values[3] = Int32GetDatum(version);
	values[4] = PointerGetDatum(wrapped);
	values[5] = Int32GetDatum(tenant_key_version);
	values[6] = CStringGetDatum(s->caller_name);
	PG_TRY();
	{
		env_spi_run(KS_Q_INSERT_DATA_KEY, 7, types, values, SPI_OK_INSERT);
	}
	PG_CATCH();
	{
		env_keycache_slot_free(xk);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (SPI_processed == 0)
	{
		env_keycache_slot_free(xk);
		return NULL;
	}
	/* recording the event can fail too (a cancel, a full disk) */
	PG_TRY();
	{
		env_key_event(s, "data key created", tenant, purpose, version, NULL);
	}
	PG_CATCH();
	{
		env_keycache_slot_free(xk);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return env_keycache_add_data_key(key_id, tenant, purpose, version, true,
									 GetCurrentTransactionStartTimestamp(), customer, xk);
}

/* Another transaction created a version of (tenant, purpose) first. */
static void
ks_creation_conflict(const char *tenant, const char *purpose)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to concurrent creation of a data key"),
			 errdetail("Another transaction created a data key of tenant \"%s\", purpose \"%s\" at the same time.",
					   tenant, purpose),
			 errhint("Retry the transaction.")));
}

static void
ks_no_tenant(const char *tenant)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("envault tenant \"%s\" does not exist", tenant),
			 errhint("Create it with envault.create_tenant().")));
}

/* Cache miss of the active key: read it, or create it. */
static EnvDataKey *
ks_load_active(const char *tenant, const char *purpose)
{
	EnvSpi		s;
	EnvDataKey *d = NULL;
	int			attempt;

	env_spi_begin(&s);
	for (attempt = 0; d == NULL && attempt < 3; attempt++)
	{
		Oid			types[2] = {TEXTOID, TEXTOID};
		Datum		values[2];
		bool		isnull;
		EnvTenantRow t;
		const EnvXaesKey *tkey;
		uint64		key_id;

		values[0] = CStringGetTextDatum(tenant);
		values[1] = CStringGetTextDatum(purpose);
		env_spi_run(KS_Q_ACTIVE, 2, types, values, SPI_OK_SELECT);
		if (SPI_processed == 0)
			ks_no_tenant(tenant);
		ks_tenant_row(&s, tenant, &t, 10);
		key_id = (uint64) DatumGetInt64(env_spi_col(&s, 5, &isnull, true, 8));

		if (!isnull)
		{
			EnvDataKey *cached = env_keycache_find_data_key(key_id);
			int32		version;
			int32		wrapped_under;
			bytea	   *wrapped;
			EnvXaesKey *xk;

			if (cached != NULL && env_keycache_use(cached))
			{
				/* cached by id, but not yet known to be the active one */
				env_keycache_set_active(tenant, purpose, key_id);
				d = cached;
				d->created_at = DatumGetTimestampTz(env_spi_col(&s, 9, &isnull, true, 8));
				break;
			}
			version = DatumGetInt32(env_spi_col(&s, 6, &isnull, true, 4));
			wrapped = DatumGetByteaPP(env_spi_col(&s, 7, &isnull, false, -1));
			wrapped_under = DatumGetInt32(env_spi_col(&s, 8, &isnull, true, 4));
			tkey = ks_tenant_key(tenant, &t);
			xk = env_keywrap_unwrap_data_key(tkey, t.key_version, wrapped_under, tenant,
											 purpose, version, key_id, wrapped);
			d = env_keycache_add_data_key(key_id, tenant, purpose, version, true,
										  DatumGetTimestampTz(env_spi_col(&s, 9, &isnull, true, 8)),
										  t.customer, xk);
			break;
		}

		if (XactReadOnly || RecoveryInProgress())
			ereport(ERROR,
					(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
					 errmsg("tenant \"%s\" has no data key for purpose \"%s\"",
							tenant, purpose),
					 errdetail("A data key cannot be created in a read-only transaction."),
					 errhint("Create it with envault.create_data_key() in a read-write transaction.")));

		/*
		 * Read the tenant's row again, as of now, and lock it FOR KEY SHARE
		 * until this transaction ends: a rotation of the tenant key waits for
		 * it (see above), and nothing this takes makes a revocation wait.
		 */
		ks_share_tenant(&s, tenant, &t);

		tkey = ks_tenant_key(tenant, &t);
		d = ks_create_data_key(&s, tkey, tenant, purpose, t.key_version, t.customer);
		if (d == NULL && IsolationUsesXactSnapshot())
			ks_creation_conflict(tenant, purpose);
	}
	if (d == NULL)
		ks_creation_conflict(tenant, purpose);
	env_spi_end(&s);
	return d;
}

/* --- public interface --------------------------------------------------- */

/* The active data key of (tenant, purpose), for names already checked. */
static const EnvDataKey *
ks_active_key(const char *tenant, size_t tenant_len,
			  const char *purpose, size_t purpose_len)
{
	const EnvDataKey *cached;
	char		tbuf[ENV_TENANT_MAXLEN + 1];
	char		pbuf[ENV_PURPOSE_MAXLEN + 1];

	cached = env_keycache_active_key(tenant, tenant_len, purpose, purpose_len);
	if (cached != NULL)
		return cached;

	memcpy(tbuf, tenant, tenant_len);
	tbuf[tenant_len] = '\0';
	memcpy(pbuf, purpose, purpose_len);
	pbuf[purpose_len] = '\0';
	return ks_load_active(tbuf, pbuf);
}

/*
 * The active data key of (tenant, purpose), created on first use.  Names are
 * validated before the cache is consulted.
 */
const EnvDataKey *
env_keystore_active_key(const char *tenant, size_t tenant_len,
						const char *purpose, size_t purpose_len)
{
	const EnvDataKey *key;

	env_check_tenant_name(tenant, tenant_len);
	env_check_purpose_name(purpose, purpose_len);
	env_keycache_check_generation();
	key = ks_active_key(tenant, tenant_len, purpose, purpose_len);

	/*
	 * envault.data_key_max_age: an active key that old is rotated before it
	 * encrypts again.  Not in read-only transactions, which keep using it (it
	 * is no less safe: XAES-256-GCM has no per-key usage bound), and never
	 * for blind-index keys, whose indexes would change.
	 */
	if (ks_data_key_max_age > 0 && key->created_at != 0 &&
		!XactReadOnly && !RecoveryInProgress() &&
		GetCurrentTransactionStartTimestamp() - key->created_at >=
		(int64) ks_data_key_max_age * USECS_PER_SEC)
	{
		char		tbuf[ENV_TENANT_MAXLEN + 1];
		char		pbuf[ENV_PURPOSE_MAXLEN + 1];

		strlcpy(tbuf, key->tenant, sizeof(tbuf));
		strlcpy(pbuf, key->purpose, sizeof(pbuf));
		(void) ks_rotate(tbuf, pbuf, ks_data_key_max_age);
		env_keycache_check_generation();
		key = ks_active_key(tenant, tenant_len, purpose, purpose_len);
	}
	return key;
}

/*
 * The key of the blind indexes of (tenant, purpose): a data key of its own,
 * under the reserved purpose "_bidx.<purpose>", which user purposes cannot
 * name (they never start with "_").  It is never used to encrypt.
 */
const EnvDataKey *
env_keystore_index_key(const char *tenant, size_t tenant_len,
					   const char *purpose, size_t purpose_len)
{
	char		ipurpose[ENV_PURPOSE_MAXLEN + 1];

	env_check_tenant_name(tenant, tenant_len);
	env_check_purpose_name(purpose, purpose_len);
	if (purpose_len > ENV_PURPOSE_MAXLEN - ENV_INDEX_PREFIX_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("purpose of a blind index is too long"),
				 errdetail("A blind index purpose can be at most %d characters.",
						   ENV_PURPOSE_MAXLEN - ENV_INDEX_PREFIX_LEN)));
	env_keycache_check_generation();
	memcpy(ipurpose, ENV_INDEX_PREFIX, ENV_INDEX_PREFIX_LEN);
	memcpy(ipurpose + ENV_INDEX_PREFIX_LEN, purpose, purpose_len);
	return ks_active_key(tenant, tenant_len, ipurpose,
						 ENV_INDEX_PREFIX_LEN + purpose_len);
}

/*
 * The data key of the secrets store of a tenant: the reserved purpose
 * "_secrets", which user purposes cannot name.
 */
const EnvDataKey *
env_keystore_secrets_key(const char *tenant, size_t tenant_len)
{
	env_check_tenant_name(tenant, tenant_len);
	env_keycache_check_generation();
	return ks_active_key(tenant, tenant_len, ENV_SECRETS_PURPOSE,
						 strlen(ENV_SECRETS_PURPOSE));
}

#define KS_Q_TENANT_EXISTS \
	"SELECT 1 FROM envault.tenants WHERE tenant OPERATOR(pg_catalog.=) $1"

bool
env_keystore_tenant_exists(const char *tenant, size_t tenant_len)
{
	EnvSpi		s;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		exists;

	env_check_tenant_name(tenant, tenant_len);
	values[0] = PointerGetDatum(cstring_to_text_with_len(tenant, tenant_len));
	env_spi_begin(&s);
	env_spi_run(KS_Q_TENANT_EXISTS, 1, types, values, SPI_OK_SELECT);
	exists = (SPI_processed > 0);
	env_spi_end(&s);
	return exists;
}

static void
ks_no_data_key(uint64 key_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("envault data key of this ciphertext does not exist"),
			 errdetail("The ciphertext names data key id " INT64_FORMAT ", which is not in envault.data_keys.",
					   (int64) key_id),
			 errhint("The value may come from another database, or its header was altered.")));
}

/*
 * May the caller use the keys of the tenant a ciphertext names?  Checked
 * with the caller's own role, not the key store's, while the key tables are
 * open: before anything else is read about that tenant or its key, so that
 * a role without access learns nothing of either (not its state, not its
 * integrity), and before anything is unwrapped into this backend.
 */
static void
ks_check_caller(EnvSpi *s, const char *tenant)
{
	Oid			owner;
	int			sec;

	GetUserIdAndSecContext(&owner, &sec);
	SetUserIdAndSecContext(s->save_userid, s->save_sec);
	env_tenant_check(tenant, strlen(tenant), true);
	SetUserIdAndSecContext(owner, sec);
}

/*
 * The data key a ciphertext names, from the cache or its row.  The caller
 * must be allowed to use its tenant (env_tenant_check): a role that is not
 * gets the one "belongs to another tenant" error, whatever state that
 * tenant and key are in.
 */
const EnvDataKey *
env_keystore_key_by_id(uint64 key_id)
{
	EnvDataKey *d;
	EnvSpi		s;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	bool		isnull;
	EnvTenantRow t;
	int32		version;
	int32		wrapped_under;
	bytea	   *wrapped;
	char	   *tenant;
	char	   *purpose;
	char	   *state;
	const EnvXaesKey *tkey;
	EnvXaesKey *xk;

	env_keycache_check_generation();
	d = env_keycache_find_data_key(key_id);
	if (d != NULL)
	{
		env_tenant_check(d->tenant, strlen(d->tenant), true);
		if (env_keycache_use(d))
			return d;
	}

	env_spi_begin(&s);
	values[0] = Int64GetDatum((int64) key_id);
	env_spi_run(KS_Q_BY_ID, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ks_no_data_key(key_id);

	tenant = env_spi_cstring(&s, 9, &isnull);
	purpose = env_spi_cstring(&s, 10, &isnull);
	ks_check_caller(&s, tenant);
	ks_tenant_row(&s, tenant, &t, 12);
	version = DatumGetInt32(env_spi_col(&s, 6, &isnull, true, 4));
	state = env_spi_cstring(&s, 11, &isnull);
	if (strcmp(state, "retired") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("data key of tenant \"%s\", purpose \"%s\", version %d is retired",
						tenant, purpose, version),
				 errdetail("A retired data key decrypts nothing."),
				 errhint("An administrator can unretire it with envault.unretire_data_key().")));
	if (strcmp(state, "destroyed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("data key of tenant \"%s\", purpose \"%s\", version %d was destroyed",
						tenant, purpose, version),
				 errdetail("Values encrypted under it can never be decrypted again.")));
	wrapped = DatumGetByteaPP(env_spi_col(&s, 7, &isnull, false, -1));
	wrapped_under = DatumGetInt32(env_spi_col(&s, 8, &isnull, true, 4));

	tkey = ks_tenant_key(tenant, &t);
	xk = env_keywrap_unwrap_data_key(tkey, t.key_version, wrapped_under, tenant, purpose,
									 version, key_id, wrapped);
	d = env_keycache_add_data_key(key_id, tenant, purpose, version, false, 0, t.customer, xk);
	env_spi_end(&s);
	return d;
}

#define KS_Q_KEY_STATE \
	"SELECT d.tenant, d.state, t.state" \
	"  FROM envault.data_keys d" \
	"  JOIN envault.tenants t ON t.tenant OPERATOR(pg_catalog.=) d.tenant" \
	" WHERE d.key_id OPERATOR(pg_catalog.=) $1"

/*
 * Why the data key a ciphertext names cannot open anything: "retired",
 * "destroyed", "tenant revoked" or "tenant destroyed"; NULL when it can
 * (it may still fail to, for example when a customer withholds its key).
 * Never raises for those states, unlike env_keystore_key_by_id(); raises
 * for a key that does not exist, and checks the tenant like it does.
 */
const char *
env_keystore_unusable(uint64 key_id)
{
	EnvDataKey *d;
	const char *utenant;
	EnvSpi		s;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	bool		isnull;
	char	   *tenant;
	char	   *kstate;
	char	   *tstate;
	const char *why = NULL;

	env_keycache_check_generation();
	d = env_keycache_find_data_key(key_id);
	if (d != NULL)
	{
		env_tenant_check(d->tenant, strlen(d->tenant), true);
		if (!env_keycache_expired(d))
			return NULL;
	}
	why = env_keycache_unusable(key_id, &utenant);
	if (why != NULL)
	{
		env_tenant_check(utenant, strlen(utenant), true);
		return why;
	}

	env_spi_begin(&s);
	values[0] = Int64GetDatum((int64) key_id);
	env_spi_run(KS_Q_KEY_STATE, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ks_no_data_key(key_id);
	tenant = env_spi_cstring(&s, 1, &isnull);
	ks_check_caller(&s, tenant);
	kstate = env_spi_cstring(&s, 2, &isnull);
	tstate = env_spi_cstring(&s, 3, &isnull);
	env_spi_end(&s);

	if (strcmp(tstate, "destroyed") == 0)
		why = "tenant destroyed";
	else if (strcmp(tstate, "revoked") == 0)
		why = "tenant revoked";
	else if (strcmp(kstate, "retired") == 0)
		why = "retired";
	else if (strcmp(kstate, "destroyed") == 0)
		why = "destroyed";
	if (why == NULL)
		return NULL;

	env_keycache_add_unusable(key_id, tenant, why);
	return why;
}

void
env_keystore_create_tenant(const char *tenant, size_t tenant_len)
{
	EnvSpi		s;
	Oid			types[4] = {TEXTOID, BYTEAOID, BYTEAOID, NAMEOID};
	Datum		values[4];
	char	   *name;
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	bytea	   *wrapped;
	bytea	   *kcv;

	env_check_tenant_name(tenant, tenant_len);
	name = pnstrdup(tenant, tenant_len);

	aad_len = env_tenant_wrap_aad(aad, name, tenant_len, 1);
	wrapped = env_keywrap_new_key(env_master_key(), aad, aad_len, NULL);
	kcv = palloc(VARHDRSZ + ENV_KCV_LEN);
	SET_VARSIZE(kcv, VARHDRSZ + ENV_KCV_LEN);
	memcpy(VARDATA(kcv), env_master_kcv(), ENV_KCV_LEN);

	env_spi_begin(&s);
	values[0] = CStringGetTextDatum(name);
	values[1] = PointerGetDatum(wrapped);
	values[2] = PointerGetDatum(kcv);
	values[3] = CStringGetDatum(s.caller_name);
	env_spi_run(KS_Q_INSERT_TENANT, 4, types, values, SPI_OK_INSERT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("envault tenant \"%s\" already exists", name)));
	env_key_event(&s, "tenant created", name, NULL, -1, NULL);
	env_spi_end(&s);
}

int32
env_keystore_create_data_key(const char *tenant, size_t tenant_len,
							 const char *purpose, size_t purpose_len)
{
	return env_keystore_active_key(tenant, tenant_len, purpose,
								   purpose_len)->version;
}

/* --- rotation ------------------------------------------------------------ */

#define KS_Q_LOCK_TENANT \
	"SELECT state, key_version, wrapped_key, COALESCE(master_kcv, customer_kcv)," \
	"       key_source FROM envault.tenants" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE"

/*
 * Lock a tenant's row (serialising every key change of that tenant, and
 * waiting for the sessions creating a data key of it, which share-lock the
 * row: see ks_load_active) and read it; raises for unknown, revoked and
 * destroyed tenants.
 */
void
env_keystore_lock_tenant(EnvSpi *s, const char *tenant, EnvTenantRow *row)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(tenant);
	env_spi_run(KS_Q_LOCK_TENANT, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ks_no_tenant(tenant);
	if (row)
		ks_tenant_row(s, tenant, row, 5);
}

#define KS_Q_LOCK_TENANT_FOR_UPDATE \
	"SELECT state, key_version, wrapped_key, COALESCE(master_kcv, customer_kcv)," \
	"       key_source FROM envault.tenants" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 FOR UPDATE"

/* The tenant's row, locked FOR UPDATE: waits for its data key creations. */
static void
ks_lock_tenant_for_update(EnvSpi *s, const char *tenant, EnvTenantRow *row)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(tenant);
	env_spi_run(KS_Q_LOCK_TENANT_FOR_UPDATE, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ks_no_tenant(tenant);
	ks_tenant_row(s, tenant, row, 5);
}

#define KS_Q_RETIRE_ACTIVE \
	"UPDATE envault.data_keys SET state = 'rotated', state_changed_at = pg_catalog.now()" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND purpose OPERATOR(pg_catalog.=) $2" \
	"   AND state OPERATOR(pg_catalog.=) 'active'"

#define KS_Q_ACTIVE_AGE \
	"SELECT pg_catalog.now() OPERATOR(pg_catalog.-) created_at" \
	"       OPERATOR(pg_catalog.>=) pg_catalog.make_interval(secs => $3)" \
	"  FROM envault.data_keys" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND purpose OPERATOR(pg_catalog.=) $2" \
	"   AND state OPERATOR(pg_catalog.=) 'active'"

/*
 * Rotate (tenant, purpose), names already checked.  With max_age > 0, only
 * if its active key is at least max_age seconds old once the tenant is
 * locked, so that sessions racing to rotate an old key rotate it once.
 * Returns the new version, or 0 when nothing was rotated.
 */
static int32
ks_rotate(const char *tenant, const char *purpose, int max_age)
{
	EnvSpi		s;
	EnvTenantRow t;
	Oid			types[3] = {TEXTOID, TEXTOID, FLOAT8OID};
	Datum		values[3];
	EnvDataKey *d;
	int32		version;
	int			attempt;
	char		detail[96];

	env_spi_begin(&s);
	if (max_age > 0)
	{
		/* automatic: maybe in a token holder's transaction (see above) */
		ks_lock_purpose(tenant, purpose);
		ks_share_tenant(&s, tenant, &t);
	}
	else
		ks_lock_tenant_for_update(&s, tenant, &t);
	values[0] = CStringGetTextDatum(tenant);
	values[1] = CStringGetTextDatum(purpose);
	if (max_age > 0)
	{
		bool		isnull;

		values[2] = Float8GetDatum((double) max_age);
		env_spi_run(KS_Q_ACTIVE_AGE, 3, types, values, SPI_OK_SELECT);
		if (SPI_processed == 0 ||
			!DatumGetBool(env_spi_col(&s, 1, &isnull, true, 1)))
		{
			env_spi_end(&s);
			return 0;
		}
	}
	env_keystore_changed();

	/*
	 * A transaction creating the first data key of (tenant, purpose) does not
	 * lock the tenant's row against this one: if it commits first, the
	 * version created here collides with its own.  Then retire that one too
	 * and try again (reading as of now, its key is visible), or, under a
	 * transaction snapshot, ask for a retry.
	 */
	for (attempt = 0;; attempt++)
	{
		env_spi_run(KS_Q_RETIRE_ACTIVE, 2, types, values, SPI_OK_UPDATE);
		d = ks_create_data_key(&s, ks_tenant_key(tenant, &t),
							   tenant, purpose, t.key_version, t.customer);
		if (d != NULL)
			break;
		if (IsolationUsesXactSnapshot() || attempt >= 2)
			ks_creation_conflict(tenant, purpose);
	}
	version = d->version;
	if (max_age > 0)
		snprintf(detail, sizeof(detail),
				 "version %d is now active; automatic, the previous one was older than %d s",
				 version, max_age);
	else
		snprintf(detail, sizeof(detail), "version %d is now active", version);
	env_key_event(&s, "data key rotated", tenant, purpose, version, detail);
	env_spi_end(&s);
	return version;
}

/*
 * A new active data key version for (tenant, purpose); the previous one is
 * rotated: it still decrypts, it never encrypts again.  Returns the new
 * version.
 */
int32
env_keystore_rotate_data_key(const char *tenant, size_t tenant_len,
							 const char *purpose, size_t purpose_len)
{
	env_check_tenant_name(tenant, tenant_len);
	env_check_purpose_name(purpose, purpose_len);
	return ks_rotate(pnstrdup(tenant, tenant_len),
					 pnstrdup(purpose, purpose_len), 0);
}

#define KS_Q_TENANT_DATA_KEYS \
	"SELECT key_id, purpose, version, wrapped_key, tenant_key_version" \
	"  FROM envault.data_keys" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1" \
	"   AND state OPERATOR(pg_catalog.<>) 'destroyed'"

#define KS_Q_REWRAP_DATA_KEY \
	"UPDATE envault.data_keys SET wrapped_key = $2, tenant_key_version = $3" \
	" WHERE key_id OPERATOR(pg_catalog.=) $1"

#define KS_Q_NEW_TENANT_KEY \
	"UPDATE envault.tenants SET key_version = $2, wrapped_key = $3," \
	"       master_kcv = CASE WHEN key_source OPERATOR(pg_catalog.=) 'master' THEN $4 END," \
	"       state_changed_at = pg_catalog.now()" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1"

/*
 * Rewrap every data key of a tenant (locked, row t) from its current tenant
 * key to a new one of version new_version.  Returns how many.
 */
static uint64
ks_rewrap_data_keys(const char *tname, const EnvTenantRow *t,
					const EnvXaesKey *old_key, const EnvXaesKey *new_key,
					int32 new_version)
{
	Oid			types[3] = {INT8OID, BYTEAOID, INT4OID};
	Oid			ttypes[1] = {TEXTOID};
	Datum		values[3];
	SPITupleTable *dks;
	uint64		n;
	uint64		i;
	SPIPlanPtr	rewrap;
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;

	values[0] = CStringGetTextDatum(tname);
	env_spi_run(KS_Q_TENANT_DATA_KEYS, 1, ttypes, values, SPI_OK_SELECT);
	dks = SPI_tuptable;
	n = SPI_processed;
	rewrap = SPI_prepare(KS_Q_REWRAP_DATA_KEY, 3, types);
	if (rewrap == NULL)
		elog(ERROR, "could not prepare the data key rewrap");
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = dks->vals[i];
		bool		isnull;
		uint64		key_id = (uint64) DatumGetInt64(SPI_getbinval(tup, dks->tupdesc, 1, &isnull));
		char	   *purpose = TextDatumGetCString(SPI_getbinval(tup, dks->tupdesc, 2, &isnull));
		int32		version = DatumGetInt32(SPI_getbinval(tup, dks->tupdesc, 3, &isnull));
		bytea	   *wrapped = DatumGetByteaPP(SPI_getbinval(tup, dks->tupdesc, 4, &isnull));
		int32		under = DatumGetInt32(SPI_getbinval(tup, dks->tupdesc, 5, &isnull));
		bytea	   *rewrapped;
		EnvCryptoStatus st;

		if (under != t->key_version)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("data key of tenant \"%s\", purpose \"%s\", version %d is wrapped under tenant key version %d, not the current version %d",
							tname, purpose, version, under, t->key_version)));
		aad_len = env_dek_wrap_aad(aad, tname, strlen(tname), purpose,
								   strlen(purpose), (uint32) version, key_id);
		st = env_keywrap_rewrap(old_key, new_key, wrapped, aad, aad_len,
								&rewrapped);
		if (st == ENV_CRYPTO_AUTH_FAILED)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("wrapped data key of tenant \"%s\", purpose \"%s\", version %d failed authentication",
							tname, purpose, version)));
		if (st != ENV_CRYPTO_OK)
			env_error_crypto(st, "rewrapping a data key");
		values[0] = Int64GetDatum((int64) key_id);
		values[1] = PointerGetDatum(rewrapped);
		values[2] = Int32GetDatum(new_version);
		if (SPI_execute_plan(rewrap, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not rewrap a data key");
	}
	SPI_freeplan(rewrap);
	return n;
}

/*
 * A new key for a tenant, and every data key of the tenant rewrapped under
 * it, in this transaction.  No data ciphertext changes; the old wrapped
 * tenant key is gone once this commits.  Returns the new key version.
 */
int32
env_keystore_rotate_tenant_key(const char *tenant, size_t tenant_len)
{
	EnvSpi		s;
	EnvTenantRow t;
	char	   *tname;
	const EnvXaesKey *old_key;
	EnvXaesKey *new_key;
	bytea	   *new_wrapped;
	bytea	   *kcv;
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	int32		new_version;
	Oid			ttypes[4] = {TEXTOID, INT4OID, BYTEAOID, BYTEAOID};
	Datum		values[4];
	volatile uint64 n = 0;
	char		detail[96];

	env_check_tenant_name(tenant, tenant_len);
	tname = pnstrdup(tenant, tenant_len);

	env_spi_begin(&s);
	ks_lock_tenant_for_update(&s, tname, &t);
	env_keystore_changed();
	old_key = ks_tenant_key(tname, &t);
	new_version = t.key_version + 1;
	aad_len = env_tenant_wrap_aad(aad, tname, strlen(tname), (uint32) new_version);
	if (t.customer)
	{
		uint8		ckcv[ENV_KCV_LEN];

		new_wrapped = env_keywrap_new_key_customer(tname, &t, aad, aad_len, &new_key, ckcv);
	}
	else
		new_wrapped = env_keywrap_new_key(env_master_key(), aad, aad_len, &new_key);

	PG_TRY();
	{
		n = ks_rewrap_data_keys(tname, &t, old_key, new_key, new_version);
	}
	PG_FINALLY();
	{
		env_keycache_slot_free(new_key);
	}
	PG_END_TRY();

	kcv = palloc(VARHDRSZ + ENV_KCV_LEN);
	SET_VARSIZE(kcv, VARHDRSZ + ENV_KCV_LEN);
	memcpy(VARDATA(kcv), env_master_kcv(), ENV_KCV_LEN);
	values[0] = CStringGetTextDatum(tname);
	values[1] = Int32GetDatum(new_version);
	values[2] = PointerGetDatum(new_wrapped);
	values[3] = PointerGetDatum(kcv);
	env_spi_run(KS_Q_NEW_TENANT_KEY, 4, ttypes, values, SPI_OK_UPDATE);
	snprintf(detail, sizeof(detail), "key version %d; " UINT64_FORMAT " data keys rewrapped",
			 new_version, n);
	env_key_event(&s, "tenant key rotated", tname, NULL, -1, detail);
	env_spi_end(&s);
	return new_version;
}

/* --- customer-managed keys (BYOK) ---------------------------------------- */

#define KS_Q_SET_SOURCE \
	"UPDATE envault.tenants SET key_source = $2, wrapped_key = $3," \
	"       master_kcv = $4, customer_kcv = $5, state_changed_at = pg_catalog.now()" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1"


/*
 * Raise if rewrapping a tenant key failed (st, from env_keywrap_rewrap):
 * a key that fails authentication was tampered with, not misconfigured.
 */
static void
ks_tenant_rewrapped(EnvCryptoStatus st, const char *tenant)
{
	if (st == ENV_CRYPTO_AUTH_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("wrapped key of tenant \"%s\" failed authentication", tenant),
				 errdetail("Its row in envault.tenants was altered or copied from another tenant.")));
	if (st != ENV_CRYPTO_OK)
		env_error_crypto(st, "rewrapping a tenant key");
}

/*
 * Move a tenant key from its customer-managed key back to the master key:
 * unwrap it under the one, wrap it under the other, in this transaction.
 * The tenant key itself does not change, so no data key is touched
 * (onboarding goes the other way by re-keying: env_keystore_rekey_tenant).
 */
void
env_keystore_use_master_key(const char *tenant, size_t tenant_len)
{
	EnvSpi		s;
	EnvTenantRow t;
	char	   *tname;
	uint8		cmk[ENV_KEY_LEN];
	uint8		ckcv[ENV_KCV_LEN];
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	EnvXaesKey	kek;
	EnvCryptoStatus st;
	bytea	   *rewrapped;
	Oid			types[5] = {TEXTOID, TEXTOID, BYTEAOID, BYTEAOID, BYTEAOID};
	Datum		values[5];
	char		nulls[5 + 1] = "     ";
	char		detail[96];

	env_check_tenant_name(tenant, tenant_len);
	tname = pnstrdup(tenant, tenant_len);
	env_spi_begin(&s);
	env_keystore_lock_tenant(&s, tname, &t);
	if (!t.customer)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("envault tenant \"%s\" already uses the master key", tname)));

	/* whatever may raise, before the customer key is in memory */
	(void) env_master_key();
	env_customer_key(tname, cmk, ckcv);
	if (!env_keywrap_kcv_is(t.kcv, ckcv))
	{
		env_wipe(cmk, sizeof(cmk));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("customer key of envault tenant \"%s\" does not match the key that wraps its tenant key", tname)));
	}
	if (!env_xaes_key_init(&kek, cmk))
	{
		env_wipe(cmk, sizeof(cmk));
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "preparing a customer key");
	}
	env_wipe(cmk, sizeof(cmk));

	aad_len = env_tenant_wrap_aad(aad, tname, strlen(tname), (uint32) t.key_version);
	st = env_keywrap_rewrap(&kek, env_master_key(), t.wrapped, aad, aad_len,
							&rewrapped);
	env_xaes_key_clear(&kek);
	ks_tenant_rewrapped(st, tname);

	env_keystore_changed();
	values[0] = CStringGetTextDatum(tname);
	values[1] = CStringGetTextDatum("master");
	values[2] = PointerGetDatum(rewrapped);
	values[3] = PointerGetDatum(env_keywrap_kcv_bytea(env_master_kcv()));
	nulls[4] = 'n';
	if (SPI_execute_with_args(KS_Q_SET_SOURCE, 5, types, values, nulls, false, 0)
		!= SPI_OK_UPDATE)
		elog(ERROR, "could not update the tenant key");
	snprintf(detail, sizeof(detail), "customer key check value %s",
			 env_kcv_fingerprint(ckcv));
	env_key_event(&s, "customer key removed", tname, NULL, -1, detail);
	env_spi_end(&s);
}

/* --- re-keying ------------------------------------------------------------ */

#define KS_Q_REKEY_TENANT \
	"UPDATE envault.tenants SET key_version = $2, wrapped_key = $3, key_source = $4," \
	"       master_kcv = $5, customer_kcv = $6, rekeyed_at = pg_catalog.now()," \
	"       state_changed_at = pg_catalog.now()" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1"

#define KS_Q_ACTIVE_PURPOSES \
	"SELECT purpose FROM envault.data_keys" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'active'" \
	" ORDER BY purpose"

/*
 * Re-key a tenant, in this transaction: a fresh tenant key, wrapped by the
 * tenant's customer-managed key (with to_customer, or when the tenant uses
 * one already) or by the master key; every data key rewrapped under it;
 * and a fresh active data key for every purpose that has one, the previous
 * active keys rotated.  From then on nothing new is encrypted under a key
 * that any copy of the key tables from before could open.  Values under
 * the superseded data keys still decrypt (they are rewrapped) until they
 * are re-encrypted (reencrypt_column) and the superseded keys destroyed
 * (destroy_superseded_keys, which reads tenants.rekeyed_at).  Returns the
 * number of data keys created.
 */
int32
env_keystore_rekey_tenant(const char *tenant, size_t tenant_len, bool to_customer)
{
	EnvSpi		s;
	EnvTenantRow t;
	char	   *tname;
	bool		customer;
	const EnvXaesKey *old_key;
	EnvXaesKey *new_key;
	bytea	   *new_wrapped;
	uint8		ckcv[ENV_KCV_LEN];
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	int32		new_version;
	Oid			types[6] = {TEXTOID, INT4OID, BYTEAOID, TEXTOID, BYTEAOID, BYTEAOID};
	Datum		values[6];
	char		nulls[6 + 1] = "      ";
	volatile uint64 nrewrapped = 0;
	volatile int32 ncreated = 0;
	uint64		i;

	env_check_tenant_name(tenant, tenant_len);
	tname = pnstrdup(tenant, tenant_len);

	env_spi_begin(&s);
	ks_lock_tenant_for_update(&s, tname, &t);
	if (to_customer && t.customer)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("envault tenant \"%s\" already uses a customer-managed key", tname),
				 errhint("To give it fresh keys under the same customer key, use envault.rekey_tenant().")));
	customer = to_customer || t.customer;
	env_keystore_changed();
	old_key = ks_tenant_key(tname, &t);
	new_version = t.key_version + 1;
	aad_len = env_tenant_wrap_aad(aad, tname, strlen(tname), (uint32) new_version);
	if (customer)
		new_wrapped = env_keywrap_new_key_customer(tname, &t, aad, aad_len, &new_key, ckcv);
	else
		new_wrapped = env_keywrap_new_key(env_master_key(), aad, aad_len, &new_key);

	PG_TRY();
	{
		List	   *purposes = NIL;
		ListCell   *lc;

		nrewrapped = ks_rewrap_data_keys(tname, &t, old_key, new_key, new_version);

		values[0] = CStringGetTextDatum(tname);
		values[1] = Int32GetDatum(new_version);
		values[2] = PointerGetDatum(new_wrapped);
		values[3] = CStringGetTextDatum(customer ? "customer" : "master");
		if (customer)
		{
			nulls[4] = 'n';
			values[5] = PointerGetDatum(env_keywrap_kcv_bytea(ckcv));
		}
		else
		{
			values[4] = PointerGetDatum(env_keywrap_kcv_bytea(env_master_kcv()));
			nulls[5] = 'n';
		}
		if (SPI_execute_with_args(KS_Q_REKEY_TENANT, 6, types, values, nulls, false, 0)
			!= SPI_OK_UPDATE)
			elog(ERROR, "could not update the tenant key");

		/* a fresh active key for every purpose, under the new tenant key */
		env_spi_run(KS_Q_ACTIVE_PURPOSES, 1, types, values, SPI_OK_SELECT);
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			purposes = lappend(purposes,
							   TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[i],
																 SPI_tuptable->tupdesc,
																 1, &isnull)));
		}
		foreach(lc, purposes)
		{
			char	   *purpose = lfirst(lc);
			Oid			ptypes[2] = {TEXTOID, TEXTOID};
			Datum		pvalues[2];

			pvalues[0] = CStringGetTextDatum(tname);
			pvalues[1] = CStringGetTextDatum(purpose);
			env_spi_run(KS_Q_RETIRE_ACTIVE, 2, ptypes, pvalues, SPI_OK_UPDATE);
			if (ks_create_data_key(&s, new_key, tname, purpose, new_version, customer) == NULL)
				ks_creation_conflict(tname, purpose);
			ncreated++;
		}
	}
	PG_FINALLY();
	{
		env_keycache_slot_free(new_key);
	}
	PG_END_TRY();

	env_key_event(&s, to_customer ? "tenant re-keyed under a customer key" : "tenant re-keyed",
				  tname, NULL, -1,
				  psprintf("key version %d under the %s key%s%s; " UINT64_FORMAT " data keys rewrapped, %d new active data keys",
						   new_version, customer ? "customer" : "master",
						   customer ? " with check value " : "",
						   customer ? env_kcv_fingerprint(ckcv) : "",
						   (uint64) nrewrapped, (int) ncreated));
	env_spi_end(&s);
	return ncreated;
}

/* --- master key rotation ------------------------------------------------- */

#define KS_Q_UNDER_PREVIOUS \
	"SELECT tenant, key_version, wrapped_key FROM envault.tenants" \
	" WHERE master_kcv OPERATOR(pg_catalog.=) $1" \
	" ORDER BY tenant LIMIT $2 FOR UPDATE SKIP LOCKED"

#define KS_Q_REWRAP_TENANT \
	"UPDATE envault.tenants SET wrapped_key = $2, master_kcv = $3" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1"

#define KS_Q_COUNT_UNDER \
	"SELECT pg_catalog.count(*) FROM envault.tenants" \
	" WHERE master_kcv OPERATOR(pg_catalog.=) $1"

/*
 * Rewrap up to batch_size tenant keys from the previous master key to the
 * current one, in the caller's transaction.  Returns how many it rewrapped
 * and, in *remaining, how many are left under the previous key.  Tenant keys
 * do not change, so nothing cached goes stale.
 */
int64
env_keystore_rewrap_tenants(int32 batch_size, int64 *remaining)
{
	EnvSpi		s;
	const uint8 *pkcv;
	const EnvXaesKey *previous = env_previous_master_key(&pkcv);
	const EnvXaesKey *current;
	Oid			types[3] = {TEXTOID, BYTEAOID, BYTEAOID};
	Oid			qtypes[2] = {BYTEAOID, INT4OID};
	Datum		values[3];
	bytea	   *pkcv_b;
	bytea	   *mkcv_b;
	SPITupleTable *rows;
	uint64		n;
	uint64		i;
	bool		isnull;
	char		detail[96];

	if (previous == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no previous envault master key is configured"),
				 errhint("Set envault.previous_master_key_file (or _key, or _key_command) to the old key and the master key settings to the new one, and restart the server.")));
	if (batch_size < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be at least 1")));
	current = env_master_key();
	pkcv_b = palloc(VARHDRSZ + ENV_KCV_LEN);
	SET_VARSIZE(pkcv_b, VARHDRSZ + ENV_KCV_LEN);
	memcpy(VARDATA(pkcv_b), pkcv, ENV_KCV_LEN);
	mkcv_b = palloc(VARHDRSZ + ENV_KCV_LEN);
	SET_VARSIZE(mkcv_b, VARHDRSZ + ENV_KCV_LEN);
	memcpy(VARDATA(mkcv_b), env_master_kcv(), ENV_KCV_LEN);
	if (memcmp(VARDATA(pkcv_b), VARDATA(mkcv_b), ENV_KCV_LEN) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the previous envault master key is the current one")));

	env_spi_begin(&s);
	values[0] = PointerGetDatum(pkcv_b);
	values[1] = Int32GetDatum(batch_size);
	env_spi_run(KS_Q_UNDER_PREVIOUS, 2, qtypes, values, SPI_OK_SELECT);
	rows = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = rows->vals[i];
		char	   *tenant = TextDatumGetCString(SPI_getbinval(tup, rows->tupdesc, 1, &isnull));
		int32		version = DatumGetInt32(SPI_getbinval(tup, rows->tupdesc, 2, &isnull));
		bytea	   *wrapped = DatumGetByteaPP(SPI_getbinval(tup, rows->tupdesc, 3, &isnull));
		bytea	   *rewrapped;
		uint8		aad[ENV_WRAP_AAD_MAXLEN];
		size_t		aad_len = env_tenant_wrap_aad(aad, tenant, strlen(tenant),
												  (uint32) version);

		ks_tenant_rewrapped(env_keywrap_rewrap(previous, current, wrapped,
											   aad, aad_len, &rewrapped),
							tenant);
		values[0] = CStringGetTextDatum(tenant);
		values[1] = PointerGetDatum(rewrapped);
		values[2] = PointerGetDatum(mkcv_b);
		env_spi_run(KS_Q_REWRAP_TENANT, 3, types, values, SPI_OK_UPDATE);
	}
	values[0] = PointerGetDatum(pkcv_b);
	env_spi_run(KS_Q_COUNT_UNDER, 1, qtypes, values, SPI_OK_SELECT);
	*remaining = DatumGetInt64(env_spi_col(&s, 1, &isnull, true, 8));
	if (n > 0)
	{
		snprintf(detail, sizeof(detail),
				 UINT64_FORMAT " tenant keys rewrapped, " INT64_FORMAT " remain",
				 n, *remaining);
		env_key_event(&s, "master key rotation", NULL, NULL, -1, detail);
	}
	env_spi_end(&s);
	return (int64) n;
}

void
env_keystore_init(void)
{
	DefineCustomIntVariable("envault.data_key_max_age",
							gettext_noop("Age after which an active data key is rotated automatically (0 = never)."),
							gettext_noop("Checked when the key is about to encrypt, in read-write transactions."),
							&ks_data_key_max_age,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	env_keycache_init();
}
