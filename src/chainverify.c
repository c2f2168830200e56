/*-------------------------------------------------------------------------
 *
 * chainverify.c
 *		Checking and exporting audit chains: verify_chain(),
 *		verify_chain_json() (a Citus shard's part) and export_chain().
 *
 * verify_chain() reads every row of a chain in (tenant, envault_seq) order
 * through the chain's unique index, recomputes each row's hash, checks the
 * sequence and the links, checks every checkpoint's signature and that each
 * checkpointed row is still there with the signed hash.  Reasons, by the
 * first bad sequence number:
 *	hash mismatch		a row's hash, or its link to the row before, is wrong
 *	missing row			a sequence number is missing
 *	extra row			a sequence number appears twice
 *	checkpoint mismatch	a row differs from the hash a checkpoint signed
 *	bad signature		a checkpoint's signature does not verify
 *	truncated after checkpoint	rows a checkpoint covers are gone
 *
 * A purge (chainpurge.c) leaves an anchor: the oldest remaining row, whose
 * hash a checkpoint signed; the chain verifies from there.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "scaleout.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "merkle.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* A checkpoint as verified, for one tenant */
typedef struct CvCheckpoint
{
	int64		seq;
	uint8		hash[ENV_CHAIN_HASH_LEN];
	int			status;			/* 0 ok, 1 malformed, 2 bad signature */
	bool		tree;			/* hash is the tree head of rows 1 to seq */
	int64		purge;			/* it signs a purge up to this anchor, or 0 */
	char	   *note;
} CvCheckpoint;

/* A row seen before the rows before it (a heap is not in chain order) */
typedef struct CvPending
{
	int64		seq;
	bool		ok;				/* prev and hash are valid hashes */
	uint8		prev[ENV_CHAIN_HASH_LEN];
	uint8		hash[ENV_CHAIN_HASH_LEN];
} CvPending;

/* Everything verify_chain() knows of one tenant's chain */
typedef struct CvTenant
{
	char	   *tenant;			/* canonical text, NULL for the NULL chain */
	size_t		tenant_len;
	uint64		hkey;			/* hash of the tenant, for the lookup table */
	struct CvTenant *next_same; /* another tenant with the same hkey */
	int			ncps;
	CvCheckpoint *cps;			/* sorted by seq */
	int64		anchor;			/* first remaining seq after a purge, or 0 */
	bool		has_head;		/* envault.chain_heads has a row */
	int64		head_seq;
	uint8		head_hash[ENV_CHAIN_HASH_LEN];
	int64		tree_until;		/* highest seq a tree head checkpoint signs */

	/* the walk along the chain */
	bool		seen;			/* has rows */
	int64		expect;			/* next sequence number */
	bool		prev_known;
	uint8		prev[ENV_CHAIN_HASH_LEN];	/* hash of the row before */
	int64		last;			/* highest seq seen */
	EnvMerkleFrontier *tree;	/* the Merkle tree of the rows so far, or NULL */
	bool		anchored;		/* a checkpoint signed the anchor row */
	bool		anchor_seen;
	CvPending  *pend;			/* binary min-heap by seq, in cxt */
	int			npend;
	int			maxpend;
	MemoryContext cxt;

	/* results */
	int64		rows;
	int64		first_bad;
	const char *reason;
} CvTenant;

typedef struct CvChain
{
	List	   *tenants;		/* in the order they are reported */
	HTAB	   *by_key;			/* hkey -> CvTenant */
	CvTenant   *last;			/* the tenant of the previous row */
} CvChain;

typedef struct CvKeyEntry
{
	uint64		hkey;
	CvTenant   *t;
} CvKeyEntry;

static int
cv_cmp_cp(const void *a, const void *b)
{
	int64		x = ((const CvCheckpoint *) a)->seq;
	int64		y = ((const CvCheckpoint *) b)->seq;

	return (x > y) - (x < y);
}

/* Note a problem; the one with the smallest sequence number is reported */
static void
cv_bad(CvTenant *t, int64 seq, const char *reason)
{
	if (t->reason == NULL || seq < t->first_bad)
	{
		t->first_bad = seq;
		t->reason = reason;
	}
}

static uint64
cv_hkey(const char *tenant, size_t len, bool isnull)
{
	return hash_bytes_extended((const unsigned char *) (tenant ? tenant : ""),
							   (int) len, isnull ? 1 : 0);
}

static bool
cv_is(const CvTenant *t, const char *tenant, size_t len, bool isnull)
{
	return isnull ? t->tenant == NULL :
		(t->tenant != NULL && t->tenant_len == len &&
		 memcmp(t->tenant, tenant, len) == 0);
}

static CvTenant *
cv_find(CvChain *c, const char *tenant, size_t len, bool isnull)
{
	uint64		hkey;
	CvKeyEntry *e;
	CvTenant   *t;

	if (c->last && cv_is(c->last, tenant, len, isnull))
		return c->last;
	hkey = cv_hkey(tenant, len, isnull);
	e = hash_search(c->by_key, &hkey, HASH_FIND, NULL);
	for (t = e ? e->t : NULL; t != NULL; t = t->next_same)
		if (cv_is(t, tenant, len, isnull))
			return c->last = t;
	return NULL;
}

/* The tenant's entry, created if need be, in the caller's memory context */
static CvTenant *
cv_add(CvChain *c, const char *tenant, size_t len, bool isnull)
{
	CvTenant   *t = cv_find(c, tenant, len, isnull);
	CvKeyEntry *e;
	bool		found;

	if (t != NULL)
		return t;
	t = palloc0(sizeof(CvTenant));
	t->cxt = CurrentMemoryContext;
	if (!isnull)
	{
		t->tenant = pnstrdup(tenant, len);
		t->tenant_len = len;
	}
	t->hkey = cv_hkey(tenant, len, isnull);
	e = hash_search(c->by_key, &t->hkey, HASH_ENTER, &found);
	t->next_same = found ? e->t : NULL;
	e->t = t;
	c->tenants = lappend(c->tenants, t);
	return c->last = t;
}

/* A tenant that cv_load() found nothing of: its chain starts at row 1 */
static void
cv_start(CvTenant *t)
{
	t->expect = 1;
	t->prev_known = true;
	memcpy(t->prev, env_chain_genesis, ENV_CHAIN_HASH_LEN);
}

/* The tenant of a tenant column of envault's tables (text, or NULL) */
static CvTenant *
cv_add_text(CvChain *c, Datum d, bool isnull)
{
	text	   *t = isnull ? NULL : DatumGetTextPP(d);

	return cv_add(c, t ? VARDATA_ANY(t) : NULL, t ? VARSIZE_ANY_EXHDR(t) : 0,
				  isnull);
}

