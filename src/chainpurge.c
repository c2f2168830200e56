/*-------------------------------------------------------------------------
 *
 * chainpurge.c
 *		Retention of audit chains: purge_chain() and set_chain_retention().
 *
 * A purge deletes a tenant's oldest rows, up to a row that a checkpoint
 * signed before the purge's cut-off, and leaves an anchor
 * (envault.chain_anchors): that row, whose hash the checkpoint signed, from
 * which verify_chain() checks the chain on.  It deletes from a user's
 * table as its owner, and refuses a table whose deletes would run code
 * other than envault's (a user's trigger, a cascading foreign key).  No
 * purge reaches into a chain's minimum retention, which can only be raised.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"

#include "access/table.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#define PURGE_Q_RETENTION \
	"SELECT min_retention, pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) min_retention" \
	"  FROM envault.audit_chains WHERE chain_id OPERATOR(pg_catalog.=) $1"

#define PURGE_Q_ANCHOR_CANDIDATE \
	"SELECT checkpoint_id, note FROM envault.checkpoints" \
	" WHERE chain_id OPERATOR(pg_catalog.=) $1" \
	"   AND (tenant OPERATOR(pg_catalog.=) $2 OR (tenant IS NULL AND $2 IS NULL))" \
	"   AND signed_at OPERATOR(pg_catalog.<) $3" \
	" ORDER BY seq DESC"

#define PURGE_Q_ANCHOR_INSERT \
	"INSERT INTO envault.chain_anchors" \
	"  (chain_id, tenant, seq, checkpoint_id, rows_purged, purged_by)" \
	" VALUES ($1, $2, $3, $4, $5, $6)"

/*
 * purge_chain deletes from a user's table: refuse one whose deletes would
 * run any code but envault's chain trigger and PostgreSQL's own foreign key
 * checks, such as a user's DELETE trigger (also one that fires at commit,
 * after envault has given back its rights) or a cascading foreign key,
 * which runs the referencing table's triggers.  Rules are refused on a
 * chained table by the DDL guard.
 */
static void
purge_refuse_delete_code(EnvChain *ch)
{
	Relation	rel = table_open(ch->relid, AccessShareLock);
	TriggerDesc *td = rel->trigdesc;
	int			i;

	for (i = 0; td != NULL && i < td->numtriggers; i++)
	{
		Trigger    *t = &td->triggers[i];

		if (!TRIGGER_FOR_DELETE(t->tgtype))
			continue;
		if (t->tgfoid == F_RI_FKEY_NOACTION_DEL || t->tgfoid == F_RI_FKEY_RESTRICT_DEL)
			continue;
		if (env_chain_trigger_function(t->tgfoid, false))
			continue;
		if (t->tgisinternal && OidIsValid(t->tgconstraint))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot purge audit chain %s: deleting from it would act on table \"%s\" through foreign key \"%s\"",
							ch->identity, get_rel_name(t->tgconstrrelid),
							get_constraint_name(t->tgconstraint)),
					 errdetail("purge_chain runs no code of the table's: no DELETE trigger, no cascading foreign key."),
					 errhint("Drop the trigger (or the foreign key's ON DELETE action) before purging.")));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot purge audit chain %s: deleting from it would fire trigger \"%s\"",
						ch->identity, t->tgname),
				 errdetail("purge_chain runs no code of the table's: no DELETE trigger, no cascading foreign key."),
				 errhint("Drop the trigger (or the foreign key's ON DELETE action) before purging.")));
	}
	table_close(rel, AccessShareLock);
}

/* purge_chain: refuse an older_than inside the chain's minimum retention */
static void
purge_check_retention(EnvSpi *s, EnvChain *ch, TimestampTz older_than)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	bool		isnull;
	TimestampTz limit;

	values[0] = Int32GetDatum(ch->chain_id);
	env_spi_run(PURGE_Q_RETENTION, 1, types, values, SPI_OK_SELECT);
	limit = DatumGetTimestampTz(env_spi_col(s, 2, &isnull, true, 8));
	if (older_than > limit)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("older_than is inside the minimum retention of audit chain %s",
						ch->identity),
				 errdetail("The chain keeps every row for %s: rows newer than %s cannot be purged.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   env_spi_col(s, 1, &isnull, false, 16))),
						   timestamptz_to_str(limit))));
}

/*
 * The tenant's argument of purge_chain and the chain_anchors row, as text:
 * null for the chain's rows without a tenant.
 */
static void
purge_tenant_param(const EnvChainTenant *want, bool tenant_null,
				   Datum *value, char *null)
{
	if (!tenant_null)
		*value = PointerGetDatum(cstring_to_text_with_len(want->text, want->len));
	else
		*null = 'n';
}

/*
 * purge_chain's anchor: the seq of the newest checkpoint made before
 * older_than that still verifies (for this database, dbid), and its
 * checkpoint_id; raises if there is none.
 */
