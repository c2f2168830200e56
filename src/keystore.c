/*-------------------------------------------------------------------------
 *
 * keystore.c
 *		Tenant keys and data keys: reading and writing the key tables,
 *		wrapping and unwrapping, and the per-backend key cache.
 *
 * Key tables (envault.tenants, envault.data_keys) hold only wrapped keys.
 * Roles that may encrypt cannot read them, so this module reads and writes
 * them through SPI as the owner of the envault schema, with every operator
 * and function schema-qualified so that a caller's search_path cannot
 * interfere.  That happens only on a cache miss.
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
 * Secrets: an unwrapped key exists on the stack of ks_unwrap() only until it
 * is prepared into an EnvXaesKey, and is wiped there on every path.  Prepared
 * keys live in slots of locked, non-dumpable pages; an evicted slot is wiped
 * (and its OpenSSL context freed, which cleanses the key schedule) before it
 * is reused.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "scaleout.h"

#include <time.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "common/hashfn.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* settings */
static int	ks_cache_size = 1000;
static int	ks_cache_ttl = 300;
static int	ks_data_key_max_age = 0;
static int	ks_customer_key_ttl = 0;	/* 0: one statement */

/* --- slots for prepared keys, in locked pages ------------------------- */

#define KS_PAGE_SIZE	4096

typedef union KsSlot
{
	EnvXaesKey	xk;
	union KsSlot *next;
} KsSlot;

static KsSlot *ks_free_slots = NULL;
static bool ks_exit_registered = false;

static void ks_wipe_at_exit(int code, Datum arg);
static int32 ks_rotate(const char *tenant, const char *purpose, int max_age);

static EnvXaesKey *
ks_slot_alloc(void)
{
	KsSlot	   *slot;

	if (ks_free_slots == NULL)
	{
		KsSlot	   *page = env_locked_alloc(KS_PAGE_SIZE);
		int			i;

		if (page == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory for the envault key cache")));
		/* env_locked_alloc does not say whether mlock worked: ask again */
		if (!env_locked_relock(page, KS_PAGE_SIZE))
			env_warn_memory_unlocked();
		if (!ks_exit_registered)
		{
			on_proc_exit(ks_wipe_at_exit, (Datum) 0);
			ks_exit_registered = true;
		}
		for (i = 0; i < (int) (KS_PAGE_SIZE / sizeof(KsSlot)); i++)
		{
			page[i].next = ks_free_slots;
			ks_free_slots = &page[i];
		}
	}
	slot = ks_free_slots;
	ks_free_slots = slot->next;
	memset(slot, 0, sizeof(KsSlot));
	return &slot->xk;
}

static void
ks_slot_free(EnvXaesKey *xk)
{
	KsSlot	   *slot = (KsSlot *) xk;

	env_xaes_key_clear(xk);
	env_wipe(slot, sizeof(KsSlot));
	slot->next = ks_free_slots;
	ks_free_slots = slot;
}

/* --- cache entries ------------------------------------------------------ */

typedef enum KsKind
{
	KS_TENANT,
	KS_DATA_KEY
} KsKind;

typedef struct KsNode
{
	dlist_node	lru;			/* most recently used at the head */
	KsKind		kind;
	int64		loaded_at;		/* monotonic seconds */
	LocalTransactionId lxid;	/* the statement that loaded it: its */
	TimestampTz stmt_start;		/* transaction and its start */
	bool		customer;		/* its tenant uses a customer-managed key */
	SubTransactionId subxid;	/* adding (sub)transaction, until commit */
	EnvXaesKey *xk;
} KsNode;

typedef struct KsTenant
{
	char		name[ENV_TENANT_MAXLEN + 1];	/* hash key */
	KsNode		node;
	int32		key_version;
} KsTenant;

typedef struct KsDataKey
{
	uint64		key_id;			/* hash key */
	KsNode		node;
	EnvDataKey	pub;
} KsDataKey;

/* "tenant" 0x1F "purpose": control characters never occur in either name */
#define KS_ACTIVE_KEYLEN (ENV_TENANT_MAXLEN + 1 + ENV_PURPOSE_MAXLEN + 1)

typedef struct KsActive
{
	char		name[KS_ACTIVE_KEYLEN]; /* hash key */
	uint64		key_id;
} KsActive;

/*
 * A data key that opens nothing (retired, destroyed, or of a revoked or
 * destroyed tenant), remembered so that envault.key_state() of many values
 * under it reads its row once.  Forgotten with the whole cache, and at every
 * (sub)transaction abort, as it may reflect a change that rolled back.
 */
typedef struct KsUnusable
{
	uint64		key_id;			/* hash key */
	char		tenant[ENV_TENANT_MAXLEN + 1];
	const char *why;			/* a static string, see env_keystore_unusable */
} KsUnusable;

static HTAB *ks_tenants = NULL;
static HTAB *ks_data_keys = NULL;
static HTAB *ks_active = NULL;
static HTAB *ks_unusable = NULL;
static long ks_unusable_count = 0;
static dlist_head ks_lru = DLIST_STATIC_INIT(ks_lru);
static int	ks_count = 0;
static int	ks_pending = 0;

#define KS_CONTAINER(type, node) \
	((type *) ((char *) (node) - offsetof(type, node)))

static int64
ks_now(void)
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
ks_active_name(char *buf, const char *tenant, size_t tenant_len,
			   const char *purpose, size_t purpose_len)
{
	memcpy(buf, tenant, tenant_len);
	buf[tenant_len] = 0x1F;
	memcpy(buf + tenant_len + 1, purpose, purpose_len);
	buf[tenant_len + 1 + purpose_len] = '\0';
}

static void
ks_evict(KsNode *node)
{
	dlist_delete(&node->lru);
	ks_slot_free(node->xk);
	node->xk = NULL;
	ks_count--;
	if (node->subxid != InvalidSubTransactionId)
		ks_pending--;

	if (node->kind == KS_TENANT)
	{
		KsTenant   *t = KS_CONTAINER(KsTenant, node);

		hash_search(ks_tenants, t->name, HASH_REMOVE, NULL);
	}
	else
	{
		KsDataKey  *d = KS_CONTAINER(KsDataKey, node);
		char		name[KS_ACTIVE_KEYLEN];
		KsActive   *a;

		ks_active_name(name, d->pub.tenant, strlen(d->pub.tenant),
					   d->pub.purpose, strlen(d->pub.purpose));
		a = hash_search(ks_active, name, HASH_FIND, NULL);
		if (a != NULL && a->key_id == d->key_id)
			hash_search(ks_active, name, HASH_REMOVE, NULL);
		if (d->pub.context != NULL)
			pfree(d->pub.context);
		hash_search(ks_data_keys, &d->key_id, HASH_REMOVE, NULL);
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
ks_statement_lxid(void)
{
	return MyProc != NULL ? ENV_MY_LXID() : InvalidLocalTransactionId;
}

/*
 * Has an entry outlived its lifetime, by the settings in force now (so that
 * lowering them shortens what is already cached)?
 */
static bool
ks_expired(KsNode *node)
{
	int			ttl = ks_cache_ttl;

	if (node->customer)
	{
		if (ks_customer_key_ttl == 0)
			return node->lxid != ks_statement_lxid() ||
				node->stmt_start != GetCurrentStatementStartTimestamp();
		ttl = Min(ks_customer_key_ttl, ks_cache_ttl);
	}
	return ks_now() - node->loaded_at >= ttl;
}

/* A hit: false if the entry has outlived its lifetime (it is then evicted). */
static bool
ks_touch(KsNode *node)
{
	if (ks_expired(node))
	{
		ks_evict(node);
		return false;
	}
	dlist_move_head(&ks_lru, &node->lru);
	return true;
}

static void
ks_forget_unusable(void)
{
	HASH_SEQ_STATUS seq;
	KsUnusable *u;

	if (ks_unusable_count == 0)
		return;
	hash_seq_init(&seq, ks_unusable);
	while ((u = hash_seq_search(&seq)) != NULL)
		hash_search(ks_unusable, &u->key_id, HASH_REMOVE, NULL);
	ks_unusable_count = 0;
}

/* Evict (and so wipe) every cached key, and forget every unusable one. */
static void
ks_evict_all(void)
{
	while (!dlist_is_empty(&ks_lru))
		ks_evict(dlist_tail_element(KsNode, lru, &ks_lru));
	ks_forget_unusable();
}

static void
ks_wipe_at_exit(int code, Datum arg)
{
	ks_evict_all();
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
typedef struct KsShared
{
	pg_atomic_uint64 generation;
} KsShared;

static KsShared *ks_shared = NULL;
static uint64 ks_seen_generation = 0;
static bool ks_bump_at_commit = false;
static Oid	ks_tenants_relid = InvalidOid;
static shmem_request_hook_type ks_prev_shmem_request = NULL;
static shmem_startup_hook_type ks_prev_shmem_startup = NULL;

static void
ks_shmem_request(void)
{
	if (ks_prev_shmem_request)
		ks_prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(KsShared)));
}

static void
ks_shmem_startup(void)
{
	bool		found;

	if (ks_prev_shmem_startup)
		ks_prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ks_shared = ShmemInitStruct("envault key store", sizeof(KsShared), &found);
	if (!found)
		pg_atomic_init_u64(&ks_shared->generation, 1);
	LWLockRelease(AddinShmemInitLock);
}

static bool ks_flush_requested = false;

/* changes noticed so far, for env_keystore_changes() */
static uint64 ks_changes = 0;

/* Note a change another backend committed, if any; never evicts. */
static inline void
ks_notice_generation(void)
{
	if (ks_shared != NULL)
	{
		uint64		g = pg_atomic_read_u64(&ks_shared->generation);

		if (g != ks_seen_generation)
		{
			ks_flush_requested = true;
			ks_seen_generation = g;
			ks_changes++;
		}
	}
}

/*
 * Called at the entry of every key lookup, never in the middle of an
 * operation that holds cached keys.
 */
static inline void
ks_check_generation(void)
{
	ks_notice_generation();
	if (ks_flush_requested)
	{
		ks_evict_all();
		ks_flush_requested = false;
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
	ks_notice_generation();
	return ks_changes;
}

/*
 * Invalidations arrive at arbitrary points, even inside this module's own
 * SPI calls (our own, at CommandCounterIncrement): only note them here.
 */
static void
ks_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid ||
		(OidIsValid(ks_tenants_relid) && relid == ks_tenants_relid))
	{
		ks_flush_requested = true;
		ks_changes++;
	}
}

/*
 * The state of some key changed in this transaction: forget every cached
 * key now, and make every other backend do the same once this commits.
 */
void
env_keystore_changed(void)
{
	ks_evict_all();
	ks_changes++;
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

	ks_bump_at_commit = true;
	ks_tenants_relid = get_relname_relid("tenants", nsp);
	if (OidIsValid(ks_tenants_relid))
		CacheInvalidateRelcacheByRelid(ks_tenants_relid);
}

/* Has this transaction changed key state? */
bool
env_keystore_change_pending(void)
{
	return ks_bump_at_commit;
}

/*
 * A change committed in another transaction (COMMIT PREPARED, see
 * scaleout.c): every backend drops its cached keys before its next lookup.
 */
void
env_keystore_bump(void)
{
	if (ks_shared != NULL)
		pg_atomic_fetch_add_u64(&ks_shared->generation, 1);
}

/* Make room for one more entry, evicting the least recently used. */
static void
ks_make_room(void)
{
	while (ks_count >= ks_cache_size && !dlist_is_empty(&ks_lru))
		ks_evict(dlist_tail_element(KsNode, lru, &ks_lru));
}

static void
ks_link(KsNode *node, KsKind kind, EnvXaesKey *xk, bool customer)
{
	node->customer = customer;
	node->kind = kind;
	node->xk = xk;
	node->loaded_at = ks_now();
	node->lxid = ks_statement_lxid();
	node->stmt_start = GetCurrentStatementStartTimestamp();
	node->subxid = GetCurrentSubTransactionId();
	dlist_push_head(&ks_lru, &node->lru);
	ks_count++;
	ks_pending++;
}

/* Evict every entry added by subtransaction subxid (or by any, if invalid). */
static void
ks_evict_pending(SubTransactionId subxid)
{
	dlist_mutable_iter iter;

	if (ks_pending == 0)
		return;
	dlist_foreach_modify(iter, &ks_lru)
	{
		KsNode	   *node = dlist_container(KsNode, lru, iter.cur);

		if (node->subxid != InvalidSubTransactionId &&
			(subxid == InvalidSubTransactionId || node->subxid == subxid))
			ks_evict(node);
	}
}

static void
ks_reassign_pending(SubTransactionId from, SubTransactionId to)
{
	dlist_iter	iter;

	if (ks_pending == 0)
		return;
	dlist_foreach(iter, &ks_lru)
	{
		KsNode	   *node = dlist_container(KsNode, lru, iter.cur);

		if (node->subxid == from)
		{
			node->subxid = to;
			if (to == InvalidSubTransactionId)
				ks_pending--;
		}
	}
}

static void
ks_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			{
				dlist_iter	iter;

				if (ks_bump_at_commit && ks_shared != NULL)
					pg_atomic_fetch_add_u64(&ks_shared->generation, 1);
				ks_bump_at_commit = false;

				if (ks_pending == 0)
					break;
				dlist_foreach(iter, &ks_lru)
					dlist_container(KsNode, lru, iter.cur)->subxid =
					InvalidSubTransactionId;
				ks_pending = 0;
				break;
			}
		case XACT_EVENT_PRE_PREPARE:

			/*
			 * The change becomes visible at COMMIT PREPARED, maybe in another
			 * backend: only if its PREPARE TRANSACTION registered it (with
			 * envault preloaded, scaleout.c) is anyone there to tell the
			 * others.
			 */
			if (ks_bump_at_commit && !env_scaleout_prepare_registered())
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that changed envault keys")));
			break;
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			ks_bump_at_commit = false;
			/* a prepared transaction may still roll back: forget its keys */
			ks_evict_pending(InvalidSubTransactionId);
			ks_forget_unusable();
			break;
		default:
			break;
	}
}