/* each note with the witnesses' cosignatures appended (witness.c) */
#define CV_Q_CHECKPOINTS_0_2 \
	"SELECT tenant, note FROM envault.checkpoints" \
	" WHERE chain_id OPERATOR(pg_catalog.=) $1" \
	"   AND ($2 IS NULL OR tenant OPERATOR(pg_catalog.=) $2)" \
	" ORDER BY checkpoint_id"
#define CV_Q_CHECKPOINTS \
	"SELECT c.tenant, c.note OPERATOR(pg_catalog.||)" \
	"       COALESCE((SELECT pg_catalog.string_agg(w.line, '' ORDER BY w.cosignature_id)" \
	"                   FROM envault.checkpoint_cosignatures w" \
	"                  WHERE w.checkpoint_id OPERATOR(pg_catalog.=) c.checkpoint_id), '')" \
	"  FROM envault.checkpoints c" \
	" WHERE c.chain_id OPERATOR(pg_catalog.=) $1" \
	"   AND ($2 IS NULL OR c.tenant OPERATOR(pg_catalog.=) $2)" \
	" ORDER BY c.checkpoint_id"

#define CV_Q_ANCHORS \
	"SELECT tenant, pg_catalog.max(seq) FROM envault.chain_anchors" \
	" WHERE chain_id OPERATOR(pg_catalog.=) $1" \
	"   AND ($2 IS NULL OR tenant OPERATOR(pg_catalog.=) $2)" \
	" GROUP BY tenant"

#define CV_Q_HEADS \
	"SELECT tenant, seq, hash FROM envault.chain_heads" \
	" WHERE chain_id OPERATOR(pg_catalog.=) $1" \
	"   AND ($2 IS NULL OR tenant OPERATOR(pg_catalog.=) $2)"

static bytea *
cv_bytea(const uint8 *hash)
{
	bytea	   *b = palloc(VARHDRSZ + ENV_CHAIN_HASH_LEN);

	SET_VARSIZE(b, VARHDRSZ + ENV_CHAIN_HASH_LEN);
	memcpy(VARDATA(b), hash, ENV_CHAIN_HASH_LEN);
	return b;
}

static bool
cv_bytea_hash(Datum d, bool isnull, uint8 *out)
{
	bytea	   *b;

	if (isnull)
		return false;
	b = DatumGetByteaPP(d);
	if (VARSIZE_ANY_EXHDR(b) != ENV_CHAIN_HASH_LEN)
		return false;
	memcpy(out, VARDATA_ANY(b), ENV_CHAIN_HASH_LEN);
	return true;
}

/*
 * Checkpoints of a distributed table's chains, which the Citus coordinator
 * holds and has checked the signatures of, handed to verify_chain_json()
 * on a shard as the tree heads to find along the walk: parallel arrays of
 * tenants, sizes and roots.
 */
typedef struct CvInject
{
	int			n;
	Datum	   *tenants;
	bool	   *tnulls;
	Datum	   *sizes;
	Datum	   *roots;
} CvInject;

/* Add the injected tree heads of the tenants asked for to their chains */
static void
cv_inject(CvChain *c, const CvInject *inj, const char *tenant, size_t tenant_len)
{
	int			i;

	for (i = 0; i < inj->n; i++)
	{
		text	   *tt = DatumGetTextPP(inj->tenants[i]);
		bytea	   *root = DatumGetByteaPP(inj->roots[i]);
		CvTenant   *t;
		CvCheckpoint *cp;

		if (inj->tnulls[i] ||
			(tenant != NULL && (VARSIZE_ANY_EXHDR(tt) != tenant_len ||
								memcmp(VARDATA_ANY(tt), tenant, tenant_len) != 0)))
			continue;
		t = cv_add(c, VARDATA_ANY(tt), VARSIZE_ANY_EXHDR(tt), false);
		t->cps = t->ncps == 0 ? palloc(sizeof(CvCheckpoint)) :
			repalloc(t->cps, sizeof(CvCheckpoint) * (t->ncps + 1));
		cp = &t->cps[t->ncps++];
		memset(cp, 0, sizeof(*cp));
		cp->seq = DatumGetInt64(inj->sizes[i]);
		cp->tree = true;
		if (VARSIZE_ANY_EXHDR(root) == ENV_CHAIN_HASH_LEN)
			memcpy(cp->hash, VARDATA_ANY(root), ENV_CHAIN_HASH_LEN);
		else
			cp->status = 1;
		t->tree_until = Max(t->tree_until, cp->seq);
	}
}

/*
 * Load and check the checkpoints, anchors and heads of a chain (or of one
 * tenant, given as canonical text).
 */
