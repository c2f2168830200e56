/*-------------------------------------------------------------------------
 *
 * chain.c
 *		Audit chains: the registry of chained tables, the trigger that links
 *		every inserted row to its tenant's chain, and the per-tenant heads.
 *
 * Each tenant of a chained table has its own chain: rows numbered 1, 2, 3
 * ... in envault_seq, each with envault_prev, the hash of the row before
 * it, and envault_hash, the SHA-256 of the row's canonical encoding
 * (chainfmt.h, canon.c).  The BEFORE INSERT trigger assigns these.
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
 * tenants take different locks and never wait for each other.
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
 * Nothing here is secret: chained rows are stored in the clear.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "scaleout.h"

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

/* --- the registry cache ---------------------------------------------------- */

typedef struct ChCacheEntry
{
	Oid			relid;			/* hash key */
	EnvChain   *chain;
} ChCacheEntry;

static HTAB *ch_cache = NULL;
static int	ch_internal = 0;	/* > 0 while envault itself alters a table */
static Oid	ch_purging = InvalidOid;	/* relation purge_chain deletes from */
static ExecutorStart_hook_type ch_prev_executor_start = NULL;
static Oid	ch_heads_relid = InvalidOid;	/* envault.chain_heads, once found */
static Oid	ch_heads_index = InvalidOid;	/* and its index, once checked */

static void
ch_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	ChCacheEntry *e;

	if (!OidIsValid(relid) || relid == ch_heads_relid)
	{
		ch_heads_relid = InvalidOid;
		ch_heads_index = InvalidOid;
	}
	if (ch_cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		e = hash_search(ch_cache, &relid, HASH_FIND, NULL);
		if (e != NULL && e->chain != NULL)
			e->chain->valid = false;
		return;
	}
	hash_seq_init(&status, ch_cache);
	while ((e = hash_seq_search(&status)) != NULL)
		if (e->chain != NULL)
			e->chain->valid = false;
}

bool
env_chain_internal_ddl(void)
{
	return ch_internal > 0;
}

Oid
env_chain_purging(void)
{
	return ch_purging;
}

void
env_chain_set_purging(Oid relid)
{
	ch_purging = relid;
}

#define CH_Q_REGISTRY \
	"SELECT chain_id, identity, tenant_column, builtin FROM envault.audit_chains" \
	" WHERE tbl OPERATOR(pg_catalog.=) $1"

/*
 * A btree index on (tenant column, envault_seq), unique if there is one, or
 * InvalidOid.  envault creates none (heads are in envault.chain_heads); one
 * the user creates makes checking and exporting a single tenant's chain
 * read just that chain.
 */
static Oid
ch_find_index(Relation rel, AttrNumber tenant_att, AttrNumber seq_att,
			  Oid *eq_proc, Oid *collation)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;
	bool		found_unique = false;

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = idx->rd_index;

		/* unique, or (after tampering) any btree on those columns */
		if (form->indisvalid &&
			(form->indisunique || !OidIsValid(found)) &&
			form->indnkeyatts == 2 && form->indnatts == 2 &&
			form->indkey.values[0] == tenant_att &&
			form->indkey.values[1] == seq_att &&
			idx->rd_rel->relam == BTREE_AM_OID &&
			RelationGetIndexPredicate(idx) == NIL &&
			RelationGetIndexExpressions(idx) == NIL)
		{
			Oid			opcintype = idx->rd_opcintype[0];
			Oid			op = get_opfamily_member(idx->rd_opfamily[0], opcintype,
												 opcintype, BTEqualStrategyNumber);

			if (OidIsValid(op))
			{
				*eq_proc = get_opcode(op);
				*collation = idx->rd_indcollation[0];
				found = RelationGetRelid(idx);
				found_unique = form->indisunique;
			}
		}
		index_close(idx, AccessShareLock);
		if (OidIsValid(found) && found_unique)
			break;
	}
	list_free(indexes);
	return found;
}

static AttrNumber
ch_attnum(Relation rel, const char *name, bool missing_ok)
{
	AttrNumber	att = get_attnum(RelationGetRelid(rel), name);

	if (att == InvalidAttrNumber && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("audit chain table %s has no column \"%s\"",
						RelationGetRelationName(rel), name)));
	return att;
}

/* The hash of the chain's columns, names and types, that every row covers */
static void
ch_columns_hash(EnvChain *ch)
{
	size_t		len = ENV_CHAIN_COLUMNS_LABEL_LEN + 4;
	uint8	   *buf;
	uint8	   *p;
	int			i;

	for (i = 0; i < ch->ncols; i++)
		len += ENV_CHAIN_STR_LEN(strlen(ch->cols[i].name)) +
			ENV_CHAIN_STR_LEN(strlen(ch->cols[i].type));
	buf = palloc(len);
	p = env_chain_put_columns_header(buf, (uint32) ch->ncols);
	for (i = 0; i < ch->ncols; i++)
	{
		p = env_chain_put_str(p, ch->cols[i].name, strlen(ch->cols[i].name));
		p = env_chain_put_str(p, ch->cols[i].type, strlen(ch->cols[i].type));
	}
	if (!env_sha256(buf, (size_t) (p - buf), ch->columns))
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "hashing an audit chain's columns");
	pfree(buf);
}

/*
 * Build what envault needs to know of a chained table from the registry and
 * the catalogs.  Returns NULL if the table is not chained.
 */
static EnvChain *ch_build_from(Oid relid, int32 chain_id, const char *identity,
							   const char *tenant_column, bool builtin, bool sharded);
static EnvChain *ch_build_shard(Oid relid);

static EnvChain *
ch_build(Oid relid)
{
	EnvSpi		s;
	Oid			types[1] = {REGCLASSOID};
	Datum		values[1];
	bool		isnull;
	int32		chain_id;
	char	   *identity;
	char	   *tenant_column;
	bool		builtin;

	env_spi_begin(&s);
	values[0] = ObjectIdGetDatum(relid);
	env_spi_run(CH_Q_REGISTRY, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		env_spi_end(&s);
		return ch_build_shard(relid);
	}
	chain_id = DatumGetInt32(env_spi_col(&s, 1, &isnull, true, 4));
	identity = env_spi_cstring(&s, 2, &isnull);
	tenant_column = pstrdup(NameStr(*DatumGetName(env_spi_col(&s, 3, &isnull,
															  false, NAMEDATALEN))));
	builtin = DatumGetBool(env_spi_col(&s, 4, &isnull, true, 1));
	env_spi_end(&s);
	return ch_build_from(relid, chain_id, identity, tenant_column, builtin, false);
}

/*
 * What envault knows of a chained table, from what the registry (or, for a
 * shard, the chain trigger) says of it and the table's columns.
 */
