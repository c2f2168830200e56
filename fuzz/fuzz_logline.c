/*-------------------------------------------------------------------------
 *
 * fuzz_logline.c
 *		libFuzzer harness: the reader of checkpoint lines in server logs,
 *		ev_log_parse_line() and ev_log_add() of tools/serverlog.c.
 *
 * Properties: every line of the input is read without reading outside it;
 * a line read completely is written back, from what was read, to exactly
 * the part of the input that holds it ("envault checkpoint: origin=...
 * note=..."); a checkpoint line is kept for its own origin and no other.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "serverlog.h"
#include "fuzz.h"

static void
fz_line(const char *line, size_t len)
{
	static char again[2 * ENV_NOTE_MAXLEN + 65536];
	EvLogLine	l;
	EvLog		log;
	char		hash64[ENV_BASE64_LEN(ENV_SHA256_LEN) + 1];
	int			n;

	if (ev_log_parse_line(line, len, &l) == 0)
		return;
	FUZZ_ASSERT(l.start + 27 <= len && l.end <= len);
	FUZZ_ASSERT(l.origin == line + l.start + 27 && l.origin_len > 0);
	FUZZ_ASSERT(l.origin + l.origin_len <= line + len);
	if (l.parsed)
	{
		char	   *p;

		FUZZ_ASSERT(l.has_seq && l.seq > 0 && l.note_len <= ENV_NOTE_MAXLEN);
		(void) env_base64_encode(l.hash, ENV_SHA256_LEN, hash64);
		n = snprintf(again, sizeof(again), "envault checkpoint: origin=%.*s seq=%llu hash=%s note=",
					 (int) l.origin_len, l.origin, (unsigned long long) l.seq, hash64);
		FUZZ_ASSERT(n > 0 && (size_t) n < sizeof(again) - ENV_BASE64_LEN(ENV_NOTE_MAXLEN));
		p = again + n;
		p += env_base64_encode((const uint8_t *) l.note, l.note_len, p);
		FUZZ_ASSERT((size_t) (p - again) == l.end - l.start);
		FUZZ_ASSERT(memcmp(again, line + l.start, l.end - l.start) == 0);
	}

	FUZZ_ASSERT(ev_log_init(&log, l.origin, l.origin_len));
	FUZZ_ASSERT(ev_log_add(&log, line, len, "fuzz", 1));
	FUZZ_ASSERT(log.n == 1 && log.items[0].parsed == l.parsed);
	ev_log_free(&log);
	FUZZ_ASSERT(ev_log_init(&log, "envault/x", 9));
	FUZZ_ASSERT(ev_log_add(&log, line, len, "fuzz", 1));
	FUZZ_ASSERT(log.n == (l.origin_len == 9 && memcmp(l.origin, "envault/x", 9) == 0));
	ev_log_free(&log);
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *p = (const char *) data;
	const char *end = p + size;

	/* each line by itself, as envault-verify reads a log */
	while (p < end)
	{
		const char *nl = memchr(p, '\n', (size_t) (end - p));
		size_t		len = nl ? (size_t) (nl - p) : (size_t) (end - p);

		fz_line(p, len);
		p += len + (nl != NULL);
	}
	return 0;
}
