/*-------------------------------------------------------------------------
 *
 * masterkey.c
 *		The master key: its three settings, loading it, and its check value.
 *
 * Exactly one of envault.master_key (64 hex characters),
 * envault.master_key_file (a file holding them, refused when group- or
 * world-accessible) or envault.master_key_command (a shell command that
 * prints them, so that a KMS or HSM can answer) is set.  All three can only
 * be set in the server configuration, and SHOW never displays the key or
 * the command.
 *
 * With shared_preload_libraries = 'envault' the key is read once in the
 * postmaster at server start and inherited by every backend.  If that fails
 * (or the library was not preloaded), each backend tries again when it first
 * needs the key, and reports the problem as an error.
 *
 * Secrets: the 32 key bytes and the prepared XAES key live in one page that
 * is locked against swapping (re-locked in each backend, as mlock() is not
 * inherited by fork()) and excluded from core dumps.  Buffers used while
 * reading the key are wiped before they go out of scope.  The page lives as
 * long as the process.  No message here contains the key or the command.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "utils/guc.h"

#define MK_PAGE_SIZE	4096
#define MK_READ_MAX		256

static const char mk_kcv_label[] = "envault/v1/key-check-value";

/* settings */
static char *mk_key_setting = NULL;
static char *mk_file_setting = NULL;
static char *mk_command_setting = NULL;

/* the locked page: key bytes, then the prepared XAES key */
typedef struct MkPage
{
	uint8		key[ENV_KEY_LEN];
	EnvXaesKey	xk;
} MkPage;

static MkPage *mk_page = NULL;
static bool mk_loaded = false;
static uint8 mk_kcv[ENV_KCV_LEN];
static pid_t mk_locked_pid = 0;
static pid_t mk_prepared_pid = 0;
static pid_t mk_exit_pid = 0;

/* why the last load failed; plain buffers, as the postmaster has no palloc */
static int	mk_err_code = 0;
static char mk_err_msg[256];
static char mk_err_detail[512];
static char mk_err_hint[256];

/* SHOW hooks: say whether a secret setting is set, never what it is */
static const char *
mk_show_key(void)
{
	return (mk_key_setting && mk_key_setting[0]) ? "********" : "";
}

static const char *
mk_show_command(void)
{
	return (mk_command_setting && mk_command_setting[0]) ? "********" : "";
}

static bool
mk_fail(int sqlstate, const char *detail, const char *hint, const char *fmt,...)
	pg_attribute_printf(4, 5);

static bool
mk_fail(int sqlstate, const char *detail, const char *hint, const char *fmt,...)
{
	va_list		ap;

	mk_err_code = sqlstate;
	va_start(ap, fmt);
	vsnprintf(mk_err_msg, sizeof(mk_err_msg), fmt, ap);
	va_end(ap);
	strlcpy(mk_err_detail, detail ? detail : "", sizeof(mk_err_detail));
	strlcpy(mk_err_hint, hint ? hint : "", sizeof(mk_err_hint));
	return false;
}

#define MK_SOURCES_HINT "Set exactly one of envault.master_key, envault.master_key_file or envault.master_key_command in postgresql.conf and restart the server."
#define MK_FORMAT_DETAIL "The master key must be 64 hexadecimal characters (32 bytes), optionally followed by a newline."

/* Trim trailing white space and decode 64 hex characters into the page. */
static bool
mk_decode(char *buf, size_t len, const char *source)
{
	int			rc;

	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
					   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	rc = env_hex_decode(buf, len, mk_page->key, ENV_KEY_LEN);
	env_wipe(buf, MK_READ_MAX);
	if (rc != 0)
		return mk_fail(ERRCODE_CONFIG_FILE_ERROR, MK_FORMAT_DETAIL, NULL,
					   "envault master key from %s is malformed", source);
	return true;
}

