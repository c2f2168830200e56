/*-------------------------------------------------------------------------
 *
 * crypto.c
 *		XAES-256-GCM, HMAC-SHA256, SHA-256, Ed25519, randomness and locked
 *		memory through OpenSSL's EVP interface.
 *
 * XAES-256-GCM (c2sp.org/XAES-256-GCM) derives a fresh AES-256-GCM key
 * from the input key and the first 12 bytes of a 24-byte random nonce, and
 * encrypts with that key and the last 12 bytes.  A key can therefore be used
 * for about 2^80 messages with random nonces instead of the 2^32 that NIST
 * SP 800-38D allows for AES-256-GCM with random 96-bit IVs.
 *
 * Secrets: keys are kept by the callers, in memory of their own (in the
 * server: pages locked against swapping and excluded from core dumps).
 * OpenSSL keeps an expanded form of a key in its own contexts, in ordinary
 * heap memory that a core dump would contain (an AES key schedule begins
 * with the key itself, an HMAC context holds a copy of its key): so every
 * context is keyed only for the call that uses it, and re-keyed with an
 * all-zero key before the call returns, which overwrites the schedule or
 * state in place (and makes OpenSSL cleanse and free its copy of an HMAC
 * key).  The derived key Kx lives on the stack of env_xaes_seal() and
 * env_xaes_open() and is wiped before they return, on every path.
 * Nothing here raises a PostgreSQL error.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* the direct SHA-256 functions: see env_sha256() */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "crypto.h"

/* Key files are never encrypted: refuse to prompt for a passphrase. */
static int
cr_no_password(char *buf, int size, int rwflag, void *u)
{
	(void) buf;
	(void) size;
	(void) rwflag;
	(void) u;
	return 0;
}

static EVP_CIPHER *cr_aes256_ecb = NULL;
static EVP_CIPHER *cr_aes256_gcm = NULL;
static EVP_CIPHER_CTX *cr_ecb_ctx = NULL;
static EVP_CIPHER_CTX *cr_seal_ctx = NULL;
static EVP_CIPHER_CTX *cr_open_ctx = NULL;

/* the key every context is left keyed with between calls */
static const uint8_t cr_zero_key[32] = {0};

/*
 * Fetch the algorithms once per process; fetching them on every call costs
 * more than the encryption of a short value.
 */
bool
env_crypto_init(void)
{
	if (cr_seal_ctx != NULL)
		return true;

	if (cr_aes256_ecb == NULL)
		cr_aes256_ecb = EVP_CIPHER_fetch(NULL, "AES-256-ECB", NULL);
	if (cr_aes256_gcm == NULL)
		cr_aes256_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	if (cr_aes256_ecb == NULL || cr_aes256_gcm == NULL)
		return false;

	cr_ecb_ctx = EVP_CIPHER_CTX_new();
	cr_seal_ctx = EVP_CIPHER_CTX_new();
	cr_open_ctx = EVP_CIPHER_CTX_new();
	if (cr_ecb_ctx == NULL || cr_seal_ctx == NULL || cr_open_ctx == NULL ||
		EVP_EncryptInit_ex2(cr_ecb_ctx, cr_aes256_ecb, cr_zero_key, NULL, NULL) != 1 ||
		EVP_CIPHER_CTX_set_padding(cr_ecb_ctx, 0) != 1 ||
		EVP_EncryptInit_ex2(cr_seal_ctx, cr_aes256_gcm, NULL, NULL, NULL) != 1 ||
		EVP_DecryptInit_ex2(cr_open_ctx, cr_aes256_gcm, NULL, NULL, NULL) != 1)
	{
		EVP_CIPHER_CTX_free(cr_ecb_ctx);
		EVP_CIPHER_CTX_free(cr_seal_ctx);
		EVP_CIPHER_CTX_free(cr_open_ctx);
		cr_ecb_ctx = cr_seal_ctx = cr_open_ctx = NULL;
		return false;
	}
	return true;
}

/* The cached algorithms and contexts, released by env_crypto_cleanup() */
static EVP_MAC *cr_hmac;
static EVP_MAC_CTX *cr_hmac_ctx;
static EVP_MD *cr_sha256;
static EVP_MD_CTX *cr_sha256_ctx;
static void cr_pool_forget(void);

