/*-------------------------------------------------------------------------
 *
 * envault-witness.c
 *		A witness of envault's audit chains: cosigns a signed tree head
 *		(C2SP tlog-cosignature, cosignature/v1) only if it extends the last
 *		one it cosigned for the origin, so that a log that shows different
 *		trees to different people is caught.
 *
 *	envault-witness --key WITNESS.pem --name NAME --log-key LOG.vkey
 *					--state DIR
 *	envault-witness --key WITNESS.pem --name NAME --print-vkey
 *
 * envault writes a request on standard input: the signed note of a tree
 * head, optionally followed by a blank line and a consistency proof from an
 * older size (tools/request.h).  The witness checks it against its state,
 * DIR/<SHA-256 of the origin, hex>, which holds the checkpoint text it last
 * cosigned for that origin, and answers on standard output with
 *
 *	— NAME base64(key ID || u64 timestamp || signature)
 *
 * (exit 0), or "size N" (exit 0) when the proof is not from N, the size of
 * its last cosigned tree: envault then asks again with a proof from N.  It
 * refuses anything else with a message on stderr and exit status 1; usage
 * errors exit 2.  One run at a time holds DIR/lock (DIR is created if
 * missing, its parent is not); the new state replaces the old by rename,
 * written before the cosignature is printed.
 *
 * The witness key is an Ed25519 private key in PEM (openssl genpkey
 * -algorithm ed25519).  It is read without stdio buffering into memory
 * that is wiped, never printed, and freed on every way out.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "request.h"

#define EW_KEYFILE_MAX		65536

static const char *progname = "envault-witness";

/* What main() holds, released by cleanup() on every way out */
static struct
{
	char	   *pem;			/* the private key file: wiped */
	size_t		pem_len;
	EVP_PKEY   *pkey;
	char	   *log_key_text;
	char	   *request;
	char	   *last;
	char	   *path;
	char	   *tmp;
	int			lock_fd;
}			st = {.lock_fd = -1};

static void
cleanup(void)
{
	if (st.pem != NULL)
		env_wipe(st.pem, st.pem_len + 1);
	free(st.pem);
	EVP_PKEY_free(st.pkey);
	free(st.log_key_text);
	free(st.request);
	free(st.last);
	if (st.tmp != NULL)
		unlink(st.tmp);
	free(st.path);
	free(st.tmp);
	if (st.lock_fd >= 0)
		close(st.lock_fd);		/* releases the lock */
	memset(&st, 0, sizeof(st));
	st.lock_fd = -1;
	env_crypto_cleanup();
}

static void
usage(FILE *f)
{
	fprintf(f,
			"Usage: %s --key WITNESS.pem --name NAME --log-key LOG.vkey --state DIR\n"
			"       %s --key WITNESS.pem --name NAME --print-vkey\n"
			"\n"
			"A witness of envault's audit chains: reads a signed tree head (and a\n"
			"consistency proof) on standard input, as envault.witness commands\n"
			"receive them, and prints its cosignature if the tree extends the last\n"
			"one it cosigned for the origin.\n"
			"\n"
			"Options:\n"
			"  --key WITNESS.pem      the witness's Ed25519 private key, PEM\n"
			"                         (openssl genpkey -algorithm ed25519)\n"
			"  --name NAME            the witness's name, in its cosignatures\n"
			"  --log-key LOG.vkey     the log's verifier key (or PEM public key):\n"
			"                         the tree head must verify under it\n"
			"  --state DIR            where the last cosigned checkpoint of each\n"
			"                         origin is kept (DIR/<sha256 of origin, hex>;\n"
			"                         created if missing)\n"
			"  --print-vkey           print the witness's verifier key (type 0x04),\n"
			"                         for envault-verify --witness, and exit\n"
			"  --help                 show this help\n"
			"\n"
			"Prints the cosignature line, or \"size N\" when the request must come\n"
			"with a consistency proof from N rows, and exits 0; refuses with a\n"
			"message on stderr and exit status 1; usage errors exit 2.\n",
			progname, progname);
}

static void die_status(int status, const char *fmt,...)
			__attribute__((format(printf, 2, 3), noreturn));

