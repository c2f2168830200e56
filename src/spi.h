/*-------------------------------------------------------------------------
 *
 * spi.h
 *		Privileged SPI: envault's queries on its own tables as the owner of
 *		the envault schema, and a user's table as its owner.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_SPI_H
#define ENVAULT_SPI_H

/* A privileged SPI session: see env_spi_begin() */
typedef struct EnvSpi
{
	Oid			save_userid;
	int			save_sec;
	MemoryContext caller_cxt;
	char	   *caller_name;	/* NAMEDATALEN bytes, zero-padded: a name */
	int			guc_level;		/* search_path pinned at this nest level */
} EnvSpi;

/* a user's table as its owner, in a security-restricted operation */
typedef struct EnvOwner
{
	Oid			save_userid;
	int			save_sec;
	int			guc_level;
} EnvOwner;

extern bool env_schema_has(const char *table, const char *column);
extern void env_spi_begin(EnvSpi *s);
extern void env_spi_end(EnvSpi *s);
extern void env_spi_run(const char *sql, int nargs, Oid *types, Datum *values,
						int expect);
extern Datum env_spi_col(EnvSpi *s, int col, bool *isnull, bool byval,
						 int typlen);
extern char *env_spi_cstring(EnvSpi *s, int col, bool *isnull);
extern void env_owner_begin(EnvOwner *o, Oid relid, bool no_force_rls);
extern void env_owner_end(EnvOwner *o);

#endif							/* ENVAULT_SPI_H */
