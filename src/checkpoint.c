/*-------------------------------------------------------------------------
 *
 * checkpoint.c
 *		Signed checkpoints of audit chains: the signing key, checkpoint(),
 *		signing_public_key(), and checking a stored checkpoint.
 *
 * A checkpoint is a C2SP signed note whose text is a tlog-checkpoint body:
 * the origin (database, chain, tenant), the head's sequence number, the
 * head's hash in base64, and the time of signing; signed with Ed25519 by
 * the key in envault.signing_key_file.  Checkpoints are stored in
 * envault.checkpoints and written to the server log, so that a copy exists
 * outside the database.
 *
 * Secrets: the signing key file is read into a stack buffer that is wiped
 * before it goes out of scope; the key itself lives in an OpenSSL key object
 * for the duration of one call and is freed (and wiped by OpenSSL) on every
 * path, errors included.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "merkle.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"
#include "port.h"

#define CP_KEY_FILE_MAX		4096

static char *cp_key_file = NULL;
static char *cp_key_hex = NULL;
static bool cp_key_hex_refused = false; /* set without preloading */
static char *cp_key_name = NULL;
static char *cp_trusted_keys = NULL;
static char *cp_command = NULL;
static char *cp_command_vkey = NULL;

static bool
cp_is_set(const char *v)
{
	return v != NULL && v[0] != '\0';
}

static bool
cp_check_key_name(char **newval, void **extra, GucSource source)
{
	if (!env_note_name_valid(*newval, strlen(*newval)))
	{
		GUC_check_errdetail("A signing key name must be 1 to %d bytes of UTF-8 without spaces, control characters or \"+\".",
							ENV_NOTE_NAME_MAXLEN);
		return false;
	}
	return true;
}

/* Each element must be a verifier key: name+keyid+base64 */
static bool
cp_check_vkey(char **newval, void **extra, GucSource source)
{
	char		name[ENV_NOTE_NAME_MAXLEN + 1];
	uint8		id[ENV_NOTE_KEYID_LEN];
	uint8		pub[ENV_ED25519_PUBLIC_LEN];

	if (**newval == '\0' ||
		env_note_parse_vkey(*newval, strlen(*newval), name, id, pub))
		return true;
	GUC_check_errdetail("A verifier key is <name>+<8 hex digits>+<base64 of 0x01 and the 32-byte public key>, as envault.signing_public_key() returns it.");
	return false;
}

static bool
cp_check_trusted(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *keys;
	ListCell   *lc;
	bool		ok = true;

	if (!SplitGUCList(copy, ',', &keys))
	{
		GUC_check_errdetail("List syntax is invalid.");
		return false;
	}
	foreach(lc, keys)
	{
		const char *k = lfirst(lc);
		char		name[ENV_NOTE_NAME_MAXLEN + 1];
		uint8		id[ENV_NOTE_KEYID_LEN];
		uint8		pub[ENV_ED25519_PUBLIC_LEN];

		if (!env_note_parse_vkey(k, strlen(k), name, id, pub))
		{
			GUC_check_errdetail("\"%s\" is not a verifier key as envault.signing_public_key() returns it.", k);
			ok = false;
			break;
		}
	}
	list_free(keys);
	pfree(copy);
	return ok;
}

/*
 * Load the signing key; raises if it is not configured or cannot be read.
 * The caller must env_ed25519_clear() it, also on error (PG_TRY).
 */
static void
cp_load_key(EnvSigningKey *sk)
{
	char		buf[CP_KEY_FILE_MAX];
	struct stat st;
	ssize_t		n;
	int			fd;
	EnvKeyLoadStatus status;

	memset(sk, 0, sizeof(*sk));
	if (cp_key_hex_refused)
		env_error_hex_refused("envault.signing_key", "envault.signing_key_file");
	if (cp_key_hex != NULL && cp_key_hex[0] != '\0')
	{
		uint8		seed[32];
		bool		ok;

		if (cp_key_file != NULL && cp_key_file[0] != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("both envault.signing_key and envault.signing_key_file are set"),
					 errhint("Set exactly one of them.")));
		if (env_hex_decode(cp_key_hex, strlen(cp_key_hex), seed, sizeof(seed)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("envault.signing_key is malformed"),
					 errdetail("It must be an Ed25519 private key (seed) as 64 hexadecimal characters."),
					 errhint("Prefer envault.signing_key_file outside development.")));
		ok = env_ed25519_from_seed(sk, seed);
		env_wipe(seed, sizeof(seed));
		if (!ok)
			env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "preparing the signing key");
		return;
	}
	if (cp_key_file == NULL || cp_key_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no envault signing key is configured"),
				 errhint("Set envault.signing_key_file to a file holding an Ed25519 private key in PEM format, for example made with \"openssl genpkey -algorithm ed25519\", readable only by the server.")));
	fd = open(cp_key_file, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not open signing key file \"%s\": %m", cp_key_file),
				 errhint("Check envault.signing_key_file.")));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("signing key file \"%s\" is not a regular file", cp_key_file)));
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO))
	{
		close(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("signing key file \"%s\" has group or world access", cp_key_file),
				 errdetail("A signing key file must not be accessible to its group or to other users."),
				 errhint("Change its permissions with chmod 0600, or 0400.")));
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0 || n == sizeof(buf))
	{
		env_wipe(buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not read signing key file \"%s\"", cp_key_file),
				 errdetail(n < 0 ? "The file could not be read." : "The file is too large for a key.")));
	}
	status = env_ed25519_load_pem(sk, buf, (size_t) n);
	env_wipe(buf, sizeof(buf));
	if (status != ENV_KEY_LOADED)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("signing key file \"%s\" does not hold an Ed25519 private key", cp_key_file),
				 errdetail(status == ENV_KEY_NOT_ED25519 ?
						   "It holds a private key of another algorithm." :
						   "It is not an unencrypted private key in PEM format."),
				 errhint("Create one with \"openssl genpkey -algorithm ed25519\".")));
}

