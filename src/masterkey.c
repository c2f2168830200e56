/*-------------------------------------------------------------------------
 *
 * masterkey.c
 *		The server's own secrets: the master key and the token pepper (with
 *		the previous pepper during a pepper rotation).  Their settings,
 *		loading them, and their check values.
 *
 * Each secret is 32 bytes, configured as 64 hex characters in exactly one
 * of: a setting (envault.master_key, envault.pepper ...), a file
 * (envault.master_key_file ..., refused when group- or world-accessible),
 * or, for the master key, a shell command whose output is the key, so that
 * a KMS or HSM can answer.  All settings can only be set in the server
 * configuration; SHOW never displays a key or a command.
 *
 * With shared_preload_libraries = 'envault' the secrets are read once in
 * the postmaster at server start and inherited by every backend.  If that
 * fails (or the library was not preloaded), each backend tries again when
 * it first needs a secret, and reports the problem as an error.  Without
 * preloading the settings that hold a key in hex are refused (see
 * sec_check_hex): only the file and command settings can be used.
 *
 * Secrets: all key bytes and the prepared master key live in one page that
 * is locked against swapping (re-locked in each process, as mlock() is not
 * inherited by fork()), excluded from core dumps, and wiped at process exit.
 * Buffers used while reading a secret are wiped before they go out of
 * scope.  No message here contains a secret or a command line.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "masterkey.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"
#include "lib/stringinfo.h"
#include "storage/ipc.h"
#include "utils/guc.h"

#define SEC_PAGE_SIZE	4096
#define SEC_READ_MAX	256

/* the locked page */
typedef struct SecPage
{
	uint8		master[ENV_KEY_LEN];
	EnvXaesKey	master_xk;
	uint8		previous_master[ENV_KEY_LEN];
	EnvXaesKey	previous_master_xk;
	uint8		pepper[ENV_KEY_LEN];
	uint8		previous_pepper[ENV_KEY_LEN];
} SecPage;

typedef struct EnvSecret
{
	/* description */
	const char *what;			/* "master key" */
	const char *hex_name;		/* "envault.master_key" */
	const char *file_name;		/* "envault.master_key_file" */
	const char *command_name;	/* "envault.master_key_command", or NULL */
	const char *kcv_label;
	bool		required;		/* warn at start-up when not configured */
	size_t		offset;			/* of its bytes in SecPage */

	/* settings */
	char	   *hex;
	char	   *file;
	char	   *command;

	/* state */
	bool		hex_refused;	/* the hex setting is set, but not accepted */
	bool		loaded;
	bool		absent;			/* loaded, and not configured */
	uint8		kcv[ENV_KCV_LEN];

	/*
	 * why the last load failed; plain buffers, as the postmaster has no
	 * palloc
	 */
	int			err_code;
	char		err_msg[256];
	char		err_detail[512];
	char		err_hint[320];
} EnvSecret;

static EnvSecret sec_master = {
	.what = "master key",
	.hex_name = "envault.master_key",
	.file_name = "envault.master_key_file",
	.command_name = "envault.master_key_command",
	.kcv_label = "envault/v1/key-check-value",
	.required = true,
	.offset = offsetof(SecPage, master)
};

/* the same label: a master key keeps its check value when it becomes previous */
static EnvSecret sec_previous_master = {
	.what = "previous master key",
	.hex_name = "envault.previous_master_key",
	.file_name = "envault.previous_master_key_file",
	.command_name = "envault.previous_master_key_command",
	.kcv_label = "envault/v1/key-check-value",
	.offset = offsetof(SecPage, previous_master)
};
static EnvSecret sec_pepper = {
	.what = "pepper",
	.hex_name = "envault.pepper",
	.file_name = "envault.pepper_file",
	.kcv_label = "envault/v1/pepper-check-value",
	.offset = offsetof(SecPage, pepper)
};

/* the same label: a pepper keeps its check value when it becomes previous */
static EnvSecret sec_previous_pepper = {
	.what = "previous pepper",
	.hex_name = "envault.previous_pepper",
	.file_name = "envault.previous_pepper_file",
	.kcv_label = "envault/v1/pepper-check-value",
	.offset = offsetof(SecPage, previous_pepper)
};