/*
 * Release what the layer keeps per process.  A program that exits can call
 * it so that leak checkers see every allocation returned; the layer
 * re-fetches on next use.  The server never needs to.
 */
void
env_crypto_cleanup(void)
{
	EVP_CIPHER_CTX_free(cr_ecb_ctx);
	EVP_CIPHER_CTX_free(cr_seal_ctx);
	EVP_CIPHER_CTX_free(cr_open_ctx);
	cr_ecb_ctx = cr_seal_ctx = cr_open_ctx = NULL;
	EVP_CIPHER_free(cr_aes256_ecb);
	EVP_CIPHER_free(cr_aes256_gcm);
	cr_aes256_ecb = cr_aes256_gcm = NULL;
	EVP_MAC_CTX_free(cr_hmac_ctx);
	cr_hmac_ctx = NULL;
	EVP_MAC_free(cr_hmac);
	cr_hmac = NULL;
	EVP_MD_CTX_free(cr_sha256_ctx);
	cr_sha256_ctx = NULL;
	EVP_MD_free(cr_sha256);
	cr_sha256 = NULL;
	cr_pool_forget();
}

void
env_wipe(void *ptr, size_t len)
{
	if (ptr != NULL && len > 0)
		OPENSSL_cleanse(ptr, len);
}

/*
 * AES-256 encryptions of 16-byte blocks under an input key: the ECB context
 * is keyed for the call and re-keyed with zeros before it returns.
 */
static bool
cr_aes_blocks(const uint8_t *key, const uint8_t *in, uint8_t *out, int nblocks)
{
	int			outl = 0;
	bool		ok;

	ok = EVP_EncryptInit_ex2(cr_ecb_ctx, NULL, key, NULL, NULL) == 1 &&
		EVP_EncryptUpdate(cr_ecb_ctx, out, &outl, in, 16 * nblocks) == 1 &&
		outl == 16 * nblocks;
	if (EVP_EncryptInit_ex2(cr_ecb_ctx, NULL, cr_zero_key, NULL, NULL) != 1)
		ok = false;
	return ok;
}

/* Re-key a GCM context with zeros: the message key's schedule is gone. */
static bool
cr_gcm_scrub(EVP_CIPHER_CTX *ctx, bool encrypt)
{
	return (encrypt ?
			EVP_EncryptInit_ex2(ctx, NULL, cr_zero_key, NULL, NULL) :
			EVP_DecryptInit_ex2(ctx, NULL, cr_zero_key, NULL, NULL)) == 1;
}

/*
 * Prepare an input key: keep it, and compute the CMAC subkey
 * K1 = dbl(AES-256_K(0^128)).
 */
bool
env_xaes_key_init(EnvXaesKey *xk, const uint8_t *key)
{
	uint8_t		zero[16] = {0};
	uint8_t		l[16];
	int			i;

	memset(xk, 0, sizeof(*xk));
	if (!env_crypto_init())
		return false;
	memcpy(xk->key, key, sizeof(xk->key));
	if (!cr_aes_blocks(xk->key, zero, l, 1))
	{
		env_wipe(xk, sizeof(*xk));
		env_wipe(l, sizeof(l));
		return false;
	}

	for (i = 0; i < 15; i++)
		xk->k1[i] = (uint8_t) ((l[i] << 1) | (l[i + 1] >> 7));
	xk->k1[15] = (uint8_t) (l[15] << 1);
	if (l[0] & 0x80)
		xk->k1[15] ^= 0x87;
	env_wipe(l, sizeof(l));
	return true;
}

void
env_xaes_key_clear(EnvXaesKey *xk)
{
	env_wipe(xk, sizeof(*xk));
}

/*
 * The two CMAC-KDF blocks of the XAES derivation with a one-byte label and
 * a 12-byte context: out = AES_K(M1 xor K1) || AES_K(M2 xor K1), with
 * Mi = 0x00 i label 0x00 context.
 */