/*
 * The name and public key of the configured signing key: that of
 * envault.signing_verifier_key when envault.signing_command signs, else
 * envault.signing_key_name and the key's own.
 */
static void
cp_public_key(char *name, uint8 *pub)
{
	EnvSigningKey sk;

	if (cp_is_set(cp_command))
	{
		uint8		id[ENV_NOTE_KEYID_LEN];

		if (cp_is_set(cp_key_file) || cp_is_set(cp_key_hex))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("envault.signing_command is set, and so is envault.signing_key_file or envault.signing_key"),
					 errhint("Set one way of signing: the command, or the key.")));
		if (!cp_is_set(cp_command_vkey) ||
			!env_note_parse_vkey(cp_command_vkey, strlen(cp_command_vkey), name, id, pub))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("envault.signing_command is set without envault.signing_verifier_key"),
					 errhint("Set envault.signing_verifier_key to the verifier key (name+id+key) of the key the command signs with.")));
		return;
	}
	cp_load_key(&sk);
	memcpy(pub, sk.pub, ENV_ED25519_PUBLIC_LEN);
	env_ed25519_clear(&sk);
	strlcpy(name, cp_key_name, ENV_NOTE_NAME_MAXLEN + 1);
}

/* What signs checkpoints: the key, or the command and its public key */
typedef struct CpSigner
{
	bool		command;
	EnvSigningKey sk;
	char		name[ENV_NOTE_NAME_MAXLEN + 1];
	uint8		pub[ENV_ED25519_PUBLIC_LEN];
} CpSigner;

static void
cp_signer_open(CpSigner *sg)
{
	memset(sg, 0, sizeof(*sg));
	sg->command = cp_is_set(cp_command);
	if (sg->command)
		cp_public_key(sg->name, sg->pub);
	else
	{
		cp_load_key(&sg->sk);
		memcpy(sg->pub, sg->sk.pub, ENV_ED25519_PUBLIC_LEN);
		strlcpy(sg->name, cp_key_name, sizeof(sg->name));
	}
}

static void
cp_signer_close(CpSigner *sg)
{
	if (!sg->command)
		env_ed25519_clear(&sg->sk);
}

/*
 * Run a command of a setting (name: for messages) with input on its
 * standard input, through a temporary file; returns the first out_max - 1
 * bytes of its standard output, NUL-terminated, without trailing white
 * space.  Raises if it cannot run or exits with a status other than 0.
 */
size_t
env_run_filter(const char *name, const char *command, const char *input,
			   size_t len, char *out, size_t out_max)
{
	File		f = OpenTemporaryFile(false);
	char	   *cmd;
	FILE	   *fp;
	size_t		n;
	int			rc;

	if (FileWrite(f, unconstify(char *, input), (int) len, 0,
				  WAIT_EVENT_DATA_FILE_WRITE) != (int) len)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write the input of %s: %m", name)));
	cmd = psprintf("(%s) < '%s'", command, FilePathName(f));
	fp = OpenPipeStream(cmd, "r");
	if (fp == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not run %s: %m", name)));
	n = fread(out, 1, out_max - 1, fp);
	while (n == out_max - 1 && fgetc(fp) != EOF)
		;
	rc = ClosePipeStream(fp);
	FileClose(f);
	pfree(cmd);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("%s refused, or failed: %s", name, wait_result_to_str(rc)),
				 errhint("A signer or witness refuses a checkpoint that does not extend the last one it signed for the same origin; see its own log.")));
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' ||
					 out[n - 1] == ' ' || out[n - 1] == '\t'))
		n--;
	out[n] = '\0';
	return n;
}

/*
 * What the signer is told about the tree it signs: the proof that it
 * extends the last tree head signed for the origin (old_size rows), when
 * envault has one.
 */
typedef EnvTreeProof CpProof;

/*
 * The consistency section of what a signer or witness reads after the
 * checkpoint: a blank line, "consistency <old size>", and the proof's
 * hashes in base64, one per line.  Nothing without an old size.
 */
