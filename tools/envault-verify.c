/*-------------------------------------------------------------------------
 *
 * envault-verify.c
 *		Verify an export of an envault audit chain against a public key,
 *		without a database; Merkle proofs between signed tree heads; and
 *		requests to sign a checkpoint, for signers and witnesses.
 *
 *	envault-verify --key KEYFILE [--key KEYFILE ...] [--name NAME]
 *				   --database ID [--checkpoints LOGFILE ...] [--complete]
 *				   [--witness VKEYFILE ... [--witnesses N]] EXPORT.json
 *	envault-verify --key KEYFILE ... --database ID [--witness ...]
 *				   --consistency OLD.note NEW.note PROOF
 *	envault-verify --key KEYFILE ... --database ID [--witness ...]
 *				   --inclusion CHECKPOINT.note SEQ HASH PROOF
 *	envault-verify --check-request REQUEST [--last LASTTEXT]
 *				   [--key LOGVKEY] [--text-out FILE]
 *
 * Prints one line: "OK: ..." and exits 0, or "FAIL: seq N: <reason>" (or
 * "FAIL: malformed export: ...", "FAIL: <origin>: <reason>") and exits 1.
 * --check-request prints nothing and exits 0 when the request may be
 * signed, prints "size N" and exits 3 when it must come with a proof from
 * N rows, and says why on stderr and exits 1 when it must not be signed.
 * Usage and I/O errors go to stderr with exit status 2.
 * docs/audit-chain.md specifies what is checked; tools/verify.c (exports)
 * and tools/request.c (requests) check it.
 *
 * Nothing here is secret: the key files hold public keys (a private key is
 * refused without being parsed).
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "request.h"

#define EV_KEYFILE_MAX		65536
#define EV_PROOF_MAX		65536
#define EV_LOG_MAXLINE		((size_t) 1 << 20)
#define EV_MAX_LOGS			64

static const char *progname = "envault-verify";

/* What main() holds, released by cleanup() on every way out */
static struct
{
	char	   *key_text;
	char	   *data;
	char	   *origin;
	char	   *line;
	char	   *notes[2];
	char	   *proof;
	char	   *last;
	EvExport	ex;
	EvLog		log;
}			st;

static void
cleanup(void)
{
	free(st.key_text);
	free(st.data);
	free(st.origin);
	free(st.line);
	free(st.notes[0]);
	free(st.notes[1]);
	free(st.proof);
	free(st.last);
	ev_export_free(&st.ex);
	ev_log_free(&st.log);
	memset(&st, 0, sizeof(st));
	env_crypto_cleanup();
}

