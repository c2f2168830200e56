/*-------------------------------------------------------------------------
 *
 * export.h
 *		Reading an export of an audit chain (the JSON of
 *		envault.export_chain) without a database, as docs/audit-chain.md
 *		("Export") specifies it.
 *
 * envault-verify reads an export here, verifies it with verify.h and
 * prints the result with report.h; the fuzz harnesses call these directly.
 * Nothing here is secret.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_EXPORT_H
#define ENVAULT_EXPORT_H

#include "common.h"
#include "crypto.h"
#include "json.h"
#include "merkle.h"
#include "note.h"

/* Bounds on what an export may hold */
#define EV_EXPORT_MAXLEN		((size_t) 256 << 20)	/* bytes */
/*
 * Memory the JSON values of an export may take while it is read (json.c):
 * an export envault writes takes about 9 bytes of it per byte of text
 * (2.3 GiB for the largest), one of empty objects ten times as much
 */
#define EV_EXPORT_MAXMEMORY		((size_t) 4 << 30)
#define EV_EXPORT_MAXCOLUMNS	1600	/* PostgreSQL's column limit */

/* v2 (envault 0.3.0 on) adds tree_frontier; both are read */
#define EV_FORMAT				"envault-chain-export-v2"
#define EV_FORMAT_V1			"envault-chain-export-v1"

typedef struct EvColumn
{
	const char *name;
	size_t		name_len;
	const char *type;
	size_t		type_len;
} EvColumn;

typedef struct EvRow
{
	int64_t		seq;
	const char *at;
	size_t		at_len;
	bool		has_prev;		/* false: null in the export */
	uint8_t		prev[ENV_SHA256_LEN];
	bool		has_hash;
	uint8_t		hash[ENV_SHA256_LEN];
	const json_t *values;		/* array of ncols strings or nulls */
	size_t		index;			/* position in the export */
} EvRow;

/* An export as read: everything points into doc */
typedef struct EvExport
{
	json_t	   *doc;
	const char *database;
	size_t		database_len;
	const char *chain;
	size_t		chain_len;
	const char *tenant;			/* NULL: the chain without tenant */
	size_t		tenant_len;
	size_t		ncols;
	EvColumn   *cols;
	size_t		nrows;
	EvRow	   *rows;			/* in order of seq (stable) */
	int			format;			/* 1 or 2 */
	bool		has_frontier;	/* tree_frontier is a readable frontier */
	EnvMerkleFrontier frontier; /* the tree of the rows before the first */
	size_t		ncps;
	const json_t *cps;			/* array of ncps strings */
} EvExport;

/*
 * Read an export.  On failure returns false with nothing allocated and a
 * description of the problem in err (EV_ERRLEN bytes).
 */
extern bool ev_export_parse(const char *data, size_t len, EvExport *ex,
							char *err);
extern void ev_export_free(EvExport *ex);

/* The origin checkpoints of this export's chain and tenant carry */
extern size_t ev_export_origin(const EvExport *ex, char *out, size_t out_max);

#endif							/* ENVAULT_EXPORT_H */
