/*-------------------------------------------------------------------------
 *
 * chainfmt.c
 *		The fixed part of the input of an audit-chain row hash, and the
 *		genesis value; chainfmt.h has the layout.
 *
 *-------------------------------------------------------------------------
 */
#include "chainfmt.h"

/* The previous hash of the first row of every chain: 32 zero bytes */
const uint8_t env_chain_genesis[ENV_CHAIN_HASH_LEN] = {0};

size_t
env_chain_header_len(size_t chain_len, size_t tenant_len, bool tenant_null,
					 size_t at_len)
{
	return ENV_CHAIN_LABEL_LEN + ENV_CHAIN_STR_LEN(chain_len) +
		ENV_CHAIN_OPT_LEN(tenant_len, tenant_null) + 8 +
		ENV_CHAIN_STR_LEN(at_len) + ENV_CHAIN_HASH_LEN + ENV_CHAIN_HASH_LEN;
}

uint8_t *
env_chain_put_header(uint8_t *p, const char *chain, size_t chain_len,
					 const char *tenant, size_t tenant_len, bool tenant_null,
					 uint64_t seq, const char *at, size_t at_len,
					 const uint8_t *prev, const uint8_t *columns)
{
	memcpy(p, ENV_CHAIN_LABEL, ENV_CHAIN_LABEL_LEN);
	p = env_chain_put_str(p + ENV_CHAIN_LABEL_LEN, chain, chain_len);
	p = env_chain_put_opt(p, tenant, tenant_len, tenant_null);
	p = env_chain_put_u32(p, (uint32_t) (seq >> 32));
	p = env_chain_put_u32(p, (uint32_t) seq);
	p = env_chain_put_str(p, at, at_len);
	memcpy(p, prev, ENV_CHAIN_HASH_LEN);
	memcpy(p + ENV_CHAIN_HASH_LEN, columns, ENV_CHAIN_HASH_LEN);
	return p + 2 * ENV_CHAIN_HASH_LEN;
}

uint8_t *
env_chain_put_columns_header(uint8_t *p, uint32_t ncols)
{
	memcpy(p, ENV_CHAIN_COLUMNS_LABEL, ENV_CHAIN_COLUMNS_LABEL_LEN);
	return env_chain_put_u32(p + ENV_CHAIN_COLUMNS_LABEL_LEN, ncols);
}
