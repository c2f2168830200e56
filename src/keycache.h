/*-------------------------------------------------------------------------
 *
 * keycache.h
 *		The per-backend cache of unwrapped keys, in locked memory, and its
 *		invalidation across backends.
 *
 * Only keystore.c looks keys up here, and only keywrap.c and keystore.c
 * take slots; spi.c tells the cache which relation envault.tenants is, and
 * the rest of envault sees it only through the notifications of changed
 * key state below.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_KEYCACHE_H
#define ENVAULT_KEYCACHE_H

#include "keystore.h"

extern void env_keycache_init(void);

/* slots of locked, non-dumpable memory that prepared keys live in */
extern EnvXaesKey *env_keycache_slot_alloc(void);
extern void env_keycache_slot_free(EnvXaesKey *xk);

/* at the entry of every key lookup: drop the cache if key state changed */
extern void env_keycache_check_generation(void);
extern void env_keycache_watch_tenants(Oid relid);

/* tenant keys */
extern EnvXaesKey *env_keycache_tenant_key(const char *tenant,
										   int32 key_version);
extern void env_keycache_add_tenant_key(const char *tenant, int32 key_version,
										bool customer, EnvXaesKey *xk);

/* data keys */
extern EnvDataKey *env_keycache_find_data_key(uint64 key_id);
extern bool env_keycache_use(EnvDataKey *key);
extern bool env_keycache_expired(EnvDataKey *key);
extern EnvDataKey *env_keycache_active_key(const char *tenant,
										   size_t tenant_len,
										   const char *purpose,
										   size_t purpose_len);
extern void env_keycache_set_active(const char *tenant, const char *purpose,
									uint64 key_id);
extern EnvDataKey *env_keycache_add_data_key(uint64 key_id, const char *tenant,
											 const char *purpose, int32 version,
											 bool active, TimestampTz created_at,
											 bool customer, EnvXaesKey *xk);

/* data keys that open nothing, remembered for envault.key_state() */
extern const char *env_keycache_unusable(uint64 key_id, const char **tenant);
extern void env_keycache_add_unusable(uint64 key_id, const char *tenant,
									  const char *why);

/*
 * Changes of key state (rotation, retirement, destruction, revocation,
 * token revocation ...).  They keep the key store's name, as what they
 * announce is a change of the key store; the cache is what acts on them.
 *
 * env_keystore_changed: the state of some key changed in this transaction;
 * forget every cached key now, and make every backend do so once it commits.
 * env_keystore_tables_changed: the key tables were written (by envault or
 * not); every backend drops its cache once this commits.
 * env_keystore_bump: a change committed in another transaction (COMMIT
 * PREPARED, see scaleout.c).
 * env_keystore_changes: how many changes this backend has noticed, from any
 * backend, so far.  A caller that remembers the value can tell whether
 * anything changed since; reading it never evicts a cached key.
 */
extern void env_keystore_changed(void);
extern void env_keystore_tables_changed(void);
extern bool env_keystore_change_pending(void);
extern void env_keystore_bump(void);
extern uint64 env_keystore_changes(void);

#endif							/* ENVAULT_KEYCACHE_H */
