/*-------------------------------------------------------------------------
 *
 * export.c
 *		Read an export of an audit chain (the JSON of envault.export_chain)
 *		into rows, columns and checkpoint notes, as docs/audit-chain.md
 *		("Export") specifies it.
 *
 * Everything read is untrusted: every length is checked before use, every
 * count is bounded, and nothing is allocated that is not freed.  jansson
 * reads the JSON (json.c); what is checked here is envault's own shape of
 * it.  Nothing here is secret.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainfmt.h"
#include "export.h"

static const EnvJsonLimits ev_limits = {EV_EXPORT_MAXLEN, EV_EXPORT_MAXMEMORY};

static bool ev_fail(char *err, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/*
 * "<path>: <message>" about a value of the document.  jansson keeps no
 * position of a value, so the path (rows[3].hash) says where it is.
 */
static bool
ev_fail(char *err, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(err, EV_ERRLEN, fmt, ap);
	va_end(ap);
	return false;
}

static const char *
ev_type_name(const json_t *v)
{
	switch (json_typeof(v))
	{
		case JSON_NULL:
			return "null";
		case JSON_FALSE:
		case JSON_TRUE:
			return "a boolean";
		case JSON_INTEGER:
		case JSON_REAL:
			return "a number";
		case JSON_STRING:
			return "a string";
		case JSON_ARRAY:
			return "an array";
		case JSON_OBJECT:
			return "an object";
	}
	return "a value";
}

/*
 * An object with exactly these members; fills found[] in the order of
 * names.  jansson has refused duplicate keys, and goes through the members
 * in document order, so the first unknown one is the one named.
 */
static bool
ev_members(char *err, const json_t *obj, const char *path,
		   const char *const *names, int nnames, const json_t **found)
{
	const char *key;
	json_t	   *value;
	int			k;

	if (!json_is_object(obj))
		return ev_fail(err, "%s: expected an object, found %s", path,
					   ev_type_name(obj));
	for (k = 0; k < nnames; k++)
		found[k] = NULL;
	/* json_object_foreach() takes a non-const object but changes nothing */
	json_object_foreach((json_t *) obj, key, value)
	{
		for (k = 0; k < nnames; k++)
			if (strcmp(key, names[k]) == 0)
				break;
		if (k == nnames)
		{
			char		excerpt[ENV_JSON_EXCERPT_LEN];

			env_json_excerpt(key, strlen(key), excerpt);
			return ev_fail(err, "%s: unknown member \"%s\"", path, excerpt);
		}
		found[k] = value;
	}
	for (k = 0; k < nnames; k++)
		if (found[k] == NULL)
			return ev_fail(err, "%s: missing member \"%s\"", path, names[k]);
	return true;
}

static bool
ev_array(char *err, const json_t *v, const char *path)
{
	if (!json_is_array(v))
		return ev_fail(err, "%s: expected an array, found %s", path,
					   ev_type_name(v));
	return true;
}

static bool
ev_string(char *err, const json_t *v, const char *path, bool nullable,
		  const char **s, size_t *len)
{
	if (nullable && json_is_null(v))
	{
		*s = NULL;
		*len = 0;
		return true;
	}
	if (!json_is_string(v))
		return ev_fail(err, "%s: expected a string%s, found %s", path,
					   nullable ? " or null" : "", ev_type_name(v));
	*s = json_string_value(v);
	*len = json_string_length(v);
	return true;
}

/* A row hash or link: the base64 of 32 bytes, or null (a damaged row) */
static bool
ev_hash(char *err, const json_t *v, const char *path, bool *present,
		uint8_t *out)
{
	size_t		n;

	*present = false;
	if (json_is_null(v))
		return true;
	if (!json_is_string(v) ||
		!env_base64_decode(json_string_value(v), json_string_length(v), out,
						   ENV_SHA256_LEN, &n) ||
		n != ENV_SHA256_LEN)
		return ev_fail(err, "%s: expected the base64 of 32 bytes, or null", path);
	*present = true;
	return true;
}

/*
 * A sequence number: a JSON integer from 1 to 2^63 - 1.  jansson reads a
 * number with a fraction or an exponent (1.0, 1e3) as a real, and refuses
 * an integer beyond 64 bits as "too big integer" before we see it.
 */