static bool
cr_xaes_kdf(const EnvXaesKey *xk, uint8_t label, const uint8_t *context,
			uint8_t *out)
{
	uint8_t		m[32];
	int			i;
	int			j;
	bool		ok;

	for (i = 0; i < 2; i++)
	{
		uint8_t    *mi = m + 16 * i;

		mi[0] = 0x00;
		mi[1] = (uint8_t) (i + 1);
		mi[2] = label;
		mi[3] = 0x00;
		memcpy(mi + 4, context, 12);
		for (j = 0; j < 16; j++)
			mi[j] ^= xk->k1[j];
	}
	ok = cr_aes_blocks(xk->key, m, out, 2);
	env_wipe(m, sizeof(m));
	if (!ok)
		env_wipe(out, 32);
	return ok;
}

/* Kx, the per-message key of XAES-256-GCM (label 'X', context N[:12]) */
static bool
cr_xaes_derive(const EnvXaesKey *xk, const uint8_t *nonce, uint8_t *kx)
{
	return cr_xaes_kdf(xk, 0x58, nonce, kx);
}

/*
 * XAES-256-GCM in steps, for values read in pieces: begin, any number of
 * updates, then end, or abort.  The process has one context per direction;
 * between begin and end (or abort) it holds the message key's schedule, so
 * a caller that may be interrupted (a PostgreSQL error) aborts in its error
 * path.  When opening, GCM produces plaintext before the tag is checked:
 * the caller wipes what it received if end does not return ENV_CRYPTO_OK.
 */
EnvCryptoStatus
env_xaes_begin(EnvXaesStream *st, bool seal, const EnvXaesKey *xk,
			   const uint8_t *nonce, const uint8_t *aad, size_t aad_len)
{
	uint8_t		kx[ENV_KEY_LEN];
	int			outl;
	bool		ok;

	st->ctx = NULL;
	st->seal = seal;
	if (aad_len > INT32_MAX || !env_crypto_init())
		return ENV_CRYPTO_LIBRARY_ERROR;
	st->ctx = seal ? cr_seal_ctx : cr_open_ctx;

	ok = cr_xaes_derive(xk, nonce, kx);
	ok = ok && (seal ?
				EVP_EncryptInit_ex2(st->ctx, NULL, kx, nonce + 12, NULL) :
				EVP_DecryptInit_ex2(st->ctx, NULL, kx, nonce + 12, NULL)) == 1;
	env_wipe(kx, sizeof(kx));
	ok = ok && (aad_len == 0 ||
				EVP_CipherUpdate(st->ctx, NULL, &outl, aad, (int) aad_len) == 1);
	if (!ok)
	{
		env_xaes_abort(st);
		return ENV_CRYPTO_LIBRARY_ERROR;
	}
	return ENV_CRYPTO_OK;
}

/* Encrypt or decrypt len bytes (any length; in and out may be the same) */
EnvCryptoStatus
env_xaes_update(EnvXaesStream *st, const uint8_t *in, size_t len, uint8_t *out)
{
	int			outl;

	while (len > 0)
	{
		int			n = len > (size_t) INT32_MAX ? INT32_MAX : (int) len;

		if (st->ctx == NULL ||
			EVP_CipherUpdate(st->ctx, out, &outl, in, n) != 1 || outl != n)
			return ENV_CRYPTO_LIBRARY_ERROR;
		in += n;
		out += n;
		len -= (size_t) n;
	}
	return ENV_CRYPTO_OK;
}

/*
 * Finish: sealing writes the tag, opening checks it.  The context is
 * scrubbed either way.
 */
EnvCryptoStatus
env_xaes_end(EnvXaesStream *st, uint8_t *tag)
{
	uint8_t		tagbuf[ENV_TAG_LEN];
	uint8_t		none[16];
	int			outl;
	bool		ok;
	bool		authentic = true;

	if (st->ctx == NULL)
		return ENV_CRYPTO_LIBRARY_ERROR;
	if (st->seal)
		ok = EVP_EncryptFinal_ex(st->ctx, none, &outl) == 1 &&
			EVP_CIPHER_CTX_ctrl(st->ctx, EVP_CTRL_GCM_GET_TAG,
								ENV_TAG_LEN, tag) == 1;
	else
	{
		memcpy(tagbuf, tag, ENV_TAG_LEN);
		ok = EVP_CIPHER_CTX_ctrl(st->ctx, EVP_CTRL_GCM_SET_TAG,
								 ENV_TAG_LEN, tagbuf) == 1;
		authentic = ok && EVP_DecryptFinal_ex(st->ctx, none, &outl) == 1;
	}
	if (!cr_gcm_scrub(st->ctx, st->seal))
		ok = false;
	st->ctx = NULL;
	if (!ok)
		return ENV_CRYPTO_LIBRARY_ERROR;
	return authentic ? ENV_CRYPTO_OK : ENV_CRYPTO_AUTH_FAILED;
}

