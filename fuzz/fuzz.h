/*-------------------------------------------------------------------------
 *
 * fuzz.h
 *		What the libFuzzer harnesses of fuzz/ share: an assertion that
 *		stays on in every build and names the property that broke.
 *
 * A harness checks properties of what a parser accepts (it formats back to
 * the same bytes, it is internally consistent) and of what it refuses, not
 * only that it does not crash; a broken property aborts, which libFuzzer
 * reports as a crash and keeps as a reproducer.  Nothing here is secret:
 * the keys the harnesses use are fixed test keys.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_FUZZ_H
#define ENVAULT_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "%s:%d: property failed: %s\n", \
					__FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

extern int	LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#endif							/* ENVAULT_FUZZ_H */
