/*-------------------------------------------------------------------------
 *
 * chain.h
 *		Audit chains: the registry, the insert trigger, per-tenant heads.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_CHAIN_H
#define ENVAULT_CHAIN_H

#include "access/skey.h"
#include "utils/rel.h"
#include "utils/snapshot.h"

#include "canon.h"
#include "chainfmt.h"

#define ENV_CHAIN_SEQ_COL		"envault_seq"
#define ENV_CHAIN_AT_COL		"envault_at"
#define ENV_CHAIN_PREV_COL		"envault_prev"
#define ENV_CHAIN_HASH_COL		"envault_hash"
#define ENV_CHAIN_TRIGGER		"zz_envault_chain"

/* One hashed column of a chained table */
typedef struct EnvChainCol
{
	AttrNumber	attnum;
	EnvCanon	canon;
	char	   *name;
	char	   *type;			/* as hashed: format_type, schema-qualified */
} EnvChainCol;

/* What envault knows of a chained table; see env_chain_get() */
typedef struct EnvChain
{
	Oid			relid;
	int32		chain_id;
	char	   *identity;		/* the chain's name, as hashed */
	size_t		identity_len;
	AttrNumber	tenant_attnum;
	int			tenant_col;		/* index of the tenant column in cols */
	AttrNumber	seq_attnum;
	AttrNumber	at_attnum;
	AttrNumber	prev_attnum;
	AttrNumber	hash_attnum;
	Oid			index_oid;		/* an index on (tenant, envault_seq), if any */
	Oid			tenant_eq_proc; /* equality of the index's first column */
	Oid			tenant_collation;
	Oid			tenant_typid;
	int			ncols;
	EnvChainCol *cols;
	uint8		columns[ENV_CHAIN_HASH_LEN];	/* hash of their names and
												 * types */
	bool		pinned;			/* some column needs pinned settings */
	bool		builtin;		/* one of envault's own chains */
	bool		sharded;		/* a Citus shard of a distributed chained
								 * table */
	bool		valid;
	MemoryContext cxt;
} EnvChain;

/* The canonical text of a row's tenant (NULL for the chain without one) */
typedef struct EnvChainTenant
{
	const char *text;
	size_t		len;
	bool		isnull;
	char		buf[ENV_CANON_BUFLEN];
} EnvChainTenant;

extern void env_chain_init(void);
extern EnvChain *env_chain_get(Oid relid);
extern bool env_chain_registered(Oid relid);
extern EnvChain *env_chain_require(Oid relid);
extern EnvChain *env_chain_arg(FunctionCallInfo fcinfo);
extern void env_chain_refuse_distributed(EnvChain *ch, const char *what);
extern void env_chain_refuse_shard(EnvChain *ch, const char *what);
extern int64 env_chain_tail(EnvChain *ch, Datum value, bool isnull,
							Snapshot snap, uint8 *hash);
extern void env_chain_check_access(Oid relid, bool owner);
extern Datum env_chain_tenant_value(EnvChain *ch, text *tenant);
extern Datum env_chain_tenant_arg(EnvChain *ch, text *arg, EnvChainTenant *t);
extern bool env_chain_written(EnvChain *ch, const EnvChainTenant *t);
extern bool env_relation_has_block(Relation rel, BlockNumber block);
extern Relation env_chain_index_open(EnvChain *ch);
extern void env_chain_tenant_key(EnvChain *ch, ScanKey key, bool isnull,
								 Datum value);
extern void env_chain_tenant(EnvChain *ch, Datum *values, bool *nulls,
							 EnvChainTenant *t);
extern void env_chain_row_hash(EnvChain *ch, Datum *values, bool *nulls,
							   const EnvChainTenant *t, uint64 seq,
							   TimestampTz at, const uint8 *prev, uint8 *out);
extern bool env_chain_internal_ddl(void);
extern Oid	env_chain_purging(void);
extern void env_chain_set_purging(Oid relid);

#endif							/* ENVAULT_CHAIN_H */
