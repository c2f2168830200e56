/*-------------------------------------------------------------------------
 *
 * chainenable.c
 *		Audit chains: enable_audit_chain(), distribute_audit_chain() and
 *		disable_audit_chain().
 *
 * Enabling checks the table, registers it in envault.audit_chains, adds the
 * chain columns and triggers, and links the rows already there (the
 * backfill), all in the caller's transaction.  On Citus a distributed table
 * is chained on its shards; distribute_audit_chain() distributes a table
 * already chained on the coordinator, with its rows and checkpoints.
 * Disabling drops the triggers and the registration and keeps the rows.
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
 * The DDL here runs through SPI as the caller (env_caller_spi_begin):
 * enabling and disabling a chain needs the table's owner, not envault's,
 * and search_path is pinned, as the DDL names its types and functions by
 * schema and a caller's schemas or temporary objects must not stand in for
 * them.
 */
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
	level = env_caller_spi_begin();
	ch_exec(psprintf("SELECT FROM %s LIMIT 1",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid))),
			SPI_OK_SELECT);
	has_rows = SPI_processed > 0;
	env_caller_spi_end(level);
	if (has_rows)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("distributed table \"%s\" has rows", relname),
				 errdetail("Existing rows of a distributed table are not linked; the chain starts with the first row."),
				 errhint("Enable the chain on the empty table, right after create_distributed_table().")));
	return false;
}

/*
 * Inside env_caller_spi_begin(): let Citus create or drop triggers on the shards
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

/* Inside env_caller_spi_begin(): the chain's triggers come off the table */
static void
ch_drop_triggers(const char *qualified)
{
	ch_exec(psprintf("DROP TRIGGER " ENV_CHAIN_TRIGGER " ON %s", qualified), SPI_OK_UTILITY);
	ch_exec(psprintf("DROP TRIGGER " ENV_CHAIN_TRIGGER "_refuse ON %s", qualified), SPI_OK_UTILITY);
	ch_exec(psprintf("DROP TRIGGER " ENV_CHAIN_TRIGGER "_truncate ON %s", qualified), SPI_OK_UTILITY);
	/* (a distributed table's chain has none) */
	ch_exec(psprintf("DROP TRIGGER IF EXISTS " ENV_CHAIN_TRIGGER "_heads ON %s", qualified),
			SPI_OK_UTILITY);
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
 * enable_audit_chain(), second step, inside env_caller_spi_begin(): add the chain
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
 * enable_audit_chain(), last step, inside env_caller_spi_begin(), after the rows
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

	env_arg_not_null(fcinfo, 0, "tbl");
	env_arg_not_null(fcinfo, 1, "tenant_column");
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
		int			level = env_caller_spi_begin();
		int32		chain_id = ch_enable_register(relid, qualified, identity,
												  tenant_column, builtin);

		if (has_rows)
			linked = ch_backfill(relid, qualified);
		ch_enable_triggers(qualified, identity, NameStr(*tenant_column), chain_id,
						   distributed);
		env_caller_spi_end(level);
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
		int			level = env_caller_spi_begin();
		bool		isnull;

		ch_drop_triggers(qualified);
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
		env_caller_spi_end(level);
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

	env_arg_not_null(fcinfo, 0, "tbl");
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
		int			level = env_caller_spi_begin();

		if (env_is_citus_table(relid))
			ch_citus_prepare(NULL, NULL);
		ch_drop_triggers(qualified);
		env_spi_begin(&s);
		values[0] = ObjectIdGetDatum(relid);
		env_spi_run(CH_Q_UNREGISTER, 1, types, values, SPI_OK_DELETE_RETURNING);
		identity = env_spi_cstring(&s, 1, &isnull);
		ncheckpoints = DatumGetInt64(env_spi_col(&s, 2, &isnull, true, 8));
		env_key_event(&s, "audit chain disabled", NULL, NULL, -1,
					  psprintf("%s; " INT64_FORMAT " checkpoints deleted",
							   identity, ncheckpoints));
		env_spi_end(&s);
		env_caller_spi_end(level);
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
