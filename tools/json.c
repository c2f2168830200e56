/*-------------------------------------------------------------------------
 *
 * json.c
 *		A strict RFC 8259 JSON reader into an arena, and a canonical writer;
 *		json.h describes what is accepted.
 *
 * The reader recurses once per nesting level and refuses to go deeper than
 * the caller's limit.  Elements of arrays and objects are collected on two
 * scratch stacks shared by every level and copied into the arena, exactly
 * sized, when their container closes.  Every failure frees everything.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "json.h"

/* --- arena ----------------------------------------------------------------- */

#define JS_BLOCK_SIZE	65536
#define JS_ALIGN		16
#define JS_ROUND(n)		(((n) + (JS_ALIGN - 1)) & ~(size_t) (JS_ALIGN - 1))

typedef struct JsBlock
{
	struct JsBlock *next;
	size_t		size;			/* usable bytes after the header */
	size_t		used;
} JsBlock;

#define JS_HEADER		JS_ROUND(sizeof(JsBlock))

struct EnvJsonArena
{
	JsBlock    *head;
};

static void *
js_arena_alloc(EnvJsonArena *a, size_t n)
{
	JsBlock    *b = a->head;
	size_t		need;
	void	   *p;

	if (n > ENV_JSON_HARD_MAXLEN * 2)
		return NULL;
	need = JS_ROUND(n == 0 ? 1 : n);
	if (b == NULL || b->size - b->used < need)
	{
		size_t		size = need > JS_BLOCK_SIZE / 4 ? need : JS_BLOCK_SIZE;

		b = malloc(JS_HEADER + size);
		if (b == NULL)
			return NULL;
		b->size = size;
		b->used = 0;
		/* a dedicated block for a large request keeps the current one */
		if (size == need && a->head != NULL)
		{
			b->next = a->head->next;
			a->head->next = b;
		}
		else
		{
			b->next = a->head;
			a->head = b;
		}
	}
	p = (char *) b + JS_HEADER + b->used;
	b->used += need;
	return p;
}

static void
js_arena_free(EnvJsonArena *a)
{
	JsBlock    *b;

	if (a == NULL)
		return;
	b = a->head;
	while (b != NULL)
	{
		JsBlock    *next = b->next;

		free(b);
		b = next;
	}
	free(a);
}

/* --- parser state ---------------------------------------------------------- */

typedef struct JsParser
{
	const char *text;
	size_t		len;
	size_t		pos;
	const EnvJsonLimits *limits;
	size_t		nvalues;
	EnvJsonArena *arena;

	EnvJson    *vstack;			/* elements of open arrays */
	size_t		vtop;
	size_t		vcap;
	EnvJsonMember *mstack;		/* members of open objects */
	size_t		mtop;
	size_t		mcap;

	char	   *err;
	size_t		errlen;
	bool		failed;
} JsParser;

static bool js_fail(JsParser *p, size_t offset, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

void
env_json_position(const char *text, size_t len, size_t offset,
				  size_t *line, size_t *column)
{
	size_t		i;
	size_t		l = 1;
	size_t		start = 0;

	if (offset > len)
		offset = len;
	for (i = 0; i < offset; i++)
	{
		if (text[i] == '\n')
		{
			l++;
			start = i + 1;
		}
	}
	*line = l;
	*column = offset - start + 1;
}

static bool
js_fail(JsParser *p, size_t offset, const char *fmt,...)
{
	va_list		ap;
	size_t		line;
	size_t		column;
	int			n;

	if (p->failed)
		return false;
	p->failed = true;
	if (p->err == NULL || p->errlen == 0)
		return false;
	env_json_position(p->text, p->len, offset, &line, &column);
	n = snprintf(p->err, p->errlen, "line %zu, column %zu: ", line, column);
	if (n >= 0 && (size_t) n < p->errlen)
	{
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - (size_t) n, fmt, ap);
		va_end(ap);
	}
	return false;
}

static bool
js_oom(JsParser *p)
{
	if (!p->failed && p->err != NULL && p->errlen > 0)
		snprintf(p->err, p->errlen, "out of memory");
	p->failed = true;
	return false;
}

