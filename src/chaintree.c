/*-------------------------------------------------------------------------
 *
 * chaintree.c
 *		The Merkle tree of each tenant's chain (RFC 6962 / RFC 9162; see
 *		merkle.h): its head at any size, inclusion and consistency proofs.
 *
 * The leaves are the rows' hashes in sequence order.  Nothing is added to a
 * chained insert: the tree is brought up to date when it is asked for,
 * from the rows added since, and keeps two things in envault's tables:
 *	- envault.chain_trees: per chain and tenant, the frontier of the tree
 *	  built so far (its size and the roots of its perfect subtrees);
 *	- envault.chain_nodes: the root of every perfect subtree of 256 leaves
 *	  or more (level 8 and up) that building completed, about one row per
 *	  128 rows of the chain.
 * A proof then reads O(log n) stored roots and at most two blocks of 255
 * rows, through the (tenant column, envault_seq) index that verify_chain
 * and export_chain use too (without it, each block costs a scan of the
 * table).  Rows are never changed, so what is stored stays valid; a
 * purge keeps it, and the tree of a purged chain keeps its heads and its
 * proofs above the anchor.
 *
 * Building is serialized per chain and tenant by an advisory lock, and
 * writes in the caller's transaction: a rollback takes it back.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "chaintree.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "merkle.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#define CT_STORE_LEVEL	8
#define CT_BLOCK		((int64) 1 << CT_STORE_LEVEL)
#define CT_LOCK_FIELD4	0x4557	/* advisory locks of tree building */

/* One tenant's tree while a call works on it */
typedef struct CtTree
{
	EnvChain   *ch;
	EnvChainTenant t;
	Datum		tenant_value;
	int64		head;			/* rows the chain has, as the caller sees it */
	EnvMerkleFrontier f;		/* the tree as stored */
	List	   *new_nodes;		/* completed while building: CtNode */
	Snapshot	snap;			/* what the call reads */
	int64		block;			/* leaves of this block are in leaves[] */
	int			nleaves;
	bool		have[CT_BLOCK];
	uint8		leaves[CT_BLOCK][ENV_MERKLE_HASH_LEN];	/* (last: not cleared) */
} CtTree;

typedef struct CtNode
{
	int			level;
	int64		index;
	uint8		hash[ENV_MERKLE_HASH_LEN];
} CtNode;

/* A row's number and hash */
typedef struct CtRow
{
	int64		seq;
	uint8		hash[ENV_CHAIN_HASH_LEN];
} CtRow;

static bytea *ct_bytea(const uint8 *hash);
static bool ct_routed_prove(EnvChain *ch, text *tenant, int64 size, uint8 *root,
							int64 old_size, bool old_tree,
							uint8 (*proof)[ENV_MERKLE_HASH_LEN], int *nproof);

