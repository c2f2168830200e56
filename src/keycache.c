/*-------------------------------------------------------------------------
 *
 * keycache.c
 *		The per-backend cache of unwrapped keys, in locked memory, and its
 *		invalidation across backends (shared memory).
 *
 * The cache is an LRU of unwrapped keys bounded by envault.key_cache_size
 * entries, each entry living at most envault.key_cache_ttl seconds.  The
 * keys of a tenant with a customer-managed key live at most
 * envault.customer_key_ttl seconds, and by default (0) only until the end of
 * the statement that fetched the customer key: the next statement fetches
 * it again, so a customer that withholds its key stops every session at its
 * next statement.  An entry added during a (sub)transaction that aborts is
 * evicted with it, so a data key created by an aborted transaction is never
 * used to encrypt.
 *
 * Prepared keys live in slots of locked, non-dumpable pages; an evicted
 * slot is wiped (and its OpenSSL context freed, which cleanses the key
 * schedule) before it is reused.  keywrap.c unwraps keys into slots taken
 * from here, and keystore.c decides what is cached: this module never reads
 * a key table.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "keycache.h"

#include "scaleout.h"

#include <time.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* settings */
static int	kc_cache_size = 1000;
static int	kc_cache_ttl = 300;
static int	kc_customer_key_ttl = 0;	/* 0: one statement */

/* --- slots for prepared keys, in locked pages ------------------------- */

#define KC_PAGE_SIZE	4096

typedef union KcSlot
{
	EnvXaesKey	xk;
	union KcSlot *next;
} KcSlot;

static KcSlot *kc_free_slots = NULL;
static bool kc_exit_registered = false;

static void kc_wipe_at_exit(int code, Datum arg);

/*
 * A slot for a prepared key, in locked memory.  keywrap.c prepares keys
 * into it; it is wiped by env_keycache_slot_free(), or with the entry that
 * takes it over.
 */
