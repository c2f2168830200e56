/*-------------------------------------------------------------------------
 *
 * chain.c
 *		Audit chains: the registry of chained tables, what a chained table is,
 *		its tenants and the hash of a row.
 *
 * Each tenant of a chained table has its own chain: rows numbered 1, 2, 3
 * ... in envault_seq, each with envault_prev, the hash of the row before
 * it, and envault_hash, the SHA-256 of the row's canonical encoding
 * (chainfmt.h, canon.c).  The BEFORE INSERT trigger assigns these
 * (chaintrigger.c), taking each tenant's head from chainheads.c; tables are
 * chained by chainenable.c.
 *
 * The registry is envault.audit_chains; this backend keeps what it read of
 * it, and of the table's columns, in a cache that relcache invalidations
 * clear.  A Citus shard of a chained table has no row of its own there: the
 * arguments of its chain trigger, which must match its table's on the same
 * node, describe its chain.
 *
 * Nothing here is secret: chained rows are stored in the clear.
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

/* --- the registry cache ---------------------------------------------------- */

typedef struct ChCacheEntry
{
	Oid			relid;			/* hash key */
	EnvChain   *chain;
} ChCacheEntry;

static HTAB *ch_cache = NULL;
int			ch_internal = 0;	/* > 0 while envault itself alters a table */
static Oid	ch_purging = InvalidOid;	/* relation purge_chain deletes from */

void
ch_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	ChCacheEntry *e;

	ch_heads_forget(relid);
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
const Trigger *
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

void
env_chain_init(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(ChCacheEntry);
	ch_cache = hash_create("envault audit chains", 16, &ctl,
						   HASH_ELEM | HASH_BLOBS);
	ch_heads_init();
	CacheRegisterRelcacheCallback(ch_relcache_callback, (Datum) 0);
	RegisterXactCallback(ch_xact_callback, NULL);
	RegisterSubXactCallback(ch_subxact_callback, NULL);
	ch_trigger_init();
}