/* Forget a message begun and not ended; safe to call at any point. */
void
env_xaes_abort(EnvXaesStream *st)
{
	if (st->ctx != NULL)
		(void) cr_gcm_scrub(st->ctx, st->seal);
	st->ctx = NULL;
}

/* Encrypt in one step; writes in_len bytes to out and the tag. */
EnvCryptoStatus
env_xaes_seal(const EnvXaesKey *xk, const uint8_t *nonce,
			  const uint8_t *aad, size_t aad_len,
			  const uint8_t *in, size_t in_len,
			  uint8_t *out, uint8_t *tag)
{
	EnvXaesStream st;
	EnvCryptoStatus rc = env_xaes_begin(&st, true, xk, nonce, aad, aad_len);

	if (rc == ENV_CRYPTO_OK)
		rc = env_xaes_update(&st, in, in_len, out);
	if (rc == ENV_CRYPTO_OK)
		return env_xaes_end(&st, tag);
	env_xaes_abort(&st);
	return rc;
}

/*
 * Decrypt and verify in one step.  On failure the output buffer is wiped
 * before returning: a caller never sees unauthenticated plaintext.
 */
EnvCryptoStatus
env_xaes_open(const EnvXaesKey *xk, const uint8_t *nonce,
			  const uint8_t *aad, size_t aad_len,
			  const uint8_t *in, size_t in_len,
			  const uint8_t *tag, uint8_t *out)
{
	EnvXaesStream st;
	uint8_t		tagbuf[ENV_TAG_LEN];
	EnvCryptoStatus rc;

	/* the tag may lie in the buffer being decrypted in place */
	memcpy(tagbuf, tag, ENV_TAG_LEN);
	rc = env_xaes_begin(&st, false, xk, nonce, aad, aad_len);
	if (rc == ENV_CRYPTO_OK)
		rc = env_xaes_update(&st, in, in_len, out);
	if (rc == ENV_CRYPTO_OK)
		rc = env_xaes_end(&st, tagbuf);
	else
		env_xaes_abort(&st);
	if (rc != ENV_CRYPTO_OK)
		env_wipe(out, in_len);
	return rc;
}

/*
 * A 32-byte subkey of an XAES key, derived like XAES-256-GCM derives its
 * per-message keys (NIST SP 800-108r1 counter KDF with CMAC-AES-256) but
 * with the given one-byte label instead of 'X' and an all-zero context, so
 * it never equals a message key.  Used for blind-index keys.
 */
bool
env_xaes_derive_subkey(const EnvXaesKey *xk, uint8_t label, uint8_t *out)
{
	static const uint8_t zero_context[12] = {0};

	return env_crypto_init() && cr_xaes_kdf(xk, label, zero_context, out);
}

#if OPENSSL_VERSION_MAJOR < 4
/* The SHA-256 states after the inner and the outer padded key */
typedef struct CrHmacPads
{
	SHA256_CTX	inner;
	SHA256_CTX	outer;
} CrHmacPads;

#define CR_HMAC_PADS_SIZE	4096	/* one page of locked memory */
_Static_assert(sizeof(CrHmacPads) <= CR_HMAC_PADS_SIZE, "HMAC pads exceed a page");

/* Hash one padded key block (key XOR pad byte) into c. */
static bool
cr_hmac_pad(SHA256_CTX *c, const uint8_t *block, uint8_t pad)
{
	uint8_t		padded[SHA256_CBLOCK];
	bool		ok;
	int			i;

	for (i = 0; i < SHA256_CBLOCK; i++)
		padded[i] = block[i] ^ pad;
	ok = SHA256_Init(c) == 1 && SHA256_Update(c, padded, SHA256_CBLOCK) == 1;
	OPENSSL_cleanse(padded, sizeof(padded));
	return ok;
}
#endif

