/*-------------------------------------------------------------------------
 *
 * keywrap.c
 *		Wrapping and unwrapping of tenant keys and data keys: under the
 *		master key, a customer-managed key, or a tenant key.
 *
 * Secrets: an unwrapped key exists on the stack of env_keywrap_unwrap()
 * only until it is prepared into an EnvXaesKey, and is wiped there on every
 * path; prepared keys live in slots of the key cache's locked pages
 * (keycache.c).  A customer-managed key exists only in the function that
 * fetched it, and is wiped before it returns, errors included.
 *
 * Nothing here reads or writes a key table: keystore.c hands in the rows.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "keywrap.h"

#include "keycache.h"

/*
 * Unwrap a 32-byte key and prepare it into a fresh slot.  Returns the slot,
 * or NULL when the wrapped key fails authentication.
 */
EnvXaesKey *
env_keywrap_unwrap(const EnvXaesKey *kek, bytea *wrapped, const uint8 *aad,
				   size_t aad_len)
{
	EnvXaesKey *slot = env_keycache_slot_alloc();
	uint8		key[ENV_KEY_LEN];
	EnvCryptoStatus st;
	bool		ok;

	st = env_key_unwrap(kek, (uint8 *) VARDATA_ANY(wrapped),
						VARSIZE_ANY_EXHDR(wrapped), aad, aad_len, key);
	ok = (st == ENV_CRYPTO_OK) && env_xaes_key_init(slot, key);
	env_wipe(key, sizeof(key));
	if (!ok)
	{
		env_keycache_slot_free(slot);
		if (st == ENV_CRYPTO_AUTH_FAILED)
			return NULL;
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "unwrapping a key");
	}
	return slot;
}

/* Wrap a freshly generated key; the key itself is wiped before returning. */
bytea *
env_keywrap_new_key(const EnvXaesKey *kek, const uint8 *aad, size_t aad_len,
					EnvXaesKey **prepared)
{
	bytea	   *wrapped = palloc(VARHDRSZ + ENV_WRAPPED_LEN);
	EnvXaesKey *slot = prepared ? env_keycache_slot_alloc() : NULL;
	uint8		key[ENV_KEY_LEN];
	bool		ok;

	SET_VARSIZE(wrapped, VARHDRSZ + ENV_WRAPPED_LEN);
	ok = env_random_bytes(key, sizeof(key)) &&
		env_key_wrap(kek, key, aad, aad_len,
					 (uint8 *) VARDATA(wrapped)) == ENV_CRYPTO_OK &&
		(slot == NULL || env_xaes_key_init(slot, key));
	env_wipe(key, sizeof(key));
	if (!ok)
	{
		if (slot)
			env_keycache_slot_free(slot);
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "generating a key");
	}
	if (prepared)
		*prepared = slot;
	return wrapped;
}

bool
env_keywrap_kcv_is(bytea *kcv, const uint8 *want)
{
	return want != NULL && VARSIZE_ANY_EXHDR(kcv) == ENV_KCV_LEN &&
		memcmp(VARDATA_ANY(kcv), want, ENV_KCV_LEN) == 0;
}

/*
 * The master key that wrapped a tenant key, told by the check value stored
 * with it: the current one, or the previous one during a master key
 * rotation.  Anything else is a configuration error, not damaged data.
 */
const EnvXaesKey *
env_keywrap_master_for(const char *tenant, bytea *kcv)
{
	const uint8 *mkcv = env_master_kcv();
	const uint8 *pkcv;
	const EnvXaesKey *previous;

	if (env_keywrap_kcv_is(kcv, mkcv))
		return env_master_key();
	previous = env_previous_master_key(&pkcv);
	if (previous != NULL && env_keywrap_kcv_is(kcv, pkcv))
		return previous;
	ereport(ERROR,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg("configured envault master key does not match the key that wrapped tenant \"%s\"",
					tenant),
			 errdetail("The tenant key was wrapped by the master key with check value %s; the configured master key has check value %s%s%s.",
					   VARSIZE_ANY_EXHDR(kcv) >= 8 ?
					   env_kcv_fingerprint((uint8 *) VARDATA_ANY(kcv)) : "(none)",
					   env_kcv_fingerprint(mkcv),
					   previous ? ", the previous one " : "",
					   previous ? env_kcv_fingerprint(pkcv) : ""),
			 errhint("Configure the master key that this database's keys were created with.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * Unwrap a tenant key under its customer-managed key, fetched now through
 * envault.customer_key_command.  The customer key exists only here, and is
 * wiped before returning, errors included.
 */
EnvXaesKey *
env_keywrap_unwrap_customer(const char *tenant, const EnvTenantRow *row,
							const uint8 *aad, size_t aad_len)
{
	uint8		cmk[ENV_KEY_LEN];
	uint8		ckcv[ENV_KCV_LEN];
	EnvXaesKey	kek;
	EnvXaesKey *volatile xk = NULL;
	bool		ok;

	env_customer_key(tenant, cmk, ckcv);
	if (!env_keywrap_kcv_is(row->kcv, ckcv))
	{
		env_wipe(cmk, sizeof(cmk));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("customer key of envault tenant \"%s\" does not match the key that wraps its tenant key", tenant),
				 errdetail("The tenant key is wrapped by the customer key with check value %s; envault.customer_key_command returned one with check value %s.",
						   env_kcv_fingerprint((uint8 *) VARDATA_ANY(row->kcv)),
						   env_kcv_fingerprint(ckcv))));
	}
	ok = env_xaes_key_init(&kek, cmk);
	env_wipe(cmk, sizeof(cmk));
	if (!ok)
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "preparing a customer key");
	PG_TRY();
	{
		xk = env_keywrap_unwrap(&kek, row->wrapped, aad, aad_len);
	}
	PG_FINALLY();
	{
		env_xaes_key_clear(&kek);
	}
	PG_END_TRY();
	return xk;
}