static EnvChain *
ch_build_from(Oid relid, int32 chain_id, const char *identity,
			  const char *tenant_column, bool builtin, bool sharded)
{
	Relation	rel;
	TupleDesc	desc;
	MemoryContext cxt;
	MemoryContext old;
	EnvChain   *ch;
	AttrNumber	tenant_attnum;
	AttrNumber	seq_attnum;
	AttrNumber	at_attnum;
	AttrNumber	prev_attnum;
	AttrNumber	hash_attnum;
	int			i;

	/* errors first, so that nothing is left in TopMemoryContext */
	rel = relation_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	tenant_attnum = ch_attnum(rel, tenant_column, false);
	seq_attnum = ch_attnum(rel, ENV_CHAIN_SEQ_COL, false);
	at_attnum = ch_attnum(rel, ENV_CHAIN_AT_COL, false);
	prev_attnum = ch_attnum(rel, ENV_CHAIN_PREV_COL, false);
	hash_attnum = ch_attnum(rel, ENV_CHAIN_HASH_COL, false);
	if (TupleDescAttr(desc, tenant_attnum - 1)->attgenerated)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tenant column \"%s\" of audit chain %s is a generated column",
						tenant_column, identity)));

	cxt = AllocSetContextCreate(TopMemoryContext, "envault audit chain",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	ch = palloc0(sizeof(EnvChain));
	ch->cxt = cxt;
	ch->relid = relid;
	ch->chain_id = chain_id;
	ch->identity = pstrdup(identity);
	ch->identity_len = strlen(identity);
	ch->builtin = builtin;
	ch->sharded = sharded;
	ch->tenant_attnum = tenant_attnum;
	ch->seq_attnum = seq_attnum;
	ch->at_attnum = at_attnum;
	ch->prev_attnum = prev_attnum;
	ch->hash_attnum = hash_attnum;
	ch->tenant_typid = TupleDescAttr(desc, ch->tenant_attnum - 1)->atttypid;
	ch->index_oid = ch_find_index(rel, ch->tenant_attnum, ch->seq_attnum,
								  &ch->tenant_eq_proc, &ch->tenant_collation);

	ch->cols = palloc0(sizeof(EnvChainCol) * desc->natts);
	ch->tenant_col = -1;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);
		EnvChainCol *c;
		char	   *tname;

		/* stored generated columns are computed after BEFORE triggers */
		if (a->attisdropped || a->attgenerated ||
			a->attnum == ch->seq_attnum || a->attnum == ch->at_attnum ||
			a->attnum == ch->prev_attnum || a->attnum == ch->hash_attnum)
			continue;
		c = &ch->cols[ch->ncols];
		c->attnum = a->attnum;
		env_canon_init(&c->canon, a->atttypid, NameStr(a->attname));
		if (env_canon_needs_pinning(&c->canon))
			ch->pinned = true;
		tname = env_format_type(a->atttypid, a->atttypmod);
		c->name = pstrdup(NameStr(a->attname));
		c->type = pstrdup(tname);
		if (a->attnum == ch->tenant_attnum)
			ch->tenant_col = ch->ncols;
		ch->ncols++;
	}
	ch_columns_hash(ch);
	relation_close(rel, AccessShareLock);
	MemoryContextSwitchTo(old);
	Assert(ch->tenant_col >= 0);
	ch->valid = true;
	return ch;
}

/*
 * Is this trigger envault's chain trigger: named zz_envault_chain on the
 * table itself, zz_envault_chain_<shardid> on a Citus shard of it?
 */
static bool
ch_is_chain_trigger(const Trigger *tg)
{
	size_t		n = strlen(ENV_CHAIN_TRIGGER);
	const char *p = tg->tgname + n;

	if (strncmp(tg->tgname, ENV_CHAIN_TRIGGER, n) != 0)
		return false;
	if (*p == '\0')
		return true;
	if (*p++ != '_' || *p == '\0')
		return false;
	for (; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

/* The chain trigger of a relation, or NULL */
static const Trigger *
ch_chain_trigger(Relation rel)
{
	TriggerDesc *td = rel->trigdesc;
	int			i;

	for (i = 0; td != NULL && i < td->numtriggers; i++)
		if (ch_is_chain_trigger(&td->triggers[i]))
			return &td->triggers[i];
	return NULL;
}

/*
 * A Citus shard of a distributed chained table, on the node that holds it.
 * The chain is registered on the coordinator only; its trigger, which
 * Citus gives every shard (moved and split ones too), names it:
 * envault.chain_insert('<identity>', '<tenant column>', '<chain_id>').  The
 * shard must have the same trigger as its table on this node, so that a
 * table's owner cannot make an unrelated table pass for a chain.  Its
 * chain_id here is the coordinator's, negated: it never meets this node's
 * own chains in the lock and head tables.
 */
static EnvChain *
ch_build_shard(Oid relid)
{
	Oid			parent = env_citus_shard_parent(relid);
	Relation	rel;
	Relation	prel;
	const Trigger *tg;
	const Trigger *ptg;
	char	   *identity = NULL;
	char	   *tenant_column = NULL;
	int64		chain_id = 0;
	int			i;

	if (!OidIsValid(parent))
		return NULL;
	rel = relation_open(relid, AccessShareLock);
	prel = relation_open(parent, AccessShareLock);
	tg = ch_chain_trigger(rel);
	ptg = ch_chain_trigger(prel);
	if (tg != NULL && ptg != NULL && tg->tgnargs == 3 && ptg->tgnargs == 3 &&
		tg->tgfoid == ptg->tgfoid)
	{
		bool		same = true;

		for (i = 0; i < 3; i++)
			same = same && strcmp(tg->tgargs[i], ptg->tgargs[i]) == 0;
		if (same)
		{
			identity = pstrdup(tg->tgargs[0]);
			tenant_column = pstrdup(tg->tgargs[1]);
			chain_id = pg_strtoint64(tg->tgargs[2]);
		}
	}
	if (identity == NULL && tg != NULL && tg->tgnargs == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("\"%s\" was chained before it was distributed", get_rel_name(parent)),
				 errdetail("Its shards do not know the chain: a chain on Citus is enabled on the distributed table."),
				 errhint("Distribute an empty table, then run envault.enable_audit_chain() on it (docs/scale-out.md).")));
	relation_close(prel, AccessShareLock);
	relation_close(rel, AccessShareLock);
	if (identity == NULL)
		return NULL;
	if (chain_id <= 0 || chain_id > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the chain trigger of \"%s\" names no valid chain", get_rel_name(relid))));
	return ch_build_from(relid, (int32) -chain_id, identity, tenant_column, false, true);
}

#define CH_Q_REGISTERED \
	"SELECT 1 FROM envault.audit_chains WHERE tbl OPERATOR(pg_catalog.=) $1"

/* Is the relation in the registry?  (It may have been dropped already.) */
bool
env_chain_registered(Oid relid)
{
	EnvSpi		s;
	Oid			types[1] = {REGCLASSOID};
	Datum		values[1];
	bool		found;

	if (!OidIsValid(relid))
		return false;
	env_spi_begin(&s);
	values[0] = ObjectIdGetDatum(relid);
	env_spi_run(CH_Q_REGISTERED, 1, types, values, SPI_OK_SELECT);
	found = SPI_processed > 0;
	env_spi_end(&s);
	return found;
}

/*
 * The chain of a relation, or NULL if it is not chained.  Valid until the
 * next invalidation of the relation.
 */
EnvChain *
env_chain_get(Oid relid)
{
	ChCacheEntry *e;
	bool		found;

	e = hash_search(ch_cache, &relid, HASH_ENTER, &found);
	if (!found)
		e->chain = NULL;
	if (e->chain != NULL && e->chain->valid)
		return e->chain;
	if (e->chain != NULL)
	{
		MemoryContextDelete(e->chain->cxt);
		e->chain = NULL;
	}
	/* ch_build may raise: the entry stays, empty */
	e->chain = ch_build(relid);
	return e->chain;
}

EnvChain *
env_chain_require(Oid relid)
{
	EnvChain   *ch = env_chain_get(relid);

	if (ch == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not an envault audit chain",
						get_rel_name(relid) ? get_rel_name(relid) : "?"),
				 errhint("Turn it into one with envault.enable_audit_chain().")));
	return ch;
}

/*
 * The chain of a SQL function's first argument, tbl: not null, readable by
 * the caller (env_chain_check_access) and chained.
 */
EnvChain *
env_chain_arg(FunctionCallInfo fcinfo)
{
	env_arg_not_null(fcinfo, 0, "tbl");
	env_chain_check_access(PG_GETARG_OID(0), false);
	return env_chain_require(PG_GETARG_OID(0));
}

/*
 * For what a chain on Citus does not have yet: signed checkpoints and what
 * rests on them (Merkle proofs, cosigning, export, purge, retention).  A
 * distributed table's chain lives on its shards, which record no heads or
 * trees of their own; refuse, naming the function.
 */
void
env_chain_refuse_distributed(EnvChain *ch, const char *what)
{
	if (ch->sharded || env_is_citus_table(ch->relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s is not supported on distributed audit chain %s", what, ch->identity),
				 errdetail("A distributed table's chain lives on its shards, which keep no heads, anchors or retention of their own.")));
}

/*
 * For what runs on the Citus coordinator, on the distributed table: a
 * shard's chain is part of that table's, whose checkpoints the coordinator
 * keeps.
 */
