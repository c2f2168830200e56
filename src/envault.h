/*-------------------------------------------------------------------------
 *
 * envault.h
 *		Interfaces between envault's server-side modules.
 *
 * Layers, bottom up:
 *		crypto.c	XAES-256-GCM, HMAC, randomness, locked memory (OpenSSL)
 *		format.c	byte layouts of ciphertexts, wrapped keys, associated data
 *		secrets.c	master key and pepper: settings, loading, check values
 *		keycache.c	unwrapped keys cached in locked memory; invalidation
 *		keywrap.c	wrapping and unwrapping tenant keys and data keys
 *		spi.c		privileged SPI as the envault schema's owner
 *		keystore.c	tenant keys and data keys: tables, lookups, rotation
 *		errors.c	SQLSTATEs and messages shared by the SQL wrappers
 *		tenant.c	the current tenant, and who may use which tenant's keys
 *		tokens.c	API tokens stored as pepper-HMACs
 *		encrypt.c	SQL wrappers of the data path (env_encrypt ...)
 *		keys.c		SQL wrappers of key management (create_tenant ...)
 *		note.c		base64, signed notes and checkpoint text (plain C)
 *		chainfmt.c	the bytes a chain row hash covers (plain C)
 *		canon.c		canonical text of column values, for row hashes
 *		chain.c		audit chains: registry, insert trigger, per-tenant heads
 *		chainguard.c	refusing changes to chained tables (event triggers)
 *		chainmeaning.c	what a chained table's columns mean, as the guard compares it
 *		merkle.c	RFC 6962 Merkle tree heads and proofs (plain C)
 *		chaintree.c	each tenant's chain as a Merkle tree: heads, proofs
 *		checkpoint.c	the signing key and signed checkpoints
 *		chainverify.c	verify_chain, export_chain, purge_chain
 *		accesslog.c	the secret access log: counting, queueing (backends)
 *		accessworker.c	the background worker that writes the access log
 *		secretstore.c	per-tenant secrets: put_secret, get_secret ...
 *		scaleout.c	envault on Citus: reference key tables, two-phase commits
 *
 * Key material is reachable only through secrets.c and keystore.c (with
 * keycache.c and keywrap.c, which serve keystore.c only).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_H
#define ENVAULT_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "access/skey.h"
#include "utils/rel.h"

#include "chainfmt.h"
#include "compat.h"
#include "crypto.h"
#include "format.h"
#include "note.h"

/* the key store: privileged SPI, keys, and the changes of key state */
#include "spi.h"
#include "keystore.h"
#include "keycache.h"

/* SQLSTATE of every ciphertext authentication failure: class 22, "V01" */
#define ERRCODE_ENVAULT_AUTH_FAILED		MAKE_SQLSTATE('2','2','V','0','1')

/* secrets.c */
extern void env_secrets_init(void);
extern const EnvXaesKey *env_master_key(void);
extern const uint8 *env_master_kcv(void);
extern const EnvXaesKey *env_previous_master_key(const uint8 **kcv);
extern const uint8 *env_pepper(bool previous, const uint8 **kcv);
extern char *env_kcv_fingerprint(const uint8 *kcv);
extern void env_context_mac(const uint8 *data, size_t len, uint8 *mac);
extern void env_customer_key(const char *tenant, uint8 *key, uint8 *kcv);
extern bool env_check_hex_setting(const char *name, const char *use_instead,
								  char **newval, bool *refused);
extern void env_error_hex_refused(const char *name, const char *use_instead);

/* encrypt.c */
extern bytea *env_open_secret(bytea *ciphertext, bytea *aad,
							  const char *tenant, size_t tenant_len,
							  const char *secret);
extern bytea *env_seal_with_key(const EnvDataKey *key, const uint8 *pt,
								size_t ptlen, bytea *aad);
extern bytea *env_open_ciphertext(bytea *ciphertext, bytea *aad,
								  const EnvDataKey **key_out);

/* tenant.c */
extern void env_tenant_init(void);
extern void env_tenant_check(const char *tenant, size_t len, bool for_ciphertext);
extern const char *env_tenant_token_id(void);
extern void env_tenant_revalidate(void);

/* tokens.c */
extern bool env_token_verify(text *token, char *tenant_out);

/* errors.c */
extern void env_check_tenant_name(const char *tenant, size_t len);
extern void env_check_purpose_name(const char *purpose, size_t len);
extern ENV_NORETURN void env_error_crypto(EnvCryptoStatus status, const char *what) ENV_NORETURN_AFTER;
extern ENV_NORETURN void env_error_auth_failed(void) ENV_NORETURN_AFTER;

/* tokens.c */

/* Why a token that verified once may no longer be valid */
typedef enum EnvTokenState
{
	ENV_TOKEN_ALIVE = 0,
	ENV_TOKEN_REVOKED,
	ENV_TOKEN_EXPIRED,
	ENV_TOKEN_TENANT_REVOKED,
	ENV_TOKEN_TENANT_DESTROYED,
	ENV_TOKEN_GONE				/* no such token (any more) */
} EnvTokenState;

/*
 * env_token_verify() that also returns the token's id (ENV_TOKEN_ID_HEXLEN
 * + 1 bytes) and its expiry (DT_NOEND when it has none).
 */
extern bool env_token_verify_ex(text *token, char *tenant_out, char *id_out,
								TimestampTz *expires_out);