static int
ct_cmp_rows(const void *a, const void *b)
{
	int64		x = ((const CtRow *) a)->seq;
	int64		y = ((const CtRow *) b)->seq;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * The tenant's rows numbered from..to, in order, as the statement's snapshot
 * sees them; *n their number.  Through the (tenant, envault_seq) index when
 * there is one.
 */
static CtRow *
ct_read_rows(CtTree *tr, int64 from, int64 to, int64 *n)
{
	EnvChain   *ch = tr->ch;
	Relation	rel = table_open(ch->relid, AccessShareLock);
	Relation	idx = env_chain_index_open(ch);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc iscan = NULL;
	TableScanDesc hscan = NULL;
	int64		cap = Max(Min(to - from + 1, 1024), 1);
	CtRow	   *rows = palloc(sizeof(CtRow) * cap);
	MemoryContext rowcxt = AllocSetContextCreate(CurrentMemoryContext,
												 "envault chain tree row",
												 ALLOCSET_SMALL_SIZES);
	EnvOwner	owner;

	/*
	 * The caller runs as envault's owner (env_spi_begin): the scan, with the
	 * index's equality function and the types' output functions, runs as the
	 * table's owner in a security-restricted operation instead.
	 */
	env_owner_begin(&owner, ch->relid, true);
	*n = 0;
	if (idx != NULL)
	{
		ScanKeyData key[3];

		iscan = env_index_beginscan(rel, idx, tr->snap, 3, 0);
		env_chain_tenant_key(ch, &key[0], tr->t.isnull, tr->tenant_value);
		ScanKeyInit(&key[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE,
					Int64GetDatum(from));
		ScanKeyInit(&key[2], 2, BTLessEqualStrategyNumber, F_INT8LE,
					Int64GetDatum(to));
		index_rescan(iscan, key, 3, NULL, 0);
	}
	else
		hscan = table_beginscan(rel, tr->snap, 0, NULL);
	for (;;)
	{
		MemoryContext old;
		bool		isnull;
		int64		seq;
		Datum		hd;
		EnvChainTenant ct;

		if (iscan ? !index_getnext_slot(iscan, ForwardScanDirection, slot) :
			!table_scan_getnextslot(hscan, ForwardScanDirection, slot))
			break;
		CHECK_FOR_INTERRUPTS();
		seq = DatumGetInt64(slot_getattr(slot, ch->seq_attnum, &isnull));
		if (isnull || seq < from || seq > to)
			continue;
		old = MemoryContextSwitchTo(rowcxt);
		if (hscan != NULL)
		{
			slot_getallattrs(slot);
			env_chain_tenant(ch, slot->tts_values, slot->tts_isnull, &ct);
			if (!(ct.isnull ? tr->t.isnull :
				  (!tr->t.isnull && ct.len == tr->t.len &&
				   memcmp(ct.text, tr->t.text, ct.len) == 0)))
			{
				MemoryContextSwitchTo(old);
				MemoryContextReset(rowcxt);
				continue;
			}
		}
		hd = slot_getattr(slot, ch->hash_attnum, &isnull);
		if (isnull || VARSIZE_ANY_EXHDR(DatumGetByteaPP(hd)) != ENV_CHAIN_HASH_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("row " INT64_FORMAT " of audit chain %s has no valid hash",
							seq, ch->identity),
					 errhint("Run envault.verify_chain() to locate the damage.")));
		MemoryContextSwitchTo(old);
		if (*n == cap)
		{
			cap *= 2;
			rows = repalloc_huge(rows, sizeof(CtRow) * cap);
		}
		rows[*n].seq = seq;
		memcpy(rows[*n].hash, VARDATA_ANY(DatumGetByteaPP(hd)), ENV_CHAIN_HASH_LEN);
		(*n)++;
		MemoryContextReset(rowcxt);
	}
	if (iscan)
		index_endscan(iscan);
	else
		table_endscan(hscan);
	ExecDropSingleTupleTableSlot(slot);
	if (idx)
		index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	env_owner_end(&owner);
	MemoryContextDelete(rowcxt);
	if (hscan != NULL && *n > 1)
		qsort(rows, *n, sizeof(CtRow), ct_cmp_rows);
	return rows;
}

/* The rows from..to, each exactly once, or an error naming the first gap */
static CtRow *
ct_rows(CtTree *tr, int64 from, int64 to)
{
	int64		n;
	CtRow	   *rows = ct_read_rows(tr, from, to, &n);
	int64		i;

	for (i = 0; i < to - from + 1; i++)
		if (i >= n || rows[i].seq != from + i)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("row " INT64_FORMAT " of audit chain %s, tenant %s, is %s",
							from + i, tr->ch->identity,
							tr->t.isnull ? "NULL" : quote_literal_cstr(pnstrdup(tr->t.text, tr->t.len)),
							i < n && rows[i].seq < from + i ? "there twice" : "missing"),
					 errdetail("The Merkle tree is built from every row in order; a purged chain has no rows before its anchor."),
					 errhint("Run envault.verify_chain() to locate the damage.")));
	if (n > to - from + 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("row " INT64_FORMAT " of audit chain %s is there twice",
						rows[to - from + 1].seq, tr->ch->identity),
				 errhint("Run envault.verify_chain() to locate the damage.")));
	return rows;
}

/*
 * The head, tree and node of a tenant: "IS NOT DISTINCT FROM" would not
 * use the indexes on (chain_id, tenant, ...), so each query has a form for
 * a tenant and one for the chain without tenant ([1]).
 */
#define CT_Q_HEAD(nul) \
	(nul ? CT_Q_HEAD_(" AND tenant IS NULL AND $2::pg_catalog.text IS NULL") : \
	 CT_Q_HEAD_(" AND tenant OPERATOR(pg_catalog.=) $2"))
#define CT_Q_HEAD_(t) \
	"SELECT seq FROM envault.chain_heads WHERE chain_id OPERATOR(pg_catalog.=) $1" t
#define CT_Q_TREE(nul) \
	(nul ? CT_Q_TREE_(" AND tenant IS NULL AND $2::pg_catalog.text IS NULL") : \
	 CT_Q_TREE_(" AND tenant OPERATOR(pg_catalog.=) $2"))
#define CT_Q_TREE_(t) \
	"SELECT frontier FROM envault.chain_trees WHERE chain_id OPERATOR(pg_catalog.=) $1" t
#define CT_Q_NODE(nul) \
	(nul ? CT_Q_NODE_(" AND tenant IS NULL AND $2::pg_catalog.text IS NULL") : \
	 CT_Q_NODE_(" AND tenant OPERATOR(pg_catalog.=) $2"))
#define CT_Q_NODE_(t) \
	"SELECT hash FROM envault.chain_nodes WHERE chain_id OPERATOR(pg_catalog.=) $1" t \
	"   AND level OPERATOR(pg_catalog.=) $3 AND idx OPERATOR(pg_catalog.=) $4"
