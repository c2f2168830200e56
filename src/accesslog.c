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
#include "replication/syncrep.h"
#include "commands/dbcommands.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/dest.h"
#include "tcop/utility.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* settings */
static bool al_enabled = true;
int			al_queue_size = 512;
static int	al_databases = 2;
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
	/* who the session served when the statement first used the key */
	uint64		query_id;
	char		application_name[NAMEDATALEN];
} AlEntry;

static HTAB *al_entries = NULL;
static AlEntry *al_last = NULL; /* fast path: the last plain decryption */
static bool al_pending = false; /* some entry has unflushed counts */
static bool al_unsynced = false;	/* some entry was never recorded */
static bool al_off_recorded = false;	/* "access log off" recorded */

/* the client "access log off" was recorded for */
static char al_off_app[NAMEDATALEN];
static char al_off_token[ENV_TOKEN_ID_HEXLEN + 1];
static int64 al_statement_seq = 0;
static AlSlot *al_last_slot = NULL; /* where this backend queued last */
static uint64 al_last_ticket = 0;	/* the last position it queued there */
static int	al_nesting = 0;
static char al_dbname[NAMEDATALEN]; /* for server log lines, once known */

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

/*
 * Fill the session's part of a record (not its roles): as it is now, for
 * the statement and client the session serves now.
 */
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

/*
 * How a flush may wait for a free slot and for room in the queue:
 *	AL_WAIT		as long as it takes (a statement: cancellable);
 *	AL_NOWAIT	not at all (commit and abort callbacks): what does not fit
 *				stays counted in the backend, and the next statement, or the
 *				backend's exit, queues it;
 *	AL_EXIT		at backend exit: up to AL_EXIT_WAIT_MS, then the rest goes to
 *				the server log (the last resort, as no later flush will come).
 */
typedef enum AlWait
{
	AL_WAIT,
	AL_NOWAIT,
	AL_EXIT
} AlWait;

#define AL_EXIT_WAIT_MS	10000

/* This database's slot, as last found (checked again under its lock) */
static AlSlot *al_mine = NULL;

/* Find this database's slot, or claim a free one; NULL if none is free. */
static AlSlot *
al_find_slot(void)
{
	int			i;

	if (al_mine != NULL)
	{
		bool		still;

		LWLockAcquire(al_mine->lock, LW_SHARED);
		still = (al_mine->dboid == MyDatabaseId);
		LWLockRelease(al_mine->lock);
		if (still)
			return al_mine;
		al_mine = NULL;
	}
	for (i = 0; i < al_shared->nslots; i++)
	{
		AlSlot	   *s = &al_slots[i];
		bool		found;

		LWLockAcquire(s->lock, LW_SHARED);
		found = (s->dboid == MyDatabaseId);
		LWLockRelease(s->lock);
		if (found)
			return (al_mine = s);
	}
	for (i = 0; i < al_shared->nslots; i++)
	{
		AlSlot	   *s = &al_slots[i];
		bool		claimed = false;

		LWLockAcquire(s->lock, LW_EXCLUSIVE);
		if (s->dboid == MyDatabaseId)
			claimed = true;
		else if (s->dboid == InvalidOid)
		{
			/* its worker, waiting unconnected, connects to this database */
			s->dboid = MyDatabaseId;
			s->connect_failures = 0;
			claimed = true;
		}
		LWLockRelease(s->lock);
		if (claimed)
			return (al_mine = s);
	}
	return NULL;
}

/*
 * This database's slot.  When every slot serves another database, wait (as
 * the mode allows) until a worker gives one back: a worker idle while
 * another database waits gives its slot back at once.
 */
static AlSlot *
al_my_slot(AlWait mode, TimestampTz started)
{
	AlSlot	   *slot = al_find_slot();

	if (slot != NULL || mode == AL_NOWAIT)
		return slot;
	pg_atomic_fetch_add_u32(&al_shared->slot_waiters, 1);
	PG_TRY();
	{
		while ((slot = al_find_slot()) == NULL)
		{
			if (mode == AL_EXIT &&
				TimestampDifferenceExceeds(started, GetCurrentTimestamp(), AL_EXIT_WAIT_MS))
				break;
			(void) ConditionVariableTimedSleep(&al_shared->cv_slot, 1000, PG_WAIT_EXTENSION);
		}
	}
	PG_FINALLY();
	{
		ConditionVariableCancelSleep();
		pg_atomic_fetch_sub_u32(&al_shared->slot_waiters, 1);
	}
	PG_END_TRY();
	return slot;
}

