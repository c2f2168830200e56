/*-------------------------------------------------------------------------
 *
 * accesslog.c
 *		The secret access log, backend side: every decryption is counted,
 *		and the counts reach envault.access_log through a shared-memory
 *		queue that an envault background worker drains in its own
 *		transactions (accessworker.c).  A record therefore survives the
 *		ROLLBACK of the transaction that decrypted, and read-only
 *		transactions are logged too.
 *
 * Aggregation: each backend counts decryptions per (data key, secret) in
 * the current top-level statement.  The counts become records:
 *	- before a row of the statement goes to the client, if a key (or
 *	  secret) not yet recorded in this statement was used since the last
 *	  such point: queued, and waited for until the worker has committed
 *	  them ("synchronous");
 *	- at the end of each top-level statement: queued and waited for, so the
 *	  exact counts are durable before the statement completes;
 *	- at the end of each transaction and at backend exit (inside procedures
 *	  that COMMIT, after errors): queued, without waiting.
 * A statement that decrypts a million values of one key writes two records
 * (the values decrypted before its first row, and the rest); their counts
 * add up.  The guarantee is in docs/access-log.md.
 *
 * On a hot standby, and without shared_preload_libraries, records are
 * written to the server log instead, one line each ("envault access: "
 * followed by a JSON object).
 *
 * Nothing here is secret: records name keys and secrets, never hold them.
 *
 *-------------------------------------------------------------------------
 */
#include "accesslog.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "tcop/dest.h"
#include "tcop/utility.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/queryjumble.h"
#include "utils/timestamp.h"

/* settings */
static bool al_enabled = true;
int			al_queue_size = 512;
static int	al_databases = 8;
int			al_worker_idle = 3;

AlShared   *al_shared = NULL;
AlSlot	   *al_slots = NULL;

static shmem_request_hook_type al_prev_shmem_request = NULL;
static shmem_startup_hook_type al_prev_shmem_startup = NULL;
static ExecutorStart_hook_type al_prev_executor_start = NULL;
static ExecutorRun_hook_type al_prev_executor_run = NULL;
static ExecutorFinish_hook_type al_prev_executor_finish = NULL;
static ExecutorEnd_hook_type al_prev_executor_end = NULL;
static ProcessUtility_hook_type al_prev_process_utility = NULL;

/* --- per-backend counts -------------------------------------------------- */

typedef struct AlKey
{
	uint64		key_id;
	Oid			role;			/* the current user at decryption */
	char		secret[AL_SECRET_MAXLEN + 1];
} AlKey;

typedef struct AlEntry
{
	AlKey		key;			/* hash key */
	int64		unflushed;		/* decryptions not yet queued */
	bool		recorded;		/* queued at least once in this statement */
	int32		version;
	TimestampTz first_at;		/* first unflushed decryption */
	char		tenant[ENV_TENANT_MAXLEN + 1];
	char		purpose[ENV_PURPOSE_MAXLEN + 1];
	char		role[NAMEDATALEN];
	char		session_role[NAMEDATALEN];
} AlEntry;

static HTAB *al_entries = NULL;
static AlEntry *al_last = NULL; /* fast path: the last plain decryption */
static bool al_pending = false; /* some entry has unflushed counts */
static bool al_unsynced = false;	/* some entry was never recorded */
static bool al_off_recorded = false;	/* "access log off" recorded */
static int64 al_statement_seq = 0;
static uint64 al_last_ticket = 0;	/* last position this backend queued */
static int	al_nesting = 0;
static int	al_fallback_warned = 0;
static char al_dbname[NAMEDATALEN];	/* for server log lines, once known */

static void al_before_exit(int code, Datum arg);