static void
ks_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		ks_evict_pending(mySubid);
		ks_forget_unusable();
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		ks_reassign_pending(mySubid, parentSubid);
}

/*
 * Does envault's schema in this database have a table (and column, unless
 * NULL) yet?  A server may run a newer library than the extension version
 * of a database that has not run ALTER EXTENSION envault UPDATE, and the
 * older upgrade scripts run with the newer library too.
 */
bool
env_schema_has(const char *table, const char *column)
{
	Oid			nsp = get_namespace_oid("envault", true);
	Oid			relid;

	if (!OidIsValid(nsp))
		return false;
	relid = get_relname_relid(table, nsp);
	if (!OidIsValid(relid))
		return false;
	return column == NULL || get_attnum(relid, column) != InvalidAttrNumber;
}

/* --- privileged access to the key tables ------------------------------ */

/*
 * Run SPI as the owner of the envault schema, so that roles without any
 * privilege on the key tables can use them through envault.  The caller's
 * own role is restored by env_spi_end(), or by transaction abort.
 */
void
env_spi_begin(EnvSpi *s)
{
	Oid			nsp = get_namespace_oid("envault", true);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"envault\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION envault.")));
	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	ks_tenants_relid = get_relname_relid("tenants", nsp);

	GetUserIdAndSecContext(&s->save_userid, &s->save_sec);
	s->caller_cxt = CurrentMemoryContext;
	/* a whole NameData: queries take it as a parameter of type name */
	s->caller_name = palloc0(NAMEDATALEN);
	strlcpy(s->caller_name, GetUserNameFromId(s->save_userid, false), NAMEDATALEN);
	SetUserIdAndSecContext(owner, s->save_sec | SECURITY_LOCAL_USERID_CHANGE);

	/*
	 * Every name in envault's queries is qualified; pinning search_path as
	 * well means a caller's schemas can never supply an operator or function
	 * to code that runs as the owner.  Transaction abort undoes it on error.
	 */
	s->guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	env_citus_allow_nested();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
env_spi_end(EnvSpi *s)
{
	SPI_finish();
	AtEOXact_GUC(true, s->guc_level);
	SetUserIdAndSecContext(s->save_userid, s->save_sec);
}

/*
 * Act on a user's table as its owner, in a security-restricted operation,
 * the way VACUUM, ANALYZE and REFRESH MATERIALIZED VIEW do.  envault's
 * privileged paths run as the owner of the envault schema (a superuser);
 * any code of the table that a statement on it may run (triggers, rules,
 * defaults, constraints, index expressions, policies, the functions those
 * call) belongs to the table's owner and must run with the owner's rights
 * and no more, and must not be able to change this session's state
 * (SET ROLE, temporary objects) for what runs after it.  search_path is
 * pinned as env_spi_begin pins it.  With no_force_rls, the owner's own
 * FORCE ROW LEVEL SECURITY does not hide rows (as for foreign key checks):
 * envault's maintenance must see every row of a chain.
 *
 * Undone by env_owner_end(), or by transaction abort.
 */
void
env_owner_begin(EnvOwner *o, Oid relid, bool no_force_rls)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	GetUserIdAndSecContext(&o->save_userid, &o->save_sec);
	SetUserIdAndSecContext(owner, o->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION |
						   (no_force_rls ? SECURITY_NOFORCE_RLS : 0));
	o->guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}

void
env_owner_end(EnvOwner *o)
{
	AtEOXact_GUC(true, o->guc_level);
	SetUserIdAndSecContext(o->save_userid, o->save_sec);
}

void
env_spi_run(const char *sql, int nargs, Oid *types, Datum *values, int expect)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);
	int			rc;

	if (plan == NULL)
		elog(ERROR, "envault key table query failed: %s",
			 SPI_result_code_string(SPI_result));

	/*
	 * Key state is read as of now, not as of the caller's snapshot: a
	 * REPEATABLE READ transaction that started before a revocation must not
	 * reload (and cache) the keys it revoked.
	 */
	rc = SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
							  InvalidSnapshot, false, true, 0);
	SPI_freeplan(plan);
	if (rc != expect)
		elog(ERROR, "envault key table query failed: %s",
			 SPI_result_code_string(rc));
}

/*
 * Column of the first result row, copied into the caller's context, where
 * it outlives env_spi_end().  A varlena is detoasted (decompressed, or read
 * from its TOAST table) into that context as well: a detoasted copy made
 * later, while SPI's context is current, would be freed with it.
 */
Datum
env_spi_col(EnvSpi *s, int col, bool *isnull, bool byval, int typlen)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  col, isnull);
	MemoryContext old;

	if (*isnull || byval)
		return d;
	old = MemoryContextSwitchTo(s->caller_cxt);
	if (typlen == -1)
		d = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
	else
		d = datumCopy(d, false, typlen);
	MemoryContextSwitchTo(old);
	return d;
}

/* A text column of the first result row as a C string in the caller's context */
char *
env_spi_cstring(EnvSpi *s, int col, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  col, isnull);
	MemoryContext old;
	char	   *str;

	if (*isnull)
		return NULL;
	old = MemoryContextSwitchTo(s->caller_cxt);
	str = TextDatumGetCString(d);
	MemoryContextSwitchTo(old);
	return str;
}

/* A tenant row as the key table queries return it */
typedef struct KsTenantRow
{
	int32		key_version;
	bytea	   *wrapped;
	bytea	   *kcv;			/* of the master or customer key wrapping it */
	bool		customer;		/* wrapped by a customer-managed key */
} KsTenantRow;

/* --- wrapping ----------------------------------------------------------- */

/*
 * Unwrap a 32-byte key and prepare it into a fresh slot.  Returns the slot,
 * or NULL when the wrapped key fails authentication.
 */
static EnvXaesKey *
ks_unwrap(const EnvXaesKey *kek, bytea *wrapped, const uint8 *aad,
		  size_t aad_len)
{
	EnvXaesKey *slot = ks_slot_alloc();
	uint8		key[ENV_KEY_LEN];
	EnvCryptoStatus st;
	bool		ok;

	st = env_key_unwrap(kek, (uint8 *) VARDATA_ANY(wrapped),
						VARSIZE_ANY_EXHDR(wrapped), aad, aad_len, key);
	ok = (st == ENV_CRYPTO_OK) && env_xaes_key_init(slot, key);
	env_wipe(key, sizeof(key));
	if (!ok)
	{
		ks_slot_free(slot);
		if (st == ENV_CRYPTO_AUTH_FAILED)
			return NULL;
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "unwrapping a key");
	}
	return slot;
}

/* Wrap a freshly generated key; the key itself is wiped before returning. */
static bytea *
ks_wrap_new_key(const EnvXaesKey *kek, const uint8 *aad, size_t aad_len,
				EnvXaesKey **prepared)
{
	bytea	   *wrapped = palloc(VARHDRSZ + ENV_WRAPPED_LEN);
	EnvXaesKey *slot = prepared ? ks_slot_alloc() : NULL;
	uint8		key[ENV_KEY_LEN];
	bool		ok;

	SET_VARSIZE(wrapped, VARHDRSZ + ENV_WRAPPED_LEN);
	ok = env_random_bytes(key, sizeof(key)) &&
		env_key_wrap(kek, key, aad, aad_len,
					 (uint8 *) VARDATA(wrapped)) == ENV_CRYPTO_OK &&
		(slot == NULL || env_xaes_key_init(slot, key));
	env_wipe(key, sizeof(key));
	if (!ok)
	{
		if (slot)
			ks_slot_free(slot);
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "generating a key");
	}
	if (prepared)
		*prepared = slot;
	return wrapped;
}

static bool
ks_kcv_is(bytea *kcv, const uint8 *want)
{
	return want != NULL && VARSIZE_ANY_EXHDR(kcv) == ENV_KCV_LEN &&
		memcmp(VARDATA_ANY(kcv), want, ENV_KCV_LEN) == 0;
}

