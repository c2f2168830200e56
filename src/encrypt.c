/*-------------------------------------------------------------------------
 *
 * encrypt.c
 *		SQL wrappers of the data path: env_encrypt, env_decrypt,
 *		env_decrypt_text, blind_index, env_reencrypt, env_is_current, and
 *		key_state (for reencrypt_column).
 *
 * Every decryption goes through env_open_ciphertext(), the one place where
 * the tenant check happens and every decryption is counted in the access
 * log (accesslog.c).  The tenant check of a ciphertext happens in the key
 * store's lookup of its key (env_keystore_key_by_id), before any state of
 * that tenant or key is looked at.  Encryption and blind indexes check the
 * tenant before touching a key.
 *
 * Secrets: plaintext is read from the argument and written into the result
 * only; a detoasted copy of the argument is wiped before it is freed, and a
 * result that fails authentication is wiped (by the crypto layer) before it
 * is freed.  The key lookups, which may raise errors, happen before any
 * plaintext is copied.  A returned plaintext belongs to the executor from
 * then on.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "encrypt.h"

#include "accesslog.h"

#include <sys/mman.h>
#include <unistd.h>

#include "access/detoast.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* Associated data up to this size is assembled on the stack */
#define ENC_AAD_STACK	1024

typedef struct EncAad
{
	uint8		stack[ENC_AAD_STACK];
	uint8	   *buf;
	size_t		len;
} EncAad;

static void
enc_aad_build(EncAad *a, const EnvDataKey *key, const uint8 *header,
			  bytea *user_aad)
{
	const uint8 *ua = user_aad ? (const uint8 *) VARDATA_ANY(user_aad) : NULL;
	size_t		ua_len = user_aad ? VARSIZE_ANY_EXHDR(user_aad) : 0;

	a->len = env_data_aad_len(key->context_len, ua_len);

	/*
	 * The header and the key's context come on top of the caller's aad, so an
	 * aad near the largest bytea is more than palloc() allows: a huge
	 * allocation lets every aad PostgreSQL can hold be used.
	 */
	a->buf = a->len <= ENC_AAD_STACK ? a->stack :
		MemoryContextAllocHuge(CurrentMemoryContext, a->len);
	env_data_aad_build(a->buf, header, key->context, key->context_len,
					   ua, ua_len);
}

static void
enc_aad_free(EncAad *a)
{
	if (a->buf != a->stack)
		pfree(a->buf);
}

static bytea *
enc_optional_aad(FunctionCallInfo fcinfo, int argno)
{
	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return NULL;
	return PG_GETARG_BYTEA_PP(argno);
}

/*
 * Where the bytes of an argument come from.  A large value stored out of
 * line without compression is read in slices of ENC_SLICE bytes, straight
 * from its TOAST chunks, rather than detoasted whole: the result is then
 * the only allocation as large as the value, and a plaintext's slices are
 * wiped while they are still in the cache.  (Two live allocations of a
 * megabyte or more make the C library give the memory back to the kernel
 * after each row and fault it in again for the next.)  Anything else is
 * detoasted once, as usual.
 */
#define ENC_SLICE		(64 * 1024)
#define ENC_SLICED_MIN	(4 * ENC_SLICE)

typedef struct EncSource
{
	struct varlena *stored;		/* the TOAST pointer, to read in slices, or
								 * NULL */
	const uint8 *buf;			/* or the bytes, in memory */
	size_t		len;
	struct varlena *copy;		/* a detoasted copy of ours, or NULL */
} EncSource;

static void
enc_source(EncSource *src, Datum d)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);

	memset(src, 0, sizeof(*src));
	/* out of line, and stored as long as it is: not compressed */
	if (VARATT_IS_EXTERNAL_ONDISK(v))
	{
		Size		stored = toast_datum_size(d);

		if (stored + VARHDRSZ == toast_raw_datum_size(d) &&
			stored >= ENC_SLICED_MIN)
		{
			src->stored = v;
			src->len = stored;
			return;
		}
	}
	v = PG_DETOAST_DATUM_PACKED(d);
	if ((Pointer) v != DatumGetPointer(d))
		src->copy = v;
	src->buf = (const uint8 *) VARDATA_ANY(v);
	src->len = VARSIZE_ANY_EXHDR(v);
}

