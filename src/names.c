/*-------------------------------------------------------------------------
 *
 * names.c
 *		What tenant and purpose names may be.
 *
 * A name is checked before it reaches a key table, associated data or an
 * error message, and before the key cache is consulted with it.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "names.h"

/*
 * Tenant names: 1 to 255 bytes, no control characters.  They appear in key
 * tables, in associated data and in error messages.
 */
void
env_check_tenant_name(const char *tenant, size_t len)
{
	size_t		i;

	if (len == 0 || len > ENV_TENANT_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tenant name"),
				 errdetail("A tenant name must be 1 to %d bytes long.",
						   ENV_TENANT_MAXLEN)));
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) tenant[i];

		if (c < 0x20 || c == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid tenant name"),
					 errdetail("A tenant name must not contain control characters.")));
	}
}

/*
 * Purposes: short names such as "secrets" or "messages": 1 to 63 bytes of
 * lowercase ASCII letters, digits, '_', '-' and '.', starting with a letter
 * or a digit.
 */
void
env_check_purpose_name(const char *purpose, size_t len)
{
	size_t		i;
	bool		ok = (len >= 1 && len <= ENV_PURPOSE_MAXLEN);

	for (i = 0; ok && i < len; i++)
	{
		char		c = purpose[i];

		ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			(i > 0 && (c == '_' || c == '-' || c == '.'));
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid purpose name"),
				 errdetail("A purpose is 1 to %d characters from a-z, 0-9, \"_\", \"-\" and \".\", starting with a letter or a digit.",
						   ENV_PURPOSE_MAXLEN)));
}
