/*-------------------------------------------------------------------------
 *
 * names.h
 *		Tenant and purpose names: what they may be.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_NAMES_H
#define ENVAULT_NAMES_H

extern void env_check_tenant_name(const char *tenant, size_t len);
extern void env_check_purpose_name(const char *purpose, size_t len);

#endif							/* ENVAULT_NAMES_H */