static bool sec_preloaded = false;
static SecPage *sec_page = NULL;
static pid_t sec_locked_pid = 0;
static pid_t sec_master_prepared_pid = 0;
static pid_t sec_previous_prepared_pid = 0;
static pid_t sec_exit_pid = 0;

/* SHOW hooks: say whether a secret setting is set, never what it is */
#define SEC_SHOW_HOOK(fn, var) \
static const char * \
fn(void) \
{ \
	return ((var) && (var)[0]) ? "********" : ""; \
}
SEC_SHOW_HOOK(sec_show_master, sec_master.hex)
SEC_SHOW_HOOK(sec_show_command, sec_master.command)
SEC_SHOW_HOOK(sec_show_previous_master, sec_previous_master.hex)
SEC_SHOW_HOOK(sec_show_previous_command, sec_previous_master.command)
SEC_SHOW_HOOK(sec_show_pepper, sec_pepper.hex)
SEC_SHOW_HOOK(sec_show_previous_pepper, sec_previous_pepper.hex)

/*
 * Without preloading, PostgreSQL's postmaster knows envault's settings only
 * as placeholders, and logs the new value of any of them that a reload
 * changes ("parameter ... changed to ..."), whatever flags envault gives
 * them in the backends.  So the settings that hold a key itself are refused
 * then: a key is never configured in a form that a reload would log.
 */
#define SEC_HEX_REFUSED_MSG "%s is not accepted when envault is not preloaded"
#define SEC_HEX_REFUSED_DETAIL "Without shared_preload_libraries = 'envault' it could be changed by a reload, and PostgreSQL logs the new value of such a setting."

static void
sec_hex_refused_hint(EnvSecret *s, char *buf, size_t len)
{
	if (s->command_name)
		snprintf(buf, len, "Use %s or %s instead, or add envault to shared_preload_libraries and restart the server.",
				 s->file_name, s->command_name);
	else
		snprintf(buf, len, "Use %s instead, or add envault to shared_preload_libraries and restart the server.",
				 s->file_name);
}

static bool
sec_check_hex(EnvSecret *s, char **newval)
{
	char		hint[256];

	s->hex_refused = false;
	if (sec_preloaded || *newval == NULL || (*newval)[0] == '\0')
		return true;
	s->hex_refused = true;
	sec_hex_refused_hint(s, hint, sizeof(hint));
	GUC_check_errcode(ERRCODE_CONFIG_FILE_ERROR);
	GUC_check_errmsg(SEC_HEX_REFUSED_MSG, s->hex_name);
	GUC_check_errdetail(SEC_HEX_REFUSED_DETAIL);
	GUC_check_errhint("%s", hint);
	return false;
}

/*
 * The same refusal for a key setting kept elsewhere (envault.signing_key):
 * a check hook calls this with the setting's name and the settings to use
 * instead; *refused tells the code that reads the key to raise the error.
 */
bool
env_check_hex_setting(const char *name, const char *use_instead,
					  char **newval, bool *refused)
{
	*refused = false;
	if (sec_preloaded || *newval == NULL || (*newval)[0] == '\0')
		return true;
	*refused = true;
	GUC_check_errcode(ERRCODE_CONFIG_FILE_ERROR);
	GUC_check_errmsg(SEC_HEX_REFUSED_MSG, name);
	GUC_check_errdetail(SEC_HEX_REFUSED_DETAIL);
	GUC_check_errhint("Use %s instead, or add envault to shared_preload_libraries and restart the server.",
					  use_instead);
	return false;
}

/* The error for a refused setting, when its key is needed */
void
env_error_hex_refused(const char *name, const char *use_instead)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg(SEC_HEX_REFUSED_MSG, name),
			 errdetail(SEC_HEX_REFUSED_DETAIL),
			 errhint("Use %s instead, or add envault to shared_preload_libraries and restart the server.",
					 use_instead)));
}

