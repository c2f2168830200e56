/*-------------------------------------------------------------------------
 *
 * format.c
 *		Build and parse envault ciphertexts, wrapped keys and associated
 *		data, exactly as docs/format.md specifies them.
 *
 * All integers are big-endian.  Every variable-length field of associated
 * data is preceded by its 32-bit length, so no two different inputs encode
 * to the same bytes.
 *
 * Secrets: env_key_unwrap() writes the unwrapped key only into the caller's
 * buffer and wipes it there on failure.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "format.h"

static const char fmt_tenant_label[] = "envault/v1/tenant-key";
static const char fmt_dek_label[] = "envault/v1/data-key";

static inline void
fmt_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) (v >> 24);
	p[1] = (uint8_t) (v >> 16);
	p[2] = (uint8_t) (v >> 8);
	p[3] = (uint8_t) v;
}

static inline void
fmt_put_u64(uint8_t *p, uint64_t v)
{
	fmt_put_u32(p, (uint32_t) (v >> 32));
	fmt_put_u32(p + 4, (uint32_t) v);
}

static inline uint64_t
fmt_get_u64(const uint8_t *p)
{
	uint64_t	v = 0;
	int			i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Append a 32-bit length and the bytes; returns the new write position. */
static inline uint8_t *
fmt_put_field(uint8_t *p, const void *data, size_t len)
{
	fmt_put_u32(p, (uint32_t) len);
	if (len > 0)
		memcpy(p + 4, data, len);
	return p + 4 + len;
}

/*
 * Split a data ciphertext into its parts.  Returns false for anything that
 * is not a complete format-1 ciphertext; the caller reports that exactly as
 * it reports a failed tag, so a forger learns nothing from the difference.
 */
bool
env_ct_parse(const uint8_t *buf, size_t len, EnvCiphertext *ct)
{
	if (buf == NULL || len < ENV_CT_OVERHEAD)
		return false;
	if (buf[0] != ENV_CT_MAGIC0 || buf[1] != ENV_CT_MAGIC1 ||
		buf[2] != ENV_CT_FORMAT_1 || buf[3] != ENV_CT_ALG_XAES256GCM)
		return false;
	ct->header = buf;
	ct->key_id = fmt_get_u64(buf + 4);
	ct->nonce = buf + 12;
	ct->body = buf + ENV_CT_HEADER_LEN;
	ct->body_len = len - ENV_CT_OVERHEAD;
	ct->tag = buf + len - ENV_TAG_LEN;
	return true;
}

void
env_ct_write_header(uint8_t *buf, uint64_t key_id, const uint8_t *nonce)
{
	buf[0] = ENV_CT_MAGIC0;
	buf[1] = ENV_CT_MAGIC1;
	buf[2] = ENV_CT_FORMAT_1;
	buf[3] = ENV_CT_ALG_XAES256GCM;
	fmt_put_u64(buf + 4, key_id);
	memcpy(buf + 12, nonce, ENV_NONCE_LEN);
}

/*
 * The "context" of a data key: the tenant and purpose that every ciphertext
 * under it is bound to.  Computed once per cached key.
 */
size_t
env_context_len(size_t tenant_len, size_t purpose_len)
{
	return 4 + tenant_len + 4 + purpose_len;
}

void
env_context_build(uint8_t *buf, const char *tenant, size_t tenant_len,
				  const char *purpose, size_t purpose_len)
{
	buf = fmt_put_field(buf, tenant, tenant_len);
	(void) fmt_put_field(buf, purpose, purpose_len);
}

/* AAD of a data ciphertext: header || context || u32 len(aad) || aad */
size_t
env_data_aad_len(size_t context_len, size_t aad_len)
{
	return ENV_CT_HEADER_LEN + context_len + 4 + aad_len;
}

void
env_data_aad_build(uint8_t *buf, const uint8_t *header,
				   const uint8_t *context, size_t context_len,
				   const uint8_t *aad, size_t aad_len)
{
	memcpy(buf, header, ENV_CT_HEADER_LEN);
	memcpy(buf + ENV_CT_HEADER_LEN, context, context_len);
	(void) fmt_put_field(buf + ENV_CT_HEADER_LEN + context_len, aad, aad_len);
}