static bool
mk_read_file(const char *path)
{
	char		buf[MK_READ_MAX];
	char		source[MAXPGPATH + 16];
	struct stat st;
	ssize_t		n;
	int			fd;

	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
		return mk_fail(ERRCODE_CONFIG_FILE_ERROR, strerror(errno),
					   "Check envault.master_key_file.",
					   "could not open master key file \"%s\"", path);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		return mk_fail(ERRCODE_CONFIG_FILE_ERROR, NULL,
					   "Check envault.master_key_file.",
					   "master key file \"%s\" is not a regular file", path);
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO))
	{
		close(fd);
		return mk_fail(ERRCODE_CONFIG_FILE_ERROR,
					   "A master key file must not be accessible to its group or to other users.",
					   "Change its permissions with chmod 0600, or 0400.",
					   "master key file \"%s\" has group or world access", path);
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0)
	{
		env_wipe(buf, sizeof(buf));
		return mk_fail(ERRCODE_CONFIG_FILE_ERROR, strerror(errno), NULL,
					   "could not read master key file \"%s\"", path);
	}
	snprintf(source, sizeof(source), "file \"%s\"", path);
	return mk_decode(buf, (size_t) n, source);
}

static bool
mk_run_command(const char *command)
{
	char		buf[MK_READ_MAX];
	size_t		n;
	int			rc;
	FILE	   *fp;

	fp = OpenPipeStream(command, "r");
	if (fp == NULL)
		return mk_fail(ERRCODE_CONFIG_FILE_ERROR, strerror(errno), NULL,
					   "could not run envault.master_key_command");
	n = fread(buf, 1, sizeof(buf), fp);
	/* drain anything beyond what a key can be, without keeping it */
	while (n == sizeof(buf) && fgetc(fp) != EOF)
		;
	rc = ClosePipeStream(fp);
	if (rc != 0)
	{
		char		detail[256];
		char	   *reason = wait_result_to_str(rc);

		env_wipe(buf, sizeof(buf));
		snprintf(detail, sizeof(detail), "The command %s.", reason);
		pfree(reason);
		return mk_fail(ERRCODE_CONFIG_FILE_ERROR, detail,
					   "Check envault.master_key_command and the service it asks.",
					   "envault.master_key_command failed");
	}
	return mk_decode(buf, n, "envault.master_key_command");
}

/*
 * Read the master key from whichever source is configured.  On failure,
 * records the error for mk_throw() and returns false.
 */
static bool
mk_load(void)
{
	int			nsources = 0;
	bool		ok;

	if (mk_loaded)
		return true;

	nsources += (mk_key_setting != NULL && mk_key_setting[0] != '\0');
	nsources += (mk_file_setting != NULL && mk_file_setting[0] != '\0');
	nsources += (mk_command_setting != NULL && mk_command_setting[0] != '\0');
	if (nsources == 0)
		return mk_fail(ERRCODE_CONFIG_FILE_ERROR, NULL, MK_SOURCES_HINT,
					   "envault master key is not configured");
	if (nsources > 1)
		return mk_fail(ERRCODE_CONFIG_FILE_ERROR,
					   "More than one of envault.master_key, envault.master_key_file and envault.master_key_command is set.",
					   MK_SOURCES_HINT,
					   "envault master key is configured more than once");

	if (mk_page == NULL)
	{
		mk_page = env_locked_alloc(MK_PAGE_SIZE);
		if (mk_page == NULL)
			return mk_fail(ERRCODE_OUT_OF_MEMORY, NULL, NULL,
						   "could not allocate memory for the envault master key");
		mk_locked_pid = MyProcPid;
	}

	if (mk_key_setting != NULL && mk_key_setting[0] != '\0')
	{
		char		buf[MK_READ_MAX];
		size_t		len = strlen(mk_key_setting);

		if (len >= sizeof(buf))
			len = sizeof(buf) - 1;
		memcpy(buf, mk_key_setting, len);
		ok = mk_decode(buf, len, "envault.master_key");
	}
	else if (mk_file_setting != NULL && mk_file_setting[0] != '\0')
		ok = mk_read_file(mk_file_setting);
	else
		ok = mk_run_command(mk_command_setting);

	if (!ok)
	{
		env_wipe(mk_page->key, ENV_KEY_LEN);
		return false;
	}
	{
		uint8		mac[32];

		ok = env_hmac_sha256(mk_page->key, ENV_KEY_LEN,
							 (const uint8 *) mk_kcv_label,
							 sizeof(mk_kcv_label) - 1, mac);
		memcpy(mk_kcv, mac, ENV_KCV_LEN);
		env_wipe(mac, sizeof(mac));
	}
	if (!ok)
	{
		env_wipe(mk_page, MK_PAGE_SIZE);
		return mk_fail(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, NULL, NULL,
					   "OpenSSL failed while computing the master key check value");
	}
	mk_loaded = true;
	return true;
}