#define SEC_CHECK_HOOK(fn, secret) \
static bool \
fn(char **newval, void **extra, GucSource source) \
{ \
	return sec_check_hex(&(secret), newval); \
}
SEC_CHECK_HOOK(sec_check_master, sec_master)
SEC_CHECK_HOOK(sec_check_previous_master, sec_previous_master)
SEC_CHECK_HOOK(sec_check_pepper, sec_pepper)
SEC_CHECK_HOOK(sec_check_previous_pepper, sec_previous_pepper)

static bool sec_fail(EnvSecret *s, int sqlstate, const char *detail,
					 const char *hint, const char *fmt,...) pg_attribute_printf(5, 6);

static bool
sec_fail(EnvSecret *s, int sqlstate, const char *detail, const char *hint,
		 const char *fmt,...)
{
	va_list		ap;

	s->err_code = sqlstate;
	va_start(ap, fmt);
	vsnprintf(s->err_msg, sizeof(s->err_msg), fmt, ap);
	va_end(ap);
	strlcpy(s->err_detail, detail ? detail : "", sizeof(s->err_detail));
	strlcpy(s->err_hint, hint ? hint : "", sizeof(s->err_hint));
	return false;
}

static inline uint8 *
sec_bytes(EnvSecret *s)
{
	return (uint8 *) sec_page + s->offset;
}

static bool
sec_is_set(const char *v)
{
	return v != NULL && v[0] != '\0';
}

static void
sec_sources_hint(EnvSecret *s, char *buf, size_t len)
{
	if (s->command_name)
		snprintf(buf, len, "Set exactly one of %s, %s or %s in postgresql.conf and restart the server.",
				 s->hex_name, s->file_name, s->command_name);
	else
		snprintf(buf, len, "Set one of %s or %s in postgresql.conf and restart the server.",
				 s->hex_name, s->file_name);
}

/*
 * Trim trailing white space and decode 64 hex characters into the page.
 * setting names where they came from (and path, the file it names); both
 * appear in the error, with a hint.
 */
static bool
sec_decode(EnvSecret *s, char *buf, size_t len, const char *setting,
		   const char *path)
{
	char		detail[128];
	char		hint[160];
	int			rc;

	/* a buffer filled to the brim held more than a key can be */
	if (len >= SEC_READ_MAX)
		len = 0;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
					   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	rc = env_hex_decode(buf, len, sec_bytes(s), ENV_KEY_LEN);
	env_wipe(buf, SEC_READ_MAX);
	if (rc != 0)
	{
		snprintf(detail, sizeof(detail),
				 "The %s must be 64 hexadecimal characters (32 bytes), optionally followed by a newline.",
				 s->what);
		if (path != NULL)
		{
			snprintf(hint, sizeof(hint),
					 "Check the contents of the file that %s names.", setting);
			return sec_fail(s, ERRCODE_CONFIG_FILE_ERROR, detail, hint,
							"envault %s from %s \"%s\" is malformed",
							s->what, setting, path);
		}
		if (setting == s->command_name)
			snprintf(hint, sizeof(hint),
					 "Check that %s prints only the key.", setting);
		else
			snprintf(hint, sizeof(hint), "Check %s in postgresql.conf.", setting);
		return sec_fail(s, ERRCODE_CONFIG_FILE_ERROR, detail, hint,
						"envault %s from %s is malformed", s->what, setting);
	}
	return true;
}

static bool
sec_read_file(EnvSecret *s, const char *path)
{
	char		buf[SEC_READ_MAX];
	char		hint[128];
	struct stat st;
	ssize_t		n;
	int			fd;

	snprintf(hint, sizeof(hint), "Check %s.", s->file_name);
	fd = open(path, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
		return sec_fail(s, ERRCODE_CONFIG_FILE_ERROR, strerror(errno), hint,
						"could not open %s file \"%s\"", s->what, path);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		return sec_fail(s, ERRCODE_CONFIG_FILE_ERROR, NULL, hint,
						"%s file \"%s\" is not a regular file", s->what, path);
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO))
	{
		char		detail[128];

		close(fd);
		snprintf(detail, sizeof(detail),
				 "A %s file must not be accessible to its group or to other users.",
				 s->what);
		return sec_fail(s, ERRCODE_CONFIG_FILE_ERROR, detail,
						"Change its permissions with chmod 0600, or 0400.",
						"%s file \"%s\" has group or world access", s->what, path);
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0)
	{
		env_wipe(buf, sizeof(buf));
		return sec_fail(s, ERRCODE_CONFIG_FILE_ERROR, strerror(errno), hint,
						"could not read %s file \"%s\"", s->what, path);
	}
	return sec_decode(s, buf, (size_t) n, s->file_name, path);
}