static void
die_status(int status, const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cleanup();
	exit(status);
}

#define usage_error(...)	die_status(2, __VA_ARGS__)
#define refuse(...)			die_status(1, __VA_ARGS__)

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
		usage_error("option %s needs a value\nTry \"%s --help\".", opt, progname);
	return argv[++*i];
}

/*
 * Read a whole file descriptor, at most max bytes, with read(2): no stdio
 * buffer keeps a copy of a key.  NUL-terminated.  NULL with errno set, or
 * EFBIG when longer.  A buffer that grows is wiped before it is freed.
 */
static char *
read_fd(int fd, size_t max, size_t *len)
{
	char	   *buf = NULL;
	size_t		cap = 0;
	size_t		n = 0;

	for (;;)
	{
		ssize_t		got;

		if (n == cap)
		{
			size_t		ncap = cap == 0 ? 4096 : cap * 2;
			char	   *nb;

			if (cap > max)
			{
				env_wipe(buf, cap + 1);
				free(buf);
				errno = EFBIG;
				return NULL;
			}
			nb = malloc(ncap + 1);
			if (nb == NULL)
			{
				if (buf != NULL)
					env_wipe(buf, cap + 1);
				free(buf);
				errno = ENOMEM;
				return NULL;
			}
			if (buf != NULL)
			{
				memcpy(nb, buf, n);
				env_wipe(buf, cap + 1);
				free(buf);
			}
			buf = nb;
			cap = ncap;
		}
		got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
		{
			int			saved = errno;

			env_wipe(buf, cap + 1);
			free(buf);
			errno = saved;
			return NULL;
		}
		if (got == 0)
			break;
		n += (size_t) got;
	}
	if (n > max)
	{
		env_wipe(buf, cap + 1);
		free(buf);
		errno = EFBIG;
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

static char *
read_path(const char *path, size_t max, size_t *len)
{
	int			fd = open(path, O_RDONLY | O_CLOEXEC);
	char	   *buf;
	int			saved;

	if (fd < 0)
		return NULL;
	buf = read_fd(fd, max, len);
	saved = errno;
	close(fd);
	errno = saved;
	return buf;
}

/* never ask for a passphrase: an encrypted key is refused */
static int
no_password(char *buf, int size, int rwflag, void *u)
{
	(void) buf;
	(void) size;
	(void) rwflag;
	(void) u;
	return 0;
}

/* The witness's key and its raw public key */
static void
load_key(const char *path, uint8_t *pub)
{
	BIO		   *bio;
	size_t		publen = ENV_ED25519_PUBLIC_LEN;

	st.pem = read_path(path, EW_KEYFILE_MAX, &st.pem_len);
	if (st.pem == NULL)
		usage_error("could not read key file \"%s\": %s", path,
					errno == EFBIG ? "too large for a key" : strerror(errno));
	bio = BIO_new_mem_buf(st.pem, (int) st.pem_len);
	if (bio != NULL)
	{
		st.pkey = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
		BIO_free(bio);
	}
	ERR_clear_error();
	env_wipe(st.pem, st.pem_len + 1);
	free(st.pem);
	st.pem = NULL;
	if (st.pkey == NULL)
		usage_error("key file \"%s\" is not a PEM private key (unencrypted: openssl genpkey -algorithm ed25519)",
					path);
	if (EVP_PKEY_get_id(st.pkey) != EVP_PKEY_ED25519 ||
		EVP_PKEY_get_raw_public_key(st.pkey, pub, &publen) != 1 ||
		publen != ENV_ED25519_PUBLIC_LEN)
	{
		ERR_clear_error();
		usage_error("key file \"%s\" holds a private key of another algorithm than Ed25519",
					path);
	}
}

static bool
sign(const uint8_t *msg, size_t len, uint8_t *sig)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t		siglen = ENV_ED25519_SIG_LEN;
	bool		ok;

	if (ctx == NULL)
		return false;
	ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, st.pkey) == 1 &&
		EVP_DigestSign(ctx, sig, &siglen, msg, len) == 1 &&
		siglen == ENV_ED25519_SIG_LEN;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/* DIR/<hex of SHA-256(origin)> */
static char *
state_path(const char *dir, const char *origin, size_t origin_len,
		   const char *suffix)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t		h[ENV_SHA256_LEN];
	size_t		need = strlen(dir) + 1 + 2 * ENV_SHA256_LEN + strlen(suffix) + 1;
	char	   *path = malloc(need);
	char	   *p;
	int			i;

	if (path == NULL || !env_sha256((const uint8_t *) origin, origin_len, h))
	{
		free(path);
		refuse("out of memory");
	}
	p = path + snprintf(path, need, "%s/", dir);
	for (i = 0; i < ENV_SHA256_LEN; i++)
	{
		*p++ = hex[h[i] >> 4];
		*p++ = hex[h[i] & 15];
	}
	strcpy(p, suffix);
	return path;
}

