/*-------------------------------------------------------------------------
 *
 * witness.c
 *		Witness cosignatures of audit chain checkpoints: envault.cosign().
 *
 * A witness is a party outside the database (an auditor's program, on
 * another machine or as another operating system user) that keeps, per
 * origin, the last tree head it cosigned, and cosigns a newer one only when
 * a consistency proof shows that it extends that one (C2SP
 * tlog-cosignature, cosignature/v1 with Ed25519).  A verifier that requires
 * cosignatures from witnesses it trusts (envault-verify --witness) is safe
 * from a forked chain even if the log's own signing key signs the fork.
 *
 * envault.witness_keys lists the witnesses' verifier keys (type 0x04);
 * envault.witness_command runs one, %w replaced by its name: it reads the
 * signed checkpoint and, when envault knows the last size the witness
 * cosigned, a consistency proof from it (the format of the signing
 * command's input), and prints its cosignature line, or "size <n>" to ask
 * for a proof from the size it last cosigned.  Cosignatures are stored in
 * envault.checkpoint_cosignatures (append-only) and appended to the note in
 * exports, so that they travel with the checkpoint.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "witness.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "merkle.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

static char *wt_keys = NULL;
static char *wt_command = NULL;

/* A witness of envault.witness_keys */
typedef struct WtWitness
{
	char		name[ENV_NOTE_NAME_MAXLEN + 1];
	uint8		pub[ENV_ED25519_PUBLIC_LEN];
} WtWitness;

/* A checkpoint of the chain, with its cosignatures appended to the note */
typedef struct WtCheckpoint
{
	int64		id;
	char	   *tenant;
	size_t		tenant_len;
	int64		seq;
	char	   *note;			/* as signed by the log */
	char	   *full;			/* with the cosignatures */
	bool		tree;			/* verifies as a tree head of this chain */
	uint8		root[ENV_CHAIN_HASH_LEN];
} WtCheckpoint;

static bool
wt_parse_keys(const char *value, List **out, char **bad)
{
	char	   *copy = pstrdup(value);
	List	   *items;
	ListCell   *lc;

	*out = NIL;
	if (!SplitGUCList(copy, ',', &items))
		return false;
	foreach(lc, items)
	{
		const char *k = lfirst(lc);
		WtWitness  *w = palloc(sizeof(WtWitness));
		uint8		id[ENV_NOTE_KEYID_LEN];
		uint8		type;

		if (!env_note_parse_vkey_typed(k, strlen(k), w->name, id, &type, w->pub) ||
			type != ENV_NOTE_TYPE_COSIGNATURE)
		{
			if (bad)
				*bad = pstrdup(k);
			return false;
		}
		*out = lappend(*out, w);
	}
	return true;
}

static bool
wt_check_keys(char **newval, void **extra, GucSource source)
{
	List	   *keys;
	char	   *bad = NULL;

	if (wt_parse_keys(*newval, &keys, &bad))
		return true;
	if (bad)
		GUC_check_errdetail("\"%s\" is not a witness verifier key: <name>+<8 hex digits>+<base64 of 0x04 and the 32-byte Ed25519 public key>.", bad);
	else
		GUC_check_errdetail("List syntax is invalid.");
	return false;
}

/* The command for a witness: %w is its name, shell-quoted; %% is % */
static char *
wt_command_for(const char *name)
{
	StringInfoData cmd;
	const char *p;

	initStringInfo(&cmd);
	for (p = wt_command; *p; p++)
	{
		if (p[0] == '%' && p[1] == 'w')
		{
			const char *q;

			appendStringInfoChar(&cmd, '\'');
			for (q = name; *q; q++)
			{
				if (*q == '\'')
					appendStringInfoString(&cmd, "'\\''");
				else
					appendStringInfoChar(&cmd, *q);
			}
			appendStringInfoChar(&cmd, '\'');
			p++;
		}
		else if (p[0] == '%' && p[1] == '%')
		{
			appendStringInfoChar(&cmd, '%');
			p++;
		}
		else
			appendStringInfoChar(&cmd, *p);
	}
	return cmd.data;
}