#define CT_Q_PUT_NODES \
	"INSERT INTO envault.chain_nodes (chain_id, tenant, level, idx, hash)" \
	" SELECT $1, $2, l, i, h" \
	"   FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.int2[])," \
	"                   pg_catalog.unnest($4::pg_catalog.int8[])," \
	"                   pg_catalog.unnest($5::pg_catalog.bytea[])) AS n (l, i, h)" \
	" ON CONFLICT DO NOTHING"
#define CT_Q_PUT_TREE \
	"INSERT INTO envault.chain_trees (chain_id, tenant, size, frontier)" \
	" VALUES ($1, $2, $3, $4)" \
	" ON CONFLICT (chain_id, tenant) DO UPDATE" \
	" SET size = EXCLUDED.size, frontier = EXCLUDED.frontier"

/*
 * A read-only query with a given snapshot.  Its plan is kept for the life
 * of the backend (a proof runs the node query some twenty times).
 */
static void
ct_query(const char *sql, int nargs, Oid *types, Datum *values, char *nulls,
		 Snapshot snap)
{
	static const char *sqls[6];
	static SPIPlanPtr plans[6];
	SPIPlanPtr	plan = NULL;
	int			i;

	for (i = 0; i < (int) lengthof(sqls) && sqls[i] != NULL; i++)
		if (sqls[i] == sql)
			plan = plans[i];
	if (plan == NULL)
	{
		plan = SPI_prepare(sql, nargs, types);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare a query of Merkle trees: %s",
				 SPI_result_code_string(SPI_result));
		if (i < (int) lengthof(sqls))
		{
			sqls[i] = sql;
			plans[i] = plan;
		}
	}
	if (SPI_execute_snapshot(plan, values, nulls, snap, InvalidSnapshot,
							 true, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the Merkle tree of an audit chain: %s",
			 SPI_result_code_string(SPI_result));
}

/* $1, $2 of the queries above */
static void
ct_key(CtTree *tr, Datum *values, char *nulls)
{
	values[0] = Int32GetDatum(tr->ch->chain_id);
	if (tr->t.isnull)
		nulls[1] = 'n';
	else
	{
		nulls[1] = ' ';
		values[1] = PointerGetDatum(cstring_to_text_with_len(tr->t.text, tr->t.len));
	}
}

static bool
ct_completed(void *arg, int level, uint64 index, const uint8 *hash)
{
	CtTree	   *tr = arg;
	CtNode	   *n;

	if (level < CT_STORE_LEVEL)
		return true;
	n = palloc(sizeof(CtNode));
	n->level = level;
	n->index = (int64) index;
	memcpy(n->hash, hash, ENV_MERKLE_HASH_LEN);
	tr->new_nodes = lappend(tr->new_nodes, n);
	return true;
}