static void
usage(FILE *f)
{
	fprintf(f,
			"Usage: %s --key KEYFILE --database ID [options] EXPORT.json\n"
			"       %s --key KEYFILE --database ID [--witness ...] --consistency OLD.note NEW.note PROOF\n"
			"       %s --key KEYFILE --database ID [--witness ...] --inclusion CHECKPOINT.note SEQ HASH PROOF\n"
			"       %s --check-request REQUEST [--last LASTTEXT] [--key LOGVKEY] [--text-out FILE]\n"
			"\n"
			"Verify an export of an envault audit chain (the JSON that\n"
			"envault.export_chain() returns) without a database; or a Merkle proof\n"
			"between signed tree heads; or a request to sign a checkpoint.\n"
			"\n"
			"Options:\n"
			"  --key KEYFILE          a trusted key: a verifier key as\n"
			"                         envault.signing_public_key() returns it, or a\n"
			"                         PEM Ed25519 public key (openssl pkey -pubout);\n"
			"                         repeat for keys of earlier signing keys\n"
			"  --name NAME            the key name of PEM keys (default: envault)\n"
			"  --database ID          the database the chain belongs to, as\n"
			"                         envault.database_id() returns it (required):\n"
			"                         checkpoints naming another database do not count\n"
			"  --checkpoints LOGFILE  a PostgreSQL server log: every checkpoint of\n"
			"                         this chain logged in it must verify and match\n"
			"                         (repeatable)\n"
			"  --complete             the export must hold the whole chain: start at\n"
			"                         row 1, or at a row a checkpoint signs after a\n"
			"                         purge a checkpoint states (purge <seq>)\n"
			"  --witness VKEYFILE     a witness's verifier key (type 0x04, as\n"
			"                         envault-witness --print-vkey prints it); its\n"
			"                         cosignatures must verify (repeatable)\n"
			"  --witnesses N          the newest tree head must be cosigned by at least\n"
			"                         N of the witnesses (default: all of them)\n"
			"  --help                 show this help\n"
			"\n"
			"Proofs (PROOF: a file of base64 hashes, one per line, as\n"
			"SELECT encode(h, 'base64') FROM unnest(envault.consistency_proof(...)) h\n"
			"prints; the notes: signed tree heads of envault.checkpoints):\n"
			"  --consistency OLD.note NEW.note PROOF\n"
			"                         the tree NEW signs extends the one OLD signs\n"
			"  --inclusion CHECKPOINT.note SEQ HASH PROOF\n"
			"                         row SEQ, of envault_hash HASH (base64), is in\n"
			"                         the tree CHECKPOINT signs\n"
			"\n"
			"Requests (REQUEST: what envault writes on the standard input of a\n"
			"signing command or a witness):\n"
			"  --check-request REQUEST\n"
			"                         may the checkpoint be signed?  Exits 0 if so,\n"
			"                         3 printing \"size N\" if it must come with a\n"
			"                         consistency proof from N rows, 1 if never\n"
			"  --last LASTTEXT        the checkpoint text last signed for the origin\n"
			"                         (none: the first one)\n"
			"  --key LOGVKEY          a witness's request: the note must verify as a\n"
			"                         tree head under this key\n"
			"  --text-out FILE        write the checkpoint text, what is signed, to FILE\n"
			"                         (- for standard output)\n"
			"\n"
			"EXPORT.json, REQUEST may be - for standard input.  Prints one line; exits\n"
			"0 if it verifies, 1 if not, 2 on a usage or I/O error.\n",
			progname, progname, progname, progname);
}

static void die(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cleanup();
	exit(2);
}

/*
 * Read a whole file (or standard input for "-") of at most max bytes into
 * a malloc'd buffer.  Returns NULL with errno set, or with errno 0 and
 * *too_big when the file is longer.
 */