static CvChain *
cv_load(EnvChain *ch, const char *tenant, size_t tenant_len, const CvInject *inj)
{
	EnvSpi		s;
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	char		nulls[2 + 1] = "  ";
	uint64		i;
	ListCell   *lc;
	MemoryContext cxt = CurrentMemoryContext;
	CvChain    *c = palloc0(sizeof(CvChain));
	HASHCTL		ctl;
	char	   *dbid = env_database_id();

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(CvKeyEntry);
	ctl.hcxt = cxt;
	c->by_key = hash_create("envault verify_chain tenants", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	values[0] = Int32GetDatum(ch->chain_id);
	if (tenant)
		values[1] = PointerGetDatum(cstring_to_text_with_len(tenant, tenant_len));
	else
		nulls[1] = 'n';

	env_spi_begin(&s);
	if (SPI_execute_with_args(env_schema_has("checkpoint_cosignatures", NULL) ?
							  CV_Q_CHECKPOINTS : CV_Q_CHECKPOINTS_0_2,
							  2, types, values, nulls, true, 0)
		!= SPI_OK_SELECT)
		elog(ERROR, "could not read checkpoints");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		tnull;
		bool		isnull;
		Datum		td = SPI_getbinval(tup, desc, 1, &tnull);
		text	   *note = DatumGetTextPP(SPI_getbinval(tup, desc, 2, &isnull));
		MemoryContext old = MemoryContextSwitchTo(cxt);
		CvTenant   *t = cv_add_text(c, td, tnull);
		CvCheckpoint *cp;
		EnvCheckpoint parsed;

		t->cps = t->ncps == 0 ? palloc(sizeof(CvCheckpoint)) :
			repalloc(t->cps, sizeof(CvCheckpoint) * (t->ncps + 1));
		cp = &t->cps[t->ncps++];
		cp->note = text_to_cstring(note);
		cp->status = env_checkpoint_check(cp->note, strlen(cp->note), &parsed);
		cp->seq = 0;
		if (cp->status == 0 &&
			!env_origin_matches(parsed.origin, parsed.origin_len,
								dbid, strlen(dbid),
								ch->identity, ch->identity_len,
								t->tenant, t->tenant_len))
			cp->status = 2;		/* signed, but for another chain */
		if (cp->status != 1)
		{
			cp->seq = (int64) parsed.seq;
			memcpy(cp->hash, parsed.hash, ENV_CHAIN_HASH_LEN);
			cp->tree = parsed.tree;
			cp->purge = (int64) parsed.purge;
			if (cp->status == 0 && cp->tree)
				t->tree_until = Max(t->tree_until, cp->seq);
		}
		MemoryContextSwitchTo(old);
	}
	if (SPI_execute_with_args(CV_Q_ANCHORS, 2, types, values, nulls, true, 0)
		!= SPI_OK_SELECT)
		elog(ERROR, "could not read chain anchors");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		tnull;
		bool		isnull;
		Datum		td = SPI_getbinval(tup, desc, 1, &tnull);
		int64		seq = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		MemoryContext old = MemoryContextSwitchTo(cxt);
		CvTenant   *t = cv_add_text(c, td, tnull);

		t->anchor = seq;
		MemoryContextSwitchTo(old);
	}
	if (SPI_execute_with_args(CV_Q_HEADS, 2, types, values, nulls, true, 0)
		!= SPI_OK_SELECT)
		elog(ERROR, "could not read chain heads");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		tnull;
		bool		isnull;
		Datum		td = SPI_getbinval(tup, desc, 1, &tnull);
		int64		seq = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		Datum		hd = SPI_getbinval(tup, desc, 3, &isnull);
		MemoryContext old = MemoryContextSwitchTo(cxt);
		CvTenant   *t = cv_add_text(c, td, tnull);

		t->has_head = cv_bytea_hash(hd, isnull, t->head_hash);
		t->head_seq = seq;
		MemoryContextSwitchTo(old);
	}
	env_spi_end(&s);
	if (inj != NULL)
		cv_inject(c, inj, tenant, tenant_len);

	foreach(lc, c->tenants)
	{
		CvTenant   *t = lfirst(lc);

		if (t->ncps > 1)
			qsort(t->cps, t->ncps, sizeof(CvCheckpoint), cv_cmp_cp);
		t->expect = t->anchor > 0 ? t->anchor : 1;
		memcpy(t->prev, env_chain_genesis, ENV_CHAIN_HASH_LEN);
		t->prev_known = (t->anchor == 0);

		/*
		 * Tree heads are recomputed along the walk, up to the last one
		 * signed; after a purge, from the frontier the tree kept of the
		 * deleted rows (a made-up one cannot lead to a signed head).
		 */
		if (t->tree_until >= t->expect)
		{
			t->tree = MemoryContextAlloc(cxt, sizeof(EnvMerkleFrontier));
			if (t->anchor > 1 &&
				!env_chain_tree_frontier(ch, t->tenant ?
										 cstring_to_text_with_len(t->tenant, t->tenant_len) : NULL,
										 t->anchor - 1, t->tree))
			{
				pfree(t->tree);
				t->tree = NULL;
			}
			else if (t->anchor <= 1)
				env_merkle_frontier_init(t->tree);
		}
	}
	c->last = NULL;
	return c;
}

/* --- walking a chain in any order ------------------------------------------- */

