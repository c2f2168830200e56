/*-------------------------------------------------------------------------
 *
 * serverlog.c
 *		Find the copies of signed checkpoints that envault writes to the
 *		server log, and keep those of one chain and tenant.
 *
 * A log line is untrusted: it is read with the same bounds as an export.
 * Nothing here is secret.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainfmt.h"
#include "serverlog.h"

static const char ev_marker[] = "envault checkpoint: origin=";
#define EV_MARKER_LEN	(sizeof(ev_marker) - 1)

static bool
ev_is_b64(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
}

/* Does the line continue at *pos with word?  Advances past it if so. */
static bool
ev_expect(const char *line, size_t len, size_t *pos, const char *word)
{
	size_t		n = strlen(word);

	if (len - *pos < n || memcmp(line + *pos, word, n) != 0)
		return false;
	*pos += n;
	return true;
}

int
ev_log_parse_line(const char *line, size_t len, EvLogLine *out)
{
	size_t		i;
	size_t		pos;
	size_t		start;
	size_t		digits;
	uint64_t	seq = 0;
	size_t		n;

	memset(out, 0, sizeof(*out));
	if (len < EV_MARKER_LEN)
		return 0;
	for (i = 0; i + EV_MARKER_LEN <= len; i++)
		if (line[i] == 'e' && memcmp(line + i, ev_marker, EV_MARKER_LEN) == 0)
			break;
	if (i + EV_MARKER_LEN > len)
		return 0;
	out->start = i;
	pos = i + EV_MARKER_LEN;

	/* the origin: up to the next space; it never holds one */
	start = pos;
	while (pos < len && (unsigned char) line[pos] > 0x20 && line[pos] != 0x7f)
		pos++;
	if (pos == start)
		return 0;
	out->origin = line + start;
	out->origin_len = pos - start;
	out->end = pos;

	if (!ev_expect(line, len, &pos, " seq="))
		return 1;
	for (digits = 0; pos < len && line[pos] >= '0' && line[pos] <= '9'; digits++, pos++)
	{
		unsigned	d = (unsigned) (line[pos] - '0');

		if (digits == 0 && d == 0)
			return 1;			/* no leading zero, and never 0 */
		if (seq > (UINT64_MAX - d) / 10)
			return 1;
		seq = seq * 10 + d;
	}
	if (digits == 0)
		return 1;
	out->has_seq = true;
	out->seq = seq;

	if (!ev_expect(line, len, &pos, " hash="))
		return 1;
	start = pos;
	while (pos < len && ev_is_b64(line[pos]))
		pos++;
	if (!env_base64_decode(line + start, pos - start, out->hash, ENV_SHA256_LEN, &n) ||
		n != ENV_SHA256_LEN)
		return 1;

	if (!ev_expect(line, len, &pos, " note="))
		return 1;
	start = pos;
	while (pos < len && ev_is_b64(line[pos]))
		pos++;
	if (!env_base64_decode(line + start, pos - start, (uint8_t *) out->note,
						   ENV_NOTE_MAXLEN, &out->note_len))
		return 1;
	out->note[out->note_len] = '\0';
	out->end = pos;
	out->parsed = true;
	return 1;
}

bool
ev_log_init(EvLog *log, const char *origin, size_t origin_len)
{
	memset(log, 0, sizeof(*log));
	log->origin = malloc(origin_len + 1);
	if (log->origin == NULL)
		return false;
	memcpy(log->origin, origin, origin_len);
	log->origin[origin_len] = '\0';
	log->origin_len = origin_len;
	return true;
}

bool
ev_log_add(EvLog *log, const char *line, size_t len, const char *file,
		   uint64_t lineno)
{
	EvLogLine	parsed;
	EvLogCheckpoint *c;
	size_t		wlen;

	if (ev_log_parse_line(line, len, &parsed) == 0 ||
		parsed.origin_len != log->origin_len ||
		memcmp(parsed.origin, log->origin, log->origin_len) != 0)
		return true;
	if (log->n == log->cap)
	{
		size_t		cap = log->cap == 0 ? 16 : log->cap * 2;
		EvLogCheckpoint *items;

		if (cap > ((size_t) 1 << 32))
			return false;
		items = realloc(log->items, cap * sizeof(EvLogCheckpoint));
		if (items == NULL)
			return false;
		log->items = items;
		log->cap = cap;
	}
	c = &log->items[log->n];
	memset(c, 0, sizeof(*c));
	wlen = strlen(file) + 32;
	c->where = malloc(wlen);
	c->note = malloc(parsed.note_len + 1);
	if (c->where == NULL || c->note == NULL)
	{
		free(c->where);
		free(c->note);
		return false;
	}
	snprintf(c->where, wlen, "%s line %llu", file, (unsigned long long) lineno);
	memcpy(c->note, parsed.note, parsed.note_len + 1);
	c->note_len = parsed.note_len;
	c->parsed = parsed.parsed;
	c->has_seq = parsed.has_seq;
	c->seq = parsed.seq;
	memcpy(c->hash, parsed.hash, ENV_SHA256_LEN);
	log->n++;
	return true;
}

void
ev_log_free(EvLog *log)
{
	size_t		i;

	if (log == NULL)
		return;
	for (i = 0; i < log->n; i++)
	{
		free(log->items[i].where);
		free(log->items[i].note);
	}
	free(log->items);
	free(log->origin);
	memset(log, 0, sizeof(*log));
}
