/*-------------------------------------------------------------------------
 *
 * accessworker.c
 *		The envault access log workers: one per queue slot, registered at
 *		server start, each writing the queued access records of the
 *		database it serves into envault.access_log (an audit chain) in its
 *		own transactions, and updating
 *		envault.secrets.last_used_at for get_secret() records.
 *
 * Because the workers are registered when the server starts, their places
 * among max_worker_processes are theirs: no role can keep them from
 * running by filling the background worker slots (with parallel queries,
 * say).  A worker starts unconnected and waits until a backend claims its
 * slot for a database; it connects to that database and writes every
 * record queued, as many as are waiting in one transaction (one INSERT),
 * so that one commit, and one flush of the WAL, carries the records of
 * every session waiting at that moment.  It advances the slot's durable
 * position only after its transaction has committed, with the end of its
 * commit record, waking the backends that wait for it.  It commits without
 * waiting for the WAL to reach the disk: each backend that needs its
 * records durable flushes the WAL up to that point itself (accesslog.c),
 * so that the flush of one batch overlaps the writing of the next, and
 * the backends waiting at one moment share one flush.  If its transaction fails (envault is not installed in
 * the database any more, say), the batch goes to the server log instead,
 * so that no record is lost either way.
 *
 * A worker idle for envault.access_log_worker_idle seconds, or idle while
 * another database waits for a free slot, gives its slot back and exits
 * with code 1, which has the postmaster start it again at once, waiting
 * unconnected: a process stays connected to the database it first chose,
 * and DROP DATABASE waits for connected processes.
 *
 *-------------------------------------------------------------------------
 */
#include "accesslog.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* the most records one transaction writes */
#define AW_BATCH	256

/* a database the worker failed to connect to this often is given up */
#define AW_MAX_CONNECT_FAILURES 3

PGDLLEXPORT void envault_access_log_worker_main(Datum arg);

static AlSlot *aw_slot = NULL;
static volatile sig_atomic_t aw_stop = false;

/* kept across the worker's transactions (revalidated by the plan cache) */
static SPIPlanPtr aw_insert_plan = NULL;
static SPIPlanPtr aw_used_plan = NULL;

static void
aw_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	aw_stop = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

static void
aw_detach(int code, Datum arg)
{
	if (aw_slot == NULL)
		return;
	LWLockAcquire(aw_slot->lock, LW_EXCLUSIVE);
	if (aw_slot->worker_pid == MyProcPid)
	{
		aw_slot->worker_pid = 0;
		aw_slot->worker_latch = NULL;
		aw_slot->worker_db = InvalidOid;
	}
	LWLockRelease(aw_slot->lock);
	/* backends waiting on us wait for the worker's next start */
	ConditionVariableBroadcast(&aw_slot->cv_durable);
	ConditionVariableBroadcast(&aw_slot->cv_space);
}

/*
 * Every record of a batch in one statement: the columns as arrays, unnested
 * in order, so that each tenant's records enter its chain in queue order.
 */
#define AW_NCOLS	16
#define AW_Q_INSERT \
	"INSERT INTO envault.access_log" \
	"  (at, last_at, event, tenant, purpose, key_version, secret_name, count," \
	"   role, session_role, application_name, client_addr, backend_pid," \
	"   backend_start, statement_seq, query_id)" \
	" SELECT r.at, r.last_at, r.event, r.tenant, r.purpose, r.key_version," \
	"        r.secret_name, r.count, r.role, r.session_role, r.application_name," \
	"        r.client_addr::pg_catalog.inet, r.backend_pid, r.backend_start," \
	"        r.statement_seq, r.query_id" \
	"   FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)," \
	"        pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5)," \
	"        pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8)," \
	"        pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11)," \
	"        pg_catalog.unnest($12), pg_catalog.unnest($13), pg_catalog.unnest($14)," \
	"        pg_catalog.unnest($15), pg_catalog.unnest($16))" \
	"     AS r(at, last_at, event, tenant, purpose, key_version, secret_name," \
	"          count, role, session_role, application_name, client_addr," \
	"          backend_pid, backend_start, statement_seq, query_id)"