/* Free a source's detoasted copy, wiped first if it held a plaintext. */
static void
enc_source_free(EncSource *src, bool wipe)
{
	if (src->copy != NULL)
	{
		if (wipe)
			env_wipe(src->copy, VARSIZE_ANY(src->copy));
		pfree(src->copy);
		src->copy = NULL;
	}
}

/*
 * A result of len bytes for a large value: the C library maps memory this
 * large afresh for every allocation, and touching it page by page costs a
 * page fault per 4 kB (on a virtual machine, more than the cipher).  Where
 * Linux offers it, the pages are faulted in with one call instead; nothing
 * changes where it does not.
 */
#define ENC_PREFAULT_MIN	(32 * 1024 * 1024)

static void *
enc_alloc_result(size_t len)
{
	void	   *p = palloc(len);

#ifdef MADV_POPULATE_WRITE
	if (len >= ENC_PREFAULT_MIN)
	{
		size_t		page = (size_t) sysconf(_SC_PAGESIZE);
		uintptr_t	start = TYPEALIGN(page, (uintptr_t) p);
		uintptr_t	end = TYPEALIGN_DOWN(page, (uintptr_t) p + len);

		if (end > start)
			(void) madvise((void *) start, end - start, MADV_POPULATE_WRITE);
	}
#endif
	return p;
}

/* Copy len bytes of a source from offset (a small piece: a header, a tag). */
static void
enc_source_read(const EncSource *src, size_t offset, size_t len, uint8 *out)
{
	struct varlena *slice;

	if (src->stored == NULL)
	{
		memcpy(out, src->buf + offset, len);
		return;
	}
	slice = detoast_attr_slice(src->stored, (int32) offset, (int32) len);
	if (VARSIZE_ANY_EXHDR(slice) != len)
		elog(ERROR, "TOAST slice of %zu bytes at %zu has %zu",
			 len, offset, (size_t) VARSIZE_ANY_EXHDR(slice));
	memcpy(out, VARDATA_ANY(slice), len);
	pfree(slice);
}

/*
 * Run len bytes of a source, from offset, through a begun message into out.
 * Slices of a plaintext are wiped before they are freed.  May raise an
 * error (reading a slice): the caller aborts the message then.
 */
static EnvCryptoStatus
enc_source_run(EnvXaesStream *st, const EncSource *src, size_t offset,
			   size_t len, uint8 *out, bool plaintext)
{
	while (len > 0)
	{
		size_t		n;
		struct varlena *slice;
		EnvCryptoStatus rc;

		if (src->stored == NULL)
			return env_xaes_update(st, src->buf + offset, len, out);
		n = Min(len, ENC_SLICE);
		slice = detoast_attr_slice(src->stored, (int32) offset, (int32) n);
		if (VARSIZE_ANY_EXHDR(slice) != n)
		{
			if (plaintext)
				env_wipe(slice, VARSIZE_ANY(slice));
			elog(ERROR, "TOAST slice of %zu bytes at %zu has %zu",
				 n, offset, (size_t) VARSIZE_ANY_EXHDR(slice));
		}
		rc = env_xaes_update(st, (const uint8 *) VARDATA_ANY(slice), n, out);
		if (plaintext)
			env_wipe(VARDATA_ANY(slice), n);
		pfree(slice);
		if (rc != ENV_CRYPTO_OK)
			return rc;
		offset += n;
		out += n;
		len -= n;
	}
	return ENV_CRYPTO_OK;
}

/*
 * Run a source through a message begun with st, then end it, writing (when
 * sealing) or checking (when opening) the tag.  On any failure, errors
 * included, the message is aborted and out, when it is a plaintext, wiped.
 */