void
env_append_proof(struct StringInfoData *buf, const EnvTreeProof *proof)
{
	int			i;

	if (proof->old_size <= 0)
		return;
	appendStringInfo(buf, "\nconsistency " INT64_FORMAT "\n", proof->old_size);
	for (i = 0; i < proof->n; i++)
	{
		char		b64[ENV_BASE64_LEN(ENV_CHAIN_HASH_LEN) + 1];

		(void) env_base64_encode(proof->hashes[i], ENV_CHAIN_HASH_LEN, b64);
		appendStringInfo(buf, "%s\n", b64);
	}
}

/* "size <n>": the tree size a signer or witness wants a proof from, or 0 */
int64
env_size_reply(const char *out)
{
	char	   *end;
	long long	v;

	if (strncmp(out, "size ", 5) != 0 || out[5] < '1' || out[5] > '9')
		return 0;
	errno = 0;
	v = strtoll(out + 5, &end, 10);
	return (*end == '\0' && errno == 0 && v > 0) ? (int64) v : 0;
}

/*
 * The signature of envault.signing_command for a text.  The command reads
 * the checkpoint's text on its standard input, followed, when envault has a
 * tree head signed before for the origin, by a blank line, "consistency
 * <old size>" and the consistency proof's hashes in base64, one per line.
 * It prints the base64 of the 64-byte Ed25519 signature, which must verify
 * with envault.signing_verifier_key; or "size <n>" alone when the last tree
 * head it signed for the origin has n rows, not the old size given: the
 * caller then asks again with a proof from n rows (returns n, else 0).
 */
static int64
cp_command_sign(CpSigner *sg, const char *text, size_t len,
				const CpProof *proof, uint8 *sig)
{
	StringInfoData in;
	char		buf[1024];
	size_t		n;
	int64		want;

	initStringInfo(&in);
	appendBinaryStringInfo(&in, text, (int) len);
	env_append_proof(&in, proof);
	n = env_run_filter("envault.signing_command", cp_command, in.data,
					   (size_t) in.len, buf, sizeof(buf));
	pfree(in.data);
	if ((want = env_size_reply(buf)) > 0)
		return want;
	if (!env_base64_decode(buf, n, sig, ENV_ED25519_SIG_LEN, &n) ||
		n != ENV_ED25519_SIG_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("envault.signing_command did not print the base64 of a 64-byte Ed25519 signature")));
	if (!env_ed25519_verify(sg->pub, (const uint8 *) text, len, sig))
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("the signature of envault.signing_command does not verify with envault.signing_verifier_key"),
				 errhint("The command signs with another key than the one configured.")));
	return 0;
}

/* A key of envault.trusted_signing_keys */
typedef struct CpTrustedKey
{
	char		name[ENV_NOTE_NAME_MAXLEN + 1];
	uint8		pub[ENV_ED25519_PUBLIC_LEN];
} CpTrustedKey;

/* The keys of envault.trusted_signing_keys, in the current memory context */
static List *
cp_trusted(void)
{
	char	   *copy;
	List	   *items;
	List	   *keys = NIL;
	ListCell   *lc;

	if (!cp_is_set(cp_trusted_keys))
		return NIL;
	copy = pstrdup(cp_trusted_keys);
	if (SplitGUCList(copy, ',', &items))
	{
		foreach(lc, items)
		{
			const char *k = lfirst(lc);
			CpTrustedKey *t = palloc(sizeof(CpTrustedKey));
			uint8		id[ENV_NOTE_KEYID_LEN];

			if (env_note_parse_vkey(k, strlen(k), t->name, id, t->pub))
				keys = lappend(keys, t);
			else
				pfree(t);
		}
		list_free(items);
	}
	pfree(copy);
	return keys;
}

/*
 * Check a stored checkpoint: parse it, find a signature by a trusted key
 * (the configured signing key, or one of envault.trusted_signing_keys) and
 * verify it.  Returns 0 and the parsed body when it verifies, 1 when the
 * note or its body is malformed, 2 when no trusted key signed it validly.
 * Raises if no key to verify with is configured.
 */
int
env_checkpoint_check(const char *note, size_t len, EnvCheckpoint *cp)
{
	static bool have_current = false;
	static uint8 current[ENV_ED25519_PUBLIC_LEN];
	static char current_name[ENV_NOTE_NAME_MAXLEN + 1];
	static LocalTransactionId current_lxid = InvalidLocalTransactionId;
	List	   *trusted = cp_trusted();
	EnvCheckpointKey *keys;
	ListCell   *lc;
	int			nkeys = 0;
	int			rc;

	/* the configured key, loaded once per transaction */
	if (current_lxid != ENV_MY_LXID())
	{
		have_current = false;
		if (cp_is_set(cp_key_file) || cp_is_set(cp_key_hex) ||
			cp_is_set(cp_command))
		{
			cp_public_key(current_name, current);
			have_current = true;
		}
		current_lxid = ENV_MY_LXID();
	}
	if (!have_current && trusted == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no envault key is configured to verify checkpoints"),
				 errhint("Set envault.signing_key_file, or list the signing keys' public keys in envault.trusted_signing_keys.")));

	keys = palloc(sizeof(EnvCheckpointKey) * (1 + list_length(trusted)));
	if (have_current)
	{
		keys[nkeys].name = current_name;
		keys[nkeys].name_len = strlen(current_name);
		keys[nkeys].pub = current;
		nkeys++;
	}
	foreach(lc, trusted)
	{
		CpTrustedKey *k = lfirst(lc);

		keys[nkeys].name = k->name;
		keys[nkeys].name_len = strlen(k->name);
		keys[nkeys].pub = k->pub;
		nkeys++;
	}
	rc = env_checkpoint_verify(note, len, keys, nkeys, cp);
	pfree(keys);
	list_free_deep(trusted);
	return rc;
}

