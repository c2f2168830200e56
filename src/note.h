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
#define ENV_NOTE_NAME_MAXLEN	2048	/* a checkpoint's origin is its key
										 * name */
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

/*
 * Signature types of verifier keys and key IDs: 0x01 Ed25519 signed-note
 * signatures, 0x04 Ed25519 cosignatures (C2SP tlog-cosignature,
 * cosignature/v1: a witness's statement that the checkpoint is consistent
 * with every one it saw before for the origin).
 */
#define ENV_NOTE_TYPE_ED25519		0x01
#define ENV_NOTE_TYPE_COSIGNATURE	0x04
#define ENV_NOTE_COSIG_LEN			(8 + ENV_ED25519_SIG_LEN)	/* u64 time, sig */

extern void env_note_key_id_typed(const char *name, size_t name_len,
								  uint8_t type, const uint8_t *pub,
								  uint8_t *key_id);
extern size_t env_note_vkey_typed(const char *name, size_t name_len,
								  uint8_t type, const uint8_t *pub,
								  char *out, size_t out_max);
extern bool env_note_parse_vkey_typed(const char *vkey, size_t len,
									  char *name, uint8_t *key_id,
									  uint8_t *type, uint8_t *pub);

/* One signature line of a signed note, as parsed (not yet verified). */
typedef struct EnvNoteSig
{
	const char *name;			/* points into the note */
	size_t		name_len;
	uint8_t		key_id[ENV_NOTE_KEYID_LEN];
	uint8_t		sig[ENV_ED25519_SIG_LEN];
	bool		ed25519;		/* the signature has Ed25519's length */
	bool		cosig;			/* ... or a cosignature/v1's: */
	uint64_t	timestamp;		/* its time, seconds since the Epoch */
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

/*
 * Check a note for a cosignature/v1 by a witness key: the Ed25519 signature
 * over "cosignature/v1\ntime <timestamp>\n" and the note's text.  Every
 * line by that name and key ID must verify, as for note signatures.
 * *timestamp receives the newest verified one's time.
 */
extern EnvNoteCheck env_note_verify_cosignature(const char *note, size_t len,
												const char *name,
												size_t name_len,
												const uint8_t *pub,
												uint64_t *timestamp);

/* The message a cosignature/v1 signs; 0 if out_max is too small */
extern size_t env_cosignature_message(const char *text, size_t text_len,
									  uint64_t timestamp, char *out,
									  size_t out_max);

/* "— <name> base64(key ID || u64 timestamp || signature)\n"; 0 if too long */
extern size_t env_cosignature_line(const char *name, size_t name_len,
								   const uint8_t *key_id, uint64_t timestamp,
								   const uint8_t *sig, char *out,
								   size_t out_max);

/* The body of an envault checkpoint, as parsed from the signed text. */
#define ENV_CHECKPOINT_TIME_LEN	27	/* 2026-12-01T07:42:17.123456Z */

typedef struct EnvCheckpoint
{
	const char *origin;			/* points into the text */
	size_t		origin_len;
	uint64_t	seq;
	uint8_t		hash[ENV_SHA256_LEN];
	char		time[ENV_CHECKPOINT_TIME_LEN + 1];
	bool		tree;			/* hash is the Merkle tree head of seq rows */
	uint64_t	purge;			/* "purge <n>": rows before n were purged */
} EnvCheckpoint;

/*
 * A key checkpoints are verified with.  A checkpoint signed under the key
 * name that is its origin signs a Merkle tree head (envault 0.3.0 on); one
 * signed under the key's own name (envault 0.2.0) signs the hash of the
 * head row.
 */
typedef struct EnvCheckpointKey
{
	const char *name;
	size_t		name_len;
	const uint8_t *pub;
} EnvCheckpointKey;

extern int	env_checkpoint_verify(const char *note, size_t len,
								  const EnvCheckpointKey *keys, int nkeys,
								  EnvCheckpoint *cp);

extern size_t env_checkpoint_text(const char *origin, size_t origin_len,
								  uint64_t seq, const uint8_t *hash,
								  const char *time, uint64_t purge,
								  char *out, size_t out_max);
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

/* Does an origin name this database, whatever chain it goes on with? */
extern bool env_origin_in_database(const char *origin, size_t origin_len,
								   const char *database, size_t database_len);

#endif							/* ENVAULT_NOTE_H */
