/*-------------------------------------------------------------------------
 *
 * accesslog.h
 *		The shared-memory queue between backends that decrypt and the
 *		background workers that write envault.access_log.
 *
 * One queue per database, in a fixed number of slots: a ring of records
 * with two positions that only grow.  Positions below `durable` are
 * committed to envault.access_log, by transactions whose commit records end
 * at or before `commit_lsn`; those from `durable` to `head` are queued (the
 * worker reads them from `durable` and advances it after its transaction
 * commits, so a record leaves the ring only once it is in the table).  The
 * worker commits without waiting for the WAL flush; a backend that needs
 * its records durable flushes the WAL up to `commit_lsn` itself, so that
 * the backends waiting at one moment share one flush (PostgreSQL's group
 * commit) while the worker already writes the next batch.
 * Positions keep growing when a slot passes to another database, so a
 * backend's ticket stays comparable with `durable`.
 *
 * Each slot has a worker of its own, registered at server start (so that
 * no other process can take the worker's place in max_worker_processes):
 * it waits unconnected until a backend claims the slot for a database,
 * connects to it, and when idle gives the slot back and exits, to be
 * started again at once by the postmaster.  The slot's LWLock guards
 * everything but the latch pointer's use.
 *
 * Nothing here is secret: records name keys, never hold them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_ACCESSLOG_H
#define ENVAULT_ACCESSLOG_H

#include "envault.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

/* the module's interface: what backends call */
extern void env_access_log_init(void);
extern void env_access_record(const EnvDataKey *key, const char *secret);

#define AL_SECRET_MAXLEN	255
#define AL_ADDR_LEN			64

/* what a record says happened */
typedef enum AlEvent
{
	AL_EVENT_DECRYPT = 0,		/* count values were decrypted */
	AL_EVENT_LOG_OFF = 1		/* envault.access_log was off in this session */
} AlEvent;

/* One record, as queued and as written to envault.access_log */
typedef struct AlRecord
{
	uint8		event;			/* AlEvent */
	bool		has_key;		/* tenant, purpose and version are set */
	int32		key_version;
	int64		count;
	TimestampTz at;				/* first decryption the record counts */
	TimestampTz last_at;		/* when the record was flushed */
	int32		backend_pid;
	TimestampTz backend_start;
	int64		statement_seq;	/* top-level statements of the backend */
	uint64		query_id;
	int			waiter;			/* pgprocno of the backend that queued it */
	char		tenant[ENV_TENANT_MAXLEN + 1];
	char		purpose[ENV_PURPOSE_MAXLEN + 1];
	char		secret[AL_SECRET_MAXLEN + 1];	/* "" unless get_secret() */
	char		role[NAMEDATALEN];
	char		session_role[NAMEDATALEN];
	char		application_name[NAMEDATALEN];
	char		client_addr[AL_ADDR_LEN];	/* "" for a local connection */
} AlRecord;

typedef struct AlSlot
{
	Oid			dboid;			/* InvalidOid: free */
	int			worker_pid;		/* 0: the slot's worker is not running */
	Oid			worker_db;		/* the database it is connected to */
	int			connect_failures;	/* in a row, to dboid */
	Latch	   *worker_latch;
	uint64		head;			/* next position written */
	uint64		durable;		/* positions below are committed */
	XLogRecPtr	commit_lsn;		/* ... by commit records ending here or before */
	uint64		written_total;	/* statistics */
	uint64		fallback_total; /* records that went to the server log */
	uint64		commits_total;	/* transactions that wrote records */
	ConditionVariable cv_space; /* a record left the ring */
	ConditionVariable cv_durable;	/* the worker left (backends waiting for
									 * their records sleep on their own latch,
									 * which the worker sets) */
	LWLock	   *lock;
	AlRecord   *ring;			/* al_queue_size records */
} AlSlot;

typedef struct AlShared
{
	int			nslots;
	int			queue_size;
	TimestampTz epoch;			/* when the queues were created */
	pg_atomic_uint32 slot_waiters;	/* backends waiting for a free slot */
	ConditionVariable cv_slot;	/* a slot became free */
	/* AlSlot[nslots], then the rings */
} AlShared;

extern AlShared *al_shared;
extern AlSlot *al_slots;
extern int	al_queue_size;
extern int	al_worker_idle;

extern void al_log_record(const AlRecord *r, const char *database);

#endif							/* ENVAULT_ACCESSLOG_H */
