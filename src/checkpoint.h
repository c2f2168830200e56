/*-------------------------------------------------------------------------
 *
 * checkpoint.h
 *		The signing key and signed checkpoints of the audit chains.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_CHECKPOINT_H
#define ENVAULT_CHECKPOINT_H

#include "chain.h"

extern void env_checkpoint_init(void);
extern void env_checkpoint_purge(EnvChain *ch, const EnvChainTenant *t);

/* What a signer or witness is told: a proof that a tree extends old_size */
typedef struct EnvTreeProof
{
	int64		old_size;		/* 0: none */
	int			n;
	uint8		hashes[64][ENV_CHAIN_HASH_LEN];
} EnvTreeProof;

struct StringInfoData;
extern size_t env_run_filter(const char *name, const char *command,
							 const char *input, size_t len, char *out,
							 size_t out_max);
extern void env_append_proof(struct StringInfoData *buf,
							 const EnvTreeProof *proof);
extern int64 env_size_reply(const char *out);

#endif							/* ENVAULT_CHECKPOINT_H */
