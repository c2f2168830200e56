/*-------------------------------------------------------------------------
 *
 * tokens.c
 *		API tokens stored as pepper-HMACs: issue, verify, revoke, and the
 *		plain pepper HMAC.
 *
 * A token is shown once, at issue; envault.tokens keeps only
 * HMAC-SHA256(pepper, "envault/v1/token" || id || secret) and the version
 * (check value) of the pepper that made it.  Verification recomputes the
 * HMAC with that pepper, compares in constant time, and, when the token was
 * made under the previous pepper during a rotation, stores it again under
 * the current one.  Tokens of revoked or destroyed tenants verify to nothing.
 * Revoking a token is a key-state change (env_keystore_changed), so that
 * every backend verifies the token of its tenant context again before its
 * next use (tenant.c).
 *
 * Secrets: the pepper HMAC keys are prepared once per process (OpenSSL
 * holds their state; it is cleansed when freed at process exit).  A token's
 * secret, and the token issue_token makes, live in stack buffers that are
 * wiped before returning, on error paths too (PG_FINALLY); the token text
 * returned by issue_token belongs to the client from then on.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "tokens.h"

#include "scaleout.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

static const char tok_label[] = "envault/v1/token";

typedef struct TokPepper
{
	EnvHmacKey	key;
	char		version[17];	/* fingerprint of the pepper's check value */
	bool		present;
} TokPepper;

static TokPepper tok_current;
static TokPepper tok_previous;
static pid_t tok_prepared_pid = 0;
static bool tok_exit_registered = false;

static void
tok_clear_at_exit(int code, Datum arg)
{
	env_hmac_key_clear(&tok_current.key);
	env_hmac_key_clear(&tok_previous.key);
}

static void
tok_key_one(TokPepper *tp, const uint8 *pepper, const uint8 *kcv)
{
	char	   *fp;

	if (pepper == NULL)
		return;
	if (!env_hmac_key_init(&tp->key, pepper, ENV_KEY_LEN))
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "preparing the pepper");
	fp = env_kcv_fingerprint(kcv);
	strlcpy(tp->version, fp, sizeof(tp->version));
	pfree(fp);
	tp->present = true;
}

/*
 * Prepare the peppers in this process; an error if the pepper, or a
 * configured previous pepper, cannot be loaded.  Both are loaded before
 * either is keyed, and the exit callback is in place before anything is,
 * so a failure leaves no keyed state behind.
 */
static void
tok_prepare(void)
{
	const uint8 *cur_kcv;
	const uint8 *prev_kcv;
	const uint8 *cur;
	const uint8 *prev;

	if (tok_prepared_pid == MyProcPid)
		return;
	cur = env_pepper(false, &cur_kcv);
	prev = env_pepper(true, &prev_kcv);
	if (!tok_exit_registered)
	{
		on_proc_exit(tok_clear_at_exit, (Datum) 0);
		tok_exit_registered = true;
	}
	tok_clear_at_exit(0, (Datum) 0);
	memset(&tok_current, 0, sizeof(tok_current));
	memset(&tok_previous, 0, sizeof(tok_previous));
	tok_key_one(&tok_current, cur, cur_kcv);
	tok_key_one(&tok_previous, prev, prev_kcv);
	tok_prepared_pid = MyProcPid;
}

/* HMAC of a token under one pepper */
static void
tok_mac(const TokPepper *tp, const uint8 *id, const uint8 *secret, uint8 *out)
{
	uint8		msg[sizeof(tok_label) - 1 + ENV_TOKEN_ID_BYTES + ENV_TOKEN_SECRET_BYTES];
	bool		ok;

	memcpy(msg, tok_label, sizeof(tok_label) - 1);
	memcpy(msg + sizeof(tok_label) - 1, id, ENV_TOKEN_ID_BYTES);
	memcpy(msg + sizeof(tok_label) - 1 + ENV_TOKEN_ID_BYTES, secret,
		   ENV_TOKEN_SECRET_BYTES);
	ok = env_hmac(&tp->key, msg, sizeof(msg), out);
	env_wipe(msg, sizeof(msg));
	if (!ok)
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "computing a token HMAC");
}

