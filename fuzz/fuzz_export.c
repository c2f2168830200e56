/*-------------------------------------------------------------------------
 *
 * fuzz_export.c
 *		libFuzzer harness: the export reader of envault-verify, from bytes
 *		to a verdict: env_json_parse() of tools/json.c (jansson with
 *		envault's flags and bounds), then ev_export_parse() of
 *		tools/export.c, ev_verify() of tools/verify.c and ev_result_line()
 *		of tools/report.c.
 *
 * Properties, for any input:
 *	- JSON that is refused is refused with one line of printable ASCII;
 *	- JSON that parses, written compactly by jansson and parsed again, is
 *	  the same value, and writing that gives the same text again;
 *	- with a small memory bound, it parses to the same value or fails for
 *	  that bound, and a parse stopped for it leaks nothing (ASan checks);
 *	- an export that parses has its rows in order of seq, one value per
 *	  column each, and every checkpoint a string;
 *	- its verdict is one line, "OK: " or "FAIL: seq N: <reason>" with N at
 *	  least 1 and one of verify_chain's reasons; --complete never turns a
 *	  failure into a success;
 *	- an export that verifies has consecutive numbers, each row linked to
 *	  the one before (row 1 to the genesis value) and no null hash, checked
 *	  here independently of the verifier.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "chainfmt.h"
#include "report.h"
#include "fuzz.h"

/* The public key of the seed in test/regress.conf */
static const uint8_t fz_pub[ENV_ED25519_PUBLIC_LEN] = {
	0xd0, 0xeb, 0x66, 0x8b, 0xa3, 0x21, 0x4b, 0xac, 0xad, 0x54, 0x8b, 0x10,
	0x66, 0x63, 0x97, 0x59, 0xbc, 0x8d, 0xe9, 0x80, 0x49, 0x7d, 0xe5, 0xde,
	0x21, 0x8e, 0x26, 0xf7, 0xed, 0xac, 0x46, 0xba
};

static const char *const fz_reasons[] = {
	"hash mismatch", "missing row", "extra row", "checkpoint mismatch",
	"bad signature", "truncated after checkpoint", "purge not signed"
};

/* One line of printable ASCII, as envault-verify's verdict must be */
static bool
fz_printable(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char) *s < 0x20 || (unsigned char) *s >= 0x7f)
			return false;
	return true;
}

/*
 * jansson's compact text of a value, malloc'd: json_dumpb() rather than
 * json_dumps(), whose text would come from json.c's allocator
 */
static char *
fz_dump(const json_t *v, size_t *len)
{
	const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
	size_t		n = json_dumpb(v, NULL, 0, flags);
	char	   *buf;

	FUZZ_ASSERT(n > 0);
	buf = malloc(n);
	FUZZ_ASSERT(buf != NULL && json_dumpb(v, buf, n, flags) == n);
	*len = n;
	return buf;
}

static void
fz_json(const char *text, size_t len)
{
	EnvJsonLimits limits = {1 << 20, 64 << 20};
	/* room for a few small values only */
	EnvJsonLimits tight = {1 << 20, 2048};
	json_t	   *a;
	json_t	   *b;
	char		err[256];
	char	   *w1;
	char	   *w2;
	size_t		n1;
	size_t		n2;

	a = env_json_parse(text, len, &limits, err, sizeof(err));
	if (a == NULL)
	{
		FUZZ_ASSERT(fz_printable(err));
		FUZZ_ASSERT(env_json_parse(text, len, &tight, err, sizeof(err)) == NULL);
		return;
	}
	b = env_json_parse(text, len, &tight, err, sizeof(err));
	if (b == NULL)
		FUZZ_ASSERT(fz_printable(err) && strstr(err, "too large to read") != NULL);
	else
		FUZZ_ASSERT(json_equal(a, b));
	json_decref(b);

	w1 = fz_dump(a, &n1);
	b = env_json_parse(w1, n1, &limits, err, sizeof(err));
	FUZZ_ASSERT(b != NULL);
	FUZZ_ASSERT(json_equal(a, b));
	w2 = fz_dump(b, &n2);
	FUZZ_ASSERT(n2 == n1 && memcmp(w1, w2, n1) == 0);
	free(w1);
	free(w2);
	json_decref(a);
	json_decref(b);
}

