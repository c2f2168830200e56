/*-------------------------------------------------------------------------
 *
 * scaleout.c
 *		envault on a Citus cluster.
 *
 * envault.scale_out() (envault.sql) makes envault.tenants and
 * envault.data_keys Citus reference tables: every node holds a copy, Citus
 * writes all copies in one distributed transaction, and a query pushed
 * down to a worker opens its tenants' keys from the worker's own copy.
 * This file holds what that needs in C:
 *
 * - Reading.  Key lookups go through envault's privileged SPI, and so
 *   through Citus, which refuses a query on a Citus table from inside a
 *   query it pushed down to a shard ("nested distributed execution"),
 *   because a distributed table's shard may have moved meanwhile.  A
 *   reference table never moves: envault allows it for its own queries
 *   only (env_citus_allow_nested, undone with the rest of its SPI state).
 *
 * - Forgetting.  A worker receives a key change (a rotation, a retirement,
 *   a revocation) as a write to its copy of the key tables, inside a
 *   transaction that Citus commits in two phases: PREPARE TRANSACTION,
 *   then COMMIT PREPARED, usually in the same backend but not necessarily.
 *   The statement trigger envault.key_tables_changed marks the transaction;
 *   its PREPARE TRANSACTION registers its identifier in shared memory, and
 *   the COMMIT PREPARED of a registered identifier bumps the key store's
 *   generation, so that every backend of the node drops its cached keys
 *   before its next lookup, exactly as after a change committed in one
 *   phase.  Until the COMMIT PREPARED, every backend keeps reading the old
 *   state, which is still the committed one.
 *
 *   Identifiers live in shared memory, which a restart empties while
 *   prepared transactions survive it: until no transaction prepared before
 *   the server started remains, every COMMIT PREPARED bumps.
 *
 * - The tenant context.  It lives in a backend's memory (tenant.c), and the
 *   backends that Citus opens on the workers for a transaction have none.
 *   When authenticate() or use_tenant() sets a context inside a
 *   transaction block, and Citus propagates SET LOCAL
 *   (citus.propagate_set_commands = local), envault runs
 *   SET LOCAL envault.tenant_proof = '<proof>': Citus sends it to the
 *   workers the transaction uses now and later.  The proof names the
 *   tenant, the role Citus connects as, the database and an expiry, and is
 *   an HMAC of them under a key derived from the pepper, which every node
 *   has and no role can read.  A worker backend without a context of its
 *   own adopts the proof's tenant while the proof is valid; an invalid
 *   proof is an error, never ignored.  The setting is hidden from roles
 *   that are not superusers (SHOW refuses it), so an application role can
 *   neither forge a proof nor read one to replay it.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "scaleout.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_namespace.h"
#include "commands/dbcommands.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#define SO_CITUS_NESTED		"citus.allow_nested_distributed_execution"

/* prepared transactions with key changes awaiting COMMIT PREPARED */
#define SO_MAX_PREPARED		64

typedef struct SoShared
{
	slock_t		mutex;
	bool		from_before_start;	/* may some predate this server start? */
	int			count;
	char		gids[SO_MAX_PREPARED][GIDSIZE];
} SoShared;

static SoShared *so_shared = NULL;

/* envault.tenant_proof and envault.tenant_proof_ttl */
static char *so_proof = NULL;
static int	so_proof_ttl = 300;
static uint64 so_proof_serial = 0;	/* assignments of envault.tenant_proof */

/* the last proof verified, and its tenant */
static char *so_checked_proof = NULL;
static char so_checked_tenant[ENV_TENANT_MAXLEN + 1];
static TimestampTz so_checked_expires = 0;

static bool so_registered = false;	/* this transaction's PREPARE */

/*
 * A context was dropped in this transaction (its token revoked or
 * expired): no proof is adopted here until the transaction ends, and the
 * next statement clears the proof on the workers too.
 */
static bool so_refuse_proofs = false;
static int	so_citus = -1;		/* is Citus loaded? -1: not known yet */
static bool so_checking = false;	/* in so_executor_start's checks */
static ExecutorStart_hook_type so_prev_executor_start = NULL;
static ProcessUtility_hook_type so_prev_process_utility = NULL;
static shmem_request_hook_type so_prev_shmem_request = NULL;
static shmem_startup_hook_type so_prev_shmem_startup = NULL;

