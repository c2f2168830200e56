/*-------------------------------------------------------------------------
 *
 * fuzz_note.c
 *		libFuzzer harness: the readers of src/note.c: env_base64_decode(),
 *		env_note_parse(), env_checkpoint_parse(), env_note_parse_vkey(),
 *		env_note_verify() and env_origin_matches().
 *
 * Properties, for any input:
 *	- base64 that decodes encodes back to exactly the input (one encoding
 *	  per byte string), and the input encoded decodes back to itself;
 *	- a note that parses has its text as a prefix ending in a newline, then
 *	  a blank line and its signature lines; when every signature is
 *	  Ed25519's, writing the note back from its parts gives the input;
 *	- a checkpoint text that parses with a time as its first extension line
 *	  starts with what env_checkpoint_text() writes from its parts (other
 *	  extension lines are opaque);
 *	- a verifier key that parses is written back by env_note_vkey(), and
 *	  its key ID is the one env_note_key_id() computes;
 *	- an origin built from a database, chain and tenant taken from the
 *	  input names that database, chain and tenant, and no other.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "fuzz.h"
#include "note.h"

/* The public key of the seed in test/regress.conf, for env_note_verify() */
static const uint8_t fz_pub[ENV_ED25519_PUBLIC_LEN] = {
	0xd0, 0xeb, 0x66, 0x8b, 0xa3, 0x21, 0x4b, 0xac, 0xad, 0x54, 0x8b, 0x10,
	0x66, 0x63, 0x97, 0x59, 0xbc, 0x8d, 0xe9, 0x80, 0x49, 0x7d, 0xe5, 0xde,
	0x21, 0x8e, 0x26, 0xf7, 0xed, 0xac, 0x46, 0xba
};

static void
fz_base64(const unsigned char *data, size_t size)
{
	static uint8_t out[ENV_BASE64_LEN(65536) + 1];
	static char text[ENV_BASE64_LEN(65536) + 1];
	size_t		n;
	size_t		m;

	if (size > 65536)
		return;
	if (env_base64_decode((const char *) data, size, out, sizeof(out), &n))
	{
		FUZZ_ASSERT(n <= size / 4 * 3);
		m = env_base64_encode(out, n, text);
		FUZZ_ASSERT(m == size && memcmp(text, data, size) == 0);
	}
	m = env_base64_encode(data, size, text);
	FUZZ_ASSERT(m == ENV_BASE64_LEN(size) && text[m] == '\0');
	FUZZ_ASSERT(env_base64_decode(text, m, out, sizeof(out), &n));
	FUZZ_ASSERT(n == size && memcmp(out, data, size) == 0);
	/* too small an output buffer refuses, never overflows */
	if (size > 0)
		FUZZ_ASSERT(!env_base64_decode(text, m, out, size - 1, &n));
}

static void
fz_checkpoint(const char *text, size_t len)
{
	EnvCheckpoint cp;
	char		again[ENV_NOTE_MAXLEN + 64];
	size_t		n;

	if (!env_checkpoint_parse(text, len, &cp))
		return;
	FUZZ_ASSERT(cp.origin == text && cp.origin_len > 0 && cp.seq > 0);
	if (cp.time[0] == '\0')
		return;
	/*
	 * its first four lines again (five with a purge statement), when the
	 * first extension line is a time
	 */
	n = env_checkpoint_text(cp.origin, cp.origin_len, cp.seq, cp.hash,
							cp.time, cp.purge, again, sizeof(again));
	FUZZ_ASSERT(n > 0 && n <= len && memcmp(again, text, n) == 0);
}

