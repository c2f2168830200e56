/*-------------------------------------------------------------------------
 *
 * envault.h
 *		Interfaces between envault's server-side modules.
 *
 * Layers, bottom up:
 *		crypto.c	XAES-256-GCM, HMAC, randomness, locked memory (OpenSSL)
 *		format.c	byte layouts of ciphertexts, wrapped keys, associated data
 *		secrets.c	master key and pepper: settings, loading, check values
 *		keystore.c	tenant keys and data keys: tables, wrapping, cache
 *		errors.c	SQLSTATEs and messages shared by the SQL wrappers
 *		tenant.c	the current tenant, and who may use which tenant's keys
 *		tokens.c	API tokens stored as pepper-HMACs
 *		encrypt.c	SQL wrappers of the data path (env_encrypt ...)
 *		keys.c		SQL wrappers of key management (create_tenant ...)
 *
 * Key material is reachable only through secrets.c and keystore.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_H
#define ENVAULT_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "crypto.h"
#include "format.h"

/* SQLSTATE of every ciphertext authentication failure: class 22, "V01" */
#define ERRCODE_ENVAULT_AUTH_FAILED		MAKE_SQLSTATE('2','2','V','0','1')

/* secrets.c */
extern void env_secrets_init(void);
extern const EnvXaesKey *env_master_key(void);
extern const uint8 *env_master_kcv(void);
extern const EnvXaesKey *env_previous_master_key(const uint8 **kcv);
extern const uint8 *env_pepper(bool previous, const uint8 **kcv);
extern char *env_kcv_fingerprint(const uint8 *kcv);
extern void env_customer_key(const char *tenant, uint8 *key, uint8 *kcv);

/* keystore.c */
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

typedef struct EnvSpi
{
	Oid			save_userid;
	int			save_sec;
	MemoryContext caller_cxt;
	char	   *caller_name;
} EnvSpi;

extern void env_spi_begin(EnvSpi *s);
extern void env_spi_end(EnvSpi *s);
extern void env_spi_run(const char *sql, int nargs, Oid *types, Datum *values,
						int expect);
extern Datum env_spi_col(EnvSpi *s, int col, bool *isnull, bool byval,
						 int typlen);

extern void env_keystore_init(void);
extern void env_keystore_changed(void);
extern void env_keystore_lock_tenant(EnvSpi *s, const char *tenant, void *row);
extern int32 env_keystore_rotate_data_key(const char *tenant, size_t tenant_len,
										  const char *purpose, size_t purpose_len);
extern int32 env_keystore_rotate_tenant_key(const char *tenant, size_t tenant_len);
extern int64 env_keystore_rewrap_tenants(int32 batch_size, int64 *remaining);
extern void env_keystore_set_key_source(const char *tenant, size_t tenant_len,
										bool to_customer);
extern void env_key_event(EnvSpi *s, const char *operation, const char *tenant,
						  const char *purpose, int32 version, const char *detail);
extern bool env_keystore_tenant_exists(const char *tenant, size_t tenant_len);
extern const EnvDataKey *env_keystore_index_key(const char *tenant,
												size_t tenant_len,
												const char *purpose,
												size_t purpose_len);
extern const EnvDataKey *env_keystore_active_key(const char *tenant,
												 size_t tenant_len,
												 const char *purpose,
												 size_t purpose_len);
extern const EnvDataKey *env_keystore_key_by_id(uint64 key_id);
extern void env_keystore_create_tenant(const char *tenant, size_t tenant_len);
extern int32 env_keystore_create_data_key(const char *tenant,
										  size_t tenant_len,
										  const char *purpose,
										  size_t purpose_len);

/* encrypt.c */
extern bytea *env_open_ciphertext(bytea *ciphertext, bytea *aad,
								  const EnvDataKey **key_out);

/* tenant.c */
extern void env_tenant_init(void);
extern void env_tenant_check(const char *tenant, size_t len, bool for_ciphertext);

/* tokens.c */
extern bool env_token_verify(text *token, char *tenant_out);

/* errors.c */
extern void env_check_tenant_name(const char *tenant, size_t len);
extern void env_check_purpose_name(const char *purpose, size_t len);
extern void env_error_crypto(EnvCryptoStatus status, const char *what) pg_attribute_noreturn();
extern void env_error_auth_failed(void) pg_attribute_noreturn();

#endif							/* ENVAULT_H */