/*
 * A new tenant key wrapped by the tenant's customer-managed key, for a
 * rotation or re-keying of a tenant under it (t->customer: the key must be
 * the one that wraps the current tenant key) or for its onboarding.  The
 * customer key is wiped before returning, errors included; its check value
 * goes to ckcv.
 */
bytea *
env_keywrap_new_key_customer(const char *tenant, const EnvTenantRow *t,
							 const uint8 *aad, size_t aad_len, EnvXaesKey **prepared,
							 uint8 *ckcv)
{
	uint8		cmk[ENV_KEY_LEN];
	EnvXaesKey	kek;
	bytea	   *volatile wrapped = NULL;
	EnvXaesKey *volatile slot = NULL;
	bool		ok;

	env_customer_key(tenant, cmk, ckcv);
	if (t->customer && !env_keywrap_kcv_is(t->kcv, ckcv))
	{
		env_wipe(cmk, sizeof(cmk));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("customer key of envault tenant \"%s\" does not match the key that wraps its tenant key", tenant)));
	}
	ok = env_xaes_key_init(&kek, cmk);
	env_wipe(cmk, sizeof(cmk));
	if (!ok)
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "preparing a customer key");
	PG_TRY();
	{
		EnvXaesKey *k;

		wrapped = env_keywrap_new_key(&kek, aad, aad_len, &k);
		slot = k;
	}
	PG_FINALLY();
	{
		env_xaes_key_clear(&kek);
	}
	PG_END_TRY();
	*prepared = slot;
	return wrapped;
}

/*
 * Unwrap a data key.  It must be wrapped under the tenant's current key
 * version: rotating a tenant key rewraps all its data keys at once.
 */
EnvXaesKey *
env_keywrap_unwrap_data_key(const EnvXaesKey *tenant_key, int32 tenant_key_version,
							int32 wrapped_under, const char *tenant,
							const char *purpose, int32 version, uint64 key_id,
							bytea *wrapped)
{
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	EnvXaesKey *xk;

	if (wrapped_under != tenant_key_version)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("data key of tenant \"%s\", purpose \"%s\", version %d is wrapped under tenant key version %d, not the current version %d",
						tenant, purpose, version, wrapped_under,
						tenant_key_version)));

	aad_len = env_dek_wrap_aad(aad, tenant, strlen(tenant), purpose,
							   strlen(purpose), (uint32) version, key_id);
	xk = env_keywrap_unwrap(tenant_key, wrapped, aad, aad_len);
	if (xk == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("wrapped data key of tenant \"%s\", purpose \"%s\", version %d failed authentication",
						tenant, purpose, version),
				 errdetail("Its row in envault.data_keys (key id " INT64_FORMAT ") was altered or copied from another key.",
						   (int64) key_id)));
	return xk;
}

/* A check value as the key tables store it */
bytea *
env_keywrap_kcv_bytea(const uint8 *kcv)
{
	bytea	   *b = palloc(VARHDRSZ + ENV_KCV_LEN);

	SET_VARSIZE(b, VARHDRSZ + ENV_KCV_LEN);
	memcpy(VARDATA(b), kcv, ENV_KCV_LEN);
	return b;
}

/*
 * Rewrap a wrapped key from one key-encryption key to another, under the
 * same associated data.  The key itself exists only here, and is wiped.
 * Returns the status; *out is the rewrapped key when it is ENV_CRYPTO_OK,
 * and the caller says what failed otherwise.
 */
EnvCryptoStatus
env_keywrap_rewrap(const EnvXaesKey *from, const EnvXaesKey *to, bytea *wrapped,
				   const uint8 *aad, size_t aad_len, bytea **out)
{
	bytea	   *rewrapped = palloc(VARHDRSZ + ENV_WRAPPED_LEN);
	uint8		key[ENV_KEY_LEN];
	EnvCryptoStatus st;

	st = env_key_unwrap(from, (uint8 *) VARDATA_ANY(wrapped),
						VARSIZE_ANY_EXHDR(wrapped), aad, aad_len, key);
	if (st == ENV_CRYPTO_OK)
		st = env_key_wrap(to, key, aad, aad_len, (uint8 *) VARDATA(rewrapped));
	env_wipe(key, sizeof(key));
	SET_VARSIZE(rewrapped, VARHDRSZ + ENV_WRAPPED_LEN);
	*out = rewrapped;
	return st;
}