static EnvCryptoStatus
enc_source_finish(EnvXaesStream *st, const EncSource *src, size_t offset,
				  size_t len, uint8 *out, uint8 *tag)
{
	bool		opening = !st->seal;
	volatile EnvCryptoStatus rc = ENV_CRYPTO_OK;

	PG_TRY();
	{
		rc = enc_source_run(st, src, offset, len, out, !opening);
	}
	PG_CATCH();
	{
		env_xaes_abort(st);
		if (opening)
			env_wipe(out, len);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (rc == ENV_CRYPTO_OK)
		rc = env_xaes_end(st, tag);
	else
		env_xaes_abort(st);
	if (rc != ENV_CRYPTO_OK && opening)
		env_wipe(out, len);
	return rc;
}

/*
 * Start a ciphertext of ptlen bytes under key: allocate it, write its header
 * with a fresh nonce, and begin the message with its associated data.
 */
static bytea *
enc_begin(const EnvDataKey *key, size_t ptlen, bytea *aad, EnvXaesStream *st)
{
	size_t		total = ENV_CT_OVERHEAD + ptlen;
	bytea	   *result;
	uint8		nonce[ENV_NONCE_LEN];
	EncAad		a;
	EnvCryptoStatus rc;

	if (total > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value is too large to encrypt"),
				 errdetail("A plaintext can be at most %d bytes.",
						   (int) (MaxAllocSize - VARHDRSZ - ENV_CT_OVERHEAD))));
	result = enc_alloc_result(VARHDRSZ + total);
	SET_VARSIZE(result, VARHDRSZ + total);
	if (!env_random_nonce(nonce))
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "generating a nonce");
	env_ct_write_header((uint8 *) VARDATA(result), key->key_id, nonce);
	enc_aad_build(&a, key, (uint8 *) VARDATA(result), aad);
	rc = env_xaes_begin(st, true, key->xk, nonce, a.buf, a.len);
	enc_aad_free(&a);
	if (rc != ENV_CRYPTO_OK)
		env_error_crypto(rc, "encrypting");
	return result;
}

/* Encrypt a source under key, with the caller's associated data. */
static bytea *
enc_seal(const EnvDataKey *key, const EncSource *src, bytea *aad)
{
	EnvXaesStream st;
	bytea	   *result = enc_begin(key, src->len, aad, &st);
	uint8	   *out = (uint8 *) VARDATA(result);
	EnvCryptoStatus rc;

	rc = enc_source_finish(&st, src, 0, src->len, out + ENV_CT_HEADER_LEN,
						   out + ENV_CT_HEADER_LEN + src->len);
	if (rc != ENV_CRYPTO_OK)
		env_error_crypto(rc, "encrypting");
	return result;
}

/*
 * SQL function: envault.env_encrypt(tenant text, purpose text,
 *                                   plaintext bytea, aad bytea) returns bytea
 * SQL function: envault.env_encrypt(tenant text, purpose text,
 *                                   plaintext text, aad bytea) returns bytea
 *
 * text and bytea share a representation, so one entry point serves both.
 */
PG_FUNCTION_INFO_V1(envault_env_encrypt);
Datum
envault_env_encrypt(PG_FUNCTION_ARGS)
{
	text	   *tenant;
	text	   *purpose;
	const EnvDataKey *key;
	EncSource	src;
	bytea	   *volatile result = NULL;

	if (PG_ARGISNULL(2))
		PG_RETURN_NULL();
	env_arg_not_null(fcinfo, 0, "tenant");
	env_arg_not_null(fcinfo, 1, "purpose");
	tenant = PG_GETARG_TEXT_PP(0);
	purpose = PG_GETARG_TEXT_PP(1);

	env_tenant_check(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant), false);
	key = env_keystore_active_key(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant),
								  VARDATA_ANY(purpose), VARSIZE_ANY_EXHDR(purpose));

	/* a detoasted copy of the plaintext is wiped whatever happens */
	enc_source(&src, PG_GETARG_DATUM(2));
	PG_TRY();
	{
		result = enc_seal(key, &src, enc_optional_aad(fcinfo, 3));
	}
	PG_FINALLY();
	{
		enc_source_free(&src, true);
	}
	PG_END_TRY();
	PG_RETURN_BYTEA_P(result);
}

static bytea *enc_open(const EncSource *src, bytea *aad,
					   const EnvDataKey **key_out, const char *tenant,
					   size_t tenant_len, const char *secret);

static void
enc_source_bytes(EncSource *src, bytea *b)
{
	memset(src, 0, sizeof(*src));
	src->buf = (const uint8 *) VARDATA_ANY(b);
	src->len = VARSIZE_ANY_EXHDR(b);
}

