/*-------------------------------------------------------------------------
 *
 * tenant.h
 *		The current tenant of a session, and who may use which tenant's keys.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_TENANT_H
#define ENVAULT_TENANT_H

extern void env_tenant_init(void);
extern const char *env_tenant_current(void);
extern void env_tenant_check(const char *tenant, size_t len, bool for_ciphertext);
extern const char *env_tenant_token_id(void);
extern void env_tenant_revalidate(void);

#endif							/* ENVAULT_TENANT_H */
