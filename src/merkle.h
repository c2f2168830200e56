/*-------------------------------------------------------------------------
 *
 * merkle.h
 *		Merkle trees of audit chains, as RFC 6962 / RFC 9162 define them:
 *		tree heads, the compact frontier that grows them one leaf at a
 *		time, and inclusion and consistency proofs.
 *
 *	leaf hash = SHA-256( 0x00 || row hash )
 *	node hash = SHA-256( 0x01 || left || right )
 *	MTH({})   = SHA-256( "" )
 *	MTH(D[n]) = for n > 1, with k the largest power of two below n:
 *				node( MTH(D[0:k]), MTH(D[k:n]) )
 *
 * A chain's leaves are its rows' hashes in sequence order: leaf i is row
 * i + 1.  Plain C: the extension maintains and proves, envault-verify and
 * the fuzzers check.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_MERKLE_H
#define ENVAULT_MERKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENV_MERKLE_HASH_LEN		32
/* a tree of up to 2^63 leaves: at most 63 perfect subtrees in its frontier */
#define ENV_MERKLE_MAX_LEVELS	64

/*
 * The frontier of a tree of size leaves: the roots of the perfect subtrees
 * that the binary digits of size give, largest (leftmost) first.  hashes
 * holds popcount(size) of them.
 */
typedef struct EnvMerkleFrontier
{
	uint64_t	size;
	int			n;
	uint8_t		hashes[ENV_MERKLE_MAX_LEVELS][ENV_MERKLE_HASH_LEN];
} EnvMerkleFrontier;

/*
 * Called for each perfect subtree completed by an append: its level (1 or
 * more: the number of leaves is 2^level), its index at that level, and its
 * root.  The extension stores the higher levels, from which proofs are
 * answered.
 */
typedef bool (*EnvMerkleCompleted) (void *arg, int level, uint64_t index,
									const uint8_t *hash);

/*
 * Where proofs find the root of a perfect subtree: level, and index at
 * that level (it covers leaves index * 2^level to (index + 1) * 2^level - 1).
 */
typedef bool (*EnvMerkleSubtree) (void *arg, int level, uint64_t index,
								  uint8_t *out);

extern bool env_merkle_leaf(const uint8_t *row_hash, uint8_t *out);
extern bool env_merkle_node(const uint8_t *left, const uint8_t *right,
							uint8_t *out);
extern bool env_merkle_empty_root(uint8_t *out);

extern void env_merkle_frontier_init(EnvMerkleFrontier *f);
extern bool env_merkle_append(EnvMerkleFrontier *f, const uint8_t *row_hash,
							  EnvMerkleCompleted completed, void *arg);
extern bool env_merkle_append_leaf(EnvMerkleFrontier *f,
								   const uint8_t *leaf_hash,
								   EnvMerkleCompleted completed, void *arg);
extern bool env_merkle_root(const EnvMerkleFrontier *f, uint8_t *out);

/* Serialized frontier: u64(size) || the hashes, largest subtree first */
extern size_t env_merkle_frontier_len(const EnvMerkleFrontier *f);
extern void env_merkle_frontier_put(const EnvMerkleFrontier *f, uint8_t *out);
extern bool env_merkle_frontier_get(EnvMerkleFrontier *f, const uint8_t *in,
									size_t len);

/*
 * The root of the range of leaves [start, start + count), from perfect
 * subtrees (the range need not be one): the MTH of those leaves.
 */
extern bool env_merkle_range_root(uint64_t start, uint64_t count,
								  EnvMerkleSubtree subtree, void *arg,
								  uint8_t *out);

/*
 * Proofs, as RFC 9162 sections 2.1.3 and 2.1.4 define them: out receives
 * up to ENV_MERKLE_MAX_LEVELS hashes; *n their number.  False on a bad
 * argument (index >= size, sizes out of order) or if a subtree is missing.
 */
extern bool env_merkle_inclusion_proof(uint64_t index, uint64_t size,
									   EnvMerkleSubtree subtree, void *arg,
									   uint8_t (*out)[ENV_MERKLE_HASH_LEN],
									   int *n);
extern bool env_merkle_consistency_proof(uint64_t old_size, uint64_t new_size,
										 EnvMerkleSubtree subtree, void *arg,
										 uint8_t (*out)[ENV_MERKLE_HASH_LEN],
										 int *n);

/* Verifying them (RFC 9162 sections 2.1.3.2 and 2.1.4.2) */
extern bool env_merkle_verify_inclusion(uint64_t index, uint64_t size,
										const uint8_t *leaf_hash,
										const uint8_t (*proof)[ENV_MERKLE_HASH_LEN],
										int n, const uint8_t *root);
extern bool env_merkle_verify_consistency(uint64_t old_size, uint64_t new_size,
										  const uint8_t *old_root,
										  const uint8_t *new_root,
										  const uint8_t (*proof)[ENV_MERKLE_HASH_LEN],
										  int n);

#endif							/* ENVAULT_MERKLE_H */
