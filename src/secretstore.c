/*-------------------------------------------------------------------------
 *
 * secretstore.c
 *		The secrets store: per-tenant third-party credentials (LLM provider
 *		keys, S3 secrets, webhook signing secrets) in envault.secrets,
 *		encrypted under the tenant's "_secrets" data key and bound by their
 *		associated data to their tenant and name.
 *
 * put_secret() returns a masked preview, never the value; get_secret()
 * decrypts and is recorded in the access log with the secret's name, and
 * the access log worker updates last_used_at.  Tenant access follows the
 * data path: envault_user may use only the current tenant's secrets.
 *
 * Secrets: the value passed to put_secret() is read from its argument and
 * a detoasted copy is wiped before it is freed; the value get_secret()
 * returns belongs to the executor.  No message names a value.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#define SS_NAME_MAXLEN		255
#define SS_STATUS_MAXLEN	64
/* values shorter than this get a preview that shows none of their characters */
#define SS_PREVIEW_MIN		12

static void
ss_check_name(text *name)
{
	size_t		len = VARSIZE_ANY_EXHDR(name);
	const char *p = VARDATA_ANY(name);
	size_t		i;

	if (len == 0 || len > SS_NAME_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid secret name"),
				 errdetail("A secret name must be 1 to %d bytes long.", SS_NAME_MAXLEN)));
	for (i = 0; i < len; i++)
		if ((unsigned char) p[i] < 0x20 || p[i] == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid secret name"),
					 errdetail("A secret name must not contain control characters.")));
}

/* "..." and the last 4 characters, for values long enough to spare them */
static text *
ss_preview(const char *value, size_t len)
{
	int			nchars = pg_mbstrlen_with_len(value, (int) len);
	const char *p = value;
	int			skip;
	int			i;

	if (nchars < SS_PREVIEW_MIN)
		return cstring_to_text("...");
	skip = nchars - 4;
	for (i = 0; i < skip; i++)
		p += pg_mblen(p);
	{
		size_t		tail = len - (size_t) (p - value);
		text	   *t = palloc(VARHDRSZ + 3 + tail);

		SET_VARSIZE(t, VARHDRSZ + 3 + tail);
		memcpy(VARDATA(t), "...", 3);
		memcpy(VARDATA(t) + 3, p, tail);
		return t;
	}
}

/*
 * The associated data of a stored secret (docs/format.md, "The secrets
 * store"): a label no other envault value carries, the tenant, and the
 * name, so that a value opens only as the secret it was stored as.  Values
 * stored by 0.2.0 (aad_version 1) are bound to the name alone; put_secret
 * writes version 2.
 */
#define SS_AAD_LABEL		"envault secret v2"
#define SS_AAD_VERSION		2

static bytea *
ss_aad(text *tenant, text *name, int version)
{
	size_t		tlen = VARSIZE_ANY_EXHDR(tenant);
	size_t		nlen = VARSIZE_ANY_EXHDR(name);
	size_t		len = sizeof(SS_AAD_LABEL) + tlen + 1 + nlen;
	bytea	   *aad;
	char	   *p;

	if (version == 1)
		return (bytea *) name;
	aad = palloc(VARHDRSZ + len);
	SET_VARSIZE(aad, VARHDRSZ + len);
	p = VARDATA(aad);
	/* label and tenant each end in a NUL byte, which neither contains */
	memcpy(p, SS_AAD_LABEL, sizeof(SS_AAD_LABEL));
	p += sizeof(SS_AAD_LABEL);
	memcpy(p, VARDATA_ANY(tenant), tlen);
	p += tlen;
	*p++ = '\0';
	memcpy(p, VARDATA_ANY(name), nlen);
	return aad;
}

/*
 * Has envault.secrets its aad_version column (0.3.0 on)?  A database not
 * yet updated from 0.2.0 has none: its secrets are stored and read as
 * 0.2.0 did (version 1), and the update marks them so.
 */
static int
ss_aad_version(void)
{
	Oid			nsp = get_namespace_oid("envault", false);
	Oid			relid = get_relname_relid("secrets", nsp);

	return (OidIsValid(relid) && get_attnum(relid, "aad_version") != InvalidAttrNumber) ?
		SS_AAD_VERSION : 1;
}