static bool
sec_run_command(EnvSecret *s, const char *command)
{
	char		buf[SEC_READ_MAX];
	size_t		n;
	int			rc;
	FILE	   *fp;

	fp = OpenPipeStream(command, "r");
	if (fp == NULL)
		return sec_fail(s, ERRCODE_CONFIG_FILE_ERROR, strerror(errno), NULL,
						"could not run %s", s->command_name);
	/* unbuffered: stdio's buffer would keep the key in freed memory */
	setvbuf(fp, NULL, _IONBF, 0);
	n = fread(buf, 1, sizeof(buf), fp);
	/* drain anything beyond what a key can be, without keeping it */
	while (n == sizeof(buf) && fgetc(fp) != EOF)
		;
	rc = ClosePipeStream(fp);
	if (rc != 0)
	{
		char		detail[256];
		char		hint[128];
		char	   *reason = wait_result_to_str(rc);

		env_wipe(buf, sizeof(buf));
		snprintf(detail, sizeof(detail), "The command %s.", reason);
		snprintf(hint, sizeof(hint), "Check %s and the service it asks.",
				 s->command_name);
		pfree(reason);
		return sec_fail(s, ERRCODE_CONFIG_FILE_ERROR, detail, hint,
						"%s failed", s->command_name);
	}
	return sec_decode(s, buf, n, s->command_name, NULL);
}

/*
 * Read a secret from whichever source is configured.  On failure, records
 * the error for sec_throw() and returns false.
 */
static bool
sec_load(EnvSecret *s)
{
	int			nsources;
	char		hint[320];
	bool		ok;

	if (s->loaded)
		return true;

	if (s->hex_refused)
	{
		sec_hex_refused_hint(s, hint, sizeof(hint));
		return sec_fail(s, ERRCODE_CONFIG_FILE_ERROR, SEC_HEX_REFUSED_DETAIL,
						hint, SEC_HEX_REFUSED_MSG, s->hex_name);
	}
	nsources = sec_is_set(s->hex) + sec_is_set(s->file) + sec_is_set(s->command);
	if (nsources == 0)
	{
		s->absent = true;
		s->loaded = true;
		sec_sources_hint(s, hint, sizeof(hint));
		return sec_fail(s, ERRCODE_CONFIG_FILE_ERROR, NULL, hint,
						"envault %s is not configured", s->what);
	}
	if (nsources > 1)
	{
		char		detail[256];

		sec_sources_hint(s, hint, sizeof(hint));
		snprintf(detail, sizeof(detail), "More than one of %s, %s%s%s is set.",
				 s->hex_name, s->file_name,
				 s->command_name ? " and " : "",
				 s->command_name ? s->command_name : "");
		return sec_fail(s, ERRCODE_CONFIG_FILE_ERROR, detail, hint,
						"envault %s is configured more than once", s->what);
	}

	if (sec_page == NULL)
	{
		sec_page = env_locked_alloc(SEC_PAGE_SIZE);
		if (sec_page == NULL)
			return sec_fail(s, ERRCODE_OUT_OF_MEMORY, NULL, NULL,
							"could not allocate locked memory for the envault %s",
							s->what);
		/* env_locked_alloc does not say whether mlock worked: ask again */
		if (!env_locked_relock(sec_page, SEC_PAGE_SIZE))
			env_warn_memory_unlocked();
		sec_locked_pid = MyProcPid;
	}

	if (sec_is_set(s->hex))
	{
		char		buf[SEC_READ_MAX];
		size_t		len = strlen(s->hex);

		if (len > sizeof(buf))
			len = sizeof(buf);
		memcpy(buf, s->hex, len);
		ok = sec_decode(s, buf, len, s->hex_name, NULL);
	}
	else if (sec_is_set(s->file))
		ok = sec_read_file(s, s->file);
	else
		ok = sec_run_command(s, s->command);

	if (ok)
	{
		uint8		mac[32];

		ok = env_hmac_sha256(sec_bytes(s), ENV_KEY_LEN,
							 (const uint8 *) s->kcv_label,
							 strlen(s->kcv_label), mac);
		memcpy(s->kcv, mac, ENV_KCV_LEN);
		env_wipe(mac, sizeof(mac));
		if (!ok)
			sec_fail(s, ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, NULL, NULL,
					 "OpenSSL failed while computing a check value");
	}
	if (!ok)
	{
		env_wipe(sec_bytes(s), ENV_KEY_LEN);
		return false;
	}
	s->loaded = true;
	s->absent = false;
	return true;
}

