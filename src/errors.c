/*-------------------------------------------------------------------------
 *
 * errors.c
 *		The SQLSTATEs and messages that envault's SQL functions share.
 *
 * Every ciphertext that fails authentication, whatever the reason (a changed
 * byte, a truncation, wrong associated data, bytes that are not an envault
 * ciphertext at all), is reported by env_error_auth_failed() with one
 * SQLSTATE and one message, so that the error tells a forger nothing.  No
 * message here ever contains key material or plaintext.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"

#include "miscadmin.h"

void
env_error_auth_failed(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_ENVAULT_AUTH_FAILED),
			 errmsg("envault ciphertext failed authentication"),
			 errdetail("The value was altered or truncated, is not an envault ciphertext, or was encrypted with different associated data.")));
}

/*
 * An argument of a SQL function that is not STRICT, where null makes no
 * sense: raise, naming the argument (what), if argument argno is null.
 */
void
env_arg_not_null(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
}

/* A text argument that must not be null (see env_arg_not_null) */
text *
env_arg_text(FunctionCallInfo fcinfo, int argno, const char *what)
{
	env_arg_not_null(fcinfo, argno, what);
	return PG_GETARG_TEXT_PP(argno);
}

/*
 * Map a failure of the crypto layer to an error.  Authentication failures
 * get the one message above; anything else is a library failure that should
 * not happen.
 */
void
env_error_crypto(EnvCryptoStatus status, const char *what)
{
	if (status == ENV_CRYPTO_AUTH_FAILED)
		env_error_auth_failed();
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("OpenSSL failed while %s", what)));
}

/*
 * Key memory could not be locked against swapping (mlock failed; errno
 * says why).  envault goes on, as the memory is still excluded from core
 * dumps and wiped, but says so: once per process, so that a server with a
 * low RLIMIT_MEMLOCK logs one line per session, not one per key.
 */
void
env_warn_memory_unlocked(void)
{
	static pid_t warned_pid = 0;

	if (warned_pid == MyProcPid)
		return;
	warned_pid = MyProcPid;
	ereport(WARNING,
			(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
			 errmsg("could not lock envault key memory against swapping: %m"),
			 errdetail("envault goes on, but keys in this process may be written to swap."),
			 errhint("Raise the server's locked-memory limit (RLIMIT_MEMLOCK): LimitMEMLOCK= in its systemd unit, or ulimit -l where it is started.")));
}
