/*-------------------------------------------------------------------------
 *
 * merkle.c
 *		Merkle tree heads, frontiers and proofs of RFC 6962 / RFC 9162;
 *		merkle.h has the definitions.
 *
 * Proofs are built from the roots of perfect subtrees that a callback
 * returns (the extension stores the higher levels and hashes rows for the
 * lower ones), so that no proof reads the whole chain.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "crypto.h"
#include "merkle.h"

bool
env_merkle_leaf(const uint8_t *row_hash, uint8_t *out)
{
	uint8_t		buf[1 + ENV_MERKLE_HASH_LEN];

	buf[0] = 0x00;
	memcpy(buf + 1, row_hash, ENV_MERKLE_HASH_LEN);
	return env_sha256(buf, sizeof(buf), out);
}

bool
env_merkle_node(const uint8_t *left, const uint8_t *right, uint8_t *out)
{
	uint8_t		buf[1 + 2 * ENV_MERKLE_HASH_LEN];

	buf[0] = 0x01;
	memcpy(buf + 1, left, ENV_MERKLE_HASH_LEN);
	memcpy(buf + 1 + ENV_MERKLE_HASH_LEN, right, ENV_MERKLE_HASH_LEN);
	return env_sha256(buf, sizeof(buf), out);
}

bool
env_merkle_empty_root(uint8_t *out)
{
	return env_sha256((const uint8_t *) "", 0, out);
}

void
env_merkle_frontier_init(EnvMerkleFrontier *f)
{
	memset(f, 0, sizeof(*f));
}

/*
 * Add the next leaf: like adding one to a binary counter, each carry joins
 * two perfect subtrees of one level into one of the next.
 */
bool
env_merkle_append(EnvMerkleFrontier *f, const uint8_t *row_hash,
				  EnvMerkleCompleted completed, void *arg)
{
	uint8_t		leaf[ENV_MERKLE_HASH_LEN];

	return env_merkle_leaf(row_hash, leaf) &&
		env_merkle_append_leaf(f, leaf, completed, arg);
}

/* The same, given the leaf hash */
bool
env_merkle_append_leaf(EnvMerkleFrontier *f, const uint8_t *leaf_hash,
					   EnvMerkleCompleted completed, void *arg)
{
	uint8_t		carry[ENV_MERKLE_HASH_LEN];
	int			level = 0;

	if (f->size >= ((uint64_t) 1 << 63))
		return false;
	memcpy(carry, leaf_hash, ENV_MERKLE_HASH_LEN);
	while ((f->size >> level) & 1)
	{
		if (f->n == 0 ||
			!env_merkle_node(f->hashes[f->n - 1], carry, carry))
			return false;
		f->n--;
		level++;
		if (completed &&
			!completed(arg, level, ((f->size + 1) >> level) - 1, carry))
			return false;
	}
	memcpy(f->hashes[f->n++], carry, ENV_MERKLE_HASH_LEN);
	f->size++;
	return true;
}

bool
env_merkle_root(const EnvMerkleFrontier *f, uint8_t *out)
{
	uint8_t		h[ENV_MERKLE_HASH_LEN];
	int			i;

	if (f->n == 0)
		return env_merkle_empty_root(out);
	memcpy(h, f->hashes[f->n - 1], ENV_MERKLE_HASH_LEN);
	for (i = f->n - 2; i >= 0; i--)
		if (!env_merkle_node(f->hashes[i], h, h))
			return false;
	memcpy(out, h, ENV_MERKLE_HASH_LEN);
	return true;
}

size_t
env_merkle_frontier_len(const EnvMerkleFrontier *f)
{
	return 8 + (size_t) f->n * ENV_MERKLE_HASH_LEN;
}

void
env_merkle_frontier_put(const EnvMerkleFrontier *f, uint8_t *out)
{
	int			i;

	for (i = 0; i < 8; i++)
		out[i] = (uint8_t) (f->size >> (56 - 8 * i));
	memcpy(out + 8, f->hashes, (size_t) f->n * ENV_MERKLE_HASH_LEN);
}