static void
tok_hex(const uint8 *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t		i;

	for (i = 0; i < len; i++)
	{
		out[2 * i] = digits[data[i] >> 4];
		out[2 * i + 1] = digits[data[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

static bytea *
tok_bytea(const uint8 *data, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return b;
}

#define TOK_Q_INSERT \
	"INSERT INTO envault.tokens" \
	"  (token_id, tenant, token_hmac, pepper_version, label, created_by, expires_at)" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7)"

/*
 * SQL function: envault.issue_token(tenant text, label text,
 *                                   expires_at timestamptz) returns text
 */
PG_FUNCTION_INFO_V1(envault_issue_token);
Datum
envault_issue_token(PG_FUNCTION_ARGS)
{
	text	   *tenant;
	text	   *label;
	uint8		id[ENV_TOKEN_ID_BYTES];
	uint8		secret[ENV_TOKEN_SECRET_BYTES];
	uint8		mac[32];
	char		id_hex[ENV_TOKEN_ID_HEXLEN + 1];
	char		token[ENV_TOKEN_LEN + 1];
	EnvSpi		s;
	Oid			types[7] = {TEXTOID, TEXTOID, BYTEAOID, TEXTOID, TEXTOID,
	NAMEOID, TIMESTAMPTZOID};
	Datum		values[7];
	char		nulls[7 + 1] = "       ";
	text	   *volatile result = NULL;

	env_arg_not_null(fcinfo, 0, "tenant");
	env_arg_not_null(fcinfo, 1, "label");
	tenant = PG_GETARG_TEXT_PP(0);
	label = PG_GETARG_TEXT_PP(1);
	if (!env_keystore_tenant_exists(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("envault tenant \"%s\" does not exist",
						text_to_cstring(tenant))));
	if (!PG_ARGISNULL(2) &&
		PG_GETARG_TIMESTAMPTZ(2) <= GetCurrentTransactionStartTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expires_at must be in the future")));
	tok_prepare();

	/*
	 * The secret and the token exist on this stack only, and are wiped
	 * whatever happens; the returned copy is made once the token is stored.
	 */
	PG_TRY();
	{
		if (!env_random_bytes(id, sizeof(id)) ||
			!env_random_bytes(secret, sizeof(secret)))
			env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "generating a token");
		tok_mac(&tok_current, id, secret, mac);
		env_token_format(token, id, secret);
		env_wipe(secret, sizeof(secret));
		tok_hex(id, ENV_TOKEN_ID_BYTES, id_hex);

		values[0] = CStringGetTextDatum(id_hex);
		values[1] = PointerGetDatum(tenant);
		values[2] = PointerGetDatum(tok_bytea(mac, sizeof(mac)));
		values[3] = CStringGetTextDatum(tok_current.version);
		values[4] = PointerGetDatum(label);
		if (PG_ARGISNULL(2))
			nulls[6] = 'n';
		else
			values[6] = PG_GETARG_DATUM(2);
		env_spi_begin(&s);
		values[5] = CStringGetDatum(s.caller_name);
		if (SPI_execute_with_args(TOK_Q_INSERT, 7, types, values, nulls,
								  false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not store the token");
		env_spi_end(&s);
		result = cstring_to_text(token);
	}
	PG_FINALLY();
	{
		env_wipe(secret, sizeof(secret));
		env_wipe(token, sizeof(token));
	}
	PG_END_TRY();
	PG_RETURN_TEXT_P(result);
}

/*
 * What verification needs of a token's row and its tenant's, read straight
 * from the tables' primary keys (one call per request makes executor
 * start-up for a query the larger part of the cost).  Expiry is judged at
 * the start of the statement, as in env_token_state().
 */
typedef struct TokRow
{
	char		tenant[ENV_TENANT_MAXLEN + 1];
	uint8		hmac[32];
	int			hmac_len;		/* -1: longer than any HMAC */
	char		version[64];
	bool		dead;			/* revoked, expired, or its tenant not active */
	bool		stale;			/* last_used_at unset or over a minute old */
	TimestampTz expires;		/* DT_NOEND for none */
} TokRow;

/*
 * Where verification reads: the tables, their primary keys and the columns
 * it needs, looked up once per process and looked up again after any
 * relcache invalidation of one of them (or of everything), which DROP,
 * ALTER and ALTER EXTENSION UPDATE all send.
 */
typedef struct TokRels
{
	bool		valid;
	Oid			tokens;
	Oid			tenants;
	Oid			revocations;	/* InvalidOid before ALTER EXTENSION UPDATE to
								 * 0.3.0 */
	Oid			tokens_pk;
	Oid			tenants_pk;
	Oid			revocations_pk;
	AttrNumber	tenant;			/* of envault.tokens ... */
	AttrNumber	hmac;
	AttrNumber	version;
	AttrNumber	revoked_at;
	AttrNumber	expires_at;
	AttrNumber	last_used_at;
	AttrNumber	state;			/* ... and of envault.tenants */
} TokRels;

static TokRels tok_rels;
static bool tok_callback_registered = false;

static void
tok_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == tok_rels.tokens ||
		relid == tok_rels.tenants || relid == tok_rels.revocations ||
		relid == tok_rels.tokens_pk || relid == tok_rels.tenants_pk ||
		relid == tok_rels.revocations_pk)
		tok_rels.valid = false;
}

static AttrNumber
tok_attnum(Relation rel, const char *name)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped &&
			strcmp(NameStr(TupleDescAttr(desc, i)->attname), name) == 0)
			return (AttrNumber) (i + 1);
	elog(ERROR, "relation \"%s\" has no column \"%s\"",
		 RelationGetRelationName(rel), name);
	return InvalidAttrNumber;	/* keep compiler quiet */
}

static Oid
tok_pk(Relation rel)
{
	Oid			index = env_relation_pk_index(rel);

	if (!OidIsValid(index))
		elog(ERROR, "relation \"%s\" has no primary key", RelationGetRelationName(rel));
	return index;
}

/*
 * Fill tok_rels from the open tables (the caller holds their locks, so no
 * invalidation of them can arrive in between).
 */
static void
tok_rels_fill(Relation tokens, Relation tenants, Relation revocations)
{
	TokRels		r;

	r.tokens = RelationGetRelid(tokens);
	r.tenants = RelationGetRelid(tenants);
	r.revocations = revocations ? RelationGetRelid(revocations) : InvalidOid;
	r.tokens_pk = tok_pk(tokens);
	r.tenants_pk = tok_pk(tenants);
	r.revocations_pk = revocations ? tok_pk(revocations) : InvalidOid;
	r.tenant = tok_attnum(tokens, "tenant");
	r.hmac = tok_attnum(tokens, "token_hmac");
	r.version = tok_attnum(tokens, "pepper_version");
	r.revoked_at = tok_attnum(tokens, "revoked_at");
	r.expires_at = tok_attnum(tokens, "expires_at");
	r.last_used_at = tok_attnum(tokens, "last_used_at");
	r.state = tok_attnum(tenants, "state");
	r.valid = true;
	tok_rels = r;
}

/*
 * Open the three tables, by the cached OIDs when they are still valid.
 * Locks are kept until the end of the transaction, like the executor's, so
 * that later calls in it find them held.
 */
static void
tok_open(Relation *tokens, Relation *tenants, Relation *revocations)
{
	if (!tok_callback_registered)
	{
		CacheRegisterRelcacheCallback(tok_relcache_callback, (Datum) 0);
		tok_callback_registered = true;
	}
	if (tok_rels.valid)
	{
		/* an invalidation processed while locking clears tok_rels.valid */
		*tokens = table_open(tok_rels.tokens, AccessShareLock);
		*tenants = table_open(tok_rels.tenants, AccessShareLock);
		*revocations = OidIsValid(tok_rels.revocations) ?
			table_open(tok_rels.revocations, AccessShareLock) : NULL;
		if (tok_rels.valid)
			return;
		if (*revocations)
			table_close(*revocations, NoLock);
		table_close(*tenants, NoLock);
		table_close(*tokens, NoLock);
	}
	{
		Oid			nsp = get_namespace_oid("envault", false);
		Oid			tokens_relid = get_relname_relid("tokens", nsp);
		Oid			tenants_relid = get_relname_relid("tenants", nsp);
		Oid			revocations_relid = get_relname_relid("token_revocations", nsp);

		/* on Citus, tenants is a reference table: read this node's copy */
		if (OidIsValid(tenants_relid))
			tenants_relid = env_local_copy(tenants_relid);

		if (!OidIsValid(tokens_relid) || !OidIsValid(tenants_relid))
			elog(ERROR, "envault.tokens or envault.tenants does not exist");
		*tokens = table_open(tokens_relid, AccessShareLock);
		*tenants = table_open(tenants_relid, AccessShareLock);
		*revocations = OidIsValid(revocations_relid) ?
			table_open(revocations_relid, AccessShareLock) : NULL;
		tok_rels_fill(*tokens, *tenants, *revocations);
	}
}

/*
 * Where each token's and tenant's row was last found: the index entry's
 * location (the root of its chain of HOT versions), for up to
 * TOK_TIDS_MAX keys per backend.  A service presents the same token on
 * every request, and its row is then read with one heap fetch instead of a
 * descent of the primary key.  The location is only a hint: the version
 * found there must be visible to the snapshot and have the same key, or
 * the index is searched (a row updated other than HOT, a table rewritten).
 * The cache key is a hash of the key text; a collision only costs a miss.
 */
#define TOK_TIDS_MAX	16384

typedef struct TokTidKey
{
	Oid			relid;
	uint64		hash;
} TokTidKey;

typedef struct TokTidEntry
{
	TokTidKey	key;			/* hash key */
	ItemPointerData tid;
} TokTidEntry;

static HTAB *tok_tids = NULL;

static TokTidEntry *
tok_tid_entry(Relation heap, const char *key, bool create)
{
	TokTidKey	k;

	if (tok_tids == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(TokTidKey);
		ctl.entrysize = sizeof(TokTidEntry);
		tok_tids = hash_create("envault token locations", 256, &ctl,
							   HASH_ELEM | HASH_BLOBS);
	}
	memset(&k, 0, sizeof(k));
	k.relid = RelationGetRelid(heap);
	k.hash = hash_bytes_extended((const unsigned char *) key, (int) strlen(key), 0);
	if (create && hash_get_num_entries(tok_tids) >= TOK_TIDS_MAX)
		create = false;
	return hash_search(tok_tids, &k, create ? HASH_ENTER : HASH_FIND, NULL);
}

/* Does the text column attnum of the row in slot equal key? */
static bool
tok_slot_key_is(TupleTableSlot *slot, AttrNumber attnum, const char *key)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, attnum, &isnull);
	size_t		len = strlen(key);

	return !isnull && VARSIZE_ANY_EXHDR(DatumGetPointer(d)) == len &&
		memcmp(VARDATA_ANY(DatumGetPointer(d)), key, len) == 0;
}