void
env_chain_refuse_shard(EnvChain *ch, const char *what)
{
	if (ch->sharded)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s runs on the Citus coordinator, not on a shard of audit chain %s",
						what, ch->identity),
				 errhint("Call it on the coordinator with the distributed table.")));
}

/* The value of a tenant given as text, in the tenant column's type */
Datum
env_chain_tenant_value(EnvChain *ch, text *tenant)
{
	Oid			typinput;
	Oid			typioparam;

	getTypeInputInfo(ch->tenant_typid, &typinput, &typioparam);
	return OidInputFunctionCall(typinput, text_to_cstring(tenant), typioparam, -1);
}

/*
 * A tenant given as an argument: its value in the tenant column's type, and
 * in *t its canonical text.  NULL names the chain without tenant.
 */
Datum
env_chain_tenant_arg(EnvChain *ch, text *arg, EnvChainTenant *t)
{
	Datum		value = (Datum) 0;

	memset(t, 0, sizeof(*t));
	t->isnull = (arg == NULL);
	if (arg != NULL)
	{
		value = env_chain_tenant_value(ch, arg);
		t->text = env_canon_text(&ch->cols[ch->tenant_col].canon, value,
								 t->buf, &t->len);
		t->text = pnstrdup(t->text, t->len);
	}
	return value;
}

/* The chain's index on (tenant, envault_seq), opened, or NULL if none. */
Relation
env_chain_index_open(EnvChain *ch)
{
	if (!OidIsValid(ch->index_oid))
		return NULL;
	return index_open(ch->index_oid, AccessShareLock);
}

/* A scan key on the index's first column: this tenant, or IS NULL. */
void
env_chain_tenant_key(EnvChain *ch, ScanKey key, bool isnull, Datum value)
{
	if (isnull)
		ScanKeyEntryInitialize(key, SK_ISNULL | SK_SEARCHNULL, 1,
							   InvalidStrategy, InvalidOid, InvalidOid,
							   InvalidOid, (Datum) 0);
	else
		ScanKeyEntryInitialize(key, 0, 1, BTEqualStrategyNumber, InvalidOid,
							   ch->tenant_collation, ch->tenant_eq_proc, value);
}

/* --- row hashes ------------------------------------------------------------ */

/* one growing buffer for the bytes of a row hash, kept between rows */
static uint8 *ch_buf = NULL;
static size_t ch_buf_cap = 0;

static void
ch_buf_reserve(size_t need)
{
	if (need <= ch_buf_cap)
		return;
	if (need > MaxAllocHugeSize / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("audit chain row is too large to hash")));
	need = Max(need, Max(ch_buf_cap * 2, 1024));
	if (ch_buf == NULL)
		ch_buf = MemoryContextAllocHuge(TopMemoryContext, need);
	else
		ch_buf = repalloc_huge(ch_buf, need);
	ch_buf_cap = need;
}

void
env_chain_tenant(EnvChain *ch, Datum *values, bool *nulls, EnvChainTenant *t)
{
	EnvChainCol *c = &ch->cols[ch->tenant_col];

	t->isnull = nulls[c->attnum - 1];
	t->len = 0;
	t->text = NULL;
	if (!t->isnull)
		t->text = env_canon_text(&c->canon, values[c->attnum - 1], t->buf,
								 &t->len);
}

/*
 * SHA-256 of the canonical encoding of a row (values and nulls as
 * heap_deform_tuple gives them) as row seq of the tenant's chain.
 */
void
env_chain_row_hash(EnvChain *ch, Datum *values, bool *nulls,
				   const EnvChainTenant *t, uint64 seq, TimestampTz at,
				   const uint8 *prev, uint8 *out)
{
	char		atbuf[ENV_CANON_BUFLEN];
	size_t		atlen = env_canon_timestamp(at, true, atbuf);
	size_t		len;
	int			level = 0;
	int			i;

	len = env_chain_header_len(ch->identity_len, t->len, t->isnull, atlen);
	ch_buf_reserve(len + 64);
	(void) env_chain_put_header(ch_buf, ch->identity, ch->identity_len,
								t->text, t->len, t->isnull, seq, atbuf, atlen,
								prev, ch->columns);
	if (ch->pinned)
		level = env_canon_pin();
	for (i = 0; i < ch->ncols; i++)
	{
		EnvChainCol *c = &ch->cols[i];
		bool		isnull = nulls[c->attnum - 1];
		char		buf[ENV_CANON_BUFLEN];
		const char *v = NULL;
		size_t		vlen = 0;

		if (i == ch->tenant_col)
		{
			v = t->text;
			vlen = t->len;
		}
		else if (!isnull)
			v = env_canon_text(&c->canon, values[c->attnum - 1], buf, &vlen);
		ch_buf_reserve(len + ENV_CHAIN_OPT_LEN(vlen, isnull));
		len = (size_t) (env_chain_put_opt(ch_buf + len, v, vlen, isnull) - ch_buf);
	}
	if (ch->pinned)
		env_canon_unpin(level);
	if (!env_sha256(ch_buf, len, out))
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "hashing an audit chain row");
}

/* --- per-tenant heads and their locks -------------------------------------- */

typedef struct ChHeadKey
{
	uint64		lock_key;
	int32		chain_id;
	int32		pad;
} ChHeadKey;

/* A head as it was before a subtransaction changed it */
typedef struct ChSaved
{
	SubTransactionId subxid;
	int64		seq;
	uint8		hash[ENV_CHAIN_HASH_LEN];
	struct ChSaved *next;		/* older */
} ChSaved;

typedef struct ChHead
{
	ChHeadKey	key;			/* hash key */
	Oid			relid;
	char	   *tenant;			/* canonical text, in TopTransactionContext */
	size_t		tenant_len;
	bool		tenant_null;
	SubTransactionId lock_subxid;	/* holds the lock since; 0: does not */
	bool		dirty;			/* not yet written to envault.chain_heads */
	ItemPointerData tid;		/* of that row's current version, if known */
	int64		seq;			/* the head: 0 for an empty chain */
	uint8		hash[ENV_CHAIN_HASH_LEN];
	ChSaved    *saved;			/* newest first */
} ChHead;

/*
 * The heads this transaction locked.  The table lives as long as the
 * backend and is emptied at the end of each transaction (creating one per
 * transaction cost a single-row chained insert about a tenth of what
 * chaining adds to it); what its entries point to is in
 * TopTransactionContext.
 */
static HTAB *ch_heads = NULL;

static uint64
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
static Relation
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
static void
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
static ChHead *
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
static void
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
static void
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
static void
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

static void
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
			ch_purging = InvalidOid;
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
static void
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
 * SQL function: envault.chain_store_heads() returns trigger
 *               (and envault.chain_heads(), its name before 0.3.0)
 *
 * AFTER INSERT FOR EACH STATEMENT on a chained table: write the heads the
 * statement advanced to envault.chain_heads, once per tenant.
 */
PG_FUNCTION_INFO_V1(envault_chain_store_heads);
Datum
envault_chain_store_heads(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("envault.chain_store_heads() must run as an AFTER FOR EACH STATEMENT trigger")));
	ch_store_heads(RelationGetRelid(td->tg_relation));
	return PointerGetDatum(NULL);
}

/* --- triggers -------------------------------------------------------------- */

static bytea *
ch_bytea(const uint8 *data, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return b;
}

static bool
ch_bytea_is(Datum d, const uint8 *want)
{
	bytea	   *b = DatumGetByteaPP(d);

	return VARSIZE_ANY_EXHDR(b) == ENV_CHAIN_HASH_LEN &&
		memcmp(VARDATA_ANY(b), want, ENV_CHAIN_HASH_LEN) == 0;
}

/*
 * SQL function: envault.chain_insert() returns trigger
 *
 * BEFORE INSERT FOR EACH ROW on a chained table: link the row to its
 * tenant's chain.  Chain values given by the inserter are replaced, except
 * that a superuser may supply exactly the values the chain expects next
 * (seq, prev and a hash that matches the row with its envault_at): that is
 * how pg_restore reloads envault's own chained tables, row by row in order,
 * keeping their times.
 */