void
env_citus_allow_nested(void)
{
	if (GetConfigOption(SO_CITUS_NESTED, true, false) != NULL)
		(void) set_config_option(SO_CITUS_NESTED, "on",
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
}

bool
env_is_citus_table(Oid relid)
{
	Oid			catalog = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	bool		found;

	if (!OidIsValid(catalog))
		return false;
	rel = table_open(catalog, AccessShareLock);
	/* logicalrelid is its first column */
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Look a shard up in pg_dist_shard, by column keyatt (1 logicalrelid, 2
 * shardid) equal to key: how many rows match (0, 1, or 2 for more), and
 * column valatt of the first, which must not be null.
 */
static int
so_dist_shard(AttrNumber keyatt, RegProcedure eq, Datum key, AttrNumber valatt,
			  Datum *value)
{
	Oid			catalog = get_relname_relid("pg_dist_shard", PG_CATALOG_NAMESPACE);
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData skey;
	HeapTuple	tup;
	int			n = 0;

	if (!OidIsValid(catalog))
		return 0;
	rel = table_open(catalog, AccessShareLock);
	ScanKeyInit(&skey, keyatt, BTEqualStrategyNumber, eq, key);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &skey);
	while (n < 2 && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, valatt, RelationGetDescr(rel), &isnull);

		if (isnull)
			break;
		if (n++ == 0)
			*value = d;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return n;
}

/*
 * The distributed table whose shard relid is on this node, or InvalidOid:
 * Citus names a shard <table>_<shardid>, in the table's schema, and keeps
 * the shard's table in pg_dist_shard on every node with metadata.
 */
Oid
env_citus_shard_parent(Oid relid)
{
	char	   *name = get_rel_name(relid);
	char	   *us;
	char	   *end;
	char	   *pname;
	int64		shardid;
	Datum		d;
	Oid			parent;

	if (name == NULL || (us = strrchr(name, '_')) == NULL || us[1] < '0' || us[1] > '9')
		return InvalidOid;
	errno = 0;
	shardid = strtoi64(us + 1, &end, 10);
	if (errno != 0 || *end != '\0' || shardid <= 0 ||
		so_dist_shard(2, F_INT8EQ, Int64GetDatum(shardid), 1, &d) != 1)
		return InvalidOid;
	parent = DatumGetObjectId(d);
	pname = get_rel_name(parent);
	/* the same name and schema as the table, or not its shard */
	if (pname == NULL || get_rel_namespace(parent) != get_rel_namespace(relid) ||
		strlen(pname) != (size_t) (us - name) || strncmp(pname, name, us - name) != 0)
		return InvalidOid;
	return parent;
}

/*
 * The relation that holds this node's rows of one of envault's tables:
 * the table itself, or, once Citus made it a reference table, this node's
 * copy of it (shard <name>_<shardid>), which code that reads the table
 * directly, without the planner, must open instead.
 */
Oid
env_local_copy(Oid relid)
{
	Datum		d;
	char	   *name = NULL;
	Oid			copy;

	if (!env_is_citus_table(relid))
		return relid;
	if (!OidIsValid(get_relname_relid("pg_dist_shard", PG_CATALOG_NAMESPACE)))
		elog(ERROR, "pg_dist_shard does not exist");
	/* a reference table has one shard */
	if (so_dist_shard(1, F_OIDEQ, ObjectIdGetDatum(relid), 2, &d) == 1)
		name = psprintf("%s_" INT64_FORMAT, get_rel_name(relid), DatumGetInt64(d));
	copy = name ? get_relname_relid(name, get_rel_namespace(relid)) : InvalidOid;
	if (!OidIsValid(copy))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this node has no copy of %s", get_rel_name(relid)),
				 errdetail("envault reads it directly and needs it to be a Citus reference table with a copy on every node."),
				 errhint("On the coordinator, run SELECT citus_set_coordinator_host(host, port) and SELECT envault.scale_out().")));
	return copy;
}

bool
env_scaleout_prepare_registered(void)
{
	return so_registered;
}

static void
so_shmem_request(void)
{
	if (so_prev_shmem_request)
		so_prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SoShared)));
}