static int64
purge_anchor(EnvChain *ch, const EnvChainTenant *want, bool tenant_null,
			 TimestampTz older_than, const char *dbid, int64 *checkpoint_id)
{
	Oid			types[3] = {INT4OID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[3];
	char		nulls[3 + 1] = "   ";
	bool		isnull;
	int64		anchor = 0;
	uint64		i;

	values[0] = Int32GetDatum(ch->chain_id);
	purge_tenant_param(want, tenant_null, &values[1], &nulls[1]);
	values[2] = TimestampTzGetDatum(older_than);
	if (SPI_execute_with_args(PURGE_Q_ANCHOR_CANDIDATE, 3, types, values, nulls, true, 0)
		!= SPI_OK_SELECT)
		elog(ERROR, "could not read checkpoints");
	for (i = 0; i < SPI_processed && anchor == 0; i++)
	{
		EnvCheckpoint cp;
		char	   *note = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[i],
															 SPI_tuptable->tupdesc, 2, &isnull));

		if (env_checkpoint_check(note, strlen(note), &cp) == 0 &&
			env_origin_matches(cp.origin, cp.origin_len, dbid, strlen(dbid),
							   ch->identity, ch->identity_len, want->text, want->len))
		{
			anchor = (int64) cp.seq;
			*checkpoint_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 1, &isnull));
		}
	}
	if (anchor == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no signed checkpoint of %s, tenant %s, is older than %s",
						ch->identity, tenant_null ? "NULL" : quote_literal_cstr(want->text),
						timestamptz_to_str(older_than)),
				 errdetail("Rows can be purged only up to a signed checkpoint, which stays as the anchor the remaining rows verify from."),
				 errhint("Take checkpoints regularly with envault.checkpoint().")));
	return anchor;
}

/*
 * Delete a tenant's rows before the anchor, as the table's owner, in a
 * security-restricted operation, letting chain_refuse() pass (the caller
 * refused a table whose deletes would run code other than envault's).
 * Returns how many; every row before the anchor is gone, or nothing is.
 */