PG_FUNCTION_INFO_V1(envault_chain_insert);
Datum
envault_chain_insert(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	EnvChain   *ch;
	HeapTuple	tup;
	Datum	   *values;
	bool	   *nulls;
	EnvChainTenant t;
	ChHead	   *h;
	uint64		seq;
	TimestampTz at;
	uint8		hash[ENV_CHAIN_HASH_LEN];
	bool		supplied;
	uint8		prev[ENV_CHAIN_HASH_LEN];

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("envault.chain_insert() must run as a BEFORE INSERT FOR EACH ROW trigger")));
	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	ch = env_chain_require(RelationGetRelid(rel));
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	if (td->tg_trigslot != NULL)
	{
		/* the executor's slot has the values already (or deforms once) */
		slot_getallattrs(td->tg_trigslot);
		memcpy(values, td->tg_trigslot->tts_values, sizeof(Datum) * desc->natts);
		memcpy(nulls, td->tg_trigslot->tts_isnull, sizeof(bool) * desc->natts);
	}
	else
		heap_deform_tuple(td->tg_trigtuple, desc, values, nulls);

	env_chain_tenant(ch, values, nulls, &t);
	h = ch_head(ch, &t);
	if (h->seq == PG_INT64_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("audit chain %s is full", ch->identity)));
	seq = (uint64) h->seq + 1;
	at = GetCurrentTimestamp();

	memcpy(prev, h->hash, ENV_CHAIN_HASH_LEN);

	/*
	 * Values a superuser supplies (a restore) are kept if they are the next
	 * link, or, on a chain that has no row yet, a link that starts it where
	 * the dumped chain started: after a purge, at its anchor.  Either way the
	 * hash must match the row; verification checks the start against the
	 * anchor.
	 */
	supplied = !nulls[ch->seq_attnum - 1] && !nulls[ch->at_attnum - 1] &&
		!nulls[ch->prev_attnum - 1] && !nulls[ch->hash_attnum - 1] &&
		superuser();
	if (supplied)
	{
		int64		sseq = DatumGetInt64(values[ch->seq_attnum - 1]);
		bytea	   *sprev = DatumGetByteaPP(values[ch->prev_attnum - 1]);

		if (sseq == (int64) seq && ch_bytea_is(values[ch->prev_attnum - 1], h->hash))
			supplied = true;
		else if (h->seq == 0 && sseq > 0 &&
				 VARSIZE_ANY_EXHDR(sprev) == ENV_CHAIN_HASH_LEN)
		{
			seq = (uint64) sseq;
			memcpy(prev, VARDATA_ANY(sprev), ENV_CHAIN_HASH_LEN);
		}
		else
			supplied = false;
	}
	if (supplied)
	{
		env_chain_row_hash(ch, values, nulls, &t, seq,
						   DatumGetTimestampTz(values[ch->at_attnum - 1]),
						   prev, hash);
		supplied = ch_bytea_is(values[ch->hash_attnum - 1], hash);
		if (supplied)
			at = DatumGetTimestampTz(values[ch->at_attnum - 1]);
		else
		{
			/* not a link of this chain: the row gets the next one */
			seq = (uint64) h->seq + 1;
			memcpy(prev, h->hash, ENV_CHAIN_HASH_LEN);
		}
	}
	if (!supplied)
		env_chain_row_hash(ch, values, nulls, &t, seq, at, prev, hash);

	/* the row with its chain values, formed once */
	values[ch->seq_attnum - 1] = Int64GetDatum((int64) seq);
	values[ch->at_attnum - 1] = TimestampTzGetDatum(at);
	values[ch->prev_attnum - 1] = PointerGetDatum(ch_bytea(prev, ENV_CHAIN_HASH_LEN));
	values[ch->hash_attnum - 1] = PointerGetDatum(ch_bytea(hash, ENV_CHAIN_HASH_LEN));
	nulls[ch->seq_attnum - 1] = false;
	nulls[ch->at_attnum - 1] = false;
	nulls[ch->prev_attnum - 1] = false;
	nulls[ch->hash_attnum - 1] = false;
	tup = heap_form_tuple(desc, values, nulls);

	ch_advance(h, (int64) seq, hash);
	return PointerGetDatum(tup);
}

/*
 * SQL function: envault.chain_refuse() returns trigger
 *
 * BEFORE UPDATE OR DELETE FOR EACH ROW and BEFORE TRUNCATE on a chained
 * table: refuse, for every role.  envault.purge_chain() alone deletes.
 */
PG_FUNCTION_INFO_V1(envault_chain_refuse);
Datum
envault_chain_refuse(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("envault.chain_refuse() must run as a trigger")));
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event) &&
		RelationGetRelid(td->tg_relation) == ch_purging)
		return PointerGetDatum(td->tg_trigtuple);
	op = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? "UPDATE" :
		TRIGGER_FIRED_BY_DELETE(td->tg_event) ? "DELETE" : "TRUNCATE";
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("audit chain \"%s\" is append-only",
					RelationGetRelationName(td->tg_relation)),
			 errdetail("%s is refused for every role, the table's owner included.", op),
			 errhint("Old rows can be removed up to a signed checkpoint with envault.purge_chain().")));
	return (Datum) 0;			/* keep compiler quiet */
}

/*
 * SQL function: envault.append_only() returns trigger
 *
 * BEFORE UPDATE OR DELETE FOR EACH ROW and BEFORE TRUNCATE on envault's
 * checkpoint tables: refuse, but for envault.disable_audit_chain().
 */
PG_FUNCTION_INFO_V1(envault_append_only);
Datum
envault_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("envault.append_only() must run as a trigger")));
	if (ch_internal > 0 && TRIGGER_FIRED_BY_DELETE(td->tg_event))
		return PointerGetDatum(td->tg_trigtuple);
	op = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? "UPDATE" :
		TRIGGER_FIRED_BY_DELETE(td->tg_event) ? "DELETE" : "TRUNCATE";
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("envault.%s is append-only",
					RelationGetRelationName(td->tg_relation)),
			 errdetail("%s is refused for every role.", op)));
	return (Datum) 0;			/* keep compiler quiet */
}

/*
 * May the current user read (or, with owner, own) a chained table?  Rows are
 * read below the executor, so privileges and row-level security are checked
 * here: a caller to whom row-level security applies is refused outright.
 */
void
env_chain_check_access(Oid relid, bool owner)
{
	char	   *name = get_rel_name(relid);

	if (owner ? !env_class_ownercheck(relid, GetUserId()) :
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(owner ? ACLCHECK_NOT_OWNER : ACLCHECK_NO_PRIV, OBJECT_TABLE,
					   name ? name : "?");
	if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("row-level security of table \"%s\" applies to the current role", name),
				 errdetail("Checking or exporting an audit chain reads every row of it."),
				 errhint("Run it as the table's owner, or as a role with BYPASSRLS.")));
}

/*
 * INSERT ... ON CONFLICT could skip a row after the trigger linked it,
 * leaving a gap in its chain: refuse it on chained tables.
 */
static bool
ch_has_chain_trigger(Oid relid)
{
	Relation	rel = table_open(relid, NoLock);
	bool		found = ch_chain_trigger(rel) != NULL;

	table_close(rel, NoLock);
	return found;
}

/*
 * The chained table an insert into relid can reach: relid itself, or a
 * partition of it (rows inserted into a partitioned table are routed to
 * its partitions at run time).  InvalidOid if none.
 */
static Oid
ch_reaches_chain(Oid relid)
{
	List	   *all;
	ListCell   *lc;
	Oid			found = InvalidOid;

	if (ch_has_chain_trigger(relid))
		return relid;
	if (get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE)
		return InvalidOid;
	all = find_all_inheritors(relid, AccessShareLock, NULL);
	foreach(lc, all)
	{
		if (lfirst_oid(lc) != relid && ch_has_chain_trigger(lfirst_oid(lc)))
		{
			found = lfirst_oid(lc);
			break;
		}
	}
	list_free(all);
	return found;
}