/* detail and hint of the recorded failure, for use inside ereport() */
static int
sec_err_extras(EnvSecret *s)
{
	if (s->err_detail[0])
		errdetail_internal("%s", s->err_detail);
	if (s->err_hint[0])
		errhint("%s", s->err_hint);
	return 0;
}

static void
sec_throw(EnvSecret *s)
{
	ereport(ERROR,
			(errcode(s->err_code),
			 errmsg_internal("%s", s->err_msg),
			 sec_err_extras(s)));
}

/*
 * Wipe every secret at process exit.  Child processes drop the postmaster's
 * exit callbacks, so each process that holds secrets registers its own.
 */
static void
sec_wipe_at_exit(int code, Datum arg)
{
	if (sec_page == NULL)
		return;
	if (sec_master_prepared_pid == MyProcPid)
		env_xaes_key_clear(&sec_page->master_xk);
	if (sec_previous_prepared_pid == MyProcPid)
		env_xaes_key_clear(&sec_page->previous_master_xk);
	env_wipe(sec_page, SEC_PAGE_SIZE);
	sec_master.loaded = sec_previous_master.loaded = false;
	sec_pepper.loaded = sec_previous_pepper.loaded = false;
}

/*
 * Make sure a secret is usable in this process; raises its error if not.
 * A secret that is not configured stays so until a restart; one that failed
 * to load is tried again on every call.
 */
static uint8 *
sec_get(EnvSecret *s, bool missing_ok)
{
	if (!s->loaded && !sec_load(s) && !s->absent)
		sec_throw(s);
	if (s->absent)
	{
		if (missing_ok)
			return NULL;
		sec_throw(s);
	}
	if (sec_exit_pid != MyProcPid)
	{
		on_proc_exit(sec_wipe_at_exit, (Datum) 0);
		sec_exit_pid = MyProcPid;
	}
	if (sec_locked_pid != MyProcPid)
	{
		/* mlock() is not inherited by fork() */
		if (!env_locked_relock(sec_page, SEC_PAGE_SIZE))
			env_warn_memory_unlocked();
		sec_locked_pid = MyProcPid;
	}
	return sec_bytes(s);
}

/*
 * The master key, ready for wrapping and unwrapping.  Raises a clear error
 * when it is not configured or cannot be read.
 */
const EnvXaesKey *
env_master_key(void)
{
	uint8	   *key = sec_get(&sec_master, false);

	if (sec_master_prepared_pid != MyProcPid)
	{
		/* an inherited context belongs to the parent's OpenSSL state */
		memset(&sec_page->master_xk, 0, sizeof(EnvXaesKey));
		if (!env_xaes_key_init(&sec_page->master_xk, key))
			env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "preparing the master key");
		sec_master_prepared_pid = MyProcPid;
	}
	return &sec_page->master_xk;
}

/*
 * The previous master key (configured during a master key rotation), or
 * NULL when there is none; *kcv receives its check value.
 */
const EnvXaesKey *
env_previous_master_key(const uint8 **kcv)
{
	uint8	   *key = sec_get(&sec_previous_master, true);

	if (kcv)
		*kcv = key ? sec_previous_master.kcv : NULL;
	if (key == NULL)
		return NULL;
	if (sec_previous_prepared_pid != MyProcPid)
	{
		memset(&sec_page->previous_master_xk, 0, sizeof(EnvXaesKey));
		if (!env_xaes_key_init(&sec_page->previous_master_xk, key))
			env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "preparing the previous master key");
		sec_previous_prepared_pid = MyProcPid;
	}
	return &sec_page->previous_master_xk;
}