/* Wake the slot's worker: records are queued. */
static void
al_wake_worker(AlSlot *slot)
{
	Latch	   *latch;

	LWLockAcquire(slot->lock, LW_SHARED);
	latch = slot->worker_latch;
	LWLockRelease(slot->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Queue records in order.  *done counts those queued (or logged), also when
 * a wait is cancelled by an error; *slot_out and *ticket_out say where the
 * last one was queued (*ticket_out 0 if none was).  Without shared memory
 * and on a standby, every record goes to the server log.
 */
static void
al_enqueue(AlRecord *recs, int n, AlWait mode, volatile int *done,
		   AlSlot *volatile *slot_out, volatile uint64 *ticket_out)
{
	AlSlot	   *slot;
	TimestampTz started = GetCurrentTimestamp();
	int			i;

	*done = 0;
	*ticket_out = 0;
	*slot_out = NULL;
	if (al_shared == NULL || RecoveryInProgress())
	{
		for (i = 0; i < n; i++)
			al_log_record(&recs[i], al_database());
		*done = n;
		return;
	}

	slot = NULL;
	for (i = 0; i < n; i++)
	{
		for (;;)
		{
			bool		written = false;
			bool		moved = false;

			if (slot == NULL)
			{
				slot = al_my_slot(mode, started);
				if (slot == NULL)
					break;		/* AL_NOWAIT, or AL_EXIT out of time */
			}
			LWLockAcquire(slot->lock, LW_EXCLUSIVE);
			if (slot->dboid != MyDatabaseId)
				moved = true;	/* given back (idle) since it was found */
			else if (slot->head - slot->durable < (uint64) al_queue_size)
			{
				AlRecord   *r = &slot->ring[slot->head % al_queue_size];

				memcpy(r, &recs[i], sizeof(AlRecord));
				/* the worker wakes this backend, and only it, once it is in */
				r->waiter = MyProc ? ENV_PROCNO(MyProc) : -1;
				slot->head++;
				*ticket_out = slot->head;
				*slot_out = slot;
				written = true;
			}
			LWLockRelease(slot->lock);
			if (moved)
			{
				/* never this database's records in another's queue */
				al_mine = NULL;
				slot = NULL;
				continue;
			}
			if (written)
			{
				*done = i + 1;
				break;
			}
			/* full: the decryption waits, it never drops a record */
			al_wake_worker(slot);
			if (mode == AL_NOWAIT ||
				(mode == AL_EXIT &&
				 TimestampDifferenceExceeds(started, GetCurrentTimestamp(), AL_EXIT_WAIT_MS)))
			{
				slot = NULL;
				break;
			}
			(void) ConditionVariableTimedSleep(&slot->cv_space, 1000, PG_WAIT_EXTENSION);
		}
		if (slot == NULL)
			break;
	}
	ConditionVariableCancelSleep();
	if (*slot_out != NULL)
		al_wake_worker(*slot_out);
	if (mode == AL_EXIT && *done < n)
	{
		/* the backend exits: the server log is the last place left */
		AlSlot	   *s = al_find_slot();

		for (i = *done; i < n; i++)
			al_log_record(&recs[i], al_database());
		if (s != NULL)
		{
			LWLockAcquire(s->lock, LW_EXCLUSIVE);
			s->fallback_total += n - *done;
			LWLockRelease(s->lock);
		}
		*done = n;
	}
}

/*
 * Wait until the worker has committed every record up to ticket, then make
 * sure its commit is on disk: flush the WAL that far (XLogFlush returns at
 * once if it is, and the backends flushing at one moment share one flush),
 * and wait for synchronous standbys as a commit of this session would.
 */
static void
al_wait_durable(AlSlot *slot, uint64 ticket)
{
	XLogRecPtr	lsn = InvalidXLogRecPtr;

	if (slot == NULL || ticket == 0)
		return;					/* nothing queued: logged, or not preloaded */

	/*
	 * Positions only grow, also when the slot passes to another database,
	 * which it does only with nothing queued: a ticket below durable is
	 * committed, whoever the slot serves now.
	 */
	for (;;)
	{
		uint64		durable;

		LWLockAcquire(slot->lock, LW_SHARED);
		durable = slot->durable;
		lsn = slot->commit_lsn;
		LWLockRelease(slot->lock);
		if (durable >= ticket)
			break;

		/*
		 * The worker sets the latch of each backend whose records its
		 * transaction wrote (not a broadcast: with many sessions waiting,
		 * waking each of them for every commit costs more than the commit).
		 */
		if (WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					  1000L, PG_WAIT_EXTENSION) & WL_TIMEOUT)
			al_wake_worker(slot);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (!XLogRecPtrIsInvalid(lsn))
	{
		XLogFlush(lsn);
		SyncRepWaitForLSN(lsn, true);
	}
}

/* Where this backend queued last, for flush_access_log(); ticket 0: nothing */
static void
al_remember(AlSlot *slot, uint64 ticket)
{
	if (ticket > 0)
	{
		al_last_slot = slot;
		al_last_ticket = ticket;
	}
}

/*
 * Give the counts of records that were not queued back to their entries,
 * to be queued by a later flush.
 */
static void
al_unflush(AlEntry **from, AlRecord *recs, int first, int n)
{
	int			i;

	for (i = first; i < n; i++)
	{
		AlEntry    *e = from[i];

		if (e->unflushed == 0 || recs[i].at < e->first_at)
			e->first_at = recs[i].at;
		e->unflushed += recs[i].count;
		e->recorded = false;
		al_pending = true;
		al_unsynced = true;
	}
}

/*
 * Turn unflushed counts into records and queue them, waiting for room as
 * mode allows; with wait_durable, until they are committed.
 */
static void
al_flush(AlWait mode, bool wait_durable)
{
	HASH_SEQ_STATUS status;
	AlEntry    *e;
	AlRecord   *recs;
	AlEntry   **from;
	volatile int n = 0;
	int			max;
	volatile int done = 0;
	AlSlot	   *volatile slot = NULL;
	volatile uint64 ticket = 0;

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
		/* the statement and client of the decryption, not of this moment */
		r->query_id = e->query_id;
		memcpy(r->application_name, e->application_name, NAMEDATALEN);
		e->unflushed = 0;
		e->recorded = true;
	}
	al_pending = false;
	al_unsynced = false;

	/*
	 * Waiting for a slot or for room can be cancelled (statement_timeout, a
	 * cancel request): the counts of the records not queued by then go back
	 * to their entries, for the next flush.
	 */
	PG_TRY();
	{
		al_enqueue(recs, n, mode, &done, &slot, &ticket);
	}
	PG_CATCH();
	{
		al_remember(slot, ticket);
		al_unflush(from, recs, done, n);
		pfree(recs);
		pfree(from);
		PG_RE_THROW();
	}
	PG_END_TRY();
	al_remember(slot, ticket);
	al_unflush(from, recs, done, n);
	pfree(recs);
	pfree(from);
	if (wait_durable)
		al_wait_durable(slot, ticket);
}

/*
 * Record that a session decrypts with the access log off: once per client
 * it serves (application_name and authenticated token, which is what
 * tells the clients of a connection pooler apart).
 */
static void
al_record_off(void)
{
	AlRecord	r;
	volatile int done;
	AlSlot	   *volatile slot;
	volatile uint64 ticket;

	memset(&r, 0, sizeof(r));
	r.event = AL_EVENT_LOG_OFF;
	r.at = GetCurrentTimestamp();
	al_fill_session(&r);
	al_roles(r.role, r.session_role);
	ereport(LOG,
			(errmsg("envault access log is off for this session"),
			 errdetail("Role \"%s\" decrypts without access records.", r.role),
			 errhidestmt(true)));
	al_enqueue(&r, 1, AL_WAIT, &done, &slot, &ticket);
	al_remember(slot, ticket);
	al_off_recorded = true;
}

/*
 * Is the client the session serves (application_name and authenticated
 * token) another than the one "access log off" was recorded for?  Two
 * string comparisons per decryption with the log off.
 */
static bool
al_other_client(void)
{
	const char *app = application_name ? application_name : "";
	const char *token = env_tenant_token_id();

	return strcmp(app, al_off_app) != 0 || strcmp(token ? token : "", al_off_token) != 0;
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
		if (!al_off_recorded || al_other_client())
		{
			const char *token = env_tenant_token_id();

			al_record_off();
			al_copy(al_off_app, sizeof(al_off_app), application_name);
			al_copy(al_off_token, sizeof(al_off_token), token);
		}
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
		e->query_id = pgstat_get_my_query_id();
		al_copy(e->application_name, sizeof(e->application_name), application_name);
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
		al_flush(AL_WAIT, true);
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
		al_flush(AL_WAIT, true);
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

/*
 * A top-level statement begins.  Counts that an earlier one left (its
 * transaction ended with the queue full, or every slot taken) are queued
 * first, still under that statement's number; then the new statement
 * starts with no key marked recorded.
 */
static void
al_statement_begins(void)
{
	if (al_pending)
		al_flush(AL_WAIT, false);
	if (al_entries != NULL && !al_pending)
		al_reset_entries();
	al_statement_seq++;
}

static void
al_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (al_nesting == 0)
		al_statement_begins();
	if (al_prev_executor_start)
		al_prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
al_executor_run(ENV_EXECUTOR_RUN_ARGS)
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
			al_prev_executor_run(ENV_EXECUTOR_RUN_PASS);
		else
			standard_ExecutorRun(ENV_EXECUTOR_RUN_PASS);
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
		al_flush(AL_WAIT, true);
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
		al_statement_begins();
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
		al_flush(AL_WAIT, true);
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

			/*
			 * Decryptions of a rolled-back transaction are recorded too:
			 * queued now without waiting (a callback must not wait); what
			 * does not fit stays counted, and the next statement, or the
			 * backend's exit, queues it.
			 */
			if (al_pending)
				al_flush(AL_NOWAIT, false);

			/*
			 * (al_nesting is not reset here: the hooks keep it balanced,
			 * errors included, and a procedure's ROLLBACK ends a transaction
			 * in the middle of its CALL, whose nesting level must survive
			 * it.)
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
		al_flush(AL_EXIT, false);
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
	al_flush(AL_WAIT, false);
	al_wait_durable(al_last_slot, al_last_ticket);
	PG_RETURN_VOID();
}

/*
 * SQL function: envault.access_log_status()
 *     returns table (database name, worker_pid integer, queued bigint,
 *                    written bigint, to_server_log bigint, commits bigint)
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
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};
		Oid			dboid;
		char	   *dbname;

		LWLockAcquire(slot->lock, LW_SHARED);
		dboid = slot->dboid;
		/* the worker, once it serves this database */
		values[1] = Int32GetDatum(slot->worker_pid);
		nulls[1] = (slot->worker_pid == 0 || slot->worker_db != slot->dboid);
		values[2] = Int64GetDatum((int64) (slot->head - slot->durable));
		values[3] = Int64GetDatum((int64) slot->written_total);
		values[4] = Int64GetDatum((int64) slot->fallback_total);
		values[5] = Int64GetDatum((int64) slot->commits_total);
		LWLockRelease(slot->lock);
		if (!OidIsValid(dboid))
			continue;
		dbname = get_database_name(dboid);
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
		pg_atomic_init_u32(&al_shared->slot_waiters, 0);
		ConditionVariableInit(&al_shared->cv_slot);
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

/*
 * The workers: one per slot, registered now so that their places among
 * max_worker_processes are theirs (see accessworker.c).
 */
static void
al_register_workers(void)
{
	int			i;

	if (al_databases >= max_worker_processes)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("envault.access_log_databases (%d) must be less than max_worker_processes (%d)",
						al_databases, max_worker_processes),
				 errdetail("Each access log queue has a background worker of its own, started with the server."),
				 errhint("Raise max_worker_processes by envault.access_log_databases, keeping room for parallel query and other extensions.")));
	for (i = 0; i < al_databases; i++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		/* it exits with code 1 to leave its database: start it again at once */
		worker.bgw_restart_time = 0;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "envault");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "envault_access_log_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "envault access log worker %d", i + 1);
		snprintf(worker.bgw_type, BGW_MAXLEN, "envault access log");
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
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
	 * Without preloading there is no queue (no shared memory), but the hooks
	 * still make each statement's records, which then go to the server log
	 * when it ends, as on a standby.
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
							gettext_noop("Each has a background worker of its own, counted against max_worker_processes."),
							&al_databases, 2, 1, 1024,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	al_prev_shmem_request = shmem_request_hook;
	shmem_request_hook = al_shmem_request;
	al_prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = al_shmem_startup;
	al_register_workers();
}