EnvXaesKey *
env_keycache_slot_alloc(void)
{
	KcSlot	   *slot;

	if (kc_free_slots == NULL)
	{
		KcSlot	   *page = env_locked_alloc(KC_PAGE_SIZE);
		int			i;

		if (page == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory for the envault key cache")));
		/* env_locked_alloc does not say whether mlock worked: ask again */
		if (!env_locked_relock(page, KC_PAGE_SIZE))
			env_warn_memory_unlocked();
		if (!kc_exit_registered)
		{
			on_proc_exit(kc_wipe_at_exit, (Datum) 0);
			kc_exit_registered = true;
		}
		for (i = 0; i < (int) (KC_PAGE_SIZE / sizeof(KcSlot)); i++)
		{
			page[i].next = kc_free_slots;
			kc_free_slots = &page[i];
		}
	}
	slot = kc_free_slots;
	kc_free_slots = slot->next;
	memset(slot, 0, sizeof(KcSlot));
	return &slot->xk;
}

void
env_keycache_slot_free(EnvXaesKey *xk)
{
	KcSlot	   *slot = (KcSlot *) xk;

	env_xaes_key_clear(xk);
	env_wipe(slot, sizeof(KcSlot));
	slot->next = kc_free_slots;
	kc_free_slots = slot;
}

/* --- cache entries ------------------------------------------------------ */

typedef enum KcKind
{
	KC_TENANT,
	KC_DATA_KEY
} KcKind;

typedef struct KcNode
{
	dlist_node	lru;			/* most recently used at the head */
	KcKind		kind;
	int64		loaded_at;		/* monotonic seconds */
	LocalTransactionId lxid;	/* the statement that loaded it: its */
	TimestampTz stmt_start;		/* transaction and its start */
	bool		customer;		/* its tenant uses a customer-managed key */
	SubTransactionId subxid;	/* adding (sub)transaction, until commit */
	EnvXaesKey *xk;
} KcNode;

typedef struct KcTenant
{
	char		name[ENV_TENANT_MAXLEN + 1];	/* hash key */
	KcNode		node;
	int32		key_version;
} KcTenant;

typedef struct KcDataKey
{
	uint64		key_id;			/* hash key */
	KcNode		node;
	EnvDataKey	pub;
} KcDataKey;

/* "tenant" 0x1F "purpose": control characters never occur in either name */
#define KC_ACTIVE_KEYLEN (ENV_TENANT_MAXLEN + 1 + ENV_PURPOSE_MAXLEN + 1)

typedef struct KcActive
{
	char		name[KC_ACTIVE_KEYLEN]; /* hash key */
	uint64		key_id;
} KcActive;

/*
 * A data key that opens nothing (retired, destroyed, or of a revoked or
 * destroyed tenant), remembered so that envault.key_state() of many values
 * under it reads its row once.  Forgotten with the whole cache, and at every
 * (sub)transaction abort, as it may reflect a change that rolled back.
 */
typedef struct KcUnusable
{
	uint64		key_id;			/* hash key */
	char		tenant[ENV_TENANT_MAXLEN + 1];
	const char *why;			/* a static string, see env_keystore_unusable */
} KcUnusable;

static HTAB *kc_tenants = NULL;
static HTAB *kc_data_keys = NULL;
static HTAB *kc_active = NULL;
static HTAB *kc_unusable = NULL;
static long kc_unusable_count = 0;
static dlist_head kc_lru = DLIST_STATIC_INIT(kc_lru);
static int	kc_count = 0;
static int	kc_pending = 0;

#define KC_CONTAINER(type, node) \
	((type *) ((char *) (node) - offsetof(type, node)))

static int64
kc_now(void)
{
	struct timespec ts;

#ifdef CLOCK_MONOTONIC_COARSE
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
	clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
	return (int64) ts.tv_sec;
}

static void
kc_active_name(char *buf, const char *tenant, size_t tenant_len,
			   const char *purpose, size_t purpose_len)
{
	memcpy(buf, tenant, tenant_len);
	buf[tenant_len] = 0x1F;
	memcpy(buf + tenant_len + 1, purpose, purpose_len);
	buf[tenant_len + 1 + purpose_len] = '\0';
}

static void
kc_evict(KcNode *node)
{
	dlist_delete(&node->lru);
	env_keycache_slot_free(node->xk);
	node->xk = NULL;
	kc_count--;
	if (node->subxid != InvalidSubTransactionId)
		kc_pending--;

	if (node->kind == KC_TENANT)
	{
		KcTenant   *t = KC_CONTAINER(KcTenant, node);

		hash_search(kc_tenants, t->name, HASH_REMOVE, NULL);
	}
	else
	{
		KcDataKey  *d = KC_CONTAINER(KcDataKey, node);
		char		name[KC_ACTIVE_KEYLEN];
		KcActive   *a;

		kc_active_name(name, d->pub.tenant, strlen(d->pub.tenant),
					   d->pub.purpose, strlen(d->pub.purpose));
		a = hash_search(kc_active, name, HASH_FIND, NULL);
		if (a != NULL && a->key_id == d->key_id)
			hash_search(kc_active, name, HASH_REMOVE, NULL);
		if (d->pub.context != NULL)
			pfree(d->pub.context);
		hash_search(kc_data_keys, &d->key_id, HASH_REMOVE, NULL);
	}
}

/*
 * The statement running now, as PostgreSQL tells statements apart for
 * statement_timestamp(): every command message from the client (a simple
 * query string, or each Bind or Execute of the extended protocol) starts a
 * new one, and so does every transaction.  Whatever a statement runs (the
 * functions it calls, PL/pgSQL loops) belongs to it.
 */
static inline LocalTransactionId
kc_statement_lxid(void)
{
	return MyProc != NULL ? ENV_MY_LXID() : InvalidLocalTransactionId;
}

/*
 * Has an entry outlived its lifetime, by the settings in force now (so that
 * lowering them shortens what is already cached)?
 */
static bool
kc_expired(KcNode *node)
{
	int			ttl = kc_cache_ttl;

	if (node->customer)
	{
		if (kc_customer_key_ttl == 0)
			return node->lxid != kc_statement_lxid() ||
				node->stmt_start != GetCurrentStatementStartTimestamp();
		ttl = Min(kc_customer_key_ttl, kc_cache_ttl);
	}
	return kc_now() - node->loaded_at >= ttl;
}

/* A hit: false if the entry has outlived its lifetime (it is then evicted). */
static bool
kc_touch(KcNode *node)
{
	if (kc_expired(node))
	{
		kc_evict(node);
		return false;
	}
	dlist_move_head(&kc_lru, &node->lru);
	return true;
}

static void
kc_forget_unusable(void)
{
	HASH_SEQ_STATUS seq;
	KcUnusable *u;

	if (kc_unusable_count == 0)
		return;
	hash_seq_init(&seq, kc_unusable);
	while ((u = hash_seq_search(&seq)) != NULL)
		hash_search(kc_unusable, &u->key_id, HASH_REMOVE, NULL);
	kc_unusable_count = 0;
}

/* Evict (and so wipe) every cached key, and forget every unusable one. */
static void
kc_evict_all(void)
{
	while (!dlist_is_empty(&kc_lru))
		kc_evict(dlist_tail_element(KcNode, lru, &kc_lru));
	kc_forget_unusable();
}

static void
kc_wipe_at_exit(int code, Datum arg)
{
	kc_evict_all();
}

/* --- invalidation across backends --------------------------------------
 *
 * A transaction that changes the state of a key (rotation, retirement,
 * destruction, revocation ...) calls env_keystore_changed().  After it
 * commits, every backend drops its whole cache before its next key lookup:
 *
 * - preloaded: a generation counter in shared memory is bumped after the
 *   commit (from the commit callback, so a backend that reloads in between
 *   can only see the new state or be flushed again), and every lookup
 *   compares it with the last one it saw: one atomic read;
 * - not preloaded: a relcache invalidation of envault.tenants, which other
 *   backends process at their next transaction start.
 */
typedef struct KcShared
{
	pg_atomic_uint64 generation;
} KcShared;

static KcShared *kc_shared = NULL;
static uint64 kc_seen_generation = 0;
static bool kc_bump_at_commit = false;
static Oid	kc_tenants_relid = InvalidOid;
static shmem_request_hook_type kc_prev_shmem_request = NULL;
static shmem_startup_hook_type kc_prev_shmem_startup = NULL;

static void
kc_shmem_request(void)
{
	if (kc_prev_shmem_request)
		kc_prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(KcShared)));
}

