/*-------------------------------------------------------------------------
 *
 * chainmeaning.c
 *		What the columns of a chained table mean, as one text the DDL guard
 *		compares before and after every command.
 *
 * A row hash covers each value's canonical text and its column's name and
 * type name.  The meaning of a stored value depends on more than that:
 * the attribute names and types of a composite, the labels of an enum
 * (stored as OIDs), a domain's base type, a column's collation, the
 * columns a table shows beside the hashed ones (stored generated
 * columns), the parent a partition's rows are reached through.  All of it
 * goes into the description below, one line per parent and one per
 * column, recursively through domains, arrays, composites, ranges and
 * multiranges.  envault.audit_chains.columns_meaning keeps the text of
 * when the chain was enabled; chainguard.c refuses any command after which
 * it reads differently (ALTER TYPE ... ADD VALUE alone is accepted: it
 * changes no stored value).
 *
 * Names only, never OIDs, so that a dump restored elsewhere describes the
 * same.  reg* types are refused wherever they appear (inside arrays,
 * composites, domains and ranges too): they print names that depend on
 * search_path.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "chainmeaning.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_range.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

/* Composite types nest; a chain's column needs no more than this */
#define CM_MAX_DEPTH	32

static void cm_type(StringInfo buf, Oid typid, int32 typmod, int depth,
					const char *column);

static void
cm_collation(StringInfo buf, Oid collid)
{
	HeapTuple	tup;
	Form_pg_collation c;

	if (!OidIsValid(collid))
		return;
	tup = SearchSysCache1(COLLOID, ObjectIdGetDatum(collid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for collation %u", collid);
	c = (Form_pg_collation) GETSTRUCT(tup);
	appendStringInfo(buf, " COLLATE %s",
					 quote_qualified_identifier(get_namespace_name(c->collnamespace),
												NameStr(c->collname)));
	ReleaseSysCache(tup);
}

/* The labels of an enum in their sort order */
static void
cm_enum_labels(StringInfo buf, Oid typid)
{
	CatCList   *list = SearchSysCacheList1(ENUMTYPOIDNAME, ObjectIdGetDatum(typid));
	int			n = list->n_members;
	HeapTuple  *sorted = palloc(sizeof(HeapTuple) * Max(n, 1));
	int			i;
	int			j;

	for (i = 0; i < n; i++)
		sorted[i] = &list->members[i]->tuple;
	/* insertion sort by enumsortorder: enums are short */
	for (i = 1; i < n; i++)
		for (j = i; j > 0 &&
			 ((Form_pg_enum) GETSTRUCT(sorted[j - 1]))->enumsortorder >
			 ((Form_pg_enum) GETSTRUCT(sorted[j]))->enumsortorder; j--)
		{
			HeapTuple	t = sorted[j];

			sorted[j] = sorted[j - 1];
			sorted[j - 1] = t;
		}
	appendStringInfoString(buf, " (");
	for (i = 0; i < n; i++)
		appendStringInfo(buf, "%s%s", i > 0 ? ", " : "",
						 quote_literal_cstr(NameStr(((Form_pg_enum) GETSTRUCT(sorted[i]))->enumlabel)));
	appendStringInfoChar(buf, ')');
	pfree(sorted);
	ReleaseSysCacheList(list);
}

/* The attributes of a composite type, with their types and collations */
static void
cm_composite(StringInfo buf, Oid typid, int depth, const char *column)
{
	TupleDesc	desc = lookup_rowtype_tupdesc_copy(typid, -1);
	int			i;
	bool		first = true;

	appendStringInfoString(buf, " (");
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped)
			continue;
		appendStringInfo(buf, "%s%s ", first ? "" : ", ",
						 quote_identifier(NameStr(a->attname)));
		cm_type(buf, a->atttypid, a->atttypmod, depth + 1, column);
		cm_collation(buf, a->attcollation);
		first = false;
	}
	appendStringInfoChar(buf, ')');
	FreeTupleDesc(desc);
}

