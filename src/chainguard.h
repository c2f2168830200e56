/*-------------------------------------------------------------------------
 *
 * chainguard.h
 *		Refusing changes to chained tables (event triggers).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_CHAINGUARD_H
#define ENVAULT_CHAINGUARD_H

extern bool env_chain_trigger_function(Oid fnoid, bool insert_only);

#endif							/* ENVAULT_CHAINGUARD_H */