/* --- heads ------------------------------------------------------------------- */

typedef struct CpHead
{
	char	   *tenant;			/* canonical text, or NULL */
	size_t		tenant_len;
	int64		seq;
	uint8		hash[ENV_CHAIN_HASH_LEN];	/* of row seq */
	bool		skip;			/* signed already */
	int64		purge;			/* a purge to sign ("purge <n>"), or 0 */
	uint8		root[ENV_CHAIN_HASH_LEN];	/* tree head of rows 1 to seq */
	CpProof		proof;			/* for the signer */
} CpHead;

/*
 * The identity of this database in checkpoint origins: made at CREATE
 * EXTENSION (a random UUID), or at the upgrade from 0.2.0 (the database's
 * name then, which the checkpoints signed before name), kept by dumps.  A
 * restore brings back the original row beside the one its CREATE
 * EXTENSION made: the oldest row is the identity.  Only a superuser can
 * change the table; no other database's role can make its own database
 * claim this identity.
 */
#define CP_Q_DATABASE_ID \
	"SELECT database_id FROM envault.database_identity" \
	" ORDER BY created_at, database_id LIMIT 1"

char *
env_database_id(void)
{
	EnvSpi		s;
	char	   *id;
	bool		isnull;

	/* envault 0.2.0's schema, not yet updated: its checkpoints name it */
	if (!env_schema_has("database_identity", NULL))
		return get_database_name(MyDatabaseId);
	env_spi_begin(&s);
	env_spi_run(CP_Q_DATABASE_ID, 0, NULL, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this database has no envault identity"),
				 errdetail("envault.database_identity is empty; checkpoints name the database by it."),
				 errhint("Restore the row from a dump, or as a superuser insert one: INSERT INTO envault.database_identity (database_id) VALUES (gen_random_uuid()::text).")));
	id = env_spi_cstring(&s, 1, &isnull);
	env_spi_end(&s);
	return id;
}

/*
 * SQL function: envault.database_id() returns text
 */
PG_FUNCTION_INFO_V1(envault_database_id);
Datum
envault_database_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(env_database_id()));
}

/* A head to sign: tenant (canonical text, or NULL), newest row and its hash */
static CpHead *
cp_head_new(EnvChain *ch, const char *tenant, size_t len, int64 seq, bytea *hash)
{
	CpHead	   *h = palloc0(sizeof(CpHead));

	if (tenant)
	{
		h->tenant = pnstrdup(tenant, len);
		h->tenant_len = len;
	}
	h->seq = seq;
	if (hash == NULL || VARSIZE_ANY_EXHDR(hash) != ENV_CHAIN_HASH_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("head of audit chain %s has no valid hash", ch->identity),
				 errhint("Run envault.verify_chain() to locate the damage.")));
	memcpy(h->hash, VARDATA_ANY(hash), ENV_CHAIN_HASH_LEN);
	return h;
}

#define CP_Q_SHARD_HEADS \
	"SELECT DISTINCT ON (c.%s) c.%s::pg_catalog.text, c." ENV_CHAIN_SEQ_COL ", c." ENV_CHAIN_HASH_COL \
	"  FROM %s c%s ORDER BY c.%s, c." ENV_CHAIN_SEQ_COL " DESC"

/*
 * The heads of a distributed table's chains, on the Citus coordinator:
 * each tenant's newest row, from the shards (in parallel, as the tenant
 * column is the distribution column).  Runs as the caller.
 */
