/*-------------------------------------------------------------------------
 *
 * json.h
 *		Reading JSON for envault-verify and envault-witness: jansson, with
 *		the flags and bounds envault needs.
 *
 * jansson (Debian's libjansson) does the parsing: RFC 8259 in UTF-8 and
 * nothing else (no comments, no trailing commas, no NaN, no invalid UTF-8,
 * no unpaired surrogate escapes).  On top of it, env_json_parse() refuses
 * duplicate object keys and U+0000 in strings (every string envault exports
 * is PostgreSQL text, which cannot hold it), a byte order mark, input
 * larger than the caller allows, and documents whose values would take more
 * memory than the caller allows, so that a hostile document costs bounded
 * time and memory.  What a document must hold is the caller's to check
 * (export.c).
 *
 * Every jansson value of the program comes from env_json_parse(), which
 * routes jansson's allocations through its own counting allocator; free a
 * document with json_decref().
 *
 * Nothing here is secret.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_JSON_H
#define ENVAULT_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Bounds on what a document may cost */
typedef struct EnvJsonLimits
{
	size_t		max_len;		/* bytes of input */
	size_t		max_memory;		/* bytes jansson may allocate for its values */
} EnvJsonLimits;

/*
 * Parse text, which may hold any JSON value at the top.  On failure returns
 * NULL and writes to err (at most errlen bytes, NUL-terminated, printable
 * ASCII) what is wrong and where: "line L, column C: ...", or a bound that
 * was passed.
 */
extern json_t *env_json_parse(const char *text, size_t len,
							  const EnvJsonLimits *limits,
							  char *err, size_t errlen);

/*
 * At most 40 bytes of s, printable ASCII only (others as '?', and "..."
 * when cut), for quoting untrusted text in a message: out needs 48 bytes.
 */
#define ENV_JSON_EXCERPT_LEN	48
extern void env_json_excerpt(const char *s, size_t len, char *out);

#endif							/* ENVAULT_JSON_H */
