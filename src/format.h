/*-------------------------------------------------------------------------
 *
 * format.h
 *		Byte layouts of envault ciphertexts, wrapped keys and the associated
 *		data that binds them; docs/format.md is the specification.
 *
 * Plain C with no server dependencies, so the parsers can be fuzzed and
 * reused outside PostgreSQL.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_FORMAT_H
#define ENVAULT_FORMAT_H

#include "crypto.h"

/* Data ciphertext, format 1: "EV" 0x01 0x01 key_id[8] nonce[24] body tag[16] */
#define ENV_CT_MAGIC0			0x45	/* 'E' */
#define ENV_CT_MAGIC1			0x56	/* 'V' */
#define ENV_CT_FORMAT_1			0x01
#define ENV_CT_ALG_XAES256GCM	0x01
#define ENV_CT_HEADER_LEN		(4 + 8 + ENV_NONCE_LEN)
#define ENV_CT_OVERHEAD			(ENV_CT_HEADER_LEN + ENV_TAG_LEN)

/* Wrapped key: 0x01 nonce[24] key[32] tag[16] */
#define ENV_WRAP_FORMAT_1		0x01
#define ENV_WRAPPED_LEN			(1 + ENV_NONCE_LEN + ENV_KEY_LEN + ENV_TAG_LEN)

/* Longest tenant and purpose names, in bytes */
#define ENV_TENANT_MAXLEN		255
#define ENV_PURPOSE_MAXLEN		63

/* Purposes of blind-index keys: this prefix, then the user's purpose */
#define ENV_INDEX_PREFIX		"_bidx."
#define ENV_INDEX_PREFIX_LEN	6

/* Associated data of a key wrap is at most this long */
#define ENV_WRAP_AAD_MAXLEN		(32 + 4 + ENV_TENANT_MAXLEN + 4 + \
								 ENV_PURPOSE_MAXLEN + 4 + 8)

typedef struct EnvCiphertext
{
	uint64_t	key_id;
	const uint8_t *header;		/* ENV_CT_HEADER_LEN bytes */
	const uint8_t *nonce;
	const uint8_t *body;
	size_t		body_len;
	const uint8_t *tag;
} EnvCiphertext;

extern bool env_ct_parse(const uint8_t *buf, size_t len, EnvCiphertext *ct);
extern void env_ct_write_header(uint8_t *buf, uint64_t key_id,
								const uint8_t *nonce);

extern size_t env_context_len(size_t tenant_len, size_t purpose_len);
extern void env_context_build(uint8_t *buf, const char *tenant,
							  size_t tenant_len, const char *purpose,
							  size_t purpose_len);
extern size_t env_data_aad_len(size_t context_len, size_t aad_len);
extern void env_data_aad_build(uint8_t *buf, const uint8_t *header,
							   const uint8_t *context, size_t context_len,
							   const uint8_t *aad, size_t aad_len);

extern size_t env_tenant_wrap_aad(uint8_t *buf, const char *tenant,
								  size_t tenant_len, uint32_t key_version);
extern size_t env_dek_wrap_aad(uint8_t *buf, const char *tenant,
							   size_t tenant_len, const char *purpose,
							   size_t purpose_len, uint32_t version,
							   uint64_t key_id);

extern EnvCryptoStatus env_key_wrap(const EnvXaesKey *kek, const uint8_t *key,
									const uint8_t *aad, size_t aad_len,
									uint8_t *out);
extern EnvCryptoStatus env_key_unwrap(const EnvXaesKey *kek,
									  const uint8_t *wrapped, size_t wrapped_len,
									  const uint8_t *aad, size_t aad_len,
									  uint8_t *key);

/*
 * API token: "evt_" id[16 hex] "_" secret[64 hex] "_" crc[8 hex], where crc
 * is the CRC-32 (IEEE 802.3, as zlib computes it) of everything before the
 * last "_", so a client can reject a mistyped token without asking.
 */
#define ENV_TOKEN_PREFIX		"evt_"
#define ENV_TOKEN_ID_BYTES		8
#define ENV_TOKEN_SECRET_BYTES	32
#define ENV_TOKEN_ID_HEXLEN		(2 * ENV_TOKEN_ID_BYTES)
#define ENV_TOKEN_LEN			(4 + 2 * ENV_TOKEN_ID_BYTES + 1 + \
								 2 * ENV_TOKEN_SECRET_BYTES + 1 + 8)

typedef enum EnvTokenStatus
{
	ENV_TOKEN_OK = 0,
	ENV_TOKEN_MALFORMED,
	ENV_TOKEN_BAD_CHECKSUM
} EnvTokenStatus;

extern uint32_t env_crc32(const uint8_t *data, size_t len);
extern void env_token_format(char *out, const uint8_t *id,
							 const uint8_t *secret);
extern EnvTokenStatus env_token_parse(const char *token, size_t len,
									  uint8_t *id, uint8_t *secret);

#endif							/* ENVAULT_FORMAT_H */
