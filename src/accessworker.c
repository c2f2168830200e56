/*-------------------------------------------------------------------------
 *
 * accessworker.c
 *		The envault access log worker: a background worker per database
 *		that writes queued access records into envault.access_log (an
 *		audit chain) in its own transactions, with synchronous_commit on,
 *		and updates envault.secrets.last_used_at for get_secret() records.
 *
 * Started on demand by a backend that queues records; exits after
 * envault.access_log_worker_idle seconds without any.  It reads records
 * from the slot's durable position and advances it only after its
 * transaction has committed, waking the backends that wait for it.  If its
 * transaction fails (envault is not installed in the database any more,
 * say), the batch goes to the server log instead, so that no record is
 * lost either way.
 *
 *-------------------------------------------------------------------------
 */
#include "accesslog.h"

#include "access/xact.h"
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
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define AW_BATCH	256

PGDLLEXPORT void envault_access_log_worker_main(Datum arg);

static AlSlot *aw_slot = NULL;
static volatile sig_atomic_t aw_stop = false;

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
	}
	LWLockRelease(aw_slot->lock);
	/* backends waiting on us look for a new worker */
	ConditionVariableBroadcast(&aw_slot->cv_durable);
	ConditionVariableBroadcast(&aw_slot->cv_space);
}

#define AW_Q_INSERT \
	"INSERT INTO envault.access_log" \
	"  (at, last_at, event, tenant, purpose, key_version, secret_name, count," \
	"   role, session_role, application_name, client_addr, backend_pid," \
	"   backend_start, statement_seq, query_id)" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11," \
	"         $12::pg_catalog.inet, $13, $14, $15, $16)"

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
		Oid			types[16] = {TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID,
			TEXTOID, INT4OID, TEXTOID, INT8OID, NAMEOID, NAMEOID, TEXTOID, TEXTOID,
		INT4OID, TIMESTAMPTZOID, INT8OID, INT8OID};
		Oid			utypes[3] = {TEXTOID, TEXTOID, TIMESTAMPTZOID};
		SPIPlanPtr	insert;
		SPIPlanPtr	used = NULL;
		int			i;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "writing envault access records");
		insert = SPI_prepare(AW_Q_INSERT, 16, types);
		if (insert == NULL)
			elog(ERROR, "could not prepare the access log insert: %s",
				 SPI_result_code_string(SPI_result));
		for (i = 0; i < n; i++)
		{
			AlRecord   *r = &recs[i];
			Datum		v[16];
			char		nulls[17] = "                ";

			v[0] = TimestampTzGetDatum(r->at);
			v[1] = TimestampTzGetDatum(r->last_at);
			v[2] = CStringGetTextDatum(r->event == AL_EVENT_LOG_OFF ? "access log off" : "decrypt");
			if (r->has_key)
			{
				v[3] = CStringGetTextDatum(r->tenant);
				v[4] = CStringGetTextDatum(r->purpose);
				v[5] = Int32GetDatum(r->key_version);
			}
			else
				nulls[3] = nulls[4] = nulls[5] = 'n';
			if (r->secret[0])
				v[6] = CStringGetTextDatum(r->secret);
			else
				nulls[6] = 'n';
			v[7] = Int64GetDatum(r->count);
			v[8] = CStringGetDatum(r->role);
			v[9] = CStringGetDatum(r->session_role);
			if (r->role[0] == '\0')
				nulls[8] = 'n';
			if (r->session_role[0] == '\0')
				nulls[9] = 'n';
			v[10] = CStringGetTextDatum(r->application_name);
			if (r->client_addr[0])
				v[11] = CStringGetTextDatum(r->client_addr);
			else
				nulls[11] = 'n';
			v[12] = Int32GetDatum(r->backend_pid);
			v[13] = TimestampTzGetDatum(r->backend_start);
			v[14] = Int64GetDatum(r->statement_seq);
			v[15] = Int64GetDatum((int64) r->query_id);
			if (SPI_execute_plan(insert, v, nulls, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not insert an access record");
			if (r->secret[0] && r->has_key && r->event == AL_EVENT_DECRYPT)
			{
				Datum		u[3];

				if (used == NULL &&
					(used = SPI_prepare(AW_Q_SECRET_USED, 3, utypes)) == NULL)
					elog(ERROR, "could not prepare the secret update");
				u[0] = CStringGetTextDatum(r->tenant);
				u[1] = CStringGetTextDatum(r->secret);
				u[2] = TimestampTzGetDatum(r->last_at);
				if (SPI_execute_plan(used, u, NULL, false, 0) != SPI_OK_UPDATE)
					elog(ERROR, "could not update a secret's last use");
			}
		}
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

/* SQL-free entry point: see RegisterDynamicBackgroundWorker in accesslog.c */
void
envault_access_log_worker_main(Datum arg)
{
	int			idx = DatumGetInt32(arg);
	AlRecord   *batch;
	TimestampTz idle_since;
	char	   *dbname;

	pqsignal(SIGTERM, aw_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	if (al_shared == NULL || idx < 0 || idx >= al_shared->nslots)
		proc_exit(0);
	aw_slot = &al_slots[idx];
	BackgroundWorkerInitializeConnectionByOid(aw_slot->dboid, BOOTSTRAP_SUPERUSERID, 0);
	/* a record must be durable before the decryption's result is returned */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	/* its queries name everything by schema; nothing else can stand in */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "envault access log", PGC_USERSET,
					PGC_S_OVERRIDE);
	on_shmem_exit(aw_detach, (Datum) 0);
	if (!al_worker_started(aw_slot))
		proc_exit(0);

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
			aw_slot->written_total += ok ? n : 0;
			aw_slot->fallback_total += ok ? 0 : n;
			LWLockRelease(aw_slot->lock);
			ConditionVariableBroadcast(&aw_slot->cv_durable);
			ConditionVariableBroadcast(&aw_slot->cv_space);
			idle_since = GetCurrentTimestamp();
			continue;			/* drain before sleeping, and before stopping */
		}
		if (aw_stop)
			break;
		if (TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(),
									   al_worker_idle * 1000))
		{
			bool		empty;

			/* leave only with nothing queued: a backend starts a new one */
			LWLockAcquire(aw_slot->lock, LW_EXCLUSIVE);
			empty = (aw_slot->head == aw_slot->durable);
			if (empty)
			{
				aw_slot->worker_pid = 0;
				aw_slot->worker_latch = NULL;
			}
			LWLockRelease(aw_slot->lock);
			if (empty)
				break;
			continue;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
	}
	proc_exit(0);
}
