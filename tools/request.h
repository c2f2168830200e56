/*-------------------------------------------------------------------------
 *
 * request.h
 *		What envault asks a signer or a witness to sign, and the checks
 *		that keep one from signing a checkpoint that contradicts the last
 *		one it signed for the origin (docs/audit-chain.md).
 *
 * A request is the checkpoint text to sign (to a signing command) or the
 * signed note (to a witness), optionally followed by a blank line and a
 * consistency section:
 *
 *	consistency <old size>\n
 *	<base64 of a 32-byte hash>\n		(one per line, RFC 9162 2.1.4)
 *
 * The proof leads from the tree of <old size> rows to the one the
 * checkpoint signs.  envault-verify --check-request and envault-witness
 * share this module.  Nothing here is secret.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_REQUEST_H
#define ENVAULT_REQUEST_H

#include "merkle.h"
#include "note.h"
#include "trust.h"

/* A note, then the consistency section */
#define EV_REQUEST_MAXLEN	(ENV_NOTE_READ_MAXLEN + 64 + \
							 ENV_MERKLE_MAX_LEVELS * (ENV_BASE64_LEN(ENV_MERKLE_HASH_LEN) + 1))

/* Outcomes; the numbers are the exit status of envault-verify --check-request */
typedef enum EvRequestStatus
{
	EV_REQUEST_OK = 0,			/* sign it */
	EV_REQUEST_REFUSED = 1,		/* never: err says why */
	EV_REQUEST_SIZE = 3			/* ask again with a proof from *last_size */
} EvRequestStatus;

typedef struct EvRequest
{
	const char *note;			/* the signed note (a witness's), or NULL */
	size_t		note_len;
	const char *text;			/* the checkpoint text: what is signed */
	size_t		text_len;
	EnvCheckpoint cp;			/* as parsed from text */
	bool		has_proof;		/* a consistency section */
	uint64_t	proof_from;		/* its old size */
	int			nproof;
	uint8_t		proof[ENV_MERKLE_MAX_LEVELS][ENV_MERKLE_HASH_LEN];
} EvRequest;

/*
 * Hashes, one base64 of 32 bytes per line (the last line's newline may be
 * missing), at most ENV_MERKLE_MAX_LEVELS of them; as a proof file holds
 * them, and a consistency section after its first line.  On failure err
 * (EV_ERRLEN bytes) says which line is wrong.
 */
extern bool ev_hashes_parse(const char *text, size_t len,
							uint8_t (*out)[ENV_MERKLE_HASH_LEN], int *n,
							char *err);

/*
 * Read a request.  log_key NULL: a signer's (the text); else a witness's
 * (the note), which must verify as a tree head under log_key's public key
 * (key name = the origin).  Points into data.  EV_REQUEST_OK, or
 * EV_REQUEST_REFUSED with the reason in err.
 */
extern EvRequestStatus ev_request_parse(const char *data, size_t len,
										const EvKey *log_key, EvRequest *req,
										char *err);

/*
 * Check a request against the checkpoint text last signed for its origin
 * (last NULL: none yet, and anything goes): same origin, no smaller size,
 * the same root at the same size, and at a larger one a consistency proof
 * from exactly the last size.  EV_REQUEST_SIZE with *last_size when the
 * proof is missing or from another size.
 */
extern EvRequestStatus ev_request_check(const EvRequest *req,
										const char *last, size_t last_len,
										uint64_t *last_size, char *err);

#endif							/* ENVAULT_REQUEST_H */
