/*-------------------------------------------------------------------------
 *
 * chainfmt.h
 *		The bytes an audit-chain row hash is computed over; see "Row hash"
 *		in docs/audit-chain.md.
 *
 *	columns  = SHA-256( "envault/v1/chain-columns" || u32(ncols)
 *						|| ncols x ( str(name) || str(type) ) )
 *	row hash = SHA-256( "envault/v1/chain-row"
 *						|| str(chain) || opt(tenant) || u64(seq) || str(at)
 *						|| prev[32] || columns[32]
 *						|| ncols x opt(value) )
 *	str(x) = u32(len(x)) || x;	opt(x) = 0x00 for NULL, else 0x01 || str(x)
 *
 * The columns' names and types are hashed once per chain, not per row: a
 * row's input is then mostly its values.
 *
 * Integers are big-endian.  Plain C: the extension and envault-verify both
 * build this input, the one from column values, the other from an export.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_CHAINFMT_H
#define ENVAULT_CHAINFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ENV_CHAIN_LABEL			"envault/v1/chain-row"
#define ENV_CHAIN_LABEL_LEN		20
#define ENV_CHAIN_COLUMNS_LABEL	"envault/v1/chain-columns"
#define ENV_CHAIN_COLUMNS_LABEL_LEN 24
#define ENV_CHAIN_HASH_LEN		32

/* Bytes that str() and opt() take for a value of len bytes */
#define ENV_CHAIN_STR_LEN(len)	((size_t) 4 + (len))
#define ENV_CHAIN_OPT_LEN(len, isnull) ((isnull) ? (size_t) 1 : (size_t) 5 + (len))

static inline uint8_t *
env_chain_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) (v >> 24);
	p[1] = (uint8_t) (v >> 16);
	p[2] = (uint8_t) (v >> 8);
	p[3] = (uint8_t) v;
	return p + 4;
}

static inline uint8_t *
env_chain_put_str(uint8_t *p, const void *s, size_t len)
{
	p = env_chain_put_u32(p, (uint32_t) len);
	if (len > 0)
		memcpy(p, s, len);
	return p + len;
}

static inline uint8_t *
env_chain_put_opt(uint8_t *p, const void *s, size_t len, bool isnull)
{
	if (isnull)
	{
		*p = 0x00;
		return p + 1;
	}
	*p = 0x01;
	return env_chain_put_str(p + 1, s, len);
}

extern const uint8_t env_chain_genesis[ENV_CHAIN_HASH_LEN];

extern size_t env_chain_header_len(size_t chain_len, size_t tenant_len,
								   bool tenant_null, size_t at_len);
extern uint8_t *env_chain_put_header(uint8_t *p, const char *chain,
									 size_t chain_len, const char *tenant,
									 size_t tenant_len, bool tenant_null,
									 uint64_t seq, const char *at,
									 size_t at_len, const uint8_t *prev,
									 const uint8_t *columns);

/* The input of the columns hash starts with these 28 bytes */
extern uint8_t *env_chain_put_columns_header(uint8_t *p, uint32_t ncols);

#endif							/* ENVAULT_CHAINFMT_H */