static int
merkle_popcount(uint64_t v)
{
	int			n = 0;

	for (; v; v &= v - 1)
		n++;
	return n;
}

bool
env_merkle_frontier_get(EnvMerkleFrontier *f, const uint8_t *in, size_t len)
{
	int			i;

	env_merkle_frontier_init(f);
	if (len < 8)
		return false;
	for (i = 0; i < 8; i++)
		f->size = (f->size << 8) | in[i];
	f->n = merkle_popcount(f->size);
	if (f->size >= ((uint64_t) 1 << 63) ||
		len != 8 + (size_t) f->n * ENV_MERKLE_HASH_LEN)
	{
		env_merkle_frontier_init(f);
		return false;
	}
	memcpy(f->hashes, in + 8, (size_t) f->n * ENV_MERKLE_HASH_LEN);
	return true;
}

/* The largest power of two below n (n > 1) */
static uint64_t
merkle_split(uint64_t n)
{
	uint64_t	k = 1;

	while (k << 1 < n)
		k <<= 1;
	return k;
}

bool
env_merkle_range_root(uint64_t start, uint64_t count,
					  EnvMerkleSubtree subtree, void *arg, uint8_t *out)
{
	uint8_t		left[ENV_MERKLE_HASH_LEN];
	uint8_t		right[ENV_MERKLE_HASH_LEN];
	uint64_t	k;

	if (count == 0)
		return env_merkle_empty_root(out);
	/* a perfect, aligned subtree: one the callback knows */
	if ((count & (count - 1)) == 0 && start % count == 0)
	{
		int			level = 0;

		while (((uint64_t) 1 << level) < count)
			level++;
		return subtree(arg, level, start >> level, out);
	}
	k = count == 1 ? 1 : merkle_split(count);
	if ((count & (count - 1)) == 0)
		k = count / 2;			/* not aligned: halve it */
	return env_merkle_range_root(start, k, subtree, arg, left) &&
		env_merkle_range_root(start + k, count - k, subtree, arg, right) &&
		env_merkle_node(left, right, out);
}

/* PATH(m, D[start:start+n]) of RFC 9162, section 2.1.3.1 */
static bool
merkle_path(uint64_t m, uint64_t start, uint64_t n, EnvMerkleSubtree subtree,
			void *arg, uint8_t (*out)[ENV_MERKLE_HASH_LEN], int *len)
{
	uint64_t	k;

	if (n <= 1)
		return true;
	if (*len >= ENV_MERKLE_MAX_LEVELS)
		return false;
	k = merkle_split(n);
	if (m < k)
		return merkle_path(m, start, k, subtree, arg, out, len) &&
			env_merkle_range_root(start + k, n - k, subtree, arg, out[(*len)++]);
	return merkle_path(m - k, start + k, n - k, subtree, arg, out, len) &&
		env_merkle_range_root(start, k, subtree, arg, out[(*len)++]);
}

bool
env_merkle_inclusion_proof(uint64_t index, uint64_t size,
						   EnvMerkleSubtree subtree, void *arg,
						   uint8_t (*out)[ENV_MERKLE_HASH_LEN], int *n)
{
	*n = 0;
	if (index >= size)
		return false;
	return merkle_path(index, 0, size, subtree, arg, out, n);
}

/* SUBPROOF(m, D[start:start+n], b) of RFC 9162, section 2.1.4.1 */
static bool
merkle_subproof(uint64_t m, uint64_t start, uint64_t n, bool b,
				EnvMerkleSubtree subtree, void *arg,
				uint8_t (*out)[ENV_MERKLE_HASH_LEN], int *len)
{
	uint64_t	k;

	if (*len >= ENV_MERKLE_MAX_LEVELS)
		return false;
	if (m == n)
		return b ? true :
			env_merkle_range_root(start, n, subtree, arg, out[(*len)++]);
	k = merkle_split(n);
	if (m <= k)
		return merkle_subproof(m, start, k, b, subtree, arg, out, len) &&
			env_merkle_range_root(start + k, n - k, subtree, arg, out[(*len)++]);
	return merkle_subproof(m - k, start + k, n - k, false, subtree, arg, out, len) &&
		env_merkle_range_root(start, k, subtree, arg, out[(*len)++]);
}

