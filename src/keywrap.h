/*-------------------------------------------------------------------------
 *
 * keywrap.h
 *		Wrapping and unwrapping of tenant keys and data keys.
 *
 * Prepared keys are returned in slots of the key cache (keycache.h): the
 * caller caches them, or frees them with env_keycache_slot_free().
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_KEYWRAP_H
#define ENVAULT_KEYWRAP_H

#include "keystore.h"

extern EnvXaesKey *env_keywrap_unwrap(const EnvXaesKey *kek, bytea *wrapped,
									  const uint8 *aad, size_t aad_len);
extern bytea *env_keywrap_new_key(const EnvXaesKey *kek, const uint8 *aad,
								  size_t aad_len, EnvXaesKey **prepared);
extern EnvCryptoStatus env_keywrap_rewrap(const EnvXaesKey *from,
										  const EnvXaesKey *to, bytea *wrapped,
										  const uint8 *aad, size_t aad_len,
										  bytea **out);

/* check values: which key wraps a tenant key */
extern bool env_keywrap_kcv_is(bytea *kcv, const uint8 *want);
extern bytea *env_keywrap_kcv_bytea(const uint8 *kcv);
extern const EnvXaesKey *env_keywrap_master_for(const char *tenant, bytea *kcv);

/* under a tenant's customer-managed key, fetched for the call */
extern EnvXaesKey *env_keywrap_unwrap_customer(const char *tenant,
											   const EnvTenantRow *row,
											   const uint8 *aad, size_t aad_len);
extern bytea *env_keywrap_new_key_customer(const char *tenant,
										   const EnvTenantRow *t,
										   const uint8 *aad, size_t aad_len,
										   EnvXaesKey **prepared, uint8 *ckcv);

/* a data key, under its tenant's current key */
extern EnvXaesKey *env_keywrap_unwrap_data_key(const EnvXaesKey *tenant_key,
											   int32 tenant_key_version,
											   int32 wrapped_under,
											   const char *tenant,
											   const char *purpose, int32 version,
											   uint64 key_id, bytea *wrapped);

#endif							/* ENVAULT_KEYWRAP_H */