static void
fz_note(const unsigned char *data, size_t size)
{
	const char *note = (const char *) data;
	EnvNote		parsed;
	static char again[ENV_NOTE_READ_MAXLEN + 1];
	char	   *p = again;
	bool		all_ed25519 = true;
	int			i;

	(void) env_note_verify(note, size, "envault", 7, fz_pub, NULL);
	if (!env_note_parse(note, size, &parsed))
		return;
	FUZZ_ASSERT(parsed.text == note && parsed.text_len + 2 < size);
	FUZZ_ASSERT(note[parsed.text_len - 1] == '\n' &&
				note[parsed.text_len] == '\n');
	FUZZ_ASSERT(parsed.nsigs >= 1 && parsed.nsigs <= ENV_NOTE_MAXSIGS);
	fz_checkpoint(parsed.text, parsed.text_len);

	memcpy(p, note, parsed.text_len);
	p += parsed.text_len;
	*p++ = '\n';
	for (i = 0; i < parsed.nsigs; i++)
	{
		EnvNoteSig *s = &parsed.sigs[i];
		uint8_t		raw[ENV_NOTE_KEYID_LEN + ENV_ED25519_SIG_LEN];

		FUZZ_ASSERT(s->name > note && s->name + s->name_len < note + size);
		FUZZ_ASSERT(env_note_name_valid(s->name, s->name_len));
		if (!s->ed25519)
		{
			all_ed25519 = false;
			continue;
		}
		memcpy(p, "\xe2\x80\x94 ", 4);
		p += 4;
		memcpy(p, s->name, s->name_len);
		p += s->name_len;
		*p++ = ' ';
		memcpy(raw, s->key_id, ENV_NOTE_KEYID_LEN);
		memcpy(raw + ENV_NOTE_KEYID_LEN, s->sig, ENV_ED25519_SIG_LEN);
		p += env_base64_encode(raw, sizeof(raw), p);
		*p++ = '\n';
	}
	if (all_ed25519)
		FUZZ_ASSERT((size_t) (p - again) == size &&
					memcmp(again, note, size) == 0);
}

static void
fz_vkey(const unsigned char *data, size_t size)
{
	char		name[ENV_NOTE_NAME_MAXLEN + 1];
	uint8_t		key_id[ENV_NOTE_KEYID_LEN];
	uint8_t		want[ENV_NOTE_KEYID_LEN];
	uint8_t		pub[ENV_ED25519_PUBLIC_LEN];
	char		again[ENV_NOTE_NAME_MAXLEN + 64];
	size_t		len = size;
	size_t		n;

	if (!env_note_parse_vkey((const char *) data, size, name, key_id, pub))
		return;
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		len--;
	env_note_key_id(name, strlen(name), pub, want);
	FUZZ_ASSERT(memcmp(want, key_id, ENV_NOTE_KEYID_LEN) == 0);
	n = env_note_vkey(name, strlen(name), pub, again, sizeof(again));
	FUZZ_ASSERT(n == len && memcmp(again, data, len) == 0);
}

/*
 * Take a database, a chain and a tenant from the input (the first two
 * bytes give the first two lengths; a third byte chooses a NULL tenant).
 */
static void
fz_origin(const unsigned char *data, size_t size)
{
	static char origin[3 * 70000 + 16];
	size_t		dlen;
	size_t		clen;
	bool		null_tenant;
	const char *db;
	const char *chain;
	const char *tenant;
	size_t		tlen;
	size_t		n;

	if (size < 3)
		return;
	null_tenant = (data[2] & 1) != 0;
	dlen = data[0] % 32;
	clen = (size_t) data[1] * 8;
	data += 3;
	size -= 3;
	if (dlen > size)
		dlen = size;
	if (clen > size - dlen)
		clen = size - dlen;
	db = (const char *) data;
	chain = db + dlen;
	tenant = null_tenant ? NULL : chain + clen;
	tlen = null_tenant ? 0 : size - dlen - clen;
	n = env_origin_build(db, dlen, chain, clen, tenant, tlen, origin,
						 sizeof(origin));
	FUZZ_ASSERT(n > 0);
	FUZZ_ASSERT(env_origin_matches(origin, n, db, dlen, chain, clen, tenant, tlen));
	/* no database pinned: nothing matches */
	FUZZ_ASSERT(!env_origin_matches(origin, n, NULL, 0, chain, clen, tenant, tlen));
	/* another database does not match */
	if (dlen > 0)
		FUZZ_ASSERT(!env_origin_matches(origin, n, db, dlen - 1, chain, clen,
										tenant, tlen));
	/* the chain without tenant and the chain with tenant "" differ */
	FUZZ_ASSERT(!env_origin_matches(origin, n, db, dlen, chain, clen,
									null_tenant ? "" : NULL, 0));
	if (clen > 0)
		FUZZ_ASSERT(!env_origin_matches(origin, n, db, dlen, chain, clen - 1,
										tenant, tlen));
	if (!null_tenant && tlen > 0)
		FUZZ_ASSERT(!env_origin_matches(origin, n, db, dlen, chain, clen,
										tenant, tlen - 1));
	/* the origin itself, read as one */
	(void) env_origin_matches((const char *) data, size, db, dlen, chain, clen,
							  tenant, tlen);
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	fz_base64(data, size);
	fz_note(data, size);
	fz_checkpoint((const char *) data, size);
	fz_vkey(data, size);
	fz_origin(data, size);
	return 0;
}
