/*-------------------------------------------------------------------------
 *
 * request.c
 *		Read a request to sign a checkpoint, as envault writes it on a
 *		signing command's or a witness's standard input, and check it
 *		against the checkpoint last signed for its origin: a signer or a
 *		witness that keeps its last text and runs these checks never signs
 *		two trees of one origin that contradict each other.
 *
 * The request comes from the database server, which the signer need not
 * trust: every length is checked before use, and nothing is allocated.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "request.h"

static const char ev_section[] = "\n\nconsistency ";
#define EV_SECTION_LEN	(sizeof(ev_section) - 1)

bool
ev_hashes_parse(const char *text, size_t len,
				uint8_t (*out)[ENV_MERKLE_HASH_LEN], int *n, char *err)
{
	const char *p = text;
	const char *end = text + len;
	int			line = 1;

	*n = 0;
	err[0] = '\0';
	while (p < end)
	{
		const char *eol = memchr(p, '\n', (size_t) (end - p));
		size_t		got;

		if (eol == NULL)
			eol = end;
		if (*n >= ENV_MERKLE_MAX_LEVELS)
		{
			snprintf(err, EV_ERRLEN, "more than %d hashes", ENV_MERKLE_MAX_LEVELS);
			return false;
		}
		if (!env_base64_decode(p, (size_t) (eol - p), out[*n],
							   ENV_MERKLE_HASH_LEN, &got) ||
			got != ENV_MERKLE_HASH_LEN)
		{
			snprintf(err, EV_ERRLEN, "line %d: expected the base64 of 32 bytes",
					 line);
			return false;
		}
		(*n)++;
		line++;
		p = eol + 1;
	}
	return true;
}

/* Where "\n\nconsistency " starts, or len */
static size_t
ev_find_section(const char *data, size_t len)
{
	size_t		i;

	for (i = 0; i + EV_SECTION_LEN <= len; i++)
		if (data[i] == '\n' && memcmp(data + i, ev_section, EV_SECTION_LEN) == 0)
			return i;
	return len;
}

/* "consistency <old size>\n" and the hashes */
static bool
ev_parse_section(const char *s, size_t len, EvRequest *req, char *err)
{
	const char *p = s + EV_SECTION_LEN;
	const char *end = s + len;
	uint64_t	size = 0;
	int			digits = 0;
	char		herr[EV_ERRLEN];

	while (p < end && *p >= '0' && *p <= '9')
	{
		unsigned	d = (unsigned) (*p - '0');

		if ((digits == 0 && d == 0) || size > (UINT64_MAX - d) / 10)
			break;
		size = size * 10 + d;
		digits++;
		p++;
	}
	if (digits == 0 || p >= end || *p != '\n')
	{
		snprintf(err, EV_ERRLEN, "malformed request: the consistency section must start with \"consistency <old size>\"");
		return false;
	}
	if (!ev_hashes_parse(p + 1, (size_t) (end - p - 1), req->proof,
						 &req->nproof, herr))
	{
		snprintf(err, EV_ERRLEN, "malformed request: consistency proof: %.200s",
				 herr);
		return false;
	}
	req->has_proof = true;
	req->proof_from = size;
	return true;
}

/* No NUL, no control character but newline */
static bool
ev_plain_text(const char *s, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if ((c < 0x20 && c != '\n') || c == 0x7f)
			return false;
	}
	return true;
}