static const Oid aw_elem_types[AW_NCOLS] = {
	TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, INT4OID,
	TEXTOID, INT8OID, NAMEOID, NAMEOID, TEXTOID, TEXTOID, INT4OID,
	TIMESTAMPTZOID, INT8OID, INT8OID
};

/*
 * A row locked by a transaction that waits for this very record (put_secret
 * then get_secret in one transaction) must not block the worker: such a
 * secret's last_used_at is skipped this time.
 */
#define AW_Q_SECRET_USED \
	"UPDATE envault.secrets SET last_used_at = $3" \
	" WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(" \
	"   SELECT ctid FROM envault.secrets" \
	"    WHERE tenant OPERATOR(pg_catalog.=) $1 AND name OPERATOR(pg_catalog.=) $2" \
	"      AND (last_used_at IS NULL OR last_used_at OPERATOR(pg_catalog.<) $3)" \
	"    FOR UPDATE SKIP LOCKED))"

static SPIPlanPtr
aw_plan(const char *query, int nargs, const Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(query, nargs, (Oid *) types);

	if (plan == NULL)
		elog(ERROR, "could not prepare an access log statement: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep an access log statement");
	return plan;
}

/* A one-dimensional array of n values of type elemtype. */
static Datum
aw_array(Datum *values, bool *nulls, int n, Oid elemtype)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval, typalign));
}

static Datum
aw_text_or_null(const char *s, bool *isnull)
{
	*isnull = (s[0] == '\0');
	return *isnull ? (Datum) 0 : CStringGetTextDatum(s);
}

/* Insert the batch with one execution of the kept plan. */
static void
aw_insert(AlRecord *recs, int n)
{
	Datum	   *cols[AW_NCOLS];
	bool	   *colnulls[AW_NCOLS];
	Datum		args[AW_NCOLS];
	int			c;
	int			i;

	for (c = 0; c < AW_NCOLS; c++)
	{
		cols[c] = palloc(sizeof(Datum) * n);
		colnulls[c] = palloc0(sizeof(bool) * n);
	}
	for (i = 0; i < n; i++)
	{
		AlRecord   *r = &recs[i];

		cols[0][i] = TimestampTzGetDatum(r->at);
		cols[1][i] = TimestampTzGetDatum(r->last_at);
		cols[2][i] = CStringGetTextDatum(r->event == AL_EVENT_LOG_OFF ?
										 "access log off" : "decrypt");
		if (r->has_key)
		{
			cols[3][i] = CStringGetTextDatum(r->tenant);
			cols[4][i] = CStringGetTextDatum(r->purpose);
			cols[5][i] = Int32GetDatum(r->key_version);
		}
		else
			colnulls[3][i] = colnulls[4][i] = colnulls[5][i] = true;
		cols[6][i] = aw_text_or_null(r->secret, &colnulls[6][i]);
		cols[7][i] = Int64GetDatum(r->count);
		cols[8][i] = CStringGetDatum(r->role);
		colnulls[8][i] = (r->role[0] == '\0');
		cols[9][i] = CStringGetDatum(r->session_role);
		colnulls[9][i] = (r->session_role[0] == '\0');
		cols[10][i] = CStringGetTextDatum(r->application_name);
		cols[11][i] = aw_text_or_null(r->client_addr, &colnulls[11][i]);
		cols[12][i] = Int32GetDatum(r->backend_pid);
		cols[13][i] = TimestampTzGetDatum(r->backend_start);
		cols[14][i] = Int64GetDatum(r->statement_seq);
		cols[15][i] = Int64GetDatum((int64) r->query_id);
	}
	for (c = 0; c < AW_NCOLS; c++)
		args[c] = aw_array(cols[c], colnulls[c], n, aw_elem_types[c]);
	if (aw_insert_plan == NULL)
	{
		Oid			types[AW_NCOLS];

		for (c = 0; c < AW_NCOLS; c++)
			types[c] = get_array_type(aw_elem_types[c]);
		aw_insert_plan = aw_plan(AW_Q_INSERT, AW_NCOLS, types);
	}
	if (SPI_execute_plan(aw_insert_plan, args, NULL, false, 0) != SPI_OK_INSERT ||
		SPI_processed != (uint64) n)
		elog(ERROR, "could not insert %d access records", n);
}

