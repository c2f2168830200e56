/*-------------------------------------------------------------------------
 *
 * chainheads.c
 *		Audit chains: the per-tenant heads, their locks, and the
 *		transaction callbacks that write them back or forget them.
 *
 * Heads.  envault.chain_heads holds, per (chain, tenant), the sequence
 * number and hash of the newest row.  The first insert of a transaction into
 * a tenant's chain takes a heavyweight lock on (chain, tenant), held until
 * the transaction ends, then reads the head with a fresh snapshot: the
 * previous holder of the lock has committed or rolled back by then, so the
 * head is exact.  Later inserts of the transaction advance the head cached
 * here, and an AFTER INSERT FOR EACH STATEMENT trigger writes it back once
 * per statement and tenant, so the chain needs no index of its own and an
 * insert costs one hash, not one more index entry.  Writers of different
 * tenants take different locks and never wait for each other.  On a Citus
 * shard the head is the chain's newest row instead (env_chain_tail()).
 *
 * Chain locks never deadlock with each other: a transaction waits for a
 * chain lock only if its key is greater than the key of every chain lock it
 * already holds.  If it would have to wait for a smaller key, it fails at
 * once with a serialization failure (40001), which the application retries;
 * that can only happen to a transaction that writes several tenants' chains
 * while other transactions write the same ones.
 *
 * Rollback leaves no trace: rows and head updates of an aborted transaction
 * vanish together.  A chain lock taken in a subtransaction that aborts is
 * released with it, and the head is forgotten; otherwise the head goes back
 * to what it was when the subtransaction first advanced it.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "scaleout.h"
#include "chain_internal.h"

#include <sched.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/parse_func.h"
#include "parser/parsetree.h"
#include "portability/instr_time.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* envault.chain_lock_spin: see ch_lock_try() */
static int	ch_lock_spin = 500;

/* field4 of the advisory lock tags of chain heads ("EV") */
#define CH_LOCK_FIELD4		0x4556

/* --- per-tenant heads and their locks -------------------------------------- */

static Oid	ch_heads_relid = InvalidOid;	/* envault.chain_heads, once found */
static Oid	ch_heads_index = InvalidOid;	/* and its index, once checked */

/*
 * The heads this transaction locked.  The table lives as long as the
 * backend and is emptied at the end of each transaction (creating one per
 * transaction cost a single-row chained insert about a tenth of what
 * chaining adds to it); what its entries point to is in
 * TopTransactionContext.
 */
static HTAB *ch_heads = NULL;

uint64
ch_lock_key(int32 chain_id, const EnvChainTenant *t)
{
	uint64		seed = ((uint64) (uint32) chain_id << 1) | (t->isnull ? 1 : 0);

	return hash_bytes_extended((const unsigned char *) (t->text ? t->text : ""),
							   (int) t->len, seed);
}

/*
 * Try to take a chain lock for up to envault.chain_lock_spin microseconds,
 * yielding the CPU between attempts, before queueing for it.  A queued
 * backend sleeps until the holder's commit wakes it, and on a busy machine
 * that wake-up takes longer than the holder's whole turn: with one tenant's
 * writers taking turns, it is most of what they wait for.  A backend that
 * only yields is running again as soon as the lock is free.  (It cannot
 * overtake backends already queued: a lock with waiters is not granted to
 * a conditional request.)
 */
static bool
ch_lock_try(const LOCKTAG *tag)
{
	instr_time	start;
	instr_time	now;

	if (ch_lock_spin <= 0)
		return false;
	INSTR_TIME_SET_CURRENT(start);
	for (;;)
	{
		if (LockAcquire(tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
			return true;
		CHECK_FOR_INTERRUPTS();
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		if ((int64) INSTR_TIME_GET_MICROSEC(now) >= (int64) ch_lock_spin)
			return false;
		sched_yield();
	}
}

/*
 * Take the lock of a chain head for this transaction, never closing a cycle
 * of waits between chain locks (see the header comment).
 */
static void
ch_lock(ChHead *h, const char *identity)
{
	LOCKTAG		tag;
	HASH_SEQ_STATUS status;
	ChHead	   *o;
	uint64		max_held = 0;
	bool		holds = false;

	hash_seq_init(&status, ch_heads);
	while ((o = hash_seq_search(&status)) != NULL)
	{
		if (o != h && o->lock_subxid != InvalidSubTransactionId)
		{
			holds = true;
			max_held = Max(max_held, o->key.lock_key);
		}
	}
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h->key.lock_key >> 32),
						 (uint32) h->key.lock_key, CH_LOCK_FIELD4);
	if (!holds || h->key.lock_key > max_held)
	{
		if (!ch_lock_try(&tag))
			(void) LockAcquire(&tag, ExclusiveLock, false, false);
	}
	else if (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access to the audit chain of %s, tenant %s",
						identity, h->tenant_null ? "NULL" :
						quote_literal_cstr(pnstrdup(h->tenant, h->tenant_len))),
				 errdetail("Another transaction is writing that chain, and waiting for it could deadlock with a chain this transaction already writes."),
				 errhint("Retry the transaction (after a short, random pause), or write fewer chains in one transaction.")));
	h->lock_subxid = GetCurrentSubTransactionId();
}

