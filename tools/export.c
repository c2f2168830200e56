/*-------------------------------------------------------------------------
 *
 * export.c
 *		Read an export of an audit chain, read checkpoint lines of a server
 *		log, and verify the one against the other and a set of public keys,
 *		reporting the first problem as envault.verify_chain() does.
 *
 * The checks are those of docs/audit-chain.md, "To verify an export
 * without envault", made in the order verify_chain() makes them so that an
 * export of a damaged chain names the same sequence number and reason:
 * rows are taken in order of seq; for each row the sequence, its hash, its
 * link to the row before and the checkpoints that sign it; then every
 * checkpoint's signature and the checkpoints beyond the last row.  Of all
 * problems, the one with the smallest sequence number is reported (the
 * first found, among equals).
 *
 * Everything read is untrusted: every length is checked before use, every
 * count is bounded, and nothing is allocated that is not freed.  Nothing
 * here is secret.
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

/* --- reading an export ------------------------------------------------------ */

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

bool
ev_export_parse(const char *data, size_t len, EvExport *ex, char *err)
{
	const json_t *top[8];
	const json_t *columns;
	const json_t *rows;
	const json_t *cps;
	const char *format;
	size_t		format_len;
	size_t		i;
	char		path[64];

	memset(ex, 0, sizeof(*ex));
	err[0] = '\0';
	ex->doc = env_json_parse(data, len, &ev_limits, err, EV_ERRLEN);
	if (ex->doc == NULL)
		return false;

	ex->format = ev_guess_format(ex->doc);
	if (!ev_members(err, ex->doc, "the export", ev_top_names,
					ex->format == 1 ? 7 : 8, top))
		goto fail;
	if (!ev_string(err, top[0], "format", false, &format, &format_len))
		goto fail;
	if (!ev_is(format, format_len, ex->format == 1 ? EV_FORMAT_V1 : EV_FORMAT))
	{
		ev_fail(err, "format: expected \"%s\" or \"%s\"", EV_FORMAT,
				EV_FORMAT_V1);
		goto fail;
	}
	if (!ev_string(err, top[1], "database", false, &ex->database, &ex->database_len) ||
		!ev_string(err, top[2], "chain", false, &ex->chain, &ex->chain_len) ||
		!ev_string(err, top[3], "tenant", true, &ex->tenant, &ex->tenant_len))
		goto fail;
	if (ex->chain_len == 0)
	{
		ev_fail(err, "chain: expected a table name, found \"\"");
		goto fail;
	}

	columns = top[4];
	if (!ev_array(err, columns, "columns"))
		goto fail;
	if (json_array_size(columns) > EV_EXPORT_MAXCOLUMNS)
	{
		ev_fail(err, "columns: more than %d columns", EV_EXPORT_MAXCOLUMNS);
		goto fail;
	}
	ex->ncols = json_array_size(columns);
	ex->cols = calloc(ex->ncols > 0 ? ex->ncols : 1, sizeof(EvColumn));
	if (ex->cols == NULL)
	{
		snprintf(err, EV_ERRLEN, "out of memory");
		goto fail;
	}
	for (i = 0; i < ex->ncols; i++)
	{
		const json_t *c = json_array_get(columns, i);

		snprintf(path, sizeof(path), "columns[%zu]", i);
		if (!json_is_array(c) || json_array_size(c) != 2)
		{
			ev_fail(err, "%s: expected [name, type]", path);
			goto fail;
		}
		if (!ev_string(err, json_array_get(c, 0), path, false,
					   &ex->cols[i].name, &ex->cols[i].name_len) ||
			!ev_string(err, json_array_get(c, 1), path, false,
					   &ex->cols[i].type, &ex->cols[i].type_len))
			goto fail;
	}

	rows = top[5];
	if (!ev_array(err, rows, "rows"))
		goto fail;
	ex->nrows = json_array_size(rows);
	ex->rows = calloc(ex->nrows > 0 ? ex->nrows : 1, sizeof(EvRow));
	if (ex->rows == NULL)
	{
		snprintf(err, EV_ERRLEN, "out of memory");
		goto fail;
	}
	for (i = 0; i < ex->nrows; i++)
	{
		const json_t *f[5];
		EvRow	   *row = &ex->rows[i];
		size_t		j;

		snprintf(path, sizeof(path), "rows[%zu]", i);
		if (!ev_members(err, json_array_get(rows, i), path, ev_row_names, 5, f))
			goto fail;
		snprintf(path, sizeof(path), "rows[%zu].seq", i);
		if (!ev_seq(err, f[0], path, &row->seq))
			goto fail;
		snprintf(path, sizeof(path), "rows[%zu].at", i);
		if (!ev_string(err, f[1], path, false, &row->at, &row->at_len))
			goto fail;
		snprintf(path, sizeof(path), "rows[%zu].prev", i);
		if (!ev_hash(err, f[2], path, &row->has_prev, row->prev))
			goto fail;
		snprintf(path, sizeof(path), "rows[%zu].hash", i);
		if (!ev_hash(err, f[3], path, &row->has_hash, row->hash))
			goto fail;
		snprintf(path, sizeof(path), "rows[%zu].values", i);
		if (!json_is_array(f[4]) || json_array_size(f[4]) != ex->ncols)
		{
			ev_fail(err, "%s: expected an array of %zu values, one per column",
					path, ex->ncols);
			goto fail;
		}
		for (j = 0; j < ex->ncols; j++)
		{
			const json_t *v = json_array_get(f[4], j);

			if (!json_is_string(v) && !json_is_null(v))
			{
				ev_fail(err, "%s[%zu]: expected a string or null, found %s",
						path, j, ev_type_name(v));
				goto fail;
			}
		}
		row->values = f[4];
		row->index = i;
	}
	if (ex->nrows > 1)
		qsort(ex->rows, ex->nrows, sizeof(EvRow), ev_cmp_row);

	if (ex->format == 2 && !ev_frontier(err, top[7], ex))
		goto fail;

	cps = top[6];
	if (!ev_array(err, cps, "checkpoints"))
		goto fail;
	for (i = 0; i < json_array_size(cps); i++)
	{
		const json_t *c = json_array_get(cps, i);

		if (!json_is_string(c))
		{
			ev_fail(err, "checkpoints[%zu]: expected a string, found %s",
					i, ev_type_name(c));
			goto fail;
		}
	}
	ex->ncps = json_array_size(cps);
	ex->cps = cps;
	return true;

fail:
	ev_export_free(ex);
	return false;
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

/* --- server log -------------------------------------------------------------- */

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

/* --- verification -------------------------------------------------------------- */

/* A checkpoint as checked: status 0 verified, 1 unreadable, 2 bad */
typedef struct EvCp
{
	int64_t		seq;
	uint8_t		hash[ENV_SHA256_LEN];
	int			status;
	bool		tree;			/* signs a tree head, not a head row's hash */
	uint64_t	purge;			/* states a purge up to this row, or 0 */
	uint64_t	cosigners;		/* given witnesses that cosigned it, as bits */
	const char *where;			/* a logged checkpoint's place, or NULL */
	size_t		order;
	bool		logged;
} EvCp;

static int
ev_cmp_cp(const void *a, const void *b)
{
	const EvCp *x = a;
	const EvCp *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return (x->order > y->order) - (x->order < y->order);
}

/*
 * Check a note as envault does (env_checkpoint_check): it must parse as a
 * signed note with a checkpoint body, and verify under the first trusted
 * key that signed it, as a tree head (signed under its origin) or as a
 * head row's hash (under the key's own name): env_checkpoint_verify().
 * Then its origin must name this chain and tenant, and every cosignature
 * line by a given witness must verify.
 */
static int
ev_check_note(const EvExport *ex, const char *note, size_t len,
			  const EnvCheckpointKey *keys, int nkeys,
			  const EvWitness *witnesses, int nwitnesses,
			  EnvCheckpoint *body, uint64_t *cosigners)
{
	int			status = env_checkpoint_verify(note, len, keys, nkeys, body);
	int			bad;

	*cosigners = 0;
	if (status == 0 &&
		!env_origin_matches(body->origin, body->origin_len, ex->database,
							ex->database_len, ex->chain, ex->chain_len,
							ex->tenant, ex->tenant_len))
		status = 2;
	if (status == 0 && nwitnesses > 0 &&
		ev_cosigners(note, len, witnesses, nwitnesses, cosigners, &bad) < 0)
	{
		*cosigners = 0;
		status = 2;
	}
	return status;
}

/* The smallest sequence number wins; among equals, the first found */
static void
ev_bad(EvResult *res, int64_t seq, const char *reason, const char *where)
{
	if (res->reason == NULL || seq < res->bad_seq)
	{
		res->bad_seq = seq;
		res->reason = reason;
		res->where = where;
	}
}

/* The hash of the export's columns, names and types: chainfmt.h */
static bool
ev_columns_hash(const EvExport *ex, uint8_t **buf, size_t *cap, uint8_t *out)
{
	size_t		len = ENV_CHAIN_COLUMNS_LABEL_LEN + 4;
	size_t		i;
	uint8_t    *p;

	for (i = 0; i < ex->ncols; i++)
		len += ENV_CHAIN_STR_LEN(ex->cols[i].name_len) +
			ENV_CHAIN_STR_LEN(ex->cols[i].type_len);
	if (len > *cap)
	{
		uint8_t    *nb = realloc(*buf, len);

		if (nb == NULL)
			return false;
		*buf = nb;
		*cap = len;
	}
	p = env_chain_put_columns_header(*buf, (uint32_t) ex->ncols);
	for (i = 0; i < ex->ncols; i++)
	{
		p = env_chain_put_str(p, ex->cols[i].name, ex->cols[i].name_len);
		p = env_chain_put_str(p, ex->cols[i].type, ex->cols[i].type_len);
	}
	return env_sha256(*buf, (size_t) (p - *buf), out);
}

/* The bytes a row's hash covers: chainfmt.h, "Row hash" in the document */
static bool
ev_row_hash(const EvExport *ex, const EvRow *row, const uint8_t *columns,
			uint8_t **buf, size_t *cap, uint8_t *out)
{
	size_t		len = env_chain_header_len(ex->chain_len, ex->tenant_len,
										   ex->tenant == NULL, row->at_len);
	size_t		i;
	uint8_t    *p;

	for (i = 0; i < ex->ncols; i++)
	{
		const json_t *v = json_array_get(row->values, i);

		/* every length is below 2^31 (the input is), so this cannot wrap */
		len += ENV_CHAIN_OPT_LEN(json_string_length(v), json_is_null(v));
	}
	if (len > *cap)
	{
		uint8_t    *nb = realloc(*buf, len);

		if (nb == NULL)
			return false;
		*buf = nb;
		*cap = len;
	}
	p = env_chain_put_header(*buf, ex->chain, ex->chain_len, ex->tenant,
							 ex->tenant_len, ex->tenant == NULL,
							 (uint64_t) row->seq, row->at, row->at_len,
							 row->prev, columns);
	for (i = 0; i < ex->ncols; i++)
	{
		const json_t *v = json_array_get(row->values, i);

		p = env_chain_put_opt(p, json_string_value(v), json_string_length(v),
							  json_is_null(v));
	}
	return env_sha256(*buf, (size_t) (p - *buf), out);
}

/*
 * The tree head after a row, computed at most once per row: known when the
 * tree is, and holds exactly the rows up to seq.
 */
static const uint8_t *
ev_tree_head(const EnvMerkleFrontier *tree, bool tree_ok, int64_t seq,
			 int *state, uint8_t *root)
{
	if (*state == 0)
		*state = (tree_ok && tree->size == (uint64_t) seq &&
				  env_merkle_root(tree, root)) ? 1 : -1;
	return *state == 1 ? root : NULL;
}

/* Does a verified checkpoint sign this row: its hash, or the tree head? */
static bool
ev_signs(const EvCp *c, const EvRow *row, bool hash_ok,
		 const EnvMerkleFrontier *tree, bool tree_ok, int *state,
		 uint8_t *root)
{
	const uint8_t *head;

	if (!c->tree)
		return hash_ok && memcmp(c->hash, row->hash, ENV_SHA256_LEN) == 0;
	head = ev_tree_head(tree, tree_ok, row->seq, state, root);
	return head != NULL && memcmp(c->hash, head, ENV_SHA256_LEN) == 0;
}

bool
ev_verify(const EvExport *ex, const EvKey *keys, int nkeys, const EvLog *log,
		  bool complete, EvResult *res)
{
	return ev_verify_witnessed(ex, keys, nkeys, NULL, 0, 0, log, complete,
							   res);
}

bool
ev_verify_witnessed(const EvExport *ex, const EvKey *keys, int nkeys,
					const EvWitness *witnesses, int nwitnesses, int need,
					const EvLog *log, bool complete, EvResult *res)
{
	size_t		nlog = log != NULL ? log->n : 0;
	size_t		ncps = ex->ncps + nlog;
	EvCp	   *cps;
	EnvCheckpointKey *ckeys;
	size_t		i;
	size_t		next_cp = 0;
	int64_t		expect = 1;
	uint8_t		prev[ENV_SHA256_LEN];
	uint8_t		columns[ENV_SHA256_LEN];
	bool		prev_known = true;
	uint8_t    *buf = NULL;
	size_t		cap = 0;
	EnvMerkleFrontier *tree;
	bool		tree_ok = false;

	memset(res, 0, sizeof(*res));
	res->have_log = (log != NULL);
	cps = calloc(ncps > 0 ? ncps : 1, sizeof(EvCp));
	ckeys = calloc(nkeys > 0 ? (size_t) nkeys : 1, sizeof(EnvCheckpointKey));
	tree = malloc(sizeof(EnvMerkleFrontier));
	if (cps == NULL || ckeys == NULL || tree == NULL)
	{
		free(cps);
		free(ckeys);
		free(tree);
		return false;
	}
	ev_checkpoint_keys(keys, nkeys, ckeys);

	for (i = 0; i < ex->ncps; i++)
	{
		EnvCheckpoint body;
		EvCp	   *c = &cps[i];
		const json_t *note = json_array_get(ex->cps, i);

		c->order = i;
		c->status = ev_check_note(ex, json_string_value(note),
								  json_string_length(note), ckeys,
								  nkeys, witnesses, nwitnesses, &body,
								  &c->cosigners);
		if (c->status != 1)
		{
			/* as verify_chain reads it: a bigint */
			c->seq = (int64_t) body.seq;
			memcpy(c->hash, body.hash, ENV_SHA256_LEN);
			c->tree = body.tree;
			c->purge = body.purge;
		}
	}
	for (i = 0; i < nlog; i++)
	{
		const EvLogCheckpoint *l = &log->items[i];
		EvCp	   *c = &cps[ex->ncps + i];
		EnvCheckpoint body;

		c->order = ex->ncps + i;
		c->logged = true;
		c->where = l->where;
		if (!l->parsed)
		{
			/* a line that names this chain but cannot be read */
			c->status = l->has_seq ? 2 : 1;
			c->seq = l->has_seq ? (int64_t) l->seq : 0;
			continue;
		}
		c->seq = (int64_t) l->seq;
		memcpy(c->hash, l->hash, ENV_SHA256_LEN);
		c->status = ev_check_note(ex, l->note, l->note_len, ckeys, nkeys,
								  witnesses, nwitnesses, &body, &c->cosigners);
		c->tree = body.tree;
		c->purge = body.purge;

		/*
		 * the line must say what its note signs (a tree head, or a row's
		 * hash)
		 */
		if (c->status != 1 &&
			(body.origin_len != log->origin_len ||
			 memcmp(body.origin, log->origin, log->origin_len) != 0 ||
			 body.seq != l->seq ||
			 memcmp(body.hash, l->hash, ENV_SHA256_LEN) != 0))
			c->status = 2;
		if (c->status == 1)
			c->status = 2;		/* its line gave the sequence number */
	}
	free(ckeys);
	if (ncps > 1)
		qsort(cps, ncps, sizeof(EvCp), ev_cmp_cp);

	if (!ev_columns_hash(ex, &buf, &cap, columns))
	{
		free(buf);
		free(cps);
		free(tree);
		return false;
	}
	memcpy(prev, env_chain_genesis, ENV_SHA256_LEN);
	for (i = 0; i < ex->nrows; i++)
	{
		const EvRow *row = &ex->rows[i];
		int64_t		seq = row->seq;
		uint8_t		computed[ENV_SHA256_LEN];
		uint8_t		root[ENV_MERKLE_HASH_LEN];
		int			root_state = 0;
		bool		hash_ok = row->has_hash;
		int64_t		next;

		if (i == 0)
		{
			res->first = seq;
			/* row 1 links to the genesis value; a later row cannot be checked */
			expect = seq;
			prev_known = (seq == 1);

			/*
			 * The Merkle tree starts empty at row 1, or from the export's
			 * frontier of the rows before the first; without one of the right
			 * size, tree heads of the export cannot be checked.
			 */
			if (seq == 1)
			{
				env_merkle_frontier_init(tree);
				tree_ok = true;
			}
			else if (ex->has_frontier && ex->frontier.size == (uint64_t) seq - 1)
			{
				memcpy(tree, &ex->frontier, sizeof(EnvMerkleFrontier));
				tree_ok = true;
			}
		}
		res->rows++;
		if (seq < expect)
			ev_bad(res, seq, "extra row", NULL);
		else if (seq > expect)
			ev_bad(res, expect, "missing row", NULL);

		if (!row->has_hash || !row->has_prev)
			ev_bad(res, seq, "hash mismatch", NULL);
		else
		{
			if (!ev_row_hash(ex, row, columns, &buf, &cap, computed))
			{
				free(buf);
				free(cps);
				free(tree);
				return false;
			}
			if (memcmp(computed, row->hash, ENV_SHA256_LEN) != 0)
				ev_bad(res, seq, "hash mismatch", NULL);
			else if (prev_known && seq == expect &&
					 memcmp(row->prev, prev, ENV_SHA256_LEN) != 0)
				ev_bad(res, seq, "hash mismatch", NULL);
		}

		/*
		 * Into the tree, in sequence order: a missing row or one without a
		 * hash leaves it unknown from there on.  A second row of a number
		 * already in it is an extra row, reported above.
		 */
		if (tree_ok)
		{
			if ((uint64_t) seq == tree->size + 1 && hash_ok)
				tree_ok = env_merkle_append(tree, row->hash, NULL, NULL);
			else if ((uint64_t) seq > tree->size)
				tree_ok = false;
		}

		/*
		 * an export that starts mid-chain is anchored if a checkpoint signs
		 * its first row
		 */
		if (i == 0 && seq != 1)
		{
			size_t		k;

			for (k = 0; k < ncps; k++)
				if (cps[k].seq == seq && cps[k].status == 0 &&
					ev_signs(&cps[k], row, hash_ok, tree, tree_ok,
							 &root_state, root))
					res->anchored = true;
			if (!res->anchored && complete)
				ev_bad(res, 1, "missing row", NULL);
			else if (complete)
			{
				/*
				 * the whole chain from an anchor: a checkpoint states the
				 * purge
				 */
				for (k = 0; k < ncps; k++)
					if (cps[k].status == 0 && cps[k].purge == (uint64_t) seq)
						break;
				if (k == ncps)
					ev_bad(res, 1, "purge not signed", NULL);
			}
		}

		while (next_cp < ncps && cps[next_cp].seq < seq)
			next_cp++;
		for (; next_cp < ncps && cps[next_cp].seq == seq; next_cp++)
		{
			EvCp	   *c = &cps[next_cp];

			if (c->status == 0 &&
				!ev_signs(c, row, hash_ok, tree, tree_ok, &root_state, root))
				ev_bad(res, seq, "checkpoint mismatch", c->where);
		}

		if (hash_ok)
			memcpy(prev, row->hash, ENV_SHA256_LEN);
		prev_known = hash_ok;
		next = seq > expect - 1 ? seq : expect - 1;
		expect = next == INT64_MAX ? INT64_MAX : next + 1;
		if (seq > res->last)
			res->last = seq;
	}

	for (i = 0; i < ncps; i++)
	{
		EvCp	   *c = &cps[i];

		if (c->status != 0)
			ev_bad(res, c->seq > 0 ? c->seq : 1, "bad signature", c->where);
		else
		{
			if (c->seq > res->last)
				ev_bad(res, res->last + 1, "truncated after checkpoint", c->where);
			else if (ex->nrows > 0 && c->seq >= res->first && c->seq > res->covered)
				res->covered = c->seq;
			if (c->logged)
				res->logged++;
			else
				res->checkpoints++;
		}
	}

	/*
	 * Witnesses: the newest tree head of the export, the largest verified
	 * one, must be cosigned by enough of them (counted over every checkpoint
	 * of that size: all sign the same tree, or one is a mismatch).  Only when
	 * nothing else is wrong.
	 */
	if (nwitnesses > 0)
	{
		uint64_t	cosigners = 0;
		int			k;

		for (i = 0; i < ncps; i++)
		{
			const EvCp *c = &cps[i];

			if (c->status != 0 || !c->tree || c->logged)
				continue;
			if (c->seq > res->newest_tree)
			{
				res->newest_tree = c->seq;
				cosigners = 0;
			}
			cosigners |= c->cosigners;
		}
		res->witnessed = true;
		res->witnesses_needed = need;
		for (k = 0; k < 64; k++)
			if (cosigners & ((uint64_t) 1 << k))
				res->cosigned++;
		if (res->reason == NULL && res->cosigned < need)
		{
			res->witness_fail = true;
			res->bad_seq = res->newest_tree;
			res->reason = "witness cosignatures";
		}
	}
	res->ok = (res->reason == NULL);
	free(buf);
	free(cps);
	free(tree);
	return true;
}

/* --- the result line ------------------------------------------------------------ */

/* A growing NUL-terminated output buffer; oom is set if a write failed */
typedef struct EvOut
{
	char	   *buf;
	size_t		len;
	size_t		cap;
	bool		oom;
} EvOut;

static void
ev_out(EvOut *o, const char *s, size_t n)
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

static void ev_printf(EvOut *l, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

static void
ev_printf(EvOut *l, const char *fmt,...)
{
	char		tmp[256];
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t) n >= sizeof(tmp))
		l->oom = true;
	else
		ev_out(l, tmp, (size_t) n);
}