/* The 16-byte check value of the configured master key. */
const uint8 *
env_master_kcv(void)
{
	(void) sec_get(&sec_master, false);
	return sec_master.kcv;
}

/*
 * The current pepper (an error if none is configured) or, with previous,
 * the previous pepper (NULL if none is configured).  *kcv receives its
 * check value, which identifies the pepper version in stored rows.
 */
const uint8 *
env_pepper(bool previous, const uint8 **kcv)
{
	EnvSecret  *s = previous ? &sec_previous_pepper : &sec_pepper;
	const uint8 *p = sec_get(s, previous);

	if (kcv)
		*kcv = p ? s->kcv : NULL;
	return p;
}

/*
 * HMAC-SHA256 of data under a key derived from the current pepper for the
 * tenant context proofs that a Citus coordinator hands to its workers
 * (scaleout.c).  Every node has the same pepper; nobody else does.
 */
void
env_context_mac(const uint8 *data, size_t len, uint8 *mac)
{
	static const char label[] = "envault/v1/tenant-context-proof";
	uint8		key[ENV_SHA256_LEN];
	const uint8 *pepper = env_pepper(false, NULL);
	bool		ok;

	ok = env_hmac_sha256(pepper, ENV_KEY_LEN, (const uint8 *) label,
						 sizeof(label) - 1, key) &&
		env_hmac_sha256(key, sizeof(key), data, len, mac);
	env_wipe(key, sizeof(key));
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not compute an HMAC-SHA256")));
}

/* First 8 bytes of a check value as hex, for messages and pepper versions. */
char *
env_kcv_fingerprint(const uint8 *kcv)
{
	char	   *out = palloc(17);
	int			i;

	for (i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", kcv[i]);
	return out;
}

/* --- customer-managed keys ------------------------------------------------ */

static char *sec_customer_command = NULL;
static const char sec_customer_kcv_label[] = "envault/v1/customer-key-check-value";

SEC_SHOW_HOOK(sec_show_customer_command, sec_customer_command)

/* Append s to buf in single quotes, safe for the shell. */
static void
sec_shell_quote(StringInfo buf, const char *s)
{
	appendStringInfoChar(buf, '\'');
	for (; *s; s++)
	{
		if (*s == '\'')
			appendStringInfoString(buf, "'\\''");
		else
			appendStringInfoChar(buf, *s);
	}
	appendStringInfoChar(buf, '\'');
}

/*
 * Fetch the customer-managed key of a tenant: run
 * envault.customer_key_command with %t replaced by the tenant name (quoted
 * for the shell) and %% by %.  Writes the 32 key bytes into key (the caller
 * wipes them) and their check value into kcv.  Raises when the command is
 * not configured, fails (the customer withheld its key) or prints anything
 * but a key.  Neither the command nor its output appears in a message.
 */
void
env_customer_key(const char *tenant, uint8 *key, uint8 *kcv)
{
	StringInfoData cmd;
	const char *p;
	char		buf[SEC_READ_MAX];
	size_t		n;
	int			rc;
	FILE	   *fp;
	uint8		mac[32];
	bool		ok;

	if (!sec_is_set(sec_customer_command))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("envault.customer_key_command is not configured"),
				 errhint("Set it to a command that prints the customer's key of the tenant given as %%t.")));
	initStringInfo(&cmd);
	for (p = sec_customer_command; *p; p++)
	{
		if (p[0] == '%' && p[1] == 't')
		{
			sec_shell_quote(&cmd, tenant);
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

	fp = OpenPipeStream(cmd.data, "r");
	pfree(cmd.data);
	if (fp == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not run envault.customer_key_command: %m")));
	/* unbuffered: stdio's buffer would keep the key in freed memory */
	setvbuf(fp, NULL, _IONBF, 0);
	n = fread(buf, 1, sizeof(buf), fp);
	while (n == sizeof(buf) && fgetc(fp) != EOF)
		;
	rc = ClosePipeStream(fp);
	if (rc != 0)
	{
		env_wipe(buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("customer key of envault tenant \"%s\" is not available", tenant),
				 errdetail("envault.customer_key_command failed: %s.", wait_result_to_str(rc)),
				 errhint("The customer may have withheld or revoked its key.")));
	}
	if (n >= sizeof(buf))
		n = 0;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
					 buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	rc = env_hex_decode(buf, n, key, ENV_KEY_LEN);
	env_wipe(buf, sizeof(buf));
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("customer key of envault tenant \"%s\" is malformed", tenant),
				 errdetail("envault.customer_key_command must print 64 hexadecimal characters.")));
	ok = env_hmac_sha256(key, ENV_KEY_LEN, (const uint8 *) sec_customer_kcv_label,
						 sizeof(sec_customer_kcv_label) - 1, mac);
	memcpy(kcv, mac, ENV_KCV_LEN);
	env_wipe(mac, sizeof(mac));
	if (!ok)
	{
		env_wipe(key, ENV_KEY_LEN);
		env_error_crypto(ENV_CRYPTO_LIBRARY_ERROR, "computing a check value");
	}
}

