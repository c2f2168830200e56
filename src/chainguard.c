/*-------------------------------------------------------------------------
 *
 * chainguard.c
 *		Event triggers that refuse DDL which would change what a chained
 *		table's rows hash to, or stop its triggers from running.
 *
 * Refused on a chained table, for every role:
 *	- ALTER TABLE subcommands that add, drop or retype columns, disable or
 *	  rename triggers or rules, change inheritance or partitioning, make the
 *	  table unlogged, or drop constraints (the unique constraint on the
 *	  tenant and envault_seq among them); RENAME and SET SCHEMA;
 *	- DROP TABLE (directly or by DROP SCHEMA ... CASCADE / DROP OWNED),
 *	  DROP TRIGGER of envault's triggers, dropping its columns;
 *	- CREATE RULE (a rule could route inserts around the chain);
 *	- a BEFORE row trigger on INSERT that would fire after envault's (a
 *	  trigger fires in name order, and a later one could change the row
 *	  after it was hashed), and a second chain trigger.
 * Allowed: indexes, statistics, storage options, row-level security,
 * ownership, grants, comments, policies, other triggers.
 *
 * envault's own functions (enable_audit_chain, disable_audit_chain) and the
 * extension's install and upgrade scripts may change chained tables; a
 * superuser can still bypass event triggers (session_replication_role), and
 * verify_chain() is what detects the result.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_rewrite.h"
#include "catalog/pg_trigger.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "tcop/deparse_utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

static bool
cg_extension_script(void)
{
	return creating_extension &&
		CurrentExtensionObject == get_extension_oid("envault", true);
}

static void
cg_refuse_named(const char *name, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s is refused on audit chain \"%s\"", what, name),
			 errdetail("It would change what the chain's rows hash to, or let rows bypass the chain."),
			 errhint("To change or drop the table, first stop chaining it with envault.disable_audit_chain().")));
}

static void
cg_refuse(Oid relid, const char *what)
{
	char	   *name = get_rel_name(relid);

	cg_refuse_named(name ? name : "?", what);
}

static bool
cg_subcommand_allowed(AlterTableType t)
{
	switch (t)
	{
		case AT_ColumnDefault:
		case AT_CookedColumnDefault:
		case AT_SetStatistics:
		case AT_SetOptions:
		case AT_ResetOptions:
		case AT_SetStorage:
		case AT_SetCompression:
		case AT_AddIndex:
		case AT_AddConstraint:
		case AT_AddConstraintRecurse:
		case AT_ValidateConstraint:
		case AT_ValidateConstraintRecurse:
		case AT_AddIndexConstraint:
		case AT_AlterConstraint:
		case AT_CheckNotNull:
		case AT_SetNotNull:		/* ADD PRIMARY KEY sets it; hashes stay */
		case AT_AddIdentity:
		case AT_DropIdentity:
		case AT_ChangeOwner:
		case AT_ClusterOn:
		case AT_DropCluster:
		case AT_SetLogged:
		case AT_SetTableSpace:
		case AT_SetRelOptions:
		case AT_ResetRelOptions:
		case AT_ReplaceRelOptions:
		case AT_ReplicaIdentity:
		case AT_EnableRowSecurity:
		case AT_DisableRowSecurity:
		case AT_ForceRowSecurity:
		case AT_NoForceRowSecurity:
		case AT_GenericOptions:
		case AT_SetIdentity:
			return true;
		default:
			return false;
	}
}

/*
 * Is a function one of envault's chain triggers, by its C symbol?  With
 * insert_only, only the one that links rows.
 */
bool
env_chain_trigger_function(Oid fnoid, bool insert_only)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fnoid));
	bool		ours = false;

	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc,
										  &isnull);

		if (!isnull && ((Form_pg_proc) GETSTRUCT(tup))->prolang == ClanguageId)
		{
			char	   *s = TextDatumGetCString(src);

			ours = strcmp(s, "envault_chain_insert") == 0 ||
				(!insert_only && (strcmp(s, "envault_chain_refuse") == 0 ||
								  strcmp(s, "envault_chain_store_heads") == 0));
		}
		ReleaseSysCache(tup);
	}
	return ours;
}

