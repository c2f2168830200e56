/*-------------------------------------------------------------------------
 *
 * fuzz_token.c
 *		libFuzzer harness: env_token_parse() of src/format.c, the API token
 *		"evt_" id[16 hex] "_" secret[64 hex] "_" crc[8 hex].
 *
 * Properties: a token that parses formats back to exactly the input; one
 * refused for its checksum is well formed and differs from the formatted
 * token only in the checksum; one refused as malformed is not well formed
 * (checked here independently), and its secret output is wiped; and any
 * id and secret format into a token that parses back to them.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "format.h"
#include "fuzz.h"

static bool
lower_hex(const unsigned char *p, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

/* The token format, written out independently of format.c */
static bool
well_formed(const unsigned char *t, size_t n)
{
	return n == ENV_TOKEN_LEN && memcmp(t, "evt_", 4) == 0 &&
		lower_hex(t + 4, 16) && t[20] == '_' && lower_hex(t + 21, 64) &&
		t[85] == '_' && lower_hex(t + 86, 8);
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	uint8_t		id[ENV_TOKEN_ID_BYTES];
	uint8_t		secret[ENV_TOKEN_SECRET_BYTES];
	uint8_t		zero[ENV_TOKEN_SECRET_BYTES] = {0};
	char		again[ENV_TOKEN_LEN + 1];
	EnvTokenStatus st;

	memset(secret, 0xee, sizeof(secret));
	st = env_token_parse((const char *) data, size, id, secret);
	switch (st)
	{
		case ENV_TOKEN_OK:
			env_token_format(again, id, secret);
			FUZZ_ASSERT(size == ENV_TOKEN_LEN &&
						memcmp(again, data, size) == 0);
			break;
		case ENV_TOKEN_BAD_CHECKSUM:
			FUZZ_ASSERT(well_formed(data, size));
			FUZZ_ASSERT(memcmp(secret, zero, sizeof(secret)) == 0);
			break;
		case ENV_TOKEN_MALFORMED:
			FUZZ_ASSERT(!well_formed(data, size));
			FUZZ_ASSERT(memcmp(secret, zero, sizeof(secret)) == 0 ||
						memcmp(secret, "\xee\xee\xee\xee", 4) == 0);
			break;
	}

	/* a well-formed input with its checksum corrected parses */
	if (well_formed(data, size))
	{
		uint8_t		id2[ENV_TOKEN_ID_BYTES];
		uint8_t		secret2[ENV_TOKEN_SECRET_BYTES];

		memcpy(again, data, size);
		again[size] = '\0';
		if (env_token_parse(again, size, id2, secret2) != ENV_TOKEN_OK)
		{
			char		fixed[ENV_TOKEN_LEN + 1];

			FUZZ_ASSERT(st == ENV_TOKEN_BAD_CHECKSUM);
			/* format.c wiped secret; read it from the input again */
			FUZZ_ASSERT(env_hex_decode(again + 21, 64, secret2, 32) == 0);
			FUZZ_ASSERT(env_hex_decode(again + 4, 16, id2, 8) == 0);
			env_token_format(fixed, id2, secret2);
			FUZZ_ASSERT(memcmp(fixed, data, ENV_TOKEN_LEN - 8) == 0);
			FUZZ_ASSERT(memcmp(fixed + ENV_TOKEN_LEN - 8,
							   data + ENV_TOKEN_LEN - 8, 8) != 0);
			FUZZ_ASSERT(env_token_parse(fixed, ENV_TOKEN_LEN, id2, secret2) ==
						ENV_TOKEN_OK);
		}
	}

	/* any id and secret: format, then parse, gives them back */
	if (size >= ENV_TOKEN_ID_BYTES + ENV_TOKEN_SECRET_BYTES)
	{
		uint8_t		id2[ENV_TOKEN_ID_BYTES];
		uint8_t		secret2[ENV_TOKEN_SECRET_BYTES];

		env_token_format(again, data, data + ENV_TOKEN_ID_BYTES);
		FUZZ_ASSERT(strlen(again) == ENV_TOKEN_LEN);
		FUZZ_ASSERT(env_token_parse(again, ENV_TOKEN_LEN, id2, secret2) ==
					ENV_TOKEN_OK);
		FUZZ_ASSERT(memcmp(id2, data, ENV_TOKEN_ID_BYTES) == 0);
		FUZZ_ASSERT(memcmp(secret2, data + ENV_TOKEN_ID_BYTES,
						   ENV_TOKEN_SECRET_BYTES) == 0);
	}
	return 0;
}