static void
cv_pend_push(CvTenant *t, const CvPending *p)
{
	int			i;

	if (t->npend == t->maxpend)
	{
		t->maxpend = t->maxpend ? t->maxpend * 2 : 64;
		t->pend = t->pend ? repalloc_huge(t->pend, sizeof(CvPending) * t->maxpend) :
			MemoryContextAllocHuge(t->cxt, sizeof(CvPending) * t->maxpend);
	}
	i = t->npend++;
	while (i > 0 && t->pend[(i - 1) / 2].seq > p->seq)
	{
		t->pend[i] = t->pend[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	t->pend[i] = *p;
}

static void
cv_pend_pop(CvTenant *t, CvPending *out)
{
	CvPending	last;
	int			i = 0;

	*out = t->pend[0];
	last = t->pend[--t->npend];
	for (;;)
	{
		int			c = 2 * i + 1;

		if (c >= t->npend)
			break;
		if (c + 1 < t->npend && t->pend[c + 1].seq < t->pend[c].seq)
			c++;
		if (t->pend[c].seq >= last.seq)
			break;
		t->pend[i] = t->pend[c];
		i = c;
	}
	if (t->npend > 0)
		t->pend[i] = last;
}

/* The checkpoint of a sequence number, or NULL */
static CvCheckpoint *cv_checkpoint_at(CvTenant *t, int64 seq);
static void cv_emit(CvChain *c, ReturnSetInfo *rsinfo, bool finish, bool sharded);
static CvChain *cv_walk(EnvChain *ch, text *tenant, const CvInject *inj);
static void cv_json_str(StringInfo buf, const char *s, size_t len);

/*
 * The next row in sequence order, into the tree: the tree head checkpoints
 * of its number must have signed the head of the tree it completes.
 */
static void
cv_tree_row(CvTenant *t, const CvPending *p)
{
	CvCheckpoint *cp;
	uint8		root[ENV_MERKLE_HASH_LEN];
	bool		ok;
	bool		have_root = false;

	ok = t->tree != NULL && p->ok && p->seq == (int64) t->tree->size + 1 &&
		env_merkle_append(t->tree, p->hash, NULL, NULL);
	if (!ok && t->tree != NULL)
	{
		pfree(t->tree);
		t->tree = NULL;
	}
	/* the tree head, only where a checkpoint signed one */
	for (cp = t->ncps > 0 ? cv_checkpoint_at(t, p->seq) : NULL;
		 cp != NULL && cp < t->cps + t->ncps && cp->seq == p->seq; cp++)
	{
		if (cp->status != 0 || !cp->tree)
			continue;
		if (ok && !have_root)
			ok = have_root = env_merkle_root(t->tree, root);
		if (!ok || memcmp(cp->hash, root, ENV_MERKLE_HASH_LEN) != 0)
			cv_bad(t, p->seq, "checkpoint mismatch");
		else if (p->seq == t->anchor)
			t->anchored = true;
	}
}

/* The row that comes next in the chain: check its link to the one before. */
static void
cv_consume(CvTenant *t, const CvPending *p)
{
	if (t->prev_known && p->ok &&
		memcmp(p->prev, t->prev, ENV_CHAIN_HASH_LEN) != 0)
		cv_bad(t, p->seq, "hash mismatch");
	if (p->seq <= t->tree_until)
		cv_tree_row(t, p);
	memcpy(t->prev, p->hash, ENV_CHAIN_HASH_LEN);
	t->prev_known = p->ok;
	t->expect = p->seq + 1;
}

/* Order a row into the chain: at once if it is the next one, else later. */
static void
cv_link(CvTenant *t, const CvPending *p)
{
	if (p->seq < t->expect)
	{
		cv_bad(t, p->seq, "extra row");
		return;
	}
	if (p->seq > t->expect)
	{
		cv_pend_push(t, p);
		return;
	}
	cv_consume(t, p);
	while (t->npend > 0 && t->pend[0].seq <= t->expect)
	{
		CvPending	q;

		cv_pend_pop(t, &q);
		if (q.seq < t->expect)
			cv_bad(t, q.seq, "extra row");
		else
			cv_consume(t, &q);
	}
}

/* The checkpoint of a sequence number, or NULL */
static CvCheckpoint *
cv_checkpoint_at(CvTenant *t, int64 seq)
{
	int			lo = 0;
	int			hi = t->ncps - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (t->cps[mid].seq == seq)
		{
			while (mid > 0 && t->cps[mid - 1].seq == seq)
				mid--;
			return &t->cps[mid];
		}
		if (t->cps[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

/* Check one row: its own hash, the checkpoints that sign it, its link. */
static void
cv_row(EnvChain *ch, CvTenant *t, TupleTableSlot *slot, const EnvChainTenant *ct)
{
	Datum	   *values = slot->tts_values;
	bool	   *nulls = slot->tts_isnull;
	CvPending	p;
	uint8		computed[ENV_CHAIN_HASH_LEN];
	CvCheckpoint *cp;
	bool		prev_ok;

	t->rows++;
	t->seen = true;
	if (nulls[ch->seq_attnum - 1] || nulls[ch->at_attnum - 1])
	{
		cv_bad(t, t->expect, "hash mismatch");
		return;
	}
	p.seq = DatumGetInt64(values[ch->seq_attnum - 1]);
	t->last = Max(t->last, p.seq);
	p.ok = cv_bytea_hash(values[ch->hash_attnum - 1], nulls[ch->hash_attnum - 1], p.hash);
	prev_ok = cv_bytea_hash(values[ch->prev_attnum - 1], nulls[ch->prev_attnum - 1], p.prev);
	if (!p.ok || !prev_ok)
	{
		cv_bad(t, p.seq, "hash mismatch");
		p.ok = false;
	}
	else
	{
		env_chain_row_hash(ch, values, nulls, ct, (uint64) p.seq,
						   DatumGetTimestampTz(values[ch->at_attnum - 1]),
						   p.prev, computed);
		if (memcmp(computed, p.hash, ENV_CHAIN_HASH_LEN) != 0)
			cv_bad(t, p.seq, "hash mismatch");
	}

	/* every checkpoint of this row must have signed its hash */
	cp = t->ncps > 0 ? cv_checkpoint_at(t, p.seq) : NULL;
	for (; cp != NULL && cp < t->cps + t->ncps && cp->seq == p.seq; cp++)
	{
		if (cp->status != 0 || cp->tree)
			continue;			/* tree heads: when the row is linked */
		if (!p.ok || memcmp(cp->hash, p.hash, ENV_CHAIN_HASH_LEN) != 0)
			cv_bad(t, p.seq, "checkpoint mismatch");
		else if (p.seq == t->anchor)
			t->anchored = true;
	}
	if (p.seq == t->anchor)
		t->anchor_seen = true;
	cv_link(t, &p);
}

/*
 * After every row: gaps, signatures, truncation, the head.  A Citus shard
 * records no head: its newest row is the head (chainheads.c, ch_load_tail).
 */
static void
cv_finish(CvTenant *t, bool sharded)
{
	int			i;
	int64		last;

	while (t->npend > 0)
	{
		CvPending	q;

		cv_pend_pop(t, &q);
		if (q.seq < t->expect)
			cv_bad(t, q.seq, "extra row");
		else
		{
			if (q.seq > t->expect)
			{
				cv_bad(t, t->expect, "missing row");
				t->prev_known = false;
			}
			cv_consume(t, &q);
		}
	}
	/* an anchor row must be one a checkpoint signed */
	if (t->anchor > 0 && t->anchor_seen && !t->anchored)
		cv_bad(t, t->anchor, "checkpoint mismatch");
	/* and the purge a signed statement */
	if (t->anchor > 0)
	{
		bool		signed_purge = false;

		for (i = 0; i < t->ncps; i++)
			if (t->cps[i].status == 0 && t->cps[i].purge == t->anchor)
				signed_purge = true;
		if (!signed_purge)
			cv_bad(t, 1, "purge not signed");
	}
	last = t->seen ? t->last : (t->anchor > 0 ? t->anchor - 1 : 0);
	if (!t->seen && t->anchor > 0)
		cv_bad(t, t->anchor, "truncated after checkpoint");
	for (i = 0; i < t->ncps; i++)
	{
		CvCheckpoint *cp = &t->cps[i];

		if (cp->status != 0)
			cv_bad(t, cp->seq > 0 ? cp->seq : 1, "bad signature");
		else if (cp->seq > last && (t->anchor == 0 || cp->seq >= t->anchor))
			cv_bad(t, last + 1, "truncated after checkpoint");
	}
	/* the recorded head: rows cut from the end, or added behind its back */
	if (t->has_head)
	{
		if (t->head_seq > last)
			cv_bad(t, last + 1, "missing row");
		else if (t->head_seq < last)
			cv_bad(t, t->head_seq + 1, "extra row");
		else if (!t->prev_known ||
				 memcmp(t->head_hash, t->prev, ENV_CHAIN_HASH_LEN) != 0)
			cv_bad(t, last, "hash mismatch");
	}
	else if (t->seen && !sharded)
		cv_bad(t, 1, "missing row");
}

/* Tenants in byte order of their canonical text, the chain without last */
static int
cv_cmp_tenant(const ListCell *a, const ListCell *b)
{
	const CvTenant *x = lfirst(a);
	const CvTenant *y = lfirst(b);
	int			r;

	if (x->tenant == NULL || y->tenant == NULL)
		return (x->tenant == NULL) - (y->tenant == NULL);
	r = memcmp(x->tenant, y->tenant, Min(x->tenant_len, y->tenant_len));
	if (r != 0)
		return r;
	return (x->tenant_len > y->tenant_len) - (x->tenant_len < y->tenant_len);
}

#define CV_Q_GATHER \
	"SELECT r.tenant, r.rows_checked, r.ok, r.first_bad_seq, r.reason" \
	"  FROM (SELECT envault.verify_chain_json(tableoid::pg_catalog.regclass," \
	"                 %s::pg_catalog.text, $2, $3, $4) AS j" \
	"          FROM %s%s GROUP BY %s, tableoid) x," \
	"       pg_catalog.json_to_recordset(x.j) AS r(tenant pg_catalog.text," \
	"         rows_checked pg_catalog.int8, ok pg_catalog.bool," \
	"         first_bad_seq pg_catalog.int8, reason pg_catalog.text)"

/*
 * verify_chain() of a distributed table, on the Citus coordinator.  Each
 * tenant's chain lives on the shard that holds the tenant and is checked
 * there, by verify_chain_json() of the shard; grouping by the tenant
 * column, the distribution column, sends one query to each shard, all in
 * parallel and in this transaction.  The checkpoints are the
 * coordinator's: it checks their signatures, and hands the tree heads they
 * signed to the shards, whose walk along the rows must meet each.  A
 * tenant with checkpoints and no rows left has lost them all.  Runs as the
 * caller, whose rights on the table Citus checks on the shards too.
 */
static void
cv_distributed(EnvChain *ch, text *tenant, ReturnSetInfo *rsinfo)
{
	char	   *col;
	char	   *qualified;
	char	   *where;
	EnvChainTenant want;
	CvChain    *c;
	ListCell   *lc;
	Oid			types[4] = {TEXTOID, TEXTARRAYOID, INT8ARRAYOID, BYTEAARRAYOID};
	Datum		values[4];
	Datum	   *tenants;
	Datum	   *sizes;
	Datum	   *roots;
	int			n = 0;
	int			max = 16;
	MemoryContext cxt = CurrentMemoryContext;
	uint64		i;
	int			level;

	env_chain_sql_names(ch, &qualified, &col);
	(void) env_chain_tenant_arg(ch, tenant, &want);
	c = cv_load(ch, tenant ? want.text : NULL, want.len, NULL);

	/* the checkpoints that verify, for the shards; the others are bad */
	tenants = palloc(sizeof(Datum) * max);
	sizes = palloc(sizeof(Datum) * max);
	roots = palloc(sizeof(Datum) * max);
	foreach(lc, c->tenants)
	{
		CvTenant   *t = lfirst(lc);
		int			k;

		for (k = 0; k < t->ncps; k++)
		{
			CvCheckpoint *cp = &t->cps[k];

			if (cp->status != 0)
				cv_bad(t, cp->seq > 0 ? cp->seq : 1, "bad signature");
			else if (!cp->tree || cp->purge != 0 || t->tenant == NULL)
				cv_bad(t, Max(cp->seq, 1), "checkpoint mismatch");
			else
			{
				if (n == max)
				{
					max *= 2;
					tenants = repalloc(tenants, sizeof(Datum) * max);
					sizes = repalloc(sizes, sizeof(Datum) * max);
					roots = repalloc(roots, sizeof(Datum) * max);
				}
				tenants[n] = PointerGetDatum(cstring_to_text_with_len(t->tenant, t->tenant_len));
				sizes[n] = Int64GetDatum(cp->seq);
				roots[n] = PointerGetDatum(cv_bytea(cp->hash));
				n++;
			}
		}
	}
	values[0] = PointerGetDatum(tenant);
	values[1] = PointerGetDatum(construct_array(tenants, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(sizes, n, INT8OID, 8, FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	values[3] = PointerGetDatum(construct_array(roots, n, BYTEAOID, -1, false, TYPALIGN_INT));
	where = tenant == NULL ? "" :
		psprintf(" WHERE %s OPERATOR(pg_catalog.=) $1::%s", col,
				 format_type_be_qualified(ch->tenant_typid));

	level = env_caller_spi_begin();
	/* ($1 is the tenant, or a NULL nothing refers to) */
	if (SPI_execute_with_args(psprintf(CV_Q_GATHER, col, qualified, where, col),
							  4, types, values, tenant ? NULL : "n   ", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not gather verify_chain() from the shards of %s", ch->identity);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		text	   *tt = DatumGetTextPP(SPI_getbinval(tup, td, 1, &isnull));
		MemoryContext old = MemoryContextSwitchTo(cxt);
		CvTenant   *t = cv_add(c, VARDATA_ANY(tt), VARSIZE_ANY_EXHDR(tt), false);
		Datum		d;

		t->seen = true;
		t->rows = DatumGetInt64(SPI_getbinval(tup, td, 2, &isnull));
		if (!DatumGetBool(SPI_getbinval(tup, td, 3, &isnull)))
		{
			int64		bad = DatumGetInt64(SPI_getbinval(tup, td, 4, &isnull));

			d = SPI_getbinval(tup, td, 5, &isnull);
			cv_bad(t, bad, isnull ? "hash mismatch" : text_to_cstring(DatumGetTextPP(d)));
		}
		MemoryContextSwitchTo(old);
	}
	env_caller_spi_end(level);

	foreach(lc, c->tenants)
	{
		CvTenant   *t = lfirst(lc);

		if (!t->seen && t->ncps > 0)
			cv_bad(t, 1, "truncated after checkpoint");
	}
	if (tenant != NULL)
		(void) cv_add(c, want.text, want.len, false);
	cv_emit(c, rsinfo, false, false);
}

/*
 * SQL function: envault.verify_chain(tbl regclass, tenant text)
 *               returns table (tenant text, rows_checked bigint, ok boolean,
 *                              first_bad_seq bigint, reason text)
 *
 * Reads the table in physical order, or, for one tenant of a table with an
 * index on (tenant, envault_seq), just that tenant's rows.
 */
PG_FUNCTION_INFO_V1(envault_verify_chain);
Datum
envault_verify_chain(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EnvChain   *ch = env_chain_arg(fcinfo);
	text	   *tenant = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);

	InitMaterializedSRF(fcinfo, 0);
	if (env_chain_distributed(ch))
		cv_distributed(ch, tenant, rsinfo);
	else
		cv_emit(cv_walk(ch, tenant, NULL), rsinfo, true, ch->sharded);
	return (Datum) 0;
}

/*
 * A scan of a chain's rows: one tenant's through the chain's index on
 * (tenant, envault_seq) when there is one (tenant given), else all rows of
 * the table.  verify_chain() and export_chain() both read rows this way.
 */
typedef struct CvScan
{
	Relation	rel;
	Relation	idx;
	IndexScanDesc iscan;
	TableScanDesc hscan;
	TupleTableSlot *slot;
} CvScan;

static void
cv_scan_begin(CvScan *sc, EnvChain *ch, bool one, bool tenant_null, Datum tenant_value)
{
	memset(sc, 0, sizeof(*sc));
	sc->rel = table_open(ch->relid, AccessShareLock);
	sc->idx = one ? env_chain_index_open(ch) : NULL;
	sc->slot = table_slot_create(sc->rel, NULL);
	if (sc->idx != NULL)
	{
		ScanKeyData key;

		sc->iscan = env_index_beginscan(sc->rel, sc->idx, GetActiveSnapshot(), 1, 0);
		env_chain_tenant_key(ch, &key, tenant_null, tenant_value);
		index_rescan(sc->iscan, &key, 1, NULL, 0);
	}
	else
		sc->hscan = table_beginscan(sc->rel, GetActiveSnapshot(), 0, NULL);
}

/* The next row into sc->slot, or false at the end */
static bool
cv_scan_next(CvScan *sc)
{
	CHECK_FOR_INTERRUPTS();
	return sc->iscan ? index_getnext_slot(sc->iscan, ForwardScanDirection, sc->slot) :
		table_scan_getnextslot(sc->hscan, ForwardScanDirection, sc->slot);
}

static void
cv_scan_end(CvScan *sc)
{
	if (sc->iscan)
		index_endscan(sc->iscan);
	else
		table_endscan(sc->hscan);
	ExecDropSingleTupleTableSlot(sc->slot);
	if (sc->idx)
		index_close(sc->idx, AccessShareLock);
	table_close(sc->rel, AccessShareLock);
}

/*
 * Walk the rows of a chain (one tenant's, through the index if there is
 * one, or all), checking each against what cv_load() found; the caller
 * finishes and reports each tenant.
 */
static CvChain *
cv_walk(EnvChain *ch, text *tenant, const CvInject *inj)
{
	CvChain    *c;
	CvScan		sc;
	bool		one = (tenant != NULL);
	Datum		tenant_value;
	EnvChainTenant want;
	CvTenant   *only = NULL;
	MemoryContext rowcxt;

	tenant_value = env_chain_tenant_arg(ch, tenant, &want);
	c = cv_load(ch, one ? want.text : NULL, want.len, inj);
	if (one)
	{
		only = cv_add(c, want.text, want.len, false);
		if (only->expect == 0)
			cv_start(only);
	}

	cv_scan_begin(&sc, ch, one, false, tenant_value);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "envault verify_chain row",
								   ALLOCSET_DEFAULT_SIZES);
	while (cv_scan_next(&sc))
	{
		EnvChainTenant ct;
		CvTenant   *t;
		MemoryContext old = MemoryContextSwitchTo(rowcxt);

		slot_getallattrs(sc.slot);
		env_chain_tenant(ch, sc.slot->tts_values, sc.slot->tts_isnull, &ct);
		if (one)
			t = (only && cv_is(only, ct.text, ct.len, ct.isnull)) ? only : NULL;
		else
		{
			t = cv_find(c, ct.text, ct.len, ct.isnull);
			if (t == NULL)
			{
				MemoryContextSwitchTo(old);
				t = cv_add(c, ct.text, ct.len, ct.isnull);
				cv_start(t);
				MemoryContextSwitchTo(rowcxt);
			}
		}
		if (t != NULL)
			cv_row(ch, t, sc.slot, &ct);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	cv_scan_end(&sc);

	return c;
}

/*
 * SQL function: envault.verify_chain_json(tbl regclass, tenant text,
 *                                         cp_tenants text[], cp_sizes bigint[],
 *                                         cp_roots bytea[]) returns json
 *
 * verify_chain() of a Citus shard, as one JSON array, for the coordinator
 * (cv_gather): Citus pushes down to the shards only a function that
 * returns a value.  The coordinator's checkpoints of the chain come as
 * tree heads to find along the walk (size and root, per tenant), so that
 * they are checked against the rows themselves, not against a tree stored
 * beside them.
 */
PG_FUNCTION_INFO_V1(envault_verify_chain_json);
Datum
envault_verify_chain_json(PG_FUNCTION_ARGS)
{
	EnvChain   *ch = env_chain_arg(fcinfo);
	CvChain    *c;
	CvInject	inj;
	ListCell   *lc;
	StringInfoData buf;
	bool		first = true;
	int			i;

	if (!ch->sharded)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a Citus shard of an audit chain", get_rel_name(ch->relid)),
				 errhint("Call envault.verify_chain().")));
	memset(&inj, 0, sizeof(inj));
	if (!PG_ARGISNULL(2) && !PG_ARGISNULL(3) && !PG_ARGISNULL(4))
	{
		int			ns;
		int			nr;
		bool	   *snulls;
		bool	   *rnulls;

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), TEXTOID, -1, false, TYPALIGN_INT,
						  &inj.tenants, &inj.tnulls, &inj.n);
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), INT8OID, 8, FLOAT8PASSBYVAL,
						  TYPALIGN_DOUBLE, &inj.sizes, &snulls, &ns);
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(4), BYTEAOID, -1, false, TYPALIGN_INT,
						  &inj.roots, &rnulls, &nr);
		if (ns != inj.n || nr != inj.n)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("cp_tenants, cp_sizes and cp_roots must have as many elements")));
		for (i = 0; i < inj.n; i++)
			if (snulls[i] || rnulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("cp_sizes and cp_roots must not contain nulls")));
	}
	c = cv_walk(ch, PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1), &inj);

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	list_sort(c->tenants, cv_cmp_tenant);
	foreach(lc, c->tenants)
	{
		CvTenant   *t = lfirst(lc);

		cv_finish(t, true);
		appendStringInfoString(&buf, first ? "{\"tenant\":" : ",{\"tenant\":");
		first = false;
		if (t->tenant)
			cv_json_str(&buf, t->tenant, t->tenant_len);
		else
			appendStringInfoString(&buf, "null");
		appendStringInfo(&buf, ",\"rows_checked\":" INT64_FORMAT ",\"ok\":%s,\"first_bad_seq\":",
						 t->rows, t->reason ? "false" : "true");
		if (t->reason)
		{
			appendStringInfo(&buf, INT64_FORMAT ",\"reason\":", t->first_bad);
			escape_json(&buf, t->reason);
		}
		else
			appendStringInfoString(&buf, "null,\"reason\":null");
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/*
 * The result rows, in tenant order; after cv_finish() for each tenant when
 * finish (its rows were walked here).
 */
static void
cv_emit(CvChain *c, ReturnSetInfo *rsinfo, bool finish, bool sharded)
{
	ListCell   *lc;

	list_sort(c->tenants, cv_cmp_tenant);
	foreach(lc, c->tenants)
	{
		CvTenant   *t = lfirst(lc);
		Datum		out[5];
		bool		nulls[5] = {false, false, false, false, false};

		if (finish)
			cv_finish(t, sharded);
		if (t->tenant)
			out[0] = PointerGetDatum(cstring_to_text_with_len(t->tenant, t->tenant_len));
		else
			nulls[0] = true;
		out[1] = Int64GetDatum(t->rows);
		out[2] = BoolGetDatum(t->reason == NULL);
		if (t->reason)
		{
			out[3] = Int64GetDatum(t->first_bad);
			out[4] = CStringGetTextDatum(t->reason);
		}
		else
			nulls[3] = nulls[4] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	}
}

/* --- export ------------------------------------------------------------------ */

static void
cv_json_b64(StringInfo buf, const uint8 *data, size_t len)
{
	char		b64[ENV_BASE64_LEN(ENV_CHAIN_HASH_LEN) + 1];

	Assert(len <= ENV_CHAIN_HASH_LEN);
	(void) env_base64_encode(data, len, b64);
	appendStringInfoChar(buf, '"');
	appendStringInfoString(buf, b64);
	appendStringInfoChar(buf, '"');
}

static void
cv_json_str(StringInfo buf, const char *s, size_t len)
{
	char	   *z = pnstrdup(s, len);

	escape_json(buf, z);
	pfree(z);
}

/* One exported row: its number and its JSON object */
typedef struct CvExportRow
{
	int64		seq;
	char	   *json;
} CvExportRow;

static int
cv_cmp_export(const void *a, const void *b)
{
	int64		x = ((const CvExportRow *) a)->seq;
	int64		y = ((const CvExportRow *) b)->seq;

	return (x > y) - (x < y);
}

/* A row of the chain as the export writes it, in the caller's context */
static char *
cv_export_row(EnvChain *ch, TupleTableSlot *slot, TimestampTz at, int64 seq)
{
	StringInfoData buf;
	char		atbuf[ENV_CANON_BUFLEN];
	uint8		h[ENV_CHAIN_HASH_LEN];
	int			level = 0;
	int			i;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"seq\": " INT64_FORMAT ", \"at\": ", seq);
	(void) env_canon_timestamp(at, true, atbuf);
	escape_json(&buf, atbuf);
	appendStringInfoString(&buf, ", \"prev\": ");
	if (cv_bytea_hash(slot->tts_values[ch->prev_attnum - 1],
					  slot->tts_isnull[ch->prev_attnum - 1], h))
		cv_json_b64(&buf, h, ENV_CHAIN_HASH_LEN);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"hash\": ");
	if (cv_bytea_hash(slot->tts_values[ch->hash_attnum - 1],
					  slot->tts_isnull[ch->hash_attnum - 1], h))
		cv_json_b64(&buf, h, ENV_CHAIN_HASH_LEN);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"values\": [");
	if (ch->pinned)
		level = env_canon_pin();
	for (i = 0; i < ch->ncols; i++)
	{
		EnvChainCol *c = &ch->cols[i];
		char		vbuf[ENV_CANON_BUFLEN];
		size_t		vlen;
		const char *v;

		if (i > 0)
			appendStringInfoString(&buf, ", ");
		if (slot->tts_isnull[c->attnum - 1])
		{
			appendStringInfoString(&buf, "null");
			continue;
		}
		v = env_canon_text(&c->canon, slot->tts_values[c->attnum - 1], vbuf, &vlen);
		cv_json_str(&buf, v, vlen);
	}
	if (ch->pinned)
		env_canon_unpin(level);
	appendStringInfoString(&buf, "]}");
	return buf.data;
}