static void
ch_executor_start(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *stmt = queryDesc->plannedstmt;

	/*
	 * Every INSERT of the statement: the top-level one, and those of
	 * data-modifying WITH queries (each the top node of its subplan).
	 */
	if ((stmt->commandType == CMD_INSERT || stmt->hasModifyingCTE) &&
		!(eflags & EXEC_FLAG_EXPLAIN_ONLY))
	{
		List	   *plans = lcons(stmt->planTree, list_copy(stmt->subplans));
		ListCell   *lp;

		foreach(lp, plans)
		{
			Plan	   *plan = lfirst(lp);
			ListCell   *lc;

			if (plan == NULL || !IsA(plan, ModifyTable) ||
				((ModifyTable *) plan)->operation != CMD_INSERT ||
				((ModifyTable *) plan)->onConflictAction == ONCONFLICT_NONE)
				continue;
			foreach(lc, ((ModifyTable *) plan)->resultRelations)
			{
				RangeTblEntry *rte = rt_fetch(lfirst_int(lc), stmt->rtable);
				Oid			chained = ch_reaches_chain(rte->relid);

				if (OidIsValid(chained))
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("INSERT ... ON CONFLICT is not supported on audit chain \"%s\"",
									get_rel_name(chained)),
							 errdetail("A row skipped after it was linked would leave a gap in its chain.")));
			}
		}
		list_free(plans);
	}
	if (ch_prev_executor_start)
		ch_prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/* --- enabling and disabling ------------------------------------------------ */

/*
 * A column whose type is a temporary one (a domain in pg_temp, say) would
 * vanish with the session that created the type, changing what the chain's
 * rows hash to without any DDL the guards could refuse.
 */
static void
ch_refuse_temp_types(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);
		HeapTuple	tup;
		Oid			nsp;

		if (a->attisdropped)
			continue;
		tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(a->atttypid));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for type %u", a->atttypid);
		nsp = ((Form_pg_type) GETSTRUCT(tup))->typnamespace;
		ReleaseSysCache(tup);
		if (isAnyTempNamespace(nsp))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("column \"%s\" of \"%s\" has a temporary type",
							NameStr(a->attname), RelationGetRelationName(rel)),
					 errdetail("The column would be dropped with the type at the end of the session that created it.")));
	}
}

/*
 * SPI as the caller (enabling and disabling a chain needs the table's
 * owner, not envault's), with search_path pinned as env_spi_begin pins it:
 * the DDL below names its types and functions by schema, and a caller's
 * schemas or temporary objects must not stand in for them.  Returns the
 * GUC nest level for ch_spi_finish.
 */
static int
ch_spi_connect(void)
{
	return env_caller_spi_begin();
}

static void
ch_spi_finish(int level)
{
	env_caller_spi_end(level);
}

static void
ch_exec(const char *sql, int expect)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expect)
		elog(ERROR, "envault audit chain setup failed: %s: %s",
			 SPI_result_code_string(rc), sql);
}

#define CH_Q_REGISTER \
	"INSERT INTO envault.audit_chains (tbl, identity, tenant_column, builtin, enabled_by," \
	" columns_meaning) VALUES ($1, $2, $3, $4, $5, $6) RETURNING chain_id"
#define CH_Q_REGISTER_0_2 \
	"INSERT INTO envault.audit_chains (tbl, identity, tenant_column, builtin, enabled_by)" \
	" VALUES ($1, $2, $3, $4, $5) RETURNING chain_id"

/* A head while existing rows are linked */
typedef struct BfHead
{
	uint64		key;			/* hash key */
	int64		seq;
	uint8		hash[ENV_CHAIN_HASH_LEN];	/* of the newest row so far */
	text	   *tenant;			/* canonical text, NULL for no tenant */
} BfHead;

/*
 * Link the rows a table already holds, in their physical order, tenant by
 * tenant, all with the current time as envault_at.  Runs before the chain's
 * triggers and index exist.
 */
static int64
ch_backfill(Oid relid, const char *qualified)
{
	EnvChain   *ch = env_chain_get(relid);
	Relation	rel = table_open(relid, AccessExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());

	/* from the first page: a synchronized scan could start anywhere */
	TableScanDesc scan = table_beginscan_strat(rel, snap, 0, NULL, true, false);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	HASHCTL		ctl;
	HTAB	   *heads;
	SPIPlanPtr	plan;
	Oid			types[5] = {INT8OID, TIMESTAMPTZOID, BYTEAOID, BYTEAOID, TIDOID};
	char	   *sql;
	TimestampTz at = GetCurrentTimestamp();
	int64		n = 0;
	EnvOwner	owner;
	MemoryContext rowcxt = AllocSetContextCreate(CurrentMemoryContext,
												 "envault chain backfill",
												 ALLOCSET_DEFAULT_SIZES);

	sql = psprintf("UPDATE ONLY %s SET " ENV_CHAIN_SEQ_COL " = $1, "
				   ENV_CHAIN_AT_COL " = $2, " ENV_CHAIN_PREV_COL " = $3, "
				   ENV_CHAIN_HASH_COL " = $4 WHERE ctid OPERATOR(pg_catalog.=) $5",
				   qualified);
	plan = SPI_prepare(sql, 5, types);
	if (plan == NULL)
		elog(ERROR, "could not prepare the audit chain backfill");

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(BfHead);
	ctl.hcxt = CurrentMemoryContext;
	heads = hash_create("envault chain backfill heads", 64, &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	/*
	 * The updates run the table's code (index expressions, constraints,
	 * statement triggers, rules): as its owner, also when a superuser enables
	 * the chain.
	 */
	env_owner_begin(&owner, relid, true);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		MemoryContext old = MemoryContextSwitchTo(rowcxt);
		EnvChainTenant t;
		uint64		key;
		BfHead	   *bh;
		bool		found;
		int64	   *seq;
		uint8	   *prev;
		uint8		hash[ENV_CHAIN_HASH_LEN];
		Datum		values[5];
		bool		isnull;

		slot_getallattrs(slot);
		env_chain_tenant(ch, slot->tts_values, slot->tts_isnull, &t);
		key = ch_lock_key(ch->chain_id, &t);
		bh = hash_search(heads, &key, HASH_ENTER, &found);
		seq = &bh->seq;
		prev = bh->hash;
		if (!found)
		{
			MemoryContext hold = MemoryContextSwitchTo(old);

			*seq = 0;
			memcpy(prev, env_chain_genesis, ENV_CHAIN_HASH_LEN);
			bh->tenant = t.isnull ? NULL : cstring_to_text_with_len(t.text, t.len);
			MemoryContextSwitchTo(hold);
		}
		(*seq)++;
		env_chain_row_hash(ch, slot->tts_values, slot->tts_isnull, &t,
						   (uint64) *seq, at, prev, hash);
		values[0] = Int64GetDatum(*seq);
		values[1] = TimestampTzGetDatum(at);
		values[2] = PointerGetDatum(ch_bytea(prev, ENV_CHAIN_HASH_LEN));
		values[3] = PointerGetDatum(ch_bytea(hash, ENV_CHAIN_HASH_LEN));
		values[4] = PointerGetDatum(&slot->tts_tid);
		if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_UPDATE ||
			SPI_processed != 1)
			elog(ERROR, "could not link an existing row to its audit chain");
		memcpy(prev, hash, ENV_CHAIN_HASH_LEN);
		n++;
		(void) isnull;
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
	env_owner_end(&owner);
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, NoLock);
	SPI_freeplan(plan);
	(void) desc;

	/* the heads, as the insert trigger would have left them */
	{
		HASH_SEQ_STATUS status;
		char	   *e;
		Oid			index;
		Relation	hrel = ch_heads_open(RowExclusiveLock, &index);

		hash_seq_init(&status, heads);
		while ((e = hash_seq_search(&status)) != NULL)
		{
			BfHead	   *bh = (BfHead *) e;

			ch_heads_put(hrel, index, ch->chain_id,
						 bh->tenant ? VARDATA_ANY(bh->tenant) : NULL,
						 bh->tenant ? VARSIZE_ANY_EXHDR(bh->tenant) : 0,
						 bh->tenant == NULL, bh->seq, bh->hash, ch->builtin, NULL);
		}
		table_close(hrel, RowExclusiveLock);
		CommandCounterIncrement();
	}
	return n;
}