EvRequestStatus
ev_request_parse(const char *data, size_t len, const EvKey *log_key,
				 EvRequest *req, char *err)
{
	size_t		body_len;
	size_t		i;

	memset(req, 0, sizeof(*req));
	err[0] = '\0';
	if (len > EV_REQUEST_MAXLEN)
	{
		snprintf(err, EV_ERRLEN, "malformed request: longer than %zu bytes",
				 (size_t) EV_REQUEST_MAXLEN);
		return EV_REQUEST_REFUSED;
	}
	body_len = ev_find_section(data, len);
	if (body_len < len)
	{
		if (!ev_parse_section(data + body_len, len - body_len, req, err))
			return EV_REQUEST_REFUSED;
		body_len++;				/* the text's or note's final newline */
	}

	if (log_key != NULL)
	{
		EnvCheckpointKey key;
		EnvNote		note;
		int			status;

		key.name = log_key->name;
		key.name_len = log_key->name_len;
		key.pub = log_key->pub;
		status = env_checkpoint_verify(data, body_len, &key, 1, &req->cp);
		if (status == 1 || !env_note_parse(data, body_len, &note))
		{
			snprintf(err, EV_ERRLEN, "malformed request: not a signed checkpoint note");
			return EV_REQUEST_REFUSED;
		}
		if (status != 0)
		{
			snprintf(err, EV_ERRLEN, "the checkpoint is not signed by the log's key");
			return EV_REQUEST_REFUSED;
		}
		if (!req->cp.tree)
		{
			snprintf(err, EV_ERRLEN, "the checkpoint signs a head row's hash (envault 0.2.0), not a tree head: only tree heads are cosigned");
			return EV_REQUEST_REFUSED;
		}
		req->note = data;
		req->note_len = body_len;
		req->text = note.text;
		req->text_len = note.text_len;
	}
	else
	{
		for (i = 0; i + 1 < body_len; i++)
			if (data[i] == '\n' && data[i + 1] == '\n')
			{
				snprintf(err, EV_ERRLEN, "malformed request: a signed note, not a checkpoint text (a witness's request needs the log's key)");
				return EV_REQUEST_REFUSED;
			}
		req->text = data;
		req->text_len = body_len;
		if (!ev_plain_text(data, body_len) ||
			!env_checkpoint_parse(data, body_len, &req->cp))
		{
			snprintf(err, EV_ERRLEN, "malformed request: not a checkpoint text");
			return EV_REQUEST_REFUSED;
		}
	}
	/* what a note of envault's can hold, and a cosignature cover */
	if (req->text_len > ENV_NOTE_MAXLEN)
	{
		snprintf(err, EV_ERRLEN, "malformed request: a checkpoint text of more than %d bytes",
				 ENV_NOTE_MAXLEN);
		return EV_REQUEST_REFUSED;
	}
	return EV_REQUEST_OK;
}

EvRequestStatus
ev_request_check(const EvRequest *req, const char *last, size_t last_len,
				 uint64_t *last_size, char *err)
{
	EnvCheckpoint old;
	const EnvCheckpoint *cp = &req->cp;

	err[0] = '\0';
	*last_size = 0;
	if (last == NULL)
		return EV_REQUEST_OK;	/* the first of its origin */
	if (!ev_plain_text(last, last_len) ||
		!env_checkpoint_parse(last, last_len, &old))
	{
		snprintf(err, EV_ERRLEN, "the checkpoint text last signed is not one");
		return EV_REQUEST_REFUSED;
	}
	*last_size = old.seq;
	if (old.origin_len != cp->origin_len ||
		memcmp(old.origin, cp->origin, cp->origin_len) != 0)
	{
		snprintf(err, EV_ERRLEN, "the checkpoint is of another origin than the one signed before");
		return EV_REQUEST_REFUSED;
	}
	if (cp->seq < old.seq)
	{
		snprintf(err, EV_ERRLEN, "the tree of %llu rows is smaller than the tree of %llu rows signed before",
				 (unsigned long long) cp->seq, (unsigned long long) old.seq);
		return EV_REQUEST_REFUSED;
	}
	if (cp->seq == old.seq)
	{
		if (memcmp(cp->hash, old.hash, ENV_MERKLE_HASH_LEN) != 0)
		{
			snprintf(err, EV_ERRLEN, "the tree of %llu rows differs from the one signed before: the log forked",
					 (unsigned long long) cp->seq);
			return EV_REQUEST_REFUSED;
		}
		return EV_REQUEST_OK;	/* the same head again */
	}
	if (!req->has_proof || req->proof_from != old.seq)
		return EV_REQUEST_SIZE;
	if (!env_merkle_verify_consistency(old.seq, cp->seq, old.hash, cp->hash,
									   (const uint8_t (*)[ENV_MERKLE_HASH_LEN]) req->proof,
									   req->nproof))
	{
		snprintf(err, EV_ERRLEN, "the consistency proof from %llu rows does not verify: the tree of %llu rows does not extend the one signed before",
				 (unsigned long long) old.seq, (unsigned long long) cp->seq);
		return EV_REQUEST_REFUSED;
	}
	return EV_REQUEST_OK;
}
