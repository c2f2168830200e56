/*-------------------------------------------------------------------------
 *
 * verify.h
 *		Verifying an export of an audit chain against trusted keys, witnesses
 *		and logged checkpoints, as docs/audit-chain.md ("To verify an export
 *		without envault") specifies it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_VERIFY_H
#define ENVAULT_VERIFY_H

#include "export.h"
#include "serverlog.h"
#include "trust.h"

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

#endif							/* ENVAULT_VERIFY_H */