#define CH_Q_CITUS_TABLE \
	"SELECT p.partmethod OPERATOR(pg_catalog.=) 'h'," \
	"       pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)" \
	"  FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1"

/*
 * Is this Citus table distributed by hash of the tenant column, so that
 * each tenant's rows, and so its whole chain, live on one shard, where one
 * lock orders its writers?
 */
static void
ch_citus_check_distribution(Oid relid, const char *relname, const char *tenant_column)
{
	Oid			types[1] = {REGCLASSOID};
	Datum		values[1];
	bool		isnull;
	bool		hash;
	char	   *column;
	EnvSpi		s;

	env_spi_begin(&s);
	values[0] = ObjectIdGetDatum(relid);
	env_spi_run(CH_Q_CITUS_TABLE, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "\"%s\" is not in pg_dist_partition", relname);
	hash = DatumGetBool(env_spi_col(&s, 1, &isnull, true, 1)) && !isnull;
	column = env_spi_cstring(&s, 2, &isnull);
	env_spi_end(&s);
	if (!hash || isnull)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("\"%s\" is a Citus table that is not distributed by hash", relname),
				 errdetail("A chain on Citus lives on the shard of each tenant; reference and local tables have none."),
				 errhint("Distribute the table by its tenant column with create_distributed_table().")));
	if (strcmp(column, tenant_column) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("\"%s\" is distributed by column \"%s\", not by tenant column \"%s\"",
						relname, column, tenant_column),
				 errdetail("Each tenant's chain must live on one shard, where one lock orders its writers.")));
}

/*
 * Can this Citus table be chained?  It must be distributed by the tenant
 * column, and have no rows yet (read through Citus, from the shards):
 * existing rows of a distributed table are not linked.
 */
static bool
ch_citus_check(Oid relid, const char *relname, const char *tenant_column)
{
	bool		has_rows;
	int			level;

	ch_citus_check_distribution(relid, relname, tenant_column);

	/* read as the caller, who owns the table */
	level = ch_spi_connect();
	ch_exec(psprintf("SELECT FROM %s LIMIT 1",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid))),
			SPI_OK_SELECT);
	has_rows = SPI_processed > 0;
	ch_spi_finish(level);
	if (has_rows)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("distributed table \"%s\" has rows", relname),
				 errdetail("Existing rows of a distributed table are not linked; the chain starts with the first row."),
				 errhint("Enable the chain on the empty table, right after create_distributed_table().")));
	return false;
}

/*
 * Inside ch_spi_connect(): let Citus create or drop triggers on the shards
 * of a distributed table (citus.enable_unsafe_triggers, for this command
 * only: envault's triggers touch nothing but the shard they fire on), and,
 * with a table, create the unique index on (tenant, envault_seq) through
 * which a shard finds a tenant's newest row and that refuses a fork.
 */
static void
ch_citus_prepare(const char *qualified, const char *tenant_column)
{
	(void) set_config_option("citus.enable_unsafe_triggers", "on",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	if (qualified != NULL)
		ch_exec(psprintf("CREATE UNIQUE INDEX ON %s (%s, " ENV_CHAIN_SEQ_COL ")",
						 qualified, quote_identifier(tenant_column)),
				SPI_OK_UTILITY);
}

static bool
ch_has_update_triggers(Relation rel)
{
	TriggerDesc *td = rel->trigdesc;

	return td != NULL && (td->trig_update_before_row || td->trig_update_after_row ||
						  td->trig_update_instead_row);
}

/*
 * enable_audit_chain(), first step: may this table be chained by this
 * column?  Refuses what cannot be, before anything changes; returns
 * whether the table has rows to link.  The caller holds the table open.
 */
static bool
ch_enable_check(Relation rel, const char *tenant_column, bool distributed)
{
	Oid			relid = RelationGetRelid(rel);
	const char *relname = RelationGetRelationName(rel);
	const char *const chain_cols[4] = {ENV_CHAIN_SEQ_COL, ENV_CHAIN_AT_COL,
	ENV_CHAIN_PREV_COL, ENV_CHAIN_HASH_COL};
	AttrNumber	tatt;
	volatile bool has_rows;
	int			i;

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not an ordinary table", relname),
				 errdetail("Only ordinary tables can be audit chains; partitioned tables, views and foreign tables cannot.")));
	if (rel->rd_rel->relispartition)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is a partition", relname),
				 errdetail("Rows reach a partition through its parent, whose DDL, triggers and INSERT ... ON CONFLICT would apply to the chain."),
				 errhint("Chain a table that is not a partition.")));
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a permanent table", relname),
				 errdetail("An audit chain must survive a crash: temporary and unlogged tables cannot be chained.")));
	if (!env_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, relname);
	if (env_chain_get(relid) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("\"%s\" is already an envault audit chain", relname)));
	tatt = get_attnum(relid, tenant_column);
	if (tatt == InvalidAttrNumber || tatt < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						tenant_column, relname)));
	for (i = 0; i < 4; i++)
		if (get_attnum(relid, chain_cols[i]) != InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("column \"%s\" of relation \"%s\" already exists",
							chain_cols[i], relname),
					 errdetail("An audit chain adds the columns %s, %s, %s and %s.",
							   ENV_CHAIN_SEQ_COL, ENV_CHAIN_AT_COL,
							   ENV_CHAIN_PREV_COL, ENV_CHAIN_HASH_COL)));

	/*
	 * every column must have a canonical form: refuse reg* types early, also
	 * inside arrays, composites, domains and ranges
	 */
	(void) env_chain_meaning_of(rel);
	for (i = 0; i < RelationGetDescr(rel)->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(RelationGetDescr(rel), i);
		EnvCanon	c;

		if (!a->attisdropped && !a->attgenerated)
			env_canon_init(&c, a->atttypid, NameStr(a->attname));
		if (a->attnum == tatt && a->attgenerated)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_COLUMN_DEFINITION),
					 errmsg("tenant column \"%s\" must not be a generated column",
							tenant_column)));
	}
	if (distributed)
		has_rows = ch_citus_check(relid, relname, tenant_column);
	else
	{
		TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);

		has_rows = heap_getnext(scan, ForwardScanDirection) != NULL;
		table_endscan(scan);
	}
	if (has_rows && ch_has_update_triggers(rel))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("\"%s\" has rows and row-level UPDATE triggers", relname),
				 errdetail("Linking the existing rows updates each of them, which would fire those triggers."),
				 errhint("Disable the UPDATE triggers while the chain is enabled, or enable the chain on the empty table.")));
	ch_refuse_temp_types(rel);
	return has_rows;
}

/*
 * enable_audit_chain(), second step, inside ch_spi_connect(): add the chain
 * columns and register the chain with what its columns mean; returns its
 * chain_id.
 */
static int32
ch_enable_register(Oid relid, const char *qualified, const char *identity,
				   Name tenant_column, bool builtin)
{
	EnvSpi		s;
	Oid			types[6] = {REGCLASSOID, TEXTOID, NAMEOID, BOOLOID, NAMEOID, TEXTOID};
	Datum		values[6];
	Relation	rel;
	char	   *meaning;
	bool		isnull;
	int32		chain_id;

	ch_exec(psprintf("ALTER TABLE %s ADD COLUMN " ENV_CHAIN_SEQ_COL " pg_catalog.int8,"
					 " ADD COLUMN " ENV_CHAIN_AT_COL " pg_catalog.timestamptz,"
					 " ADD COLUMN " ENV_CHAIN_PREV_COL " pg_catalog.bytea,"
					 " ADD COLUMN " ENV_CHAIN_HASH_COL " pg_catalog.bytea", qualified),
			SPI_OK_UTILITY);
	CommandCounterIncrement();
	rel = relation_open(relid, NoLock);
	meaning = env_chain_meaning_of(rel);
	relation_close(rel, NoLock);

	env_spi_begin(&s);
	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(identity);
	values[2] = NameGetDatum(tenant_column);
	values[3] = BoolGetDatum(builtin);
	values[4] = CStringGetDatum(s.caller_name);
	values[5] = CStringGetTextDatum(meaning);
	/* (0.1.0's upgrade to 0.2.0 chains key_events before 0.3.0 adds it) */
	if (env_schema_has("audit_chains", "columns_meaning"))
		env_spi_run(CH_Q_REGISTER, 6, types, values, SPI_OK_INSERT_RETURNING);
	else
		env_spi_run(CH_Q_REGISTER_0_2, 5, types, values, SPI_OK_INSERT_RETURNING);
	chain_id = DatumGetInt32(env_spi_col(&s, 1, &isnull, true, 4));
	env_spi_end(&s);
	CommandCounterIncrement();
	CacheInvalidateRelcacheByRelid(relid);
	ch_relcache_callback((Datum) 0, relid);
	return chain_id;
}

