/*-------------------------------------------------------------------------
 *
 * fuzz_ciphertext.c
 *		libFuzzer harness: env_ct_parse() (the header of a data ciphertext)
 *		and env_key_unwrap() (a wrapped key) of src/format.c.
 *
 * Properties: a ciphertext parses exactly when it is long enough and
 * starts with the format-1 magic; its parts tile the input; writing the
 * header back from the parsed key id and nonce gives the input's header.
 * A wrapped key that did not come from the key-encrypting key never
 * unwraps, and the output buffer is wiped when it does not.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "format.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static EnvXaesKey kek;
	static int	have_kek = 0;
	EnvCiphertext ct;
	bool		ok = env_ct_parse(data, size, &ct);
	bool		want = size >= ENV_CT_OVERHEAD && data[0] == 'E' &&
		data[1] == 'V' && data[2] == ENV_CT_FORMAT_1 &&
		data[3] == ENV_CT_ALG_XAES256GCM;

	FUZZ_ASSERT(ok == want);
	if (ok)
	{
		uint8_t		header[ENV_CT_HEADER_LEN];
		uint64_t	key_id = 0;
		int			i;

		for (i = 0; i < 8; i++)
			key_id = (key_id << 8) | data[4 + i];
		FUZZ_ASSERT(ct.key_id == key_id);
		FUZZ_ASSERT(ct.header == data && ct.nonce == data + 12);
		FUZZ_ASSERT(ct.body == data + ENV_CT_HEADER_LEN);
		FUZZ_ASSERT(ct.body_len == size - ENV_CT_OVERHEAD);
		FUZZ_ASSERT(ct.tag == data + size - ENV_TAG_LEN);
		env_ct_write_header(header, ct.key_id, ct.nonce);
		FUZZ_ASSERT(memcmp(header, data, ENV_CT_HEADER_LEN) == 0);
	}
	FUZZ_ASSERT(!env_ct_parse(NULL, size, &ct));

	/* the same bytes as a wrapped key */
	if (!have_kek)
	{
		uint8_t		k[ENV_KEY_LEN];

		memset(k, 0x5a, sizeof(k));
		FUZZ_ASSERT(env_xaes_key_init(&kek, k));
		have_kek = 1;
	}
	{
		uint8_t		key[ENV_KEY_LEN];
		uint8_t		zero[ENV_KEY_LEN] = {0};
		EnvCryptoStatus st;

		memset(key, 0xee, sizeof(key));
		st = env_key_unwrap(&kek, data, size, data, size > 8 ? 8 : size, key);
		FUZZ_ASSERT(st != ENV_CRYPTO_OK);
		if (size == ENV_WRAPPED_LEN && data[0] == ENV_WRAP_FORMAT_1)
			FUZZ_ASSERT(st == ENV_CRYPTO_AUTH_FAILED &&
						memcmp(key, zero, sizeof(key)) == 0);
		else
			FUZZ_ASSERT(st == ENV_CRYPTO_AUTH_FAILED);
	}
	return 0;
}