#define WT_Q_CHECKPOINTS \
	"SELECT c.checkpoint_id, c.tenant, c.seq, c.note," \
	"       c.note OPERATOR(pg_catalog.||) COALESCE((SELECT pg_catalog.string_agg(w.line, '' ORDER BY w.cosignature_id)" \
	"                    FROM envault.checkpoint_cosignatures w" \
	"                   WHERE w.checkpoint_id OPERATOR(pg_catalog.=) c.checkpoint_id), '')" \
	"  FROM envault.checkpoints c" \
	" WHERE c.chain_id OPERATOR(pg_catalog.=) $1" \
	"   AND ($2 IS NULL OR c.tenant OPERATOR(pg_catalog.=) $2)" \
	" ORDER BY c.tenant NULLS LAST, c.seq, c.checkpoint_id"

#define WT_Q_INSERT \
	"INSERT INTO envault.checkpoint_cosignatures" \
	"  (checkpoint_id, witness, line, cosigned_at, requested_by)" \
	" VALUES ($1, $2, $3, pg_catalog.to_timestamp($4), $5)"

/* The chain's checkpoints, each checked */
static List *
wt_checkpoints(EnvChain *ch, const EnvChainTenant *one, const char *dbid)
{
	EnvSpi		s;
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	char		nulls[2 + 1] = "  ";
	List	   *cps = NIL;
	uint64		i;

	values[0] = Int32GetDatum(ch->chain_id);
	if (one && !one->isnull)
		values[1] = PointerGetDatum(cstring_to_text_with_len(one->text, one->len));
	else
		nulls[1] = 'n';
	env_spi_begin(&s);
	if (SPI_execute_with_args(WT_Q_CHECKPOINTS, 2, types, values, nulls, true, 0)
		!= SPI_OK_SELECT)
		elog(ERROR, "could not read checkpoints");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bool		tnull;
		Datum		td = SPI_getbinval(tup, desc, 2, &tnull);
		MemoryContext old = MemoryContextSwitchTo(s.caller_cxt);
		WtCheckpoint *c = palloc0(sizeof(WtCheckpoint));
		EnvCheckpoint parsed;

		if (one && one->isnull && !tnull)
		{
			MemoryContextSwitchTo(old);
			continue;
		}
		c->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		if (!tnull)
		{
			text	   *t = DatumGetTextPP(td);

			c->tenant = pnstrdup(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			c->tenant_len = VARSIZE_ANY_EXHDR(t);
		}
		c->seq = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		c->note = TextDatumGetCString(SPI_getbinval(tup, desc, 4, &isnull));
		c->full = TextDatumGetCString(SPI_getbinval(tup, desc, 5, &isnull));
		c->tree = env_checkpoint_check(c->note, strlen(c->note), &parsed) == 0 &&
			parsed.tree && (int64) parsed.seq == c->seq &&
			env_origin_matches(parsed.origin, parsed.origin_len, dbid, strlen(dbid),
							   ch->identity, ch->identity_len,
							   c->tenant, c->tenant_len);
		memcpy(c->root, parsed.hash, ENV_CHAIN_HASH_LEN);
		cps = lappend(cps, c);
		MemoryContextSwitchTo(old);
	}
	env_spi_end(&s);
	return cps;
}

static bool
wt_same_tenant(const WtCheckpoint *a, const WtCheckpoint *b)
{
	if (a->tenant == NULL || b->tenant == NULL)
		return a->tenant == b->tenant;
	return a->tenant_len == b->tenant_len &&
		memcmp(a->tenant, b->tenant, a->tenant_len) == 0;
}

static bool
wt_cosigned(const WtCheckpoint *c, const WtWitness *w)
{
	uint64		ts;

	return env_note_verify_cosignature(c->full, strlen(c->full), w->name,
									   strlen(w->name), w->pub, &ts) == ENV_NOTE_VERIFIED;
}

static const char *
wt_tenant_name(const WtCheckpoint *c)
{
	return c->tenant ? quote_literal_cstr(c->tenant) : "NULL";
}