/* The row at the remembered location of key, if it is still key's row. */
static bool
tok_fetch_at(Relation heap, const char *key, Snapshot snap,
			 TupleTableSlot *slot)
{
	TokTidEntry *e = tok_tid_entry(heap, key, false);
	IndexFetchTableData *fetch;
	bool		call_again = false;
	bool		all_dead = false;
	bool		found;

	if (e == NULL || !ItemPointerIsValid(&e->tid) ||
		!env_relation_has_block(heap, ItemPointerGetBlockNumber(&e->tid)))
		return false;
	fetch = table_index_fetch_begin(heap);
	found = table_index_fetch_tuple(fetch, &e->tid, snap, slot, &call_again,
									&all_dead);
	table_index_fetch_end(fetch);
	/* the primary key is the first column of each of these tables */
	if (found && !tok_slot_key_is(slot, 1, key))
	{
		ExecClearTuple(slot);
		found = false;
	}
	return found;
}

/*
 * Find the row of an envault table whose text primary key (one column, the
 * first) is key, as snap sees it, into slot: at its remembered location,
 * or through the index, with the index's own equality in its collation.
 */
static bool
tok_probe(Relation heap, Oid indexid, const char *key, Snapshot snap,
		  TupleTableSlot *slot)
{
	Relation	index;
	IndexScanDesc scan;
	ScanKeyData sk;
	bool		found;

	if (tok_fetch_at(heap, key, snap, slot))
		return true;
	index = index_open(indexid, AccessShareLock);
	ScanKeyEntryInitialize(&sk, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   CStringGetTextDatum(key));
	scan = env_index_beginscan(heap, index, snap, 1, 0);
	index_rescan(scan, &sk, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
	{
		TokTidEntry *e = tok_tid_entry(heap, key, true);

		if (e != NULL)
			e->tid = scan->xs_heaptid;
	}
	index_endscan(scan);
	index_close(index, NoLock);
	return found;
}

static char *
tok_text_att(TupleTableSlot *slot, AttrNumber attnum, const char *what,
			 char *buf, size_t size)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, attnum, &isnull);
	text	   *t;
	size_t		len;

	if (isnull)
		elog(ERROR, "envault.%s is null", what);
	t = DatumGetTextPP(d);
	len = Min(VARSIZE_ANY_EXHDR(t), size - 1);
	memcpy(buf, VARDATA_ANY(t), len);
	buf[len] = '\0';
	return buf;
}