/* Is a token that verified earlier, for this tenant, still valid now? */
extern EnvTokenState env_token_state(const char *token_id, const char *tenant,
									 TimestampTz *expires_out);
extern const char *env_token_state_text(EnvTokenState state);
extern uint64 env_tokens_revoke_tenant(EnvSpi *s, Datum tenant);

/*
 * errors.c: warn, once per process, that key memory could not be locked
 * (call right after the failed mlock, with its errno).
 */
extern void env_warn_memory_unlocked(void);

/* canon.c */
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

/* chain.c */
#define ENV_CHAIN_SEQ_COL		"envault_seq"
#define ENV_CHAIN_AT_COL		"envault_at"
#define ENV_CHAIN_PREV_COL		"envault_prev"
#define ENV_CHAIN_HASH_COL		"envault_hash"
#define ENV_CHAIN_TRIGGER		"zz_envault_chain"

/* One hashed column of a chained table */
typedef struct EnvChainCol
{
	AttrNumber	attnum;
	EnvCanon	canon;
	char	   *name;
	char	   *type;			/* as hashed: format_type, schema-qualified */
} EnvChainCol;

/* What envault knows of a chained table; see env_chain_get() */
typedef struct EnvChain
{
	Oid			relid;
	int32		chain_id;
	char	   *identity;		/* the chain's name, as hashed */
	size_t		identity_len;
	AttrNumber	tenant_attnum;
	int			tenant_col;		/* index of the tenant column in cols */
	AttrNumber	seq_attnum;
	AttrNumber	at_attnum;
	AttrNumber	prev_attnum;
	AttrNumber	hash_attnum;
	Oid			index_oid;		/* an index on (tenant, envault_seq), if any */
	Oid			tenant_eq_proc;	/* equality of the index's first column */
	Oid			tenant_collation;
	Oid			tenant_typid;
	int			ncols;
	EnvChainCol *cols;
	uint8		columns[ENV_CHAIN_HASH_LEN];	/* hash of their names and types */
	bool		pinned;			/* some column needs pinned settings */
	bool		builtin;		/* one of envault's own chains */
	bool		valid;
	MemoryContext cxt;
} EnvChain;

/* The canonical text of a row's tenant (NULL for the chain without one) */
typedef struct EnvChainTenant
{
	const char *text;
	size_t		len;
	bool		isnull;
	char		buf[ENV_CANON_BUFLEN];
} EnvChainTenant;

extern void env_chain_init(void);
extern EnvChain *env_chain_get(Oid relid);
extern bool env_chain_registered(Oid relid);
extern EnvChain *env_chain_require(Oid relid);
extern void env_chain_check_access(Oid relid, bool owner);
extern Datum env_chain_tenant_value(EnvChain *ch, text *tenant);
extern Datum env_chain_tenant_arg(EnvChain *ch, text *arg, EnvChainTenant *t);
extern bool env_chain_written(EnvChain *ch, const EnvChainTenant *t);
extern bool env_relation_has_block(Relation rel, BlockNumber block);
extern Relation env_chain_index_open(EnvChain *ch);
extern void env_chain_tenant_key(EnvChain *ch, ScanKey key, bool isnull,
								 Datum value);
extern void env_chain_tenant(EnvChain *ch, Datum *values, bool *nulls,
							 EnvChainTenant *t);
extern void env_chain_row_hash(EnvChain *ch, Datum *values, bool *nulls,
							   const EnvChainTenant *t, uint64 seq,
							   TimestampTz at, const uint8 *prev, uint8 *out);
extern bool env_chain_internal_ddl(void);
extern Oid	env_chain_purging(void);
extern void env_chain_set_purging(Oid relid);

/* chainguard.c */
extern bool env_chain_trigger_function(Oid fnoid, bool insert_only);

/* chaintree.c */
extern void env_chain_tree_update(EnvChain *ch, text *tenant, int64 purged);
struct EnvMerkleFrontier;
extern bool env_chain_tree_frontier(EnvChain *ch, text *tenant, int64 size,
									struct EnvMerkleFrontier *out);
extern bool env_chain_tree_prove(EnvChain *ch, text *tenant, int64 size,
								 uint8 *root, int64 old_size, bool old_tree,
								 uint8 (*proof)[ENV_CHAIN_HASH_LEN], int *nproof);

/* chainmeaning.c */
extern char *env_chain_meaning_of(Relation rel);

/* accesslog.c */
extern void env_access_log_init(void);
extern void env_access_record(const EnvDataKey *key, const char *secret);

/* checkpoint.c */
extern void env_checkpoint_init(void);
extern void env_checkpoint_purge(EnvChain *ch, const EnvChainTenant *t);

/* What a signer or witness is told: a proof that a tree extends old_size */
typedef struct EnvTreeProof
{
	int64		old_size;		/* 0: none */
	int			n;
	uint8		hashes[64][ENV_CHAIN_HASH_LEN];
} EnvTreeProof;

struct StringInfoData;
extern size_t env_run_filter(const char *name, const char *command,
							 const char *input, size_t len, char *out,
							 size_t out_max);
extern void env_append_proof(struct StringInfoData *buf,
							 const EnvTreeProof *proof);
extern int64 env_size_reply(const char *out);

/* witness.c */
extern void env_witness_init(void);
extern char *env_database_id(void);
extern int	env_checkpoint_check(const char *note, size_t len,
								 EnvCheckpoint *cp);

#endif							/* ENVAULT_H */
