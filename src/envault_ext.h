/*-------------------------------------------------------------------------
 *
 * envault_ext.h
 *		Interfaces between envault's modules that are not in envault.h.
 *
 * envault.h is being reworked by another change; these declarations belong
 * there and move into it once that change has landed.  Every file that
 * includes this header includes envault.h first.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_EXT_H
#define ENVAULT_EXT_H

#include "envault.h"

/*
 * keystore.c: how many changes of key state (rotation, retirement,
 * destruction, revocation, token revocation ...) this backend has noticed,
 * from any backend, so far.  A caller that remembers the value can tell
 * whether anything changed since; reading it never evicts a cached key.
 */
extern uint64 env_keystore_changes(void);

/*
 * keystore.c: why the data key a ciphertext names opens nothing ("retired",
 * "destroyed", "tenant revoked", "tenant destroyed"), or NULL if it can.
 * Checks the tenant like env_keystore_key_by_id().
 */
extern const char *env_keystore_unusable(uint64 key_id);

/* tokens.c */

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

/*
 * errors.c: warn, once per process, that key memory could not be locked
 * (call right after the failed mlock, with its errno).
 */
extern void env_warn_memory_unlocked(void);

#endif							/* ENVAULT_EXT_H */