static void
so_shmem_startup(void)
{
	bool		found;

	if (so_prev_shmem_startup)
		so_prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	so_shared = ShmemInitStruct("envault prepared key changes",
								sizeof(SoShared), &found);
	if (!found)
	{
		SpinLockInit(&so_shared->mutex);
		so_shared->from_before_start = true;
		so_shared->count = 0;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Register a prepared transaction's identifier; false if there is no room. */
static bool
so_register(const char *gid)
{
	bool		ok = false;

	SpinLockAcquire(&so_shared->mutex);
	if (so_shared->count < SO_MAX_PREPARED)
	{
		strlcpy(so_shared->gids[so_shared->count++], gid, GIDSIZE);
		ok = true;
	}
	SpinLockRelease(&so_shared->mutex);
	return ok;
}

/* Forget an identifier; was it registered (or may it predate the start)? */
static bool
so_forget(const char *gid)
{
	bool		found = false;
	int			i;

	SpinLockAcquire(&so_shared->mutex);
	for (i = 0; i < so_shared->count; i++)
		if (strcmp(so_shared->gids[i], gid) == 0)
		{
			so_shared->count--;
			if (i != so_shared->count)
				memcpy(so_shared->gids[i], so_shared->gids[so_shared->count],
					   GIDSIZE);
			found = true;
			break;
		}
	found = found || so_shared->from_before_start;
	SpinLockRelease(&so_shared->mutex);
	return found;
}

/*
 * Are transactions prepared before this server started still waiting?
 * Asked only while that is possible.
 */
static void
so_check_before_start(void)
{
	bool		remain;

	SpinLockAcquire(&so_shared->mutex);
	remain = so_shared->from_before_start;
	SpinLockRelease(&so_shared->mutex);
	if (!remain)
		return;
	/* COMMIT PREPARED runs without a snapshot: take one for the query */
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT 1 FROM pg_catalog.pg_prepared_xacts"
					" WHERE prepared OPERATOR(pg_catalog.<) pg_catalog.pg_postmaster_start_time()"
					" LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not list prepared transactions");
	remain = SPI_processed > 0;
	SPI_finish();
	PopActiveSnapshot();
	if (!remain)
	{
		SpinLockAcquire(&so_shared->mutex);
		so_shared->from_before_start = false;
		SpinLockRelease(&so_shared->mutex);
	}
}

static void
so_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	TransactionStmt *ts = IsA(stmt, TransactionStmt) ? (TransactionStmt *) stmt : NULL;

	if (ts != NULL && ts->kind == TRANS_STMT_PREPARE && so_shared != NULL &&
		env_keystore_change_pending() && !so_registered)
	{
		if (!so_register(ts->gid))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many prepared transactions changed envault keys"),
					 errdetail("At most %d such transactions can await COMMIT PREPARED on one server.",
							   SO_MAX_PREPARED),
					 errhint("Commit or roll back the prepared transactions listed in pg_prepared_xacts.")));
		so_registered = true;
	}

	if (so_prev_process_utility)
		so_prev_process_utility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (ts != NULL && so_shared != NULL &&
		(ts->kind == TRANS_STMT_COMMIT_PREPARED ||
		 ts->kind == TRANS_STMT_ROLLBACK_PREPARED))
	{
		/* committed (or rolled back) by now: visible to every snapshot */
		if (so_forget(ts->gid) && ts->kind == TRANS_STMT_COMMIT_PREPARED)
			env_keystore_bump();
		so_check_before_start();
	}
}

static void
so_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT)
	{
		so_registered = false;
		so_refuse_proofs = false;
	}
}

void
env_scaleout_context_dropped(void)
{
	so_refuse_proofs = true;
}

/*
 * On a Citus node, every statement checks the tenant context first: a
 * statement whose envault calls all run on the workers (a decryption in a
 * query on a distributed table) would otherwise never look at the token
 * here, and a revoked token would go on working through the workers until
 * the transaction ends.  A context dropped earlier in the transaction
 * (then ROLLBACK TO SAVEPOINT) also takes its proof off the workers before
 * the statement reaches them.
 */
static void
so_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (so_citus < 0)
		so_citus = GetConfigOption("citus.propagate_set_commands", true, false) != NULL;
	/* not again for the queries these checks run themselves */
	if (so_citus && !so_checking && !(eflags & EXEC_FLAG_EXPLAIN_ONLY))
	{
		so_checking = true;
		PG_TRY();
		{
			env_tenant_revalidate();
			if (so_refuse_proofs && so_proof != NULL && so_proof[0] != '\0')
				env_scaleout_context_set(NULL);
		}
		PG_FINALLY();
		{
			so_checking = false;
		}
		PG_END_TRY();
	}
	if (so_prev_executor_start)
		so_prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/*
 * Statement trigger on envault.tenants and envault.data_keys (and, on a
 * Citus node, on its copies of them): whoever changed them, every backend
 * drops its cached keys once the change commits.  It does not evict this
 * backend's cache at once: the statement may come from a key operation
 * that still holds keys from it (see env_keystore_tables_changed).
 */
