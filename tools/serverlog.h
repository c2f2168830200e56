/*-------------------------------------------------------------------------
 *
 * serverlog.h
 *		Reading the copies of signed checkpoints in a PostgreSQL server log.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_SERVERLOG_H
#define ENVAULT_SERVERLOG_H

#include "common.h"
#include "crypto.h"
#include "note.h"

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

#endif							/* ENVAULT_SERVERLOG_H */