/* A catalog row by its OID, copied, or NULL */
static HeapTuple
cg_fetch(Oid catalog, Oid index, Oid oid)
{
	Relation	rel = table_open(catalog, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(oid));
	key.sk_attno = (catalog == TriggerRelationId) ? Anum_pg_trigger_oid :
		Anum_pg_rewrite_oid;
	scan = systable_beginscan(rel, index, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		tup = heap_copytuple(tup);
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return tup;
}

/* A trigger just created or renamed on a chained table. */
static void
cg_check_trigger(Oid trigoid, CommandTag tag)
{
	HeapTuple	tup = cg_fetch(TriggerRelationId, TriggerOidIndexId, trigoid);
	Form_pg_trigger tg;
	Relation	rel;
	TriggerDesc *td;
	int			i;
	int			chain_inserts = 0;

	if (!HeapTupleIsValid(tup))
		return;
	tg = (Form_pg_trigger) GETSTRUCT(tup);
	if (!env_chain_registered(tg->tgrelid))
		return;
	if (tag == CMDTAG_ALTER_TRIGGER && env_chain_trigger_function(tg->tgfoid, false))
		cg_refuse(tg->tgrelid, "renaming its triggers");
	/* created, or renamed: the name decides when it fires */
	if (TRIGGER_FOR_ROW(tg->tgtype) && TRIGGER_FOR_BEFORE(tg->tgtype) &&
		TRIGGER_FOR_INSERT(tg->tgtype) && !env_chain_trigger_function(tg->tgfoid, true) &&
		strcmp(NameStr(tg->tgname), ENV_CHAIN_TRIGGER) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a BEFORE INSERT row trigger on audit chain \"%s\" must sort before \"%s\"",
						get_rel_name(tg->tgrelid), ENV_CHAIN_TRIGGER),
				 errdetail("Triggers fire in name order; one firing after envault's could change a row after it was hashed."),
				 errhint("Give the trigger a name that sorts before \"%s\".", ENV_CHAIN_TRIGGER)));
	/* one chain insert trigger only: a second would link every row twice */
	rel = RelationIdGetRelation(tg->tgrelid);
	td = rel->trigdesc;
	for (i = 0; td != NULL && i < td->numtriggers; i++)
		if (env_chain_trigger_function(td->triggers[i].tgfoid, true))
			chain_inserts++;
	RelationClose(rel);
	if (chain_inserts > 1)
		cg_refuse(tg->tgrelid, "a second chain trigger");
}

static void
cg_check_rule(Oid ruleoid)
{
	HeapTuple	tup = cg_fetch(RewriteRelationId, RewriteOidIndexId, ruleoid);

	if (HeapTupleIsValid(tup) &&
		env_chain_registered(((Form_pg_rewrite) GETSTRUCT(tup))->ev_class))
		cg_refuse(((Form_pg_rewrite) GETSTRUCT(tup))->ev_class, "CREATE RULE");
}

static const char *
cg_subcommand_name(AlterTableType t)
{
	switch (t)
	{
		case AT_AddColumn:
		case AT_AddColumnRecurse:
			return "ALTER TABLE ... ADD COLUMN";
		case AT_DropColumn:
		case AT_DropColumnRecurse:
			return "ALTER TABLE ... DROP COLUMN";
		case AT_AlterColumnType:
			return "ALTER TABLE ... ALTER COLUMN ... TYPE";
		case AT_DropNotNull:
			return "ALTER TABLE ... ALTER COLUMN ... DROP NOT NULL";
		case AT_DropExpression:
			return "ALTER TABLE ... DROP EXPRESSION";
		case AT_DropConstraint:
		case AT_DropConstraintRecurse:
			return "ALTER TABLE ... DROP CONSTRAINT";
		case AT_EnableTrig:
		case AT_EnableAlwaysTrig:
		case AT_EnableReplicaTrig:
		case AT_EnableTrigAll:
		case AT_EnableTrigUser:
			return "ALTER TABLE ... ENABLE TRIGGER";
		case AT_DisableTrig:
		case AT_DisableTrigAll:
		case AT_DisableTrigUser:
			return "ALTER TABLE ... DISABLE TRIGGER";
		case AT_EnableRule:
		case AT_EnableAlwaysRule:
		case AT_EnableReplicaRule:
		case AT_DisableRule:
			return "ALTER TABLE ... ENABLE/DISABLE RULE";
		case AT_AddInherit:
		case AT_DropInherit:
			return "ALTER TABLE ... INHERIT";
		case AT_AttachPartition:
		case AT_DetachPartition:
		case AT_DetachPartitionFinalize:
			return "ALTER TABLE ... ATTACH/DETACH PARTITION";
		case AT_SetUnLogged:
			return "ALTER TABLE ... SET UNLOGGED";
		case AT_SetAccessMethod:
			return "ALTER TABLE ... SET ACCESS METHOD";
		default:
			return "this ALTER TABLE subcommand";
	}
}

/*
 * A table that inherits from a chained table: its rows would show in the
 * chained table's queries without being in the chain.
 */
