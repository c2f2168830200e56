/*-------------------------------------------------------------------------
 *
 * chaintrigger.c
 *		Audit chains: the trigger functions of a chained table, and the
 *		executor hook that refuses INSERT ... ON CONFLICT on one.
 *
 * envault_chain_insert (BEFORE INSERT FOR EACH ROW) links every inserted
 * row to its tenant's chain: the next sequence number, the hash of the row
 * before it, the row's own hash.  envault_chain_store_heads (AFTER INSERT
 * FOR EACH STATEMENT) writes the heads the statement advanced
 * (chainheads.c).  envault_chain_refuse and envault_append_only refuse
 * changing or deleting chained rows.
 *
 * INSERT ... ON CONFLICT is refused before it runs: a row it skipped after
 * the trigger linked it would leave a gap in its chain.
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

/* --- triggers -------------------------------------------------------------- */

static ExecutorStart_hook_type ch_prev_executor_start = NULL;

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

bytea *
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
		RelationGetRelid(td->tg_relation) == env_chain_purging())
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

/* Install the executor hook that refuses ON CONFLICT on chained tables */
void
ch_trigger_init(void)
{
	ch_prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = ch_executor_start;
}