bool
env_hmac_key_init(EnvHmacKey *hk, const uint8_t *key, size_t len)
{
	hk->key = key;
	hk->len = len;
	hk->pads = NULL;
#if OPENSSL_VERSION_MAJOR < 4
	{
		uint8_t		block[SHA256_CBLOCK] = {0};
		CrHmacPads *p;
		bool		ok;

		/* keys longer than a block would be hashed first: not needed here */
		if (len > SHA256_CBLOCK)
			return false;
		p = env_locked_alloc(CR_HMAC_PADS_SIZE);
		if (p == NULL)
			return false;
		memcpy(block, key, len);
		ok = cr_hmac_pad(&p->inner, block, 0x36) &&
			cr_hmac_pad(&p->outer, block, 0x5c);
		OPENSSL_cleanse(block, sizeof(block));
		if (!ok)
		{
			env_locked_free(p, CR_HMAC_PADS_SIZE);
			return false;
		}
		hk->pads = p;
	}
#endif
	return true;
}

/*
 * HMAC-SHA256 under a key.  From the prepared pads: the states are copied
 * to the stack, and wiped there before returning.  Otherwise the process's
 * MAC context is keyed for the call and re-keyed with zeros before it
 * returns.
 */
bool
env_hmac(const EnvHmacKey *hk, const uint8_t *data, size_t len, uint8_t *out)
{
	OSSL_PARAM	params[2];
	size_t		outl = 0;
	bool		ok;

#if OPENSSL_VERSION_MAJOR < 4
	if (hk->pads != NULL)
	{
		const CrHmacPads *p = hk->pads;
		SHA256_CTX	c;
		uint8_t		inner[SHA256_DIGEST_LENGTH];

		c = p->inner;
		ok = SHA256_Update(&c, data, len) == 1 && SHA256_Final(inner, &c) == 1;
		c = p->outer;
		ok = ok && SHA256_Update(&c, inner, sizeof(inner)) == 1 &&
			SHA256_Final(out, &c) == 1;
		OPENSSL_cleanse(&c, sizeof(c));
		OPENSSL_cleanse(inner, sizeof(inner));
		if (!ok)
			env_wipe(out, 32);
		return ok;
	}
#endif
	if (hk->key == NULL)
		return false;
	if (cr_hmac_ctx == NULL)
	{
		if (cr_hmac == NULL)
			cr_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
		if (cr_hmac == NULL || (cr_hmac_ctx = EVP_MAC_CTX_new(cr_hmac)) == NULL)
			return false;
		params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
													 (char *) "SHA256", 0);
		params[1] = OSSL_PARAM_construct_end();
		if (EVP_MAC_CTX_set_params(cr_hmac_ctx, params) != 1)
		{
			EVP_MAC_CTX_free(cr_hmac_ctx);
			cr_hmac_ctx = NULL;
			return false;
		}
	}
	ok = EVP_MAC_init(cr_hmac_ctx, hk->key, hk->len, NULL) == 1 &&
		EVP_MAC_update(cr_hmac_ctx, data, len) == 1 &&
		EVP_MAC_final(cr_hmac_ctx, out, &outl, 32) == 1 && outl == 32;
	if (EVP_MAC_init(cr_hmac_ctx, cr_zero_key, sizeof(cr_zero_key), NULL) != 1)
		ok = false;
	if (!ok)
		env_wipe(out, 32);
	return ok;
}

void
env_hmac_key_clear(EnvHmacKey *hk)
{
#if OPENSSL_VERSION_MAJOR < 4
	if (hk->pads != NULL)
		env_locked_free(hk->pads, CR_HMAC_PADS_SIZE);
#endif
	hk->pads = NULL;
	hk->key = NULL;
	hk->len = 0;
}

int
env_memcmp_ct(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len);
}

bool
env_random_bytes(uint8_t *buf, size_t len)
{
	return len <= INT32_MAX && RAND_bytes(buf, (int) len) == 1;
}