/* The rest of tok_lookup(), once the token's row is found. */
static bool
tok_read_row(const char *id_hex, TupleTableSlot *tslot, Relation tenants,
			 Relation revocations, Snapshot snap, TokRow *row)
{
	TupleTableSlot *slot;
	bool		isnull;
	bool		revoked;
	Datum		d;
	char		state[16];

	tok_text_att(tslot, tok_rels.tenant, "tokens.tenant", row->tenant,
				 sizeof(row->tenant));
	d = slot_getattr(tslot, tok_rels.hmac, &isnull);
	row->hmac_len = -1;
	if (!isnull)
	{
		bytea	   *b = DatumGetByteaPP(d);

		if (VARSIZE_ANY_EXHDR(b) <= sizeof(row->hmac))
		{
			row->hmac_len = (int) VARSIZE_ANY_EXHDR(b);
			memcpy(row->hmac, VARDATA_ANY(b), row->hmac_len);
		}
	}
	tok_text_att(tslot, tok_rels.version, "tokens.pepper_version",
				 row->version, sizeof(row->version));

	/*
	 * revoked: a row in envault.token_revocations, or (before 0.3.0)
	 * revoked_at
	 */
	(void) slot_getattr(tslot, tok_rels.revoked_at, &isnull);
	revoked = !isnull;
	d = slot_getattr(tslot, tok_rels.expires_at, &isnull);
	if (isnull)
		TIMESTAMP_NOEND(row->expires);
	else
		row->expires = DatumGetTimestampTz(d);
	d = slot_getattr(tslot, tok_rels.last_used_at, &isnull);
	row->stale = isnull ||
		DatumGetTimestampTz(d) < GetCurrentTransactionStartTimestamp() - 60 * USECS_PER_SEC;

	slot = table_slot_create(tenants, NULL);
	if (!tok_probe(tenants, tok_rels.tenants_pk, row->tenant, snap, slot))
	{
		ExecDropSingleTupleTableSlot(slot);
		return false;
	}
	tok_text_att(slot, tok_rels.state, "tenants.state", state, sizeof(state));
	ExecDropSingleTupleTableSlot(slot);
	if (revocations && !revoked)
	{
		slot = table_slot_create(revocations, NULL);
		revoked = tok_probe(revocations, tok_rels.revocations_pk, id_hex, snap, slot);
		ExecDropSingleTupleTableSlot(slot);
	}
	row->dead = revoked || strcmp(state, "active") != 0 ||
		(!TIMESTAMP_NOT_FINITE(row->expires) &&
		 row->expires <= GetCurrentStatementStartTimestamp());
	return true;
}

