/*-------------------------------------------------------------------------
 *
 * tokens.h
 *		API tokens, stored as pepper-HMACs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_TOKENS_H
#define ENVAULT_TOKENS_H

#include "datatype/timestamp.h"

#include "spi.h"

/* Why a token that verified once may no longer be valid */
typedef enum EnvTokenState
{
	ENV_TOKEN_ALIVE = 0,
	ENV_TOKEN_REVOKED,
	ENV_TOKEN_EXPIRED,
	ENV_TOKEN_TENANT_REVOKED,
	ENV_TOKEN_TENANT_DESTROYED,
	ENV_TOKEN_GONE				/* no such token (any more) */
} EnvTokenState;

extern bool env_token_verify(text *token, char *tenant_out);

/*
 * env_token_verify() that also returns the token's id (ENV_TOKEN_ID_HEXLEN
 * + 1 bytes) and its expiry (DT_NOEND when it has none).
 */
extern bool env_token_verify_ex(text *token, char *tenant_out, char *id_out,
								TimestampTz *expires_out);

/* Is a token that verified earlier, for this tenant, still valid now? */
extern EnvTokenState env_token_state(const char *token_id, const char *tenant,
									 TimestampTz *expires_out);
extern const char *env_token_state_text(EnvTokenState state);
extern uint64 env_tokens_revoke_tenant(EnvSpi *s, Datum tenant);

#endif							/* ENVAULT_TOKENS_H */