/*
 * enable_audit_chain(), last step, inside ch_spi_connect(), after the rows
 * are linked: the chain columns become NOT NULL, and the triggers that
 * link new rows, refuse changes and (but on Citus) write the heads.  On a
 * distributed table, the chain trigger names the chain, for the shards.
 */
static void
ch_enable_triggers(const char *qualified, const char *identity,
				   const char *tenant_column, int32 chain_id, bool distributed)
{
	ch_exec(psprintf("ALTER TABLE %s ALTER COLUMN " ENV_CHAIN_SEQ_COL " SET NOT NULL,"
					 " ALTER COLUMN " ENV_CHAIN_AT_COL " SET NOT NULL,"
					 " ALTER COLUMN " ENV_CHAIN_PREV_COL " SET NOT NULL,"
					 " ALTER COLUMN " ENV_CHAIN_HASH_COL " SET NOT NULL",
					 qualified), SPI_OK_UTILITY);
	if (distributed)
		ch_citus_prepare(qualified, tenant_column);
	ch_exec(psprintf("CREATE TRIGGER " ENV_CHAIN_TRIGGER " BEFORE INSERT ON %s"
					 " FOR EACH ROW EXECUTE FUNCTION envault.chain_insert(%s)", qualified,
					 distributed ?
					 psprintf("%s, %s, '%d'", quote_literal_cstr(identity),
							  quote_literal_cstr(tenant_column), chain_id) : ""),
			SPI_OK_UTILITY);
	ch_exec(psprintf("CREATE TRIGGER " ENV_CHAIN_TRIGGER "_refuse BEFORE UPDATE OR DELETE ON %s"
					 " FOR EACH ROW EXECUTE FUNCTION envault.chain_refuse()", qualified),
			SPI_OK_UTILITY);
	ch_exec(psprintf("CREATE TRIGGER " ENV_CHAIN_TRIGGER "_truncate BEFORE TRUNCATE ON %s"
					 " FOR EACH STATEMENT EXECUTE FUNCTION envault.chain_refuse()", qualified),
			SPI_OK_UTILITY);

	/*
	 * a shard's heads are its newest rows (ch_load_tail); the trigger
	 * function's name before 0.3.0, for the upgrade scripts from 0.1.0
	 */
	if (!distributed)
		ch_exec(psprintf("CREATE TRIGGER " ENV_CHAIN_TRIGGER "_heads AFTER INSERT ON %s"
						 " FOR EACH STATEMENT EXECUTE FUNCTION envault.%s()", qualified,
						 OidIsValid(LookupFuncName(list_make2(makeString("envault"),
															  makeString("chain_store_heads")),
												   0, NULL, true)) ?
						 "chain_store_heads" : "chain_heads"),
				SPI_OK_UTILITY);
}

/*
 * SQL function: envault.enable_audit_chain(tbl regclass, tenant_column name)
 *               returns bigint
 *
 * Turn an ordinary table into a chained one; returns how many existing rows
 * were linked.  The caller must own the table.
 */
PG_FUNCTION_INFO_V1(envault_enable_audit_chain);
Datum
envault_enable_audit_chain(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Name		tenant_column;
	Relation	rel;
	char	   *nspname;
	char	   *qualified;
	char	   *identity;
	bool		has_rows;
	bool		distributed;
	bool		builtin;
	volatile int64 linked = 0;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", PG_ARGISNULL(0) ? "tbl" : "tenant_column")));
	relid = PG_GETARG_OID(0);
	tenant_column = PG_GETARG_NAME(1);

	rel = table_open(relid, AccessExclusiveLock);
	nspname = get_namespace_name(RelationGetNamespace(rel));
	qualified = quote_qualified_identifier(nspname, RelationGetRelationName(rel));
	distributed = env_is_citus_table(relid);
	has_rows = ch_enable_check(rel, NameStr(*tenant_column), distributed);
	table_close(rel, NoLock);

	/* the chain's name as its rows hash it: the table's, now */
	identity = qualified;
	builtin = creating_extension && strcmp(nspname, "envault") == 0;

	ch_internal++;
	PG_TRY();
	{
		int			level = ch_spi_connect();
		int32		chain_id = ch_enable_register(relid, qualified, identity,
												  tenant_column, builtin);

		if (has_rows)
			linked = ch_backfill(relid, qualified);
		ch_enable_triggers(qualified, identity, NameStr(*tenant_column), chain_id,
						   distributed);
		ch_spi_finish(level);
	}
	PG_FINALLY();
	{
		ch_internal--;
	}
	PG_END_TRY();
	CacheInvalidateRelcacheByRelid(relid);
	ch_relcache_callback((Datum) 0, relid);

	if (!builtin)
	{
		EnvSpi		s;
		char	   *detail = psprintf("%s by tenant column %s; " INT64_FORMAT " existing rows linked",
									  identity, quote_identifier(NameStr(*tenant_column)),
									  linked);

		env_spi_begin(&s);
		env_key_event(&s, "audit chain enabled", NULL, NULL, -1, detail);
		env_spi_end(&s);
	}
	PG_RETURN_INT64(linked);
}

#define CH_Q_FORGET_LOCAL \
	"WITH h AS (DELETE FROM envault.chain_heads WHERE chain_id OPERATOR(pg_catalog.=) $1)," \
	"     t AS (DELETE FROM envault.chain_trees WHERE chain_id OPERATOR(pg_catalog.=) $1)" \
	" DELETE FROM envault.chain_nodes WHERE chain_id OPERATOR(pg_catalog.=) $1"
#define CH_Q_ANCHORED \
	"SELECT 1 FROM envault.chain_anchors WHERE chain_id OPERATOR(pg_catalog.=) $1"

/*
 * SQL function: envault.distribute_audit_chain(tbl regclass,
 *                                              shard_count integer)
 *               returns bigint
 *
 * On a Citus coordinator: distribute a chained table by its tenant column,
 * its chain with it; returns how many rows went to the shards.  Citus
 * copies the rows with their chain columns as they are: the triggers come
 * off for the copy, and go back on as enable_audit_chain() puts them on a
 * distributed table (the chain trigger naming the chain, the unique index
 * on (tenant, envault_seq)).  The chain keeps its identity and checkpoints;
 * the coordinator's heads and stored trees of it go, as the shards' rows
 * are its heads now.  All in one transaction.  The caller must own the
 * table.
 */
