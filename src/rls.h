/*-------------------------------------------------------------------------
 *
 * rls.h
 *		Row-level security on the current tenant.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_RLS_H
#define ENVAULT_RLS_H

extern void env_rls_init(void);

#endif							/* ENVAULT_RLS_H */