/*
 * The export's tree_frontier: the frontier of the Merkle tree of the rows
 * before the first one exported (null when that is row 1, or when the
 * stored tree does not reach it), from which a verifier outside computes
 * the tree heads that checkpoints sign.
 */
static void
cv_export_frontier(StringInfo buf, EnvChain *ch, const EnvChainTenant *want,
				   int64 first)
{
	EnvMerkleFrontier f;
	uint8		raw[8 + ENV_MERKLE_MAX_LEVELS * ENV_MERKLE_HASH_LEN];
	char		b64[ENV_BASE64_LEN(sizeof(raw)) + 1];
	size_t		n;

	if (first <= 1 || !env_schema_has("chain_trees", NULL) ||
		!env_chain_tree_frontier(ch, want ? cstring_to_text_with_len(want->text, want->len) : NULL,
								 first - 1, &f))
	{
		appendStringInfoString(buf, "null");
		return;
	}
	env_merkle_frontier_put(&f, raw);
	n = env_base64_encode(raw, env_merkle_frontier_len(&f), b64);
	appendStringInfoChar(buf, '"');
	appendBinaryStringInfo(buf, b64, (int) n);
	appendStringInfoChar(buf, '"');
}

/* What export_chain exports: one tenant's rows (or the tenant-less ones) */
typedef struct CvExportWant
{
	bool		tenant_null;
	Datum		tenant_value;
	EnvChainTenant tenant;
	bool		has_since;
	bool		has_until;
	TimestampTz since;
	TimestampTz until;
} CvExportWant;