/*
 * Look a token id up, as of now (the latest committed state, like every key
 * table read: a revocation bites at once).  False when there is no such
 * token, or its tenant is gone.
 */
static bool
tok_lookup(const char *id_hex, TokRow *row)
{
	Relation	tokens;
	Relation	tenants;
	Relation	revocations;
	Snapshot	snap;
	TupleTableSlot *slot;
	bool		found;

	tok_open(&tokens, &tenants, &revocations);
	snap = RegisterSnapshot(GetLatestSnapshot());
	slot = table_slot_create(tokens, NULL);
	found = tok_probe(tokens, tok_rels.tokens_pk, id_hex, snap, slot) &&
		tok_read_row(id_hex, slot, tenants, revocations, snap, row);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	if (revocations)
		table_close(revocations, NoLock);
	table_close(tenants, NoLock);
	table_close(tokens, NoLock);
	return found;
}

#define TOK_Q_TOUCH \
	"UPDATE envault.tokens SET last_used_at = pg_catalog.now()" \
	" WHERE token_id OPERATOR(pg_catalog.=) $1"

#define TOK_Q_REHMAC \
	"UPDATE envault.tokens SET token_hmac = $2, pepper_version = $3" \
	" WHERE token_id OPERATOR(pg_catalog.=) $1"