static void
kc_shmem_startup(void)
{
	bool		found;

	if (kc_prev_shmem_startup)
		kc_prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	kc_shared = ShmemInitStruct("envault key store", sizeof(KcShared), &found);
	if (!found)
		pg_atomic_init_u64(&kc_shared->generation, 1);
	LWLockRelease(AddinShmemInitLock);
}

static bool kc_flush_requested = false;

/* changes noticed so far, for env_keystore_changes() */
static uint64 kc_changes = 0;

/* Note a change another backend committed, if any; never evicts. */
static inline void
kc_notice_generation(void)
{
	if (kc_shared != NULL)
	{
		uint64		g = pg_atomic_read_u64(&kc_shared->generation);

		if (g != kc_seen_generation)
		{
			kc_flush_requested = true;
			kc_seen_generation = g;
			kc_changes++;
		}
	}
}

/*
 * Called at the entry of every key lookup, never in the middle of an
 * operation that holds cached keys: drops the whole cache if a change of
 * key state was committed since the last lookup.
 */
void
env_keycache_check_generation(void)
{
	kc_notice_generation();
	if (kc_flush_requested)
	{
		kc_evict_all();
		kc_flush_requested = false;
	}
}

/*
 * How many key-state changes this backend has noticed so far.  The tenant
 * context uses it to verify its token again after any of them (a token
 * revocation is one), at the cost of one atomic read per call.
 */
uint64
env_keystore_changes(void)
{
	kc_notice_generation();
	return kc_changes;
}

/*
 * Invalidations arrive at arbitrary points, even inside this module's own
 * SPI calls (our own, at CommandCounterIncrement): only note them here.
 */
static void
kc_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid ||
		(OidIsValid(kc_tenants_relid) && relid == kc_tenants_relid))
	{
		kc_flush_requested = true;
		kc_changes++;
	}
}

/*
 * The state of some key changed in this transaction: forget every cached
 * key now, and make every other backend do the same once this commits.
 */
void
env_keystore_changed(void)
{
	kc_evict_all();
	kc_changes++;
	env_keystore_tables_changed();
}

/*
 * envault.tenants or envault.data_keys was written in this transaction,
 * by envault or not (envault.key_tables_changed, a statement trigger):
 * make every backend drop its cached keys once this commits.  Nothing is
 * evicted now; this backend's own lookups notice the relcache invalidation
 * at their next entry.
 */