/*
 * The rows export_chain exports, in the order of envault_seq, each as its
 * JSON text, through the tenant's index if there is one.  Each row is read
 * in a context of its own, reset after it: only the JSON is kept.
 */
static CvExportRow *
cv_export_collect(EnvChain *ch, const CvExportWant *w, int64 *nrows_out)
{
	CvScan		sc;
	CvExportRow *rows = NULL;
	int64		nrows = 0;
	int64		maxrows = 0;
	MemoryContext rowcxt;
	MemoryContext outcxt = CurrentMemoryContext;

	cv_scan_begin(&sc, ch, true, w->tenant_null, w->tenant_value);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "envault export_chain row",
								   ALLOCSET_DEFAULT_SIZES);
	while (cv_scan_next(&sc))
	{
		TupleTableSlot *slot = sc.slot;
		MemoryContext old;
		bool		isnull;
		TimestampTz at;
		int64		seq;
		EnvChainTenant ct;
		char	   *json;

		at = DatumGetTimestampTz(slot_getattr(slot, ch->at_attnum, &isnull));
		if ((w->has_since && at < w->since) || (w->has_until && at >= w->until))
			continue;
		old = MemoryContextSwitchTo(rowcxt);
		slot_getallattrs(slot);
		env_chain_tenant(ch, slot->tts_values, slot->tts_isnull, &ct);
		if (!(ct.isnull ? w->tenant_null :
			  (!w->tenant_null && ct.len == w->tenant.len &&
			   memcmp(ct.text, w->tenant.text, ct.len) == 0)))
		{
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
			continue;
		}
		seq = DatumGetInt64(slot->tts_values[ch->seq_attnum - 1]);
		json = cv_export_row(ch, slot, at, seq);
		MemoryContextSwitchTo(outcxt);
		if (nrows == maxrows)
		{
			maxrows = maxrows ? maxrows * 2 : 256;
			rows = rows ? repalloc_huge(rows, sizeof(CvExportRow) * maxrows) :
				MemoryContextAllocHuge(outcxt, sizeof(CvExportRow) * maxrows);
		}
		rows[nrows].seq = seq;
		rows[nrows].json = pstrdup(json);
		nrows++;
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	/* rows come in sequence order through the index, else in any order */
	if (sc.iscan == NULL && nrows > 1)
		qsort(rows, nrows, sizeof(CvExportRow), cv_cmp_export);
	cv_scan_end(&sc);
	*nrows_out = nrows;
	return rows;
}