/*
 * envault.chain_heads is read and written directly, through its unique
 * index on (chain_id, tenant), not through SPI: every transaction that
 * inserts into a chain reads one head and writes it back, and parsing,
 * planning and executing two queries for that would cost more than the
 * insert itself.  Nothing else may write a head concurrently (the chain
 * lock is held), so a simple update is enough.  No trigger, constraint or
 * privilege of envault.chain_heads applies to these writes: the values come
 * from the chain lock's holder, which is this code.
 */
#define CH_HEADS_NATTS		5
#define CH_HEADS_CHAIN		1
#define CH_HEADS_TENANT		2
#define CH_HEADS_SEQ		3
#define CH_HEADS_HASH		4
#define CH_HEADS_BUILTIN	5

/* Open envault.chain_heads and find its index on (chain_id, tenant). */
Relation
ch_heads_open(LOCKMODE mode, Oid *index)
{
	static const char *const names[CH_HEADS_NATTS] =
	{"chain_id", "tenant", "seq", "hash", "builtin"};
	Relation	rel;
	TupleDesc	desc;
	List	   *indexes;
	ListCell   *lc;
	int			i;

	if (!OidIsValid(ch_heads_relid))
		ch_heads_relid = get_relname_relid("chain_heads",
										   get_namespace_oid("envault", false));
	if (!OidIsValid(ch_heads_relid))
		elog(ERROR, "relation envault.chain_heads does not exist");
	rel = table_open(ch_heads_relid, mode);
	if (OidIsValid(ch_heads_index))
	{
		/* checked since the last change to the table (relcache callback) */
		*index = ch_heads_index;
		return rel;
	}
	desc = RelationGetDescr(rel);
	if (desc->natts != CH_HEADS_NATTS)
		elog(ERROR, "envault.chain_heads does not have the expected columns");
	for (i = 0; i < CH_HEADS_NATTS; i++)
		if (TupleDescAttr(desc, i)->attisdropped ||
			strcmp(NameStr(TupleDescAttr(desc, i)->attname), names[i]) != 0)
			elog(ERROR, "envault.chain_heads does not have the expected columns");

	*index = InvalidOid;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		HeapTuple	itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index form;

		if (!HeapTupleIsValid(itup))
			continue;
		form = (Form_pg_index) GETSTRUCT(itup);
		if (form->indisunique && form->indisvalid && form->indnatts == 2 &&
			form->indkey.values[0] == CH_HEADS_CHAIN &&
			form->indkey.values[1] == CH_HEADS_TENANT &&
			heap_attisnull(itup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(itup, Anum_pg_index_indpred, NULL))
			*index = form->indexrelid;
		ReleaseSysCache(itup);
		if (OidIsValid(*index))
			break;
	}
	list_free(indexes);
	if (!OidIsValid(*index))
		elog(ERROR, "envault.chain_heads has no unique index on (chain_id, tenant)");
	ch_heads_index = *index;
	return rel;
}

/*
 * The row of envault.chain_heads for a head, as a new snapshot sees it (the
 * previous holders of the chain lock have committed, and this transaction's
 * earlier writes are visible), or NULL.  The caller frees it.
 */