/*
 * Nonces are drawn from a per-process buffer refilled from RAND_bytes() in
 * 4 kB blocks: OpenSSL 3 costs about a microsecond per call, more than the
 * encryption of a short value.  Nonces are public, but used bytes are
 * wiped anyway, and a forked child never inherits unused ones (it would
 * otherwise repeat its parent's nonces).
 */
#define CR_NONCE_POOL	4096

static uint8_t cr_pool[CR_NONCE_POOL];
static size_t cr_pool_pos = CR_NONCE_POOL;
static bool cr_atfork_done = false;

static void
cr_pool_forget(void)
{
	env_wipe(cr_pool, sizeof(cr_pool));
	cr_pool_pos = CR_NONCE_POOL;
}

bool
env_random_nonce(uint8_t *nonce)
{
	if (!cr_atfork_done)
	{
		if (pthread_atfork(NULL, NULL, cr_pool_forget) != 0)
			return env_random_bytes(nonce, ENV_NONCE_LEN);
		cr_atfork_done = true;
	}
	if (cr_pool_pos + ENV_NONCE_LEN > CR_NONCE_POOL)
	{
		if (RAND_bytes(cr_pool, CR_NONCE_POOL) != 1)
			return false;
		cr_pool_pos = 0;
	}
	memcpy(nonce, cr_pool + cr_pool_pos, ENV_NONCE_LEN);
	env_wipe(cr_pool + cr_pool_pos, ENV_NONCE_LEN);
	cr_pool_pos += ENV_NONCE_LEN;
	return true;
}

bool
env_hmac_sha256(const uint8_t *key, size_t key_len,
				const uint8_t *data, size_t data_len, uint8_t *out)
{
	size_t		outl = 0;

	return EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len,
					 data, data_len, out, 32, &outl) != NULL && outl == 32;
}

/*
 * Memory for key material: whole pages, locked against swapping and
 * excluded from core dumps where the kernel allows.  Locking can fail
 * (RLIMIT_MEMLOCK); the memory is still returned and is still wiped on
 * release, so the caller only loses the swap guarantee.
 *
 * mlock() is not inherited by fork(), so a backend re-locks inherited pages
 * with env_locked_relock(); MADV_DONTDUMP is inherited.
 */
void *
env_locked_alloc(size_t size)
{
	void	   *p;

	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
#ifdef MADV_DONTDUMP
	(void) madvise(p, size, MADV_DONTDUMP);
#endif
	(void) mlock(p, size);
	return p;
}

bool
env_locked_relock(void *ptr, size_t size)
{
	return ptr != NULL && mlock(ptr, size) == 0;
}

void
env_locked_free(void *ptr, size_t size)
{
	if (ptr == NULL)
		return;
	env_wipe(ptr, size);
	(void) munlock(ptr, size);
	(void) munmap(ptr, size);
}

static int
cr_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decode exactly out_len bytes of hex.  Returns 0 on success, -1 on a bad
 * length or character.  Does not reveal which character was bad.
 */
int
env_hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t out_len)
{
	size_t		i;
	int			bad = 0;

	if (hex_len != out_len * 2)
		return -1;
	for (i = 0; i < out_len; i++)
	{
		int			hi = cr_hexval(hex[2 * i]);
		int			lo = cr_hexval(hex[2 * i + 1]);

		bad |= (hi < 0) | (lo < 0);
		out[i] = (uint8_t) (((hi & 0xf) << 4) | (lo & 0xf));
	}
	if (bad)
	{
		env_wipe(out, out_len);
		return -1;
	}
	return 0;
}

/* --- SHA-256 ------------------------------------------------------------- */

/*
 * One-shot SHA-256.  Audit chains hash every row they store or verify, a
 * few hundred bytes each, and for inputs that short OpenSSL's EVP layer
 * costs half again as much as the hashing: OpenSSL 3 still provides the
 * direct SHA-256 functions (deprecated, not removed), which use the same
 * SHA-NI/AVX code.  Built against an OpenSSL without them, the EVP path is
 * used, with the digest fetched once and the context reused.
 */