/*
 * Decrypt and authenticate a ciphertext.  Returns the plaintext as a new
 * varlena (whose header the caller may relabel as text) and, if key_out is
 * given, the data key that opened it.  *key_out lives in the key cache: it
 * is valid only until the next key lookup.
 */
bytea *
env_open_ciphertext(bytea *ciphertext, bytea *aad, const EnvDataKey **key_out)
{
	EncSource	src;

	enc_source_bytes(&src, ciphertext);
	return enc_open(&src, aad, key_out, NULL, 0, NULL);
}

/* env_open_ciphertext() of an argument as it is stored (see EncSource) */
static bytea *
enc_open_datum(Datum ciphertext, bytea *aad, const EnvDataKey **key_out)
{
	EncSource	src;
	bytea	   *result;

	enc_source(&src, ciphertext);
	result = enc_open(&src, aad, key_out, NULL, 0, NULL);
	enc_source_free(&src, false);
	return result;
}

/*
 * Open the stored value of a secret of the secrets store, counting the
 * decryption in the access log against the secret's name.  The value must
 * be under that tenant's secrets key: a ciphertext of another tenant's, or
 * of a data key of any other purpose, copied into the row is refused
 * before it is decrypted.
 */
bytea *
env_open_secret(bytea *ciphertext, bytea *aad, const char *tenant,
				size_t tenant_len, const char *secret)
{
	EncSource	src;

	enc_source_bytes(&src, ciphertext);
	return enc_open(&src, aad, NULL, tenant, tenant_len, secret);
}

static bytea *
enc_open(const EncSource *src, bytea *aad, const EnvDataKey **key_out,
		 const char *tenant, size_t tenant_len, const char *secret)
{
	uint8		frame[ENV_CT_OVERHEAD];
	EnvCiphertext ct;
	const EnvDataKey *key;
	bytea	   *result;
	size_t		body_len;
	EnvXaesStream st;
	EncAad		a;
	EnvCryptoStatus rc;

	/* the header and the tag, for a sliced source the only bytes read yet */
	if (src->len < ENV_CT_OVERHEAD)
		env_error_auth_failed();
	body_len = src->len - ENV_CT_OVERHEAD;
	enc_source_read(src, 0, ENV_CT_HEADER_LEN, frame);
	enc_source_read(src, src->len - ENV_TAG_LEN, ENV_TAG_LEN,
					frame + ENV_CT_HEADER_LEN);
	if (!env_ct_parse(frame, sizeof(frame), &ct))
		env_error_auth_failed();
	key = env_keystore_key_by_id(ct.key_id);	/* checks the tenant */
	if (secret != NULL &&
		(strcmp(key->purpose, ENV_SECRETS_PURPOSE) != 0 ||
		 strlen(key->tenant) != tenant_len ||
		 memcmp(key->tenant, tenant, tenant_len) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("secret \"%s\" of envault tenant \"%.*s\" is not under that tenant's secrets key",
						secret, (int) tenant_len, tenant),
				 errdetail("Its ciphertext names a data key of tenant \"%s\", purpose \"%s\".",
						   key->tenant, key->purpose),
				 errhint("The row of envault.secrets was altered or copied from elsewhere.")));

	result = enc_alloc_result(VARHDRSZ + body_len);
	SET_VARSIZE(result, VARHDRSZ + body_len);
	enc_aad_build(&a, key, ct.header, aad);
	rc = env_xaes_begin(&st, false, key->xk, ct.nonce, a.buf, a.len);
	enc_aad_free(&a);
	if (rc == ENV_CRYPTO_OK)
		rc = enc_source_finish(&st, src, ENV_CT_HEADER_LEN, body_len,
							   (uint8 *) VARDATA(result), frame + ENV_CT_HEADER_LEN);
	if (rc != ENV_CRYPTO_OK)
	{
		pfree(result);			/* already wiped by enc_source_finish */
		env_error_crypto(rc, "decrypting");
	}
	/* counted once authenticated; the plaintext is wiped if that fails */
	PG_TRY();
	{
		env_access_record(key, secret);
	}
	PG_CATCH();
	{
		env_wipe(VARDATA(result), body_len);
		pfree(result);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (key_out)
		*key_out = key;
	return result;
}

/*
 * Encrypt bytes under a given data key, with the given associated data; for
 * envault's own stores (the secrets store).  The caller wipes its plaintext.
 */
bytea *
env_seal_with_key(const EnvDataKey *key, const uint8 *pt, size_t ptlen,
				  bytea *aad)
{
	EncSource	src;

	memset(&src, 0, sizeof(src));
	src.buf = pt;
	src.len = ptlen;
	return enc_seal(key, &src, aad);
}

/* SQL function: envault.env_decrypt(ciphertext bytea, aad bytea) returns bytea */
PG_FUNCTION_INFO_V1(envault_env_decrypt);
Datum
envault_env_decrypt(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(enc_open_datum(PG_GETARG_DATUM(0),
									 enc_optional_aad(fcinfo, 1), NULL));
}

/* SQL function: envault.env_decrypt_text(ciphertext bytea, aad bytea) returns text */
PG_FUNCTION_INFO_V1(envault_env_decrypt_text);
Datum
envault_env_decrypt_text(PG_FUNCTION_ARGS)
{
	bytea	   *pt;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	pt = enc_open_datum(PG_GETARG_DATUM(0), enc_optional_aad(fcinfo, 1), NULL);
	if (!pg_verify_mbstr(GetDatabaseEncoding(), VARDATA(pt),
						 VARSIZE(pt) - VARHDRSZ, true))
	{
		env_wipe(pt, VARSIZE(pt));
		pfree(pt);
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("decrypted value is not valid text in encoding \"%s\"",
						GetDatabaseEncodingName()),
				 errhint("Use env_decrypt() to get the value as bytea.")));
	}
	PG_RETURN_TEXT_P((text *) pt);
}