/* detail and hint of the recorded failure, for use inside ereport() */
static int
mk_err_extras(void)
{
	if (mk_err_detail[0])
		errdetail_internal("%s", mk_err_detail);
	if (mk_err_hint[0])
		errhint("%s", mk_err_hint);
	return 0;
}

static void
mk_throw(void)
{
	ereport(ERROR,
			(errcode(mk_err_code),
			 errmsg_internal("%s", mk_err_msg),
			 mk_err_extras()));
}

/*
 * Wipe the key at process exit.  Child processes drop the postmaster's exit
 * callbacks, so each process that holds the key registers its own.
 */
static void
mk_wipe_at_exit(int code, Datum arg)
{
	if (mk_page == NULL)
		return;
	if (mk_prepared_pid == MyProcPid)
		env_xaes_key_clear(&mk_page->xk);
	env_wipe(mk_page, MK_PAGE_SIZE);
	mk_loaded = false;
}

static void
mk_register_exit(void)
{
	if (mk_exit_pid != MyProcPid)
	{
		on_proc_exit(mk_wipe_at_exit, (Datum) 0);
		mk_exit_pid = MyProcPid;
	}
}

/*
 * The master key, ready for wrapping and unwrapping.  Raises a clear error
 * when it is not configured or cannot be read.
 */
const EnvXaesKey *
env_master_key(void)
{
	if (!mk_loaded && !mk_load())
		mk_throw();
	mk_register_exit();
	if (mk_locked_pid != MyProcPid)
	{
		(void) env_locked_relock(mk_page, MK_PAGE_SIZE);
		mk_locked_pid = MyProcPid;
	}
	if (mk_prepared_pid != MyProcPid)
	{
		/* an inherited context belongs to the parent's OpenSSL state */
		memset(&mk_page->xk, 0, sizeof(EnvXaesKey));
		if (!env_xaes_key_init(&mk_page->xk, mk_page->key))
			env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "preparing the master key");
		mk_prepared_pid = MyProcPid;
	}
	return &mk_page->xk;
}

/* The 16-byte check value of the configured master key. */
const uint8 *
env_master_kcv(void)
{
	if (!mk_loaded && !mk_load())
		mk_throw();
	return mk_kcv;
}

/* First 8 bytes of a check value as hex, for messages. */
char *
env_kcv_fingerprint(const uint8 *kcv)
{
	char	   *out = palloc(17);
	int			i;

	for (i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", kcv[i]);
	return out;
}

void
env_masterkey_init(void)
{
	DefineCustomStringVariable("envault.master_key",
							   gettext_noop("Master key of envault, as 64 hexadecimal characters."),
							   gettext_noop("For development; prefer envault.master_key_file or envault.master_key_command."),
							   &mk_key_setting,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL |
							   GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_AUTO_FILE,
							   NULL, NULL, mk_show_key);
	DefineCustomStringVariable("envault.master_key_file",
							   gettext_noop("File holding the master key of envault as 64 hexadecimal characters."),
							   gettext_noop("The file must not be accessible to its group or to other users."),
							   &mk_file_setting,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("envault.master_key_command",
							   gettext_noop("Shell command that prints the master key of envault."),
							   gettext_noop("It must print 64 hexadecimal characters and exit with status 0."),
							   &mk_command_setting,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL |
							   GUC_NOT_IN_SAMPLE,
							   NULL, NULL, mk_show_command);

	/*
	 * Preloaded: read the key now, in the postmaster, so that backends
	 * inherit it.  A failure is logged here and raised again, as an error,
	 * in each session that needs the key.
	 */
	if (process_shared_preload_libraries_in_progress && mk_load())
		mk_register_exit();
	else if (process_shared_preload_libraries_in_progress)
		ereport(WARNING,
				(errcode(mk_err_code),
				 errmsg_internal("%s", mk_err_msg),
				 mk_err_extras()));
}