/*
 * The master key that wrapped a tenant key, told by the check value stored
 * with it: the current one, or the previous one during a master key
 * rotation.  Anything else is a configuration error, not damaged data.
 */
static const EnvXaesKey *
ks_master_for(const char *tenant, bytea *kcv)
{
	const uint8 *mkcv = env_master_kcv();
	const uint8 *pkcv;
	const EnvXaesKey *previous;

	if (ks_kcv_is(kcv, mkcv))
		return env_master_key();
	previous = env_previous_master_key(&pkcv);
	if (previous != NULL && ks_kcv_is(kcv, pkcv))
		return previous;
	ereport(ERROR,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg("configured envault master key does not match the key that wrapped tenant \"%s\"",
					tenant),
			 errdetail("The tenant key was wrapped by the master key with check value %s; the configured master key has check value %s%s%s.",
					   VARSIZE_ANY_EXHDR(kcv) >= 8 ?
					   env_kcv_fingerprint((uint8 *) VARDATA_ANY(kcv)) : "(none)",
					   env_kcv_fingerprint(mkcv),
					   previous ? ", the previous one " : "",
					   previous ? env_kcv_fingerprint(pkcv) : ""),
			 errhint("Configure the master key that this database's keys were created with.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * Unwrap a tenant key under its customer-managed key, fetched now through
 * envault.customer_key_command.  The customer key exists only here, and is
 * wiped before returning, errors included.
 */
static EnvXaesKey *
ks_unwrap_customer(const char *tenant, const KsTenantRow *row,
				   const uint8 *aad, size_t aad_len)
{
	uint8		cmk[ENV_KEY_LEN];
	uint8		ckcv[ENV_KCV_LEN];
	EnvXaesKey	kek;
	EnvXaesKey *volatile xk = NULL;
	bool		ok;

	env_customer_key(tenant, cmk, ckcv);
	if (!ks_kcv_is(row->kcv, ckcv))
	{
		env_wipe(cmk, sizeof(cmk));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("customer key of envault tenant \"%s\" does not match the key that wraps its tenant key", tenant),
				 errdetail("The tenant key is wrapped by the customer key with check value %s; envault.customer_key_command returned one with check value %s.",
						   env_kcv_fingerprint((uint8 *) VARDATA_ANY(row->kcv)),
						   env_kcv_fingerprint(ckcv))));
	}
	ok = env_xaes_key_init(&kek, cmk);
	env_wipe(cmk, sizeof(cmk));
	if (!ok)
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "preparing a customer key");
	PG_TRY();
	{
		xk = ks_unwrap(&kek, row->wrapped, aad, aad_len);
	}
	PG_FINALLY();
	{
		env_xaes_key_clear(&kek);
	}
	PG_END_TRY();
	return xk;
}

/*
 * A new tenant key wrapped by the tenant's customer-managed key, for a
 * rotation or re-keying of a tenant under it (t->customer: the key must be
 * the one that wraps the current tenant key) or for its onboarding.  The
 * customer key is wiped before returning, errors included; its check value
 * goes to ckcv.
 */
static bytea *
ks_wrap_new_key_customer(const char *tenant, const KsTenantRow *t,
						 const uint8 *aad, size_t aad_len, EnvXaesKey **prepared,
						 uint8 *ckcv)
{
	uint8		cmk[ENV_KEY_LEN];
	EnvXaesKey	kek;
	bytea	   *volatile wrapped = NULL;
	EnvXaesKey *volatile slot = NULL;
	bool		ok;

	env_customer_key(tenant, cmk, ckcv);
	if (t->customer && !ks_kcv_is(t->kcv, ckcv))
	{
		env_wipe(cmk, sizeof(cmk));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("customer key of envault tenant \"%s\" does not match the key that wraps its tenant key", tenant)));
	}
	ok = env_xaes_key_init(&kek, cmk);
	env_wipe(cmk, sizeof(cmk));
	if (!ok)
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "preparing a customer key");
	PG_TRY();
	{
		EnvXaesKey *k;

		wrapped = ks_wrap_new_key(&kek, aad, aad_len, &k);
		slot = k;
	}
	PG_FINALLY();
	{
		env_xaes_key_clear(&kek);
	}
	PG_END_TRY();
	*prepared = slot;
	return wrapped;
}

#define KS_Q_NAME_ENCODING \
	"SELECT name_encoding FROM envault.tenants WHERE tenant OPERATOR(pg_catalog.=) $1"

/*
 * A tenant's name is bound into its keys and values as bytes in the
 * database encoding of the day it was created (tenants.name_encoding).  A
 * dump restored into a database of another encoding changes those bytes
 * for a name that is not ASCII, and its keys no longer open: say so, rather
 * than suggest that the row was tampered with.  Called when a tenant key
 * fails authentication; returns if that is not the reason.
 */
static void
ks_check_name_encoding(const char *tenant)
{
	EnvSpi		s;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	char	   *created_in = NULL;
	const char *p;

	for (p = tenant; *p && !IS_HIGHBIT_SET(*p); p++)
		;
	if (*p == '\0')
		return;					/* ASCII reads the same in every encoding */
	env_spi_begin(&s);
	values[0] = CStringGetTextDatum(tenant);
	env_spi_run(KS_Q_NAME_ENCODING, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed > 0)
		created_in = env_spi_cstring(&s, 1, &isnull);
	env_spi_end(&s);
	if (created_in != NULL && strcmp(created_in, GetDatabaseEncodingName()) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("envault tenant \"%s\" was created in a database of encoding %s, not %s",
						tenant, created_in, GetDatabaseEncodingName()),
				 errdetail("A tenant's name is bound into its keys and values as bytes of the encoding it was created in, and this name is not ASCII."),
				 errhint("Restore the dump into a database of encoding %s.", created_in)));
}

/*
 * The tenant key, from the cache or unwrapped from its row.  The check value
 * stored with the row tells a wrong master key from a damaged row.
 */
static const EnvXaesKey *
ks_tenant_key(const char *tenant, const KsTenantRow *row)
{
	KsTenant   *t;
	EnvXaesKey *xk;
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	bool		found;

	t = hash_search(ks_tenants, tenant, HASH_FIND, NULL);
	if (t != NULL)
	{
		if (t->key_version != row->key_version)
			ks_evict(&t->node);
		else if (ks_touch(&t->node))
			return t->node.xk;
	}

	aad_len = env_tenant_wrap_aad(aad, tenant, strlen(tenant),
								  (uint32) row->key_version);
	if (row->customer)
		xk = ks_unwrap_customer(tenant, row, aad, aad_len);
	else
		xk = ks_unwrap(ks_master_for(tenant, row->kcv), row->wrapped, aad, aad_len);
	if (xk == NULL)
	{
		ks_check_name_encoding(tenant);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("wrapped key of tenant \"%s\" failed authentication", tenant),
				 errdetail("Its row in envault.tenants was altered or copied from another tenant.")));
	}

	ks_make_room();
	PG_TRY();
	{
		t = hash_search(ks_tenants, tenant, HASH_ENTER, &found);
	}
	PG_CATCH();
	{
		ks_slot_free(xk);		/* out of memory: the key is not kept */
		PG_RE_THROW();
	}
	PG_END_TRY();
	t->key_version = row->key_version;
	ks_link(&t->node, KS_TENANT, xk, row->customer);
	return xk;
}

/*
 * Put a prepared data key into the cache.  It takes the slot over: if
 * anything fails (out of memory), the slot is wiped and freed and nothing
 * of the key is left in the cache.
 */
static KsDataKey *
ks_cache_data_key(uint64 key_id, const char *tenant, const char *purpose,
				  int32 version, bool active, TimestampTz created_at,
				  bool customer, EnvXaesKey *xk)
{
	KsDataKey  *d;
	size_t		tlen = strlen(tenant);
	size_t		plen = strlen(purpose);
	size_t		context_len = env_context_len(tlen, plen);
	uint8	   *volatile context = NULL;
	bool		found;

	d = hash_search(ks_data_keys, &key_id, HASH_FIND, NULL);
	if (d != NULL)
		ks_evict(&d->node);
	ks_make_room();
	PG_TRY();
	{
		context = MemoryContextAlloc(TopMemoryContext, context_len);
		if (active)
		{
			char		name[KS_ACTIVE_KEYLEN];
			KsActive   *a;

			/* (if the entry below fails, this names a key not cached: harmless) */
			ks_active_name(name, tenant, tlen, purpose, plen);
			a = hash_search(ks_active, name, HASH_ENTER, &found);
			a->key_id = key_id;
		}
		d = hash_search(ks_data_keys, &key_id, HASH_ENTER, &found);
	}
	PG_CATCH();
	{
		if (context != NULL)
			pfree(context);
		ks_slot_free(xk);
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
	ks_link(&d->node, KS_DATA_KEY, xk, customer);
	return d;
}

/*
 * Unwrap a data key.  It must be wrapped under the tenant's current key
 * version: rotating a tenant key rewraps all its data keys at once.
 */
static EnvXaesKey *
ks_unwrap_data_key(const EnvXaesKey *tenant_key, int32 tenant_key_version,
				   int32 wrapped_under, const char *tenant,
				   const char *purpose, int32 version, uint64 key_id,
				   bytea *wrapped)
{
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	EnvXaesKey *xk;

	if (wrapped_under != tenant_key_version)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("data key of tenant \"%s\", purpose \"%s\", version %d is wrapped under tenant key version %d, not the current version %d",
						tenant, purpose, version, wrapped_under,
						tenant_key_version)));

	aad_len = env_dek_wrap_aad(aad, tenant, strlen(tenant), purpose,
							   strlen(purpose), (uint32) version, key_id);
	xk = ks_unwrap(tenant_key, wrapped, aad, aad_len);
	if (xk == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("wrapped data key of tenant \"%s\", purpose \"%s\", version %d failed authentication",
						tenant, purpose, version),
				 errdetail("Its row in envault.data_keys (key id " INT64_FORMAT ") was altered or copied from another key.",
						   (int64) key_id)));
	return xk;
}

/* --- queries ------------------------------------------------------------ */

/* columns 1-4 and 10: the tenant (see ks_tenant_row); 5-9: the data key */
#define KS_Q_ACTIVE \
	"SELECT t.state, t.key_version, t.wrapped_key," \
	"       COALESCE(t.master_kcv, t.customer_kcv)," \
	"       d.key_id, d.version, d.wrapped_key, d.tenant_key_version, d.created_at," \
	"       t.key_source" \
	"  FROM envault.tenants t" \
	"  LEFT JOIN envault.data_keys d" \
	"    ON d.tenant OPERATOR(pg_catalog.=) t.tenant" \
	"   AND d.purpose OPERATOR(pg_catalog.=) $2" \
	"   AND d.state OPERATOR(pg_catalog.=) 'active'::pg_catalog.text" \
	" WHERE t.tenant OPERATOR(pg_catalog.=) $1"