bool
env_merkle_consistency_proof(uint64_t old_size, uint64_t new_size,
							 EnvMerkleSubtree subtree, void *arg,
							 uint8_t (*out)[ENV_MERKLE_HASH_LEN], int *n)
{
	*n = 0;
	if (old_size == 0 || old_size > new_size)
		return false;
	return merkle_subproof(old_size, 0, new_size, true, subtree, arg, out, n);
}

bool
env_merkle_verify_inclusion(uint64_t index, uint64_t size,
							const uint8_t *leaf_hash,
							const uint8_t (*proof)[ENV_MERKLE_HASH_LEN], int n,
							const uint8_t *root)
{
	uint64_t	fn = index;
	uint64_t	sn;
	uint8_t		r[ENV_MERKLE_HASH_LEN];
	int			i;

	if (index >= size)
		return false;
	sn = size - 1;
	memcpy(r, leaf_hash, ENV_MERKLE_HASH_LEN);
	for (i = 0; i < n; i++)
	{
		if (sn == 0)
			return false;
		if ((fn & 1) || fn == sn)
		{
			if (!env_merkle_node(proof[i], r, r))
				return false;
			while (!(fn & 1) && fn != 0)
			{
				fn >>= 1;
				sn >>= 1;
			}
		}
		else if (!env_merkle_node(r, proof[i], r))
			return false;
		fn >>= 1;
		sn >>= 1;
	}
	return sn == 0 && memcmp(r, root, ENV_MERKLE_HASH_LEN) == 0;
}

bool
env_merkle_verify_consistency(uint64_t old_size, uint64_t new_size,
							  const uint8_t *old_root, const uint8_t *new_root,
							  const uint8_t (*proof)[ENV_MERKLE_HASH_LEN], int n)
{
	uint64_t	fn;
	uint64_t	sn;
	uint8_t		fr[ENV_MERKLE_HASH_LEN];
	uint8_t		sr[ENV_MERKLE_HASH_LEN];
	int			i = 0;

	if (old_size == 0 || old_size > new_size)
		return false;
	if (old_size == new_size)
		return n == 0 && memcmp(old_root, new_root, ENV_MERKLE_HASH_LEN) == 0;
	if (n == 0)
		return false;
	/* an old tree of a power of two leaves is itself the first node */
	if ((old_size & (old_size - 1)) == 0)
		memcpy(fr, old_root, ENV_MERKLE_HASH_LEN);
	else
		memcpy(fr, proof[i++], ENV_MERKLE_HASH_LEN);
	memcpy(sr, fr, ENV_MERKLE_HASH_LEN);
	fn = old_size - 1;
	sn = new_size - 1;
	while (fn & 1)
	{
		fn >>= 1;
		sn >>= 1;
	}
	for (; i < n; i++)
	{
		if (sn == 0)
			return false;
		if ((fn & 1) || fn == sn)
		{
			if (!env_merkle_node(proof[i], fr, fr) ||
				!env_merkle_node(proof[i], sr, sr))
				return false;
			while (!(fn & 1) && fn != 0)
			{
				fn >>= 1;
				sn >>= 1;
			}
		}
		else if (!env_merkle_node(sr, proof[i], sr))
			return false;
		fn >>= 1;
		sn >>= 1;
	}
	return sn == 0 && memcmp(fr, old_root, ENV_MERKLE_HASH_LEN) == 0 &&
		memcmp(sr, new_root, ENV_MERKLE_HASH_LEN) == 0;
}