/*
 * PostgreSQL accepts PGC_POSTMASTER custom settings only from preloaded
 * libraries.  Loaded later, the settings are PGC_SIGHUP instead: still not
 * settable with SET, each session reads the secret once, when it first
 * needs it, and the hex settings are refused (sec_check_hex).
 */
static void
sec_define(EnvSecret *s, GucStringCheckHook check_hex, GucShowHook show_hex,
		   GucShowHook show_command)
{
	GucContext	context = process_shared_preload_libraries_in_progress ?
		PGC_POSTMASTER : PGC_SIGHUP;

	char	   *desc = psprintf("The %s of envault, as 64 hexadecimal characters.", s->what);
	char	   *fdesc = psprintf("File holding the %s of envault as 64 hexadecimal characters.", s->what);

	DefineCustomStringVariable(s->hex_name, desc,
							   gettext_noop("Prefer the file setting outside development."),
							   &s->hex, "", context,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL |
							   GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_AUTO_FILE,
							   check_hex, NULL, show_hex);
	DefineCustomStringVariable(s->file_name, fdesc,
							   gettext_noop("The file must not be accessible to its group or to other users."),
							   &s->file, "", context,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	if (s->command_name)
		DefineCustomStringVariable(s->command_name,
								   psprintf("Shell command that prints the %s of envault.", s->what),
								   gettext_noop("It must print 64 hexadecimal characters and exit with status 0."),
								   &s->command, "", context,
								   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL |
								   GUC_NOT_IN_SAMPLE,
								   NULL, NULL, show_command);

	/*
	 * Preloaded: read the secret now, in the postmaster, so that backends
	 * inherit it.  A failure is logged here and raised again, as an error, in
	 * each session that needs the secret.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		if (sec_load(s))
		{
			if (sec_exit_pid != MyProcPid)
			{
				on_proc_exit(sec_wipe_at_exit, (Datum) 0);
				sec_exit_pid = MyProcPid;
			}
		}
		else if (!s->absent || s->required)
			ereport(WARNING,
					(errcode(s->err_code),
					 errmsg_internal("%s", s->err_msg),
					 sec_err_extras(s)));
	}
}

void
env_masterkey_init(void)
{
	DefineCustomStringVariable("envault.customer_key_command",
							   gettext_noop("Shell command that prints the customer-managed key of a tenant (%t: the tenant)."),
							   gettext_noop("It must print 64 hexadecimal characters and exit with status 0; a failure means the key is withheld."),
							   &sec_customer_command, "", PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, sec_show_customer_command);
	sec_preloaded = process_shared_preload_libraries_in_progress;
	sec_define(&sec_master, sec_check_master, sec_show_master, sec_show_command);
	sec_define(&sec_previous_master, sec_check_previous_master,
			   sec_show_previous_master, sec_show_previous_command);
	sec_define(&sec_pepper, sec_check_pepper, sec_show_pepper, NULL);
	sec_define(&sec_previous_pepper, sec_check_previous_pepper,
			   sec_show_previous_pepper, NULL);
}