/* columns 1-4 and 12: the tenant; 5-11: the data key */
#define KS_Q_BY_ID \
	"SELECT t.state, t.key_version, t.wrapped_key," \
	"       COALESCE(t.master_kcv, t.customer_kcv)," \
	"       d.key_id, d.version, d.wrapped_key, d.tenant_key_version," \
	"       d.tenant, d.purpose, d.state, t.key_source" \
	"  FROM envault.data_keys d" \
	"  JOIN envault.tenants t ON t.tenant OPERATOR(pg_catalog.=) d.tenant" \
	" WHERE d.key_id OPERATOR(pg_catalog.=) $1"

/* columns 1-4 and 5: the tenant (see ks_tenant_row) */
#define KS_Q_SHARE_TENANT \
	"SELECT state, key_version, wrapped_key, COALESCE(master_kcv, customer_kcv)," \
	"       key_source FROM envault.tenants" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 FOR KEY SHARE"

static void ks_tenant_row(EnvSpi *s, const char *tenant, KsTenantRow *row,
						  int source_col);
static void ks_no_tenant(const char *tenant);

/*
 * How the transactions that touch a tenant's keys order themselves, so that
 * none of a tenant's own token holders can make a revocation wait:
 *	- creating a data key (a first encryption, put_secret) locks the
 *	  tenant's row FOR KEY SHARE only, as the foreign key of its insert
 *	  does anyway;
 *	- rotating or re-keying the tenant key locks the row FOR UPDATE, which
 *	  waits for every transaction holding it FOR KEY SHARE, that is for
 *	  every data key being created, so that none is wrapped under a tenant
 *	  key about to be replaced (and makes new creations wait for it);
 *	- rotating a data key by hand (rotate_data_key) locks the row FOR
 *	  UPDATE as well, so that it waits for a creation of the same
 *	  (tenant, purpose) instead of colliding with it;
 *	- the automatic rotation of an old data key (envault.data_key_max_age),
 *	  which may run in a token holder's transaction, takes the purpose lock
 *	  below and reads the row FOR KEY SHARE;
 *	- revoke_tenant locks the row FOR NO KEY UPDATE, which no FOR KEY SHARE
 *	  holder stands in the way of, and takes no other lock.
 * The purpose lock is one of envault's own, in the advisory lock space with
 * a field4 that SQL cannot name (SQL's advisory locks use 1 and 2; the
 * audit chains use CH_LOCK_FIELD4), so no role can take or hold it but
 * through envault.
 */
#define KS_LOCK_PURPOSE		0x4558

static void
ks_lock_purpose(const char *tenant, const char *purpose)
{
	LOCKTAG		tag;
	uint64		h = hash_bytes_extended((const unsigned char *) tenant,
										(int) strlen(tenant), KS_LOCK_PURPOSE);

	h = hash_bytes_extended((const unsigned char *) purpose,
							(int) strlen(purpose), h);
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 KS_LOCK_PURPOSE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* Read a tenant's row (as ks_tenant_row) and lock it FOR KEY SHARE. */
static void
ks_share_tenant(EnvSpi *s, const char *tenant, KsTenantRow *row)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(tenant);
	env_spi_run(KS_Q_SHARE_TENANT, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ks_no_tenant(tenant);
	ks_tenant_row(s, tenant, row, 5);
}

#define KS_Q_EVENT \
	"INSERT INTO envault.key_events" \
	"  (actor, operation, tenant, purpose, version, detail)" \
	" VALUES ($1, $2, $3, $4, $5, $6)"

/*
 * Record a key operation in envault.key_events.  tenant, purpose, version
 * (when negative) and detail may be NULL.
 */
void
env_key_event(EnvSpi *s, const char *operation, const char *tenant,
			  const char *purpose, int32 version, const char *detail)
{
	Oid			types[6] = {NAMEOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID};
	Datum		values[6];
	char		nulls[6 + 1] = "      ";

	values[0] = CStringGetDatum(s->caller_name);
	values[1] = CStringGetTextDatum(operation);
	if (tenant)
		values[2] = CStringGetTextDatum(tenant);
	else
		nulls[2] = 'n';
	if (purpose)
		values[3] = CStringGetTextDatum(purpose);
	else
		nulls[3] = 'n';
	values[4] = Int32GetDatum(version);
	if (version < 0)
		nulls[4] = 'n';
	if (detail)
		values[5] = CStringGetTextDatum(detail);
	else
		nulls[5] = 'n';
	if (SPI_execute_with_args(KS_Q_EVENT, 6, types, values, nulls, false, 0)
		!= SPI_OK_INSERT)
		elog(ERROR, "could not record a key event");
}

/*
 * Read the tenant columns of the current result row.  A tenant whose keys
 * were destroyed, or that is revoked, opens nothing: raise that here, before
 * its (possibly NULL) key is looked at.
 */
static void
ks_tenant_row(EnvSpi *s, const char *tenant, KsTenantRow *row, int source_col)
{
	bool		isnull;
	char	   *state = env_spi_cstring(s, 1, &isnull);

	if (strcmp(state, "destroyed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the keys of envault tenant \"%s\" were destroyed", tenant),
				 errdetail("The tenant was crypto-shredded: its data can never be decrypted again.")));
	if (strcmp(state, "revoked") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("envault tenant \"%s\" is revoked", tenant),
				 errdetail("Its keys cannot be used until it is restored."),
				 errhint("An administrator can restore it with envault.restore_tenant().")));
	row->key_version = DatumGetInt32(env_spi_col(s, 2, &isnull, true, 4));
	row->wrapped = DatumGetByteaPP(env_spi_col(s, 3, &isnull, false, -1));
	row->kcv = DatumGetByteaPP(env_spi_col(s, 4, &isnull, false, -1));
	row->customer = strcmp(TextDatumGetCString(env_spi_col(s, source_col, &isnull,
														   false, -1)),
						   "customer") == 0;
}

#define KS_Q_NEXT_VERSION \
	"SELECT COALESCE(pg_catalog.max(version), 0) OPERATOR(pg_catalog.+) 1" \
	"  FROM envault.data_keys" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND purpose OPERATOR(pg_catalog.=) $2"

#define KS_Q_INSERT_DATA_KEY \
	"INSERT INTO envault.data_keys" \
	"  (key_id, tenant, purpose, version, state, wrapped_key," \
	"   tenant_key_version, created_by)" \
	" VALUES ($1, $2, $3, $4, 'active', $5, $6, $7)" \
	" ON CONFLICT DO NOTHING"

#define KS_Q_INSERT_TENANT \
	"INSERT INTO envault.tenants" \
	"  (tenant, key_version, wrapped_key, master_kcv, created_by)" \
	" VALUES ($1, 1, $2, $3, $4)" \
	" ON CONFLICT (tenant) DO NOTHING"

static uint64
ks_new_key_id(void)
{
	uint64		id = 0;

	while (id == 0)
	{
		if (!env_random_bytes((uint8 *) &id, sizeof(id)))
			env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "generating a key id");
		id &= UINT64CONST(0x7FFFFFFFFFFFFFFF);	/* a positive bigint */
	}
	return id;
}

/*
 * Create the next data key version for (tenant, purpose), active.  Returns
 * NULL if another transaction created one first; the caller looks again.
 */
static KsDataKey *
ks_create_data_key(EnvSpi *s, const EnvXaesKey *tenant_key, const char *tenant,
				   const char *purpose, int32 tenant_key_version, bool customer)
{
	Oid			types[7] = {INT8OID, TEXTOID, TEXTOID, INT4OID, BYTEAOID,
	INT4OID, NAMEOID};
	Datum		values[7];
	bool		isnull;
	int32		version;
	uint64		key_id = ks_new_key_id();
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	EnvXaesKey *xk;
	bytea	   *wrapped;

	values[0] = CStringGetTextDatum(tenant);
	values[1] = CStringGetTextDatum(purpose);
	env_spi_run(KS_Q_NEXT_VERSION, 2, types + 1, values, SPI_OK_SELECT);
	version = DatumGetInt32(env_spi_col(s, 1, &isnull, true, 4));

	aad_len = env_dek_wrap_aad(aad, tenant, strlen(tenant), purpose,
							   strlen(purpose), (uint32) version, key_id);
	wrapped = ks_wrap_new_key(tenant_key, aad, aad_len, &xk);

	values[0] = Int64GetDatum((int64) key_id);
	values[1] = CStringGetTextDatum(tenant);
	values[2] = CStringGetTextDatum(purpose);
	values[3] = Int32GetDatum(version);
	values[4] = PointerGetDatum(wrapped);
	values[5] = Int32GetDatum(tenant_key_version);
	values[6] = CStringGetDatum(s->caller_name);
	PG_TRY();
	{
		env_spi_run(KS_Q_INSERT_DATA_KEY, 7, types, values, SPI_OK_INSERT);
	}
	PG_CATCH();
	{
		ks_slot_free(xk);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (SPI_processed == 0)
	{
		ks_slot_free(xk);
		return NULL;
	}
	/* recording the event can fail too (a cancel, a full disk) */
	PG_TRY();
	{
		env_key_event(s, "data key created", tenant, purpose, version, NULL);
	}
	PG_CATCH();
	{
		ks_slot_free(xk);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return ks_cache_data_key(key_id, tenant, purpose, version, true,
							 GetCurrentTransactionStartTimestamp(), customer, xk);
}

/* Another transaction created a version of (tenant, purpose) first. */
static void
ks_creation_conflict(const char *tenant, const char *purpose)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to concurrent creation of a data key"),
			 errdetail("Another transaction created a data key of tenant \"%s\", purpose \"%s\" at the same time.",
					   tenant, purpose),
			 errhint("Retry the transaction.")));
}

static void
ks_no_tenant(const char *tenant)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("envault tenant \"%s\" does not exist", tenant),
			 errhint("Create it with envault.create_tenant().")));
}

