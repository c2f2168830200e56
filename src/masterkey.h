/*-------------------------------------------------------------------------
 *
 * masterkey.h
 *		The server's own secrets: the master key and the token pepper.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_MASTERKEY_H
#define ENVAULT_MASTERKEY_H

#include "crypto.h"

extern void env_masterkey_init(void);
extern const EnvXaesKey *env_master_key(void);
extern const uint8 *env_master_kcv(void);
extern const EnvXaesKey *env_previous_master_key(const uint8 **kcv);
extern const uint8 *env_pepper(bool previous, const uint8 **kcv);
extern char *env_kcv_fingerprint(const uint8 *kcv);
extern void env_context_mac(const uint8 *data, size_t len, uint8 *mac);

/* a tenant's customer-managed key, from envault.customer_key_command */
extern void env_customer_key(const char *tenant, uint8 *key, uint8 *kcv);

/* settings that hold a key in hex, refused without preloading */
extern bool env_check_hex_setting(const char *name, const char *use_instead,
								  char **newval, bool *refused);
extern void env_error_hex_refused(const char *name, const char *use_instead);

#endif							/* ENVAULT_MASTERKEY_H */
