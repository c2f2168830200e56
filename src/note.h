/*-------------------------------------------------------------------------
 *
 * note.h
 *		Signed checkpoints of audit chains: base64, C2SP signed notes
 *		(c2sp.org/signed-note) and the tlog-checkpoint body
 *		(c2sp.org/tlog-checkpoint) that envault signs with Ed25519.
 *
 * Plain C with no server dependencies: the extension, the standalone
 * verifier (envault-verify) and the fuzzers share it.  docs/audit-chain.md
 * is the specification.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_NOTE_H
#define ENVAULT_NOTE_H

#include "crypto.h"

/*
 * Longest note envault writes, longest it reads (room for a hundred
 * signatures of other algorithms, ML-DSA's among them), longest key name,
 * most signature lines (as the reference implementation of signed notes)
 */
#define ENV_NOTE_MAXLEN			4096
#define ENV_NOTE_READ_MAXLEN	(1024 * 1024)
#define ENV_NOTE_NAME_MAXLEN	255
#define ENV_NOTE_MAXSIGS		100
#define ENV_NOTE_KEYID_LEN		4

/* base64 (RFC 4648, section 4, with padding) */
#define ENV_BASE64_LEN(n)		((((n) + 2) / 3) * 4)

extern size_t env_base64_encode(const uint8_t *data, size_t len, char *out);
extern bool env_base64_decode(const char *text, size_t len, uint8_t *out,
							  size_t out_max, size_t *out_len);

extern bool env_note_name_valid(const char *name, size_t len);
extern void env_note_key_id(const char *name, size_t name_len,
							const uint8_t *pub, uint8_t *key_id);

/* verifier key: <name>+<hex key id>+<base64(0x01 || public key)> */
extern size_t env_note_vkey(const char *name, size_t name_len,
							const uint8_t *pub, char *out, size_t out_max);
extern bool env_note_parse_vkey(const char *vkey, size_t len, char *name,
								uint8_t *key_id, uint8_t *pub);

/* One signature line of a signed note, as parsed (not yet verified). */
typedef struct EnvNoteSig
{
	const char *name;			/* points into the note */
	size_t		name_len;
	uint8_t		key_id[ENV_NOTE_KEYID_LEN];
	uint8_t		sig[ENV_ED25519_SIG_LEN];
	bool		ed25519;		/* the signature has Ed25519's length */
} EnvNoteSig;

typedef struct EnvNote
{
	const char *text;			/* the signed text, final newline included */
	size_t		text_len;
	int			nsigs;
	EnvNoteSig	sigs[ENV_NOTE_MAXSIGS];
} EnvNote;

extern bool env_note_parse(const char *note, size_t len, EnvNote *out);
extern size_t env_note_assemble(const char *text, size_t text_len,
								const char *name, size_t name_len,
								const uint8_t *key_id, const uint8_t *sig,
								char *out, size_t out_max);
extern size_t env_note_sign(const char *text, size_t text_len,
							const char *name, size_t name_len,
							const EnvSigningKey *sk, char *out, size_t out_max);

/* Outcome of checking a note against one trusted key. */
typedef enum EnvNoteCheck
{
	ENV_NOTE_VERIFIED = 0,		/* a signature by the key verifies */
	ENV_NOTE_MALFORMED,			/* not a signed note */
	ENV_NOTE_UNKNOWN_KEY,		/* no signature by this key */
	ENV_NOTE_BAD_SIGNATURE		/* a signature by this key does not verify */
} EnvNoteCheck;

extern EnvNoteCheck env_note_verify(const char *note, size_t len,
									const char *name, size_t name_len,
									const uint8_t *pub, EnvNote *parsed);

/* The body of an envault checkpoint, as parsed from the signed text. */
#define ENV_CHECKPOINT_TIME_LEN	27	/* 2026-12-01T07:42:17.123456Z */

typedef struct EnvCheckpoint
{
	const char *origin;			/* points into the text */
	size_t		origin_len;
	uint64_t	seq;
	uint8_t		hash[ENV_SHA256_LEN];
	char		time[ENV_CHECKPOINT_TIME_LEN + 1];
} EnvCheckpoint;

extern size_t env_checkpoint_text(const char *origin, size_t origin_len,
								  uint64_t seq, const uint8_t *hash,
								  const char *time, char *out, size_t out_max);
extern bool env_checkpoint_parse(const char *text, size_t len,
								 EnvCheckpoint *out);

/* Origins: envault/<database>/<chain>[/<tenant>], each part percent-encoded */
extern size_t env_origin_build(const char *database, size_t database_len,
							   const char *chain, size_t chain_len,
							   const char *tenant, size_t tenant_len,
							   char *out, size_t out_max);

extern bool env_origin_matches(const char *origin, size_t origin_len,
							   const char *database, size_t database_len,
							   const char *chain, size_t chain_len,
							   const char *tenant, size_t tenant_len);

#endif							/* ENVAULT_NOTE_H */