/* The proof for a witness that the checkpoint extends old_size rows */
static void
wt_prove(EnvChain *ch, const WtCheckpoint *c, int64 old_size, EnvTreeProof *proof)
{
	uint8		root[ENV_CHAIN_HASH_LEN];

	proof->old_size = old_size;
	proof->n = 0;
	if (old_size <= 0 || old_size == c->seq)
		return;
	if (!env_chain_tree_prove(ch, c->tenant ? cstring_to_text_with_len(c->tenant, c->tenant_len) : NULL,
							  c->seq, root, old_size, true, proof->hashes, &proof->n))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot prove that audit chain %s, tenant %s, extends its tree of " INT64_FORMAT " rows",
						ch->identity, wt_tenant_name(c), old_size),
				 errdetail("The rows the proof needs are no longer there.")));
	if (memcmp(root, c->root, ENV_CHAIN_HASH_LEN) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the rows of audit chain %s, tenant %s, no longer have the tree head that checkpoint " INT64_FORMAT " signed",
						ch->identity, wt_tenant_name(c), c->seq),
				 errhint("Run envault.verify_chain() to locate the change.")));
}

/*
 * Ask a witness to cosign a checkpoint; returns its verified cosignature
 * line (with its newline) and the time it carries.
 */
static char *
wt_ask(EnvChain *ch, const WtCheckpoint *c, const WtCheckpoint *last,
	   const WtWitness *w, uint64 *ts)
{
	EnvTreeProof *proof = palloc(sizeof(EnvTreeProof));
	char	   *cmd = wt_command_for(w->name);
	char		out[ENV_NOTE_NAME_MAXLEN + 256];
	int			attempt;
	size_t		n = 0;
	char	   *full;
	EnvNoteCheck rc;

	wt_prove(ch, c, last ? last->seq : 0, proof);
	for (attempt = 0; attempt < 2; attempt++)
	{
		StringInfoData in;
		int64		want;

		initStringInfo(&in);
		appendStringInfoString(&in, c->note);
		env_append_proof(&in, proof);
		n = env_run_filter("envault.witness_command", cmd, in.data,
						   (size_t) in.len, out, sizeof(out));
		pfree(in.data);
		want = env_size_reply(out);
		if (want == 0)
			break;
		if (attempt > 0 || want > c->seq)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("witness %s has cosigned a tree of " INT64_FORMAT " rows of audit chain %s, tenant %s, which has " INT64_FORMAT,
							w->name, want, ch->identity, wt_tenant_name(c), c->seq),
					 errhint("Nothing was cosigned.  Compare the witness's log with envault.checkpoints.")));
		wt_prove(ch, c, want, proof);
	}
	pfree(proof);
	pfree(cmd);

	/* one signature line: by this witness, over this checkpoint */
	full = psprintf("%s%s\n", c->full, out);
	rc = (n > 4 && memchr(out, '\n', n) == NULL) ?
		env_note_verify_cosignature(full, strlen(full), w->name, strlen(w->name),
									w->pub, ts) : ENV_NOTE_MALFORMED;
	if (rc != ENV_NOTE_VERIFIED)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("envault.witness_command did not print a valid cosignature of witness %s", w->name),
				 errdetail("It must print one line, \"\xe2\x80\x94 %s \" and the base64 of the key ID, the time and the Ed25519 signature (C2SP tlog-cosignature, cosignature/v1).",
						   w->name)));
	pfree(full);
	return psprintf("%s\n", out);
}

/*
 * SQL function: envault.cosign(tbl regclass, tenant text, witness text)
 *               returns table (tenant text, seq bigint, witness text,
 *                              cosigned_at timestamptz)
 *
 * Have each witness (or the one named) cosign the newest tree head
 * checkpoint of each tenant (or of one) that it has not cosigned yet.
 */