#if OPENSSL_VERSION_MAJOR < 4
bool
env_sha256(const uint8_t *data, size_t len, uint8_t *out)
{
	SHA256_CTX	c;
	bool		ok;

	ok = SHA256_Init(&c) == 1 && SHA256_Update(&c, data, len) == 1 &&
		SHA256_Final(out, &c) == 1;
	OPENSSL_cleanse(&c, sizeof(c));
	return ok;
}
#else

bool
env_sha256(const uint8_t *data, size_t len, uint8_t *out)
{
	unsigned int outl = 0;

	if (cr_sha256 == NULL)
		cr_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (cr_sha256_ctx == NULL)
		cr_sha256_ctx = EVP_MD_CTX_new();
	if (cr_sha256 == NULL || cr_sha256_ctx == NULL)
		return false;
	return EVP_DigestInit_ex2(cr_sha256_ctx, cr_sha256, NULL) == 1 &&
		EVP_DigestUpdate(cr_sha256_ctx, data, len) == 1 &&
		EVP_DigestFinal_ex(cr_sha256_ctx, out, &outl) == 1 &&
		outl == ENV_SHA256_LEN;
}
#endif

/* --- Ed25519 -------------------------------------------------------------- */

static bool
cr_ed25519_take(EnvSigningKey *sk, EVP_PKEY *pkey)
{
	size_t		publen = ENV_ED25519_PUBLIC_LEN;

	if (EVP_PKEY_get_raw_public_key(pkey, sk->pub, &publen) != 1 ||
		publen != ENV_ED25519_PUBLIC_LEN)
	{
		EVP_PKEY_free(pkey);
		return false;
	}
	sk->pkey = pkey;
	return true;
}

/*
 * Read an Ed25519 private key from PEM text (PKCS#8, as "openssl genpkey
 * -algorithm ed25519" writes it).  The PEM and DER are decoded here, in
 * buffers that are wiped before they are freed: OpenSSL's own PEM and
 * PKCS#8 decoders leave copies of the private key in freed memory.  The key
 * is then handed to OpenSSL as its 32-byte seed; OpenSSL wipes its copy
 * when the key is freed.  The caller wipes the text.
 */
#define CR_PEM_BEGIN	"-----BEGIN PRIVATE KEY-----"
#define CR_PEM_END		"-----END PRIVATE KEY-----"

/* PKCS#8 v1 of an Ed25519 key: SEQUENCE { 0, { id-Ed25519 }, OCTET STRING { OCTET STRING seed } } */
static const uint8_t cr_ed25519_pkcs8[16] = {
	0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
	0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20
};

static const char *
cr_find(const char *hay, size_t len, const char *needle)
{
	size_t		n = strlen(needle);
	size_t		i;

	for (i = 0; i + n <= len; i++)
		if (memcmp(hay + i, needle, n) == 0)
			return hay + i;
	return NULL;
}

EnvKeyLoadStatus
env_ed25519_load_pem(EnvSigningKey *sk, const char *pem, size_t len)
{
	const char *begin;
	const char *end;
	char	   *b64;
	uint8_t    *der;
	size_t		nb64 = 0;
	int			nder;
	const char *p;
	EnvKeyLoadStatus status = ENV_KEY_NOT_PEM;

	memset(sk, 0, sizeof(*sk));
	begin = cr_find(pem, len, CR_PEM_BEGIN);
	if (begin == NULL || len > INT32_MAX)
		return ENV_KEY_NOT_PEM;
	begin += strlen(CR_PEM_BEGIN);
	end = cr_find(begin, len - (size_t) (begin - pem), CR_PEM_END);
	if (end == NULL)
		return ENV_KEY_NOT_PEM;
	b64 = malloc((size_t) (end - begin) + 1);
	der = malloc((size_t) (end - begin) + 1);
	if (b64 == NULL || der == NULL)
	{
		free(b64);
		free(der);
		return ENV_KEY_NOT_PEM;
	}
	for (p = begin; p < end; p++)
		if (*p != '\n' && *p != '\r' && *p != ' ' && *p != '\t')
			b64[nb64++] = *p;
	nder = (nb64 % 4 == 0 && nb64 > 0) ?
		EVP_DecodeBlock(der, (const unsigned char *) b64, (int) nb64) : -1;
	if (nder > 0)
	{
		/* EVP_DecodeBlock counts the bytes of the padding too */
		if (b64[nb64 - 1] == '=')
			nder--;
		if (b64[nb64 - 2] == '=')
			nder--;
		if (nder == 48 && memcmp(der, cr_ed25519_pkcs8, sizeof(cr_ed25519_pkcs8)) == 0)
			status = env_ed25519_from_seed(sk, der + 16) ? ENV_KEY_LOADED : ENV_KEY_NOT_PEM;
		else if (der[0] == 0x30 && cr_find((const char *) der, (size_t) nder,
										   "\x06\x03\x2b\x65\x70") == NULL)
			status = ENV_KEY_NOT_ED25519;
	}
	env_wipe(b64, (size_t) (end - begin) + 1);
	env_wipe(der, (size_t) (end - begin) + 1);
	free(b64);
	free(der);
	ERR_clear_error();
	return status;
}