/*
 * SQL function: envault.blind_index(tenant text, purpose text, value text)
 *               returns bytea
 *
 * HMAC-SHA256 of the value under a key derived from the blind-index key of
 * (tenant, purpose).  The derived key lives on the stack and is wiped.
 */
PG_FUNCTION_INFO_V1(envault_blind_index);
Datum
envault_blind_index(PG_FUNCTION_ARGS)
{
	text	   *tenant;
	text	   *purpose;
	text	   *value;
	const EnvDataKey *key;
	uint8		k[32];
	uint8		mac[32];
	bool		ok;

	if (PG_ARGISNULL(2))
		PG_RETURN_NULL();
	env_arg_not_null(fcinfo, 0, "tenant");
	env_arg_not_null(fcinfo, 1, "purpose");
	tenant = PG_GETARG_TEXT_PP(0);
	purpose = PG_GETARG_TEXT_PP(1);
	env_tenant_check(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant), false);
	key = env_keystore_index_key(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant),
								 VARDATA_ANY(purpose), VARSIZE_ANY_EXHDR(purpose));
	value = PG_GETARG_TEXT_PP(2);
	ok = env_xaes_derive_subkey(key->xk, 'B', k) &&
		env_hmac_sha256(k, sizeof(k), (uint8 *) VARDATA_ANY(value),
						VARSIZE_ANY_EXHDR(value), mac);
	env_wipe(k, sizeof(k));
	if (!ok)
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "computing a blind index");
	{
		bytea	   *result = palloc(VARHDRSZ + sizeof(mac));

		SET_VARSIZE(result, VARHDRSZ + sizeof(mac));
		memcpy(VARDATA(result), mac, sizeof(mac));
		PG_RETURN_BYTEA_P(result);
	}
}

/* The (tenant, purpose, key id) of a cached key, copied out of the cache. */
typedef struct EncKeyRef
{
	uint64		key_id;
	char		tenant[ENV_TENANT_MAXLEN + 1];
	char		purpose[ENV_PURPOSE_MAXLEN + 1];
} EncKeyRef;

static void
enc_key_ref(const EnvDataKey *key, EncKeyRef *ref)
{
	ref->key_id = key->key_id;
	strlcpy(ref->tenant, key->tenant, sizeof(ref->tenant));
	strlcpy(ref->purpose, key->purpose, sizeof(ref->purpose));
}

