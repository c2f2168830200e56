/*-------------------------------------------------------------------------
 *
 * keystore.h
 *		Tenant keys and data keys: the key store's whole interface.
 *
 * Key material is reachable only through this interface and the master
 * key's (masterkey.h).  The cache of unwrapped keys (keycache.h) and the
 * wrapping of keys (keywrap.h) serve this module only.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_KEYSTORE_H
#define ENVAULT_KEYSTORE_H

#include "datatype/timestamp.h"

#include "format.h"
#include "spi.h"

/* A data key, unwrapped and prepared, as the key cache holds it */
typedef struct EnvDataKey
{
	uint64		key_id;
	int32		version;
	char		tenant[ENV_TENANT_MAXLEN + 1];
	char		purpose[ENV_PURPOSE_MAXLEN + 1];
	uint8	   *context;		/* tenant and purpose, as bound into AAD */
	size_t		context_len;
	TimestampTz created_at;		/* 0 when not known (loaded by id) */
	EnvXaesKey *xk;				/* in locked memory */
} EnvDataKey;

/* A tenant's row in envault.tenants, as the key table queries return it */
typedef struct EnvTenantRow
{
	int32		key_version;
	bytea	   *wrapped;
	bytea	   *kcv;			/* of the master or customer key wrapping it */
	bool		customer;		/* wrapped by a customer-managed key */
} EnvTenantRow;

/* the reserved purpose of the data key of the secrets store */
#define ENV_SECRETS_PURPOSE		"_secrets"

extern void env_keystore_init(void);

/* looking keys up; names are validated first */
extern bool env_keystore_tenant_exists(const char *tenant, size_t tenant_len);
extern const EnvDataKey *env_keystore_active_key(const char *tenant,
												 size_t tenant_len,
												 const char *purpose,
												 size_t purpose_len);
extern const EnvDataKey *env_keystore_index_key(const char *tenant,
												size_t tenant_len,
												const char *purpose,
												size_t purpose_len);
extern const EnvDataKey *env_keystore_secrets_key(const char *tenant,
												  size_t tenant_len);
extern const EnvDataKey *env_keystore_key_by_id(uint64 key_id);

/*
 * Why the data key a ciphertext names opens nothing ("retired",
 * "destroyed", "tenant revoked", "tenant destroyed"), or NULL if it can.
 * Checks the tenant like env_keystore_key_by_id().
 */
extern const char *env_keystore_unusable(uint64 key_id);

/* creating keys */
extern void env_keystore_create_tenant(const char *tenant, size_t tenant_len);
extern int32 env_keystore_create_data_key(const char *tenant,
										  size_t tenant_len,
										  const char *purpose,
										  size_t purpose_len);

/* key changes, inside a privileged SPI session (spi.h) */
extern void env_keystore_lock_tenant(EnvSpi *s, const char *tenant,
									 EnvTenantRow *row);
extern void env_key_event(EnvSpi *s, const char *operation, const char *tenant,
						  const char *purpose, int32 version, const char *detail);

/* rotation and re-keying */
extern int32 env_keystore_rotate_data_key(const char *tenant, size_t tenant_len,
										  const char *purpose, size_t purpose_len);
extern int32 env_keystore_rotate_tenant_key(const char *tenant, size_t tenant_len);
extern int64 env_keystore_rewrap_tenants(int32 batch_size, int64 *remaining);
extern void env_keystore_use_master_key(const char *tenant, size_t tenant_len);
extern int32 env_keystore_rekey_tenant(const char *tenant, size_t tenant_len,
									   bool to_customer);

#endif							/* ENVAULT_KEYSTORE_H */