#define SS_Q_PUT_V1 \
	"INSERT INTO envault.secrets AS s (tenant, name, ciphertext, preview, created_by)" \
	" VALUES ($1, $2, $3, $4, $5)" \
	" ON CONFLICT (tenant, name) DO UPDATE" \
	"   SET ciphertext = excluded.ciphertext, preview = excluded.preview," \
	"       updated_at = pg_catalog.now(), last_verified_at = NULL, verify_status = NULL"

#define SS_Q_PUT \
	"INSERT INTO envault.secrets AS s (tenant, name, ciphertext, preview, created_by)" \
	" VALUES ($1, $2, $3, $4, $5)" \
	" ON CONFLICT (tenant, name) DO UPDATE" \
	"   SET ciphertext = excluded.ciphertext, preview = excluded.preview," \
	"       aad_version = excluded.aad_version," \
	"       updated_at = pg_catalog.now(), last_verified_at = NULL, verify_status = NULL"

/*
 * SQL function: envault.put_secret(tenant text, name text, value text)
 *               returns text
 *
 * Store or replace a secret; returns its masked preview.
 */
PG_FUNCTION_INFO_V1(envault_put_secret);
Datum
envault_put_secret(PG_FUNCTION_ARGS)
{
	text	   *tenant = env_arg_text(fcinfo, 0, "tenant");
	text	   *name = env_arg_text(fcinfo, 1, "name");
	Datum		vdatum;
	struct varlena *value;
	const EnvDataKey *key;
	bytea	   *volatile ct = NULL;
	text	   *volatile preview = NULL;
	EnvSpi		s;
	Oid			types[5] = {TEXTOID, TEXTOID, BYTEAOID, TEXTOID, NAMEOID};
	Datum		values[5];
	int			version;
	bytea	   *aad;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("value must not be null"),
				 errhint("Delete a secret with envault.delete_secret().")));
	ss_check_name(name);
	env_tenant_check(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant), false);
	key = env_keystore_secrets_key(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant));

	/* no error may be raised from here until the copy is wiped */
	version = ss_aad_version();
	aad = ss_aad(tenant, name, version);
	vdatum = PG_GETARG_DATUM(2);
	value = PG_DETOAST_DATUM_PACKED(vdatum);
	PG_TRY();
	{
		ct = env_seal_with_key(key, (const uint8 *) VARDATA_ANY(value),
							   VARSIZE_ANY_EXHDR(value), aad);
		preview = ss_preview(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
	}
	PG_FINALLY();
	{
		if ((Pointer) value != DatumGetPointer(vdatum))
		{
			env_wipe(value, VARSIZE_ANY(value));
			pfree(value);
		}
	}
	PG_END_TRY();

	env_spi_begin(&s);
	values[0] = PointerGetDatum(tenant);
	values[1] = PointerGetDatum(name);
	values[2] = PointerGetDatum(ct);
	values[3] = PointerGetDatum(preview);
	values[4] = CStringGetDatum(s.caller_name);
	env_spi_run(version == 1 ? SS_Q_PUT_V1 : SS_Q_PUT, 5, types, values, SPI_OK_INSERT);
	env_spi_end(&s);
	PG_RETURN_TEXT_P(preview);
}

#define SS_Q_GET \
	"SELECT ciphertext, aad_version FROM envault.secrets" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND name OPERATOR(pg_catalog.=) $2"
#define SS_Q_GET_V1 \
	"SELECT ciphertext, 1::pg_catalog.int2 FROM envault.secrets" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND name OPERATOR(pg_catalog.=) $2"

static void
ss_no_secret(text *tenant, text *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("secret \"%s\" of envault tenant \"%s\" does not exist",
					text_to_cstring(name), text_to_cstring(tenant))));
}

/*
 * SQL function: envault.get_secret(tenant text, name text) returns text
 *
 * Decrypt a secret; recorded in the access log under its name.
 */
