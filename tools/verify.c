/*-------------------------------------------------------------------------
 *
 * verify.c
 *		Verify an export of an audit chain against trusted keys, witnesses
 *		and the checkpoints of a server log, reporting the first problem as
 *		envault.verify_chain() does.
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
#include <stdlib.h>
#include <string.h>

#include "chainfmt.h"
#include "verify.h"

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

/*
 * One verification: the checkpoints, in order of sequence number, and the
 * walk along the rows (the row expected next, the hash it must link to,
 * the Merkle tree of the rows so far).
 */
typedef struct EvWalk
{
	const EvExport *ex;
	EvResult   *res;
	bool		complete;
	EvCp	   *cps;
	size_t		ncps;
	size_t		next_cp;		/* the first checkpoint not yet reached */
	int64_t		expect;			/* the sequence number of the next row */
	uint8_t		prev[ENV_SHA256_LEN];	/* the hash the next row links to */
	bool		prev_known;
	uint8_t		columns[ENV_SHA256_LEN];
	uint8_t    *buf;			/* for the bytes a row's hash covers */
	size_t		cap;
	EnvMerkleFrontier *tree;
	bool		tree_ok;		/* the tree holds exactly the rows so far */
} EvWalk;

/*
 * The checkpoints of the export, then those of the log, each checked
 * against the trusted keys and witnesses, in order of sequence number
 * (stable: export before log, each in its own order).
 */