static HeapTuple
ch_heads_fetch(Relation rel, Oid index, int32 chain_id, const char *tenant,
			   size_t tenant_len, bool tenant_null)
{
	ScanKeyData key[2];
	SysScanDesc scan;
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	HeapTuple	tup;

	ScanKeyInit(&key[0], CH_HEADS_CHAIN, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(chain_id));
	if (tenant_null)
		ScanKeyEntryInitialize(&key[1], SK_ISNULL | SK_SEARCHNULL, CH_HEADS_TENANT,
							   InvalidStrategy, InvalidOid, InvalidOid,
							   InvalidOid, (Datum) 0);
	else
		ScanKeyEntryInitialize(&key[1], 0, CH_HEADS_TENANT, BTEqualStrategyNumber,
							   InvalidOid,
							   TupleDescAttr(RelationGetDescr(rel), CH_HEADS_TENANT - 1)->attcollation,
							   F_TEXTEQ,
							   PointerGetDatum(cstring_to_text_with_len(tenant, tenant_len)));
	scan = systable_beginscan(rel, index, true, snap, 2, key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		tup = heap_copytuple(tup);
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	return tup;
}

/*
 * Where this backend last found or wrote each head: a backend that writes
 * the same tenants' chains transaction after transaction (the common case)
 * then reads its head with one heap fetch instead of an index scan.  The
 * location is only a hint: the version there must be visible to a new
 * snapshot (so no later version exists) and be the same head.
 */
typedef struct ChTidEntry
{
	ChHeadKey	key;			/* hash key */
	ItemPointerData tid;
} ChTidEntry;

static HTAB *ch_tids = NULL;

static ChTidEntry *
ch_tid_entry(const ChHeadKey *key, bool create)
{
	return hash_search(ch_tids, key, create ? HASH_ENTER : HASH_FIND, NULL);
}

static void
ch_tid_remember(const ChHeadKey *key, ItemPointer tid)
{
	ChTidEntry *e;

	/* a backend writing very many chains keeps no more than this */
	if (hash_get_num_entries(ch_tids) >= 4096 &&
		hash_search(ch_tids, key, HASH_FIND, NULL) == NULL)
		return;
	e = ch_tid_entry(key, true);
	e->tid = *tid;
}

/*
 * Is the block still part of the table (a location remembered across
 * transactions, here and in tokens.c)?  VACUUM may have truncated it away
 * since the location was remembered.  The size the storage manager last
 * found is a safe lower bound: a truncation sends every backend an
 * invalidation that closes its handle of the file, and so forgets that size,
 * before the truncating VACUUM lets go of its lock (which the caller has
 * taken since).  Only a block beyond it costs a look at the file (an lseek).
 */
bool
env_relation_has_block(Relation rel, BlockNumber block)
{
	BlockNumber known = RelationGetSmgr(rel)->smgr_cached_nblocks[MAIN_FORKNUM];

	if (known != InvalidBlockNumber && block < known)
		return true;
	return block < RelationGetNumberOfBlocks(rel);
}

/* The head's row at the remembered location, if it is still the head. */
static HeapTuple
ch_heads_fetch_at(Relation rel, const ChHead *h)
{
	ChTidEntry *e = ch_tid_entry(&h->key, false);
	HeapTupleData tuple;
	Buffer		buf;
	Snapshot	snap;
	HeapTuple	result = NULL;

	if (e == NULL || !ItemPointerIsValid(&e->tid) ||
		!env_relation_has_block(rel, ItemPointerGetBlockNumber(&e->tid)))
		return NULL;

	/*
	 * The head's old versions pile up on its page; prune it once they take
	 * most of it.  heap_page_prune_opt() alone would prune on every call: it
	 * prunes whenever the free space is below what the fillfactor (10)
	 * leaves, which is always, and each pruning is a WAL record.  Pruning
	 * every few dozen updates instead keeps the updates HOT and costs a
	 * fraction.  (The remembered location is that of the newest version, so
	 * the fetch below never walks the chain of old ones.)
	 */
	buf = ReadBuffer(rel, ItemPointerGetBlockNumber(&e->tid));
	if (PageIsFull(BufferGetPage(buf)) ||
		PageGetHeapFreeSpace(BufferGetPage(buf)) < BLCKSZ / 4)
		heap_page_prune_opt(rel, buf);
	ReleaseBuffer(buf);

	snap = RegisterSnapshot(GetLatestSnapshot());
	tuple.t_self = e->tid;
	if (heap_fetch(rel, snap, &tuple, &buf, false))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		Datum		d = heap_getattr(&tuple, CH_HEADS_CHAIN, desc, &isnull);

		if (!isnull && DatumGetInt32(d) == h->key.chain_id)
		{
			d = heap_getattr(&tuple, CH_HEADS_TENANT, desc, &isnull);
			if (isnull ? h->tenant_null :
				(!h->tenant_null &&
				 VARSIZE_ANY_EXHDR(DatumGetPointer(d)) == h->tenant_len &&
				 memcmp(VARDATA_ANY(DatumGetPointer(d)), h->tenant, h->tenant_len) == 0))
				result = heap_copytuple(&tuple);
		}
		ReleaseBuffer(buf);
	}
	UnregisterSnapshot(snap);
	return result;
}

