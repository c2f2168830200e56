/*-------------------------------------------------------------------------
 *
 * trust.h
 *		The keys a verifier trusts: checkpoint signing keys and witnesses.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_TRUST_H
#define ENVAULT_TRUST_H

#include "common.h"
#include "crypto.h"
#include "note.h"

#define EV_MAXKEYS				16
#define EV_MAXWITNESSES			32

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

/* The same witness (name and key) given twice: it counts once */
extern bool ev_same_witness(const EvWitness *a, const EvWitness *b);

/*
 * Count the given witnesses (the first 64; one given twice counts once)
 * that cosigned a note, and set their bits in *mask (bit k: witnesses[k]).
 * Every cosignature line by one must verify: returns -1, with the first
 * witness whose line does not in *bad, if one does not.
 */
extern int	ev_cosigners(const char *note, size_t len,
						 const EvWitness *witnesses, int nwitnesses,
						 uint64_t *mask, int *bad);

#endif							/* ENVAULT_TRUST_H */