static void
cm_type(StringInfo buf, Oid typid, int32 typmod, int depth, const char *column)
{
	HeapTuple	tup;
	Form_pg_type t;

	check_stack_depth();
	if (depth > CM_MAX_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the type of column \"%s\" nests more than %d levels deep",
						column, CM_MAX_DEPTH)));
	if (env_canon_reg_type(typid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("column \"%s\" holds values of type %s, which cannot be part of an audit chain",
						column, format_type_be(typid)),
				 errdetail("Values of reg* types print as names that depend on search_path, and their OIDs change across dump and restore; that holds inside arrays, composites, domains and ranges too."),
				 errhint("Store the object's name as text instead.")));

	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", typid);
	t = (Form_pg_type) GETSTRUCT(tup);
	appendStringInfoString(buf, env_format_type(typid, typmod));
	switch (t->typtype)
	{
		case TYPTYPE_DOMAIN:
			/* (its collation is the column's, which the caller adds) */
			appendStringInfoString(buf, " domain over ");
			cm_type(buf, t->typbasetype, t->typtypmod, depth + 1, column);
			break;
		case TYPTYPE_ENUM:
			appendStringInfoString(buf, " enum");
			cm_enum_labels(buf, typid);
			break;
		case TYPTYPE_COMPOSITE:
			appendStringInfoString(buf, " composite");
			cm_composite(buf, typid, depth, column);
			break;
		case TYPTYPE_RANGE:
			{
				HeapTuple	rtup = SearchSysCache1(RANGETYPE, ObjectIdGetDatum(typid));
				Form_pg_range r;

				if (!HeapTupleIsValid(rtup))
					elog(ERROR, "cache lookup failed for range type %u", typid);
				r = (Form_pg_range) GETSTRUCT(rtup);
				appendStringInfoString(buf, " range of ");
				cm_type(buf, r->rngsubtype, -1, depth + 1, column);
				cm_collation(buf, r->rngcollation);
				ReleaseSysCache(rtup);
			}
			break;
		case TYPTYPE_MULTIRANGE:
			appendStringInfoString(buf, " multirange of ");
			cm_type(buf, get_multirange_range(typid), -1, depth + 1, column);
			break;
		default:
			if (OidIsValid(t->typelem) && IsTrueArrayType(t))
			{
				appendStringInfoString(buf, " array of ");
				cm_type(buf, t->typelem, typmod, depth + 1, column);
			}
			break;
	}
	ReleaseSysCache(tup);
}

/* The tables a table's rows are reached through */
static void
cm_parents(StringInfo buf, Relation rel)
{
	Relation	inh = table_open(InheritsRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&key, Anum_pg_inherits_inhrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(RelationGetRelid(rel)));
	scan = systable_beginscan(inh, InheritsRelidSeqnoIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Oid			parent = ((Form_pg_inherits) GETSTRUCT(tup))->inhparent;

		appendStringInfo(buf, "%s %s\n",
						 rel->rd_rel->relispartition ? "partition of" : "inherits from",
						 quote_qualified_identifier(get_namespace_name(get_rel_namespace(parent)),
													get_rel_name(parent)));
	}
	systable_endscan(scan);
	table_close(inh, AccessShareLock);
}

/*
 * The description of an open table's columns: one line per parent, then
 * one line per column, in column order, "name type [COLLATE c]
 * [GENERATED]".  Raises for reg* types anywhere in a column's type.
 */
char *
env_chain_meaning_of(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	cm_parents(&buf, rel);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped)
			continue;
		appendStringInfo(&buf, "%s ", quote_identifier(NameStr(a->attname)));
		cm_type(&buf, a->atttypid, a->atttypmod, 0, NameStr(a->attname));
		cm_collation(&buf, a->attcollation);
		if (a->attgenerated)
			appendStringInfoString(&buf, " GENERATED");
		appendStringInfoChar(&buf, '\n');
	}
	return buf.data;
}

/*
 * SQL function: envault.chain_meaning(tbl regclass) returns text
 *
 * The description above for any table the caller may see; what the guard
 * compares with envault.audit_chains.columns_meaning.
 */
PG_FUNCTION_INFO_V1(envault_chain_meaning);
Datum
envault_chain_meaning(PG_FUNCTION_ARGS)
{
	Relation	rel;
	char	   *meaning;

	env_arg_not_null(fcinfo, 0, "tbl");
	rel = relation_open(PG_GETARG_OID(0), AccessShareLock);
	meaning = env_chain_meaning_of(rel);
	relation_close(rel, AccessShareLock);
	PG_RETURN_TEXT_P(cstring_to_text(meaning));
}