PG_FUNCTION_INFO_V1(envault_distribute_audit_chain);
Datum
envault_distribute_audit_chain(PG_FUNCTION_ARGS)
{
	Oid			relid;
	EnvChain   *ch;
	char	   *relname;
	char	   *qualified;
	char	   *identity;
	char	   *tenant_column;
	int32		chain_id;
	volatile int64 rows = 0;
	EnvSpi		s;
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	bool		anchored;

	env_arg_not_null(fcinfo, 0, "tbl");
	relid = PG_GETARG_OID(0);
	relname = get_rel_name(relid);
	if (!OidIsValid(get_extension_oid("citus", true)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("Citus is not installed in this database")));
	if (!env_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, relname ? relname : "?");
	ch = env_chain_require(relid);
	if (ch->builtin)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("envault's own audit chain %s stays on the coordinator", ch->identity)));
	if (env_is_citus_table(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("\"%s\" is a Citus table already", relname)));
	chain_id = ch->chain_id;
	identity = pstrdup(ch->identity);
	tenant_column = pstrdup(get_attname(relid, ch->tenant_attnum, false));
	qualified = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										   relname);

	/* a shard knows no anchor: a purged chain must stay where it is */
	env_spi_begin(&s);
	values[0] = Int32GetDatum(chain_id);
	env_spi_run(CH_Q_ANCHORED, 1, types, values, SPI_OK_SELECT);
	anchored = SPI_processed > 0;
	env_spi_end(&s);
	if (anchored)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("audit chain %s has been purged", identity),
				 errdetail("A chain on Citus starts at its first row; purge_chain() removed some.")));

	ch_internal++;
	PG_TRY();
	{
		int			level = ch_spi_connect();
		bool		isnull;

		ch_exec(psprintf("DROP TRIGGER " ENV_CHAIN_TRIGGER " ON %s", qualified), SPI_OK_UTILITY);
		ch_exec(psprintf("DROP TRIGGER " ENV_CHAIN_TRIGGER "_refuse ON %s", qualified), SPI_OK_UTILITY);
		ch_exec(psprintf("DROP TRIGGER " ENV_CHAIN_TRIGGER "_truncate ON %s", qualified), SPI_OK_UTILITY);
		ch_exec(psprintf("DROP TRIGGER IF EXISTS " ENV_CHAIN_TRIGGER "_heads ON %s", qualified),
				SPI_OK_UTILITY);
		ch_exec(psprintf("SELECT pg_catalog.create_distributed_table(%s::pg_catalog.regclass, %s%s)",
						 quote_literal_cstr(qualified), quote_literal_cstr(tenant_column),
						 PG_ARGISNULL(1) ? "" :
						 psprintf(", shard_count => %d", PG_GETARG_INT32(1))),
				SPI_OK_SELECT);
		ch_exec(psprintf("SELECT pg_catalog.truncate_local_data_after_distributing_table(%s::pg_catalog.regclass)",
						 quote_literal_cstr(qualified)), SPI_OK_SELECT);
		ch_citus_check_distribution(relid, relname, tenant_column);
		ch_enable_triggers(qualified, identity, tenant_column, chain_id, true);
		ch_exec(psprintf("SELECT pg_catalog.count(*) FROM %s", qualified), SPI_OK_SELECT);
		rows = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										   1, &isnull));
		ch_spi_finish(level);
	}
	PG_FINALLY();
	{
		ch_internal--;
	}
	PG_END_TRY();

	env_spi_begin(&s);
	env_spi_run(CH_Q_FORGET_LOCAL, 1, types, values, SPI_OK_DELETE);
	env_key_event(&s, "audit chain distributed", NULL, NULL, -1,
				  psprintf("%s by tenant column %s; " INT64_FORMAT " rows on the shards",
						   identity, quote_identifier(tenant_column), rows));
	env_spi_end(&s);
	CacheInvalidateRelcacheByRelid(relid);
	ch_relcache_callback((Datum) 0, relid);
	PG_RETURN_INT64(rows);
}

#define CH_Q_UNREGISTER \
	"WITH c AS (SELECT chain_id FROM envault.audit_chains" \
	"            WHERE tbl OPERATOR(pg_catalog.=) $1)," \
	"     a AS (DELETE FROM envault.chain_anchors WHERE chain_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT chain_id FROM c)))," \
	"     h AS (DELETE FROM envault.chain_heads WHERE chain_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT chain_id FROM c)))," \
	"     t AS (DELETE FROM envault.chain_trees WHERE chain_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT chain_id FROM c)))," \
	"     n AS (DELETE FROM envault.chain_nodes WHERE chain_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT chain_id FROM c)))," \
	"     w AS (DELETE FROM envault.checkpoint_cosignatures WHERE checkpoint_id OPERATOR(pg_catalog.=) ANY (ARRAY(" \
	"             SELECT checkpoint_id FROM envault.checkpoints" \
	"              WHERE chain_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT chain_id FROM c)))))," \
	"     k AS (DELETE FROM envault.checkpoints WHERE chain_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT chain_id FROM c))" \
	"            RETURNING 1)" \
	" DELETE FROM envault.audit_chains WHERE chain_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT chain_id FROM c))" \
	" RETURNING identity, (SELECT pg_catalog.count(*) FROM k)"

/*
 * SQL function: envault.disable_audit_chain(tbl regclass) returns void
 *
 * Stop chaining a table: its triggers and chain index go, its rows and their
 * chain columns stay, its checkpoints are deleted (their copies in the
 * server log remain).  Recorded in envault.key_events.
 */
PG_FUNCTION_INFO_V1(envault_disable_audit_chain);
Datum
envault_disable_audit_chain(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Relation	rel;
	char	   *qualified;
	EnvSpi		s;
	Oid			types[1] = {REGCLASSOID};
	Datum		values[1];
	bool		isnull;
	char	   *identity;
	int64		ncheckpoints;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tbl must not be null")));
	relid = PG_GETARG_OID(0);
	rel = table_open(relid, AccessExclusiveLock);
	qualified = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										   RelationGetRelationName(rel));
	if (!env_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, RelationGetRelationName(rel));
	if (env_chain_require(relid)->builtin && !creating_extension)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the audit chain of %s belongs to envault", qualified),
				 errdetail("envault's own logs stay chained.")));
	table_close(rel, NoLock);

	ch_internal++;
	PG_TRY();
	{
		int			level = ch_spi_connect();

		if (env_is_citus_table(relid))
			ch_citus_prepare(NULL, NULL);
		ch_exec(psprintf("DROP TRIGGER " ENV_CHAIN_TRIGGER " ON %s", qualified), SPI_OK_UTILITY);
		ch_exec(psprintf("DROP TRIGGER " ENV_CHAIN_TRIGGER "_refuse ON %s", qualified), SPI_OK_UTILITY);
		ch_exec(psprintf("DROP TRIGGER " ENV_CHAIN_TRIGGER "_truncate ON %s", qualified), SPI_OK_UTILITY);
		ch_exec(psprintf("DROP TRIGGER IF EXISTS " ENV_CHAIN_TRIGGER "_heads ON %s", qualified),
				SPI_OK_UTILITY);
		env_spi_begin(&s);
		values[0] = ObjectIdGetDatum(relid);
		env_spi_run(CH_Q_UNREGISTER, 1, types, values, SPI_OK_DELETE_RETURNING);
		identity = env_spi_cstring(&s, 1, &isnull);
		ncheckpoints = DatumGetInt64(env_spi_col(&s, 2, &isnull, true, 8));
		env_key_event(&s, "audit chain disabled", NULL, NULL, -1,
					  psprintf("%s; " INT64_FORMAT " checkpoints deleted",
							   identity, ncheckpoints));
		env_spi_end(&s);
		ch_spi_finish(level);
	}
	PG_FINALLY();
	{
		ch_internal--;
	}
	PG_END_TRY();
	CacheInvalidateRelcacheByRelid(relid);
	ch_relcache_callback((Datum) 0, relid);
	PG_RETURN_VOID();
}

void
env_chain_init(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(ChCacheEntry);
	ch_cache = hash_create("envault audit chains", 16, &ctl,
						   HASH_ELEM | HASH_BLOBS);
	ctl.keysize = sizeof(ChHeadKey);
	ctl.entrysize = sizeof(ChTidEntry);
	ch_tids = hash_create("envault audit chain head locations", 64, &ctl,
						  HASH_ELEM | HASH_BLOBS);
	DefineCustomIntVariable("envault.chain_lock_spin",
							gettext_noop("Microseconds a writer of an audit chain tries for the tenant's lock, yielding the CPU, before it queues and sleeps."),
							gettext_noop("0 queues at once. Trying helps while a tenant has up to a few writers per CPU; with many more, the tries cost CPU the holder needs."),
							&ch_lock_spin, 500, 0, 100000, PGC_SUSET,
							0, NULL, NULL, NULL);
	CacheRegisterRelcacheCallback(ch_relcache_callback, (Datum) 0);
	RegisterXactCallback(ch_xact_callback, NULL);
	RegisterSubXactCallback(ch_subxact_callback, NULL);
	ch_prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = ch_executor_start;
}
