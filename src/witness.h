/*-------------------------------------------------------------------------
 *
 * witness.h
 *		Witness cosignatures of checkpoints.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_WITNESS_H
#define ENVAULT_WITNESS_H

#include "note.h"

extern void env_witness_init(void);
extern char *env_database_id(void);
extern int	env_checkpoint_check(const char *note, size_t len,
								 EnvCheckpoint *cp);

#endif							/* ENVAULT_WITNESS_H */
