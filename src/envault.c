/*-------------------------------------------------------------------------
 *
 * envault.c
 *		Module entry point: _PG_init dispatches to each module's init.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/* pg_upgrade only checks that the library loads */
	if (IsBinaryUpgrade)
		return;

	if (!env_crypto_init())
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("OpenSSL does not provide AES-256-GCM and AES-256-ECB")));
	env_secrets_init();
	env_keystore_init();
	env_tenant_init();
	env_chain_init();
	env_checkpoint_init();
	env_access_log_init();
	MarkGUCPrefixReserved("envault");
}
