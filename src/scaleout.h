/*-------------------------------------------------------------------------
 *
 * scaleout.h
 *		envault on a Citus cluster: key tables as reference tables, key
 *		changes that commit through two-phase commit.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_SCALEOUT_H
#define ENVAULT_SCALEOUT_H

extern void env_scaleout_init(void);

/*
 * Within envault's privileged SPI (env_spi_begin): let Citus read envault's
 * reference tables from inside a query that Citus pushed down to this node.
 */
extern void env_citus_allow_nested(void);

/* Is the relation a Citus table (distributed, reference or Citus-local)? */
extern bool env_is_citus_table(Oid relid);

/* The distributed table of which relid is a shard on this node, or InvalidOid */
extern Oid	env_citus_shard_parent(Oid relid);

/* The relation holding this node's rows of an envault table (its copy on Citus) */
extern Oid	env_local_copy(Oid relid);

/*
 * Has this transaction's PREPARE TRANSACTION been registered, so that its
 * COMMIT PREPARED flushes every backend's key cache on this node?
 */
extern bool env_scaleout_prepare_registered(void);

/*
 * The tenant context across a Citus cluster.  On the coordinator, a context
 * set inside a transaction block is handed to the workers that the
 * transaction uses as a proof (a setting that Citus propagates, MACed
 * under a key derived from the pepper); on a worker, a backend without a
 * context of its own adopts the tenant of a valid proof.
 */
extern void env_scaleout_context_set(const char *tenant);
extern bool env_scaleout_context(char *tenant);
extern uint64 env_scaleout_proof_serial(void);

/* tenant.c dropped a context (token revoked or expired) in this transaction */
extern void env_scaleout_context_dropped(void);

#endif							/* ENVAULT_SCALEOUT_H */