static void
ct_store_nodes(CtTree *tr)
{
	int			n = list_length(tr->new_nodes);
	Datum	   *lv;
	Datum	   *iv;
	Datum	   *hv;
	ListCell   *lc;
	int			i = 0;
	Oid			types[5] = {INT4OID, TEXTOID, INT2ARRAYOID, INT8ARRAYOID, BYTEAARRAYOID};
	Datum		values[5];
	char		nulls[5 + 1] = "     ";

	if (n == 0)
		return;
	lv = palloc(sizeof(Datum) * n);
	iv = palloc(sizeof(Datum) * n);
	hv = palloc(sizeof(Datum) * n);
	foreach(lc, tr->new_nodes)
	{
		CtNode	   *node = lfirst(lc);

		lv[i] = Int16GetDatum((int16) node->level);
		iv[i] = Int64GetDatum(node->index);
		hv[i] = PointerGetDatum(ct_bytea(node->hash));
		i++;
	}
	ct_key(tr, values, nulls);
	values[2] = PointerGetDatum(construct_array(lv, n, INT2OID, 2, true, TYPALIGN_SHORT));
	values[3] = PointerGetDatum(construct_array(iv, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[4] = PointerGetDatum(construct_array(hv, n, BYTEAOID, -1, false, TYPALIGN_INT));
	if (SPI_execute_with_args(CT_Q_PUT_NODES, 5, types, values, nulls, false, 0)
		!= SPI_OK_INSERT)
		elog(ERROR, "could not store Merkle tree nodes");
	list_free_deep(tr->new_nodes);
	tr->new_nodes = NIL;
}

/*
 * Open a tenant's tree and bring it up to the chain's head as this
 * statement sees it.  Runs inside env_spi_begin().
 */
static void
ct_open(CtTree *tr, EnvChain *ch, text *tenant_arg, bool build)
{
	Oid			types[4] = {INT4OID, TEXTOID, INT8OID, BYTEAOID};
	Datum		values[4];
	char		nulls[4 + 1] = "    ";
	bool		isnull;
	LOCKTAG		tag;
	uint64		lock_key;
	CtRow	   *rows;
	int64		i;
	int64		count;

	memset(tr, 0, offsetof(CtTree, leaves));
	tr->ch = ch;
	tr->block = -1;
	tr->tenant_value = env_chain_tenant_arg(ch, tenant_arg, &tr->t);
	env_merkle_frontier_init(&tr->f);

	/* one builder per chain and tenant at a time */
	if (build)
	{
		lock_key = hash_bytes_extended((const unsigned char *) (tr->t.text ? tr->t.text : ""),
									   (int) tr->t.len,
									   ((uint64) (uint32) ch->chain_id << 1) | (tr->t.isnull ? 1 : 0));
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (lock_key >> 32),
							 (uint32) lock_key, CT_LOCK_FIELD4);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
	}

	/*
	 * What earlier calls in this statement stored, and the rows and head
	 * committed by now: one new snapshot for both (the lock is held, so no
	 * one else changes the tree meanwhile)
	 */
	CommandCounterIncrement();
	tr->snap = RegisterSnapshot(GetLatestSnapshot());
	ct_key(tr, values, nulls);
	if (ch->sharded)
	{
		/* a shard's head is the tenant's newest row */
		uint8		hash[ENV_CHAIN_HASH_LEN];

		tr->head = env_chain_tail(ch, tr->tenant_value, tr->t.isnull, tr->snap, hash);
	}
	else
	{
		ct_query(CT_Q_HEAD(tr->t.isnull), 2, types, values, nulls, tr->snap);
		tr->head = SPI_processed == 0 ? 0 :
			DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	ct_query(CT_Q_TREE(tr->t.isnull), 2, types, values, nulls, tr->snap);
	if (SPI_processed > 0)
	{
		bytea	   *b = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));

		if (isnull ||
			!env_merkle_frontier_get(&tr->f, (const uint8 *) VARDATA_ANY(b),
									 VARSIZE_ANY_EXHDR(b)) ||
			(int64) tr->f.size > tr->head)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the stored Merkle tree of audit chain %s, tenant %s, is damaged",
							ch->identity, tr->t.isnull ? "NULL" :
							quote_literal_cstr(pnstrdup(tr->t.text, tr->t.len)))));
	}
	if ((int64) tr->f.size >= tr->head || !build)
		return;

	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("the Merkle tree of audit chain %s is behind its rows, and this transaction cannot store it",
						ch->identity),
				 errhint("Call a proof function once on the primary, outside a read-only transaction; the stored tree then reaches standbys.")));
	count = tr->head - (int64) tr->f.size;
	rows = ct_rows(tr, (int64) tr->f.size + 1, tr->head);
	for (i = 0; i < count; i++)
		if (!env_merkle_append(&tr->f, rows[i].hash, ct_completed, tr))
			elog(ERROR, "could not extend a Merkle tree");
	pfree(rows);
	ct_store_nodes(tr);
	{
		bytea	   *b = palloc(VARHDRSZ + env_merkle_frontier_len(&tr->f));

		SET_VARSIZE(b, VARHDRSZ + env_merkle_frontier_len(&tr->f));
		env_merkle_frontier_put(&tr->f, (uint8 *) VARDATA(b));
		values[2] = Int64GetDatum((int64) tr->f.size);
		values[3] = PointerGetDatum(b);
		if (SPI_execute_with_args(CT_Q_PUT_TREE, 4, types, values, nulls, false, 0)
			!= SPI_OK_INSERT)
			elog(ERROR, "could not store the Merkle tree of an audit chain");
	}
	/* proofs read the nodes just stored */
	CommandCounterIncrement();
	UnregisterSnapshot(tr->snap);
	tr->snap = RegisterSnapshot(GetLatestSnapshot());
}

/* The end of a call: the snapshot goes, and SPI */
static void
ct_close(CtTree *tr, EnvSpi *s)
{
	UnregisterSnapshot(tr->snap);
	env_spi_end(s);
}

/*
 * The leaf hashes of one block of 256 rows (or of the rows it has so far);
 * have[] tells which rows are there (a purge deletes rows before its
 * anchor).
 */
static void
ct_load_block(CtTree *tr, int64 block)
{
	int64		from = block * CT_BLOCK + 1;
	int64		to = Min(from + CT_BLOCK - 1, (int64) tr->f.size);
	int64		n;
	CtRow	   *rows = ct_read_rows(tr, from, to, &n);
	int64		i;

	memset(tr->have, 0, sizeof(tr->have));
	for (i = 0; i < n; i++)
	{
		int			k = (int) (rows[i].seq - from);

		if (tr->have[k])
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("row " INT64_FORMAT " of audit chain %s is there twice",
							rows[i].seq, tr->ch->identity),
					 errhint("Run envault.verify_chain() to locate the damage.")));
		if (!env_merkle_leaf(rows[i].hash, tr->leaves[k]))
			elog(ERROR, "could not hash a Merkle tree leaf");
		tr->have[k] = true;
	}
	tr->nleaves = (int) (to - from + 1);
	tr->block = block;
	pfree(rows);
}