static List *
cp_shard_heads(EnvChain *ch, const EnvChainTenant *one)
{
	char	   *col;
	char	   *qualified;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	MemoryContext cxt = CurrentMemoryContext;
	List	   *heads = NIL;
	uint64		i;
	int			level;

	if (one && one->isnull)
		return NIL;				/* a distribution column holds no NULL */
	env_chain_sql_names(ch, &qualified, &col);
	if (one)
		values[0] = PointerGetDatum(cstring_to_text_with_len(one->text, one->len));
	level = env_caller_spi_begin();
	if (SPI_execute_with_args(psprintf(CP_Q_SHARD_HEADS, col, col, qualified,
									   one ? psprintf(" WHERE c.%s OPERATOR(pg_catalog.=) $1::%s", col,
													  format_type_be_qualified(ch->tenant_typid)) : "",
									   col),
							  one ? 1 : 0, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the heads of audit chain %s from its shards", ch->identity);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bool		hnull;
		text	   *tt = DatumGetTextPP(SPI_getbinval(tup, desc, 1, &isnull));
		int64		seq = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		bytea	   *b = DatumGetByteaPP(SPI_getbinval(tup, desc, 3, &hnull));
		MemoryContext old = MemoryContextSwitchTo(cxt);
		EnvChainTenant t;

		/* the tenant's canonical text, as its rows hash it */
		(void) env_chain_tenant_arg(ch, tt, &t);
		heads = lappend(heads, cp_head_new(ch, t.text, t.len, seq, hnull ? NULL : b));
		MemoryContextSwitchTo(old);
	}
	env_caller_spi_end(level);
	return heads;
}

#define CP_Q_HEADS \
	"SELECT tenant, seq, hash FROM envault.chain_heads" \
	" WHERE chain_id OPERATOR(pg_catalog.=) $1" \
	"   AND ($2 IS NULL OR tenant OPERATOR(pg_catalog.=) $2)" \
	" ORDER BY tenant NULLS LAST"

/*
 * The head of every tenant's chain (or of the one whose canonical text is
 * given), as envault.chain_heads has them in the statement's snapshot.
 */
static List *
cp_heads(EnvChain *ch, const EnvChainTenant *one)
{
	EnvSpi		s;
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	char		nulls[2 + 1] = "  ";
	List	   *heads = NIL;
	uint64		i;

	if (env_chain_distributed(ch))
		return cp_shard_heads(ch, one);
	values[0] = Int32GetDatum(ch->chain_id);
	if (one && !one->isnull)
		values[1] = PointerGetDatum(cstring_to_text_with_len(one->text, one->len));
	else
		nulls[1] = 'n';
	env_spi_begin(&s);
	if (SPI_execute_with_args(CP_Q_HEADS, 2, types, values, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the chain heads");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		tnull;
		bool		isnull;
		Datum		td = SPI_getbinval(tup, desc, 1, &tnull);
		bytea	   *b;
		MemoryContext old;
		text	   *tt;

		if (one && one->isnull && !tnull)
			continue;			/* the chain without tenant only */
		b = DatumGetByteaPP(SPI_getbinval(tup, desc, 3, &isnull));
		old = MemoryContextSwitchTo(s.caller_cxt);
		tt = tnull ? NULL : DatumGetTextPP(td);
		heads = lappend(heads,
						cp_head_new(ch, tt ? VARDATA_ANY(tt) : NULL,
									tt ? VARSIZE_ANY_EXHDR(tt) : 0,
									DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull)), b));
		MemoryContextSwitchTo(old);
	}
	env_spi_end(&s);
	return heads;
}

#define CP_Q_LAST \
	"SELECT note FROM envault.checkpoints" \
	" WHERE chain_id OPERATOR(pg_catalog.=) $1" \
	"   AND (tenant OPERATOR(pg_catalog.=) $2 OR (tenant IS NULL AND $2 IS NULL))" \
	" ORDER BY seq DESC, checkpoint_id DESC"

#define CP_Q_ANCHOR \
	"SELECT pg_catalog.max(seq) FROM envault.chain_anchors" \
	" WHERE chain_id OPERATOR(pg_catalog.=) $1" \
	"   AND (tenant OPERATOR(pg_catalog.=) $2 OR (tenant IS NULL AND $2 IS NULL))"

#define CP_Q_INSERT \
	"INSERT INTO envault.checkpoints" \
	"  (chain_id, tenant, seq, head_hash, signed_at, key_name, key_id, note," \
	"   signed_by, tree_root)" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"

static void cp_run(EnvChain *ch, const EnvChainTenant *one, ReturnSetInfo *rsinfo);

static const char *
cp_tenant_name(const CpHead *h)
{
	return h->tenant ? quote_literal_cstr(h->tenant) : "NULL";
}

static text *
cp_tenant_text(const CpHead *h)
{
	return h->tenant ? cstring_to_text_with_len(h->tenant, h->tenant_len) : NULL;
}

/*
 * Before a head is signed: the tree head of its rows, and the check that
 * it extends what the newest checkpoint that verifies signed (a consistency
 * proof from that tree head, or, for a checkpoint of 0.2.0, the audit path
 * of the row whose hash it signed).  A chain rewritten below a checkpoint
 * is refused here, before anything is signed; the proof goes to the
 * signing command, which checks it against its own memory.
 */
