/*-------------------------------------------------------------------------
 *
 * trust.c
 *		The keys a verifier trusts: signing keys of checkpoints (verifier
 *		keys or PEM public keys) and witnesses' keys, and the cosignatures
 *		that witnesses' keys verify.
 *
 * Only public keys are read here: a file holding a private key is refused
 * rather than read.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "trust.h"

static bool
ev_contains(const char *s, size_t len, const char *word)
{
	size_t		n = strlen(word);
	size_t		i;

	for (i = 0; i + n <= len; i++)
		if (memcmp(s + i, word, n) == 0)
			return true;
	return false;
}

/* A key file's text without the white space around it: [*start, *len) */
static void
ev_trim(const char *text, size_t *start, size_t *len)
{
	while (*start < *len && (text[*start] == ' ' || text[*start] == '\t' ||
							 text[*start] == '\n' || text[*start] == '\r'))
		(*start)++;
	while (*len > *start && (text[*len - 1] == ' ' || text[*len - 1] == '\t' ||
							 text[*len - 1] == '\n' || text[*len - 1] == '\r'))
		(*len)--;
}

bool
ev_key_parse(const char *text, size_t len, const char *name, EvKey *key,
			 char *err)
{
	size_t		start = 0;
	uint8_t		key_id[ENV_NOTE_KEYID_LEN];

	memset(key, 0, sizeof(*key));
	err[0] = '\0';
	if (ev_contains(text, len, "-----BEGIN"))
	{
		if (ev_contains(text, len, "PRIVATE KEY"))
		{
			snprintf(err, EV_ERRLEN, "holds a private key: give the public key (openssl pkey -pubout) or the verifier key (envault.signing_public_key())");
			return false;
		}
		if (!env_ed25519_public_from_pem(text, len, key->pub))
		{
			snprintf(err, EV_ERRLEN, "is not a PEM Ed25519 public key");
			return false;
		}
		if (!env_note_name_valid(name, strlen(name)))
		{
			snprintf(err, EV_ERRLEN, "key name is not valid: it must be 1 to %d printable ASCII characters without spaces or \"+\"",
					 ENV_NOTE_NAME_MAXLEN);
			return false;
		}
		key->name_len = strlen(name);
		memcpy(key->name, name, key->name_len + 1);
		return true;
	}
	ev_trim(text, &start, &len);
	if (!env_note_parse_vkey(text + start, len - start, key->name, key_id, key->pub))
	{
		snprintf(err, EV_ERRLEN, "is neither a verifier key (name+keyid+base64, as envault.signing_public_key() returns it) nor a PEM Ed25519 public key");
		return false;
	}
	key->name_len = strlen(key->name);
	return true;
}

bool
ev_witness_parse(const char *text, size_t len, EvWitness *w, char *err)
{
	size_t		start = 0;
	uint8_t		key_id[ENV_NOTE_KEYID_LEN];
	uint8_t		type;

	memset(w, 0, sizeof(*w));
	err[0] = '\0';
	ev_trim(text, &start, &len);
	if (!env_note_parse_vkey_typed(text + start, len - start, w->name, key_id,
								   &type, w->pub))
	{
		snprintf(err, EV_ERRLEN, "is not a witness verifier key (name+keyid+base64(0x04 || public key), as envault-witness --print-vkey prints it)");
		return false;
	}
	if (type != ENV_NOTE_TYPE_COSIGNATURE)
	{
		snprintf(err, EV_ERRLEN, "is a verifier key of signatures (type 0x01), not of a witness's cosignatures (type 0x04)");
		return false;
	}
	w->name_len = strlen(w->name);
	return true;
}

void
ev_checkpoint_keys(const EvKey *keys, int nkeys, EnvCheckpointKey *out)
{
	int			k;

	for (k = 0; k < nkeys; k++)
	{
		out[k].name = keys[k].name;
		out[k].name_len = keys[k].name_len;
		out[k].pub = keys[k].pub;
	}
}

bool
ev_same_witness(const EvWitness *a, const EvWitness *b)
{
	return a->name_len == b->name_len &&
		memcmp(a->name, b->name, a->name_len) == 0 &&
		memcmp(a->pub, b->pub, ENV_ED25519_PUBLIC_LEN) == 0;
}

int
ev_cosigners(const char *note, size_t len, const EvWitness *witnesses,
			 int nwitnesses, uint64_t *mask, int *bad)
{
	int			count = 0;
	int			k;
	int			j;

	*bad = -1;
	*mask = 0;
	for (k = 0; k < nwitnesses && k < 64; k++)
	{
		const EvWitness *w = &witnesses[k];
		uint64_t	timestamp;
		EnvNoteCheck rc;

		for (j = 0; j < k; j++)
			if (ev_same_witness(&witnesses[j], w))
				break;
		if (j < k)
			continue;
		rc = env_note_verify_cosignature(note, len, w->name, w->name_len,
										 w->pub, &timestamp);
		if (rc == ENV_NOTE_BAD_SIGNATURE || rc == ENV_NOTE_MALFORMED)
		{
			*bad = k;
			*mask = 0;
			return -1;
		}
		if (rc == ENV_NOTE_VERIFIED)
		{
			*mask |= (uint64_t) 1 << k;
			count++;
		}
	}
	return count;
}