PG_FUNCTION_INFO_V1(envault_key_tables_changed);
Datum
envault_key_tables_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("envault.key_tables_changed() must be called as a statement trigger")));
	env_keystore_tables_changed();
	return PointerGetDatum(NULL);
}


/* --- the tenant context on workers ------------------------------------ */

#define SO_PROOF_VERSION	"1"

/* Append the hex of len bytes (PostgreSQL's hex_encode) */
static void
so_hex(StringInfo buf, const uint8 *p, size_t len)
{
	enlargeStringInfo(buf, (int) (2 * len));
	buf->len += (int) hex_encode((const char *) p, len, buf->data + buf->len);
	buf->data[buf->len] = '\0';
}

static bool
so_unhex(const char *s, size_t len, char *out)
{
	size_t		i;

	if (len % 2 != 0)
		return false;
	for (i = 0; i < len; i += 2)
	{
		int			hi = (s[i] >= '0' && s[i] <= '9') ? s[i] - '0' :
			(s[i] >= 'a' && s[i] <= 'f') ? s[i] - 'a' + 10 : -1;
		int			lo = (s[i + 1] >= '0' && s[i + 1] <= '9') ? s[i + 1] - '0' :
			(s[i + 1] >= 'a' && s[i + 1] <= 'f') ? s[i + 1] - 'a' + 10 : -1;

		if (hi < 0 || lo < 0)
			return false;
		out[i / 2] = (char) (hi << 4 | lo);
	}
	out[len / 2] = '\0';
	return true;
}

/* The MAC of a proof: every field length-prefixed, under the pepper's key. */
static void
so_proof_mac(const char *tenant, const char *role, const char *db,
			 int64 expires, uint8 *mac)
{
	StringInfoData buf;
	const char *fields[3] = {tenant, role, db};
	int			i;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "envault tenant context " SO_PROOF_VERSION);
	for (i = 0; i < 3; i++)
	{
		uint32		n = pg_hton32((uint32) strlen(fields[i]));

		appendBinaryStringInfo(&buf, (const char *) &n, sizeof(n));
		appendStringInfoString(&buf, fields[i]);
	}
	appendStringInfo(&buf, INT64_FORMAT, expires);
	env_context_mac((const uint8 *) buf.data, buf.len, mac);
	pfree(buf.data);
}

/*
 * Coordinator: the context of this transaction changed (tenant NULL: it
 * was cleared).  Hand it to the workers, if Citus propagates SET LOCAL and
 * this is a transaction block (otherwise Citus sends nothing, and workers
 * have no context: they refuse what needs one).
 */
void
env_scaleout_context_set(const char *tenant)
{
	const char *prop = GetConfigOption("citus.propagate_set_commands", true, false);
	StringInfoData sql;

	if (prop == NULL || strcmp(prop, "local") != 0 || !IsTransactionBlock())
		return;
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SET LOCAL envault.tenant_proof = '");
	if (tenant != NULL)
	{
		const char *role = GetUserNameFromId(GetUserId(), false);
		const char *db = get_database_name(MyDatabaseId);
		int64		expires = GetCurrentTimestamp() +
			(int64) so_proof_ttl * USECS_PER_SEC;
		uint8		mac[ENV_SHA256_LEN];

		so_proof_mac(tenant, role, db, expires, mac);
		appendStringInfoString(&sql, SO_PROOF_VERSION ".");
		so_hex(&sql, (const uint8 *) tenant, strlen(tenant));
		appendStringInfoChar(&sql, '.');
		so_hex(&sql, (const uint8 *) role, strlen(role));
		appendStringInfo(&sql, "." INT64_FORMAT ".", expires);
		so_hex(&sql, mac, sizeof(mac));
	}
	appendStringInfoChar(&sql, '\'');
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not hand the tenant context to the Citus workers");
	SPI_finish();
	pfree(sql.data);
}

static ENV_NORETURN void so_bad_proof(const char *why) ENV_NORETURN_AFTER;

static void
so_bad_proof(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("envault tenant context proof is not valid"),
			 errdetail("%s", why),
			 errhint("The proof is set by envault on a Citus coordinator; it cannot be set by hand.")));
}