static const EnvDataKey *
enc_active_for(const EncKeyRef *ref)
{
	return env_keystore_active_key(ref->tenant, strlen(ref->tenant),
								   ref->purpose, strlen(ref->purpose));
}

/*
 * SQL function: envault.env_reencrypt(ciphertext bytea, aad bytea) returns bytea
 *
 * The value under the active data key of its tenant and purpose, with the
 * same associated data; the input itself if it already is.  The plaintext
 * exists only inside this call and is wiped before it returns, errors
 * included.
 */
PG_FUNCTION_INFO_V1(envault_env_reencrypt);
Datum
envault_env_reencrypt(PG_FUNCTION_ARGS)
{
	bytea	   *aad;
	bytea	   *pt;
	const EnvDataKey *key;
	EncKeyRef	ref;
	bytea	   *volatile result = NULL;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	aad = enc_optional_aad(fcinfo, 1);
	pt = enc_open_datum(PG_GETARG_DATUM(0), aad, &key);
	enc_key_ref(key, &ref);
	PG_TRY();
	{
		const EnvDataKey *active = enc_active_for(&ref);

		if (active->key_id != ref.key_id)
		{
			result = env_seal_with_key(active, (const uint8 *) VARDATA(pt),
									   VARSIZE(pt) - VARHDRSZ, aad);
		}
	}
	PG_FINALLY();
	{
		env_wipe(pt, VARSIZE(pt));
		pfree(pt);
	}
	PG_END_TRY();
	if (result == NULL)
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	PG_RETURN_BYTEA_P(result);
}

/*
 * The first ENV_CT_OVERHEAD bytes of argument 0 (or all of a shorter one):
 * enough for env_ct_parse() to read the header, and all that is fetched of
 * a value stored out of line.  Its body and tag are not looked at.
 */
static bytea *
enc_header_slice(FunctionCallInfo fcinfo)
{
	return PG_GETARG_BYTEA_P_SLICE(0, 0, ENV_CT_OVERHEAD);
}

/*
 * SQL function: envault.env_is_current(ciphertext bytea) returns boolean
 *
 * Is the value under the active data key of its tenant and purpose?  Reads
 * the header only; decrypts nothing.
 */
PG_FUNCTION_INFO_V1(envault_env_is_current);
Datum
envault_env_is_current(PG_FUNCTION_ARGS)
{
	bytea	   *c;
	EnvCiphertext ct;
	EncKeyRef	ref;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	c = enc_header_slice(fcinfo);
	if (!env_ct_parse((const uint8 *) VARDATA_ANY(c), VARSIZE_ANY_EXHDR(c), &ct))
		env_error_auth_failed();
	enc_key_ref(env_keystore_key_by_id(ct.key_id), &ref);	/* checks the tenant */
	PG_RETURN_BOOL(enc_active_for(&ref)->key_id == ref.key_id);
}

/*
 * SQL function: envault.key_state(ciphertext bytea) returns text
 *
 * The state of the data key a value is under, without raising for the
 * states that open nothing: "active" (the value is current), "rotated"
 * (it decrypts and can be re-encrypted), "retired" or "destroyed" (the
 * data key's state), "tenant revoked" or "tenant destroyed".  Reads the
 * header only; decrypts nothing.  For reencrypt_column, which skips the
 * values it cannot move.
 */
PG_FUNCTION_INFO_V1(envault_key_state);
Datum
envault_key_state(PG_FUNCTION_ARGS)
{
	bytea	   *c;
	EnvCiphertext ct;
	EncKeyRef	ref;
	const char *why;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	c = enc_header_slice(fcinfo);
	if (!env_ct_parse((const uint8 *) VARDATA_ANY(c), VARSIZE_ANY_EXHDR(c), &ct))
		env_error_auth_failed();
	why = env_keystore_unusable(ct.key_id); /* checks the tenant */
	if (why != NULL)
		PG_RETURN_TEXT_P(cstring_to_text(why));
	enc_key_ref(env_keystore_key_by_id(ct.key_id), &ref);
	PG_RETURN_TEXT_P(cstring_to_text(enc_active_for(&ref)->key_id == ref.key_id ?
									 "active" : "rotated"));
}