static void
cg_check_parents(Oid relid)
{
	Relation	rel = table_open(InheritsRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&key, Anum_pg_inherits_inhrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InheritsRelidSeqnoIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Oid			parent = ((Form_pg_inherits) GETSTRUCT(tup))->inhparent;

		if (env_chain_registered(parent))
			cg_refuse(parent, "a table that inherits from it");
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

static void
cg_check_alter_table(Oid relid, CollectedCommand *cmd)
{
	ListCell   *lc;

	if (!env_chain_registered(relid))
	{
		/* ALTER TABLE ... INHERIT a chained table */
		cg_check_parents(relid);
		return;
	}
	if (cmd->type != SCT_AlterTable)
	{
		/* RENAME, SET SCHEMA and the like arrive as simple commands */
		cg_refuse(relid, "renaming the table or its columns, or moving it to another schema,");
	}
	foreach(lc, cmd->d.alterTable.subcmds)
	{
		CollectedATSubcmd *sub = (CollectedATSubcmd *) lfirst(lc);
		AlterTableCmd *atc = (AlterTableCmd *) sub->parsetree;

		if (atc == NULL || !IsA(atc, AlterTableCmd))
			continue;
		if (!cg_subcommand_allowed(atc->subtype))
			cg_refuse(relid, cg_subcommand_name(atc->subtype));
	}
}

/*
 * SQL function: envault.chain_ddl_guard() returns event_trigger
 *
 * ON ddl_command_end WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'CREATE TRIGGER',
 * 'ALTER TRIGGER', 'CREATE RULE').
 */
PG_FUNCTION_INFO_V1(envault_chain_ddl_guard);
Datum
envault_chain_ddl_guard(PG_FUNCTION_ARGS)
{
	uint64		i;
	int			rc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("envault.chain_ddl_guard() must run as an event trigger")));
	if (env_chain_internal_ddl() || cg_extension_script())
		PG_RETURN_VOID();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute("SELECT classid, objid, command_tag, command"
					 "  FROM pg_catalog.pg_event_trigger_ddl_commands()",
					 true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_event_trigger_ddl_commands() failed: %s",
			 SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Oid			classid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		Oid			objid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		char	   *tagname = SPI_getvalue(tup, desc, 3);
		Datum		cmd = SPI_getbinval(tup, desc, 4, &isnull);
		CommandTag	tag = GetCommandTagEnum(tagname);

		if (classid == RelationRelationId && tag == CMDTAG_ALTER_TABLE && !isnull)
			cg_check_alter_table(objid, (CollectedCommand *) DatumGetPointer(cmd));
		else if (classid == RelationRelationId && tag == CMDTAG_CREATE_TABLE)
			cg_check_parents(objid);
		else if (classid == TriggerRelationId)
			cg_check_trigger(objid, tag);
		else if (classid == RewriteRelationId)
			cg_check_rule(objid);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/* A chained table named by schema and table, or InvalidOid */
static Oid
cg_chained_by_name(Datum names, int nth_table)
{
	ArrayType  *arr = DatumGetArrayTypeP(names);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	Oid			nsp;
	Oid			relid;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n < nth_table + 1 || nulls[nth_table - 1] || nulls[nth_table])
		return InvalidOid;
	nsp = get_namespace_oid(TextDatumGetCString(elems[nth_table - 1]), true);
	if (!OidIsValid(nsp))
		return InvalidOid;
	relid = get_relname_relid(TextDatumGetCString(elems[nth_table]), nsp);
	return env_chain_registered(relid) ? relid : InvalidOid;
}

/*
 * SQL function: envault.chain_drop_guard() returns event_trigger
 *
 * ON sql_drop, for the commands that can drop a chained table, one of its
 * columns, triggers or constraints.  The registry still names a dropped
 * table at this point; its triggers and constraints are found by the names
 * of their table.
 */
PG_FUNCTION_INFO_V1(envault_chain_drop_guard);
Datum
envault_chain_drop_guard(PG_FUNCTION_ARGS)
{
	uint64		i;
	int			rc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("envault.chain_drop_guard() must run as an event trigger")));
	if (env_chain_internal_ddl() || cg_extension_script())
		PG_RETURN_VOID();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute("SELECT classid, objid, objsubid, object_type, object_name,"
					 "       address_names"
					 "  FROM pg_catalog.pg_event_trigger_dropped_objects()",
					 true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_event_trigger_dropped_objects() failed: %s",
			 SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Oid			classid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		Oid			objid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		int32		objsubid = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		char	   *type = SPI_getvalue(tup, desc, 4);
		bool		names_null;
		Datum		names = SPI_getbinval(tup, desc, 6, &names_null);
		Oid			relid;

		if (classid == RelationRelationId && objsubid != 0 &&
			env_chain_registered(objid))
			cg_refuse(objid, "dropping a column");
		if (classid == RelationRelationId && objsubid == 0 &&
			env_chain_registered(objid))
			cg_refuse_named(SPI_getvalue(tup, desc, 5), "DROP TABLE");
		if (names_null || type == NULL)
			continue;
		if (strcmp(type, "trigger") == 0 &&
			OidIsValid(relid = cg_chained_by_name(names, 1)))
		{
			ArrayType  *arr = DatumGetArrayTypeP(names);
			Datum	   *elems;
			bool	   *nulls;
			int			n;

			deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems,
							  &nulls, &n);
			if (n == 3 && !nulls[2] &&
				strncmp(TextDatumGetCString(elems[2]), ENV_CHAIN_TRIGGER,
						strlen(ENV_CHAIN_TRIGGER)) == 0)
				cg_refuse(relid, "DROP TRIGGER");
		}
		else if (strcmp(type, "table constraint") == 0 &&
				 OidIsValid(relid = cg_chained_by_name(names, 1)))
			cg_refuse(relid, "dropping a constraint");
	}
	SPI_finish();
	PG_RETURN_VOID();
}