/* last_used_at of the secrets that get_secret() records name */
static void
aw_secrets_used(AlRecord *recs, int n)
{
	static const Oid types[3] = {TEXTOID, TEXTOID, TIMESTAMPTZOID};
	int			i;

	for (i = 0; i < n; i++)
	{
		AlRecord   *r = &recs[i];
		Datum		u[3];

		if (!(r->secret[0] && r->has_key && r->event == AL_EVENT_DECRYPT))
			continue;
		if (aw_used_plan == NULL)
			aw_used_plan = aw_plan(AW_Q_SECRET_USED, 3, types);
		u[0] = CStringGetTextDatum(r->tenant);
		u[1] = CStringGetTextDatum(r->secret);
		u[2] = TimestampTzGetDatum(r->last_at);
		if (SPI_execute_plan(aw_used_plan, u, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update a secret's last use");
	}
}

/* Write a batch in one transaction; false if it failed (and was rolled back). */
static bool
aw_write(AlRecord *recs, int n)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "writing envault access records");
		aw_insert(recs, n);
		aw_secrets_used(recs, n);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("envault access log worker could not write %d records: %s",
						n, edata->message),
				 errdetail("They are written to the server log instead.")));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/*
 * Give the slot back if nothing is queued; the caller then exits.  Backends
 * that wait for a free slot are woken.
 */
static bool
aw_release(void)
{
	bool		empty;

	LWLockAcquire(aw_slot->lock, LW_EXCLUSIVE);
	empty = (aw_slot->head == aw_slot->durable);
	if (empty)
	{
		aw_slot->dboid = InvalidOid;
		aw_slot->worker_db = InvalidOid;
	}
	LWLockRelease(aw_slot->lock);
	if (empty)
		ConditionVariableBroadcast(&al_shared->cv_slot);
	return empty;
}

/*
 * The slot's database cannot be connected to (dropped, say) time after
 * time: its queued records go to the server log and the slot is freed.
 */
static void
aw_give_up_database(Oid dboid)
{
	AlRecord	r;
	char		name[32];

	snprintf(name, sizeof(name), "database %u", dboid);
	for (;;)
	{
		bool		more;

		LWLockAcquire(aw_slot->lock, LW_EXCLUSIVE);
		more = (aw_slot->head > aw_slot->durable);
		if (more)
		{
			memcpy(&r, &aw_slot->ring[aw_slot->durable % al_queue_size], sizeof(r));
			aw_slot->durable++;
			aw_slot->fallback_total++;
		}
		else
		{
			aw_slot->dboid = InvalidOid;
			aw_slot->connect_failures = 0;
		}
		LWLockRelease(aw_slot->lock);
		if (!more)
			break;
		al_log_record(&r, name);
	}
	ConditionVariableBroadcast(&aw_slot->cv_durable);
	ConditionVariableBroadcast(&aw_slot->cv_space);
	ConditionVariableBroadcast(&al_shared->cv_slot);
}

/*
 * Wake the backends whose records the batch held: each sets its latch once
 * (a backend's records are mostly next to each other).  A backend that has
 * left since, its PGPROC taken by another, gets a latch set it ignores.
 */
static void
aw_wake_waiters(AlRecord *batch, int n)
{
	int			last = -1;
	int			i;

	for (i = 0; i < n; i++)
	{
		int			procno = batch[i].waiter;

		if (procno < 0 || procno == last ||
			procno >= (int) ProcGlobal->allProcCount)
			continue;
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
		last = procno;
	}
}

/* Wait, unconnected, until a backend claims the slot; its database. */
static Oid
aw_wait_for_database(void)
{
	for (;;)
	{
		Oid			dboid;
		int			failures = 0;

		ResetLatch(MyLatch);
		if (aw_stop)
			proc_exit(1);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		LWLockAcquire(aw_slot->lock, LW_EXCLUSIVE);
		dboid = aw_slot->dboid;
		if (OidIsValid(dboid))
			failures = ++aw_slot->connect_failures;
		LWLockRelease(aw_slot->lock);
		if (OidIsValid(dboid) && failures > AW_MAX_CONNECT_FAILURES)
		{
			ereport(WARNING,
					(errmsg("envault access log worker could not connect to database %u", dboid),
					 errdetail("Its queued records are written to the server log instead.")));
			aw_give_up_database(dboid);
			continue;
		}
		if (OidIsValid(dboid))
			return dboid;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
						 PG_WAIT_EXTENSION);
	}
}

