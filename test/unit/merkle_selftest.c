/*-------------------------------------------------------------------------
 *
 * merkle_selftest.c
 *		src/merkle.c against RFC 6962's test data and a naive MTH.
 *
 * The roots of the first 1 to 8 leaves of the test data published with
 * RFC 6962 by certificate-transparency (leaf data "", 00, 10, 2021, 3031,
 * 40414243, 50...57, 60...6f); the frontier's root and range roots against
 * a recursive MTH for every size to 300; every inclusion and consistency
 * proof of every tree up to 140 leaves verified, and refused when a hash,
 * the leaf or a root is changed.  Prints "merkle self-test: ok" and exits
 * 0, or the failures and exits 1.  scripts/test.sh builds and runs it.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "merkle.h"

#define NLEAVES		300
#define NPROVED		140

typedef const uint8_t (*Proof)[ENV_MERKLE_HASH_LEN];

static uint8_t leaves[NLEAVES][ENV_MERKLE_HASH_LEN];
static int	failures = 0;

static void
fail(const char *what, int m, int n)
{
	printf("%s (%d, %d)\n", what, m, n);
	failures++;
}

/* MTH of leaves [a, b), by RFC 6962's definition */
static void
mth(uint64_t a, uint64_t b, uint8_t *out)
{
	uint8_t		l[ENV_MERKLE_HASH_LEN];
	uint8_t		r[ENV_MERKLE_HASH_LEN];
	uint64_t	k = 1;

	if (b - a == 1)
	{
		memcpy(out, leaves[a], ENV_MERKLE_HASH_LEN);
		return;
	}
	while (k << 1 < b - a)
		k <<= 1;
	mth(a, a + k, l);
	mth(a + k, b, r);
	env_merkle_node(l, r, out);
}

static bool
subtree(void *arg, int level, uint64_t index, uint8_t *out)
{
	uint64_t	a = index << level;
	uint64_t	b = (index + 1) << level;

	(void) arg;
	if (b > NLEAVES)
		return false;
	mth(a, b, out);
	return true;
}

static void
check_rfc6962_roots(void)
{
	static const char *const data[8] = {
		"", "\x00", "\x10", "\x20\x21", "\x30\x31", "\x40\x41\x42\x43",
		"\x50\x51\x52\x53\x54\x55\x56\x57",
		"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"
	};
	static const size_t lens[8] = {0, 1, 1, 2, 2, 4, 8, 16};
	static const char *const roots[8] = {
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
	};
	EnvMerkleFrontier f;
	int			i;

	env_merkle_frontier_init(&f);
	for (i = 0; i < 8; i++)
	{
		uint8_t		buf[17];
		uint8_t		leaf[ENV_MERKLE_HASH_LEN];
		uint8_t		root[ENV_MERKLE_HASH_LEN];
		char		hex[2 * ENV_MERKLE_HASH_LEN + 1];
		int			j;

		buf[0] = 0x00;
		memcpy(buf + 1, data[i], lens[i]);
		env_sha256(buf, lens[i] + 1, leaf);
		env_merkle_append_leaf(&f, leaf, NULL, NULL);
		env_merkle_root(&f, root);
		for (j = 0; j < ENV_MERKLE_HASH_LEN; j++)
			sprintf(hex + 2 * j, "%02x", root[j]);
		if (strcmp(hex, roots[i]) != 0)
			fail("RFC 6962 test data: wrong root", i + 1, i + 1);
	}
}

static void
check_proofs(int n, const uint8_t *root)
{
	uint8_t		p[ENV_MERKLE_MAX_LEVELS][ENV_MERKLE_HASH_LEN];
	uint8_t		old_root[ENV_MERKLE_HASH_LEN];
	int			k;
	int			m;

	for (m = 0; m < n; m++)
	{
		if (!env_merkle_inclusion_proof(m, n, subtree, NULL, p, &k))
		{
			fail("no inclusion proof", m, n);
			continue;
		}
		if (!env_merkle_verify_inclusion(m, n, leaves[m], (Proof) p, k, root))
			fail("inclusion proof refused", m, n);
		if (n > 1 &&
			env_merkle_verify_inclusion(m, n, leaves[(m + 1) % n], (Proof) p, k, root))
			fail("inclusion proof accepted for another leaf", m, n);
		if (k > 0)
		{
			p[k - 1][0] ^= 1;
			if (env_merkle_verify_inclusion(m, n, leaves[m], (Proof) p, k, root))
				fail("changed inclusion proof accepted", m, n);
		}
	}
	for (m = 1; m <= n; m++)
	{
		mth(0, m, old_root);
		if (!env_merkle_consistency_proof(m, n, subtree, NULL, p, &k))
		{
			fail("no consistency proof", m, n);
			continue;
		}
		if (!env_merkle_verify_consistency(m, n, old_root, root, (Proof) p, k))
			fail("consistency proof refused", m, n);
		if (m < n &&
			env_merkle_verify_consistency(m, n, root, root, (Proof) p, k))
			fail("consistency proof accepted for another old root", m, n);
		if (k > 0)
		{
			p[0][5] ^= 1;
			if (env_merkle_verify_consistency(m, n, old_root, root, (Proof) p, k))
				fail("changed consistency proof accepted", m, n);
		}
	}
}

int
main(void)
{
	EnvMerkleFrontier f;
	int			n;
	int			i;

	if (!env_crypto_init())
		return 1;
	check_rfc6962_roots();

	srand(1);
	for (i = 0; i < NLEAVES; i++)
	{
		int			j;

		for (j = 0; j < ENV_MERKLE_HASH_LEN; j++)
			leaves[i][j] = (uint8_t) rand();
	}
	env_merkle_frontier_init(&f);
	for (n = 1; n <= NLEAVES; n++)
	{
		uint8_t		root[ENV_MERKLE_HASH_LEN];
		uint8_t		want[ENV_MERKLE_HASH_LEN];

		env_merkle_append_leaf(&f, leaves[n - 1], NULL, NULL);
		mth(0, n, want);
		env_merkle_root(&f, root);
		if (memcmp(root, want, ENV_MERKLE_HASH_LEN) != 0)
			fail("frontier root", n, n);
		env_merkle_range_root(0, n, subtree, NULL, root);
		if (memcmp(root, want, ENV_MERKLE_HASH_LEN) != 0)
			fail("range root", n, n);
		if (n <= NPROVED)
			check_proofs(n, want);
	}
	if (failures == 0)
		printf("merkle self-test: ok\n");
	else
		printf("merkle self-test: %d failures\n", failures);
	env_crypto_cleanup();
	return failures != 0;
}
