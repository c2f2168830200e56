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
#include "chainguard.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
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
		case AT_ValidateConstraint:
		case AT_AddIndexConstraint:
		case AT_AlterConstraint:
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
			return "ALTER TABLE ... ADD COLUMN";
		case AT_DropColumn:
			return "ALTER TABLE ... DROP COLUMN";
		case AT_AlterColumnType:
			return "ALTER TABLE ... ALTER COLUMN ... TYPE";
		case AT_DropNotNull:
			return "ALTER TABLE ... ALTER COLUMN ... DROP NOT NULL";
		case AT_DropExpression:
			return "ALTER TABLE ... DROP EXPRESSION";
		case AT_DropConstraint:
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
		if (!cg_subcommand_allowed(env_at_base(atc->subtype)))
			cg_refuse(relid, cg_subcommand_name(env_at_base(atc->subtype)));
	}
}

/*
 * The first line in which two descriptions of a chain's columns differ, for
 * the message: "old" becomes "new", "(nothing)" on the side of a line
 * added or removed.
 */
static char *
cg_line(List *lines, int k)
{
	return k < list_length(lines) ? (char *) list_nth(lines, k) : NULL;
}

static bool
cg_same(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static void
cg_first_difference(const char *was, const char *now, char **old_line,
					char **new_line)
{
	List	   *w = NIL;
	List	   *n = NIL;
	char	   *copy;
	char	   *line;
	char	   *save;
	int			i;

	copy = pstrdup(was);
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		w = lappend(w, line);
	copy = pstrdup(now);
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		n = lappend(n, line);
	for (i = 0; i < list_length(w) && i < list_length(n); i++)
		if (strcmp(list_nth(w, i), list_nth(n, i)) != 0)
			break;
	*old_line = cg_line(w, i);
	*new_line = cg_line(n, i);
	if (cg_same(*old_line, cg_line(n, i + 1)))
		*old_line = NULL;		/* a line added */
	else if (cg_same(*new_line, cg_line(w, i + 1)))
		*new_line = NULL;		/* a line removed */
	if (*old_line == NULL)
		*old_line = "(nothing)";
	if (*new_line == NULL)
		*new_line = "(nothing)";
}

/*
 * What every chained table must still be after any command, whichever
 * object the command named (a parent table, a type, a collation, a trigger
 * cloned from a partitioned parent):
 *	- its columns mean what they meant when it was chained (chainmeaning.c);
 *	- no BEFORE INSERT row trigger fires after envault's, and envault's is
 *	  there exactly once;
 *	- no rule.
 * With refresh (a command that only added enum labels), the recorded
 * meanings are brought up to date instead.
 */
#define CG_Q_CHAINS \
	"SELECT tbl, columns_meaning FROM envault.audit_chains ORDER BY chain_id"
#define CG_Q_REFRESH \
	"UPDATE envault.audit_chains SET columns_meaning = $2" \
	" WHERE tbl OPERATOR(pg_catalog.=) $1"

static void
cg_check_chains(bool refresh)
{
	EnvSpi		s;
	int			n;
	Oid		   *relids;
	char	  **meanings;
	int			i;

	/* envault 0.2.0's schema, not yet updated: nothing recorded to compare */
	if (!env_schema_has("audit_chains", "columns_meaning"))
		return;
	env_spi_begin(&s);
	env_spi_run(CG_Q_CHAINS, 0, NULL, NULL, SPI_OK_SELECT);
	n = (int) SPI_processed;
	relids = palloc(sizeof(Oid) * Max(n, 1));
	meanings = palloc(sizeof(char *) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		relids[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc, 1,
												   &isnull));
		meanings[i] = SPI_getvalue(SPI_tuptable->vals[i],
								   SPI_tuptable->tupdesc, 2);
		if (meanings[i] != NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(s.caller_cxt);

			meanings[i] = pstrdup(meanings[i]);
			MemoryContextSwitchTo(old);
		}
	}
	env_spi_end(&s);

	for (i = 0; i < n; i++)
	{
		Relation	rel = try_relation_open(relids[i], AccessShareLock);
		char	   *now;
		TriggerDesc *td;
		int			j;
		int			chain_inserts = 0;

		if (rel == NULL)
			continue;			/* dropped: the drop guard has its say */
		now = env_chain_meaning_of(rel);
		if (meanings[i] == NULL || strcmp(now, meanings[i]) != 0)
		{
			if (refresh || meanings[i] == NULL)
			{
				Oid			types[2] = {REGCLASSOID, TEXTOID};
				Datum		values[2];

				env_spi_begin(&s);
				values[0] = ObjectIdGetDatum(relids[i]);
				values[1] = CStringGetTextDatum(now);
				env_spi_run(CG_Q_REFRESH, 2, types, values, SPI_OK_UPDATE);
				env_spi_end(&s);
			}
			else
			{
				char	   *was_line;
				char	   *now_line;

				cg_first_difference(meanings[i], now, &was_line, &now_line);
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("this command is refused: it would change what the columns of audit chain \"%s\" mean",
								RelationGetRelationName(rel)),
						 errdetail("\"%s\" would become \"%s\".", was_line, now_line),
						 errhint("A chain's rows must keep the meaning they were hashed with; to change the table, first stop chaining it with envault.disable_audit_chain().")));
			}
		}
		td = rel->trigdesc;
		for (j = 0; td != NULL && j < td->numtriggers; j++)
		{
			Trigger    *tg = &td->triggers[j];

			if (env_chain_trigger_function(tg->tgfoid, true))
			{
				chain_inserts++;
				continue;
			}
			if (TRIGGER_FOR_ROW(tg->tgtype) && TRIGGER_FOR_BEFORE(tg->tgtype) &&
				TRIGGER_FOR_INSERT(tg->tgtype) &&
				strcmp(tg->tgname, ENV_CHAIN_TRIGGER) > 0)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("a BEFORE INSERT row trigger on audit chain \"%s\" must sort before \"%s\"",
								RelationGetRelationName(rel), ENV_CHAIN_TRIGGER),
						 errdetail("Trigger \"%s\" (created on the table or cloned from a partitioned parent) would fire after envault's and could change a row after it was hashed.",
								   tg->tgname),
						 errhint("Give the trigger a name that sorts before \"%s\".", ENV_CHAIN_TRIGGER)));
		}
		/* none: pg_restore creates a chained table's triggers last */
		if (chain_inserts > 1)
			cg_refuse(relids[i], "a second chain trigger");
		if (rel->rd_rules != NULL)
			cg_refuse(relids[i], "a rule");
		relation_close(rel, AccessShareLock);
	}
}