static void
al_reset_entries(void)
{
	HASHCTL		ctl;

	if (al_entries != NULL)
		hash_destroy(al_entries);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(AlKey);
	ctl.entrysize = sizeof(AlEntry);
	ctl.hcxt = TopMemoryContext;
	al_entries = hash_create("envault access log counts", 16, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	al_last = NULL;
	al_pending = false;
	al_unsynced = false;
}

/* --- records ------------------------------------------------------------- */

static void
al_copy(char *dst, size_t size, const char *src)
{
	strlcpy(dst, src ? src : "", size);
}

/* The client's address, as inet_client_addr() gives it; "" if local */
static const char *
al_client_addr(void)
{
	static char addr[AL_ADDR_LEN];
	static bool known = false;

	if (!known)
	{
		LOCAL_FCINFO(fcinfo, 0);
		Datum		d;

		InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
		d = inet_client_addr(fcinfo);
		addr[0] = '\0';
		if (!fcinfo->isnull)
			al_copy(addr, sizeof(addr), DatumGetCString(DirectFunctionCall1(inet_out, d)));
		known = true;
	}
	return addr;
}

/* The names of the current and the session user, in a transaction. */
static void
al_roles(char *role, char *session_role)
{
	al_copy(role, NAMEDATALEN, GetUserNameFromId(GetUserId(), true));
	al_copy(session_role, NAMEDATALEN, GetUserNameFromId(GetSessionUserId(), true));
}

/* Fill the session's part of a record (not its roles). */
static void
al_fill_session(AlRecord *r)
{
	r->backend_pid = MyProcPid;
	r->backend_start = MyStartTimestamp;
	r->statement_seq = al_statement_seq;
	r->query_id = pgstat_get_my_query_id();
	r->last_at = GetCurrentTimestamp();
	al_copy(r->application_name, sizeof(r->application_name), application_name);
	al_copy(r->client_addr, sizeof(r->client_addr), al_client_addr());
}

static void
al_json_str(StringInfo buf, const char *key, const char *value, bool null_if_empty)
{
	appendStringInfo(buf, ", \"%s\": ", key);
	if (null_if_empty && (value == NULL || value[0] == '\0'))
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, value ? value : "");
}

/*
 * Write a record to the server log as one line: "envault access: " and a
 * JSON object with the columns of envault.access_log.
 */
void
al_log_record(const AlRecord *r, const char *database)
{
	StringInfoData buf;
	char		ts[ENV_CANON_BUFLEN];

	initStringInfo(&buf);
	(void) env_canon_timestamp(r->at, true, ts);
	appendStringInfoString(&buf, "{\"at\": ");
	escape_json(&buf, ts);
	(void) env_canon_timestamp(r->last_at, true, ts);
	appendStringInfoString(&buf, ", \"last_at\": ");
	escape_json(&buf, ts);
	al_json_str(&buf, "database", database, true);
	al_json_str(&buf, "event", r->event == AL_EVENT_LOG_OFF ? "access log off" : "decrypt", false);
	al_json_str(&buf, "tenant", r->has_key ? r->tenant : NULL, true);
	al_json_str(&buf, "purpose", r->has_key ? r->purpose : NULL, true);
	if (r->has_key)
		appendStringInfo(&buf, ", \"key_version\": %d", r->key_version);
	else
		appendStringInfoString(&buf, ", \"key_version\": null");
	al_json_str(&buf, "secret_name", r->secret, true);
	appendStringInfo(&buf, ", \"count\": " INT64_FORMAT, r->count);
	al_json_str(&buf, "role", r->role, true);
	al_json_str(&buf, "session_role", r->session_role, true);
	al_json_str(&buf, "application_name", r->application_name, false);
	al_json_str(&buf, "client_addr", r->client_addr, true);
	appendStringInfo(&buf, ", \"backend_pid\": %d", r->backend_pid);
	(void) env_canon_timestamp(r->backend_start, true, ts);
	appendStringInfoString(&buf, ", \"backend_start\": ");
	escape_json(&buf, ts);
	appendStringInfo(&buf, ", \"statement_seq\": " INT64_FORMAT ", \"query_id\": " INT64_FORMAT "}",
					 r->statement_seq, (int64) r->query_id);
	ereport(LOG_SERVER_ONLY,
			(errmsg_internal("envault access: %s", buf.data),
			 errhidestmt(true), errhidecontext(true)));
	pfree(buf.data);
}

/*
 * The database's name for server log lines.  It is looked up inside a
 * transaction (the first decryption is in one) and kept, so that records
 * logged at backend exit or after an abort still name it.
 */
static const char *
al_database(void)
{
	if (al_dbname[0] == '\0' && IsTransactionState())
	{
		char	   *name = get_database_name(MyDatabaseId);

		if (name != NULL)
			strlcpy(al_dbname, name, sizeof(al_dbname));
	}
	return al_dbname[0] != '\0' ? al_dbname : NULL;
}

/* --- the queue ------------------------------------------------------------- */

/* This database's slot, claimed if need be; NULL if every slot is taken. */
static AlSlot *al_mine = NULL;