void
env_keystore_tables_changed(void)
{
	Oid			nsp = get_namespace_oid("envault", false);

	kc_bump_at_commit = true;
	kc_tenants_relid = get_relname_relid("tenants", nsp);
	if (OidIsValid(kc_tenants_relid))
		CacheInvalidateRelcacheByRelid(kc_tenants_relid);
}

/* Has this transaction changed key state? */
bool
env_keystore_change_pending(void)
{
	return kc_bump_at_commit;
}

/*
 * A change committed in another transaction (COMMIT PREPARED, see
 * scaleout.c): every backend drops its cached keys before its next lookup.
 */
void
env_keystore_bump(void)
{
	if (kc_shared != NULL)
		pg_atomic_fetch_add_u64(&kc_shared->generation, 1);
}

/* Make room for one more entry, evicting the least recently used. */
static void
kc_make_room(void)
{
	while (kc_count >= kc_cache_size && !dlist_is_empty(&kc_lru))
		kc_evict(dlist_tail_element(KcNode, lru, &kc_lru));
}

static void
kc_link(KcNode *node, KcKind kind, EnvXaesKey *xk, bool customer)
{
	node->customer = customer;
	node->kind = kind;
	node->xk = xk;
	node->loaded_at = kc_now();
	node->lxid = kc_statement_lxid();
	node->stmt_start = GetCurrentStatementStartTimestamp();
	node->subxid = GetCurrentSubTransactionId();
	dlist_push_head(&kc_lru, &node->lru);
	kc_count++;
	kc_pending++;
}

/* Evict every entry added by subtransaction subxid (or by any, if invalid). */
static void
kc_evict_pending(SubTransactionId subxid)
{
	dlist_mutable_iter iter;

	if (kc_pending == 0)
		return;
	dlist_foreach_modify(iter, &kc_lru)
	{
		KcNode	   *node = dlist_container(KcNode, lru, iter.cur);

		if (node->subxid != InvalidSubTransactionId &&
			(subxid == InvalidSubTransactionId || node->subxid == subxid))
			kc_evict(node);
	}
}

static void
kc_reassign_pending(SubTransactionId from, SubTransactionId to)
{
	dlist_iter	iter;

	if (kc_pending == 0)
		return;
	dlist_foreach(iter, &kc_lru)
	{
		KcNode	   *node = dlist_container(KcNode, lru, iter.cur);

		if (node->subxid == from)
		{
			node->subxid = to;
			if (to == InvalidSubTransactionId)
				kc_pending--;
		}
	}
}

static void
kc_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			{
				dlist_iter	iter;

				if (kc_bump_at_commit && kc_shared != NULL)
					pg_atomic_fetch_add_u64(&kc_shared->generation, 1);
				kc_bump_at_commit = false;

				if (kc_pending == 0)
					break;
				dlist_foreach(iter, &kc_lru)
					dlist_container(KcNode, lru, iter.cur)->subxid =
					InvalidSubTransactionId;
				kc_pending = 0;
				break;
			}
		case XACT_EVENT_PRE_PREPARE:

			/*
			 * The change becomes visible at COMMIT PREPARED, maybe in another
			 * backend: only if its PREPARE TRANSACTION registered it (with
			 * envault preloaded, scaleout.c) is anyone there to tell the
			 * others.
			 */
			if (kc_bump_at_commit && !env_scaleout_prepare_registered())
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that changed envault keys")));
			break;
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			kc_bump_at_commit = false;
			/* a prepared transaction may still roll back: forget its keys */
			kc_evict_pending(InvalidSubTransactionId);
			kc_forget_unusable();
			break;
		default:
			break;
	}
}

static void
kc_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		kc_evict_pending(mySubid);
		kc_forget_unusable();
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		kc_reassign_pending(mySubid, parentSubid);
}

/*
 * env_spi_begin() looked envault.tenants up: invalidations of it from now
 * on flush the cache (see kc_relcache_callback).
 */
void
env_keycache_watch_tenants(Oid relid)
{
	kc_tenants_relid = relid;
}

/* --- tenant keys --------------------------------------------------------- */

/*
 * The cached key of a tenant, if it is of key_version and has not outlived
 * its lifetime; NULL otherwise (an entry of another version is evicted).
 */
