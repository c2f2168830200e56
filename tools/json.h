/*-------------------------------------------------------------------------
 *
 * json.h
 *		A small, strict JSON reader (RFC 8259) for envault-verify, and a
 *		writer of the same values in one canonical form.
 *
 * The reader accepts exactly RFC 8259 JSON in UTF-8 and nothing else: no
 * byte order mark, no comments, no trailing commas, no duplicate object
 * keys, no invalid UTF-8, no unpaired surrogate escapes, and no U+0000 in
 * strings (every string envault exports is PostgreSQL text, which cannot
 * hold it).  Nesting depth, input size and the number of values are bounded
 * by the caller's limits, so a hostile document costs bounded time and
 * memory.  Every value lives in one arena, freed at once.
 *
 * Nothing here is secret.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_JSON_H
#define ENVAULT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum EnvJsonType
{
	ENV_JSON_NULL = 0,
	ENV_JSON_FALSE,
	ENV_JSON_TRUE,
	ENV_JSON_NUMBER,			/* str holds the number's text, as written */
	ENV_JSON_STRING,			/* str holds the decoded UTF-8 bytes */
	ENV_JSON_ARRAY,
	ENV_JSON_OBJECT
} EnvJsonType;

typedef struct EnvJson EnvJson;
typedef struct EnvJsonMember EnvJsonMember;

struct EnvJson
{
	EnvJsonType type;
	uint32_t	offset;			/* byte offset of the value in the input */
	size_t		len;			/* string or number bytes, array elements,
								 * object members */
	union
	{
		const char *str;		/* NUL-terminated (no NUL inside) */
		EnvJson    *items;		/* len elements */
		EnvJsonMember *members; /* len members, in document order */
	}			u;
};

struct EnvJsonMember
{
	const char *key;			/* decoded, NUL-terminated */
	size_t		key_len;
	uint32_t	key_offset;		/* byte offset of the key in the input */
	EnvJson		value;
};

/* Bounds on what a document may hold */
typedef struct EnvJsonLimits
{
	size_t		max_len;		/* bytes of input */
	int			max_depth;		/* nesting of arrays and objects */
	size_t		max_values;		/* values of every kind, keys excluded */
} EnvJsonLimits;

/* Input larger than this is refused whatever the limits say */
#define ENV_JSON_HARD_MAXLEN	((size_t) 1 << 31)

typedef struct EnvJsonArena EnvJsonArena;

/* A parsed document: its root value and the arena that holds everything */
typedef struct EnvJsonDoc
{
	EnvJson    *root;
	EnvJsonArena *arena;
} EnvJsonDoc;

/*
 * Parse text into doc.  On failure returns false, leaves nothing allocated
 * and writes to err (at most errlen bytes, NUL-terminated) what is wrong and
 * where: "line L, column C: ...", or "out of memory".
 */
extern bool env_json_parse(const char *text, size_t len,
						   const EnvJsonLimits *limits, EnvJsonDoc *doc,
						   char *err, size_t errlen);
extern void env_json_free(EnvJsonDoc *doc);

/* The member of an object with this key, or NULL */
extern const EnvJson *env_json_get(const EnvJson *object, const char *key);

/* Line and column (1-based, columns in bytes) of a byte offset */
extern void env_json_position(const char *text, size_t len, size_t offset,
							  size_t *line, size_t *column);

/* A growing NUL-terminated output buffer; oom is set if a write failed */
typedef struct EnvJsonOut
{
	char	   *buf;
	size_t		len;
	size_t		cap;
	bool		oom;
} EnvJsonOut;

extern void env_json_out(EnvJsonOut *o, const char *s, size_t n);

/*
 * At most 40 bytes of s, printable ASCII only (others as '?', and "..."
 * when cut), for quoting untrusted text in a message: out needs 48 bytes.
 */
#define ENV_JSON_EXCERPT_LEN	48
extern void env_json_excerpt(const char *s, size_t len, char *out);

/*
 * Write a value in canonical form: no whitespace, members in document
 * order, strings with only '"', '\\' and control characters escaped
 * (as \b \f \n \r \t or \u00XX), numbers as written.  Returns a malloc'd
 * NUL-terminated string and its length, or NULL when out of memory.
 */
extern char *env_json_write(const EnvJson *value, size_t *len);

/* Structural equality of two values (member order counts) */
extern bool env_json_equal(const EnvJson *a, const EnvJson *b);

#endif							/* ENVAULT_JSON_H */
