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
#include "access/heapam.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "nodes/parsenodes.h"
#include "executor/executor.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"

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
 * 16: simple_heap_update() reports which indexes need new entries; callers
 * here look at HeapTupleIsHeapOnly() as before, which btree indexes follow.
 */
static inline void
env_simple_heap_update(Relation rel, ItemPointer otid, HeapTuple tup)
{
#if PG_VERSION_NUM >= 160000
	TU_UpdateIndexes update_indexes;

	simple_heap_update(rel, otid, tup, &update_indexes);
#else
	simple_heap_update(rel, otid, tup);
#endif
}

/*
 * 16: ALTER TABLE subcommands no longer have separate "Recurse" kinds
 * (AT_AddColumnRecurse and the like); env_at_base() maps those of 15 to
 * the kind they recurse with, so that code names only the base kinds.
 */
static inline AlterTableType
env_at_base(AlterTableType t)
{
#if PG_VERSION_NUM < 160000
	switch (t)
	{
		case AT_AddColumnRecurse:
			return AT_AddColumn;
		case AT_DropColumnRecurse:
			return AT_DropColumn;
		case AT_AddConstraintRecurse:
			return AT_AddConstraint;
		case AT_ValidateConstraintRecurse:
			return AT_ValidateConstraint;
		case AT_DropConstraintRecurse:
			return AT_DropConstraint;
		default:
			break;
	}
#endif
#if PG_VERSION_NUM < 180000
	/* 18: AT_CheckNotNull is gone (a NOT NULL is a constraint) */
	if (t == AT_CheckNotNull)
		return AT_SetNotNull;
#endif
	return t;
}

/*
 * 16: the query jumbling that computes query ids moved from utils/ to
 * nodes/ (EnableQueryId() is declared there).
 */
#if PG_VERSION_NUM >= 160000
#include "nodes/queryjumble.h"
#else
#include "utils/queryjumble.h"
#endif

/*
 * 17: format_type() spells json as the SQL keyword (SQL/JSON), "json"
 * rather than "pg_catalog.json", and its array "json[]".  A chain's
 * columns hash and its meaning cover the names of its column types, which
 * must not change with the major: envault spells them as 15 does.
 */
static inline char *
env_format_type(Oid typid, int32 typmod)
{
#if PG_VERSION_NUM >= 170000
	if (typid == JSONOID)
		return pstrdup("pg_catalog.json");
	if (typid == JSONARRAYOID)
		return pstrdup("pg_catalog.json[]");
#endif
	return format_type_extended(typid, typmod,
								FORMAT_TYPE_TYPEMOD_GIVEN |
								FORMAT_TYPE_FORCE_QUALIFY);
}

/*
 * 17: PGPROC lost its pgprocno member; GetNumberFromPGProc() gives the
 * number, as the index of ProcGlobal->allProcs it always was.
 */
#if PG_VERSION_NUM >= 170000
#define ENV_PROCNO(proc)	GetNumberFromPGProc(proc)
#else
#define ENV_PROCNO(proc)	((proc)->pgprocno)
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
 * 18: RelationGetPrimaryKeyIndex() asks whether a deferrable primary key
 * will do; envault's callers want one that is checked at once.
 */
#if PG_VERSION_NUM >= 180000
#define env_relation_pk_index(rel)	RelationGetPrimaryKeyIndex((rel), false)
#else
#define env_relation_pk_index(rel)	RelationGetPrimaryKeyIndex(rel)
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