static void
js_skip_ws(JsParser *p)
{
	while (p->pos < p->len)
	{
		char		c = p->text[p->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

/* A printable description of the byte at pos, for error messages */
static const char *
js_describe(JsParser *p, char *buf, size_t buflen)
{
	unsigned char c;

	if (p->pos >= p->len)
		return "end of input";
	c = (unsigned char) p->text[p->pos];
	if (c > 0x20 && c < 0x7f)
		snprintf(buf, buflen, "'%c'", c);
	else
		snprintf(buf, buflen, "byte 0x%02x", c);
	return buf;
}

static bool
js_count(JsParser *p, size_t offset)
{
	if (++p->nvalues > p->limits->max_values)
		return js_fail(p, offset, "more than %zu values", p->limits->max_values);
	return true;
}

/* --- strings ----------------------------------------------------------------- */

/* Four hex digits at pos, as a code unit; -1 if they are not */
static long
js_hex4(JsParser *p, size_t pos)
{
	uint8_t		b[2];

	if (p->len - pos < 4 || env_hex_decode(p->text + pos, 4, b, 2) != 0)
		return -1;
	return ((long) b[0] << 8) | b[1];
}

/*
 * Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0:
 * no overlong forms, no surrogates, nothing above U+10FFFF.
 */
static size_t
js_utf8_len(const unsigned char *s, size_t n)
{
	size_t		need;
	uint32_t	cp;
	size_t		i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		need = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		need = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		need = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < need)
		return 0;
	for (i = 1; i < need; i++)
	{
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		(need == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return need;
}

static char *
js_put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80)
		*o++ = (char) cp;
	else if (cp < 0x800)
	{
		*o++ = (char) (0xc0 | (cp >> 6));
		*o++ = (char) (0x80 | (cp & 0x3f));
	}
	else if (cp < 0x10000)
	{
		*o++ = (char) (0xe0 | (cp >> 12));
		*o++ = (char) (0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char) (0x80 | (cp & 0x3f));
	}
	else
	{
		*o++ = (char) (0xf0 | (cp >> 18));
		*o++ = (char) (0x80 | ((cp >> 12) & 0x3f));
		*o++ = (char) (0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char) (0x80 | (cp & 0x3f));
	}
	return o;
}

/*
 * The string that starts at pos (a '"'), decoded into the arena.  Decoding
 * never makes a string longer (\uXXXX is 6 bytes for at most 3, a pair 12
 * for 4), so the raw length bounds the output.
 */
static bool
js_string(JsParser *p, const char **out, size_t *out_len)
{
	size_t		start = p->pos;
	size_t		end;
	char	   *buf;
	char	   *o;
	size_t		i;

	/* find the closing quote, skipping escaped characters */
	for (end = start + 1; end < p->len && p->text[end] != '"'; end++)
	{
		if (p->text[end] == '\\')
			end++;
	}
	if (end >= p->len)
		return js_fail(p, start, "unterminated string");
	buf = js_arena_alloc(p->arena, end - start);
	if (buf == NULL)
		return js_oom(p);
	o = buf;
	i = start + 1;
	while (i < end)
	{
		unsigned char c = (unsigned char) p->text[i];

		if (c < 0x20)
			return js_fail(p, i, "control character (byte 0x%02x) in string", c);
		if (c >= 0x80)
		{
			size_t		n = js_utf8_len((const unsigned char *) p->text + i, end - i);

			if (n == 0)
				return js_fail(p, i, "invalid UTF-8 in string");
			memcpy(o, p->text + i, n);
			o += n;
			i += n;
			continue;
		}
		if (c != '\\')
		{
			*o++ = (char) c;
			i++;
			continue;
		}
		/* an escape: end was found past it, so i + 1 < end */
		switch (p->text[i + 1])
		{
			case '"':
				*o++ = '"';
				break;
			case '\\':
				*o++ = '\\';
				break;
			case '/':
				*o++ = '/';
				break;
			case 'b':
				*o++ = '\b';
				break;
			case 'f':
				*o++ = '\f';
				break;
			case 'n':
				*o++ = '\n';
				break;
			case 'r':
				*o++ = '\r';
				break;
			case 't':
				*o++ = '\t';
				break;
			case 'u':
				{
					long		cp = end - i >= 6 ? js_hex4(p, i + 2) : -1;

					if (cp < 0)
						return js_fail(p, i, "invalid \\u escape");
					if (cp == 0)
						return js_fail(p, i, "\\u0000 is not allowed in a string");
					if (cp >= 0xdc00 && cp <= 0xdfff)
						return js_fail(p, i, "unpaired surrogate in \\u escape");
					if (cp >= 0xd800 && cp <= 0xdbff)
					{
						long		lo = (end - i >= 12 && p->text[i + 6] == '\\' &&
										  p->text[i + 7] == 'u') ?
						js_hex4(p, i + 8) : -1;

						if (lo < 0xdc00 || lo > 0xdfff)
							return js_fail(p, i, "unpaired surrogate in \\u escape");
						cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
						i += 6;
					}
					o = js_put_utf8(o, (uint32_t) cp);
					i += 6;
					continue;
				}
			default:
				return js_fail(p, i, "invalid escape in string");
		}
		i += 2;
	}
	*o = '\0';
	*out = buf;
	*out_len = (size_t) (o - buf);
	p->pos = end + 1;
	return true;
}

/* --- numbers ----------------------------------------------------------------- */

static bool
js_digit(JsParser *p, size_t i)
{
	return i < p->len && p->text[i] >= '0' && p->text[i] <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool
js_number(JsParser *p, EnvJson *v)
{
	size_t		start = p->pos;
	size_t		i = start;
	char	   *buf;

	if (i < p->len && p->text[i] == '-')
		i++;
	if (!js_digit(p, i))
		return js_fail(p, start, "invalid number");
	if (p->text[i] == '0')
	{
		i++;
		if (js_digit(p, i))
			return js_fail(p, start, "number with a leading zero");
	}
	else
		while (js_digit(p, i))
			i++;
	if (i < p->len && p->text[i] == '.')
	{
		i++;
		if (!js_digit(p, i))
			return js_fail(p, start, "invalid number");
		while (js_digit(p, i))
			i++;
	}
	if (i < p->len && (p->text[i] == 'e' || p->text[i] == 'E'))
	{
		i++;
		if (i < p->len && (p->text[i] == '+' || p->text[i] == '-'))
			i++;
		if (!js_digit(p, i))
			return js_fail(p, start, "invalid number");
		while (js_digit(p, i))
			i++;
	}
	buf = js_arena_alloc(p->arena, i - start + 1);
	if (buf == NULL)
		return js_oom(p);
	memcpy(buf, p->text + start, i - start);
	buf[i - start] = '\0';
	v->type = ENV_JSON_NUMBER;
	v->u.str = buf;
	v->len = i - start;
	p->pos = i;
	return true;
}

/* --- containers -------------------------------------------------------------- */

static bool js_value(JsParser *p, int depth, EnvJson *v);

static bool
js_push_value(JsParser *p, const EnvJson *v)
{
	if (p->vtop == p->vcap)
	{
		size_t		cap = p->vcap == 0 ? 64 : p->vcap * 2;
		EnvJson    *n = realloc(p->vstack, cap * sizeof(EnvJson));

		if (n == NULL)
			return js_oom(p);
		p->vstack = n;
		p->vcap = cap;
	}
	p->vstack[p->vtop++] = *v;
	return true;
}

static bool
js_push_member(JsParser *p, const char *key, size_t key_len, size_t key_at,
			   const EnvJson *v)
{
	if (p->mtop == p->mcap)
	{
		size_t		cap = p->mcap == 0 ? 32 : p->mcap * 2;
		EnvJsonMember *n = realloc(p->mstack, cap * sizeof(EnvJsonMember));

		if (n == NULL)
			return js_oom(p);
		p->mstack = n;
		p->mcap = cap;
	}
	p->mstack[p->mtop].key = key;
	p->mstack[p->mtop].key_len = key_len;
	p->mstack[p->mtop].key_offset = (uint32_t) key_at;
	p->mstack[p->mtop].value = *v;
	p->mtop++;
	return true;
}

/*
 * After an element of a container: ',' (1, more follow), the closing
 * character (0, done), or an error (-1).
 */
static int
js_after_element(JsParser *p, char close, const char *container)
{
	char		what[16];

	js_skip_ws(p);
	if (p->pos < p->len && p->text[p->pos] == ',')
	{
		p->pos++;
		js_skip_ws(p);
		return 1;
	}
	if (p->pos < p->len && p->text[p->pos] == close)
	{
		p->pos++;
		return 0;
	}
	js_fail(p, p->pos, "expected ',' or '%c' in %s, found %s", close, container,
			js_describe(p, what, sizeof(what)));
	return -1;
}

static bool
js_array(JsParser *p, int depth, EnvJson *v)
{
	size_t		base = p->vtop;
	size_t		n;
	int			more;

	p->pos++;					/* '[' */
	js_skip_ws(p);
	if (p->pos < p->len && p->text[p->pos] == ']')
		p->pos++;
	else
	{
		for (;;)
		{
			EnvJson		item;

			if (!js_value(p, depth + 1, &item) || !js_push_value(p, &item) ||
				(more = js_after_element(p, ']', "array")) < 0)
				return false;
			if (more == 0)
				break;
		}
	}
	n = p->vtop - base;
	v->type = ENV_JSON_ARRAY;
	v->len = n;
	v->u.items = NULL;
	if (n > 0)
	{
		v->u.items = js_arena_alloc(p->arena, n * sizeof(EnvJson));
		if (v->u.items == NULL)
			return js_oom(p);
		memcpy(v->u.items, p->vstack + base, n * sizeof(EnvJson));
	}
	p->vtop = base;
	return true;
}

static int
js_cmp_member(const void *a, const void *b)
{
	const EnvJsonMember *x = *(const EnvJsonMember *const *) a;
	const EnvJsonMember *y = *(const EnvJsonMember *const *) b;
	size_t		n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int			c = memcmp(x->key, y->key, n);

	if (c != 0)
		return c;
	return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* The first key that occurs twice among n members, or NULL */
static const EnvJsonMember *
js_duplicate(const EnvJsonMember *m, size_t n, bool *oom)
{
	const EnvJsonMember **sorted;
	const EnvJsonMember *dup = NULL;
	size_t		i;
	size_t		j;

	*oom = false;
	if (n <= 16)
	{
		for (i = 1; i < n; i++)
			for (j = 0; j < i; j++)
				if (m[i].key_len == m[j].key_len &&
					memcmp(m[i].key, m[j].key, m[i].key_len) == 0)
					return &m[i];
		return NULL;
	}
	sorted = malloc(n * sizeof(*sorted));
	if (sorted == NULL)
	{
		*oom = true;
		return NULL;
	}
	for (i = 0; i < n; i++)
		sorted[i] = &m[i];
	qsort(sorted, n, sizeof(*sorted), js_cmp_member);
	for (i = 1; i < n && dup == NULL; i++)
		if (js_cmp_member(&sorted[i - 1], &sorted[i]) == 0)
			dup = sorted[i] > sorted[i - 1] ? sorted[i] : sorted[i - 1];
	free(sorted);
	return dup;
}

static bool
js_object(JsParser *p, int depth, EnvJson *v)
{
	size_t		base = p->mtop;
	size_t		n;
	int			more;
	char		what[16];
	const EnvJsonMember *dup = NULL;
	bool		oom = false;

	p->pos++;					/* '{' */
	js_skip_ws(p);
	if (p->pos < p->len && p->text[p->pos] == '}')
		p->pos++;
	else
	{
		for (;;)
		{
			const char *key;
			size_t		key_len;
			size_t		key_at = p->pos;
			EnvJson		item;

			if (p->pos >= p->len || p->text[p->pos] != '"')
				return js_fail(p, p->pos, "expected a string key in object, found %s",
							   js_describe(p, what, sizeof(what)));
			if (!js_string(p, &key, &key_len))
				return false;
			js_skip_ws(p);
			if (p->pos >= p->len || p->text[p->pos] != ':')
				return js_fail(p, p->pos, "expected ':' after object key, found %s",
							   js_describe(p, what, sizeof(what)));
			p->pos++;
			if (!js_value(p, depth + 1, &item) ||
				!js_push_member(p, key, key_len, key_at, &item) ||
				(more = js_after_element(p, '}', "object")) < 0)
				return false;
			if (more == 0)
				break;
		}
	}
	n = p->mtop - base;
	/* with no member ever pushed, mstack is still NULL */
	if (n > 1)
		dup = js_duplicate(p->mstack + base, n, &oom);
	if (oom)
		return js_oom(p);
	if (dup != NULL)
	{
		char		excerpt[ENV_JSON_EXCERPT_LEN];

		env_json_excerpt(dup->key, dup->key_len, excerpt);
		return js_fail(p, dup->key_offset, "duplicate key \"%s\" in object", excerpt);
	}
	v->type = ENV_JSON_OBJECT;
	v->len = n;
	v->u.members = NULL;
	if (n > 0)
	{
		v->u.members = js_arena_alloc(p->arena, n * sizeof(EnvJsonMember));
		if (v->u.members == NULL)
			return js_oom(p);
		memcpy(v->u.members, p->mstack + base, n * sizeof(EnvJsonMember));
	}
	p->mtop = base;
	return true;
}

static bool
js_literal(JsParser *p, const char *word, EnvJsonType type, EnvJson *v)
{
	size_t		n = strlen(word);

	if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0)
		return js_fail(p, p->pos, "invalid literal");
	p->pos += n;
	v->type = type;
	return true;
}

static bool
js_value(JsParser *p, int depth, EnvJson *v)
{
	char		what[16];
	char		c;

	js_skip_ws(p);
	memset(v, 0, sizeof(*v));
	v->offset = (uint32_t) p->pos;
	if (p->pos >= p->len)
		return js_fail(p, p->pos, "expected a value, found end of input");
	if (!js_count(p, p->pos))
		return false;
	c = p->text[p->pos];
	switch (c)
	{
		case '{':
		case '[':
			if (depth >= p->limits->max_depth)
				return js_fail(p, p->pos, "nesting deeper than %d levels",
							   p->limits->max_depth);
			return c == '{' ? js_object(p, depth, v) : js_array(p, depth, v);
		case '"':
			v->type = ENV_JSON_STRING;
			return js_string(p, &v->u.str, &v->len);
		case 't':
			return js_literal(p, "true", ENV_JSON_TRUE, v);
		case 'f':
			return js_literal(p, "false", ENV_JSON_FALSE, v);
		case 'n':
			return js_literal(p, "null", ENV_JSON_NULL, v);
		default:
			if (c == '-' || (c >= '0' && c <= '9'))
				return js_number(p, v);
			return js_fail(p, p->pos, "expected a value, found %s",
						   js_describe(p, what, sizeof(what)));
	}
}

bool
env_json_parse(const char *text, size_t len, const EnvJsonLimits *limits,
			   EnvJsonDoc *doc, char *err, size_t errlen)
{
	JsParser	p;
	EnvJson		root;
	bool		ok;

	memset(doc, 0, sizeof(*doc));
	memset(&p, 0, sizeof(p));
	p.text = text;
	p.len = len;
	p.limits = limits;
	p.err = err;
	p.errlen = errlen;
	if (err != NULL && errlen > 0)
		err[0] = '\0';

	if (len > limits->max_len || len > ENV_JSON_HARD_MAXLEN)
	{
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "larger than %zu bytes",
					 limits->max_len < ENV_JSON_HARD_MAXLEN ?
					 limits->max_len : ENV_JSON_HARD_MAXLEN);
		return false;
	}
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		return js_fail(&p, 0, "byte order mark before the document");
	p.arena = calloc(1, sizeof(EnvJsonArena));
	if (p.arena == NULL)
		return js_oom(&p);

	ok = js_value(&p, 0, &root);
	if (ok)
	{
		js_skip_ws(&p);
		if (p.pos != p.len)
			ok = js_fail(&p, p.pos, "unexpected data after the document");
	}
	if (ok)
	{
		doc->root = js_arena_alloc(p.arena, sizeof(EnvJson));
		if (doc->root == NULL)
			ok = js_oom(&p);
		else
			*doc->root = root;
	}
	free(p.vstack);
	free(p.mstack);
	if (!ok)
	{
		js_arena_free(p.arena);
		doc->root = NULL;
		return false;
	}
	doc->arena = p.arena;
	return true;
}

void
env_json_free(EnvJsonDoc *doc)
{
	if (doc == NULL)
		return;
	js_arena_free(doc->arena);
	doc->arena = NULL;
	doc->root = NULL;
}

const EnvJson *
env_json_get(const EnvJson *object, const char *key)
{
	size_t		n = strlen(key);
	size_t		i;

	if (object == NULL || object->type != ENV_JSON_OBJECT)
		return NULL;
	for (i = 0; i < object->len; i++)
	{
		const EnvJsonMember *m = &object->u.members[i];

		if (m->key_len == n && memcmp(m->key, key, n) == 0)
			return &m->value;
	}
	return NULL;
}

/* --- writer ------------------------------------------------------------------ */

void
env_json_out(EnvJsonOut *o, const char *s, size_t n)
{
	if (o->oom)
		return;
	if (o->cap - o->len <= n)
	{
		size_t		cap = o->cap == 0 ? 256 : o->cap;
		char	   *nb;

		while (cap - o->len <= n)
		{
			if (cap > ((size_t) 1 << 40))
			{
				o->oom = true;
				return;
			}
			cap *= 2;
		}
		nb = realloc(o->buf, cap);
		if (nb == NULL)
		{
			o->oom = true;
			return;
		}
		o->buf = nb;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
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

static void
js_out_string(EnvJsonOut *o, const char *s, size_t n)
{
	size_t		i;
	size_t		run = 0;

	env_json_out(o, "\"", 1);
	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];
		char		esc[8];
		const char *e = NULL;

		if (c == '"')
			e = "\\\"";
		else if (c == '\\')
			e = "\\\\";
		else if (c == '\b')
			e = "\\b";
		else if (c == '\f')
			e = "\\f";
		else if (c == '\n')
			e = "\\n";
		else if (c == '\r')
			e = "\\r";
		else if (c == '\t')
			e = "\\t";
		else if (c < 0x20)
		{
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			e = esc;
		}
		if (e == NULL)
		{
			run++;
			continue;
		}
		env_json_out(o, s + i - run, run);
		run = 0;
		env_json_out(o, e, strlen(e));
	}
	env_json_out(o, s + n - run, run);
	env_json_out(o, "\"", 1);
}

static void
js_write(EnvJsonOut *o, const EnvJson *v)
{
	size_t		i;

	switch (v->type)
	{
		case ENV_JSON_NULL:
			env_json_out(o, "null", 4);
			break;
		case ENV_JSON_FALSE:
			env_json_out(o, "false", 5);
			break;
		case ENV_JSON_TRUE:
			env_json_out(o, "true", 4);
			break;
		case ENV_JSON_NUMBER:
			env_json_out(o, v->u.str, v->len);
			break;
		case ENV_JSON_STRING:
			js_out_string(o, v->u.str, v->len);
			break;
		case ENV_JSON_ARRAY:
			env_json_out(o, "[", 1);
			for (i = 0; i < v->len; i++)
			{
				if (i > 0)
					env_json_out(o, ",", 1);
				js_write(o, &v->u.items[i]);
			}
			env_json_out(o, "]", 1);
			break;
		case ENV_JSON_OBJECT:
			env_json_out(o, "{", 1);
			for (i = 0; i < v->len; i++)
			{
				if (i > 0)
					env_json_out(o, ",", 1);
				js_out_string(o, v->u.members[i].key, v->u.members[i].key_len);
				env_json_out(o, ":", 1);
				js_write(o, &v->u.members[i].value);
			}
			env_json_out(o, "}", 1);
			break;
	}
}

char *
env_json_write(const EnvJson *value, size_t *len)
{
	EnvJsonOut	o;

	memset(&o, 0, sizeof(o));
	env_json_out(&o, "", 0);
	js_write(&o, value);
	if (o.oom)
	{
		free(o.buf);
		return NULL;
	}
	*len = o.len;
	return o.buf;
}

bool
env_json_equal(const EnvJson *a, const EnvJson *b)
{
	size_t		i;

	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case ENV_JSON_NULL:
		case ENV_JSON_FALSE:
		case ENV_JSON_TRUE:
			return true;
		case ENV_JSON_NUMBER:
		case ENV_JSON_STRING:
			return a->len == b->len && memcmp(a->u.str, b->u.str, a->len) == 0;
		case ENV_JSON_ARRAY:
			if (a->len != b->len)
				return false;
			for (i = 0; i < a->len; i++)
				if (!env_json_equal(&a->u.items[i], &b->u.items[i]))
					return false;
			return true;
		case ENV_JSON_OBJECT:
			if (a->len != b->len)
				return false;
			for (i = 0; i < a->len; i++)
			{
				const EnvJsonMember *x = &a->u.members[i];
				const EnvJsonMember *y = &b->u.members[i];

				if (x->key_len != y->key_len ||
					memcmp(x->key, y->key, x->key_len) != 0 ||
					!env_json_equal(&x->value, &y->value))
					return false;
			}
			return true;
	}
	return false;
}
