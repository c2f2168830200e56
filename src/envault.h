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
 *		lifecycle.c	SQL wrappers of retiring, unretiring, destroying keys,
 *				revoking and crypto-shredding tenants
 *		note.c		base64, signed notes and checkpoint text (plain C)
 *		chainfmt.c	the bytes a chain row hash covers (plain C)
 *		canon.c		canonical text of column values, for row hashes
 *		chain.c		audit chains: the registry of chained tables, row hashes
 *		chainheads.c	per-tenant chain heads, their locks, transaction callbacks
 *		chaintrigger.c	the chain triggers, refusing ON CONFLICT (executor hook)
 *		chainenable.c	enable, distribute and disable audit chains, the backfill
 *		chainguard.c	refusing changes to chained tables (event triggers)
 *		chainmeaning.c	what a chained table's columns mean, as the guard compares it
 *		merkle.c	RFC 6962 Merkle tree heads and proofs (plain C)
 *		chaintree.c	each tenant's chain as a Merkle tree: heads, proofs
 *		chainroute.c	a distributed table's chain: calls on a tenant's shard (Citus)
 *		checkpoint.c	the signing key and signed checkpoints
 *		witness.c	witnesses' cosignatures of checkpoints (cosign)
 *		chainverify.c	verify_chain, export_chain
 *		chainpurge.c	purge_chain, set_chain_retention
 *		accesslog.c	the secret access log: counting, queueing (backends)
 *		accessworker.c	the background worker that writes the access log
 *		secretstore.c	per-tenant secrets: put_secret, get_secret ...
 *		scaleout.c	envault on Citus: reference key tables, two-phase commits
 *
 * Each module's interface is in its header (masterkey.h for masterkey.c
 * ...); this header includes those that most modules use, and declares the
 * errors every module shares (errors.c).  The others are included where
 * they are used: accesslog.h, keywrap.h (keystore.c only), rls.h, merkle.h,
 * scaleout.h, and chain_internal.h, shared by the chain*.c files only.
 * Modules that only SQL calls (keys.c, lifecycle.c, secretstore.c) and
 * the access log's worker (accessworker.c, which PostgreSQL starts by the
 * name of its entry point; it shares accesslog.h) have no header.
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
 * The interfaces of the modules, one header each, so that every module
 * sees them (the access log's, accesslog.h, is included where it is used).
 */
#include "spi.h"
#include "masterkey.h"
#include "names.h"
#include "keystore.h"
#include "keycache.h"
#include "tenant.h"
#include "tokens.h"
#include "encrypt.h"
#include "canon.h"
#include "chain.h"
#include "chainguard.h"
#include "chaintree.h"
#include "chainroute.h"
#include "chainmeaning.h"
#include "checkpoint.h"
#include "witness.h"

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

#endif							/* ENVAULT_H */
