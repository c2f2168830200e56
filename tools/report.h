/*-------------------------------------------------------------------------
 *
 * report.h
 *		The result line of envault-verify.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ENVAULT_REPORT_H
#define ENVAULT_REPORT_H

#include "verify.h"

/* The one line envault-verify prints, without newline; malloc'd */
extern char *ev_result_line(const EvExport *ex, const EvResult *res);

#endif							/* ENVAULT_REPORT_H */
