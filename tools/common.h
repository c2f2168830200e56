/*-------------------------------------------------------------------------
 *
 * common.h
 *		What the modules of envault-verify and envault-witness share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_TOOLS_COMMON_H
#define ENVAULT_TOOLS_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The size of the error messages their readers write ("char err[EV_ERRLEN]") */
#define EV_ERRLEN				256

#endif							/* ENVAULT_TOOLS_COMMON_H */