static void
cp_prepare(EnvChain *ch, const char *dbid, CpHead *h)
{
	EnvSpi		s;
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	char		nulls[2 + 1] = "  ";
	EnvCheckpoint last;
	EnvCheckpoint cp;
	bool		have_last = false;
	bool		purge_signed = false;
	int64		anchor = 0;
	uint64		i;
	bool		ok;

	values[0] = Int32GetDatum(ch->chain_id);
	if (h->tenant)
		values[1] = PointerGetDatum(cp_tenant_text(h));
	else
		nulls[1] = 'n';
	env_spi_begin(&s);
	/* the newest purge (this transaction's too): has a checkpoint signed it? */
	if (SPI_execute_with_args(CP_Q_ANCHOR, 2, types, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read chain anchors");
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		anchor = isnull ? 0 : DatumGetInt64(d);
	}
	if (SPI_execute_with_args(CP_Q_LAST, 2, types, values, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the last checkpoint");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		text	   *note = DatumGetTextPP(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 1,
														&isnull));

		if (env_checkpoint_check(VARDATA_ANY(note), VARSIZE_ANY_EXHDR(note), &cp) != 0 ||
			!env_origin_matches(cp.origin, cp.origin_len, dbid, strlen(dbid),
								ch->identity, ch->identity_len,
								h->tenant, h->tenant_len))
			continue;
		if (!have_last)
			last = cp;			/* the newest that verifies */
		have_last = true;
		if (anchor > 0 && cp.purge == (uint64) anchor)
			purge_signed = true;
	}
	env_spi_end(&s);

	memset(&h->proof, 0, sizeof(h->proof));
	if (anchor > 0 && !purge_signed)
		h->purge = anchor;		/* a purge without its statement: sign it */
	if (have_last && ((int64) last.seq > h->seq ||
					  ((int64) last.seq == h->seq && h->purge == 0)))
	{
		h->skip = true;			/* nothing new since */
		return;
	}
	ok = env_chain_tree_prove(ch, cp_tenant_text(h), h->seq, h->root,
							  have_last ? (int64) last.seq : 0,
							  have_last && last.tree,
							  h->proof.hashes, &h->proof.n);
	if (ok && have_last)
	{
		if (last.tree)
			ok = env_merkle_verify_consistency(last.seq, (uint64) h->seq,
											   last.hash, h->root,
											   (const uint8 (*)[ENV_MERKLE_HASH_LEN]) h->proof.hashes,
											   h->proof.n);
		else
		{
			uint8		leaf[ENV_MERKLE_HASH_LEN];

			ok = env_merkle_leaf(last.hash, leaf) &&
				env_merkle_verify_inclusion(last.seq - 1, (uint64) h->seq, leaf,
											(const uint8 (*)[ENV_MERKLE_HASH_LEN]) h->proof.hashes,
											h->proof.n, h->root);
		}
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("audit chain %s, tenant %s, does not extend its last checkpoint",
							ch->identity, cp_tenant_name(h)),
					 errdetail("The Merkle tree of its " INT64_FORMAT " rows is not consistent with what the checkpoint of " UINT64_FORMAT " rows signed: rows it covers were changed, removed or replaced.",
							   h->seq, last.seq),
					 errhint("Nothing was signed.  Run envault.verify_chain() to locate the change.")));
		if (last.tree)
			h->proof.old_size = (int64) last.seq;
	}
	else if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("rows of audit chain %s, tenant %s, that its Merkle tree needs are missing",
						ch->identity, cp_tenant_name(h)),
				 errhint("Run envault.verify_chain() to locate the damage.")));
}

/*
 * Sign a head's checkpoint text under its origin as key name: with the
 * key, or with the command, which may ask for a proof from the tree head
 * it signed last (its memory, not envault's) once.
 */
static size_t
cp_sign(CpSigner *sg, EnvChain *ch, CpHead *h, const char *origin,
		size_t olen, const char *text, size_t tlen, char *note, size_t max)
{
	uint8		sig[ENV_ED25519_SIG_LEN];
	uint8		key_id[ENV_NOTE_KEYID_LEN];
	int64		want;
	uint8		root[ENV_MERKLE_HASH_LEN];

	if (!sg->command)
		return env_note_sign(text, tlen, origin, olen, &sg->sk, note, max);
	want = cp_command_sign(sg, text, tlen, &h->proof, sig);
	if (want > 0)
	{
		if (want == h->proof.old_size || want > h->seq)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("envault.signing_command has signed a tree head of " INT64_FORMAT " rows of audit chain %s, tenant %s, which has " INT64_FORMAT,
							want, ch->identity, cp_tenant_name(h), h->seq),
					 want > h->seq ?
					 errdetail("Rows the signer has signed are no longer in the chain.") : 0,
					 errhint("Nothing was signed.  Compare the signer's log with envault.checkpoints, and run envault.verify_chain().")));
		h->proof.old_size = want;
		h->proof.n = 0;
		if (want < h->seq &&
			!env_chain_tree_prove(ch, cp_tenant_text(h), h->seq, root, want, true,
								  h->proof.hashes, &h->proof.n))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot prove to envault.signing_command that audit chain %s, tenant %s, extends its tree head of " INT64_FORMAT " rows",
							ch->identity, cp_tenant_name(h), want),
					 errdetail("The rows the proof needs are no longer there.")));
		if (cp_command_sign(sg, text, tlen, &h->proof, sig) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("envault.signing_command asked twice for a proof from another tree size")));
	}
	env_note_key_id(origin, olen, sg->pub, key_id);
	return env_note_assemble(text, tlen, origin, olen, key_id, sig, note, max);
}

static bytea *
cp_bytea(const uint8 *data, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return b;
}

/*
 * SQL function: envault.checkpoint(tbl regclass, tenant text)
 *               returns table (tenant text, seq bigint, checkpoint text)
 *
 * Sign the Merkle tree head of each tenant's chain (or of one) that has
 * grown since its last checkpoint, once it is shown to extend what that
 * checkpoint signed; store and log each checkpoint, and return them.
 */