/*
 * The head of a tenant's chain on a Citus shard: its newest row, found
 * through the chain's unique index on (tenant, envault_seq).  The shard
 * holds all of the tenant's rows and moves with them, so the head needs no
 * table that would have to move too.  Read with a new snapshot: the caller
 * holds the chain lock, so every earlier writer has committed or rolled
 * back.
 */
void
ch_load_tail(EnvChain *ch, ChHead *h)
{
	Snapshot	snap;
	Datum		value = (Datum) 0;

	if (!h->tenant_null)
		value = env_chain_tenant_value(ch, cstring_to_text_with_len(h->tenant,
																	h->tenant_len));
	ItemPointerSetInvalid(&h->tid);
	snap = RegisterSnapshot(GetLatestSnapshot());
	h->seq = env_chain_tail(ch, value, h->tenant_null, snap, h->hash);
	UnregisterSnapshot(snap);
}

/*
 * The newest row of a tenant's chain on a Citus shard as snap sees it: its
 * sequence number (0 if none) and, into hash, its hash (the genesis if
 * none).
 */
int64
env_chain_tail(EnvChain *ch, Datum value, bool isnull, Snapshot snap, uint8 *hash)
{
	Relation	rel;
	Relation	idx;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		seq = 0;

	Assert(ch->sharded);
	if (!OidIsValid(ch->index_oid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shard \"%s\" of audit chain %s has no unique index on its tenant column and " ENV_CHAIN_SEQ_COL,
						get_rel_name(ch->relid), ch->identity),
				 errdetail("On Citus, a tenant's newest row is found through that index."),
				 errhint("Create it on the distributed table: CREATE UNIQUE INDEX ON table (tenant_column, " ENV_CHAIN_SEQ_COL ").")));
	memcpy(hash, env_chain_genesis, ENV_CHAIN_HASH_LEN);
	rel = table_open(ch->relid, AccessShareLock);
	idx = index_open(ch->index_oid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	env_chain_tenant_key(ch, &key, isnull, value);
	scan = env_index_beginscan(rel, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		snull;
		bool		hnull;
		Datum		d = slot_getattr(slot, ch->seq_attnum, &snull);
		Datum		hd = slot_getattr(slot, ch->hash_attnum, &hnull);
		bytea	   *b = hnull ? NULL : DatumGetByteaPP(hd);

		if (snull || hnull || DatumGetInt64(d) <= 0 ||
			VARSIZE_ANY_EXHDR(b) != ENV_CHAIN_HASH_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the newest row of audit chain %s in \"%s\" has no valid hash",
							ch->identity, get_rel_name(ch->relid)),
					 errhint("Run envault.verify_chain() to locate the damage.")));
		seq = DatumGetInt64(d);
		memcpy(hash, VARDATA_ANY(b), ENV_CHAIN_HASH_LEN);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	return seq;
}

/* Read a tenant's head: its number and hash, or the genesis. */
static void
ch_load_head(EnvChain *ch, ChHead *h)
{
	Oid			index;
	Relation	rel;
	HeapTuple	tup;

	if (ch->sharded)
	{
		ch_load_tail(ch, h);
		return;
	}
	rel = ch_heads_open(AccessShareLock, &index);
	tup = ch_heads_fetch_at(rel, h);

	if (!HeapTupleIsValid(tup))
		tup = ch_heads_fetch(rel, index, h->key.chain_id, h->tenant,
							 h->tenant_len, h->tenant_null);

	h->seq = 0;
	memcpy(h->hash, env_chain_genesis, ENV_CHAIN_HASH_LEN);
	ItemPointerSetInvalid(&h->tid);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d;
		bytea	   *b = NULL;

		h->tid = tup->t_self;
		ch_tid_remember(&h->key, &tup->t_self);
		h->seq = DatumGetInt64(heap_getattr(tup, CH_HEADS_SEQ, RelationGetDescr(rel), &isnull));
		d = heap_getattr(tup, CH_HEADS_HASH, RelationGetDescr(rel), &isnull);
		if (!isnull)
			b = DatumGetByteaPP(d);
		if (isnull || h->seq <= 0 || VARSIZE_ANY_EXHDR(b) != ENV_CHAIN_HASH_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("head of audit chain %s has no valid hash", ch->identity),
					 errhint("Run envault.verify_chain() to locate the damage.")));
		memcpy(h->hash, VARDATA_ANY(b), ENV_CHAIN_HASH_LEN);
		heap_freetuple(tup);
	}
	table_close(rel, AccessShareLock);
}