/* AAD of a tenant key wrap: label || u32 len || tenant || u32 key_version */
size_t
env_tenant_wrap_aad(uint8_t *buf, const char *tenant, size_t tenant_len,
					uint32_t key_version)
{
	uint8_t    *p = buf;

	memcpy(p, fmt_tenant_label, sizeof(fmt_tenant_label) - 1);
	p += sizeof(fmt_tenant_label) - 1;
	p = fmt_put_field(p, tenant, tenant_len);
	fmt_put_u32(p, key_version);
	return (size_t) (p + 4 - buf);
}

/*
 * AAD of a data key wrap:
 * label || u32 len || tenant || u32 len || purpose || u32 version || u64 key_id
 */
size_t
env_dek_wrap_aad(uint8_t *buf, const char *tenant, size_t tenant_len,
				 const char *purpose, size_t purpose_len,
				 uint32_t version, uint64_t key_id)
{
	uint8_t    *p = buf;

	memcpy(p, fmt_dek_label, sizeof(fmt_dek_label) - 1);
	p += sizeof(fmt_dek_label) - 1;
	p = fmt_put_field(p, tenant, tenant_len);
	p = fmt_put_field(p, purpose, purpose_len);
	fmt_put_u32(p, version);
	fmt_put_u64(p + 4, key_id);
	return (size_t) (p + 12 - buf);
}

/* Wrap a 32-byte key: out = 0x01 || nonce || XAES-256-GCM(kek, key) || tag */
EnvCryptoStatus
env_key_wrap(const EnvXaesKey *kek, const uint8_t *key,
			 const uint8_t *aad, size_t aad_len, uint8_t *out)
{
	out[0] = ENV_WRAP_FORMAT_1;
	if (!env_random_bytes(out + 1, ENV_NONCE_LEN))
		return ENV_CRYPTO_LIBRARY_ERROR;
	return env_xaes_seal(kek, out + 1, aad, aad_len, key, ENV_KEY_LEN,
						 out + 1 + ENV_NONCE_LEN,
						 out + 1 + ENV_NONCE_LEN + ENV_KEY_LEN);
}

EnvCryptoStatus
env_key_unwrap(const EnvXaesKey *kek, const uint8_t *wrapped,
			   size_t wrapped_len, const uint8_t *aad, size_t aad_len,
			   uint8_t *key)
{
	if (wrapped_len != ENV_WRAPPED_LEN || wrapped[0] != ENV_WRAP_FORMAT_1)
		return ENV_CRYPTO_AUTH_FAILED;
	return env_xaes_open(kek, wrapped + 1, aad, aad_len,
						 wrapped + 1 + ENV_NONCE_LEN, ENV_KEY_LEN,
						 wrapped + 1 + ENV_NONCE_LEN + ENV_KEY_LEN, key);
}

/* --- API tokens ----------------------------------------------------------- */

/*
 * The CRC-32 (IEEE) of each single-bit byte: the table of a byte's CRC is
 * linear in its bits, so crc32_byte[x] is the XOR of the entries of x's set
 * bits.
 */
static const uint32_t fmt_crc_bit[8] = {
	0x77073096u, 0xEE0E612Cu, 0x076DC419u, 0x0EDB8832u,
	0x1DB71064u, 0x3B6E20C8u, 0x76DC4190u, 0xEDB88320u
};

uint32_t
env_crc32(const uint8_t *data, size_t len)
{
	uint32_t	crc = 0xFFFFFFFFu;
	size_t		i;

	/*
	 * A byte at a time, without a table indexed by data: the token's secret
	 * passes through here, and a table lookup would make the time of each
	 * step depend on its bytes (cache timing).  The eight bit steps of a byte
	 * are one linear map, applied as eight independent masked XORs rather
	 * than a chain of eight dependent shifts.
	 */
	for (i = 0; i < len; i++)
	{
		uint32_t	x = (crc ^ data[i]) & 0xFFu;

		crc = (crc >> 8) ^
			((fmt_crc_bit[0] & (0u - (x & 1u))) ^
			 (fmt_crc_bit[1] & (0u - ((x >> 1) & 1u)))) ^
			((fmt_crc_bit[2] & (0u - ((x >> 2) & 1u))) ^
			 (fmt_crc_bit[3] & (0u - ((x >> 3) & 1u)))) ^
			((fmt_crc_bit[4] & (0u - ((x >> 4) & 1u))) ^
			 (fmt_crc_bit[5] & (0u - ((x >> 5) & 1u)))) ^
			((fmt_crc_bit[6] & (0u - ((x >> 6) & 1u))) ^
			 (fmt_crc_bit[7] & (0u - ((x >> 7) & 1u))));
	}
	return crc ^ 0xFFFFFFFFu;
}