static char *
read_file(const char *path, size_t max, size_t *len, bool *too_big)
{
	FILE	   *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char	   *buf = NULL;
	size_t		cap = 0;
	size_t		n = 0;

	*too_big = false;
	if (f == NULL)
		return NULL;
	for (;;)
	{
		size_t		got;

		if (n == cap)
		{
			size_t		ncap = cap == 0 ? 65536 : cap * 2;
			char	   *nb;

			if (ncap > max + 1)
				ncap = max + 1;
			if (ncap <= cap)
			{
				*too_big = true;
				break;
			}
			nb = realloc(buf, ncap + 1);
			if (nb == NULL)
			{
				free(buf);
				if (f != stdin)
					fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = nb;
			cap = ncap;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (n > max)
		*too_big = true;
	if (ferror(f) || *too_big)
	{
		int			saved = ferror(f) ? EIO : 0;

		free(buf);
		if (f != stdin)
			fclose(f);
		errno = saved;
		return NULL;
	}
	if (f != stdin)
		fclose(f);
	if (buf == NULL)
	{
		buf = malloc(1);
		if (buf == NULL)
		{
			errno = ENOMEM;
			return NULL;
		}
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/*
 * Feed every line of a server log to the log's collector.  Returns NULL, or
 * what went wrong.
 */
static const char *
read_log(const char *path, EvLog *log)
{
	FILE	   *f = fopen(path, "rb");
	char	   *chunk = malloc(65536);
	char	   *line = malloc(65536);
	size_t		line_len = 0;
	size_t		line_cap = 65536;
	bool		overlong = false;
	uint64_t	lineno = 1;
	size_t		got;
	const char *problem = NULL;

	if (f == NULL || chunk == NULL || line == NULL)
	{
		problem = f == NULL ? strerror(errno) : "out of memory";
		goto done;
	}
	while (problem == NULL && (got = fread(chunk, 1, 65536, f)) > 0)
	{
		size_t		i = 0;

		while (problem == NULL && i < got)
		{
			char	   *nl = memchr(chunk + i, '\n', got - i);
			size_t		n = nl != NULL ? (size_t) (nl - (chunk + i)) : got - i;

			/* lines longer than any checkpoint line are skipped */
			if (!overlong && line_len + n > EV_LOG_MAXLINE)
				overlong = true;
			if (!overlong)
			{
				if (line_len + n > line_cap)
				{
					char	   *bigger;

					while (line_len + n > line_cap)
						line_cap *= 2;
					bigger = realloc(line, line_cap);
					if (bigger == NULL)
					{
						problem = "out of memory";
						break;
					}
					line = bigger;
				}
				memcpy(line + line_len, chunk + i, n);
				line_len += n;
			}
			i += n;
			if (nl != NULL)
			{
				if (!overlong && !ev_log_add(log, line, line_len, path, lineno))
					problem = "out of memory";
				line_len = 0;
				overlong = false;
				lineno++;
				i++;
			}
		}
	}
	if (problem == NULL && ferror(f))
		problem = strerror(EIO);
	if (problem == NULL && line_len > 0 && !overlong &&
		!ev_log_add(log, line, line_len, path, lineno))
		problem = "out of memory";
done:
	free(chunk);
	free(line);
	if (f != NULL)
		fclose(f);
	return problem;
}

/* "--opt VALUE" or "--opt=VALUE" */
static const char *
option_value(int argc, char **argv, int *i, const char *opt)
{
	size_t		n = strlen(opt);

	if (strncmp(argv[*i], opt, n) != 0)
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] != '\0')
		return NULL;
	if (*i + 1 >= argc)
		die("option %s needs a value\nTry \"%s --help\".", opt, progname);
	return argv[++*i];
}

static void fail(const char *who, size_t who_len, const char *fmt,...)
			__attribute__((format(printf, 3, 4), noreturn));

/* "FAIL: <who>: <reason>", exit 1 */
static void
fail(const char *who, size_t who_len, const char *fmt,...)
{
	va_list		ap;

	printf("FAIL: %.*s: ", (int) who_len, who);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	cleanup();
	exit(fflush(stdout) == 0 ? 1 : 2);
}

/* A file that must be read whole, or exit 2 */
static char *
read_or_die(const char *path, size_t max, const char *what, size_t *len)
{
	bool		too_big;
	char	   *buf = read_file(path, max, len, &too_big);

	if (buf == NULL)
		die("could not read %s \"%s\": %s", what, path,
			too_big ? "too large" : strerror(errno));
	return buf;
}

static const char *
plural(int n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/*
 * A signed tree head from a file, as the proof modes take it: a trusted key
 * must have signed it under its origin, which must name the database.
 * Fails (exit 1) otherwise.  *note keeps the text the checkpoint points
 * into.
 */
static void
load_tree_head(const char *path, const EnvCheckpointKey *ckeys, int nkeys,
			   const char *database, char **note, size_t *len,
			   EnvCheckpoint *cp)
{
	int			status;

	*note = read_or_die(path, ENV_NOTE_READ_MAXLEN, "checkpoint", len);

	/*
	 * A note ends in one newline; psql -At adds one, an editor may take it
	 * away.  No other note has the same signatures.
	 */
	while (*len > 0 && (*note)[*len - 1] == '\n')
		(*len)--;
	(*note)[(*len)++] = '\n';
	status = env_checkpoint_verify(*note, *len, ckeys, nkeys, cp);
	if (status == 1)
		fail(path, strlen(path), "not a signed checkpoint");
	if (status != 0)
		fail(cp->origin, cp->origin_len,
			 "bad signature: no trusted key validly signed %s", path);
	if (!cp->tree)
		fail(cp->origin, cp->origin_len,
			 "%s signs a head row's hash (envault 0.2.0), not a tree head", path);
	if (!env_origin_in_database(cp->origin, cp->origin_len, database,
								strlen(database)))
		fail(cp->origin, cp->origin_len,
			 "%s is a checkpoint of another database than %s (--database)",
			 path, database);
}

/* A proof file: one base64 hash per line */
static void
load_proof(const char *path, const EnvCheckpoint *cp,
		   uint8_t (*proof)[ENV_MERKLE_HASH_LEN], int *n)
{
	size_t		len;
	char		err[EV_ERRLEN];

	st.proof = read_or_die(path, EV_PROOF_MAX, "proof", &len);
	if (!ev_hashes_parse(st.proof, len, proof, n, err))
		fail(cp->origin, cp->origin_len, "malformed proof %s: %s", path, err);
}

/* The witness rule on a note; returns its number of cosigners */
static int
check_witnesses(const char *note, size_t len, const EnvCheckpoint *cp,
				const EvWitness *witnesses, int nwitnesses, int need)
{
	int			bad;
	uint64_t	mask;
	int			k = ev_cosigners(note, len, witnesses, nwitnesses, &mask, &bad);

	if (k < 0)
		fail(cp->origin, cp->origin_len,
			 "bad signature: a cosignature by witness %s does not verify",
			 witnesses[bad].name);
	if (k < need)
		fail(cp->origin, cp->origin_len, "%d of %d witness cosignatures",
			 k, need);
	return k;
}

/* ", cosigned by k witnesses" */
static void
print_cosigned(int nwitnesses, int k)
{
	if (nwitnesses > 0)
		printf(", cosigned by %d %s", k, plural(k, "witness", "witnesses"));
}

typedef enum Mode
{
	MODE_EXPORT,
	MODE_CONSISTENCY,
	MODE_INCLUSION,
	MODE_REQUEST
} Mode;

/* --consistency, --inclusion, --check-request: the mode and its values */
static void
set_mode(Mode *mode, Mode to, const char *first, int nvalues, char **values,
		 int argc, char **argv, int *i)
{
	static const char *const names[] = {
		NULL, "--consistency", "--inclusion", "--check-request"
	};
	int			k;

	if (*mode != MODE_EXPORT)
		die("only one of --consistency, --inclusion and --check-request\nTry \"%s --help\".",
			progname);
	*mode = to;
	values[0] = (char *) first;
	for (k = 1; k < nvalues; k++)
	{
		if (*i + 1 >= argc)
			die("option %s needs %d values\nTry \"%s --help\".", names[to],
				nvalues, progname);
		values[k] = argv[++*i];
	}
}

static int
run_consistency(char **args, const EvKey *keys, int nkeys,
				const char *database, const EvWitness *witnesses,
				int nwitnesses, int need)
{
	EnvCheckpointKey ckeys[EV_MAXKEYS];
	EnvCheckpoint old;
	EnvCheckpoint new;
	size_t		old_len;
	size_t		new_len;
	uint8_t		proof[ENV_MERKLE_MAX_LEVELS][ENV_MERKLE_HASH_LEN];
	int			n;
	int			k;

	ev_checkpoint_keys(keys, nkeys, ckeys);
	load_tree_head(args[0], ckeys, nkeys, database, &st.notes[0], &old_len, &old);
	load_tree_head(args[1], ckeys, nkeys, database, &st.notes[1], &new_len, &new);
	if (old.origin_len != new.origin_len ||
		memcmp(old.origin, new.origin, old.origin_len) != 0)
		fail(new.origin, new.origin_len, "%s is of another origin (%.*s)",
			 args[0], (int) old.origin_len, old.origin);
	if (old.seq > new.seq)
		fail(new.origin, new.origin_len,
			 "the old tree (%llu rows) is larger than the new one (%llu rows)",
			 (unsigned long long) old.seq, (unsigned long long) new.seq);
	load_proof(args[2], &new, proof, &n);
	if (!env_merkle_verify_consistency(old.seq, new.seq, old.hash, new.hash,
									   (const uint8_t (*)[ENV_MERKLE_HASH_LEN]) proof, n))
		fail(new.origin, new.origin_len,
			 "the consistency proof does not verify: the tree of %llu rows does not extend the tree of %llu rows",
			 (unsigned long long) new.seq, (unsigned long long) old.seq);
	k = check_witnesses(st.notes[1], new_len, &new, witnesses, nwitnesses, need);
	printf("OK: %.*s: the tree of %llu rows extends the tree of %llu rows",
		   (int) new.origin_len, new.origin, (unsigned long long) new.seq,
		   (unsigned long long) old.seq);
	print_cosigned(nwitnesses, k);
	putchar('\n');
	return 0;
}

static int
run_inclusion(char **args, const EvKey *keys, int nkeys,
			  const char *database, const EvWitness *witnesses,
			  int nwitnesses, int need)
{
	EnvCheckpointKey ckeys[EV_MAXKEYS];
	EnvCheckpoint cp;
	size_t		len;
	uint64_t	seq = 0;
	uint8_t		hash[ENV_SHA256_LEN];
	uint8_t		leaf[ENV_MERKLE_HASH_LEN];
	uint8_t		proof[ENV_MERKLE_MAX_LEVELS][ENV_MERKLE_HASH_LEN];
	size_t		i;
	size_t		got;
	int			n;
	int			k;

	for (i = 0; args[1][i] != '\0'; i++)
	{
		unsigned	d = (unsigned) (args[1][i] - '0');

		if (d > 9 || (i == 0 && d == 0) || i >= 19)
			break;
		seq = seq * 10 + d;
	}
	if (i == 0 || args[1][i] != '\0' || seq > (uint64_t) INT64_MAX)
		die("--inclusion: SEQ must be a row number from 1 to 9223372036854775807, not \"%s\"",
			args[1]);
	if (!env_base64_decode(args[2], strlen(args[2]), hash, sizeof(hash), &got) ||
		got != ENV_SHA256_LEN)
		die("--inclusion: HASH must be the base64 of 32 bytes (encode(envault_hash, 'base64'))");

	ev_checkpoint_keys(keys, nkeys, ckeys);
	load_tree_head(args[0], ckeys, nkeys, database, &st.notes[0], &len, &cp);
	if (seq > cp.seq)
		fail(cp.origin, cp.origin_len, "row %llu is beyond the tree of %llu rows",
			 (unsigned long long) seq, (unsigned long long) cp.seq);
	load_proof(args[3], &cp, proof, &n);
	if (!env_merkle_leaf(hash, leaf))
		die("could not compute SHA-256");
	if (!env_merkle_verify_inclusion(seq - 1, cp.seq, leaf,
									 (const uint8_t (*)[ENV_MERKLE_HASH_LEN]) proof, n,
									 cp.hash))
		fail(cp.origin, cp.origin_len,
			 "the inclusion proof does not verify: row %llu of that hash is not in the tree of %llu rows",
			 (unsigned long long) seq, (unsigned long long) cp.seq);
	k = check_witnesses(st.notes[0], len, &cp, witnesses, nwitnesses, need);
	printf("OK: %.*s: row %llu is in the tree of %llu rows", (int) cp.origin_len,
		   cp.origin, (unsigned long long) seq, (unsigned long long) cp.seq);
	print_cosigned(nwitnesses, k);
	putchar('\n');
	return 0;
}

static int
run_request(const char *path, const EvKey *key, const char *last_path,
			const char *text_out)
{
	EvRequest	req;
	EvRequestStatus status;
	char		err[EV_ERRLEN];
	size_t		len;
	size_t		last_len = 0;
	uint64_t	last_size;
	bool		too_big;

	st.data = read_file(path, EV_REQUEST_MAXLEN, &len, &too_big);
	if (st.data == NULL && !too_big)
		die("could not read request \"%s\": %s", path, strerror(errno));
	if (st.data == NULL)
	{
		fprintf(stderr, "%s: malformed request: longer than %zu bytes\n",
				progname, (size_t) EV_REQUEST_MAXLEN);
		return 1;
	}
	if (last_path != NULL)
		st.last = read_or_die(last_path, ENV_NOTE_MAXLEN, "last checkpoint text",
							  &last_len);

	status = ev_request_parse(st.data, len, key, &req, err);
	if (status == EV_REQUEST_OK)
		status = ev_request_check(&req, st.last, last_len, &last_size, err);
	if (status == EV_REQUEST_SIZE)
	{
		printf("size %llu\n", (unsigned long long) last_size);
		return 3;
	}
	if (status != EV_REQUEST_OK)
	{
		fprintf(stderr, "%s: %s\n", progname, err);
		return 1;
	}
	if (text_out != NULL)
	{
		FILE	   *f = strcmp(text_out, "-") == 0 ? stdout : fopen(text_out, "wb");
		bool		ok = f != NULL &&
			fwrite(req.text, 1, req.text_len, f) == req.text_len;

		if (f != NULL && f != stdout && fclose(f) != 0)
			ok = false;
		if (!ok)
			die("could not write \"%s\": %s", text_out, strerror(errno));
	}
	return 0;
}

/* The command line, as given */
typedef struct Options
{
	const char *keyfiles[EV_MAXKEYS];
	int			nkeyfiles;
	const char *witnessfiles[EV_MAXWITNESSES];
	int			nwitnessfiles;
	const char *logs[EV_MAX_LOGS];
	int			nlogs;
	const char *name;			/* of PEM keys */
	const char *database;
	const char *export_path;
	const char *last_path;
	const char *text_out;
	const char *need_arg;		/* --witnesses */
	char	   *margs[4];		/* the values of a mode's option */
	Mode		mode;
	bool		complete;
} Options;

/* Read the command line into o; --help exits here */
static void
parse_options(int argc, char **argv, Options *o)
{
	bool		options_done = false;
	int			i;

	memset(o, 0, sizeof(*o));
	o->name = "envault";
	o->mode = MODE_EXPORT;
	for (i = 1; i < argc; i++)
	{
		const char *v;

		if (options_done)
			v = NULL;
		else if (strcmp(argv[i], "--") == 0)
		{
			options_done = true;
			continue;
		}
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
		{
			usage(stdout);
			exit(0);
		}
		else if ((v = option_value(argc, argv, &i, "--key")) != NULL)
		{
			if (o->nkeyfiles == EV_MAXKEYS)
				die("at most %d keys", EV_MAXKEYS);
			o->keyfiles[o->nkeyfiles++] = v;
			continue;
		}
		else if ((v = option_value(argc, argv, &i, "--name")) != NULL)
		{
			o->name = v;
			continue;
		}
		else if ((v = option_value(argc, argv, &i, "--database")) != NULL)
		{
			if (v[0] == '\0')
				die("--database needs a database identity (envault.database_id())");
			o->database = v;
			continue;
		}
		else if ((v = option_value(argc, argv, &i, "--checkpoints")) != NULL)
		{
			if (o->nlogs == EV_MAX_LOGS)
				die("at most %d server logs", EV_MAX_LOGS);
			o->logs[o->nlogs++] = v;
			continue;
		}
		else if (strcmp(argv[i], "--complete") == 0)
		{
			o->complete = true;
			continue;
		}
		else if ((v = option_value(argc, argv, &i, "--witnesses")) != NULL)
		{
			o->need_arg = v;
			continue;
		}
		else if ((v = option_value(argc, argv, &i, "--witness")) != NULL)
		{
			if (o->nwitnessfiles == EV_MAXWITNESSES)
				die("at most %d witnesses", EV_MAXWITNESSES);
			o->witnessfiles[o->nwitnessfiles++] = v;
			continue;
		}
		else if ((v = option_value(argc, argv, &i, "--consistency")) != NULL)
		{
			set_mode(&o->mode, MODE_CONSISTENCY, v, 3, o->margs, argc, argv, &i);
			continue;
		}
		else if ((v = option_value(argc, argv, &i, "--inclusion")) != NULL)
		{
			set_mode(&o->mode, MODE_INCLUSION, v, 4, o->margs, argc, argv, &i);
			continue;
		}
		else if ((v = option_value(argc, argv, &i, "--check-request")) != NULL)
		{
			set_mode(&o->mode, MODE_REQUEST, v, 1, o->margs, argc, argv, &i);
			continue;
		}
		else if ((v = option_value(argc, argv, &i, "--last")) != NULL)
		{
			o->last_path = v;
			continue;
		}
		else if ((v = option_value(argc, argv, &i, "--text-out")) != NULL)
		{
			o->text_out = v;
			continue;
		}
		else if (argv[i][0] == '-' && argv[i][1] != '\0')
			die("unknown option \"%s\"\nTry \"%s --help\".", argv[i], progname);

		/* not an option: the export */
		if (o->export_path != NULL)
			die("more than one export file given\nTry \"%s --help\".", progname);
		o->export_path = argv[i];
	}
}

/* Which options go with which mode: exits 2 if they do not */
static void
check_options(const Options *o)
{
	if (o->mode != MODE_EXPORT && o->export_path != NULL)
		die("an export file (\"%s\") goes with no other mode\nTry \"%s --help\".",
			o->export_path, progname);
	if (o->mode != MODE_EXPORT && (o->nlogs > 0 || o->complete))
		die("--checkpoints and --complete are for exports\nTry \"%s --help\".",
			progname);
	if (o->mode != MODE_REQUEST && (o->last_path != NULL || o->text_out != NULL))
		die("--last and --text-out go with --check-request\nTry \"%s --help\".",
			progname);
	if (o->mode == MODE_REQUEST &&
		(o->nkeyfiles > 1 || o->database != NULL || o->nwitnessfiles > 0 ||
		 o->need_arg != NULL))
		die("--check-request takes one --key (the log's) and no --database or --witness\nTry \"%s --help\".",
			progname);
	if (o->mode != MODE_REQUEST && o->nkeyfiles == 0)
		die("no key given (--key KEYFILE)\nTry \"%s --help\".", progname);
	if (o->mode != MODE_REQUEST && o->database == NULL)
		die("no database given (--database ID, as envault.database_id() returns it)\nTry \"%s --help\".",
			progname);
	if (o->mode == MODE_EXPORT && o->export_path == NULL)
		die("no export file given\nTry \"%s --help\".", progname);
}

/* The trusted keys, from their files */
static void
read_keys(const Options *o, EvKey *keys)
{
	char		err[EV_ERRLEN];
	size_t		len;
	bool		too_big;
	int			i;

	for (i = 0; i < o->nkeyfiles; i++)
	{
		st.key_text = read_file(o->keyfiles[i], EV_KEYFILE_MAX, &len, &too_big);
		if (st.key_text == NULL)
			die("could not read key file \"%s\": %s", o->keyfiles[i],
				too_big ? "too large for a key" : strerror(errno));
		if (!ev_key_parse(st.key_text, len, o->name, &keys[i], err))
			die("key file \"%s\" %s", o->keyfiles[i], err);
		free(st.key_text);
		st.key_text = NULL;
	}
}

/* The witnesses, from their files, each once; returns how many */
static int
read_witnesses(const Options *o, EvWitness *witnesses)
{
	char		err[EV_ERRLEN];
	size_t		len;
	bool		too_big;
	int			nwitnesses = 0;
	int			i;

	for (i = 0; i < o->nwitnessfiles; i++)
	{
		int			k;

		st.key_text = read_file(o->witnessfiles[i], EV_KEYFILE_MAX, &len,
								&too_big);
		if (st.key_text == NULL)
			die("could not read witness key file \"%s\": %s",
				o->witnessfiles[i],
				too_big ? "too large for a key" : strerror(errno));
		if (!ev_witness_parse(st.key_text, len, &witnesses[nwitnesses], err))
			die("witness key file \"%s\" %s", o->witnessfiles[i], err);
		free(st.key_text);
		st.key_text = NULL;
		for (k = 0; k < nwitnesses; k++)
			if (ev_same_witness(&witnesses[k], &witnesses[nwitnesses]))
				break;
		if (k == nwitnesses)
			nwitnesses++;
	}
	return nwitnesses;
}

/* --witnesses N, from 0 to the witnesses given; all of them by default */
static int
witnesses_needed(const char *need_arg, int nwitnesses)
{
	char	   *end;
	long		n;

	if (need_arg == NULL)
		return nwitnesses;
	errno = 0;
	n = strtol(need_arg, &end, 10);
	if (need_arg[0] < '0' || need_arg[0] > '9' || *end != '\0' ||
		errno != 0 || n < 0 || n > nwitnesses)
		die("--witnesses must be a number from 0 to the %d distinct witnesses given (--witness)",
			nwitnesses);
	return (int) n;
}

/*
 * Verify an export, with the checkpoints of its chain in the server logs
 * given; print the result line.  Returns the exit status.
 */
static int
run_export(const Options *o, const EvKey *keys, const EvWitness *witnesses,
		   int nwitnesses, int need)
{
	char		err[EV_ERRLEN];
	size_t		len;
	size_t		origin_max;
	size_t		origin_len;
	bool		too_big;
	EvResult	res;
	int			i;

	st.data = read_file(o->export_path, EV_EXPORT_MAXLEN, &len, &too_big);
	if (st.data == NULL)
	{
		if (too_big)
			die("\"%s\" is larger than %zu bytes, the most envault-verify reads; export the chain in parts with since and until",
				o->export_path, EV_EXPORT_MAXLEN);
		die("could not read \"%s\": %s", o->export_path, strerror(errno));
	}
	if (!ev_export_parse(st.data, len, &st.ex, err))
	{
		printf("FAIL: malformed export: %s\n", err);
		return 1;
	}
	/* the auditor's identity decides, never the file's */
	if (st.ex.database_len != strlen(o->database) ||
		memcmp(st.ex.database, o->database, st.ex.database_len) != 0)
	{
		printf("FAIL: malformed export: database: expected \"%s\" (--database), found another\n",
			   o->database);
		return 1;
	}

	origin_max = 8 + 3 * st.ex.database_len + 1 + 3 * st.ex.chain_len + 1 +
		3 * st.ex.tenant_len + 1;
	st.origin = malloc(origin_max);
	if (st.origin == NULL)
		die("out of memory");
	origin_len = ev_export_origin(&st.ex, st.origin, origin_max);
	if (!ev_log_init(&st.log, st.origin, origin_len))
		die("out of memory");
	for (i = 0; i < o->nlogs; i++)
	{
		const char *problem = read_log(o->logs[i], &st.log);

		if (problem != NULL)
			die("could not read server log \"%s\": %s", o->logs[i], problem);
	}

	if (!ev_verify_witnessed(&st.ex, keys, o->nkeyfiles, witnesses,
							 nwitnesses, need,
							 o->nlogs > 0 ? &st.log : NULL, o->complete,
							 &res))
		die("out of memory");
	st.line = ev_result_line(&st.ex, &res);
	if (st.line == NULL)
		die("out of memory");
	printf("%s\n", st.line);
	return res.ok ? 0 : 1;
}

int
main(int argc, char **argv)
{
	Options		o;
	EvKey		keys[EV_MAXKEYS];
	EvWitness	witnesses[EV_MAXWITNESSES];
	int			nwitnesses;
	int			need;
	int			rc;

	parse_options(argc, argv, &o);
	check_options(&o);
	if (!env_crypto_init())
		die("could not initialize OpenSSL");
	read_keys(&o, keys);
	nwitnesses = read_witnesses(&o, witnesses);
	need = witnesses_needed(o.need_arg, nwitnesses);

	if (o.mode == MODE_REQUEST)
		rc = run_request(o.margs[0], o.nkeyfiles > 0 ? &keys[0] : NULL,
						 o.last_path, o.text_out);
	else if (o.mode == MODE_CONSISTENCY)
		rc = run_consistency(o.margs, keys, o.nkeyfiles, o.database,
							 witnesses, nwitnesses, need);
	else if (o.mode == MODE_INCLUSION)
		rc = run_inclusion(o.margs, keys, o.nkeyfiles, o.database, witnesses,
						   nwitnesses, need);
	else
		rc = run_export(&o, keys, witnesses, nwitnesses, need);
	cleanup();
	if (fflush(stdout) != 0)
	{
		fprintf(stderr, "%s: could not write the result: %s\n", progname,
				strerror(errno));
		return 2;
	}
	return rc;
}
