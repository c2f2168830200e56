/*-------------------------------------------------------------------------
 *
 * crypto.h
 *		The small cryptographic layer of envault: XAES-256-GCM, HMAC,
 *		randomness and locked memory, all through OpenSSL.
 *
 * Nothing in this layer calls ereport(): every function returns a status
 * and leaves no secret behind in its own buffers, so callers can clean up
 * and raise one well-formed error.  The layer is plain C and also builds
 * outside the server (fuzzing, envault-verify).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_CRYPTO_H
#define ENVAULT_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENV_KEY_LEN			32	/* AES-256 */
#define ENV_NONCE_LEN		24	/* XAES-256-GCM nonce */
#define ENV_TAG_LEN			16	/* GCM tag */
#define ENV_KCV_LEN			16	/* key check value */

/*
 * An XAES-256-GCM key prepared for repeated use: the input key and the
 * CMAC subkey K1 (step 2 of the XAES derivation).  Both are secret: the
 * caller keeps the struct in memory of its own (locked and excluded from
 * core dumps in the server), and env_xaes_key_clear() wipes it.  No
 * OpenSSL object holds either between calls.
 */
typedef struct EnvXaesKey
{
	uint8_t		key[32];
	uint8_t		k1[16];
} EnvXaesKey;

/* Status codes of the layer; see env_crypto_strerror(). */
typedef enum EnvCryptoStatus
{
	ENV_CRYPTO_OK = 0,
	ENV_CRYPTO_AUTH_FAILED,		/* tag mismatch: wrong key, aad or data */
	ENV_CRYPTO_LIBRARY_ERROR	/* OpenSSL failed (out of memory ...) */
} EnvCryptoStatus;

extern bool env_crypto_init(void);
extern void env_crypto_cleanup(void);
extern bool env_xaes_key_init(EnvXaesKey *xk, const uint8_t *key);
extern void env_xaes_key_clear(EnvXaesKey *xk);

/* One message in steps: see env_xaes_begin() */
typedef struct EnvXaesStream
{
	void	   *ctx;			/* the process's context of that direction */
	bool		seal;
} EnvXaesStream;

extern EnvCryptoStatus env_xaes_begin(EnvXaesStream *st, bool seal,
									  const EnvXaesKey *xk,
									  const uint8_t *nonce,
									  const uint8_t *aad, size_t aad_len);
extern EnvCryptoStatus env_xaes_update(EnvXaesStream *st, const uint8_t *in,
									   size_t len, uint8_t *out);
extern EnvCryptoStatus env_xaes_end(EnvXaesStream *st, uint8_t *tag);
extern void env_xaes_abort(EnvXaesStream *st);

extern EnvCryptoStatus env_xaes_seal(const EnvXaesKey *xk,
									 const uint8_t *nonce,
									 const uint8_t *aad, size_t aad_len,
									 const uint8_t *in, size_t in_len,
									 uint8_t *out, uint8_t *tag);
extern EnvCryptoStatus env_xaes_open(const EnvXaesKey *xk,
									 const uint8_t *nonce,
									 const uint8_t *aad, size_t aad_len,
									 const uint8_t *in, size_t in_len,
									 const uint8_t *tag, uint8_t *out);

/*
 * An HMAC-SHA256 key for repeated use.  It holds the two SHA-256 states
 * that HMAC computes from the padded key before any data (the inner and
 * outer pads), in locked memory excluded from core dumps, so that a call
 * hashes only its data: three SHA-256 blocks for a token.  Built against an
 * OpenSSL without the direct SHA-256 functions, it holds a reference to the
 * key instead, which the caller keeps in locked memory for as long as it
 * uses this.  No OpenSSL object holds the key, or an HMAC state keyed with
 * it, between calls.
 */
typedef struct EnvHmacKey
{
	const uint8_t *key;
	size_t		len;
	void	   *pads;			/* locked page of the two states, or NULL */
} EnvHmacKey;

extern bool env_hmac_key_init(EnvHmacKey *hk, const uint8_t *key, size_t len);
extern bool env_hmac(const EnvHmacKey *hk, const uint8_t *data, size_t len,
					 uint8_t *out);
extern void env_hmac_key_clear(EnvHmacKey *hk);
extern bool env_xaes_derive_subkey(const EnvXaesKey *xk, uint8_t label,
								   uint8_t *out);
extern int	env_memcmp_ct(const void *a, const void *b, size_t len);

extern bool env_random_bytes(uint8_t *buf, size_t len);
extern bool env_random_nonce(uint8_t *nonce);
extern bool env_hmac_sha256(const uint8_t *key, size_t key_len,
							const uint8_t *data, size_t data_len,
							uint8_t *out);
extern void env_wipe(void *ptr, size_t len);

extern void *env_locked_alloc(size_t size);
extern void env_locked_free(void *ptr, size_t size);
extern bool env_locked_relock(void *ptr, size_t size);

extern int	env_hex_decode(const char *hex, size_t hex_len,
						   uint8_t *out, size_t out_len);

/* SHA-256 */
#define ENV_SHA256_LEN		32

extern bool env_sha256(const uint8_t *data, size_t len, uint8_t *out);

/*
 * Ed25519.  A signing key is an OpenSSL key object (its private half is
 * secret; env_ed25519_clear() frees it, and OpenSSL wipes it) and the raw
 * public key.
 */
#define ENV_ED25519_PUBLIC_LEN	32
#define ENV_ED25519_SIG_LEN		64

typedef struct EnvSigningKey
{
	void	   *pkey;			/* EVP_PKEY, or NULL */
	uint8_t		pub[ENV_ED25519_PUBLIC_LEN];
} EnvSigningKey;

typedef enum EnvKeyLoadStatus
{
	ENV_KEY_LOADED = 0,
	ENV_KEY_NOT_PEM,			/* not a PEM private key */
	ENV_KEY_NOT_ED25519			/* a private key, of another algorithm */
} EnvKeyLoadStatus;

extern EnvKeyLoadStatus env_ed25519_load_pem(EnvSigningKey *sk,
											 const char *pem, size_t len);
extern bool env_ed25519_from_seed(EnvSigningKey *sk, const uint8_t *seed);
extern void env_ed25519_clear(EnvSigningKey *sk);
extern bool env_ed25519_sign(const EnvSigningKey *sk, const uint8_t *msg,
							 size_t len, uint8_t *sig);
extern bool env_ed25519_verify(const uint8_t *pub, const uint8_t *msg,
							   size_t len, const uint8_t *sig);
extern bool env_ed25519_public_from_pem(const char *pem, size_t len,
										uint8_t *pub);

#endif							/* ENVAULT_CRYPTO_H */