static bool
ev_load_checkpoints(EvWalk *w, const EvKey *keys, int nkeys,
					const EvWitness *witnesses, int nwitnesses,
					const EvLog *log)
{
	const EvExport *ex = w->ex;
	size_t		nlog = log != NULL ? log->n : 0;
	EnvCheckpointKey *ckeys;
	size_t		i;

	w->ncps = ex->ncps + nlog;
	w->cps = calloc(w->ncps > 0 ? w->ncps : 1, sizeof(EvCp));
	ckeys = calloc(nkeys > 0 ? (size_t) nkeys : 1, sizeof(EnvCheckpointKey));
	if (w->cps == NULL || ckeys == NULL)
	{
		free(ckeys);
		return false;
	}
	ev_checkpoint_keys(keys, nkeys, ckeys);

	for (i = 0; i < ex->ncps; i++)
	{
		EnvCheckpoint body;
		EvCp	   *c = &w->cps[i];
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
		EvCp	   *c = &w->cps[ex->ncps + i];
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
	if (w->ncps > 1)
		qsort(w->cps, w->ncps, sizeof(EvCp), ev_cmp_cp);
	return true;
}

/*
 * The first row: row 1 links to the genesis value, a later one cannot be
 * checked.  The Merkle tree starts empty at row 1, or from the export's
 * frontier of the rows before the first; without one of the right size,
 * tree heads of the export cannot be checked.
 */
static void
ev_start_walk(EvWalk *w, int64_t seq)
{
	w->res->first = seq;
	w->expect = seq;
	w->prev_known = (seq == 1);
	if (seq == 1)
	{
		env_merkle_frontier_init(w->tree);
		w->tree_ok = true;
	}
	else if (w->ex->has_frontier && w->ex->frontier.size == (uint64_t) seq - 1)
	{
		memcpy(w->tree, &w->ex->frontier, sizeof(EnvMerkleFrontier));
		w->tree_ok = true;
	}
}

/*
 * A row's place in the sequence, its hash and its link to the row before.
 * Returns false only when out of memory.
 */
static bool
ev_check_row(EvWalk *w, const EvRow *row)
{
	int64_t		seq = row->seq;
	uint8_t		computed[ENV_SHA256_LEN];

	if (seq < w->expect)
		ev_bad(w->res, seq, "extra row", NULL);
	else if (seq > w->expect)
		ev_bad(w->res, w->expect, "missing row", NULL);

	if (!row->has_hash || !row->has_prev)
	{
		ev_bad(w->res, seq, "hash mismatch", NULL);
		return true;
	}
	if (!ev_row_hash(w->ex, row, w->columns, &w->buf, &w->cap, computed))
		return false;
	if (memcmp(computed, row->hash, ENV_SHA256_LEN) != 0)
		ev_bad(w->res, seq, "hash mismatch", NULL);
	else if (w->prev_known && seq == w->expect &&
			 memcmp(row->prev, w->prev, ENV_SHA256_LEN) != 0)
		ev_bad(w->res, seq, "hash mismatch", NULL);
	return true;
}

/*
 * Into the tree, in sequence order: a missing row or one without a hash
 * leaves it unknown from there on.  A second row of a number already in it
 * is an extra row, reported by ev_check_row.
 */
static void
ev_grow_tree(EvWalk *w, const EvRow *row)
{
	if (!w->tree_ok)
		return;
	if ((uint64_t) row->seq == w->tree->size + 1 && row->has_hash)
		w->tree_ok = env_merkle_append(w->tree, row->hash, NULL, NULL);
	else if ((uint64_t) row->seq > w->tree->size)
		w->tree_ok = false;
}

/*
 * An export that starts mid-chain is anchored if a checkpoint signs its
 * first row; a complete one must also have a checkpoint that states the
 * purge of the rows before.
 */
static void
ev_check_anchor(EvWalk *w, const EvRow *row, int *root_state, uint8_t *root)
{
	size_t		k;

	for (k = 0; k < w->ncps; k++)
		if (w->cps[k].seq == row->seq && w->cps[k].status == 0 &&
			ev_signs(&w->cps[k], row, row->has_hash, w->tree, w->tree_ok,
					 root_state, root))
			w->res->anchored = true;
	if (!w->complete)
		return;
	if (!w->res->anchored)
	{
		ev_bad(w->res, 1, "missing row", NULL);
		return;
	}
	for (k = 0; k < w->ncps; k++)
		if (w->cps[k].status == 0 && w->cps[k].purge == (uint64_t) row->seq)
			return;
	ev_bad(w->res, 1, "purge not signed", NULL);
}

/* The verified checkpoints of this row's number must sign it */
static void
ev_check_row_checkpoints(EvWalk *w, const EvRow *row, int *root_state,
						 uint8_t *root)
{
	while (w->next_cp < w->ncps && w->cps[w->next_cp].seq < row->seq)
		w->next_cp++;
	for (; w->next_cp < w->ncps && w->cps[w->next_cp].seq == row->seq;
		 w->next_cp++)
	{
		EvCp	   *c = &w->cps[w->next_cp];

		if (c->status == 0 &&
			!ev_signs(c, row, row->has_hash, w->tree, w->tree_ok, root_state,
					  root))
			ev_bad(w->res, row->seq, "checkpoint mismatch", c->where);
	}
}

/* One row, in order of seq.  Returns false only when out of memory. */
static bool
ev_walk_row(EvWalk *w, const EvRow *row, bool first)
{
	int64_t		seq = row->seq;
	uint8_t		root[ENV_MERKLE_HASH_LEN];
	int			root_state = 0;
	int64_t		next;

	if (first)
		ev_start_walk(w, seq);
	w->res->rows++;
	if (!ev_check_row(w, row))
		return false;
	ev_grow_tree(w, row);
	if (first && seq != 1)
		ev_check_anchor(w, row, &root_state, root);
	ev_check_row_checkpoints(w, row, &root_state, root);

	if (row->has_hash)
		memcpy(w->prev, row->hash, ENV_SHA256_LEN);
	w->prev_known = row->has_hash;
	next = seq > w->expect - 1 ? seq : w->expect - 1;
	w->expect = next == INT64_MAX ? INT64_MAX : next + 1;
	if (seq > w->res->last)
		w->res->last = seq;
	return true;
}

/*
 * After the rows: every checkpoint's signature, and the checkpoints beyond
 * the last row; count the verified ones and the rows they cover.
 */
static void
ev_tally_checkpoints(EvWalk *w)
{
	EvResult   *res = w->res;
	size_t		i;

	for (i = 0; i < w->ncps; i++)
	{
		EvCp	   *c = &w->cps[i];

		if (c->status != 0)
		{
			ev_bad(res, c->seq > 0 ? c->seq : 1, "bad signature", c->where);
			continue;
		}
		if (c->seq > res->last)
			ev_bad(res, res->last + 1, "truncated after checkpoint", c->where);
		else if (w->ex->nrows > 0 && c->seq >= res->first && c->seq > res->covered)
			res->covered = c->seq;
		if (c->logged)
			res->logged++;
		else
			res->checkpoints++;
	}
}

/*
 * Witnesses: the newest tree head of the export, the largest verified one,
 * must be cosigned by enough of them (counted over every checkpoint of that
 * size: all sign the same tree, or one is a mismatch).  Only when nothing
 * else is wrong.
 */
static void
ev_tally_witnesses(EvWalk *w, int need)
{
	EvResult   *res = w->res;
	uint64_t	cosigners = 0;
	size_t		i;
	int			k;

	for (i = 0; i < w->ncps; i++)
	{
		const EvCp *c = &w->cps[i];

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
	EvWalk		w;
	bool		ok = false;
	size_t		i;

	memset(res, 0, sizeof(*res));
	res->have_log = (log != NULL);
	memset(&w, 0, sizeof(w));
	w.ex = ex;
	w.res = res;
	w.complete = complete;
	w.expect = 1;
	w.prev_known = true;
	memcpy(w.prev, env_chain_genesis, ENV_SHA256_LEN);

	w.tree = malloc(sizeof(EnvMerkleFrontier));
	if (w.tree == NULL ||
		!ev_load_checkpoints(&w, keys, nkeys, witnesses, nwitnesses, log) ||
		!ev_columns_hash(ex, &w.buf, &w.cap, w.columns))
		goto done;
	for (i = 0; i < ex->nrows; i++)
		if (!ev_walk_row(&w, &ex->rows[i], i == 0))
			goto done;
	ev_tally_checkpoints(&w);
	if (nwitnesses > 0)
		ev_tally_witnesses(&w, need);
	res->ok = (res->reason == NULL);
	ok = true;
done:
	free(w.buf);
	free(w.cps);
	free(w.tree);
	return ok;
}
