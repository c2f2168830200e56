/*-------------------------------------------------------------------------
 *
 * envault-verify.c
 *		Verify an export of an envault audit chain against a public key,
 *		without a database.
 *
 *	envault-verify --key KEYFILE [--key KEYFILE ...] [--name NAME]
 *				   --database ID [--checkpoints LOGFILE ...] [--complete]
 *				   EXPORT.json
 *
 * Prints one line: "OK: ..." and exits 0, or "FAIL: seq N: <reason>" (or
 * "FAIL: malformed export: ...") and exits 1.  Usage and I/O errors go to
 * stderr with exit status 2.  docs/audit-chain.md specifies what is checked;
 * tools/export.c checks it.
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

#include "export.h"

#define EV_KEYFILE_MAX		65536
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
			"\n"
			"Verify an export of an envault audit chain (the JSON that\n"
			"envault.export_chain() returns) without a database.\n"
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
			"                         row 1, or at a row a checkpoint signs\n"
			"  --help                 show this help\n"
			"\n"
			"EXPORT.json may be - for standard input.  Prints one line; exits 0 if\n"
			"the export verifies, 1 if not, 2 on a usage or I/O error.\n",
			progname);
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

int
main(int argc, char **argv)
{
	const char *keyfiles[EV_MAXKEYS];
	int			nkeyfiles = 0;
	const char *logs[EV_MAX_LOGS];
	int			nlogs = 0;
	const char *name = "envault";
	const char *database = NULL;
	const char *export_path = NULL;
	bool		complete = false;
	bool		options_done = false;
	EvKey		keys[EV_MAXKEYS];
	EvResult	res;
	char		err[EV_ERRLEN];
	size_t		len;
	size_t		origin_max;
	size_t		origin_len;
	bool		too_big;
	int			i;
	int			rc;

	for (i = 1; i < argc; i++)
	{
		const char *v;

		if (!options_done && strcmp(argv[i], "--") == 0)
			options_done = true;
		else if (!options_done && (strcmp(argv[i], "--help") == 0 ||
								   strcmp(argv[i], "-h") == 0))
		{
			usage(stdout);
			return 0;
		}
		else if (!options_done && (v = option_value(argc, argv, &i, "--key")) != NULL)
		{
			if (nkeyfiles == EV_MAXKEYS)
				die("at most %d keys", EV_MAXKEYS);
			keyfiles[nkeyfiles++] = v;
		}
		else if (!options_done && (v = option_value(argc, argv, &i, "--name")) != NULL)
			name = v;
		else if (!options_done && (v = option_value(argc, argv, &i, "--database")) != NULL)
		{
			if (v[0] == '\0')
				die("--database needs a database identity (envault.database_id())");
			database = v;
		}
		else if (!options_done &&
				 (v = option_value(argc, argv, &i, "--checkpoints")) != NULL)
		{
			if (nlogs == EV_MAX_LOGS)
				die("at most %d server logs", EV_MAX_LOGS);
			logs[nlogs++] = v;
		}
		else if (!options_done && strcmp(argv[i], "--complete") == 0)
			complete = true;
		else if (!options_done && argv[i][0] == '-' && argv[i][1] != '\0')
			die("unknown option \"%s\"\nTry \"%s --help\".", argv[i], progname);
		else if (export_path == NULL)
			export_path = argv[i];
		else
			die("more than one export file given\nTry \"%s --help\".", progname);
	}
	if (nkeyfiles == 0 || database == NULL || export_path == NULL)
	{
		fprintf(stderr, "%s: %s\n", progname,
				nkeyfiles == 0 ? "no key given (--key KEYFILE)" :
				database == NULL ? "no database given (--database ID, as envault.database_id() returns it)" :
				"no export file given");
		fprintf(stderr, "Try \"%s --help\".\n", progname);
		return 2;
	}

	if (!env_crypto_init())
		die("could not initialize OpenSSL");
	for (i = 0; i < nkeyfiles; i++)
	{
		st.key_text = read_file(keyfiles[i], EV_KEYFILE_MAX, &len, &too_big);
		if (st.key_text == NULL)
			die("could not read key file \"%s\": %s", keyfiles[i],
				too_big ? "too large for a key" : strerror(errno));
		if (!ev_key_parse(st.key_text, len, name, &keys[i], err))
			die("key file \"%s\" %s", keyfiles[i], err);
		free(st.key_text);
		st.key_text = NULL;
	}

	st.data = read_file(export_path, EV_EXPORT_MAXLEN, &len, &too_big);
	if (st.data == NULL)
	{
		if (too_big)
			die("\"%s\" is larger than %zu bytes, the most envault-verify reads; export the chain in parts with since and until",
				export_path, EV_EXPORT_MAXLEN);
		die("could not read \"%s\": %s", export_path, strerror(errno));
	}
	if (!ev_export_parse(st.data, len, &st.ex, err))
	{
		printf("FAIL: malformed export: %s\n", err);
		cleanup();
		return 1;
	}
	/* the auditor's identity decides, never the file's */
	if (st.ex.database_len != strlen(database) ||
		memcmp(st.ex.database, database, st.ex.database_len) != 0)
	{
		printf("FAIL: malformed export: database: expected \"%s\" (--database), found another\n",
			   database);
		cleanup();
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
	for (i = 0; i < nlogs; i++)
	{
		const char *problem = read_log(logs[i], &st.log);

		if (problem != NULL)
			die("could not read server log \"%s\": %s", logs[i], problem);
	}

	if (!ev_verify(&st.ex, keys, nkeyfiles, nlogs > 0 ? &st.log : NULL,
				   complete, &res))
		die("out of memory");
	st.line = ev_result_line(&st.ex, &res);
	if (st.line == NULL)
		die("out of memory");
	printf("%s\n", st.line);
	rc = res.ok ? 0 : 1;
	cleanup();
	if (fflush(stdout) != 0)
	{
		fprintf(stderr, "%s: could not write the result: %s\n", progname,
				strerror(errno));
		return 2;
	}
	return rc;
}
