/*-------------------------------------------------------------------------
 *
 * json.c
 *		jansson with envault's flags and bounds; json.h describes what is
 *		accepted.
 *
 * jansson's parser is strict enough for envault except in three ways,
 * made good here: it keeps the last of duplicate keys unless told
 * otherwise (JSON_REJECT_DUPLICATES), it has no bound on memory, and its
 * messages may quote the input, bytes and all.
 *
 * Memory: jansson's values cost far more than the text they come from (an
 * empty object, "{}", takes about 70 bytes of allocations for each 3 bytes
 * of input), so a size limit on the input alone would let a hostile export
 * of 256 MiB take tens of GiB.  jansson's allocations therefore go through
 * a counting allocator, and a parse stops once the values it made take
 * more than the caller allows.  The allocator never refuses a block to
 * stop it: jansson's lexer ignores a failure to grow the text of the token
 * it reads, and then copies past its end.  Instead the parse reads its
 * input through a callback, in jansson's chunks of a kilobyte, and the
 * callback ends the input as soon as the bound is passed; the parse then
 * fails, having taken beyond the bound only what one chunk made (and the
 * growth of the text of a long token, which at most doubles it).  The
 * count is of live bytes across the program (tools are single-threaded),
 * and the bound applies only while a parse runs, to what that parse adds.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* Every block carries its size in front, aligned for any type */
typedef union JsHeader
{
	size_t		size;
	long double align_ld;
	void	   *align_p;
	long long	align_ll;
} JsHeader;

/*
 * What a block costs: its bytes, the header and what malloc keeps for it
 * (about 16 bytes), which for jansson's many small blocks is much of it
 */
#define JS_COST(size)	((size) + sizeof(JsHeader) + 16)

static size_t js_live;			/* cost of jansson's live blocks */
static size_t js_limit = SIZE_MAX;	/* the parse stops when js_live passes it */
static bool js_over;			/* js_live passed js_limit */

static void *
js_malloc(size_t size)
{
	JsHeader   *h;

	if (size > SIZE_MAX - JS_COST(0))
		return NULL;
	h = malloc(sizeof(JsHeader) + size);
	if (h == NULL)
		return NULL;
	h->size = size;
	js_live += JS_COST(size);
	if (js_live > js_limit)
		js_over = true;
	return h + 1;
}

static void
js_free(void *p)
{
	JsHeader   *h;

	if (p == NULL)
		return;
	h = (JsHeader *) p - 1;
	js_live -= JS_COST(h->size);
	free(h);
}

/* The input of a parse, handed to jansson a chunk at a time */
typedef struct JsInput
{
	const char *text;
	size_t		len;
	size_t		pos;
} JsInput;

/* json_load_callback_t: 0 is the end of the input, (size_t) -1 an error */
static size_t
js_read(void *buf, size_t buflen, void *arg)
{
	JsInput    *in = arg;
	size_t		n = in->len - in->pos;

	if (js_over)
		return (size_t) -1;
	if (n > buflen)
		n = buflen;
	memcpy(buf, in->text + in->pos, n);
	in->pos += n;
	return n;
}

/*
 * jansson's message, as printable ASCII: it quotes the token it stopped at,
 * which may hold any byte of the input, and envault-verify's verdict is
 * one line of text.
 */
static void
js_message(const json_error_t *je, char *err, size_t errlen)
{
	const char *text = je->text;
	size_t		n;
	size_t		i;

	/* jansson's own wording names its flag, not the rule */
	if (json_error_code(je) == json_error_null_character ||
		json_error_code(je) == json_error_null_byte_in_key)
		text = "\\u0000 is not allowed in a string";

	/* columns are 1-based; jansson says 0 before a line's first character */
	n = (size_t) snprintf(err, errlen, "line %d, column %d: ", je->line,
						  je->column > 0 ? je->column : 1);
	if (n >= errlen)
		return;
	snprintf(err + n, errlen - n, "%s", text);
	for (i = n; err[i] != '\0'; i++)
		if ((unsigned char) err[i] < 0x20 || (unsigned char) err[i] >= 0x7f)
			err[i] = '?';
}

json_t *
env_json_parse(const char *text, size_t len, const EnvJsonLimits *limits,
			   char *err, size_t errlen)
{
	static bool allocator_set = false;
	json_error_t je;
	json_t	   *doc;
	JsInput		in = {text, len, 0};

	if (errlen > 0)
		err[0] = '\0';
	/* before jansson allocates anything, so every block is counted */
	if (!allocator_set)
	{
		json_set_alloc_funcs(js_malloc, js_free);
		allocator_set = true;
	}

	if (len > limits->max_len)
	{
		snprintf(err, errlen, "larger than %zu bytes", limits->max_len);
		return NULL;
	}
	/* jansson calls it an invalid token; say what it is */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
	{
		snprintf(err, errlen, "line 1, column 1: byte order mark before the document");
		return NULL;
	}

	js_over = false;
	js_limit = limits->max_memory > SIZE_MAX - js_live ?
		SIZE_MAX : js_live + limits->max_memory;
	doc = json_load_callback(js_read, &in,
							 JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	js_limit = SIZE_MAX;

	if (doc != NULL && !js_over)
		return doc;
	/* what was read before the bound was passed may make a document */
	json_decref(doc);
	if (!js_over)
		js_message(&je, err, errlen);
	else if (limits->max_memory % (1 << 20) == 0)
		snprintf(err, errlen, "too large to read: its values take more than %zu MiB of memory",
				 limits->max_memory >> 20);
	else
		snprintf(err, errlen, "too large to read: its values take more than %zu bytes of memory",
				 limits->max_memory);
	return NULL;
}

void
env_json_excerpt(const char *s, size_t len, char *out)
{
	size_t		i;

	for (i = 0; i < len && i < 40; i++)
	{
		unsigned char c = (unsigned char) s[i];

		out[i] = (c >= 0x20 && c < 0x7f && c != '"') ? (char) c : '?';
	}
	strcpy(out + i, len > 40 ? "..." : "");
}