/* The head of a tenant's chain, locked for this transaction. */
ChHead *
ch_head(EnvChain *ch, const EnvChainTenant *t)
{
	ChHeadKey	key;
	ChHead	   *h;
	bool		found;

	if (ch_heads == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(ChHeadKey);
		ctl.entrysize = sizeof(ChHead);
		ch_heads = hash_create("envault audit chain heads", 16, &ctl,
							   HASH_ELEM | HASH_BLOBS);
	}
	memset(&key, 0, sizeof(key));
	key.lock_key = ch_lock_key(ch->chain_id, t);
	key.chain_id = ch->chain_id;
	h = hash_search(ch_heads, &key, HASH_ENTER, &found);
	if (!found)
	{
		h->relid = ch->relid;
		h->tenant = t->isnull ? NULL :
			MemoryContextAlloc(TopTransactionContext, t->len + 1);
		if (h->tenant)
		{
			memcpy(h->tenant, t->text, t->len);
			h->tenant[t->len] = '\0';
		}
		h->tenant_len = t->len;
		h->tenant_null = t->isnull;
		h->lock_subxid = InvalidSubTransactionId;
		h->dirty = false;
		h->saved = NULL;
	}
	else if (h->tenant_null != t->isnull || h->tenant_len != t->len ||
			 (t->len > 0 && memcmp(h->tenant, t->text, t->len) != 0))
		elog(ERROR, "audit chain lock keys of two tenants collide");
	if (h->lock_subxid == InvalidSubTransactionId)
	{
		ch_lock(h, ch->identity);
		ch_load_head(ch, h);
		h->dirty = false;
		h->saved = NULL;
	}
	return h;
}

/*
 * Has this transaction written to the tenant's chain (it holds the chain's
 * lock)?  Its newest rows are then not committed yet.
 */
bool
env_chain_written(EnvChain *ch, const EnvChainTenant *t)
{
	ChHeadKey	key;
	ChHead	   *h;

	if (ch_heads == NULL)
		return false;
	memset(&key, 0, sizeof(key));
	key.lock_key = ch_lock_key(ch->chain_id, t);
	key.chain_id = ch->chain_id;
	h = hash_search(ch_heads, &key, HASH_FIND, NULL);
	return h != NULL && h->lock_subxid != InvalidSubTransactionId;
}

/* Advance a head, keeping what it was before for a subtransaction abort. */
void
ch_advance(ChHead *h, int64 seq, const uint8 *hash)
{
	SubTransactionId sub = GetCurrentSubTransactionId();

	if (h->saved == NULL || h->saved->subxid != sub)
	{
		ChSaved    *sv = MemoryContextAlloc(TopTransactionContext, sizeof(ChSaved));

		sv->subxid = sub;
		sv->seq = h->seq;
		memcpy(sv->hash, h->hash, ENV_CHAIN_HASH_LEN);
		sv->next = h->saved;
		h->saved = sv;
	}
	h->seq = seq;
	memcpy(h->hash, hash, ENV_CHAIN_HASH_LEN);
	h->dirty = true;
}

/*
 * Index entries for a new version of a head that is not a heap-only tuple,
 * as CatalogTupleUpdate() makes them.  A head's update is nearly always HOT
 * (only seq and hash change, and the table leaves room on its pages), and
 * then the indexes are not even opened.
 */