PG_FUNCTION_INFO_V1(envault_get_secret);
Datum
envault_get_secret(PG_FUNCTION_ARGS)
{
	text	   *tenant = env_arg_text(fcinfo, 0, "tenant");
	text	   *name = env_arg_text(fcinfo, 1, "name");
	EnvSpi		s;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		isnull;
	bytea	   *ct;
	bytea	   *pt;
	char	   *cname;
	int16		version;

	ss_check_name(name);
	env_tenant_check(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant), false);
	env_spi_begin(&s);
	values[0] = PointerGetDatum(tenant);
	values[1] = PointerGetDatum(name);
	env_spi_run(ss_aad_version() == 1 ? SS_Q_GET_V1 : SS_Q_GET, 2, types, values,
				SPI_OK_SELECT);
	if (SPI_processed == 0)
		ss_no_secret(tenant, name);
	ct = DatumGetByteaPP(env_spi_col(&s, 1, &isnull, false, -1));
	version = DatumGetInt16(env_spi_col(&s, 2, &isnull, true, 2));
	env_spi_end(&s);

	cname = text_to_cstring(name);
	pt = env_open_secret(ct, ss_aad(tenant, name, version),
						 VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant), cname);
	if (!pg_verify_mbstr(GetDatabaseEncoding(), VARDATA(pt),
						 VARSIZE(pt) - VARHDRSZ, true))
	{
		env_wipe(pt, VARSIZE(pt));
		pfree(pt);
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("secret \"%s\" is not valid text in encoding \"%s\"",
						cname, GetDatabaseEncodingName())));
	}
	PG_RETURN_TEXT_P((text *) pt);
}

#define SS_Q_DELETE \
	"DELETE FROM envault.secrets" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND name OPERATOR(pg_catalog.=) $2"

/* SQL function: envault.delete_secret(tenant text, name text) returns void */
PG_FUNCTION_INFO_V1(envault_delete_secret);
Datum
envault_delete_secret(PG_FUNCTION_ARGS)
{
	text	   *tenant = env_arg_text(fcinfo, 0, "tenant");
	text	   *name = env_arg_text(fcinfo, 1, "name");
	EnvSpi		s;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	ss_check_name(name);
	env_tenant_check(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant), false);
	env_spi_begin(&s);
	values[0] = PointerGetDatum(tenant);
	values[1] = PointerGetDatum(name);
	env_spi_run(SS_Q_DELETE, 2, types, values, SPI_OK_DELETE);
	if (SPI_processed == 0)
		ss_no_secret(tenant, name);
	env_spi_end(&s);
	PG_RETURN_VOID();
}

#define SS_Q_VERIFIED \
	"UPDATE envault.secrets SET last_verified_at = pg_catalog.now(), verify_status = $3" \
	" WHERE tenant OPERATOR(pg_catalog.=) $1 AND name OPERATOR(pg_catalog.=) $2"

/*
 * SQL function: envault.record_verification(tenant text, name text,
 *                                           status text) returns void
 *
 * Note that the application checked the secret against its provider.
 */
PG_FUNCTION_INFO_V1(envault_record_verification);
Datum
envault_record_verification(PG_FUNCTION_ARGS)
{
	text	   *tenant = env_arg_text(fcinfo, 0, "tenant");
	text	   *name = env_arg_text(fcinfo, 1, "name");
	text	   *status = env_arg_text(fcinfo, 2, "status");
	EnvSpi		s;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];

	ss_check_name(name);
	if (VARSIZE_ANY_EXHDR(status) == 0 || VARSIZE_ANY_EXHDR(status) > SS_STATUS_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid verification status"),
				 errdetail("A status must be 1 to %d bytes long, such as \"ok\" or \"rejected\".",
						   SS_STATUS_MAXLEN)));
	env_tenant_check(VARDATA_ANY(tenant), VARSIZE_ANY_EXHDR(tenant), false);
	env_spi_begin(&s);
	values[0] = PointerGetDatum(tenant);
	values[1] = PointerGetDatum(name);
	values[2] = PointerGetDatum(status);
	env_spi_run(SS_Q_VERIFIED, 3, types, values, SPI_OK_UPDATE);
	if (SPI_processed == 0)
		ss_no_secret(tenant, name);
	env_spi_end(&s);
	PG_RETURN_VOID();
}