static bool
write_all(int fd, const char *buf, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t) n;
	}
	return true;
}

/* Replace the state of an origin: write, sync, rename, sync the directory */
static void
save_state(const char *dir, const char *text, size_t len)
{
	int			fd = open(st.tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		refuse("could not create \"%s\": %s", st.tmp, strerror(errno));
	if (!write_all(fd, text, len) || fsync(fd) != 0)
	{
		int			saved = errno;

		close(fd);
		refuse("could not write \"%s\": %s", st.tmp, strerror(saved));
	}
	if (close(fd) != 0)
		refuse("could not write \"%s\": %s", st.tmp, strerror(errno));
	if (rename(st.tmp, st.path) != 0)
		refuse("could not rename \"%s\" to \"%s\": %s", st.tmp, st.path,
			   strerror(errno));
	free(st.tmp);
	st.tmp = NULL;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
	{
		int			saved = errno;

		if (fd >= 0)
			close(fd);
		refuse("could not sync directory \"%s\": %s", dir, strerror(saved));
	}
	close(fd);
}

/* One run at a time for the whole state directory, created on first use */
static void
lock_state(const char *dir)
{
	char	   *lock_path;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		refuse("could not create state directory \"%s\": %s", dir,
			   strerror(errno));
	lock_path = malloc(strlen(dir) + 6);
	if (lock_path == NULL)
		refuse("out of memory");
	sprintf(lock_path, "%s/lock", dir);
	st.lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st.lock_fd < 0)
	{
		int			saved = errno;

		free(lock_path);
		refuse("could not open \"%s/lock\": %s", dir, strerror(saved));
	}
	free(lock_path);
	while (flock(st.lock_fd, LOCK_EX) != 0)
		if (errno != EINTR)
			refuse("could not lock \"%s/lock\": %s", dir, strerror(errno));
}

/*
 * The cosignature line (cosignature/v1) of the request's checkpoint text,
 * signed now, into line (of size line_size)
 */
static void
cosign(const char *name, const uint8_t *pub, const EvRequest *req,
	   char *line, size_t line_size)
{
	uint8_t		key_id[ENV_NOTE_KEYID_LEN];
	uint8_t		sig[ENV_ED25519_SIG_LEN];
	char	   *msg;
	size_t		msg_len;
	uint64_t	timestamp;
	time_t		now;

	now = time(NULL);
	if (now < 0)
		refuse("the clock is before the Epoch");
	timestamp = (uint64_t) now;
	msg = malloc(64 + req->text_len);
	if (msg == NULL)
		refuse("out of memory");
	msg_len = env_cosignature_message(req->text, req->text_len, timestamp, msg,
									  64 + req->text_len);
	if (msg_len == 0 || !sign((const uint8_t *) msg, msg_len, sig) ||
		!env_ed25519_verify(pub, (const uint8_t *) msg, msg_len, sig))
	{
		free(msg);
		refuse("could not sign");
	}
	free(msg);
	env_note_key_id_typed(name, strlen(name), ENV_NOTE_TYPE_COSIGNATURE, pub,
						  key_id);
	if (env_cosignature_line(name, strlen(name), key_id, timestamp, sig,
							 line, line_size) == 0)
		refuse("--name: too long");
}