/* Cache miss of the active key: read it, or create it. */
static KsDataKey *
ks_load_active(const char *tenant, const char *purpose)
{
	EnvSpi		s;
	KsDataKey  *d = NULL;
	int			attempt;

	env_spi_begin(&s);
	for (attempt = 0; d == NULL && attempt < 3; attempt++)
	{
		Oid			types[2] = {TEXTOID, TEXTOID};
		Datum		values[2];
		bool		isnull;
		KsTenantRow t;
		const EnvXaesKey *tkey;
		uint64		key_id;

		values[0] = CStringGetTextDatum(tenant);
		values[1] = CStringGetTextDatum(purpose);
		env_spi_run(KS_Q_ACTIVE, 2, types, values, SPI_OK_SELECT);
		if (SPI_processed == 0)
			ks_no_tenant(tenant);
		ks_tenant_row(&s, tenant, &t, 10);
		key_id = (uint64) DatumGetInt64(env_spi_col(&s, 5, &isnull, true, 8));

		if (!isnull)
		{
			KsDataKey  *cached = hash_search(ks_data_keys, &key_id,
											 HASH_FIND, NULL);
			int32		version;
			int32		wrapped_under;
			bytea	   *wrapped;
			EnvXaesKey *xk;

			if (cached != NULL && ks_touch(&cached->node))
			{
				/* cached by id, but not yet known to be the active one */
				char		name[KS_ACTIVE_KEYLEN];
				KsActive   *a;
				bool		found;

				ks_active_name(name, tenant, strlen(tenant), purpose,
							   strlen(purpose));
				a = hash_search(ks_active, name, HASH_ENTER, &found);
				a->key_id = key_id;
				d = cached;
				d->pub.created_at = DatumGetTimestampTz(env_spi_col(&s, 9, &isnull, true, 8));
				break;
			}
			version = DatumGetInt32(env_spi_col(&s, 6, &isnull, true, 4));
			wrapped = DatumGetByteaPP(env_spi_col(&s, 7, &isnull, false, -1));
			wrapped_under = DatumGetInt32(env_spi_col(&s, 8, &isnull, true, 4));
			tkey = ks_tenant_key(tenant, &t);
			xk = ks_unwrap_data_key(tkey, t.key_version, wrapped_under, tenant,
									purpose, version, key_id, wrapped);
			d = ks_cache_data_key(key_id, tenant, purpose, version, true,
								  DatumGetTimestampTz(env_spi_col(&s, 9, &isnull, true, 8)),
								  t.customer, xk);
			break;
		}

		if (XactReadOnly || RecoveryInProgress())
			ereport(ERROR,
					(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
					 errmsg("tenant \"%s\" has no data key for purpose \"%s\"",
							tenant, purpose),
					 errdetail("A data key cannot be created in a read-only transaction."),
					 errhint("Create it with envault.create_data_key() in a read-write transaction.")));

		/*
		 * Read the tenant's row again, as of now, and lock it FOR KEY SHARE
		 * until this transaction ends: a rotation of the tenant key waits
		 * for it (see above), and nothing this takes makes a revocation
		 * wait.
		 */
		ks_share_tenant(&s, tenant, &t);

		tkey = ks_tenant_key(tenant, &t);
		d = ks_create_data_key(&s, tkey, tenant, purpose, t.key_version, t.customer);
		if (d == NULL && IsolationUsesXactSnapshot())
			ks_creation_conflict(tenant, purpose);
	}
	if (d == NULL)
		ks_creation_conflict(tenant, purpose);
	env_spi_end(&s);
	return d;
}

/* --- public interface --------------------------------------------------- */

/* The active data key of (tenant, purpose), for names already checked. */
static const EnvDataKey *
ks_active_key(const char *tenant, size_t tenant_len,
			  const char *purpose, size_t purpose_len)
{
	char		name[KS_ACTIVE_KEYLEN];
	KsActive   *a;
	char		tbuf[ENV_TENANT_MAXLEN + 1];
	char		pbuf[ENV_PURPOSE_MAXLEN + 1];

	ks_active_name(name, tenant, tenant_len, purpose, purpose_len);
	a = hash_search(ks_active, name, HASH_FIND, NULL);
	if (a != NULL)
	{
		KsDataKey  *d = hash_search(ks_data_keys, &a->key_id, HASH_FIND, NULL);

		if (d != NULL && ks_touch(&d->node))
			return &d->pub;
	}

	memcpy(tbuf, tenant, tenant_len);
	tbuf[tenant_len] = '\0';
	memcpy(pbuf, purpose, purpose_len);
	pbuf[purpose_len] = '\0';
	return &ks_load_active(tbuf, pbuf)->pub;
}

/*
 * The active data key of (tenant, purpose), created on first use.  Names are
 * validated before the cache is consulted.
 */
const EnvDataKey *
env_keystore_active_key(const char *tenant, size_t tenant_len,
						const char *purpose, size_t purpose_len)
{
	const EnvDataKey *key;

	env_check_tenant_name(tenant, tenant_len);
	env_check_purpose_name(purpose, purpose_len);
	ks_check_generation();
	key = ks_active_key(tenant, tenant_len, purpose, purpose_len);

	/*
	 * envault.data_key_max_age: an active key that old is rotated before it
	 * encrypts again.  Not in read-only transactions, which keep using it
	 * (it is no less safe: XAES-256-GCM has no per-key usage bound), and
	 * never for blind-index keys, whose indexes would change.
	 */
	if (ks_data_key_max_age > 0 && key->created_at != 0 &&
		!XactReadOnly && !RecoveryInProgress() &&
		GetCurrentTransactionStartTimestamp() - key->created_at >=
		(int64) ks_data_key_max_age * USECS_PER_SEC)
	{
		char		tbuf[ENV_TENANT_MAXLEN + 1];
		char		pbuf[ENV_PURPOSE_MAXLEN + 1];

		strlcpy(tbuf, key->tenant, sizeof(tbuf));
		strlcpy(pbuf, key->purpose, sizeof(pbuf));
		(void) ks_rotate(tbuf, pbuf, ks_data_key_max_age);
		ks_check_generation();
		key = ks_active_key(tenant, tenant_len, purpose, purpose_len);
	}
	return key;
}

/*
 * The key of the blind indexes of (tenant, purpose): a data key of its own,
 * under the reserved purpose "_bidx.<purpose>", which user purposes cannot
 * name (they never start with "_").  It is never used to encrypt.
 */
const EnvDataKey *
env_keystore_index_key(const char *tenant, size_t tenant_len,
					   const char *purpose, size_t purpose_len)
{
	char		ipurpose[ENV_PURPOSE_MAXLEN + 1];

	env_check_tenant_name(tenant, tenant_len);
	env_check_purpose_name(purpose, purpose_len);
	if (purpose_len > ENV_PURPOSE_MAXLEN - ENV_INDEX_PREFIX_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("purpose of a blind index is too long"),
				 errdetail("A blind index purpose can be at most %d characters.",
						   ENV_PURPOSE_MAXLEN - ENV_INDEX_PREFIX_LEN)));
	ks_check_generation();
	memcpy(ipurpose, ENV_INDEX_PREFIX, ENV_INDEX_PREFIX_LEN);
	memcpy(ipurpose + ENV_INDEX_PREFIX_LEN, purpose, purpose_len);
	return ks_active_key(tenant, tenant_len, ipurpose,
						 ENV_INDEX_PREFIX_LEN + purpose_len);
}

/*
 * The data key of the secrets store of a tenant: the reserved purpose
 * "_secrets", which user purposes cannot name.
 */
const EnvDataKey *
env_keystore_secrets_key(const char *tenant, size_t tenant_len)
{
	env_check_tenant_name(tenant, tenant_len);
	ks_check_generation();
	return ks_active_key(tenant, tenant_len, ENV_SECRETS_PURPOSE,
						 strlen(ENV_SECRETS_PURPOSE));
}

#define KS_Q_TENANT_EXISTS \
	"SELECT 1 FROM envault.tenants WHERE tenant OPERATOR(pg_catalog.=) $1"

bool
env_keystore_tenant_exists(const char *tenant, size_t tenant_len)
{
	EnvSpi		s;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		exists;

	env_check_tenant_name(tenant, tenant_len);
	values[0] = PointerGetDatum(cstring_to_text_with_len(tenant, tenant_len));
	env_spi_begin(&s);
	env_spi_run(KS_Q_TENANT_EXISTS, 1, types, values, SPI_OK_SELECT);
	exists = (SPI_processed > 0);
	env_spi_end(&s);
	return exists;
}

static void
ks_no_data_key(uint64 key_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("envault data key of this ciphertext does not exist"),
			 errdetail("The ciphertext names data key id " INT64_FORMAT ", which is not in envault.data_keys.",
					   (int64) key_id),
			 errhint("The value may come from another database, or its header was altered.")));
}

/*
 * May the caller use the keys of the tenant a ciphertext names?  Checked
 * with the caller's own role, not the key store's, while the key tables are
 * open: before anything else is read about that tenant or its key, so that
 * a role without access learns nothing of either (not its state, not its
 * integrity), and before anything is unwrapped into this backend.
 */
static void
ks_check_caller(EnvSpi *s, const char *tenant)
{
	Oid			owner;
	int			sec;

	GetUserIdAndSecContext(&owner, &sec);
	SetUserIdAndSecContext(s->save_userid, s->save_sec);
	env_tenant_check(tenant, strlen(tenant), true);
	SetUserIdAndSecContext(owner, sec);
}

/*
 * The data key a ciphertext names, from the cache or its row.  The caller
 * must be allowed to use its tenant (env_tenant_check): a role that is not
 * gets the one "belongs to another tenant" error, whatever state that
 * tenant and key are in.
 */
const EnvDataKey *
env_keystore_key_by_id(uint64 key_id)
{
	KsDataKey  *d;
	EnvSpi		s;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	bool		isnull;
	KsTenantRow t;
	int32		version;
	int32		wrapped_under;
	bytea	   *wrapped;
	char	   *tenant;
	char	   *purpose;
	char	   *state;
	const EnvXaesKey *tkey;
	EnvXaesKey *xk;

	ks_check_generation();
	d = hash_search(ks_data_keys, &key_id, HASH_FIND, NULL);
	if (d != NULL)
	{
		env_tenant_check(d->pub.tenant, strlen(d->pub.tenant), true);
		if (ks_touch(&d->node))
			return &d->pub;
	}

	env_spi_begin(&s);
	values[0] = Int64GetDatum((int64) key_id);
	env_spi_run(KS_Q_BY_ID, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ks_no_data_key(key_id);

	tenant = env_spi_cstring(&s, 9, &isnull);
	purpose = env_spi_cstring(&s, 10, &isnull);
	ks_check_caller(&s, tenant);
	ks_tenant_row(&s, tenant, &t, 12);
	version = DatumGetInt32(env_spi_col(&s, 6, &isnull, true, 4));
	state = env_spi_cstring(&s, 11, &isnull);
	if (strcmp(state, "retired") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("data key of tenant \"%s\", purpose \"%s\", version %d is retired",
						tenant, purpose, version),
				 errdetail("A retired data key decrypts nothing."),
				 errhint("An administrator can restore it with envault.restore_data_key().")));
	if (strcmp(state, "destroyed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("data key of tenant \"%s\", purpose \"%s\", version %d was destroyed",
						tenant, purpose, version),
				 errdetail("Values encrypted under it can never be decrypted again.")));
	wrapped = DatumGetByteaPP(env_spi_col(&s, 7, &isnull, false, -1));
	wrapped_under = DatumGetInt32(env_spi_col(&s, 8, &isnull, true, 4));

	tkey = ks_tenant_key(tenant, &t);
	xk = ks_unwrap_data_key(tkey, t.key_version, wrapped_under, tenant, purpose,
							version, key_id, wrapped);
	d = ks_cache_data_key(key_id, tenant, purpose, version, false, 0, t.customer, xk);
	env_spi_end(&s);
	return &d->pub;
}

#define KS_Q_KEY_STATE \
	"SELECT d.tenant, d.state, t.state" \
	"  FROM envault.data_keys d" \
	"  JOIN envault.tenants t ON t.tenant OPERATOR(pg_catalog.=) d.tenant" \
	" WHERE d.key_id OPERATOR(pg_catalog.=) $1"