/* The export's fields before its rows: format, database, chain, tenant, columns */
static void
cv_export_head(StringInfo buf, EnvChain *ch, const CvExportWant *w,
			   const char *dbname)
{
	int			i;

	appendStringInfoString(buf, "{\"format\": \"envault-chain-export-v2\", \"database\": ");
	escape_json(buf, dbname);
	appendStringInfoString(buf, ", \"chain\": ");
	escape_json(buf, ch->identity);
	appendStringInfoString(buf, ", \"tenant\": ");
	if (w->tenant_null)
		appendStringInfoString(buf, "null");
	else
		cv_json_str(buf, w->tenant.text, w->tenant.len);
	appendStringInfoString(buf, ", \"columns\": [");
	for (i = 0; i < ch->ncols; i++)
	{
		if (i > 0)
			appendStringInfoString(buf, ", ");
		appendStringInfoChar(buf, '[');
		escape_json(buf, ch->cols[i].name);
		appendStringInfoString(buf, ", ");
		escape_json(buf, ch->cols[i].type);
		appendStringInfoChar(buf, ']');
	}
}

/*
 * The checkpoints that sign exported rows (first to last), and, when the
 * export runs to the end of the chain, every later one too: rows they sign
 * that are not there were truncated.  A checkpoint that does not even parse
 * is always included, so that a verifier outside finds it as verify_chain
 * does.
 */