static bool
ev_seq(char *err, const json_t *v, const char *path, int64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 1)
		return ev_fail(err, "%s: expected an integer from 1 to 9223372036854775807",
					   path);
	*out = (int64_t) json_integer_value(v);
	return true;
}

static int
ev_cmp_row(const void *a, const void *b)
{
	const EvRow *x = a;
	const EvRow *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

/* format v2; v1 has no tree_frontier */
static const char *const ev_top_names[] = {
	"format", "database", "chain", "tenant", "columns", "rows", "checkpoints",
	"tree_frontier"
};
static const char *const ev_row_names[] = {
	"seq", "at", "prev", "hash", "values"
};

static bool
ev_is(const char *s, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(s, want, len) == 0;
}

/* Which format's members to expect: v2's if the format says so */
static int
ev_guess_format(const json_t *root)
{
	const json_t *format;

	if (!json_is_object(root))
		return 2;
	format = json_object_get(root, "format");
	if (format == NULL)
		return 1;
	return json_is_string(format) &&
		ev_is(json_string_value(format), json_string_length(format),
			  EV_FORMAT) ? 2 : 1;
}

/*
 * tree_frontier: null, or the base64 of a frontier (merkle.h).  One that
 * does not read leaves the tree unknown, as null does: tree heads of the
 * export then cannot be checked, and are mismatches.
 */
static bool
ev_frontier(char *err, const json_t *v, EvExport *ex)
{
	uint8_t		raw[8 + ENV_MERKLE_MAX_LEVELS * ENV_MERKLE_HASH_LEN];
	size_t		n;

	ex->has_frontier = false;
	if (json_is_null(v))
		return true;
	if (!json_is_string(v))
		return ev_fail(err, "tree_frontier: expected a string or null, found %s",
					   ev_type_name(v));
	if (env_base64_decode(json_string_value(v), json_string_length(v), raw,
						  sizeof(raw), &n) &&
		env_merkle_frontier_get(&ex->frontier, raw, n))
		ex->has_frontier = true;
	return true;
}

/* format, database, chain and tenant */
static bool
ev_read_header(char *err, const json_t *const *top, EvExport *ex)
{
	const char *format;
	size_t		format_len;

	if (!ev_string(err, top[0], "format", false, &format, &format_len))
		return false;
	if (!ev_is(format, format_len, ex->format == 1 ? EV_FORMAT_V1 : EV_FORMAT))
		return ev_fail(err, "format: expected \"%s\" or \"%s\"", EV_FORMAT,
					   EV_FORMAT_V1);
	if (!ev_string(err, top[1], "database", false, &ex->database, &ex->database_len) ||
		!ev_string(err, top[2], "chain", false, &ex->chain, &ex->chain_len) ||
		!ev_string(err, top[3], "tenant", true, &ex->tenant, &ex->tenant_len))
		return false;
	if (ex->chain_len == 0)
		return ev_fail(err, "chain: expected a table name, found \"\"");
	return true;
}

/* columns: [[name, type], ...] */
static bool
ev_read_columns(char *err, const json_t *columns, EvExport *ex)
{
	char		path[64];
	size_t		i;

	if (!ev_array(err, columns, "columns"))
		return false;
	if (json_array_size(columns) > EV_EXPORT_MAXCOLUMNS)
		return ev_fail(err, "columns: more than %d columns",
					   EV_EXPORT_MAXCOLUMNS);
	ex->ncols = json_array_size(columns);
	ex->cols = calloc(ex->ncols > 0 ? ex->ncols : 1, sizeof(EvColumn));
	if (ex->cols == NULL)
		return ev_fail(err, "out of memory");
	for (i = 0; i < ex->ncols; i++)
	{
		const json_t *c = json_array_get(columns, i);

		snprintf(path, sizeof(path), "columns[%zu]", i);
		if (!json_is_array(c) || json_array_size(c) != 2)
			return ev_fail(err, "%s: expected [name, type]", path);
		if (!ev_string(err, json_array_get(c, 0), path, false,
					   &ex->cols[i].name, &ex->cols[i].name_len) ||
			!ev_string(err, json_array_get(c, 1), path, false,
					   &ex->cols[i].type, &ex->cols[i].type_len))
			return false;
	}
	return true;
}

/* rows[i]: {seq, at, prev, hash, values}, values one per column */
static bool
ev_read_row(char *err, const json_t *v, size_t i, size_t ncols, EvRow *row)
{
	const json_t *f[5];
	char		path[64];
	size_t		j;

	snprintf(path, sizeof(path), "rows[%zu]", i);
	if (!ev_members(err, v, path, ev_row_names, 5, f))
		return false;
	snprintf(path, sizeof(path), "rows[%zu].seq", i);
	if (!ev_seq(err, f[0], path, &row->seq))
		return false;
	snprintf(path, sizeof(path), "rows[%zu].at", i);
	if (!ev_string(err, f[1], path, false, &row->at, &row->at_len))
		return false;
	snprintf(path, sizeof(path), "rows[%zu].prev", i);
	if (!ev_hash(err, f[2], path, &row->has_prev, row->prev))
		return false;
	snprintf(path, sizeof(path), "rows[%zu].hash", i);
	if (!ev_hash(err, f[3], path, &row->has_hash, row->hash))
		return false;
	snprintf(path, sizeof(path), "rows[%zu].values", i);
	if (!json_is_array(f[4]) || json_array_size(f[4]) != ncols)
		return ev_fail(err, "%s: expected an array of %zu values, one per column",
					   path, ncols);
	for (j = 0; j < ncols; j++)
	{
		const json_t *value = json_array_get(f[4], j);

		if (!json_is_string(value) && !json_is_null(value))
			return ev_fail(err, "%s[%zu]: expected a string or null, found %s",
						   path, j, ev_type_name(value));
	}
	row->values = f[4];
	row->index = i;
	return true;
}

/* rows, then in order of seq (stable) */
static bool
ev_read_rows(char *err, const json_t *rows, EvExport *ex)
{
	size_t		i;

	if (!ev_array(err, rows, "rows"))
		return false;
	ex->nrows = json_array_size(rows);
	ex->rows = calloc(ex->nrows > 0 ? ex->nrows : 1, sizeof(EvRow));
	if (ex->rows == NULL)
		return ev_fail(err, "out of memory");
	for (i = 0; i < ex->nrows; i++)
		if (!ev_read_row(err, json_array_get(rows, i), i, ex->ncols,
						 &ex->rows[i]))
			return false;
	if (ex->nrows > 1)
		qsort(ex->rows, ex->nrows, sizeof(EvRow), ev_cmp_row);
	return true;
}

/* checkpoints: an array of signed notes, checked later (verify.c) */
static bool
ev_read_checkpoints(char *err, const json_t *cps, EvExport *ex)
{
	size_t		i;

	if (!ev_array(err, cps, "checkpoints"))
		return false;
	for (i = 0; i < json_array_size(cps); i++)
	{
		const json_t *c = json_array_get(cps, i);

		if (!json_is_string(c))
			return ev_fail(err, "checkpoints[%zu]: expected a string, found %s",
						   i, ev_type_name(c));
	}
	ex->ncps = json_array_size(cps);
	ex->cps = cps;
	return true;
}

bool
ev_export_parse(const char *data, size_t len, EvExport *ex, char *err)
{
	const json_t *top[8];

	memset(ex, 0, sizeof(*ex));
	err[0] = '\0';
	ex->doc = env_json_parse(data, len, &ev_limits, err, EV_ERRLEN);
	if (ex->doc == NULL)
		return false;

	ex->format = ev_guess_format(ex->doc);
	if (!ev_members(err, ex->doc, "the export", ev_top_names,
					ex->format == 1 ? 7 : 8, top) ||
		!ev_read_header(err, top, ex) ||
		!ev_read_columns(err, top[4], ex) ||
		!ev_read_rows(err, top[5], ex) ||
		(ex->format == 2 && !ev_frontier(err, top[7], ex)) ||
		!ev_read_checkpoints(err, top[6], ex))
	{
		ev_export_free(ex);
		return false;
	}
	return true;
}

void
ev_export_free(EvExport *ex)
{
	free(ex->cols);
	free(ex->rows);
	json_decref(ex->doc);
	memset(ex, 0, sizeof(*ex));
}

size_t
ev_export_origin(const EvExport *ex, char *out, size_t out_max)
{
	return env_origin_build(ex->database, ex->database_len, ex->chain,
							ex->chain_len, ex->tenant, ex->tenant_len,
							out, out_max);
}
