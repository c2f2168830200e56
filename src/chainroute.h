/*-------------------------------------------------------------------------
 *
 * chainroute.h
 *		A distributed table's audit chain, seen from the Citus coordinator:
 *		calls that run on the shard of a tenant.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_CHAINROUTE_H
#define ENVAULT_CHAINROUTE_H

#include "chain.h"

/* Is this the distributed table of a chain, on the coordinator? */
extern bool env_chain_distributed(EnvChain *ch);

/*
 * SELECT <targets> FROM <table> c<lateral> WHERE c.<tenant column> =
 * $1 LIMIT 1 with the tenant as $1: runs on the tenant's shard.  The
 * result is in SPI_tuptable until env_chain_route_end().
 */
extern int	env_chain_route(EnvChain *ch, text *tenant, const char *targets,
							const char *lateral, int nargs, Oid *types,
							Datum *values, const char *nulls, bool *found);
extern void env_chain_route_end(int level);

/* SPI as the caller, search_path pinned, for queries Citus runs on shards */
extern int	env_caller_spi_begin(void);
extern void env_caller_spi_end(int level);

/* The chained table's qualified name and its tenant column's, quoted */
extern void env_chain_sql_names(EnvChain *ch, char **qualified, char **column);

#endif							/* ENVAULT_CHAINROUTE_H */