/*
 * Text from the export, printable on one line: control characters as
 * \u00XX, a backslash doubled, and with quoted, '"' as \".
 */
static void
ev_put_text(EvOut *l, const char *s, size_t n, bool quoted)
{
	size_t		i;

	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7f)
			ev_printf(l, "\\u%04x", c);
		else if (c == '\\')
			ev_out(l, "\\\\", 2);
		else if (quoted && c == '"')
			ev_out(l, "\\\"", 2);
		else
			ev_out(l, s + i, 1);
	}
}

/* <chain> tenant "<tenant>": , or <chain> without tenant: */
static void
ev_put_chain(EvOut *l, const EvExport *ex)
{
	ev_put_text(l, ex->chain, ex->chain_len, false);
	if (ex->tenant != NULL)
	{
		ev_out(l, " tenant \"", 9);
		ev_put_text(l, ex->tenant, ex->tenant_len, true);
		ev_out(l, "\": ", 3);
	}
	else
		ev_out(l, " without tenant: ", 17);
}

static const char *
ev_plural(size_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

char *
ev_result_line(const EvExport *ex, const EvResult *res)
{
	EvOut		l;

	memset(&l, 0, sizeof(l));
	if (res->witness_fail)
	{
		ev_out(&l, "FAIL: ", 6);
		ev_put_chain(&l, ex);
		if (res->newest_tree > 0)
			ev_printf(&l, "the newest checkpoint (seq %lld) has %d of %d witness cosignatures",
					  (long long) res->newest_tree, res->cosigned,
					  res->witnesses_needed);
		else
			ev_printf(&l, "no tree-head checkpoint verified, 0 of %d witness cosignatures",
					  res->witnesses_needed);
	}
	else if (!res->ok)
	{
		ev_printf(&l, "FAIL: seq %lld: %s", (long long) res->bad_seq, res->reason);
		if (res->where != NULL)
		{
			ev_out(&l, " (checkpoint in ", 16);
			ev_put_text(&l, res->where, strlen(res->where), false);
			ev_out(&l, ")", 1);
		}
	}
	else
	{
		ev_out(&l, "OK: ", 4);
		ev_put_chain(&l, ex);
		if (res->rows == 0)
			ev_out(&l, "no rows", 7);
		else
		{
			const char *start = res->first == 1 ? "from the genesis" :
				res->anchored ? "anchored by a checkpoint" :
				"starting mid-chain without an anchor";

			if (res->rows == 1)
				ev_printf(&l, "1 row (seq %lld, %s)", (long long) res->first, start);
			else
				ev_printf(&l, "%zu rows (seq %lld-%lld, %s)", res->rows,
						  (long long) res->first, (long long) res->last, start);
		}
		ev_printf(&l, ", %zu %s verified", res->checkpoints,
				  ev_plural(res->checkpoints, "checkpoint", "checkpoints"));
		if (res->have_log)
			ev_printf(&l, ", %zu from the server log", res->logged);
		if (res->rows > 0)
		{
			if (res->covered == 0)
				ev_out(&l, "; no row covered by a checkpoint yet", 36);
			else if (res->covered < res->last)
				ev_printf(&l, "; rows after seq %lld not yet covered by a checkpoint",
						  (long long) res->covered);
			else
				ev_out(&l, "; every row covered by a checkpoint", 35);
		}
		if (res->witnessed)
			ev_printf(&l, ", cosigned by %d %s", res->cosigned,
					  ev_plural((size_t) res->cosigned, "witness", "witnesses"));
	}
	if (l.oom || l.buf == NULL)
	{
		free(l.buf);
		return NULL;
	}
	return l.buf;
}

/* --- keys ------------------------------------------------------------------------ */

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
	while (start < len && (text[start] == ' ' || text[start] == '\t' ||
						   text[start] == '\n' || text[start] == '\r'))
		start++;
	while (len > start && (text[len - 1] == ' ' || text[len - 1] == '\t' ||
						   text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
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
	while (start < len && (text[start] == ' ' || text[start] == '\t' ||
						   text[start] == '\n' || text[start] == '\r'))
		start++;
	while (len > start && (text[len - 1] == ' ' || text[len - 1] == '\t' ||
						   text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
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

/* The same witness twice counts once */
static bool
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

bool
ev_origin_database(const char *origin, size_t origin_len,
				   const char *database, size_t database_len)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *p = origin + 8;
	const char *end = origin + origin_len;
	size_t		i;

	if (origin_len < 8 || memcmp(origin, "envault/", 8) != 0 ||
		database_len == 0)
		return false;
	/* percent-encoded as env_origin_build() writes it */
	for (i = 0; i < database_len; i++)
	{
		unsigned char c = (unsigned char) database[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
			c == '~')
		{
			if (p >= end || *p != (char) c)
				return false;
			p++;
		}
		else
		{
			if (end - p < 3 || p[0] != '%' || p[1] != hex[c >> 4] ||
				p[2] != hex[c & 15])
				return false;
			p += 3;
		}
	}
	/* then a chain */
	return end - p >= 2 && *p == '/';
}