/* An Ed25519 key from its 32-byte seed (RFC 8032 private key). */
bool
env_ed25519_from_seed(EnvSigningKey *sk, const uint8_t *seed)
{
	EVP_PKEY   *pkey;

	memset(sk, 0, sizeof(*sk));
	pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	return pkey != NULL && cr_ed25519_take(sk, pkey);
}

void
env_ed25519_clear(EnvSigningKey *sk)
{
	if (sk->pkey != NULL)
		EVP_PKEY_free((EVP_PKEY *) sk->pkey);
	sk->pkey = NULL;
}

bool
env_ed25519_sign(const EnvSigningKey *sk, const uint8_t *msg, size_t len,
				 uint8_t *sig)
{
	EVP_MD_CTX *ctx;
	size_t		siglen = ENV_ED25519_SIG_LEN;
	bool		ok;

	if (sk->pkey == NULL || (ctx = EVP_MD_CTX_new()) == NULL)
		return false;
	ok = EVP_DigestSignInit_ex(ctx, NULL, NULL, NULL, NULL,
							   (EVP_PKEY *) sk->pkey, NULL) == 1 &&
		EVP_DigestSign(ctx, sig, &siglen, msg, len) == 1 &&
		siglen == ENV_ED25519_SIG_LEN;
	EVP_MD_CTX_free(ctx);
	return ok;
}

bool
env_ed25519_verify(const uint8_t *pub, const uint8_t *msg, size_t len,
				   const uint8_t *sig)
{
	EVP_PKEY   *pkey;
	EVP_MD_CTX *ctx;
	bool		ok = false;

	pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub,
									   ENV_ED25519_PUBLIC_LEN);
	if (pkey == NULL)
	{
		ERR_clear_error();
		return false;
	}
	if ((ctx = EVP_MD_CTX_new()) != NULL)
	{
		ok = EVP_DigestVerifyInit_ex(ctx, NULL, NULL, NULL, NULL, pkey,
									 NULL) == 1 &&
			EVP_DigestVerify(ctx, sig, ENV_ED25519_SIG_LEN, msg, len) == 1;
		EVP_MD_CTX_free(ctx);
	}
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return ok;
}

/* The raw public key of a PEM public key ("openssl pkey -pubout"). */
bool
env_ed25519_public_from_pem(const char *pem, size_t len, uint8_t *pub)
{
	BIO		   *bio;
	EVP_PKEY   *pkey;
	size_t		publen = ENV_ED25519_PUBLIC_LEN;
	bool		ok;

	if (len > INT32_MAX || (bio = BIO_new_mem_buf(pem, (int) len)) == NULL)
		return false;
	pkey = PEM_read_bio_PUBKEY(bio, NULL, cr_no_password, NULL);
	BIO_free(bio);
	ERR_clear_error();
	if (pkey == NULL)
		return false;
	ok = EVP_PKEY_get_id(pkey) == EVP_PKEY_ED25519 &&
		EVP_PKEY_get_raw_public_key(pkey, pub, &publen) == 1 &&
		publen == ENV_ED25519_PUBLIC_LEN;
	EVP_PKEY_free(pkey);
	return ok;
}
