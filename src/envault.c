/*-------------------------------------------------------------------------
 *
 * envault.c
 *		Module entry point: _PG_init dispatches to each module's init.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "accesslog.h"
#include "rls.h"
#include "scaleout.h"

#include <openssl/crypto.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

/* OpenSSL's secure heap: a power of two, shared by OpenSSL's other users */
#define ENV_SECURE_HEAP_SIZE	(256 * 1024)

void		_PG_init(void);

void
_PG_init(void)
{
	/* pg_upgrade only checks that the library loads */
	if (IsBinaryUpgrade)
		return;

	/*
	 * OpenSSL's secure heap: pages locked against swapping and excluded from
	 * core dumps, where OpenSSL keeps the private keys it holds (the signing
	 * key while a checkpoint is signed, its copy of an HMAC key during a
	 * call).  Without it they would be in ordinary heap memory.
	 */
	if (!CRYPTO_secure_malloc_initialized())
		(void) CRYPTO_secure_malloc_init(ENV_SECURE_HEAP_SIZE, 16);
	if (!env_crypto_init())
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("OpenSSL does not provide AES-256-GCM and AES-256-ECB")));
	env_masterkey_init();
	env_keystore_init();
	env_tenant_init();
	env_rls_init();
	env_chain_init();
	env_checkpoint_init();
	env_witness_init();
	env_access_log_init();
	env_scaleout_init();
	MarkGUCPrefixReserved("envault");
}