static AlSlot *
al_my_slot(void)
{
	AlSlot	   *mine = NULL;
	int			i;
	AlSlot	   *free_slot = NULL;

	/* (unlocked: al_enqueue checks again under the slot's lock) */
	if (al_mine != NULL && al_mine->dboid == MyDatabaseId)
		return al_mine;
	for (i = 0; i < al_shared->nslots; i++)
	{
		AlSlot	   *s = &al_slots[i];

		LWLockAcquire(s->lock, LW_SHARED);
		if (s->dboid == MyDatabaseId)
			mine = s;
		LWLockRelease(s->lock);
		if (mine)
			return (al_mine = mine);
	}
	/* claim a free slot, or one whose queue is empty and has no worker */
	for (i = 0; i < al_shared->nslots && mine == NULL; i++)
	{
		AlSlot	   *s = &al_slots[i];

		LWLockAcquire(s->lock, LW_EXCLUSIVE);
		if (s->dboid == MyDatabaseId)
			mine = s;
		else if (free_slot == NULL &&
				 (s->dboid == InvalidOid ||
				  (s->head == s->durable && s->worker_pid == 0 && !s->starting)))
		{
			s->dboid = MyDatabaseId;
			mine = s;
		}
		LWLockRelease(s->lock);
	}
	return (al_mine = mine);
}

static BackgroundWorkerHandle *al_worker_handle = NULL;

/* Make sure the slot has a worker, or one is on its way. */
static void
al_ensure_worker(AlSlot *slot)
{
	BackgroundWorker worker;
	bool		start = false;
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(slot->lock, LW_EXCLUSIVE);
	if (slot->worker_pid == 0 &&
		(!slot->starting ||
		 TimestampDifferenceExceeds(slot->start_requested, now, 10000)))
	{
		slot->starting = true;
		slot->start_requested = now;
		start = true;
	}
	LWLockRelease(slot->lock);
	if (!start)
	{
		if (slot->worker_latch)
			SetLatch(slot->worker_latch);
		return;
	}

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "envault");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "envault_access_log_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "envault access log worker for database %u",
			 MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, "envault access log");
	worker.bgw_main_arg = Int32GetDatum((int32) (slot - al_slots));
	worker.bgw_notify_pid = 0;
	if (!RegisterDynamicBackgroundWorker(&worker, &al_worker_handle))
	{
		LWLockAcquire(slot->lock, LW_EXCLUSIVE);
		slot->starting = false;
		LWLockRelease(slot->lock);
		if (al_fallback_warned++ == 0)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("could not start the envault access log worker"),
					 errdetail("Access records are written to the server log until a worker can start."),
					 errhint("Raise max_worker_processes.")));
	}
}

/*
 * Queue records; returns the position to wait for, or 0 if they went to the
 * server log instead (no shared memory, a standby, no slot or worker, or
 * a full queue that did not drain within the time a caller that must not
 * wait allows).
 */
static uint64
al_enqueue(AlRecord *recs, int n, bool may_wait, int *done)
{
	AlSlot	   *slot = NULL;
	uint64		ticket = 0;
	int			i;
	TimestampTz started = GetCurrentTimestamp();

	*done = 0;
	if (al_shared != NULL && !RecoveryInProgress())
		slot = al_my_slot();
	if (slot == NULL)
	{
		for (i = 0; i < n; i++)
			al_log_record(&recs[i], al_database());
		*done = n;
		return 0;
	}

	for (i = 0; i < n; i++)
	{
		for (;;)
		{
			bool		written = false;

			LWLockAcquire(slot->lock, LW_EXCLUSIVE);
			if (slot->dboid != MyDatabaseId)
			{
				/*
				 * Idle, the slot was given to another database after this
				 * backend found it (unlocked): look again, never write this
				 * database's records into another's queue.
				 */
				LWLockRelease(slot->lock);
				al_mine = NULL;
				slot = al_my_slot();
				if (slot == NULL)
				{
					for (; i < n; i++)
						al_log_record(&recs[i], al_database());
					*done = n;
					return ticket;
				}
				continue;
			}
			if (slot->head - slot->durable < (uint64) al_queue_size)
			{
				memcpy(&slot->ring[slot->head % al_queue_size], &recs[i], sizeof(AlRecord));
				slot->head++;
				ticket = slot->head;
				written = true;
			}
			LWLockRelease(slot->lock);
			if (written)
			{
				*done = i + 1;
				break;
			}
			/* full: the decryption waits, it never drops a record */
			al_ensure_worker(slot);
			if (!may_wait &&
				TimestampDifferenceExceeds(started, GetCurrentTimestamp(), 10000))
			{
				int			logged = n - i;

				for (; i < n; i++)
					al_log_record(&recs[i], al_database());
				*done = n;
				LWLockAcquire(slot->lock, LW_EXCLUSIVE);
				slot->fallback_total += logged;
				LWLockRelease(slot->lock);
				ConditionVariableCancelSleep();
				return ticket;
			}
			(void) ConditionVariableTimedSleep(&slot->cv_space, 1000, PG_WAIT_EXTENSION);
		}
	}
	ConditionVariableCancelSleep();
	al_ensure_worker(slot);
	return ticket;
}