static const char fmt_hexdigits[] = "0123456789abcdef";

static char *
fmt_put_hex(char *p, const uint8_t *data, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
	{
		*p++ = fmt_hexdigits[data[i] >> 4];
		*p++ = fmt_hexdigits[data[i] & 0xf];
	}
	return p;
}

/*
 * The value of a lowercase hex digit, or 0x100 for any other character.
 * Without branches on c: the token's secret passes through here.
 */
static inline uint32_t
fmt_hex_nibble(uint8_t c)
{
	int32_t		d = (int32_t) c - '0';
	int32_t		l = (int32_t) c - 'a';
	uint32_t	not_digit = (uint32_t) (d | (9 - d)) >> 31;
	uint32_t	not_letter = (uint32_t) (l | (5 - l)) >> 31;

	return ((uint32_t) d & (not_digit - 1u)) |
		((uint32_t) (l + 10) & (not_letter - 1u)) |
		((not_digit & not_letter) << 8);
}

/* Lowercase hex only: a token has exactly one spelling. */
static bool
fmt_get_hex(const char *p, size_t len, uint8_t *out)
{
	uint32_t	bad = 0;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		uint32_t	hi = fmt_hex_nibble((uint8_t) p[2 * i]);
		uint32_t	lo = fmt_hex_nibble((uint8_t) p[2 * i + 1]);

		bad |= hi | lo;
		out[i] = (uint8_t) (((hi & 0xfu) << 4) | (lo & 0xfu));
	}
	return (bad & 0x100u) == 0;
}

/* Write a token of ENV_TOKEN_LEN characters and a terminating NUL. */
void
env_token_format(char *out, const uint8_t *id, const uint8_t *secret)
{
	char	   *p = out;
	uint8_t		crc[4];
	uint32_t	c;

	memcpy(p, ENV_TOKEN_PREFIX, 4);
	p = fmt_put_hex(p + 4, id, ENV_TOKEN_ID_BYTES);
	*p++ = '_';
	p = fmt_put_hex(p, secret, ENV_TOKEN_SECRET_BYTES);
	c = env_crc32((const uint8_t *) out, (size_t) (p - out));
	crc[0] = (uint8_t) (c >> 24);
	crc[1] = (uint8_t) (c >> 16);
	crc[2] = (uint8_t) (c >> 8);
	crc[3] = (uint8_t) c;
	*p++ = '_';
	p = fmt_put_hex(p, crc, 4);
	*p = '\0';
}

/*
 * Split a token into its id and secret.  Anything but the exact format is
 * malformed; a well-formed token whose checksum does not match was
 * mistyped.  The secret is wiped from the output on failure.
 */
EnvTokenStatus
env_token_parse(const char *token, size_t len, uint8_t *id, uint8_t *secret)
{
	const size_t body = ENV_TOKEN_LEN - 9;	/* up to the last '_' */
	uint8_t		crc[4];
	uint32_t	want;

	if (token == NULL || len != ENV_TOKEN_LEN ||
		memcmp(token, ENV_TOKEN_PREFIX, 4) != 0 ||
		token[4 + ENV_TOKEN_ID_HEXLEN] != '_' || token[body] != '_')
		return ENV_TOKEN_MALFORMED;
	if (!fmt_get_hex(token + 4, ENV_TOKEN_ID_BYTES, id) ||
		!fmt_get_hex(token + 5 + ENV_TOKEN_ID_HEXLEN, ENV_TOKEN_SECRET_BYTES,
					 secret) ||
		!fmt_get_hex(token + body + 1, 4, crc))
	{
		env_wipe(secret, ENV_TOKEN_SECRET_BYTES);
		return ENV_TOKEN_MALFORMED;
	}
	want = ((uint32_t) crc[0] << 24) | ((uint32_t) crc[1] << 16) |
		((uint32_t) crc[2] << 8) | crc[3];
	if (env_crc32((const uint8_t *) token, body) != want)
	{
		env_wipe(secret, ENV_TOKEN_SECRET_BYTES);
		return ENV_TOKEN_BAD_CHECKSUM;
	}
	return ENV_TOKEN_OK;
}