EnvXaesKey *
env_keycache_tenant_key(const char *tenant, int32 key_version)
{
	KcTenant   *t = hash_search(kc_tenants, tenant, HASH_FIND, NULL);

	if (t != NULL)
	{
		if (t->key_version != key_version)
			kc_evict(&t->node);
		else if (kc_touch(&t->node))
			return t->node.xk;
	}
	return NULL;
}

/*
 * Cache a tenant key that was just unwrapped into xk.  The entry takes the
 * slot over: if anything fails (out of memory), the slot is wiped and freed.
 */
void
env_keycache_add_tenant_key(const char *tenant, int32 key_version,
							bool customer, EnvXaesKey *xk)
{
	KcTenant   *t;
	bool		found;

	kc_make_room();
	PG_TRY();
	{
		t = hash_search(kc_tenants, tenant, HASH_ENTER, &found);
	}
	PG_CATCH();
	{
		env_keycache_slot_free(xk); /* out of memory: the key is not kept */
		PG_RE_THROW();
	}
	PG_END_TRY();
	t->key_version = key_version;
	kc_link(&t->node, KC_TENANT, xk, customer);
}

/* --- data keys ----------------------------------------------------------- */

/* The cache entry of a data key that env_keycache_find_data_key() returned */
static inline KcDataKey *
kc_entry_of(EnvDataKey *key)
{
	return (KcDataKey *) ((char *) key - offsetof(KcDataKey, pub));
}

/* The cached data key of that id, whatever its age; NULL if none. */
EnvDataKey *
env_keycache_find_data_key(uint64 key_id)
{
	KcDataKey  *d = hash_search(kc_data_keys, &key_id, HASH_FIND, NULL);

	return d != NULL ? &d->pub : NULL;
}

/*
 * A hit on a data key env_keycache_find_data_key() returned: false if it
 * has outlived its lifetime, in which case it is evicted (and key with it).
 */
bool
env_keycache_use(EnvDataKey *key)
{
	return kc_touch(&kc_entry_of(key)->node);
}

/* Has a cached data key outlived its lifetime?  Evicts nothing. */
bool
env_keycache_expired(EnvDataKey *key)
{
	return kc_expired(&kc_entry_of(key)->node);
}

/*
 * The cached active data key of (tenant, purpose), if it is known and has
 * not outlived its lifetime; NULL otherwise.
 */
EnvDataKey *
env_keycache_active_key(const char *tenant, size_t tenant_len,
						const char *purpose, size_t purpose_len)
{
	char		name[KC_ACTIVE_KEYLEN];
	KcActive   *a;

	kc_active_name(name, tenant, tenant_len, purpose, purpose_len);
	a = hash_search(kc_active, name, HASH_FIND, NULL);
	if (a != NULL)
	{
		KcDataKey  *d = hash_search(kc_data_keys, &a->key_id, HASH_FIND, NULL);

		if (d != NULL && kc_touch(&d->node))
			return &d->pub;
	}
	return NULL;
}

/* The data key key_id, cached already, is the active one of (tenant, purpose). */
void
env_keycache_set_active(const char *tenant, const char *purpose, uint64 key_id)
{
	char		name[KC_ACTIVE_KEYLEN];
	KcActive   *a;
	bool		found;

	kc_active_name(name, tenant, strlen(tenant), purpose, strlen(purpose));
	a = hash_search(kc_active, name, HASH_ENTER, &found);
	a->key_id = key_id;
}

/*
 * Put a prepared data key into the cache.  It takes the slot over: if
 * anything fails (out of memory), the slot is wiped and freed and nothing
 * of the key is left in the cache.
 */