/* Wait until the worker has committed every record up to ticket. */
static void
al_wait_durable(uint64 ticket)
{
	AlSlot	   *slot;

	if (ticket == 0 || al_shared == NULL)
		return;					/* nothing queued: logged, or not preloaded */
	slot = al_my_slot();
	if (slot == NULL)
		return;
	for (;;)
	{
		uint64		durable;

		LWLockAcquire(slot->lock, LW_SHARED);
		durable = slot->durable;
		LWLockRelease(slot->lock);
		if (durable >= ticket)
			break;
		if (ConditionVariableTimedSleep(&slot->cv_durable, 1000, PG_WAIT_EXTENSION))
			al_ensure_worker(slot); /* timed out: is there a worker? */
	}
	ConditionVariableCancelSleep();
}

/*
 * Turn unflushed counts into records and queue them; with wait, until they
 * are committed.
 */
static void
al_flush(bool wait)
{
	HASH_SEQ_STATUS status;
	AlEntry    *e;
	AlRecord   *recs;
	AlEntry   **from;
	int			n = 0;
	int			max;
	uint64		ticket = 0;
	volatile int done = 0;

	if (!al_pending || al_entries == NULL)
		return;
	max = (int) hash_get_num_entries(al_entries);
	recs = MemoryContextAllocZero(TopMemoryContext, sizeof(AlRecord) * Max(max, 1));
	from = MemoryContextAllocZero(TopMemoryContext, sizeof(AlEntry *) * Max(max, 1));
	hash_seq_init(&status, al_entries);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		AlRecord   *r;

		if (e->unflushed == 0)
			continue;
		from[n] = e;
		r = &recs[n++];
		r->event = AL_EVENT_DECRYPT;
		r->has_key = true;
		r->key_version = e->version;
		r->count = e->unflushed;
		r->at = e->first_at;
		al_copy(r->tenant, sizeof(r->tenant), e->tenant);
		al_copy(r->purpose, sizeof(r->purpose), e->purpose);
		al_copy(r->secret, sizeof(r->secret), e->key.secret);
		memcpy(r->role, e->role, NAMEDATALEN);
		memcpy(r->session_role, e->session_role, NAMEDATALEN);
		al_fill_session(r);
		e->unflushed = 0;
		e->recorded = true;
	}
	al_pending = false;
	al_unsynced = false;

	/*
	 * Waiting for space in a full queue can be cancelled (statement_timeout,
	 * a cancel request): the counts of the records not queued by then go
	 * back to their entries, so that the abort's flush queues them (or,
	 * with the queue still full after 10 s, writes them to the server log).
	 */
	PG_TRY();
	{
		/* (done counts the records queued so far, also if it is cancelled) */
		ticket = al_enqueue(recs, n, wait, (int *) &done);
	}
	PG_CATCH();
	{
		int			i;

		for (i = done; i < n; i++)
		{
			e = from[i];
			if (e->unflushed == 0 || recs[i].at < e->first_at)
				e->first_at = recs[i].at;
			e->unflushed += recs[i].count;
			e->recorded = false;
			al_pending = true;
			al_unsynced = true;
		}
		pfree(recs);
		pfree(from);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (ticket > 0)
		al_last_ticket = ticket;
	pfree(recs);
	pfree(from);
	if (wait)
		al_wait_durable(ticket);
}