static void
ch_heads_index_insert(Relation rel, HeapTuple tup)
{
	CatalogIndexState indstate = CatalogOpenIndexes(rel);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel),
													&TTSOpsHeapTuple);
	int			i;

	ExecStoreHeapTuple(tup, slot, false);
	for (i = 0; i < indstate->ri_NumIndices; i++)
	{
		Relation	index = indstate->ri_IndexRelationDescs[i];
		IndexInfo  *info = indstate->ri_IndexRelationInfo[i];
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];

		if (!info->ii_ReadyForInserts)
			continue;
		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL)
			elog(ERROR, "index \"%s\" of envault.chain_heads has expressions or a predicate",
				 RelationGetRelationName(index));
		FormIndexDatum(info, slot, NULL, values, isnull);
		(void) index_insert(index, values, isnull, &tup->t_self, rel,
							index->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
							false, info);
	}
	ExecDropSingleTupleTableSlot(slot);
	CatalogCloseIndexes(indstate);
}

/*
 * Write a head to envault.chain_heads (opened by the caller with
 * RowExclusiveLock): update its row, or insert one.
 */
void
ch_heads_put(Relation rel, Oid index, int32 chain_id, const char *tenant,
			 size_t tenant_len, bool tenant_null, int64 seq, const uint8 *hash,
			 bool builtin, ItemPointer tid)
{
	Datum		values[CH_HEADS_NATTS];
	bool		nulls[CH_HEADS_NATTS] = {false};
	bool		replace[CH_HEADS_NATTS] = {false};
	HeapTuple	old;
	HeapTuple	tup;
	bytea	   *b = palloc(VARHDRSZ + ENV_CHAIN_HASH_LEN);

	SET_VARSIZE(b, VARHDRSZ + ENV_CHAIN_HASH_LEN);
	memcpy(VARDATA(b), hash, ENV_CHAIN_HASH_LEN);
	values[CH_HEADS_CHAIN - 1] = Int32GetDatum(chain_id);
	if (tenant_null)
		nulls[CH_HEADS_TENANT - 1] = true;
	else
		values[CH_HEADS_TENANT - 1] =
			PointerGetDatum(cstring_to_text_with_len(tenant, tenant_len));
	values[CH_HEADS_SEQ - 1] = Int64GetDatum(seq);
	values[CH_HEADS_HASH - 1] = PointerGetDatum(b);
	values[CH_HEADS_BUILTIN - 1] = BoolGetDatum(builtin);

	/*
	 * The version this transaction read or wrote last is still the current
	 * one (nothing else writes a head while the chain lock is held), so it is
	 * updated without looking it up again.
	 */
	if (tid != NULL && ItemPointerIsValid(tid))
	{
		tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);
		env_simple_heap_update(rel, tid, tup);
		if (!HeapTupleIsHeapOnly(tup))
			ch_heads_index_insert(rel, tup);
		*tid = tup->t_self;
		heap_freetuple(tup);
		pfree(b);
		return;
	}
	old = ch_heads_fetch(rel, index, chain_id, tenant, tenant_len, tenant_null);
	if (HeapTupleIsValid(old))
	{
		replace[CH_HEADS_SEQ - 1] = true;
		replace[CH_HEADS_HASH - 1] = true;
		tup = heap_modify_tuple(old, RelationGetDescr(rel), values, nulls, replace);
		CatalogTupleUpdate(rel, &old->t_self, tup);
		heap_freetuple(old);
	}
	else
	{
		tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);
		CatalogTupleInsert(rel, tup);
	}
	if (tid != NULL)
		*tid = tup->t_self;
	heap_freetuple(tup);
	pfree(b);
}

/*
 * Write the heads this statement changed on a chained table, or, with
 * InvalidOid, every head this transaction changed and has not written yet.
 */
void
ch_store_heads(Oid relid)
{
	HASH_SEQ_STATUS status;
	ChHead	   *h;
	Relation	rel = NULL;
	Oid			index = InvalidOid;
	EnvChain   *ch = NULL;

	if (ch_heads == NULL)
		return;
	hash_seq_init(&status, ch_heads);
	while ((h = hash_seq_search(&status)) != NULL)
	{
		if (!h->dirty || (OidIsValid(relid) && h->relid != relid))
			continue;
		if (ch == NULL || ch->relid != h->relid)
			ch = env_chain_require(h->relid);
		if (ch->sharded)
		{
			/* a shard's head is its newest row (ch_load_tail) */
			h->dirty = false;
			continue;
		}
		if (rel == NULL)
			rel = ch_heads_open(RowExclusiveLock, &index);
		ch_heads_put(rel, index, h->key.chain_id, h->tenant, h->tenant_len,
					 h->tenant_null, h->seq, h->hash, ch->builtin, &h->tid);
		ch_tid_remember(&h->key, &h->tid);
		h->dirty = false;
	}
	if (rel != NULL)
	{
		table_close(rel, RowExclusiveLock);
		/* later commands of this transaction see the new heads */
		CommandCounterIncrement();
	}
}

