/*-------------------------------------------------------------------------
 *
 * compat.h
 *		What differs between the PostgreSQL majors envault builds against
 *		(15, 16, 17, 18), in one place: the rest of the code calls the
 *		names below and has no PG_VERSION_NUM test of its own.
 *
 * Each difference names the major that brought it and what it changed.
 * 16 is built against its documented API but not tested (Debian carries no
 * suite with PostgreSQL 16; README.md, "Supported versions").
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_COMPAT_H
#define ENVAULT_COMPAT_H

#include "postgres.h"

#include "access/genam.h"
#include "executor/executor.h"
#include "storage/proc.h"
#include "utils/acl.h"

#if PG_VERSION_NUM < 150000
#error "envault needs PostgreSQL 15 or later"
#endif

/*
 * 16: the per-catalog ownership checks (pg_class_ownercheck() and the
 * like) became object_ownercheck(classid, objectid, roleid).
 */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_class.h"
#define env_class_ownercheck(relid, roleid) \
	object_ownercheck(RelationRelationId, (relid), (roleid))
#else
#define env_class_ownercheck(relid, roleid) \
	pg_class_ownercheck((relid), (roleid))
#endif

/*
 * 17: a PGPROC's local transaction id moved into its virtual transaction
 * id (MyProc->lxid became MyProc->vxid.lxid).
 */
#if PG_VERSION_NUM >= 170000
#define ENV_MY_LXID()	(MyProc->vxid.lxid)
#else
#define ENV_MY_LXID()	(MyProc->lxid)
#endif

/*
 * 18: index_beginscan() takes the scan's instrumentation (NULL: none)
 * before the number of keys.
 */
#if PG_VERSION_NUM >= 180000
#define env_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define env_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

/*
 * 18: the ExecutorRun hook lost its execute_once argument (a plan may
 * always run more than once).  ENV_EXECUTOR_RUN_ARGS declares the hook's
 * parameters, ENV_EXECUTOR_RUN_PASS passes them on.
 */
#if PG_VERSION_NUM >= 180000
#define ENV_EXECUTOR_RUN_ARGS \
	QueryDesc *queryDesc, ScanDirection direction, uint64 count
#define ENV_EXECUTOR_RUN_PASS	queryDesc, direction, count
#else
#define ENV_EXECUTOR_RUN_ARGS \
	QueryDesc *queryDesc, ScanDirection direction, uint64 count, \
	bool execute_once
#define ENV_EXECUTOR_RUN_PASS	queryDesc, direction, count, execute_once
#endif

/*
 * 18: functions that do not return are marked before the declaration
 * (pg_noreturn, C11's _Noreturn); pg_attribute_noreturn(), after it, is
 * gone.
 */
#ifdef pg_noreturn
#define ENV_NORETURN		pg_noreturn
#define ENV_NORETURN_AFTER
#else
#define ENV_NORETURN
#define ENV_NORETURN_AFTER	pg_attribute_noreturn()
#endif

#endif							/* ENVAULT_COMPAT_H */