/* Record, once, that a session decrypts with the access log off. */
static void
al_record_off(void)
{
	AlRecord	r;
	uint64		ticket;
	int			done;

	memset(&r, 0, sizeof(r));
	r.event = AL_EVENT_LOG_OFF;
	r.at = GetCurrentTimestamp();
	al_fill_session(&r);
	al_roles(r.role, r.session_role);
	ereport(LOG,
			(errmsg("envault access log is off for this session"),
			 errdetail("Role \"%s\" decrypts without access records.", r.role),
			 errhidestmt(true)));
	ticket = al_enqueue(&r, 1, true, &done);
	if (ticket > al_last_ticket)
		al_last_ticket = ticket;
	al_off_recorded = true;
}

/*
 * Count one decryption with a data key (and, for get_secret, the secret's
 * name).  Called after the value was decrypted and authenticated.
 */
void
env_access_record(const EnvDataKey *key, const char *secret)
{
	AlKey		k;
	AlEntry    *e;
	bool		found;
	static bool exit_registered = false;

	if (!exit_registered)
	{
		before_shmem_exit(al_before_exit, (Datum) 0);
		exit_registered = true;
	}
	(void) al_database();

	if (!al_enabled)
	{
		if (!al_off_recorded)
			al_record_off();
		return;
	}
	if (secret == NULL && al_last != NULL && al_last->key.key_id == key->key_id &&
		al_last->key.role == GetUserId())
	{
		if (al_last->unflushed == 0)
			al_last->first_at = GetCurrentTimestamp();
		al_last->unflushed++;
		al_pending = true;
		return;
	}
	if (al_entries == NULL)
		al_reset_entries();
	memset(&k, 0, sizeof(k));
	k.key_id = key->key_id;
	k.role = GetUserId();
	if (secret)
		strlcpy(k.secret, secret, sizeof(k.secret));
	e = hash_search(al_entries, &k, HASH_ENTER, &found);
	if (!found)
	{
		e->unflushed = 0;
		e->recorded = false;
		e->version = key->version;
		strlcpy(e->tenant, key->tenant, sizeof(e->tenant));
		strlcpy(e->purpose, key->purpose, sizeof(e->purpose));
		al_roles(e->role, e->session_role);
	}
	if (e->unflushed == 0)
		e->first_at = GetCurrentTimestamp();
	if (!e->recorded)
		al_unsynced = true;
	e->unflushed++;
	al_pending = true;
	if (secret == NULL)
		al_last = e;
}

/* --- where results leave the backend --------------------------------------- */

typedef struct AlDest
{
	DestReceiver pub;
	DestReceiver *inner;
} AlDest;

static bool
al_dest_receive(TupleTableSlot *slot, DestReceiver *self)
{
	AlDest	   *d = (AlDest *) self;

	/* a row may carry a plaintext: its keys are recorded durably first */
	if (al_unsynced)
		al_flush(true);
	return d->inner->receiveSlot(slot, d->inner);
}

static void
al_dest_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	AlDest	   *d = (AlDest *) self;

	d->inner->rStartup(d->inner, operation, typeinfo);
}

static void
al_dest_shutdown(DestReceiver *self)
{
	AlDest	   *d = (AlDest *) self;

	d->inner->rShutdown(d->inner);

	/*
	 * The rows of this run have been sent: their exact counts are durable
	 * before the client sees the command complete.  (With the extended
	 * protocol the portal, and so ExecutorEnd, can wait until the next
	 * message or the end of the transaction.)
	 */
	if (al_pending)
		al_flush(true);
}

static void
al_dest_destroy(DestReceiver *self)
{
	AlDest	   *d = (AlDest *) self;

	d->inner->rDestroy(d->inner);
}

static bool
al_dest_reaches_client(DestReceiver *dest)
{
	switch (dest->mydest)
	{
		case DestRemote:
		case DestRemoteExecute:
		case DestRemoteSimple:
		case DestCopyOut:
			return true;
		default:
			return false;
	}
}

static void
al_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (al_nesting == 0)
		al_statement_seq++;
	if (al_prev_executor_start)
		al_prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