static int64
purge_delete(EnvChain *ch, Datum tenant_value, bool tenant_null, int64 anchor)
{
	char	   *sql;
	char	   *check;
	char	   *qualified;
	const char *tcol;
	char	   *where;
	EnvOwner	owner;
	Oid			dtypes[2];
	Datum		dvalues[2];
	char		dnulls[2 + 1] = "  ";
	volatile int64 deleted = 0;

	qualified = quote_qualified_identifier(get_namespace_name(get_rel_namespace(ch->relid)),
										   get_rel_name(ch->relid));
	tcol = quote_identifier(get_attname(ch->relid, ch->tenant_attnum, false));
	where = tenant_null ? psprintf("%s IS NULL", tcol) :
		psprintf("%s OPERATOR(pg_catalog.=) $1", tcol);
	sql = psprintf("DELETE FROM ONLY %s WHERE %s AND " ENV_CHAIN_SEQ_COL " OPERATOR(pg_catalog.<) $2",
				   qualified, where);
	check = psprintf("SELECT 1 FROM ONLY %s WHERE %s AND " ENV_CHAIN_SEQ_COL " OPERATOR(pg_catalog.<) $2 LIMIT 1",
					 qualified, where);
	dtypes[0] = ch->tenant_typid;
	dtypes[1] = INT8OID;
	dvalues[0] = tenant_value;
	if (tenant_null)
		dnulls[0] = 'n';
	dvalues[1] = Int64GetDatum(anchor);
	env_owner_begin(&owner, ch->relid, true);
	env_chain_set_purging(ch->relid);
	PG_TRY();
	{
		if (SPI_execute_with_args(sql, 2, dtypes, dvalues, dnulls, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not purge audit chain rows");
		deleted = (int64) SPI_processed;
		/* every row before the anchor is gone, or nothing is */
		if (SPI_execute_with_args(check, 2, dtypes, dvalues, dnulls, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not check the purge of audit chain rows");
		if (SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("purging audit chain %s left rows before its anchor",
							ch->identity)));
	}
	PG_FINALLY();
	{
		env_chain_set_purging(InvalidOid);
	}
	PG_END_TRY();
	env_owner_end(&owner);
	return deleted;
}

/*
 * Record a purge: the chain's new anchor, a checkpoint that says so (the
 * purge is a signed statement), and a key event.
 */
static void
purge_record(EnvSpi *s, EnvChain *ch, const EnvChainTenant *want,
			 bool tenant_null, int64 anchor, int64 checkpoint_id,
			 int64 deleted)
{
	Oid			types[6] = {INT4OID, TEXTOID, INT8OID, INT8OID, INT8OID, NAMEOID};
	Datum		values[6];
	char		nulls[6 + 1] = "      ";

	values[0] = Int32GetDatum(ch->chain_id);
	purge_tenant_param(want, tenant_null, &values[1], &nulls[1]);
	values[2] = Int64GetDatum(anchor);
	values[3] = Int64GetDatum(checkpoint_id);
	values[4] = Int64GetDatum(deleted);
	values[5] = CStringGetDatum(s->caller_name);
	if (SPI_execute_with_args(PURGE_Q_ANCHOR_INSERT, 6, types, values, nulls, false, 0)
		!= SPI_OK_INSERT)
		elog(ERROR, "could not record the chain anchor");
	if (env_schema_has("checkpoints", "tree_root"))
		env_checkpoint_purge(ch, want);
	env_key_event(s, "audit chain purged", tenant_null ? NULL : want->text, NULL, -1,
				  psprintf("%s: " INT64_FORMAT " rows before seq " INT64_FORMAT " deleted",
						   ch->identity, deleted, anchor));
}

/*
 * SQL function: envault.purge_chain(tbl regclass, tenant text,
 *                                   older_than timestamptz) returns bigint
 *
 * Delete a tenant's rows older than the newest signed checkpoint made
 * before older_than; that checkpoint's row stays as the chain's anchor.
 * Refused inside the chain's minimum retention.  Returns the rows deleted.
 */
PG_FUNCTION_INFO_V1(envault_purge_chain);
Datum
envault_purge_chain(PG_FUNCTION_ARGS)
{
	EnvChain   *ch;
	EnvSpi		s;
	TimestampTz older_than;
	bool		tenant_null = PG_ARGISNULL(1);
	Datum		tenant_value;
	EnvChainTenant want;
	int64		anchor;
	int64		checkpoint_id = 0;
	int64		deleted;
	char	   *dbid;

	env_arg_not_null(fcinfo, 0, "tbl");
	env_arg_not_null(fcinfo, 2, "older_than");
	env_chain_check_access(PG_GETARG_OID(0), true);
	ch = env_chain_require(PG_GETARG_OID(0));
	env_chain_refuse_distributed(ch, "purge_chain()");
	older_than = PG_GETARG_TIMESTAMPTZ(2);
	tenant_value = env_chain_tenant_arg(ch, tenant_null ? NULL : PG_GETARG_TEXT_PP(1), &want);
	dbid = env_database_id();

	env_spi_begin(&s);
	purge_check_retention(&s, ch, older_than);
	anchor = purge_anchor(ch, &want, tenant_null, older_than, dbid,
						  &checkpoint_id);

	/* nothing is deleted from a table whose deletes would run its code */
	purge_refuse_delete_code(ch);
	/* the tree keeps what it needs of the rows about to go */
	if (env_schema_has("chain_trees", NULL))	/* not on 0.2.0's schema */
		env_chain_tree_update(ch, tenant_null ? NULL : PG_GETARG_TEXT_PP(1), anchor - 1);
	deleted = purge_delete(ch, tenant_value, tenant_null, anchor);
	if (deleted > 0)
		purge_record(&s, ch, &want, tenant_null, anchor, checkpoint_id, deleted);
	env_spi_end(&s);
	PG_RETURN_INT64(deleted);
}

#define PURGE_Q_SET_RETENTION \
	"UPDATE envault.audit_chains SET min_retention = $2" \
	" WHERE chain_id OPERATOR(pg_catalog.=) $1" \
	"   AND min_retention OPERATOR(pg_catalog.<=) $2" \
	" RETURNING 1"

/*
 * SQL function: envault.set_chain_retention(tbl regclass,
 *                                           min_retention interval) returns void
 *
 * Raise the chain's minimum retention; it can never be lowered.
 */
PG_FUNCTION_INFO_V1(envault_set_chain_retention);
Datum
envault_set_chain_retention(PG_FUNCTION_ARGS)
{
	EnvChain   *ch;
	EnvSpi		s;
	Oid			types[2] = {INT4OID, INTERVALOID};
	Datum		values[2];

	env_arg_not_null(fcinfo, 0, "tbl");
	env_arg_not_null(fcinfo, 1, "min_retention");
	env_chain_check_access(PG_GETARG_OID(0), true);
	ch = env_chain_require(PG_GETARG_OID(0));
	env_chain_refuse_distributed(ch, "set_chain_retention()");
	values[0] = Int32GetDatum(ch->chain_id);
	values[1] = PG_GETARG_DATUM(1);
	env_spi_begin(&s);
	if (SPI_execute_with_args(PURGE_Q_SET_RETENTION, 2, types, values, NULL, false, 0)
		!= SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not set the retention");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the minimum retention of %s can only be increased", ch->identity)));
	env_key_event(&s, "audit chain retention set", NULL, NULL, -1,
				  psprintf("%s: %s", ch->identity,
						   DatumGetCString(DirectFunctionCall1(interval_out, values[1]))));
	env_spi_end(&s);
	PG_RETURN_VOID();
}