/*
 * Verify a token.  On success, copies its tenant into tenant_out (at least
 * ENV_TENANT_MAXLEN + 1 bytes) and returns true.  Unknown, expired, revoked
 * and malformed tokens all return false.  last_used_at is updated at most
 * once a minute per token, and not in read-only transactions.
 */
bool
env_token_verify(text *token, char *tenant_out)
{
	char		id[ENV_TOKEN_ID_HEXLEN + 1];
	TimestampTz expires;

	return env_token_verify_ex(token, tenant_out, id, &expires);
}

/*
 * env_token_verify(), also giving the token's id (ENV_TOKEN_ID_HEXLEN + 1
 * bytes) and expiry (DT_NOEND for none) on success.
 */
static bool tok_verify_parsed(const uint8 *id, const uint8 *secret,
							  char *tenant_out, char *id_out,
							  TimestampTz *expires_out);

bool
env_token_verify_ex(text *token, char *tenant_out, char *id_out,
					TimestampTz *expires_out)
{
	uint8		id[ENV_TOKEN_ID_BYTES];
	uint8		secret[ENV_TOKEN_SECRET_BYTES];
	volatile bool ok = false;

	if (env_token_parse(VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token), id,
						secret) != ENV_TOKEN_OK)
		return false;			/* the secret is wiped already */

	/* the secret is wiped whatever happens, errors included */
	PG_TRY();
	{
		ok = tok_verify_parsed(id, secret, tenant_out, id_out, expires_out);
	}
	PG_FINALLY();
	{
		env_wipe(secret, sizeof(secret));
	}
	PG_END_TRY();
	return ok;
}

/* The rest of env_token_verify_ex(), once the token parsed. */
static bool
tok_verify_parsed(const uint8 *id, const uint8 *secret, char *tenant_out,
				  char *id_out, TimestampTz *expires_out)
{
	uint8		mac[32];
	char		id_hex[ENV_TOKEN_ID_HEXLEN + 1];
	EnvSpi		s;
	Datum		values[3];
	Oid			types[3] = {TEXTOID, BYTEAOID, TEXTOID};
	TokRow		row;
	TokPepper  *tp;
	bool		ok;

	tok_prepare();
	tok_hex(id, ENV_TOKEN_ID_BYTES, id_hex);
	if (!tok_lookup(id_hex, &row))
		return false;

	if (strcmp(row.version, tok_current.version) == 0)
		tp = &tok_current;
	else if (tok_previous.present && strcmp(row.version, tok_previous.version) == 0)
		tp = &tok_previous;
	else
		tp = NULL;				/* made under a pepper no longer configured */

	ok = false;
	if (tp != NULL)
	{
		tok_mac(tp, id, secret, mac);
		ok = row.hmac_len == (int) sizeof(mac) &&
			env_memcmp_ct(row.hmac, mac, sizeof(mac)) == 0;
	}
	ok = ok && !row.dead;

	if (ok && !XactReadOnly && !RecoveryInProgress() &&
		(tp == &tok_previous || row.stale))
	{
		values[0] = CStringGetTextDatum(id_hex);
		env_spi_begin(&s);
		if (tp == &tok_previous)
		{
			tok_mac(&tok_current, id, secret, mac);
			values[1] = PointerGetDatum(tok_bytea(mac, sizeof(mac)));
			values[2] = CStringGetTextDatum(tok_current.version);
			env_spi_run(TOK_Q_REHMAC, 3, types, values, SPI_OK_UPDATE);
		}
		if (row.stale)
			env_spi_run(TOK_Q_TOUCH, 1, types, values, SPI_OK_UPDATE);
		env_spi_end(&s);
	}
	env_wipe(mac, sizeof(mac));
	env_wipe(row.hmac, sizeof(row.hmac));
	if (ok)
	{
		strlcpy(tenant_out, row.tenant, ENV_TENANT_MAXLEN + 1);
		strlcpy(id_out, id_hex, ENV_TOKEN_ID_HEXLEN + 1);
		*expires_out = row.expires;
	}
	return ok;
}

/*
 * Is envault.token_revocations there (0.3.0 on), or is a revocation still
 * tokens.revoked_at (a database not yet updated from an earlier version)?
 */
static bool
tok_have_revocations(void)
{
	Oid			nsp = get_namespace_oid("envault", false);

	return OidIsValid(get_relname_relid("token_revocations", nsp));
}