al_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
				bool execute_once)
{
	DestReceiver *orig = queryDesc->dest;
	AlDest		wrapper;

	if (al_dest_reaches_client(orig))
	{
		memset(&wrapper, 0, sizeof(wrapper));
		wrapper.pub.receiveSlot = al_dest_receive;
		wrapper.pub.rStartup = al_dest_startup;
		wrapper.pub.rShutdown = al_dest_shutdown;
		wrapper.pub.rDestroy = al_dest_destroy;
		wrapper.pub.mydest = orig->mydest;
		wrapper.inner = orig;
		queryDesc->dest = &wrapper.pub;
	}
	al_nesting++;
	PG_TRY();
	{
		if (al_prev_executor_run)
			al_prev_executor_run(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		al_nesting--;
		queryDesc->dest = orig;
	}
	PG_END_TRY();
}

static void
al_executor_finish(QueryDesc *queryDesc)
{
	al_nesting++;
	PG_TRY();
	{
		if (al_prev_executor_finish)
			al_prev_executor_finish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		al_nesting--;
	}
	PG_END_TRY();
}

static void
al_executor_end(QueryDesc *queryDesc)
{
	if (al_prev_executor_end)
		al_prev_executor_end(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
	/* the statement's exact counts are durable before it completes */
	if (al_nesting == 0 && al_pending)
		al_flush(true);
	if (al_nesting == 0 && al_entries != NULL && !al_pending)
		al_reset_entries();
}

static void
al_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	if (al_nesting == 0)
		al_statement_seq++;
	al_nesting++;
	PG_TRY();
	{
		if (al_prev_process_utility)
			al_prev_process_utility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		al_nesting--;
	}
	PG_END_TRY();
	if (al_nesting == 0 && al_pending && IsTransactionState())
		al_flush(true);
	if (al_nesting == 0 && al_entries != NULL && !al_pending)
		al_reset_entries();
}

static void
al_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* decryptions of a rolled-back transaction are recorded too */
			if (al_pending)
				al_flush(false);

			/*
			 * (al_nesting is not reset here: the hooks keep it balanced,
			 * errors included, and a procedure's ROLLBACK ends a
			 * transaction in the middle of its CALL, whose nesting level
			 * must survive it.)
			 */

			/*
			 * Whatever ended the statement (an error skips the statement-end
			 * reset), the next one starts with no key marked recorded: its
			 * first row waits for its first record to be durable.
			 */
			if (al_entries != NULL && !al_pending)
				al_reset_entries();
			break;
		default:
			break;
	}
}

static void
al_before_exit(int code, Datum arg)
{
	if (al_pending)
		al_flush(false);
}

/* --- SQL functions ------------------------------------------------------------ */

/*
 * SQL function: envault.flush_access_log() returns void
 *
 * Queue this session's pending counts and wait until every record it has
 * queued is committed to envault.access_log.
 */
PG_FUNCTION_INFO_V1(envault_flush_access_log);
Datum
envault_flush_access_log(PG_FUNCTION_ARGS)
{
	al_flush(false);
	if (al_shared != NULL && !RecoveryInProgress())
		al_wait_durable(al_last_ticket);
	PG_RETURN_VOID();
}

/*
 * SQL function: envault.access_log_status()
 *     returns table (database name, worker_pid integer, queued bigint,
 *                    written bigint, to_server_log bigint)
 *
 * The access log queues of the server, one row per database in use.
 */
PG_FUNCTION_INFO_V1(envault_access_log_status);
Datum
envault_access_log_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (al_shared == NULL)
		return (Datum) 0;
	for (i = 0; i < al_shared->nslots; i++)
	{
		AlSlot	   *slot = &al_slots[i];
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};
		Oid			dboid;
		char	   *dbname;

		LWLockAcquire(slot->lock, LW_SHARED);
		dboid = slot->dboid;
		values[1] = Int32GetDatum(slot->worker_pid);
		nulls[1] = (slot->worker_pid == 0);
		values[2] = Int64GetDatum((int64) (slot->head - slot->durable));
		values[3] = Int64GetDatum((int64) slot->written_total);
		values[4] = Int64GetDatum((int64) slot->fallback_total);
		LWLockRelease(slot->lock);
		if (!OidIsValid(dboid))
			continue;
		dbname = get_database_name(dboid);
		/* a dropped database's slot, empty, is free for the next one */
		if (dbname == NULL && DatumGetInt64(values[2]) == 0 && nulls[1])
			continue;
		nulls[0] = (dbname == NULL);
		if (dbname != NULL)
		{
			NameData   *n = palloc(sizeof(NameData));

			namestrcpy(n, dbname);
			values[0] = NameGetDatum(n);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* --- settings and shared memory -------------------------------------------- */

static void
al_assign_enabled(bool newval, void *extra)
{
	/* turning it off again records again */
	if (!newval && al_enabled)
		al_off_recorded = false;
}

static Size
al_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(AlShared)),
					add_size(mul_size(al_databases, MAXALIGN(sizeof(AlSlot))),
							 mul_size(mul_size(al_databases, al_queue_size),
									  sizeof(AlRecord))));
}

