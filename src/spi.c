/*-------------------------------------------------------------------------
 *
 * spi.c
 *		Privileged SPI: envault's queries on its own tables, run as the
 *		owner of the envault schema, and a user's table acted on as its
 *		owner.
 *
 * Key tables (envault.tenants, envault.data_keys) hold only wrapped keys,
 * and roles that may encrypt cannot read them; the audit chains, tokens and
 * the secrets store are likewise out of their callers' reach.  So envault
 * reads and writes its tables through SPI as the owner of the envault
 * schema, with every operator and function schema-qualified and
 * search_path pinned, so that a caller's search_path cannot interfere.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "spi.h"

#include "keycache.h"
#include "scaleout.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

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

/* --- running as the owner of the envault schema ------------------------ */

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
	/* the key cache watches envault.tenants for invalidations */
	env_keycache_watch_tenants(get_relname_relid("tenants", nsp));

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