/* Entry point, registered in _PG_init (al_register_workers in accesslog.c) */
void
envault_access_log_worker_main(Datum arg)
{
	int			idx = DatumGetInt32(arg);
	AlRecord   *batch;
	TimestampTz idle_since;
	char	   *dbname;
	Oid			dboid;

	pqsignal(SIGTERM, aw_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	if (al_shared == NULL || idx < 0 || idx >= al_shared->nslots)
		proc_exit(1);
	aw_slot = &al_slots[idx];

	LWLockAcquire(aw_slot->lock, LW_EXCLUSIVE);
	aw_slot->worker_pid = MyProcPid;
	aw_slot->worker_latch = MyLatch;
	aw_slot->worker_db = InvalidOid;
	LWLockRelease(aw_slot->lock);
	on_shmem_exit(aw_detach, (Datum) 0);

	dboid = aw_wait_for_database();
	BackgroundWorkerInitializeConnectionByOid(dboid, BOOTSTRAP_SUPERUSERID, 0);
	LWLockAcquire(aw_slot->lock, LW_EXCLUSIVE);
	aw_slot->worker_db = MyDatabaseId;
	aw_slot->connect_failures = 0;
	LWLockRelease(aw_slot->lock);

	/*
	 * The backends that wait for a record flush the WAL up to its commit
	 * themselves (al_wait_durable), sharing flushes; the worker does not wait
	 * for them.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* its queries name everything by schema; nothing else can stand in */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "envault access log", PGC_USERSET,
					PGC_S_OVERRIDE);

	StartTransactionCommand();
	dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	CommitTransactionCommand();
	batch = MemoryContextAlloc(TopMemoryContext, sizeof(AlRecord) * AW_BATCH);
	idle_since = GetCurrentTimestamp();

	for (;;)
	{
		uint64		from;
		int			n;
		int			i;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		ResetLatch(MyLatch);

		/* everything queued at this moment goes into one transaction */
		LWLockAcquire(aw_slot->lock, LW_SHARED);
		from = aw_slot->durable;
		n = (int) Min(aw_slot->head - from, (uint64) AW_BATCH);
		for (i = 0; i < n; i++)
			memcpy(&batch[i], &aw_slot->ring[(from + i) % al_queue_size], sizeof(AlRecord));
		LWLockRelease(aw_slot->lock);

		if (n > 0)
		{
			bool		ok = aw_write(batch, n);

			if (!ok)
				for (i = 0; i < n; i++)
					al_log_record(&batch[i], dbname);
			LWLockAcquire(aw_slot->lock, LW_EXCLUSIVE);
			aw_slot->durable = from + n;
			if (ok && XactLastCommitEnd > aw_slot->commit_lsn)
				aw_slot->commit_lsn = XactLastCommitEnd;
			aw_slot->written_total += ok ? n : 0;
			aw_slot->fallback_total += ok ? 0 : n;
			aw_slot->commits_total += ok ? 1 : 0;
			LWLockRelease(aw_slot->lock);
			aw_wake_waiters(batch, n);
			ConditionVariableBroadcast(&aw_slot->cv_space);
			idle_since = GetCurrentTimestamp();
			continue;			/* drain before sleeping, and before stopping */
		}

		/*
		 * Nothing queued.  Leave when told to, when idle long enough, or at
		 * once when another database waits for a slot; only with nothing
		 * queued (a record queued meanwhile is written first).
		 */
		if (aw_stop ||
			pg_atomic_read_u32(&al_shared->slot_waiters) > 0 ||
			TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(),
									   al_worker_idle * 1000))
		{
			if (aw_release())
				break;
			continue;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
	}
	/* exit code 1: the postmaster starts the worker again, unconnected */
	proc_exit(1);
}
