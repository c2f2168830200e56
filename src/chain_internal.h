/*-------------------------------------------------------------------------
 *
 * chain_internal.h
 *		What the audit chain modules (chain.c, chainheads.c, chaintrigger.c,
 *		chainenable.c) share with each other and with nothing else; the
 *		public interface is chain.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_CHAIN_INTERNAL_H
#define ENVAULT_CHAIN_INTERNAL_H

#include "access/xact.h"
#include "commands/trigger.h"
#include "storage/lock.h"

#include "chain.h"

/* chain.c: the registry */
extern int	ch_internal;		/* > 0 while envault itself alters a table */
extern void ch_relcache_callback(Datum arg, Oid relid);
extern const Trigger *ch_chain_trigger(Relation rel);

/* chainheads.c: per-tenant heads and their locks */
typedef struct ChHeadKey
{
	uint64		lock_key;
	int32		chain_id;
	int32		pad;
} ChHeadKey;

/* A head as it was before a subtransaction changed it */
typedef struct ChSaved
{
	SubTransactionId subxid;
	int64		seq;
	uint8		hash[ENV_CHAIN_HASH_LEN];
	struct ChSaved *next;		/* older */
} ChSaved;

typedef struct ChHead
{
	ChHeadKey	key;			/* hash key */
	Oid			relid;
	char	   *tenant;			/* canonical text, in TopTransactionContext */
	size_t		tenant_len;
	bool		tenant_null;
	SubTransactionId lock_subxid;	/* holds the lock since; 0: does not */
	bool		dirty;			/* not yet written to envault.chain_heads */
	ItemPointerData tid;		/* of that row's current version, if known */
	int64		seq;			/* the head: 0 for an empty chain */
	uint8		hash[ENV_CHAIN_HASH_LEN];
	ChSaved    *saved;			/* newest first */
} ChHead;

extern void ch_heads_init(void);
extern void ch_heads_forget(Oid relid);
extern uint64 ch_lock_key(int32 chain_id, const EnvChainTenant *t);
extern Relation ch_heads_open(LOCKMODE mode, Oid *index);
extern void ch_heads_put(Relation rel, Oid index, int32 chain_id, const char *tenant,
						 size_t tenant_len, bool tenant_null, int64 seq, const uint8 *hash,
						 bool builtin, ItemPointer tid);
extern ChHead *ch_head(EnvChain *ch, const EnvChainTenant *t);
extern void ch_advance(ChHead *h, int64 seq, const uint8 *hash);
extern void ch_load_tail(EnvChain *ch, ChHead *h);
extern void ch_store_heads(Oid relid);
extern void ch_xact_callback(XactEvent event, void *arg);
extern void ch_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								SubTransactionId parentSubid, void *arg);

/* chaintrigger.c: the triggers and the executor hook */
extern void ch_trigger_init(void);
extern bytea *ch_bytea(const uint8 *data, size_t len);

#endif							/* ENVAULT_CHAIN_INTERNAL_H */
