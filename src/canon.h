/*-------------------------------------------------------------------------
 *
 * canon.h
 *		Canonical text of column values, for the row hashes of audit chains.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_CANON_H
#define ENVAULT_CANON_H

#include "fmgr.h"
#include "datatype/timestamp.h"

#define ENV_CANON_BUFLEN	128

typedef enum EnvCanonKind
{
	ENV_CANON_BOOL,
	ENV_CANON_INT2,
	ENV_CANON_INT4,
	ENV_CANON_INT8,
	ENV_CANON_UINT32,
	ENV_CANON_FLOAT4,
	ENV_CANON_FLOAT8,
	ENV_CANON_NUMERIC,
	ENV_CANON_TEXT,
	ENV_CANON_NAME,
	ENV_CANON_BYTEA,
	ENV_CANON_UUID,
	ENV_CANON_DATE,
	ENV_CANON_TIME,
	ENV_CANON_TIMETZ,
	ENV_CANON_TIMESTAMP,
	ENV_CANON_TIMESTAMPTZ,
	ENV_CANON_INTERVAL,
	ENV_CANON_JSONB,			/* jsonb_out's text, written here */
	ENV_CANON_OUTPUT,			/* output function, reads no setting */
	ENV_CANON_PINNED			/* output function, with settings pinned */
} EnvCanonKind;

typedef struct EnvCanon
{
	EnvCanonKind kind;
	Oid			typid;			/* base type */
	FmgrInfo	out;			/* for ENV_CANON_OUTPUT and _PINNED */
} EnvCanon;

extern void env_canon_init(EnvCanon *c, Oid typid, const char *column);
extern bool env_canon_needs_pinning(const EnvCanon *c);
extern int	env_canon_pin(void);
extern void env_canon_unpin(int level);
extern bool env_canon_reg_type(Oid typid);
extern size_t env_canon_timestamp(Timestamp ts, bool utc, char *buf);
extern const char *env_canon_text(const EnvCanon *c, Datum d, char *buf,
								  size_t *len);

#endif							/* ENVAULT_CANON_H */