static void
fz_check_result(const EvExport *ex, const EvResult *res)
{
	char	   *line = ev_result_line(ex, res);
	size_t		i;

	FUZZ_ASSERT(line != NULL && strchr(line, '\n') == NULL);
	if (res->ok)
	{
		FUZZ_ASSERT(strncmp(line, "OK: ", 4) == 0);
		FUZZ_ASSERT(res->rows == ex->nrows);
		FUZZ_ASSERT(res->checkpoints <= ex->ncps);
		FUZZ_ASSERT(res->covered <= res->last);
		for (i = 0; i < ex->nrows; i++)
		{
			const EvRow *r = &ex->rows[i];

			FUZZ_ASSERT(r->has_hash && r->has_prev);
			if (i == 0)
			{
				FUZZ_ASSERT(r->seq == res->first);
				if (r->seq == 1)
					FUZZ_ASSERT(memcmp(r->prev, env_chain_genesis,
									   ENV_CHAIN_HASH_LEN) == 0);
			}
			else
			{
				FUZZ_ASSERT(r->seq == ex->rows[i - 1].seq + 1);
				FUZZ_ASSERT(memcmp(r->prev, ex->rows[i - 1].hash,
								   ENV_CHAIN_HASH_LEN) == 0);
			}
		}
		if (ex->nrows > 0)
			FUZZ_ASSERT(res->last == ex->rows[ex->nrows - 1].seq);
	}
	else
	{
		bool		known = false;

		for (i = 0; i < sizeof(fz_reasons) / sizeof(fz_reasons[0]); i++)
			known = known || strcmp(res->reason, fz_reasons[i]) == 0;
		FUZZ_ASSERT(known && res->bad_seq >= 1);
		FUZZ_ASSERT(strncmp(line, "FAIL: seq ", 10) == 0);
	}
	free(line);
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	EvExport	ex;
	EvKey		key;
	EvResult	res;
	EvResult	strict;
	char		err[EV_ERRLEN];
	size_t		i;

	fz_json((const char *) data, size);

	if (!ev_export_parse((const char *) data, size, &ex, err))
	{
		FUZZ_ASSERT(fz_printable(err));
		return 0;
	}
	for (i = 1; i < ex.nrows; i++)
		FUZZ_ASSERT(ex.rows[i - 1].seq < ex.rows[i].seq ||
					(ex.rows[i - 1].seq == ex.rows[i].seq &&
					 ex.rows[i - 1].index < ex.rows[i].index));
	for (i = 0; i < ex.nrows; i++)
		FUZZ_ASSERT(ex.rows[i].seq >= 1 &&
					json_array_size(ex.rows[i].values) == ex.ncols);
	FUZZ_ASSERT(json_array_size(ex.cps) == ex.ncps);
	for (i = 0; i < ex.ncps; i++)
		FUZZ_ASSERT(json_is_string(json_array_get(ex.cps, i)));

	memset(&key, 0, sizeof(key));
	memcpy(key.name, "envault", 8);
	key.name_len = 7;
	memcpy(key.pub, fz_pub, sizeof(fz_pub));
	FUZZ_ASSERT(ev_verify(&ex, &key, 1, NULL, false, &res));
	fz_check_result(&ex, &res);
	FUZZ_ASSERT(ev_verify(&ex, &key, 1, NULL, true, &strict));
	fz_check_result(&ex, &strict);
	FUZZ_ASSERT(res.ok || !strict.ok);
	ev_export_free(&ex);
	return 0;
}