/* Does a collected command only add labels to an enum? */
static bool
cg_adds_enum_label(CollectedCommand *cmd)
{
	return cmd != NULL && cmd->type == SCT_Simple && cmd->parsetree != NULL &&
		IsA(cmd->parsetree, AlterEnumStmt) &&
		((AlterEnumStmt *) cmd->parsetree)->oldVal == NULL;
}

/*
 * SQL function: envault.chain_ddl_guard() returns event_trigger
 *
 * ON ddl_command_end, for every command: a command on another object (a
 * parent table, a type) can change a chained table too.
 */
PG_FUNCTION_INFO_V1(envault_chain_ddl_guard);
Datum
envault_chain_ddl_guard(PG_FUNCTION_ARGS)
{
	uint64		i;
	int			rc;
	bool		only_enum_labels = true;

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

		if (isnull || !cg_adds_enum_label((CollectedCommand *) DatumGetPointer(cmd)))
			only_enum_labels = false;
		if (classid == RelationRelationId && tag == CMDTAG_ALTER_TABLE && !isnull)
			cg_check_alter_table(objid, (CollectedCommand *) DatumGetPointer(cmd));
		else if (classid == RelationRelationId && tag == CMDTAG_CREATE_TABLE)
			cg_check_parents(objid);
		else if (classid == TriggerRelationId)
			cg_check_trigger(objid, tag);
		else if (classid == RewriteRelationId)
			cg_check_rule(objid);
	}
	if (SPI_processed == 0)
		only_enum_labels = false;
	SPI_finish();
	cg_check_chains(only_enum_labels);
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