PG_FUNCTION_INFO_V1(envault_checkpoint);
Datum
envault_checkpoint(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EnvChain   *ch;
	bool		one = !PG_ARGISNULL(1);
	EnvChainTenant want;

	ch = env_chain_arg(fcinfo);
	InitMaterializedSRF(fcinfo, 0);
	env_chain_refuse_shard(ch, "checkpoint()");
	if (env_chain_distributed(ch) && IsTransactionBlock())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("checkpoint() of distributed audit chain %s cannot run inside a transaction block",
						ch->identity),
				 errdetail("On Citus, rows that this transaction wrote on the shards would be signed before they commit."),
				 errhint("Take the checkpoint in a statement of its own.")));
	(void) env_chain_tenant_arg(ch, one ? PG_GETARG_TEXT_PP(1) : NULL, &want);
	cp_run(ch, one ? &want : NULL, rsinfo);
	return (Datum) 0;
}

/*
 * For purge_chain(): sign the purge just recorded for a tenant, in a
 * checkpoint of its chain's tree head that says so ("purge <anchor>").
 * The rows this transaction deleted are before the anchor; the head and
 * the rows it signs are committed ones.
 */
void
env_checkpoint_purge(EnvChain *ch, const EnvChainTenant *t)
{
	cp_run(ch, t, NULL);
}

/*
 * Sign what has grown (or been purged) in each tenant's chain, or one's;
 * each checkpoint goes to rsinfo's tuplestore when there is one.
 */
static void
cp_run(EnvChain *ch, const EnvChainTenant *one, ReturnSetInfo *rsinfo)
{
	List	   *volatile heads;
	ListCell   *lc;
	CpSigner	sg;
	const char *dbid;
	char		timebuf[ENV_CANON_BUFLEN];
	TimestampTz now = GetCurrentTimestamp();

	if (!env_schema_has("checkpoints", "tree_root"))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("checkpoints need the schema of envault 0.3.0"),
				 errdetail("This library signs Merkle tree heads, which the tables of an older envault cannot hold."),
				 errhint("Run ALTER EXTENSION envault UPDATE.")));
	dbid = env_database_id();
	heads = cp_heads(ch, one);
	(void) env_canon_timestamp(now, true, timebuf);

	/* sign only committed rows: not those this transaction is adding */
	foreach(lc, heads)
	{
		CpHead	   *h = lfirst(lc);
		EnvChainTenant t;

		t.text = h->tenant;
		t.len = h->tenant_len;
		t.isnull = (h->tenant == NULL);
		if (env_chain_written(ch, &t))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot sign the head of audit chain %s, tenant %s, in the transaction that writes it",
							ch->identity, cp_tenant_name(h)),
					 errdetail("Its newest rows are not committed yet, and might never be."),
					 errhint("Take the checkpoint in a transaction of its own.")));
	}
	foreach(lc, heads)
		cp_prepare(ch, dbid, lfirst(lc));

	cp_signer_open(&sg);
	PG_TRY();
	{
		foreach(lc, heads)
		{
			CpHead	   *h = lfirst(lc);
			EnvSpi		s;
			Oid			itypes[10] = {INT4OID, TEXTOID, INT8OID, BYTEAOID,
			TIMESTAMPTZOID, TEXTOID, BYTEAOID, TEXTOID, NAMEOID, BYTEAOID};
			Datum		values[10];
			char		nulls[10 + 1] = "          ";
			char		origin[ENV_NOTE_MAXLEN];
			char		body[ENV_NOTE_MAXLEN];
			char		note[ENV_NOTE_MAXLEN];
			char		b64[ENV_BASE64_LEN(ENV_NOTE_MAXLEN) + 1];
			char		root64[ENV_BASE64_LEN(ENV_CHAIN_HASH_LEN) + 1];
			uint8		key_id[ENV_NOTE_KEYID_LEN];
			size_t		olen;
			size_t		tlen;
			size_t		nlen;
			Datum		out[3];
			bool		outnull[3] = {false, false, false};

			if (h->skip)
				continue;
			olen = env_origin_build(dbid, strlen(dbid), ch->identity,
									ch->identity_len, h->tenant, h->tenant_len,
									origin, sizeof(origin));
			if (olen > ENV_NOTE_NAME_MAXLEN)
				olen = 0;
			tlen = olen == 0 ? 0 :
				env_checkpoint_text(origin, olen, (uint64) h->seq, h->root,
									timebuf, (uint64) h->purge, body, sizeof(body));
			nlen = tlen == 0 ? 0 :
				cp_sign(&sg, ch, h, origin, olen, body, tlen, note, sizeof(note));
			if (nlen == 0)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("could not sign a checkpoint of audit chain %s", ch->identity),
						 errdetail("The checkpoint would be longer than %d bytes, or its origin longer than %d.",
								   ENV_NOTE_MAXLEN, ENV_NOTE_NAME_MAXLEN)));
			env_note_key_id(origin, olen, sg.pub, key_id);

			values[0] = Int32GetDatum(ch->chain_id);
			if (h->tenant)
				values[1] = PointerGetDatum(cp_tenant_text(h));
			else
				nulls[1] = 'n';
			values[2] = Int64GetDatum(h->seq);
			values[3] = PointerGetDatum(cp_bytea(h->hash, ENV_CHAIN_HASH_LEN));
			values[4] = TimestampTzGetDatum(now);
			values[5] = PointerGetDatum(cstring_to_text_with_len(origin, olen));
			values[6] = PointerGetDatum(cp_bytea(key_id, ENV_NOTE_KEYID_LEN));
			values[7] = PointerGetDatum(cstring_to_text_with_len(note, nlen));
			values[9] = PointerGetDatum(cp_bytea(h->root, ENV_CHAIN_HASH_LEN));
			env_spi_begin(&s);
			values[8] = CStringGetDatum(s.caller_name);
			if (SPI_execute_with_args(CP_Q_INSERT, 10, itypes, values, nulls, false, 0)
				!= SPI_OK_INSERT)
				elog(ERROR, "could not store a checkpoint");
			env_spi_end(&s);

			/* a copy outside the database, in one line */
			(void) env_base64_encode((const uint8 *) note, nlen, b64);
			(void) env_base64_encode(h->root, ENV_CHAIN_HASH_LEN, root64);
			ereport(LOG_SERVER_ONLY,
					(errmsg("envault checkpoint: origin=%s seq=" INT64_FORMAT " hash=%s note=%s",
							origin, h->seq, root64, b64),
					 errhidestmt(true), errhidecontext(true)));

			if (rsinfo == NULL)
				continue;
			out[0] = values[1];
			outnull[0] = (h->tenant == NULL);
			out[1] = values[2];
			out[2] = values[7];
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, outnull);
		}
	}
	PG_FINALLY();
	{
		cp_signer_close(&sg);
	}
	PG_END_TRY();
}