static void
al_shmem_request(void)
{
	if (al_prev_shmem_request)
		al_prev_shmem_request();
	RequestAddinShmemSpace(al_shmem_size());
	RequestNamedLWLockTranche("envault access log", al_databases);
}

static void
al_shmem_startup(void)
{
	bool		found;
	LWLockPadded *locks;
	char	   *rings;
	int			i;

	if (al_prev_shmem_startup)
		al_prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	al_shared = ShmemInitStruct("envault access log", al_shmem_size(), &found);
	al_slots = (AlSlot *) ((char *) al_shared + MAXALIGN(sizeof(AlShared)));
	rings = (char *) al_slots + al_databases * MAXALIGN(sizeof(AlSlot));
	if (!found)
	{
		al_shared->nslots = al_databases;
		al_shared->queue_size = al_queue_size;
		al_shared->epoch = GetCurrentTimestamp();
		locks = GetNamedLWLockTranche("envault access log");
		for (i = 0; i < al_databases; i++)
		{
			AlSlot	   *s = &al_slots[i];

			memset(s, 0, sizeof(AlSlot));
			s->lock = &locks[i].lock;
			ConditionVariableInit(&s->cv_space);
			ConditionVariableInit(&s->cv_durable);
		}
	}
	/* the rings' addresses are per process in EXEC_BACKEND builds */
	for (i = 0; i < al_databases; i++)
		al_slots[i].ring = (AlRecord *) (rings + (Size) i * al_queue_size * sizeof(AlRecord));
	LWLockRelease(AddinShmemInitLock);
}

/* Called by the worker once it is connected. */
bool
al_worker_started(AlSlot *slot)
{
	bool		mine;

	/*
	 * A worker slow to start can find a twin, started after it by a backend
	 * that waited too long, already at work: two workers would write the
	 * same records twice.  The later one leaves.  So does one whose slot was
	 * given to another database meanwhile.
	 */
	LWLockAcquire(slot->lock, LW_EXCLUSIVE);
	mine = (slot->worker_pid == 0 && slot->dboid == MyDatabaseId);
	if (mine)
	{
		slot->worker_pid = MyProcPid;
		slot->worker_latch = MyLatch;
		slot->starting = false;
	}
	LWLockRelease(slot->lock);
	return mine;
}

void
env_access_log_init(void)
{
	DefineCustomBoolVariable("envault.access_log",
							 gettext_noop("Records every decryption in envault.access_log."),
							 gettext_noop("Turning it off takes a superuser and is itself recorded."),
							 &al_enabled, true, PGC_SUSET, 0,
							 NULL, al_assign_enabled, NULL);
	DefineCustomIntVariable("envault.access_log_worker_idle",
							gettext_noop("Seconds an idle access log worker waits before it exits."),
							gettext_noop("A worker connected to a database keeps DROP DATABASE from proceeding until it exits."),
							&al_worker_idle, 3, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	/*
	 * Without preloading there is no queue (no shared memory), but the
	 * hooks still make each statement's records, which then go to the
	 * server log when it ends, as on a standby.
	 */
	EnableQueryId();
	al_prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = al_executor_start;
	al_prev_executor_run = ExecutorRun_hook;
	ExecutorRun_hook = al_executor_run;
	al_prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = al_executor_finish;
	al_prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = al_executor_end;
	al_prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = al_process_utility;
	RegisterXactCallback(al_xact_callback, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("envault.access_log_queue_size",
							gettext_noop("Access records each database can have queued for the access log worker."),
							gettext_noop("When the queue is full, decryption waits."),
							&al_queue_size, 512, 16, 65536,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("envault.access_log_databases",
							gettext_noop("Databases whose decryptions can be queued for the access log at the same time."),
							gettext_noop("Each uses a background worker while it has records to write."),
							&al_databases, 8, 1, 1024,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	al_prev_shmem_request = shmem_request_hook;
	shmem_request_hook = al_shmem_request;
	al_prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = al_shmem_startup;
}
