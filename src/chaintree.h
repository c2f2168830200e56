/*-------------------------------------------------------------------------
 *
 * chaintree.h
 *		Each tenant's chain as a Merkle tree: heads and proofs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_CHAINTREE_H
#define ENVAULT_CHAINTREE_H

#include "chain.h"

extern void env_chain_tree_update(EnvChain *ch, text *tenant, int64 purged);
struct EnvMerkleFrontier;
extern bool env_chain_tree_frontier(EnvChain *ch, text *tenant, int64 size,
									struct EnvMerkleFrontier *out);
extern bool env_chain_tree_prove(EnvChain *ch, text *tenant, int64 size,
								 uint8 *root, int64 old_size, bool old_tree,
								 uint8 (*proof)[ENV_CHAIN_HASH_LEN], int *nproof);

#endif							/* ENVAULT_CHAINTREE_H */