static const char *
tok_revoked_expr(void)
{
	return tok_have_revocations() ?
		"(k.revoked_at IS NOT NULL OR EXISTS (SELECT FROM envault.token_revocations r"
		" WHERE r.token_id OPERATOR(pg_catalog.=) k.token_id))" :
		"k.revoked_at IS NOT NULL";
}

/* %s: whether the token is revoked (see tok_revoked_expr) */
#define TOK_Q_STATE \
	"SELECT k.tenant, t.state, %s," \
	"       COALESCE((k.expires_at OPERATOR(pg_catalog.<=) pg_catalog.statement_timestamp()), false)," \
	"       k.expires_at" \
	"  FROM envault.tokens k" \
	"  JOIN envault.tenants t ON t.tenant OPERATOR(pg_catalog.=) k.tenant" \
	" WHERE k.token_id OPERATOR(pg_catalog.=) $1"

/*
 * Is the token with this id, which verified earlier for this tenant, still
 * valid now (as of the latest committed state, like every key table read)?
 * No secret is needed: the token was verified when the context was set.
 * *expires_out receives its expiry (DT_NOEND for none) when it is alive.
 */
EnvTokenState
env_token_state(const char *token_id, const char *tenant,
				TimestampTz *expires_out)
{
	EnvSpi		s;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	EnvTokenState result;

	values[0] = CStringGetTextDatum(token_id);
	env_spi_begin(&s);
	env_spi_run(psprintf(TOK_Q_STATE, tok_revoked_expr()), 1, types, values,
				SPI_OK_SELECT);
	if (SPI_processed == 0 ||
		strcmp(env_spi_cstring(&s, 1, &isnull),
			   tenant) != 0)
		result = ENV_TOKEN_GONE;
	else
	{
		char	   *state = env_spi_cstring(&s, 2, &isnull);

		if (strcmp(state, "destroyed") == 0)
			result = ENV_TOKEN_TENANT_DESTROYED;
		else if (strcmp(state, "active") != 0)
			result = ENV_TOKEN_TENANT_REVOKED;
		else if (DatumGetBool(env_spi_col(&s, 3, &isnull, true, 1)))
			result = ENV_TOKEN_REVOKED;
		else if (DatumGetBool(env_spi_col(&s, 4, &isnull, true, 1)))
			result = ENV_TOKEN_EXPIRED;
		else
		{
			result = ENV_TOKEN_ALIVE;
			*expires_out = DatumGetTimestampTz(env_spi_col(&s, 5, &isnull, true, 8));
			if (isnull)
				TIMESTAMP_NOEND(*expires_out);
		}
	}
	env_spi_end(&s);
	return result;
}

/* What happened to a token, as the end of a sentence: "Token X ..." */
const char *
env_token_state_text(EnvTokenState state)
{
	switch (state)
	{
		case ENV_TOKEN_ALIVE:
			return "is valid";
		case ENV_TOKEN_REVOKED:
			return "was revoked";
		case ENV_TOKEN_EXPIRED:
			return "has expired";
		case ENV_TOKEN_TENANT_REVOKED:
			return "belongs to a revoked tenant";
		case ENV_TOKEN_TENANT_DESTROYED:
			return "belongs to a tenant whose keys were destroyed";
		case ENV_TOKEN_GONE:
			break;
	}
	return "no longer exists";
}

#define TOK_Q_REVOKE \
	"INSERT INTO envault.token_revocations (token_id, revoked_by)" \
	" SELECT token_id, $2 FROM envault.tokens WHERE token_id OPERATOR(pg_catalog.=) $1" \
	" ON CONFLICT (token_id) DO NOTHING"

#define TOK_Q_EXISTS \
	"SELECT 1 FROM envault.tokens WHERE token_id OPERATOR(pg_catalog.=) $1"

#define TOK_Q_REVOKE_TENANT \
	"INSERT INTO envault.token_revocations (token_id, revoked_by)" \
	" SELECT token_id, $2 FROM envault.tokens WHERE tenant OPERATOR(pg_catalog.=) $1" \
	" ON CONFLICT (token_id) DO NOTHING"

/* the same in a database not yet updated to 0.3.0 ($2 unused) */
#define TOK_Q_REVOKE_OLD \
	"UPDATE envault.tokens SET revoked_at = pg_catalog.now()" \
	" WHERE token_id OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL" \
	"   AND $2 IS NOT NULL"