EnvDataKey *
env_keycache_add_data_key(uint64 key_id, const char *tenant, const char *purpose,
						  int32 version, bool active, TimestampTz created_at,
						  bool customer, EnvXaesKey *xk)
{
	KcDataKey  *d;
	size_t		tlen = strlen(tenant);
	size_t		plen = strlen(purpose);
	size_t		context_len = env_context_len(tlen, plen);
	uint8	   *volatile context = NULL;
	bool		found;

	d = hash_search(kc_data_keys, &key_id, HASH_FIND, NULL);
	if (d != NULL)
		kc_evict(&d->node);
	kc_make_room();
	PG_TRY();
	{
		context = MemoryContextAlloc(TopMemoryContext, context_len);
		if (active)
		{
			char		name[KC_ACTIVE_KEYLEN];
			KcActive   *a;

			/*
			 * (if the entry below fails, this names a key not cached:
			 * harmless)
			 */
			kc_active_name(name, tenant, tlen, purpose, plen);
			a = hash_search(kc_active, name, HASH_ENTER, &found);
			a->key_id = key_id;
		}
		d = hash_search(kc_data_keys, &key_id, HASH_ENTER, &found);
	}
	PG_CATCH();
	{
		if (context != NULL)
			pfree(context);
		env_keycache_slot_free(xk);
		PG_RE_THROW();
	}
	PG_END_TRY();
	memset(&d->pub, 0, sizeof(EnvDataKey));
	d->pub.key_id = key_id;
	d->pub.version = version;
	strlcpy(d->pub.tenant, tenant, sizeof(d->pub.tenant));
	strlcpy(d->pub.purpose, purpose, sizeof(d->pub.purpose));
	d->pub.context_len = context_len;
	d->pub.context = context;
	env_context_build(d->pub.context, tenant, tlen, purpose, plen);
	d->pub.created_at = created_at;
	d->pub.xk = xk;
	kc_link(&d->node, KC_DATA_KEY, xk, customer);
	return &d->pub;
}

/* --- data keys that open nothing ----------------------------------------- */

/*
 * Why the data key key_id opens nothing, if that is remembered (see
 * KcUnusable), with the tenant it belongs to in *tenant; NULL if not.
 */
const char *
env_keycache_unusable(uint64 key_id, const char **tenant)
{
	KcUnusable *u = hash_search(kc_unusable, &key_id, HASH_FIND, NULL);

	if (u == NULL)
		return NULL;
	*tenant = u->tenant;
	return u->why;
}

/* Remember why a data key opens nothing; why is a static string. */
void
env_keycache_add_unusable(uint64 key_id, const char *tenant, const char *why)
{
	KcUnusable *u;
	bool		found;

	if (kc_unusable_count >= kc_cache_size)
		kc_forget_unusable();
	u = hash_search(kc_unusable, &key_id, HASH_ENTER, &found);
	if (!found)
		kc_unusable_count++;
	strlcpy(u->tenant, tenant, sizeof(u->tenant));
	u->why = why;
}

void
env_keycache_init(void)
{
	HASHCTL		ctl;

	DefineCustomIntVariable("envault.key_cache_size",
							gettext_noop("Maximum number of unwrapped keys each session caches."),
							NULL,
							&kc_cache_size,
							1000, 1, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("envault.customer_key_ttl",
							gettext_noop("Longest time the keys of a tenant with a customer-managed key stay cached (0: one statement)."),
							gettext_noop("With 0, every statement that uses such a tenant runs envault.customer_key_command once, and withholding the customer key stops every session at its next statement; a positive value lets sessions that hold the keys use them that long."),
							&kc_customer_key_ttl,
							0, 0, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("envault.key_cache_ttl",
							gettext_noop("Time after which a cached unwrapped key is unwrapped again."),
							NULL,
							&kc_cache_ttl,
							300, 1, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = ENV_TENANT_MAXLEN + 1;
	ctl.entrysize = sizeof(KcTenant);
	kc_tenants = hash_create("envault tenant keys", 64, &ctl,
							 HASH_ELEM | HASH_STRINGS);
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(KcDataKey);
	kc_data_keys = hash_create("envault data keys", 256, &ctl,
							   HASH_ELEM | HASH_BLOBS);
	ctl.keysize = KC_ACTIVE_KEYLEN;
	ctl.entrysize = sizeof(KcActive);
	kc_active = hash_create("envault active data keys", 256, &ctl,
							HASH_ELEM | HASH_STRINGS);
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(KcUnusable);
	kc_unusable = hash_create("envault unusable data keys", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS);

	RegisterXactCallback(kc_xact_callback, NULL);
	RegisterSubXactCallback(kc_subxact_callback, NULL);
	CacheRegisterRelcacheCallback(kc_relcache_callback, (Datum) 0);

	if (process_shared_preload_libraries_in_progress)
	{
		kc_prev_shmem_request = shmem_request_hook;
		shmem_request_hook = kc_shmem_request;
		kc_prev_shmem_startup = shmem_startup_hook;
		shmem_startup_hook = kc_shmem_startup;
	}
}