/*
 * Why the data key a ciphertext names cannot open anything: "retired",
 * "destroyed", "tenant revoked" or "tenant destroyed"; NULL when it can
 * (it may still fail to, for example when a customer withholds its key).
 * Never raises for those states, unlike env_keystore_key_by_id(); raises
 * for a key that does not exist, and checks the tenant like it does.
 */
const char *
env_keystore_unusable(uint64 key_id)
{
	KsDataKey  *d;
	KsUnusable *u;
	EnvSpi		s;
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	bool		isnull;
	bool		found;
	char	   *tenant;
	char	   *kstate;
	char	   *tstate;
	const char *why = NULL;

	ks_check_generation();
	d = hash_search(ks_data_keys, &key_id, HASH_FIND, NULL);
	if (d != NULL)
	{
		env_tenant_check(d->pub.tenant, strlen(d->pub.tenant), true);
		if (!ks_expired(&d->node))
			return NULL;
	}
	u = hash_search(ks_unusable, &key_id, HASH_FIND, NULL);
	if (u != NULL)
	{
		env_tenant_check(u->tenant, strlen(u->tenant), true);
		return u->why;
	}

	env_spi_begin(&s);
	values[0] = Int64GetDatum((int64) key_id);
	env_spi_run(KS_Q_KEY_STATE, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ks_no_data_key(key_id);
	tenant = env_spi_cstring(&s, 1, &isnull);
	ks_check_caller(&s, tenant);
	kstate = env_spi_cstring(&s, 2, &isnull);
	tstate = env_spi_cstring(&s, 3, &isnull);
	env_spi_end(&s);

	if (strcmp(tstate, "destroyed") == 0)
		why = "tenant destroyed";
	else if (strcmp(tstate, "revoked") == 0)
		why = "tenant revoked";
	else if (strcmp(kstate, "retired") == 0)
		why = "retired";
	else if (strcmp(kstate, "destroyed") == 0)
		why = "destroyed";
	if (why == NULL)
		return NULL;

	if (ks_unusable_count >= ks_cache_size)
		ks_forget_unusable();
	u = hash_search(ks_unusable, &key_id, HASH_ENTER, &found);
	if (!found)
		ks_unusable_count++;
	strlcpy(u->tenant, tenant, sizeof(u->tenant));
	u->why = why;
	return why;
}

void
env_keystore_create_tenant(const char *tenant, size_t tenant_len)
{
	EnvSpi		s;
	Oid			types[4] = {TEXTOID, BYTEAOID, BYTEAOID, NAMEOID};
	Datum		values[4];
	char	   *name;
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	bytea	   *wrapped;
	bytea	   *kcv;

	env_check_tenant_name(tenant, tenant_len);
	name = pnstrdup(tenant, tenant_len);

	aad_len = env_tenant_wrap_aad(aad, name, tenant_len, 1);
	wrapped = ks_wrap_new_key(env_master_key(), aad, aad_len, NULL);
	kcv = palloc(VARHDRSZ + ENV_KCV_LEN);
	SET_VARSIZE(kcv, VARHDRSZ + ENV_KCV_LEN);
	memcpy(VARDATA(kcv), env_master_kcv(), ENV_KCV_LEN);

	env_spi_begin(&s);
	values[0] = CStringGetTextDatum(name);
	values[1] = PointerGetDatum(wrapped);
	values[2] = PointerGetDatum(kcv);
	values[3] = CStringGetDatum(s.caller_name);
	env_spi_run(KS_Q_INSERT_TENANT, 4, types, values, SPI_OK_INSERT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("envault tenant \"%s\" already exists", name)));
	env_key_event(&s, "tenant created", name, NULL, -1, NULL);
	env_spi_end(&s);
}

int32
env_keystore_create_data_key(const char *tenant, size_t tenant_len,
							 const char *purpose, size_t purpose_len)
{
	return env_keystore_active_key(tenant, tenant_len, purpose,
								   purpose_len)->version;
}

/* --- rotation ------------------------------------------------------------ */

#define KS_Q_LOCK_TENANT \
	"SELECT state, key_version, wrapped_key, COALESCE(master_kcv, customer_kcv)," \
	"       key_source FROM envault.tenants" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE"

/*
 * Lock a tenant's row (serialising every key change of that tenant, and
 * waiting for the sessions creating a data key of it, which share-lock the
 * row: see ks_load_active) and read it; raises for unknown, revoked and
 * destroyed tenants.
 */
void
env_keystore_lock_tenant(EnvSpi *s, const char *tenant, void *row)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(tenant);
	env_spi_run(KS_Q_LOCK_TENANT, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ks_no_tenant(tenant);
	if (row)
		ks_tenant_row(s, tenant, (KsTenantRow *) row, 5);
}

#define KS_Q_LOCK_TENANT_FOR_UPDATE \
	"SELECT state, key_version, wrapped_key, COALESCE(master_kcv, customer_kcv)," \
	"       key_source FROM envault.tenants" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 FOR UPDATE"

/* The tenant's row, locked FOR UPDATE: waits for its data key creations. */
static void
ks_lock_tenant_for_update(EnvSpi *s, const char *tenant, KsTenantRow *row)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(tenant);
	env_spi_run(KS_Q_LOCK_TENANT_FOR_UPDATE, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ks_no_tenant(tenant);
	ks_tenant_row(s, tenant, row, 5);
}

#define KS_Q_RETIRE_ACTIVE \
	"UPDATE envault.data_keys SET state = 'rotated', state_changed_at = pg_catalog.now()" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND purpose OPERATOR(pg_catalog.=) $2" \
	"   AND state OPERATOR(pg_catalog.=) 'active'"

#define KS_Q_ACTIVE_AGE \
	"SELECT pg_catalog.now() OPERATOR(pg_catalog.-) created_at" \
	"       OPERATOR(pg_catalog.>=) pg_catalog.make_interval(secs => $3)" \
	"  FROM envault.data_keys" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND purpose OPERATOR(pg_catalog.=) $2" \
	"   AND state OPERATOR(pg_catalog.=) 'active'"

/*
 * Rotate (tenant, purpose), names already checked.  With max_age > 0, only
 * if its active key is at least max_age seconds old once the tenant is
 * locked, so that sessions racing to rotate an old key rotate it once.
 * Returns the new version, or 0 when nothing was rotated.
 */
static int32
ks_rotate(const char *tenant, const char *purpose, int max_age)
{
	EnvSpi		s;
	KsTenantRow t;
	Oid			types[3] = {TEXTOID, TEXTOID, FLOAT8OID};
	Datum		values[3];
	KsDataKey  *d;
	int32		version;
	int			attempt;
	char		detail[96];

	env_spi_begin(&s);
	if (max_age > 0)
	{
		/* automatic: maybe in a token holder's transaction (see above) */
		ks_lock_purpose(tenant, purpose);
		ks_share_tenant(&s, tenant, &t);
	}
	else
		ks_lock_tenant_for_update(&s, tenant, &t);
	values[0] = CStringGetTextDatum(tenant);
	values[1] = CStringGetTextDatum(purpose);
	if (max_age > 0)
	{
		bool		isnull;

		values[2] = Float8GetDatum((double) max_age);
		env_spi_run(KS_Q_ACTIVE_AGE, 3, types, values, SPI_OK_SELECT);
		if (SPI_processed == 0 ||
			!DatumGetBool(env_spi_col(&s, 1, &isnull, true, 1)))
		{
			env_spi_end(&s);
			return 0;
		}
	}
	env_keystore_changed();

	/*
	 * A transaction creating the first data key of (tenant, purpose) does
	 * not lock the tenant's row against this one: if it commits first, the
	 * version created here collides with its own.  Then retire that one too
	 * and try again (reading as of now, its key is visible), or, under a
	 * transaction snapshot, ask for a retry.
	 */
	for (attempt = 0;; attempt++)
	{
		env_spi_run(KS_Q_RETIRE_ACTIVE, 2, types, values, SPI_OK_UPDATE);
		d = ks_create_data_key(&s, ks_tenant_key(tenant, &t),
							   tenant, purpose, t.key_version, t.customer);
		if (d != NULL)
			break;
		if (IsolationUsesXactSnapshot() || attempt >= 2)
			ks_creation_conflict(tenant, purpose);
	}
	version = d->pub.version;
	if (max_age > 0)
		snprintf(detail, sizeof(detail),
				 "version %d is now active; automatic, the previous one was older than %d s",
				 version, max_age);
	else
		snprintf(detail, sizeof(detail), "version %d is now active", version);
	env_key_event(&s, "data key rotated", tenant, purpose, version, detail);
	env_spi_end(&s);
	return version;
}

/*
 * A new active data key version for (tenant, purpose); the previous one is
 * rotated: it still decrypts, it never encrypts again.  Returns the new
 * version.
 */
int32
env_keystore_rotate_data_key(const char *tenant, size_t tenant_len,
							 const char *purpose, size_t purpose_len)
{
	env_check_tenant_name(tenant, tenant_len);
	env_check_purpose_name(purpose, purpose_len);
	return ks_rotate(pnstrdup(tenant, tenant_len),
					 pnstrdup(purpose, purpose_len), 0);
}

#define KS_Q_TENANT_DATA_KEYS \
	"SELECT key_id, purpose, version, wrapped_key, tenant_key_version" \
	"  FROM envault.data_keys" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1" \
	"   AND state OPERATOR(pg_catalog.<>) 'destroyed'"

#define KS_Q_REWRAP_DATA_KEY \
	"UPDATE envault.data_keys SET wrapped_key = $2, tenant_key_version = $3" \
	" WHERE key_id OPERATOR(pg_catalog.=) $1"

#define KS_Q_NEW_TENANT_KEY \
	"UPDATE envault.tenants SET key_version = $2, wrapped_key = $3," \
	"       master_kcv = CASE WHEN key_source OPERATOR(pg_catalog.=) 'master' THEN $4 END," \
	"       state_changed_at = pg_catalog.now()" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1"

/*
 * Rewrap every data key of a tenant (locked, row t) from its current tenant
 * key to a new one of version new_version.  Returns how many.
 */