/* A stored subtree root, or false */
static bool
ct_stored(CtTree *tr, int level, uint64 index, uint8 *out)
{
	Oid			types[4] = {INT4OID, TEXTOID, INT2OID, INT8OID};
	Datum		values[4];
	char		nulls[4 + 1] = "    ";
	bool		isnull;
	bytea	   *b;

	ct_key(tr, values, nulls);
	values[2] = Int16GetDatum((int16) level);
	values[3] = Int64GetDatum((int64) index);
	ct_query(CT_Q_NODE(tr->t.isnull), 4, types, values, nulls, tr->snap);
	if (SPI_processed == 0)
		return false;
	b = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull || VARSIZE_ANY_EXHDR(b) != ENV_MERKLE_HASH_LEN)
		return false;
	memcpy(out, VARDATA_ANY(b), ENV_MERKLE_HASH_LEN);
	return true;
}

/*
 * EnvMerkleSubtree: stored at level 8 and up; below, hashed from the rows,
 * or, where a purge deleted some of them, from the roots it stored first.
 */
static bool
ct_subtree(void *arg, int level, uint64 index, uint8 *out)
{
	CtTree	   *tr = arg;
	int64		first = (int64) (index << level);
	int64		block = first / CT_BLOCK;
	int			count = 1 << level;
	int			off = (int) (first - block * CT_BLOCK);
	uint8		work[CT_BLOCK][ENV_MERKLE_HASH_LEN];
	uint8		right[ENV_MERKLE_HASH_LEN];
	int			i;

	if (level >= CT_STORE_LEVEL)
		return ct_stored(tr, level, index, out);
	if (block != tr->block)
		ct_load_block(tr, block);
	if (off + count > tr->nleaves)
		return false;
	for (i = 0; i < count; i++)
		if (!tr->have[off + i])
			break;
	if (i < count)
	{
		/* rows purged: a stored root, or its two halves */
		if (ct_stored(tr, level, index, out))
			return true;
		if (level == 0 ||
			!ct_subtree(tr, level - 1, 2 * index, work[0]) ||
			!ct_subtree(tr, level - 1, 2 * index + 1, right))
			return false;
		return env_merkle_node(work[0], right, out);
	}
	memcpy(work, tr->leaves[off], (size_t) count * ENV_MERKLE_HASH_LEN);
	for (; count > 1; count /= 2)
		for (i = 0; i < count / 2; i++)
			if (!env_merkle_node(work[2 * i], work[2 * i + 1], work[i]))
				return false;
	memcpy(out, work[0], ENV_MERKLE_HASH_LEN);
	return true;
}

/*
 * Bring a tenant's tree up to its chain's head.  With purged > 0, the rows
 * numbered up to purged are about to be deleted (purge_chain): the roots
 * that cover them in their last, partly kept block of 256 rows are stored
 * first (the blocks before have their roots stored already), so that the
 * tree keeps its heads, and the proofs that need no deleted row, above the
 * anchor.
 */
void
env_chain_tree_update(EnvChain *ch, text *tenant, int64 purged)
{
	EnvSpi		s;
	CtTree	   *tr = palloc(sizeof(CtTree));
	int64		x;

	env_spi_begin(&s);
	ct_open(tr, ch, tenant, true);
	x = purged / CT_BLOCK * CT_BLOCK;
	while (x < purged)
	{
		int			level = CT_STORE_LEVEL - 1;
		CtNode	   *node;

		while (level > 0 &&
			   (x % ((int64) 1 << level) != 0 || x + ((int64) 1 << level) > purged))
			level--;
		node = palloc(sizeof(CtNode));
		node->level = level;
		node->index = x >> level;
		if (!ct_subtree(tr, level, (uint64) node->index, node->hash))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("rows before " INT64_FORMAT " of audit chain %s are missing",
							purged + 1, ch->identity),
					 errhint("Run envault.verify_chain() to locate the damage.")));
		tr->new_nodes = lappend(tr->new_nodes, node);
		x += (int64) 1 << level;
	}
	ct_store_nodes(tr);
	ct_close(tr, &s);
	pfree(tr);
}

/*
 * For checkpoint(): the tree head of the tenant's first size rows, and the
 * proof that what the tenant's last checkpoint signed is part of it: a
 * consistency proof from old_size rows when that checkpoint signed a tree
 * head (old_tree), or the audit path of row old_size when it signed that
 * row's hash (envault 0.2.0).  old_size 0: no proof.  False if the rows
 * needed are gone (the caller says so).
 */
