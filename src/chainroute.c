/*-------------------------------------------------------------------------
 *
 * chainroute.c
 *		Audit chains of Citus distributed tables, seen from the coordinator:
 *		run a chain function on the shard that holds a tenant.
 *
 * A distributed table's chain lives on its shards (chain.c,
 * ch_build_shard): each tenant's rows, and so its head and its Merkle tree,
 * are on the shard that holds the tenant, wherever Citus moves it.  The
 * coordinator reaches that shard through Citus itself: a query on the table
 * whose condition is the distribution column equal to one value goes to
 * one shard, where the table's name becomes the shard's, and tableoid is
 * the shard's own.  A chain function given tableoid there runs on the
 * shard, in this transaction, as the caller: Citus checks the caller's
 * rights on the shard as on the table.
 *
 * Nothing here is secret.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "scaleout.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

/* Is this the distributed table of a chain, on the coordinator? */
bool
env_chain_distributed(EnvChain *ch)
{
	return !ch->sharded && env_is_citus_table(ch->relid);
}

/*
 * SPI as the caller, with a safe search_path, for queries that Citus runs
 * on the shards with the caller's rights; undone by env_caller_spi_end().
 */
int
env_caller_spi_begin(void)
{
	int			level;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	return level;
}

void
env_caller_spi_end(int level)
{
	AtEOXact_GUC(true, level);
	SPI_finish();
}

/* The chained table's qualified name and its tenant column's, quoted */
void
env_chain_sql_names(EnvChain *ch, char **qualified, char **column)
{
	Relation	rel = relation_open(ch->relid, AccessShareLock);

	*column = pstrdup(quote_identifier(NameStr(TupleDescAttr(RelationGetDescr(rel),
															 ch->tenant_attnum - 1)->attname)));
	*qualified = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											RelationGetRelationName(rel));
	relation_close(rel, AccessShareLock);
}

/*
 * SELECT <targets> FROM <table> c<lateral> WHERE c.<tenant column> =
 * $1::<its type> LIMIT 1, with the tenant as $1 and the arguments given as
 * $2, $3 ...; targets and lateral may use c.tableoid, the shard.  Connects
 * to SPI and leaves the result in SPI_tuptable, for the caller to read and
 * then call env_chain_route_end() with what this returned.  *found tells
 * whether the tenant has a row.
 */
int
env_chain_route(EnvChain *ch, text *tenant, const char *targets, const char *lateral,
				int nargs, Oid *types, Datum *values, const char *nulls, bool *found)
{
	char	   *col;
	char	   *qualified;
	Oid			atypes[4];
	Datum		avalues[4];
	char		anulls[4 + 1];
	int			level;
	int			i;

	env_chain_sql_names(ch, &qualified, &col);
	Assert(nargs <= 3);
	atypes[0] = TEXTOID;
	avalues[0] = PointerGetDatum(tenant);
	anulls[0] = tenant ? ' ' : 'n';
	for (i = 0; i < nargs; i++)
	{
		atypes[i + 1] = types[i];
		avalues[i + 1] = values[i];
		anulls[i + 1] = nulls ? nulls[i] : ' ';
	}
	anulls[nargs + 1] = '\0';

	level = env_caller_spi_begin();
	if (SPI_execute_with_args(psprintf("SELECT %s FROM %s c%s"
									   " WHERE c.%s OPERATOR(pg_catalog.=) $1::%s LIMIT 1",
									   targets, qualified, lateral ? lateral : "", col,
									   format_type_be_qualified(ch->tenant_typid)),
							  nargs + 1, atypes, avalues, anulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not reach the shard of audit chain %s", ch->identity);
	*found = SPI_processed > 0;
	return level;
}

void
env_chain_route_end(int level)
{
	env_caller_spi_end(level);
}