static uint64
ks_rewrap_data_keys(const char *tname, const KsTenantRow *t,
					const EnvXaesKey *old_key, const EnvXaesKey *new_key,
					int32 new_version)
{
	Oid			types[3] = {INT8OID, BYTEAOID, INT4OID};
	Oid			ttypes[1] = {TEXTOID};
	Datum		values[3];
	SPITupleTable *dks;
	uint64		n;
	uint64		i;
	SPIPlanPtr	rewrap;
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;

	values[0] = CStringGetTextDatum(tname);
	env_spi_run(KS_Q_TENANT_DATA_KEYS, 1, ttypes, values, SPI_OK_SELECT);
	dks = SPI_tuptable;
	n = SPI_processed;
	rewrap = SPI_prepare(KS_Q_REWRAP_DATA_KEY, 3, types);
	if (rewrap == NULL)
		elog(ERROR, "could not prepare the data key rewrap");
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = dks->vals[i];
		bool		isnull;
		uint64		key_id = (uint64) DatumGetInt64(SPI_getbinval(tup, dks->tupdesc, 1, &isnull));
		char	   *purpose = TextDatumGetCString(SPI_getbinval(tup, dks->tupdesc, 2, &isnull));
		int32		version = DatumGetInt32(SPI_getbinval(tup, dks->tupdesc, 3, &isnull));
		bytea	   *wrapped = DatumGetByteaPP(SPI_getbinval(tup, dks->tupdesc, 4, &isnull));
		int32		under = DatumGetInt32(SPI_getbinval(tup, dks->tupdesc, 5, &isnull));
		bytea	   *rewrapped = palloc(VARHDRSZ + ENV_WRAPPED_LEN);
		uint8		dek[ENV_KEY_LEN];
		EnvCryptoStatus st;

		if (under != t->key_version)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("data key of tenant \"%s\", purpose \"%s\", version %d is wrapped under tenant key version %d, not the current version %d",
							tname, purpose, version, under, t->key_version)));
		aad_len = env_dek_wrap_aad(aad, tname, strlen(tname), purpose,
								   strlen(purpose), (uint32) version, key_id);
		st = env_key_unwrap(old_key, (uint8 *) VARDATA_ANY(wrapped),
							VARSIZE_ANY_EXHDR(wrapped), aad, aad_len, dek);
		if (st == ENV_CRYPTO_OK)
			st = env_key_wrap(new_key, dek, aad, aad_len,
							  (uint8 *) VARDATA(rewrapped));
		env_wipe(dek, sizeof(dek));
		if (st == ENV_CRYPTO_AUTH_FAILED)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("wrapped data key of tenant \"%s\", purpose \"%s\", version %d failed authentication",
							tname, purpose, version)));
		if (st != ENV_CRYPTO_OK)
			env_error_crypto(st, "rewrapping a data key");
		SET_VARSIZE(rewrapped, VARHDRSZ + ENV_WRAPPED_LEN);
		values[0] = Int64GetDatum((int64) key_id);
		values[1] = PointerGetDatum(rewrapped);
		values[2] = Int32GetDatum(new_version);
		if (SPI_execute_plan(rewrap, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not rewrap a data key");
	}
	SPI_freeplan(rewrap);
	return n;
}

/*
 * A new key for a tenant, and every data key of the tenant rewrapped under
 * it, in this transaction.  No data ciphertext changes; the old wrapped
 * tenant key is gone once this commits.  Returns the new key version.
 */
int32
env_keystore_rotate_tenant_key(const char *tenant, size_t tenant_len)
{
	EnvSpi		s;
	KsTenantRow t;
	char	   *tname;
	const EnvXaesKey *old_key;
	EnvXaesKey *new_key;
	bytea	   *new_wrapped;
	bytea	   *kcv;
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	int32		new_version;
	Oid			ttypes[4] = {TEXTOID, INT4OID, BYTEAOID, BYTEAOID};
	Datum		values[4];
	volatile uint64 n = 0;
	char		detail[96];

	env_check_tenant_name(tenant, tenant_len);
	tname = pnstrdup(tenant, tenant_len);

	env_spi_begin(&s);
	ks_lock_tenant_for_update(&s, tname, &t);
	env_keystore_changed();
	old_key = ks_tenant_key(tname, &t);
	new_version = t.key_version + 1;
	aad_len = env_tenant_wrap_aad(aad, tname, strlen(tname), (uint32) new_version);
	if (t.customer)
	{
		uint8		ckcv[ENV_KCV_LEN];

		new_wrapped = ks_wrap_new_key_customer(tname, &t, aad, aad_len, &new_key, ckcv);
	}
	else
		new_wrapped = ks_wrap_new_key(env_master_key(), aad, aad_len, &new_key);

	PG_TRY();
	{
		n = ks_rewrap_data_keys(tname, &t, old_key, new_key, new_version);
	}
	PG_FINALLY();
	{
		ks_slot_free(new_key);
	}
	PG_END_TRY();

	kcv = palloc(VARHDRSZ + ENV_KCV_LEN);
	SET_VARSIZE(kcv, VARHDRSZ + ENV_KCV_LEN);
	memcpy(VARDATA(kcv), env_master_kcv(), ENV_KCV_LEN);
	values[0] = CStringGetTextDatum(tname);
	values[1] = Int32GetDatum(new_version);
	values[2] = PointerGetDatum(new_wrapped);
	values[3] = PointerGetDatum(kcv);
	env_spi_run(KS_Q_NEW_TENANT_KEY, 4, ttypes, values, SPI_OK_UPDATE);
	snprintf(detail, sizeof(detail), "key version %d; " UINT64_FORMAT " data keys rewrapped",
			 new_version, n);
	env_key_event(&s, "tenant key rotated", tname, NULL, -1, detail);
	env_spi_end(&s);
	return new_version;
}

/* --- customer-managed keys (BYOK) ---------------------------------------- */

#define KS_Q_SET_SOURCE \
	"UPDATE envault.tenants SET key_source = $2, wrapped_key = $3," \
	"       master_kcv = $4, customer_kcv = $5, state_changed_at = pg_catalog.now()" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1"

static bytea *
ks_kcv_bytea(const uint8 *kcv)
{
	bytea	   *b = palloc(VARHDRSZ + ENV_KCV_LEN);

	SET_VARSIZE(b, VARHDRSZ + ENV_KCV_LEN);
	memcpy(VARDATA(b), kcv, ENV_KCV_LEN);
	return b;
}

/*
 * Move a tenant key from its customer-managed key back to the master key:
 * unwrap it under the one, wrap it under the other, in this transaction.
 * The tenant key itself does not change, so no data key is touched
 * (onboarding goes the other way by re-keying: env_keystore_rekey_tenant).
 */
void
env_keystore_use_master_key(const char *tenant, size_t tenant_len)
{
	EnvSpi		s;
	KsTenantRow t;
	char	   *tname;
	uint8		cmk[ENV_KEY_LEN];
	uint8		ckcv[ENV_KCV_LEN];
	uint8		key[ENV_KEY_LEN];
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	EnvXaesKey	kek;
	EnvCryptoStatus st;
	bytea	   *rewrapped = palloc(VARHDRSZ + ENV_WRAPPED_LEN);
	Oid			types[5] = {TEXTOID, TEXTOID, BYTEAOID, BYTEAOID, BYTEAOID};
	Datum		values[5];
	char		nulls[5 + 1] = "     ";
	char		detail[96];

	env_check_tenant_name(tenant, tenant_len);
	tname = pnstrdup(tenant, tenant_len);
	env_spi_begin(&s);
	env_keystore_lock_tenant(&s, tname, &t);
	if (!t.customer)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("envault tenant \"%s\" already uses the master key", tname)));

	/* whatever may raise, before the customer key is in memory */
	(void) env_master_key();
	env_customer_key(tname, cmk, ckcv);
	if (!ks_kcv_is(t.kcv, ckcv))
	{
		env_wipe(cmk, sizeof(cmk));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("customer key of envault tenant \"%s\" does not match the key that wraps its tenant key", tname)));
	}
	if (!env_xaes_key_init(&kek, cmk))
	{
		env_wipe(cmk, sizeof(cmk));
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "preparing a customer key");
	}
	env_wipe(cmk, sizeof(cmk));

	aad_len = env_tenant_wrap_aad(aad, tname, strlen(tname), (uint32) t.key_version);
	st = env_key_unwrap(&kek, (uint8 *) VARDATA_ANY(t.wrapped),
						VARSIZE_ANY_EXHDR(t.wrapped), aad, aad_len, key);
	if (st == ENV_CRYPTO_OK)
		st = env_key_wrap(env_master_key(), key, aad, aad_len,
						  (uint8 *) VARDATA(rewrapped));
	env_wipe(key, sizeof(key));
	env_xaes_key_clear(&kek);
	if (st == ENV_CRYPTO_AUTH_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("wrapped key of tenant \"%s\" failed authentication", tname),
				 errdetail("Its row in envault.tenants was altered or copied from another tenant.")));
	if (st != ENV_CRYPTO_OK)
		env_error_crypto(st, "rewrapping a tenant key");
	SET_VARSIZE(rewrapped, VARHDRSZ + ENV_WRAPPED_LEN);

	env_keystore_changed();
	values[0] = CStringGetTextDatum(tname);
	values[1] = CStringGetTextDatum("master");
	values[2] = PointerGetDatum(rewrapped);
	values[3] = PointerGetDatum(ks_kcv_bytea(env_master_kcv()));
	nulls[4] = 'n';
	if (SPI_execute_with_args(KS_Q_SET_SOURCE, 5, types, values, nulls, false, 0)
		!= SPI_OK_UPDATE)
		elog(ERROR, "could not update the tenant key");
	snprintf(detail, sizeof(detail), "customer key check value %s",
			 env_kcv_fingerprint(ckcv));
	env_key_event(&s, "customer key removed", tname, NULL, -1, detail);
	env_spi_end(&s);
}

/* --- re-keying ------------------------------------------------------------ */

#define KS_Q_REKEY_TENANT \
	"UPDATE envault.tenants SET key_version = $2, wrapped_key = $3, key_source = $4," \
	"       master_kcv = $5, customer_kcv = $6, rekeyed_at = pg_catalog.now()," \
	"       state_changed_at = pg_catalog.now()" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1"

#define KS_Q_ACTIVE_PURPOSES \
	"SELECT purpose FROM envault.data_keys" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'active'" \
	" ORDER BY purpose"

/*
 * Re-key a tenant, in this transaction: a fresh tenant key, wrapped by the
 * tenant's customer-managed key (with to_customer, or when the tenant uses
 * one already) or by the master key; every data key rewrapped under it;
 * and a fresh active data key for every purpose that has one, the previous
 * active keys rotated.  From then on nothing new is encrypted under a key
 * that any copy of the key tables from before could open.  Values under
 * the superseded data keys still decrypt (they are rewrapped) until they
 * are re-encrypted (reencrypt_column) and the superseded keys destroyed
 * (destroy_superseded_keys, which reads tenants.rekeyed_at).  Returns the
 * number of data keys created.
 */
