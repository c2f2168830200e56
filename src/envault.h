/*-------------------------------------------------------------------------
 *
 * envault.h
 *		Interfaces between envault's server-side modules.
 *
 * Layers, bottom up:
 *		crypto.c	XAES-256-GCM, HMAC, randomness, locked memory (OpenSSL)
 *		format.c	byte layouts of ciphertexts, wrapped keys, associated data
 *		errors.c	SQLSTATEs and messages shared by the SQL wrappers
 *		names.c		what tenant and purpose names may be
 *		masterkey.c	master key and pepper: settings, loading, check values
 *		spi.c		privileged SPI as the envault schema's owner
 *		keycache.c	unwrapped keys cached in locked memory; invalidation
 *		keywrap.c	wrapping and unwrapping tenant keys and data keys
 *		keystore.c	tenant keys and data keys: tables, lookups, rotation
 *		tenant.c	the current tenant, and who may use which tenant's keys
 *		rls.c		row-level security on the current tenant (isolate_table)
 *		tokens.c	API tokens stored as pepper-HMACs
 *		encrypt.c	SQL wrappers of the data path (env_encrypt ...)
 *		keys.c		SQL wrappers of key management (create_tenant ...)
 *		lifecycle.c	SQL wrappers of retiring, restoring, destroying keys
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
 * Each module's interface is in its header (masterkey.h for masterkey.c
 * ...); this header includes those of the modules below the audit chains,
 * declares the chains' modules, and the errors every module shares.
 *
 * Key material is reachable only through masterkey.c and keystore.c (with
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

/*
 * The interfaces of the modules below the audit chains, one header each,
 * so that every module sees them (the chains' own follow below).
 */
#include "spi.h"
#include "masterkey.h"
#include "names.h"
#include "keystore.h"
#include "keycache.h"
#include "tenant.h"
#include "tokens.h"
#include "encrypt.h"

/* SQLSTATE of every ciphertext authentication failure: class 22, "V01" */
#define ERRCODE_ENVAULT_AUTH_FAILED		MAKE_SQLSTATE('2','2','V','0','1')

/* errors.c: the errors that envault's SQL functions share */
extern ENV_NORETURN void env_error_crypto(EnvCryptoStatus status, const char *what) ENV_NORETURN_AFTER;
extern ENV_NORETURN void env_error_auth_failed(void) ENV_NORETURN_AFTER;
extern void env_arg_not_null(FunctionCallInfo fcinfo, int argno,
							 const char *what);
extern text *env_arg_text(FunctionCallInfo fcinfo, int argno, const char *what);

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