#define TOK_Q_REVOKE_TENANT_OLD \
	"UPDATE envault.tokens SET revoked_at = pg_catalog.now()" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND revoked_at IS NULL" \
	"   AND $2 IS NOT NULL"

/*
 * SQL function: envault.revoke_token(token_id text) returns boolean
 *
 * Revoke a token at once: verify_token and authenticate refuse it from now
 * on, and a tenant context it set, in any backend, ends at that backend's
 * next tenant check (the key-state change it signals makes each backend
 * verify the token of its context again).  False if it was revoked already.
 */
PG_FUNCTION_INFO_V1(envault_revoke_token);
Datum
envault_revoke_token(PG_FUNCTION_ARGS)
{
	EnvSpi		s;
	Oid			types[2] = {TEXTOID, NAMEOID};
	Datum		values[2];
	char	   *id;
	bool		revoked;

	env_arg_not_null(fcinfo, 0, "token_id");
	id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	values[0] = PG_GETARG_DATUM(0);
	env_spi_begin(&s);
	values[1] = CStringGetDatum(s.caller_name);
	if (tok_have_revocations())
		env_spi_run(TOK_Q_REVOKE, 2, types, values, SPI_OK_INSERT);
	else
		env_spi_run(TOK_Q_REVOKE_OLD, 2, types, values, SPI_OK_UPDATE);
	revoked = SPI_processed > 0;
	if (revoked)
		env_keystore_changed();
	else
	{
		env_spi_run(TOK_Q_EXISTS, 1, types, values, SPI_OK_SELECT);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("envault token \"%s\" does not exist", id)));
	}
	env_spi_end(&s);
	PG_RETURN_BOOL(revoked);
}

/*
 * Revoke every token of a tenant (a text Datum), in the privileged SPI
 * session s; returns how many were revoked.
 */
uint64
env_tokens_revoke_tenant(EnvSpi *s, Datum tenant)
{
	Oid			types[2] = {TEXTOID, NAMEOID};
	Datum		values[2];

	values[0] = tenant;
	values[1] = CStringGetDatum(s->caller_name);
	if (tok_have_revocations())
		env_spi_run(TOK_Q_REVOKE_TENANT, 2, types, values, SPI_OK_INSERT);
	else
		env_spi_run(TOK_Q_REVOKE_TENANT_OLD, 2, types, values, SPI_OK_UPDATE);
	return SPI_processed;
}

/*
 * SQL function: envault.revoke_tenant_tokens(tenant text) returns integer
 *
 * Revoke every token of a tenant at once, with the same effect on tenant
 * contexts as revoke_token; returns how many were revoked.
 */
PG_FUNCTION_INFO_V1(envault_revoke_tenant_tokens);
Datum
envault_revoke_tenant_tokens(PG_FUNCTION_ARGS)
{
	EnvSpi		s;
	Datum		values[1];
	uint64		n;

	env_arg_not_null(fcinfo, 0, "tenant");
	values[0] = PG_GETARG_DATUM(0);
	env_spi_begin(&s);
	n = env_tokens_revoke_tenant(&s, values[0]);
	if (n > 0)
		env_keystore_changed();
	env_spi_end(&s);
	PG_RETURN_INT32((int32) n);
}

/* SQL function: envault.verify_token(token text) returns text */
PG_FUNCTION_INFO_V1(envault_verify_token);
Datum
envault_verify_token(PG_FUNCTION_ARGS)
{
	char		tenant[ENV_TENANT_MAXLEN + 1];

	if (PG_ARGISNULL(0) || !env_token_verify(PG_GETARG_TEXT_PP(0), tenant))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(tenant));
}

/* SQL function: envault.pepper_hmac(data bytea) returns bytea */
PG_FUNCTION_INFO_V1(envault_pepper_hmac);
Datum
envault_pepper_hmac(PG_FUNCTION_ARGS)
{
	bytea	   *data;
	uint8		mac[32];

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	data = PG_GETARG_BYTEA_PP(0);
	tok_prepare();
	if (!env_hmac(&tok_current.key, (uint8 *) VARDATA_ANY(data),
				  VARSIZE_ANY_EXHDR(data), mac))
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "computing an HMAC");
	PG_RETURN_BYTEA_P(tok_bytea(mac, sizeof(mac)));
}