PG_FUNCTION_INFO_V1(envault_cosign);
Datum
envault_cosign(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EnvChain   *ch;
	EnvChainTenant want;
	bool		one = !PG_ARGISNULL(1);
	List	   *witnesses;
	List	   *cps;
	ListCell   *lc;
	ListCell   *wc;
	const char *dbid;
	char	   *name = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));

	ch = env_chain_arg(fcinfo);
	InitMaterializedSRF(fcinfo, 0);
	env_chain_refuse_distributed(ch, "cosign()");
	(void) env_chain_tenant_arg(ch, one ? PG_GETARG_TEXT_PP(1) : NULL, &want);
	if (wt_keys == NULL || wt_keys[0] == '\0' ||
		!wt_parse_keys(wt_keys, &witnesses, NULL) || witnesses == NIL ||
		wt_command == NULL || wt_command[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no witness is configured"),
				 errhint("Set envault.witness_keys to the witnesses' verifier keys and envault.witness_command to the command that asks one.")));
	if (name != NULL)
	{
		List	   *named = NIL;

		foreach(wc, witnesses)
		{
			if (strcmp(((WtWitness *) lfirst(wc))->name, name) == 0)
				named = lappend(named, lfirst(wc));
		}
		if (named == NIL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("witness \"%s\" is not in envault.witness_keys", name)));
		witnesses = named;
	}
	dbid = env_database_id();
	cps = wt_checkpoints(ch, one ? &want : NULL, dbid);

	/* the newest tree head of each tenant: the last of its run in cps */
	foreach(lc, cps)
	{
		WtCheckpoint *c = lfirst(lc);
		ListCell   *next = lnext(cps, lc);

		if (!c->tree ||
			(next != NULL && wt_same_tenant(c, lfirst(next)) &&
			 ((WtCheckpoint *) lfirst(next))->tree))
			continue;
		foreach(wc, witnesses)
		{
			WtWitness  *w = lfirst(wc);
			WtCheckpoint *last = NULL;
			ListCell   *pc;
			uint64		ts;
			char	   *line;
			EnvSpi		s;
			Oid			types[5] = {INT8OID, TEXTOID, TEXTOID, FLOAT8OID, NAMEOID};
			Datum		values[5];
			Datum		out[4];
			bool		outnull[4] = {false, false, false, false};

			if (wt_cosigned(c, w))
				continue;
			/* the newest earlier tree head it cosigned: its last, as we know */
			foreach(pc, cps)
			{
				WtCheckpoint *p = lfirst(pc);

				if (p != c && p->tree && wt_same_tenant(p, c) && p->seq < c->seq &&
					wt_cosigned(p, w))
					last = p;
			}
			line = wt_ask(ch, c, last, w, &ts);

			values[0] = Int64GetDatum(c->id);
			values[1] = CStringGetTextDatum(w->name);
			values[2] = CStringGetTextDatum(line);
			values[3] = Float8GetDatum((double) ts);
			env_spi_begin(&s);
			values[4] = CStringGetDatum(s.caller_name);
			if (SPI_execute_with_args(WT_Q_INSERT, 5, types, values, NULL, false, 0)
				!= SPI_OK_INSERT)
				elog(ERROR, "could not store a cosignature");
			env_spi_end(&s);
			c->full = psprintf("%s%s", c->full, line);
			ereport(LOG_SERVER_ONLY,
					(errmsg("envault cosignature: chain=%s tenant=%s seq=" INT64_FORMAT " witness=%s",
							ch->identity, wt_tenant_name(c), c->seq, w->name),
					 errhidestmt(true), errhidecontext(true)));

			if (c->tenant)
				out[0] = PointerGetDatum(cstring_to_text_with_len(c->tenant, c->tenant_len));
			else
				outnull[0] = true;
			out[1] = Int64GetDatum(c->seq);
			out[2] = values[1];
			out[3] = TimestampTzGetDatum(time_t_to_timestamptz((pg_time_t) ts));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, outnull);
		}
	}
	return (Datum) 0;
}

void
env_witness_init(void)
{
	DefineCustomStringVariable("envault.witness_keys",
							   gettext_noop("Verifier keys of the witnesses that envault.cosign() asks, comma-separated."),
							   gettext_noop("Each as <name>+<key ID>+<base64 of 0x04 and the Ed25519 public key> (C2SP tlog-cosignature)."),
							   &wt_keys, "", PGC_SIGHUP, GUC_LIST_INPUT,
							   wt_check_keys, NULL, NULL);
	DefineCustomStringVariable("envault.witness_command",
							   gettext_noop("Command that asks a witness to cosign a checkpoint; %w is the witness's name."),
							   gettext_noop("It reads the signed checkpoint and a consistency proof on standard input and prints its cosignature line."),
							   &wt_command, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
}