int32
env_keystore_rekey_tenant(const char *tenant, size_t tenant_len, bool to_customer)
{
	EnvSpi		s;
	KsTenantRow t;
	char	   *tname;
	bool		customer;
	const EnvXaesKey *old_key;
	EnvXaesKey *new_key;
	bytea	   *new_wrapped;
	uint8		ckcv[ENV_KCV_LEN];
	uint8		aad[ENV_WRAP_AAD_MAXLEN];
	size_t		aad_len;
	int32		new_version;
	Oid			types[6] = {TEXTOID, INT4OID, BYTEAOID, TEXTOID, BYTEAOID, BYTEAOID};
	Datum		values[6];
	char		nulls[6 + 1] = "      ";
	volatile uint64 nrewrapped = 0;
	volatile int32 ncreated = 0;
	uint64		i;

	env_check_tenant_name(tenant, tenant_len);
	tname = pnstrdup(tenant, tenant_len);

	env_spi_begin(&s);
	ks_lock_tenant_for_update(&s, tname, &t);
	if (to_customer && t.customer)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("envault tenant \"%s\" already uses a customer-managed key", tname),
				 errhint("To give it fresh keys under the same customer key, use envault.rekey_tenant().")));
	customer = to_customer || t.customer;
	env_keystore_changed();
	old_key = ks_tenant_key(tname, &t);
	new_version = t.key_version + 1;
	aad_len = env_tenant_wrap_aad(aad, tname, strlen(tname), (uint32) new_version);
	if (customer)
		new_wrapped = ks_wrap_new_key_customer(tname, &t, aad, aad_len, &new_key, ckcv);
	else
		new_wrapped = ks_wrap_new_key(env_master_key(), aad, aad_len, &new_key);

	PG_TRY();
	{
		List	   *purposes = NIL;
		ListCell   *lc;

		nrewrapped = ks_rewrap_data_keys(tname, &t, old_key, new_key, new_version);

		values[0] = CStringGetTextDatum(tname);
		values[1] = Int32GetDatum(new_version);
		values[2] = PointerGetDatum(new_wrapped);
		values[3] = CStringGetTextDatum(customer ? "customer" : "master");
		if (customer)
		{
			nulls[4] = 'n';
			values[5] = PointerGetDatum(ks_kcv_bytea(ckcv));
		}
		else
		{
			values[4] = PointerGetDatum(ks_kcv_bytea(env_master_kcv()));
			nulls[5] = 'n';
		}
		if (SPI_execute_with_args(KS_Q_REKEY_TENANT, 6, types, values, nulls, false, 0)
			!= SPI_OK_UPDATE)
			elog(ERROR, "could not update the tenant key");

		/* a fresh active key for every purpose, under the new tenant key */
		env_spi_run(KS_Q_ACTIVE_PURPOSES, 1, types, values, SPI_OK_SELECT);
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			purposes = lappend(purposes,
							   TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[i],
																 SPI_tuptable->tupdesc,
																 1, &isnull)));
		}
		foreach(lc, purposes)
		{
			char	   *purpose = lfirst(lc);
			Oid			ptypes[2] = {TEXTOID, TEXTOID};
			Datum		pvalues[2];

			pvalues[0] = CStringGetTextDatum(tname);
			pvalues[1] = CStringGetTextDatum(purpose);
			env_spi_run(KS_Q_RETIRE_ACTIVE, 2, ptypes, pvalues, SPI_OK_UPDATE);
			if (ks_create_data_key(&s, new_key, tname, purpose, new_version, customer) == NULL)
				ks_creation_conflict(tname, purpose);
			ncreated++;
		}
	}
	PG_FINALLY();
	{
		ks_slot_free(new_key);
	}
	PG_END_TRY();

	env_key_event(&s, to_customer ? "tenant re-keyed under a customer key" : "tenant re-keyed",
				  tname, NULL, -1,
				  psprintf("key version %d under the %s key%s%s; " UINT64_FORMAT " data keys rewrapped, %d new active data keys",
						   new_version, customer ? "customer" : "master",
						   customer ? " with check value " : "",
						   customer ? env_kcv_fingerprint(ckcv) : "",
						   (uint64) nrewrapped, (int) ncreated));
	env_spi_end(&s);
	return ncreated;
}

/* --- master key rotation ------------------------------------------------- */

#define KS_Q_UNDER_PREVIOUS \
	"SELECT tenant, key_version, wrapped_key FROM envault.tenants" \
	" WHERE master_kcv OPERATOR(pg_catalog.=) $1" \
	" ORDER BY tenant LIMIT $2 FOR UPDATE SKIP LOCKED"

#define KS_Q_REWRAP_TENANT \
	"UPDATE envault.tenants SET wrapped_key = $2, master_kcv = $3" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1"

#define KS_Q_COUNT_UNDER \
	"SELECT pg_catalog.count(*) FROM envault.tenants" \
	" WHERE master_kcv OPERATOR(pg_catalog.=) $1"

/*
 * Rewrap up to batch_size tenant keys from the previous master key to the
 * current one, in the caller's transaction.  Returns how many it rewrapped
 * and, in *remaining, how many are left under the previous key.  Tenant keys
 * do not change, so nothing cached goes stale.
 */
int64
env_keystore_rewrap_tenants(int32 batch_size, int64 *remaining)
{
	EnvSpi		s;
	const uint8 *pkcv;
	const EnvXaesKey *previous = env_previous_master_key(&pkcv);
	const EnvXaesKey *current;
	Oid			types[3] = {TEXTOID, BYTEAOID, BYTEAOID};
	Oid			qtypes[2] = {BYTEAOID, INT4OID};
	Datum		values[3];
	bytea	   *pkcv_b;
	bytea	   *mkcv_b;
	SPITupleTable *rows;
	uint64		n;
	uint64		i;
	bool		isnull;
	char		detail[96];

	if (previous == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no previous envault master key is configured"),
				 errhint("Set envault.previous_master_key_file (or _key, or _key_command) to the old key and the master key settings to the new one, and restart the server.")));
	if (batch_size < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be at least 1")));
	current = env_master_key();
	pkcv_b = palloc(VARHDRSZ + ENV_KCV_LEN);
	SET_VARSIZE(pkcv_b, VARHDRSZ + ENV_KCV_LEN);
	memcpy(VARDATA(pkcv_b), pkcv, ENV_KCV_LEN);
	mkcv_b = palloc(VARHDRSZ + ENV_KCV_LEN);
	SET_VARSIZE(mkcv_b, VARHDRSZ + ENV_KCV_LEN);
	memcpy(VARDATA(mkcv_b), env_master_kcv(), ENV_KCV_LEN);
	if (memcmp(VARDATA(pkcv_b), VARDATA(mkcv_b), ENV_KCV_LEN) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the previous envault master key is the current one")));

	env_spi_begin(&s);
	values[0] = PointerGetDatum(pkcv_b);
	values[1] = Int32GetDatum(batch_size);
	env_spi_run(KS_Q_UNDER_PREVIOUS, 2, qtypes, values, SPI_OK_SELECT);
	rows = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = rows->vals[i];
		char	   *tenant = TextDatumGetCString(SPI_getbinval(tup, rows->tupdesc, 1, &isnull));
		int32		version = DatumGetInt32(SPI_getbinval(tup, rows->tupdesc, 2, &isnull));
		bytea	   *wrapped = DatumGetByteaPP(SPI_getbinval(tup, rows->tupdesc, 3, &isnull));
		bytea	   *rewrapped = palloc(VARHDRSZ + ENV_WRAPPED_LEN);
		uint8		aad[ENV_WRAP_AAD_MAXLEN];
		size_t		aad_len = env_tenant_wrap_aad(aad, tenant, strlen(tenant),
												  (uint32) version);
		uint8		key[ENV_KEY_LEN];
		EnvCryptoStatus st;

		st = env_key_unwrap(previous, (uint8 *) VARDATA_ANY(wrapped),
							VARSIZE_ANY_EXHDR(wrapped), aad, aad_len, key);
		if (st == ENV_CRYPTO_OK)
			st = env_key_wrap(current, key, aad, aad_len,
							  (uint8 *) VARDATA(rewrapped));
		env_wipe(key, sizeof(key));
		if (st == ENV_CRYPTO_AUTH_FAILED)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("wrapped key of tenant \"%s\" failed authentication", tenant),
					 errdetail("Its row in envault.tenants was altered or copied from another tenant.")));
		if (st != ENV_CRYPTO_OK)
			env_error_crypto(st, "rewrapping a tenant key");
		SET_VARSIZE(rewrapped, VARHDRSZ + ENV_WRAPPED_LEN);
		values[0] = CStringGetTextDatum(tenant);
		values[1] = PointerGetDatum(rewrapped);
		values[2] = PointerGetDatum(mkcv_b);
		env_spi_run(KS_Q_REWRAP_TENANT, 3, types, values, SPI_OK_UPDATE);
	}
	values[0] = PointerGetDatum(pkcv_b);
	env_spi_run(KS_Q_COUNT_UNDER, 1, qtypes, values, SPI_OK_SELECT);
	*remaining = DatumGetInt64(env_spi_col(&s, 1, &isnull, true, 8));
	if (n > 0)
	{
		snprintf(detail, sizeof(detail),
				 UINT64_FORMAT " tenant keys rewrapped, " INT64_FORMAT " remain",
				 n, *remaining);
		env_key_event(&s, "master key rotation", NULL, NULL, -1, detail);
	}
	env_spi_end(&s);
	return (int64) n;
}

void
env_keystore_init(void)
{
	HASHCTL		ctl;

	DefineCustomIntVariable("envault.key_cache_size",
							gettext_noop("Maximum number of unwrapped keys each session caches."),
							NULL,
							&ks_cache_size,
							1000, 1, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("envault.data_key_max_age",
							gettext_noop("Age after which an active data key is rotated automatically (0 = never)."),
							gettext_noop("Checked when the key is about to encrypt, in read-write transactions."),
							&ks_data_key_max_age,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("envault.customer_key_ttl",
							gettext_noop("Longest time the keys of a tenant with a customer-managed key stay cached (0: one statement)."),
							gettext_noop("With 0, every statement that uses such a tenant runs envault.customer_key_command once, and withholding the customer key stops every session at its next statement; a positive value lets sessions that hold the keys use them that long."),
							&ks_customer_key_ttl,
							0, 0, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("envault.key_cache_ttl",
							gettext_noop("Time after which a cached unwrapped key is unwrapped again."),
							NULL,
							&ks_cache_ttl,
							300, 1, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = ENV_TENANT_MAXLEN + 1;
	ctl.entrysize = sizeof(KsTenant);
	ks_tenants = hash_create("envault tenant keys", 64, &ctl,
							 HASH_ELEM | HASH_STRINGS);
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(KsDataKey);
	ks_data_keys = hash_create("envault data keys", 256, &ctl,
							   HASH_ELEM | HASH_BLOBS);
	ctl.keysize = KS_ACTIVE_KEYLEN;
	ctl.entrysize = sizeof(KsActive);
	ks_active = hash_create("envault active data keys", 256, &ctl,
							HASH_ELEM | HASH_STRINGS);
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(KsUnusable);
	ks_unusable = hash_create("envault unusable data keys", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS);

	RegisterXactCallback(ks_xact_callback, NULL);
	RegisterSubXactCallback(ks_subxact_callback, NULL);
	CacheRegisterRelcacheCallback(ks_relcache_callback, (Datum) 0);

	if (process_shared_preload_libraries_in_progress)
	{
		ks_prev_shmem_request = shmem_request_hook;
		shmem_request_hook = ks_shmem_request;
		ks_prev_shmem_startup = shmem_startup_hook;
		shmem_startup_hook = ks_shmem_startup;
	}
}
