/*-------------------------------------------------------------------------
 *
 * encrypt.h
 *		The data path: sealing and opening values under data keys.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_ENCRYPT_H
#define ENVAULT_ENCRYPT_H

#include "keystore.h"

extern bytea *env_open_secret(bytea *ciphertext, bytea *aad,
							  const char *tenant, size_t tenant_len,
							  const char *secret);
extern bytea *env_seal_with_key(const EnvDataKey *key, const uint8 *pt,
								size_t ptlen, bytea *aad);
extern bytea *env_open_ciphertext(bytea *ciphertext, bytea *aad,
								  const EnvDataKey **key_out);

#endif							/* ENVAULT_ENCRYPT_H */