bool
env_chain_tree_prove(EnvChain *ch, text *tenant, int64 size, uint8 *root,
					 int64 old_size, bool old_tree,
					 uint8 (*proof)[ENV_MERKLE_HASH_LEN], int *nproof)
{
	EnvSpi		s;
	CtTree	   *tr = palloc(sizeof(CtTree));
	bool		ok;

	*nproof = 0;
	if (env_chain_distributed(ch))
	{
		pfree(tr);
		return ct_routed_prove(ch, tenant, size, root, old_size, old_tree, proof, nproof);
	}
	env_spi_begin(&s);
	ct_open(tr, ch, tenant, true);
	if (size < 1 || size > (int64) tr->f.size || old_size < 0 || old_size > size)
		elog(ERROR, "tree size " INT64_FORMAT " or " INT64_FORMAT " out of range",
			 size, old_size);
	ok = size == (int64) tr->f.size ? env_merkle_root(&tr->f, root) :
		env_merkle_range_root(0, (uint64) size, ct_subtree, tr, root);
	if (ok && old_size > 0)
		ok = old_tree ?
			env_merkle_consistency_proof((uint64) old_size, (uint64) size,
										 ct_subtree, tr, proof, nproof) :
			env_merkle_inclusion_proof((uint64) (old_size - 1), (uint64) size,
									   ct_subtree, tr, proof, nproof);
	ct_close(tr, &s);
	pfree(tr);
	return ok;
}

/*
 * The frontier of the tenant's tree of size rows, from the tree as stored
 * (nothing is built: verify_chain and export_chain run on standbys too).
 * False if the stored tree does not reach size, or the rows it needs are
 * gone.  A frontier made up here shows when it is used: the tree heads it
 * leads to must match what checkpoints signed.
 */
bool
env_chain_tree_frontier(EnvChain *ch, text *tenant, int64 size,
						EnvMerkleFrontier *out)
{
	EnvSpi		s;
	CtTree	   *tr = palloc(sizeof(CtTree));
	bool		ok;
	int			level;
	uint64		off = 0;

	env_merkle_frontier_init(out);
	env_spi_begin(&s);
	ct_open(tr, ch, tenant, false);
	ok = size >= 0 && size <= (int64) tr->f.size;
	for (level = ENV_MERKLE_MAX_LEVELS - 2; ok && level >= 0; level--)
	{
		if (((uint64) size & ((uint64) 1 << level)) == 0)
			continue;
		ok = ct_subtree(tr, level, off >> level, out->hashes[out->n]);
		out->n++;
		off += (uint64) 1 << level;
	}
	out->size = (uint64) size;
	ct_close(tr, &s);
	pfree(tr);
	return ok;
}

/* A proof or head that needs rows a purge deleted (or that are missing) */
static void
ct_purged(CtTree *tr)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("this needs rows of audit chain %s, tenant %s, that are no longer there",
					tr->ch->identity, tr->t.isnull ? "NULL" :
					quote_literal_cstr(pnstrdup(tr->t.text, tr->t.len))),
			 errdetail("A purge keeps the tree's heads and the proofs of rows after its anchor, not the rows before it."),
			 errhint("Run envault.verify_chain() if the chain was not purged.")));
}

static void
ct_check_size(CtTree *tr, const char *what, int64 size)
{
	if (size < 1 || size > (int64) tr->f.size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s " INT64_FORMAT " is not a tree size of audit chain %s, tenant %s",
						what, size, tr->ch->identity, tr->t.isnull ? "NULL" :
						quote_literal_cstr(pnstrdup(tr->t.text, tr->t.len))),
				 errdetail("The chain has " INT64_FORMAT " rows.", (int64) tr->f.size)));
}

static bytea *
ct_bytea(const uint8 *hash)
{
	bytea	   *b = palloc(VARHDRSZ + ENV_MERKLE_HASH_LEN);

	SET_VARSIZE(b, VARHDRSZ + ENV_MERKLE_HASH_LEN);
	memcpy(VARDATA(b), hash, ENV_MERKLE_HASH_LEN);
	return b;
}

/*
 * The end of a proof function: the proof as bytea[] in the caller's
 * memory, or the error of a proof that needs rows no longer there.
 */
static ArrayType *
ct_proof_result(CtTree *tr, EnvSpi *s, bool ok,
				uint8 (*hashes)[ENV_MERKLE_HASH_LEN], int n)
{
	Datum	   *d;
	int			i;

	if (!ok)
		ct_purged(tr);
	ct_close(tr, s);
	MemoryContextSwitchTo(s->caller_cxt);
	d = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
		d[i] = PointerGetDatum(ct_bytea(hashes[i]));
	return construct_array(d, n, BYTEAOID, -1, false, TYPALIGN_INT);
}

/* --- distributed tables: on the tenant's shard (chainroute.c) ------------- */