/*
 * Forget every head at the end of a transaction (what the entries point to
 * goes with TopTransactionContext).  A table that grew large is dropped
 * rather than kept at that size.
 */
static void
ch_heads_reset(void)
{
	HASH_SEQ_STATUS status;
	ChHead	   *h;

	if (ch_heads == NULL || hash_get_num_entries(ch_heads) == 0)
		return;
	if (hash_get_num_entries(ch_heads) > 64)
	{
		hash_destroy(ch_heads);
		ch_heads = NULL;
		return;
	}
	hash_seq_init(&status, ch_heads);
	while ((h = hash_seq_search(&status)) != NULL)
		(void) hash_search(ch_heads, &h->key, HASH_REMOVE, NULL);
}

void
ch_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:

			/*
			 * The AFTER STATEMENT trigger writes the heads, but PostgreSQL
			 * fires statement triggers only on the table a statement names:
			 * rows routed to a chained partition through its parent advance
			 * heads that no trigger writes.  Whatever is left is written
			 * here, before the rows commit.
			 */
			ch_store_heads(InvalidOid);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			ch_heads_reset();
			env_chain_set_purging(InvalidOid);
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that aborts takes its rows with it: each head goes back
 * to what it was before the subtransaction changed it, or, if the lock was
 * taken in it (and so released with it), is forgotten.  One that commits
 * hands its saved states and locks to its parent.
 */
void
ch_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	HASH_SEQ_STATUS status;
	ChHead	   *h;

	if (ch_heads == NULL ||
		(event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB))
		return;
	hash_seq_init(&status, ch_heads);
	while ((h = hash_seq_search(&status)) != NULL)
	{
		ChSaved    *top = h->saved;

		if (event == SUBXACT_EVENT_COMMIT_SUB)
		{
			if (h->lock_subxid == mySubid)
				h->lock_subxid = parentSubid;
			if (top != NULL && top->subxid == mySubid)
			{
				if (top->next != NULL && top->next->subxid == parentSubid)
					h->saved = top->next;	/* the parent's is older */
				else
					top->subxid = parentSubid;
			}
			continue;
		}
		/* the version it wrote may be gone with it: look it up next time */
		ItemPointerSetInvalid(&h->tid);
		if (h->lock_subxid == mySubid)
		{
			/* released: every row this transaction added to it is gone */
			(void) hash_search(ch_heads, &h->key, HASH_REMOVE, NULL);
			continue;
		}
		if (top != NULL && top->subxid == mySubid)
		{
			h->seq = top->seq;
			memcpy(h->hash, top->hash, ENV_CHAIN_HASH_LEN);
			h->saved = top->next;
			h->dirty = true;
		}
	}
}

/*
 * Forget where envault.chain_heads is when it (or any relation, InvalidOid)
 * is invalidated; ch_relcache_callback() calls this.
 */
void
ch_heads_forget(Oid relid)
{
	if (!OidIsValid(relid) || relid == ch_heads_relid)
	{
		ch_heads_relid = InvalidOid;
		ch_heads_index = InvalidOid;
	}
}

/* The table of head locations, and envault.chain_lock_spin */
void
ch_heads_init(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(ChHeadKey);
	ctl.entrysize = sizeof(ChTidEntry);
	ch_tids = hash_create("envault audit chain head locations", 64, &ctl,
						  HASH_ELEM | HASH_BLOBS);
	DefineCustomIntVariable("envault.chain_lock_spin",
							gettext_noop("Microseconds a writer of an audit chain tries for the tenant's lock, yielding the CPU, before it queues and sleeps."),
							gettext_noop("0 queues at once. Trying helps while a tenant has up to a few writers per CPU; with many more, the tries cost CPU the holder needs."),
							&ch_lock_spin, 500, 0, 100000, PGC_SUSET,
							0, NULL, NULL, NULL);
}