/*
 * Worker: the tenant of a valid proof, if one is set.  An invalid proof
 * is an error.
 */
bool
env_scaleout_context(char *tenant)
{
	char	   *parts[5];
	char	   *copy;
	char	   *p;
	int			n = 0;
	char		role[NAMEDATALEN * 2 + 1];
	char		tname[ENV_TENANT_MAXLEN + 1];
	char		macbuf[ENV_SHA256_LEN + 1];
	uint8		mac[ENV_SHA256_LEN];
	int64		expires;
	char	   *end;
	TimestampTz now = GetCurrentTimestamp();

	if (so_proof == NULL || so_proof[0] == '\0' || so_refuse_proofs)
		return false;
	if (so_checked_proof != NULL && strcmp(so_checked_proof, so_proof) == 0)
	{
		if (now >= so_checked_expires)
			so_bad_proof("It has expired.");
		strlcpy(tenant, so_checked_tenant, ENV_TENANT_MAXLEN + 1);
		return true;
	}

	copy = pstrdup(so_proof);
	parts[n++] = copy;
	for (p = copy; *p != '\0' && n < 5; p++)
		if (*p == '.')
		{
			*p = '\0';
			parts[n++] = p + 1;
		}
	if (n != 5 || strchr(parts[4], '.') != NULL ||
		strcmp(parts[0], SO_PROOF_VERSION) != 0 ||
		strlen(parts[1]) > 2 * ENV_TENANT_MAXLEN || strlen(parts[1]) == 0 ||
		!so_unhex(parts[1], strlen(parts[1]), tname) ||
		strlen(tname) != strlen(parts[1]) / 2 ||
		strlen(parts[2]) > 2 * NAMEDATALEN ||
		!so_unhex(parts[2], strlen(parts[2]), role) ||
		strlen(parts[4]) != 2 * ENV_SHA256_LEN ||
		!so_unhex(parts[4], strlen(parts[4]), macbuf))
		so_bad_proof("It is malformed.");
	errno = 0;
	expires = strtoi64(parts[3], &end, 10);
	if (errno != 0 || *end != '\0' || end == parts[3])
		so_bad_proof("It is malformed.");

	so_proof_mac(tname, role, get_database_name(MyDatabaseId), expires, mac);
	if (env_memcmp_ct(mac, macbuf, sizeof(mac)) != 0)
		so_bad_proof("Its HMAC does not match: it was not made by envault with this cluster's pepper, or not for this database.");
	if (strcmp(role, GetUserNameFromId(GetSessionUserId(), false)) != 0)
		so_bad_proof("It was made for another role.");
	if (now >= expires)
		so_bad_proof("It has expired.");

	if (so_checked_proof != NULL)
		pfree(so_checked_proof);
	so_checked_proof = MemoryContextStrdup(TopMemoryContext, so_proof);
	strlcpy(so_checked_tenant, tname, sizeof(so_checked_tenant));
	so_checked_expires = expires;
	strlcpy(tenant, tname, ENV_TENANT_MAXLEN + 1);
	pfree(copy);
	return true;
}

uint64
env_scaleout_proof_serial(void)
{
	return so_proof_serial;
}

static void
so_proof_assign(const char *newval, void *extra)
{
	so_proof_serial++;
}

void
env_scaleout_init(void)
{
	DefineCustomStringVariable("envault.tenant_proof",
							   gettext_noop("The tenant context that a Citus coordinator hands to its workers (set by envault)."),
							   gettext_noop("Only a value made by envault with this cluster's pepper is accepted."),
							   &so_proof,
							   "",
							   PGC_USERSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE |
							   GUC_SUPERUSER_ONLY | GUC_DISALLOW_IN_FILE,
							   NULL, so_proof_assign, NULL);
	DefineCustomIntVariable("envault.tenant_proof_ttl",
							gettext_noop("How long a tenant context handed to Citus workers stays valid."),
							NULL,
							&so_proof_ttl,
							300, 1, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	so_prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = so_process_utility;
	so_prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = so_executor_start;
	RegisterXactCallback(so_xact_callback, NULL);
	if (process_shared_preload_libraries_in_progress)
	{
		so_prev_shmem_request = shmem_request_hook;
		shmem_request_hook = so_shmem_request;
		so_prev_shmem_startup = shmem_startup_hook;
		shmem_startup_hook = so_shmem_startup;
	}
}