int
main(int argc, char **argv)
{
	const char *key_path = NULL;
	const char *name = NULL;
	const char *log_key_path = NULL;
	const char *dir = NULL;
	bool		print_vkey = false;
	uint8_t		pub[ENV_ED25519_PUBLIC_LEN];
	char		vkey[ENV_NOTE_NAME_MAXLEN + 64];
	char		line[ENV_NOTE_NAME_MAXLEN + 128];
	EvKey		log_key;
	EvRequest	req;
	EvRequestStatus status;
	char		err[EV_ERRLEN];
	size_t		len;
	size_t		last_len = 0;
	uint64_t	last_size;
	int			i;

	for (i = 1; i < argc; i++)
	{
		const char *v;

		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
		{
			usage(stdout);
			return 0;
		}
		else if ((v = option_value(argc, argv, &i, "--key")) != NULL)
			key_path = v;
		else if ((v = option_value(argc, argv, &i, "--name")) != NULL)
			name = v;
		else if ((v = option_value(argc, argv, &i, "--log-key")) != NULL)
			log_key_path = v;
		else if ((v = option_value(argc, argv, &i, "--state")) != NULL)
			dir = v;
		else if (strcmp(argv[i], "--print-vkey") == 0)
			print_vkey = true;
		else
			usage_error("unknown argument \"%s\"\nTry \"%s --help\".", argv[i],
						progname);
	}
	if (key_path == NULL || name == NULL ||
		(!print_vkey && (log_key_path == NULL || dir == NULL)))
		usage_error("%s\nTry \"%s --help\".",
					key_path == NULL ? "no key given (--key WITNESS.pem)" :
					name == NULL ? "no name given (--name NAME)" :
					log_key_path == NULL ? "no log key given (--log-key LOG.vkey)" :
					"no state directory given (--state DIR)", progname);
	if (!env_note_name_valid(name, strlen(name)))
		usage_error("--name: not a valid key name (non-empty, no spaces, no \"+\")");

	if (!env_crypto_init())
		usage_error("could not initialize OpenSSL");
	load_key(key_path, pub);

	if (print_vkey)
	{
		if (env_note_vkey_typed(name, strlen(name), ENV_NOTE_TYPE_COSIGNATURE,
								pub, vkey, sizeof(vkey)) == 0)
			usage_error("--name: too long");
		printf("%s\n", vkey);
		cleanup();
		return fflush(stdout) == 0 ? 0 : 1;
	}

	st.log_key_text = read_path(log_key_path, EW_KEYFILE_MAX, &len);
	if (st.log_key_text == NULL)
		usage_error("could not read log key file \"%s\": %s", log_key_path,
					errno == EFBIG ? "too large for a key" : strerror(errno));
	if (!ev_key_parse(st.log_key_text, len, "envault", &log_key, err))
		usage_error("log key file \"%s\" %s", log_key_path, err);

	lock_state(dir);

	st.request = read_fd(STDIN_FILENO, EV_REQUEST_MAXLEN, &len);
	if (st.request == NULL)
		refuse("could not read the request: %s",
			   errno == EFBIG ? "too long" : strerror(errno));
	status = ev_request_parse(st.request, len, &log_key, &req, err);
	if (status != EV_REQUEST_OK)
		refuse("%s", err);

	st.path = state_path(dir, req.cp.origin, req.cp.origin_len, "");
	st.last = read_path(st.path, ENV_NOTE_MAXLEN, &last_len);
	if (st.last == NULL && errno != ENOENT)
		refuse("could not read \"%s\": %s", st.path,
			   errno == EFBIG ? "too large" : strerror(errno));
	status = ev_request_check(&req, st.last, last_len, &last_size, err);
	if (status == EV_REQUEST_SIZE)
	{
		printf("size %llu\n", (unsigned long long) last_size);
		cleanup();
		return fflush(stdout) == 0 ? 0 : 1;
	}
	if (status != EV_REQUEST_OK)
		refuse("%s", err);

	cosign(name, pub, &req, line, sizeof(line));

	/* the state first: a cosignature given is one remembered */
	st.tmp = state_path(dir, req.cp.origin, req.cp.origin_len, ".tmp");
	save_state(dir, req.text, req.text_len);
	fputs(line, stdout);
	cleanup();
	return fflush(stdout) == 0 ? 0 : 1;
}