static void
cv_export_checkpoints(StringInfo buf, CvTenant *t, const CvExportWant *w,
					  int64 nrows, int64 first, int64 last)
{
	bool		any_cp = false;
	int			i;

	for (i = 0; t != NULL && i < t->ncps; i++)
	{
		CvCheckpoint *cp = &t->cps[i];

		if (cp->status != 1 &&
			(cp->seq < first || (w->has_until && (nrows == 0 || cp->seq > last))))
			continue;
		if (any_cp)
			appendStringInfoString(buf, ",");
		appendStringInfoString(buf, "\n  ");
		escape_json(buf, cp->note);
		any_cp = true;
	}
}

/*
 * SQL function: envault.export_chain(tbl regclass, tenant text,
 *                                    since timestamptz, until timestamptz)
 *               returns json
 *
 * The rows of one tenant's chain with envault_at in [since, until), with
 * their chain fields and canonical column values, and the checkpoints that
 * sign rows among them; the shape is in docs/audit-chain.md.
 */
PG_FUNCTION_INFO_V1(envault_export_chain);
Datum
envault_export_chain(PG_FUNCTION_ARGS)
{
	EnvChain   *ch;
	CvChain    *c;
	CvTenant   *t;
	CvExportWant w;
	StringInfoData buf;
	CvExportRow *rows;
	int64		nrows;
	int64		first = 0;
	int64		last = 0;
	const char *dbname;
	int64		r;

	env_arg_not_null(fcinfo, 0, "tbl");
	w.tenant_null = PG_ARGISNULL(1);
	w.has_since = !PG_ARGISNULL(2);
	w.has_until = !PG_ARGISNULL(3);
	w.since = w.has_since ? PG_GETARG_TIMESTAMPTZ(2) : 0;
	w.until = w.has_until ? PG_GETARG_TIMESTAMPTZ(3) : 0;
	env_chain_check_access(PG_GETARG_OID(0), false);
	ch = env_chain_require(PG_GETARG_OID(0));
	env_chain_refuse_distributed(ch, "export_chain()");
	w.tenant_value = env_chain_tenant_arg(ch, w.tenant_null ? NULL : PG_GETARG_TEXT_PP(1),
										  &w.tenant);
	if (GetDatabaseEncoding() != PG_UTF8)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("export_chain needs a database with encoding UTF8"),
				 errdetail("Row hashes cover values in the database encoding, and the export is JSON text.")));
	dbname = env_database_id();
	c = cv_load(ch, w.tenant_null ? NULL : w.tenant.text, w.tenant.len, NULL);
	t = cv_find(c, w.tenant.text, w.tenant.len, w.tenant_null);

	rows = cv_export_collect(ch, &w, &nrows);
	if (nrows > 0)
	{
		first = rows[0].seq;
		last = rows[nrows - 1].seq;
	}

	initStringInfo(&buf);
	cv_export_head(&buf, ch, &w, dbname);
	appendStringInfoString(&buf, "], \"rows\": [");
	for (r = 0; r < nrows; r++)
	{
		appendStringInfoString(&buf, r > 0 ? ",\n  " : "\n  ");
		appendStringInfoString(&buf, rows[r].json);
	}

	/* with no rows after since, "later" checkpoints are after the head */
	if (nrows == 0)
		first = (w.has_since && t != NULL && t->has_head) ? t->head_seq + 1 : 0;
	appendStringInfoString(&buf, "\n], \"tree_frontier\": ");
	cv_export_frontier(&buf, ch, w.tenant_null ? NULL : &w.tenant, first);
	appendStringInfoString(&buf, ", \"checkpoints\": [");
	cv_export_checkpoints(&buf, t, &w, nrows, first, last);
	appendStringInfoString(&buf, "\n]}\n");
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