static ENV_NORETURN void ct_no_rows(EnvChain *ch) ENV_NORETURN_AFTER;

static void
ct_no_rows(EnvChain *ch)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("audit chain %s has no rows for this tenant", ch->identity)));
}

/* tree_head() of a distributed table: the shard's, through Citus */
static Datum
ct_routed_head(FunctionCallInfo fcinfo, EnvChain *ch, TupleDesc desc)
{
	Oid			types[1] = {INT8OID};
	Datum		values[2];
	bool		nulls[2];
	char		anulls[1] = {PG_ARGISNULL(2) ? 'n' : ' '};
	bool		found;
	int			level;

	values[0] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	level = env_chain_route(ch, PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1),
							"t.tree_size, t.root",
							", LATERAL envault.tree_head(c.tableoid::pg_catalog.regclass, $1, $2) t",
							1, types, values, anulls, &found);
	if (!found)
		ct_no_rows(ch);
	values[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &nulls[0]);
	values[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &nulls[1]);
	values[1] = nulls[1] ? (Datum) 0 : SPI_datumTransfer(values[1], false, -1);
	env_chain_route_end(level);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc),
													  values, nulls)));
}

/* inclusion_proof() or consistency_proof() of a distributed table */
static Datum
ct_routed_proof(FunctionCallInfo fcinfo, EnvChain *ch, const char *fn)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {PG_GETARG_DATUM(2), PG_GETARG_DATUM(3)};
	bool		found;
	bool		isnull;
	Datum		d;
	int			level;

	level = env_chain_route(ch, PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1),
							psprintf("envault.%s(c.tableoid::pg_catalog.regclass, $1, $2, $3)", fn),
							NULL, 2, types, values, NULL, &found);
	if (!found)
		ct_no_rows(ch);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	d = SPI_datumTransfer(d, false, -1);
	env_chain_route_end(level);
	return d;
}

/*
 * env_chain_tree_prove() of a distributed table: the tree head of size
 * rows and the proof from old_size, both from the tenant's shard.
 */
static bool
ct_routed_prove(EnvChain *ch, text *tenant, int64 size, uint8 *root,
				int64 old_size, bool old_tree,
				uint8 (*proof)[ENV_MERKLE_HASH_LEN], int *nproof)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(size), Int64GetDatum(old_size)};
	bool		found;
	bool		isnull;
	bool		pnull;
	bytea	   *b;
	Datum		pd;
	Datum	   *elems;
	int			n;
	int			i;
	int			level;

	level = env_chain_route(ch, tenant,
							psprintf("t.root, CASE WHEN $3 OPERATOR(pg_catalog.>) 0 THEN"
									 " envault.%s(c.tableoid::pg_catalog.regclass, $1, $3, $2) END",
									 old_tree ? "consistency_proof" : "inclusion_proof"),
							", LATERAL envault.tree_head(c.tableoid::pg_catalog.regclass, $1, $2) t",
							2, types, values, NULL, &found);
	if (!found)
		ct_no_rows(ch);
	b = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull || VARSIZE_ANY_EXHDR(b) != ENV_MERKLE_HASH_LEN)
		elog(ERROR, "the shard of audit chain %s returned no tree head", ch->identity);
	memcpy(root, VARDATA_ANY(b), ENV_MERKLE_HASH_LEN);
	*nproof = 0;
	pd = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &pnull);
	if (!pnull)
	{
		deconstruct_array(DatumGetArrayTypeP(pd), BYTEAOID, -1, false, TYPALIGN_INT,
						  &elems, NULL, &n);
		if (n > ENV_MERKLE_MAX_LEVELS)
			elog(ERROR, "the shard of audit chain %s returned a proof too long", ch->identity);
		for (i = 0; i < n; i++)
		{
			b = DatumGetByteaPP(elems[i]);
			if (VARSIZE_ANY_EXHDR(b) != ENV_MERKLE_HASH_LEN)
				elog(ERROR, "the shard of audit chain %s returned a bad proof", ch->identity);
			memcpy(proof[i], VARDATA_ANY(b), ENV_MERKLE_HASH_LEN);
		}
		*nproof = n;
	}
	env_chain_route_end(level);
	return true;
}

/*
 * Common start of the SQL functions: the chain, its tree up to date.
 * Arguments from the third on must not be null; names[] names them.
 */
static CtTree *
ct_begin(FunctionCallInfo fcinfo, EnvSpi *s, const char *const *names, EnvChain **chp)
{
	EnvChain   *ch;
	CtTree	   *tr;
	int			i;

	env_arg_not_null(fcinfo, 0, "tbl");
	for (i = 2; i < PG_NARGS(); i++)
		if (names[i - 2] != NULL)
			env_arg_not_null(fcinfo, i, names[i - 2]);
	env_chain_check_access(PG_GETARG_OID(0), false);
	ch = env_chain_require(PG_GETARG_OID(0));
	*chp = ch;
	if (env_chain_distributed(ch))
		return NULL;			/* the caller asks the tenant's shard */
	tr = palloc(sizeof(CtTree));
	env_spi_begin(s);
	ct_open(tr, ch, PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1), true);
	return tr;
}

