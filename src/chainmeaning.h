/*-------------------------------------------------------------------------
 *
 * chainmeaning.h
 *		What a chained table's columns mean, as the DDL guard compares it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_CHAINMEANING_H
#define ENVAULT_CHAINMEANING_H

#include "utils/rel.h"

extern char *env_chain_meaning_of(Relation rel);

#endif							/* ENVAULT_CHAINMEANING_H */