/* SQL function: envault.signing_public_key() returns text */
PG_FUNCTION_INFO_V1(envault_signing_public_key);
Datum
envault_signing_public_key(PG_FUNCTION_ARGS)
{
	uint8		pub[ENV_ED25519_PUBLIC_LEN];
	char		name[ENV_NOTE_NAME_MAXLEN + 1];
	char		vkey[ENV_NOTE_NAME_MAXLEN + 64];
	size_t		n;

	cp_public_key(name, pub);
	n = env_note_vkey(name, strlen(name), pub, vkey, sizeof(vkey));
	if (n == 0)
		elog(ERROR, "could not format the public key");
	PG_RETURN_TEXT_P(cstring_to_text_with_len(vkey, n));
}

/* without preloading, a reload would log the key: refused (masterkey.c) */
static bool
cp_check_key_hex(char **newval, void **extra, GucSource source)
{
	return env_check_hex_setting("envault.signing_key", "envault.signing_key_file",
								 newval, &cp_key_hex_refused);
}

static const char *
cp_show_hidden(void)
{
	return (cp_key_hex != NULL && cp_key_hex[0] != '\0') ? "********" : "";
}

void
env_checkpoint_init(void)
{
	DefineCustomStringVariable("envault.signing_key",
							   gettext_noop("The Ed25519 private key (seed) that signs audit chain checkpoints, as 64 hexadecimal characters."),
							   gettext_noop("Prefer envault.signing_key_file outside development."),
							   &cp_key_hex, "",
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE |
							   GUC_DISALLOW_IN_AUTO_FILE,
							   cp_check_key_hex, NULL, cp_show_hidden);
	DefineCustomStringVariable("envault.signing_key_file",
							   gettext_noop("File holding the Ed25519 private key (PEM) that signs audit chain checkpoints."),
							   gettext_noop("The file must not be accessible to its group or to other users."),
							   &cp_key_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("envault.signing_key_name",
							   gettext_noop("Name of the checkpoint signing key, as it appears in signed notes."),
							   NULL,
							   &cp_key_name, "envault", PGC_SIGHUP, 0,
							   cp_check_key_name, NULL, NULL);
	DefineCustomStringVariable("envault.signing_command",
							   gettext_noop("Command that signs audit chain checkpoints, instead of a key the server reads."),
							   gettext_noop("It reads the checkpoint's text on standard input and prints the base64 of its Ed25519 signature."),
							   &cp_command, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("envault.signing_verifier_key",
							   gettext_noop("The verifier key (name+id+key) of the key envault.signing_command signs with."),
							   NULL,
							   &cp_command_vkey, "", PGC_SIGHUP, 0,
							   cp_check_vkey, NULL, NULL);
	DefineCustomStringVariable("envault.trusted_signing_keys",
							   gettext_noop("Public keys of earlier signing keys whose checkpoints still verify, comma-separated."),
							   gettext_noop("Each as envault.signing_public_key() returned it."),
							   &cp_trusted_keys, "", PGC_SIGHUP, GUC_LIST_INPUT,
							   cp_check_trusted, NULL, NULL);
}