/*
 * SQL function: envault.tree_head(tbl regclass, tenant text,
 *                                 size bigint DEFAULT NULL)
 *               returns (tree_size bigint, root bytea)
 *
 * The Merkle tree head of the tenant's chain: of its first size rows, or
 * of all of them.  A chain without rows has none.
 */
PG_FUNCTION_INFO_V1(envault_tree_head);
Datum
envault_tree_head(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {NULL};
	EnvSpi		s;
	EnvChain   *ch;
	CtTree	   *tr = ct_begin(fcinfo, &s, names, &ch);
	int64		size;
	uint8		root[ENV_MERKLE_HASH_LEN];
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	MemoryContext callcxt;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "tree_head must return a row");
	if (tr == NULL)
		return ct_routed_head(fcinfo, ch, desc);
	size = PG_ARGISNULL(2) ? (int64) tr->f.size : PG_GETARG_INT64(2);
	if (PG_ARGISNULL(2) && size == 0)
	{
		ct_close(tr, &s);
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("audit chain %s has no rows for this tenant", tr->ch->identity)));
	}
	ct_check_size(tr, "size", size);
	if (size == (int64) tr->f.size ? !env_merkle_root(&tr->f, root) :
		!env_merkle_range_root(0, (uint64) size, ct_subtree, tr, root))
		ct_purged(tr);
	callcxt = s.caller_cxt;
	ct_close(tr, &s);
	MemoryContextSwitchTo(callcxt);
	values[0] = Int64GetDatum(size);
	values[1] = PointerGetDatum(ct_bytea(root));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc),
													  values, nulls)));
}

/*
 * SQL function: envault.inclusion_proof(tbl regclass, tenant text,
 *                                       seq bigint, tree_size bigint)
 *               returns bytea[]
 *
 * The audit path (RFC 9162, section 2.1.3) proving that row seq is leaf
 * seq - 1 of the tree of tree_size rows.
 */
PG_FUNCTION_INFO_V1(envault_inclusion_proof);
Datum
envault_inclusion_proof(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"seq", "tree_size"};
	EnvSpi		s;
	EnvChain   *ch;
	CtTree	   *tr = ct_begin(fcinfo, &s, names, &ch);
	int64		seq = PG_GETARG_INT64(2);
	int64		size = PG_GETARG_INT64(3);
	uint8		proof[ENV_MERKLE_MAX_LEVELS][ENV_MERKLE_HASH_LEN];
	int			n;
	bool		ok;

	if (tr == NULL)
		PG_RETURN_DATUM(ct_routed_proof(fcinfo, ch, "inclusion_proof"));
	ct_check_size(tr, "tree_size", size);
	if (seq < 1 || seq > size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("row " INT64_FORMAT " is not in a tree of " INT64_FORMAT " rows",
						seq, size)));
	ok = env_merkle_inclusion_proof((uint64) (seq - 1), (uint64) size,
									ct_subtree, tr, proof, &n);
	PG_RETURN_ARRAYTYPE_P(ct_proof_result(tr, &s, ok, proof, n));
}

/*
 * SQL function: envault.consistency_proof(tbl regclass, tenant text,
 *                                         old_size bigint, new_size bigint)
 *               returns bytea[]
 *
 * The proof (RFC 9162, section 2.1.4) that the tree of old_size rows is
 * the start of the tree of new_size rows.
 */
PG_FUNCTION_INFO_V1(envault_consistency_proof);
Datum
envault_consistency_proof(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"old_size", "new_size"};
	EnvSpi		s;
	EnvChain   *ch;
	CtTree	   *tr = ct_begin(fcinfo, &s, names, &ch);
	int64		old_size = PG_GETARG_INT64(2);
	int64		new_size = PG_GETARG_INT64(3);
	uint8		proof[ENV_MERKLE_MAX_LEVELS][ENV_MERKLE_HASH_LEN];
	int			n;
	bool		ok;

	if (tr == NULL)
		PG_RETURN_DATUM(ct_routed_proof(fcinfo, ch, "consistency_proof"));

	ct_check_size(tr, "new_size", new_size);
	if (old_size < 1 || old_size > new_size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("old_size must be between 1 and new_size (" INT64_FORMAT ")",
						new_size)));
	ok = env_merkle_consistency_proof((uint64) old_size, (uint64) new_size,
									  ct_subtree, tr, proof, &n);
	PG_RETURN_ARRAYTYPE_P(ct_proof_result(tr, &s, ok, proof, n));
}
