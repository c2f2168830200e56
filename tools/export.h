/*-------------------------------------------------------------------------
 *
 * export.h
 *		Reading and verifying an export of an audit chain (the JSON of
 *		envault.export_chain) without a database, as docs/audit-chain.md
 *		("Export", "To verify an export without envault") specifies it; and
 *		reading checkpoint copies from a PostgreSQL server log.
 *
 * envault-verify is a thin command line around this module; the fuzz
 * harnesses call it directly.  Nothing here is secret: verification uses
 * public keys only.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_EXPORT_H
#define ENVAULT_EXPORT_H

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
#define EV_MAXKEYS				16
#define EV_MAXWITNESSES			32
#define EV_ERRLEN				256

/* v2 (envault 0.3.0 on) adds tree_frontier; both are read */
#define EV_FORMAT				"envault-chain-export-v2"
#define EV_FORMAT_V1			"envault-chain-export-v1"

/*
 * A trusted public key, with the name its signatures carry: head-row
 * checkpoints (envault 0.2.0) are signed under that name, tree heads under
 * their origin.
 */
typedef struct EvKey
{
	char		name[ENV_NOTE_NAME_MAXLEN + 1];
	size_t		name_len;
	uint8_t		pub[ENV_ED25519_PUBLIC_LEN];
} EvKey;

/*
 * A witness: the name and key of its cosignatures (C2SP tlog-cosignature,
 * cosignature/v1), from a verifier key of type 0x04.
 */
typedef struct EvWitness
{
	char		name[ENV_NOTE_NAME_MAXLEN + 1];
	size_t		name_len;
	uint8_t		pub[ENV_ED25519_PUBLIC_LEN];
} EvWitness;

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

/*
 * A checkpoint line of a server log:
 *	 envault checkpoint: origin=<origin> seq=<seq> hash=<base64> note=<base64>
 * anywhere in the line (after the log line prefix, or inside a csvlog or
 * jsonlog field).
 */
typedef struct EvLogLine
{
	const char *origin;			/* points into the line */
	size_t		origin_len;
	bool		parsed;			/* seq, hash and note were read */
	bool		has_seq;
	uint64_t	seq;
	uint8_t		hash[ENV_SHA256_LEN];
	char		note[ENV_NOTE_MAXLEN + 1];	/* decoded, NUL-terminated */
	size_t		note_len;
	size_t		start;			/* offset of "envault checkpoint:" */
	size_t		end;			/* offset after the note's base64 */
} EvLogLine;

/* 0: no checkpoint in this line; 1: one, described in out */
extern int	ev_log_parse_line(const char *line, size_t len, EvLogLine *out);

/* A logged checkpoint of the export's chain and tenant */
typedef struct EvLogCheckpoint
{
	bool		parsed;			/* seq, hash and note were read */
	bool		has_seq;
	uint64_t	seq;
	uint8_t		hash[ENV_SHA256_LEN];
	char	   *note;			/* decoded, malloc'd */
	size_t		note_len;
	char	   *where;			/* "<file> line <n>", malloc'd */
} EvLogCheckpoint;

/* The logged checkpoints of one origin */
typedef struct EvLog
{
	char	   *origin;			/* malloc'd */
	size_t		origin_len;
	size_t		n;
	size_t		cap;
	EvLogCheckpoint *items;
} EvLog;

extern bool ev_log_init(EvLog *log, const char *origin, size_t origin_len);

/*
 * Keep the checkpoint of this line if it has one of the log's origin.
 * Returns false only when out of memory.
 */
extern bool ev_log_add(EvLog *log, const char *line, size_t len,
					   const char *file, uint64_t lineno);
extern void ev_log_free(EvLog *log);

typedef struct EvResult
{
	bool		ok;
	int64_t		bad_seq;
	const char *reason;			/* one of the reasons of verify_chain */
	const char *where;			/* a logged checkpoint's place, or NULL */

	size_t		rows;
	int64_t		first;
	int64_t		last;
	bool		anchored;		/* a mid-chain start signed by a checkpoint */
	size_t		checkpoints;	/* of the export, verified */
	size_t		logged;			/* of the server log, verified */
	bool		have_log;
	int64_t		covered;		/* highest row a checkpoint signs, or 0 */

	/* with witnesses: the newest tree head of the export and its cosigners */
	bool		witnessed;
	int			witnesses_needed;
	int64_t		newest_tree;	/* its size, or 0 if there is none */
	int			cosigned;		/* distinct given witnesses that cosigned it */
	bool		witness_fail;	/* the reason: too few of them */
} EvResult;

/*
 * Verify an export against trusted keys and logged checkpoints (log may be
 * NULL).  With complete, an export must start at row 1, or at a row that a
 * checkpoint signs and a checkpoint states the purge of ("purge <seq>").
 * Returns false only when out of memory.
 */
extern bool ev_verify(const EvExport *ex, const EvKey *keys, int nkeys,
					  const EvLog *log, bool complete, EvResult *res);

/*
 * The same, with witnesses (at most 64): a cosignature line by one of them
 * that does not verify is a bad signature of its checkpoint, and the newest
 * tree head of the export must be cosigned by at least need of them
 * (distinct).
 */
extern bool ev_verify_witnessed(const EvExport *ex, const EvKey *keys,
								int nkeys, const EvWitness *witnesses,
								int nwitnesses, int need, const EvLog *log,
								bool complete, EvResult *res);

/* The one line envault-verify prints, without newline; malloc'd */
extern char *ev_result_line(const EvExport *ex, const EvResult *res);

/*
 * Read a key file: a verifier key, or a PEM Ed25519 public key whose
 * signatures carry the given name.  On failure err (EV_ERRLEN bytes) says
 * what the file is not.
 */
extern bool ev_key_parse(const char *text, size_t len, const char *name,
						 EvKey *key, char *err);

/* Read a witness's verifier key (type 0x04); err as for ev_key_parse */
extern bool ev_witness_parse(const char *text, size_t len, EvWitness *w,
							 char *err);

/*
 * Trusted keys as env_checkpoint_verify() takes them; out has room for
 * nkeys.
 */
extern void ev_checkpoint_keys(const EvKey *keys, int nkeys,
							   EnvCheckpointKey *out);

/*
 * Count the given witnesses (the first 64; one given twice counts once)
 * that cosigned a note, and set their bits in *mask (bit k: witnesses[k]).
 * Every cosignature line by one must verify: returns -1, with the first
 * witness whose line does not in *bad, if one does not.
 */
extern int	ev_cosigners(const char *note, size_t len,
						 const EvWitness *witnesses, int nwitnesses,
						 uint64_t *mask, int *bad);

/* Does a checkpoint's origin name this database (envault/<database>/...)? */
extern bool ev_origin_database(const char *origin, size_t origin_len,
							   const char *database, size_t database_len);

#endif							/* ENVAULT_EXPORT_H */
