/*-------------------------------------------------------------------------
 *
 * report.c
 *		The one line envault-verify prints for a verified export: what was
 *		checked, and the first problem, in verify_chain()'s words.
 *
 * Names from the export are printed escaped, so a crafted export cannot
 * forge a line of its own.  Nothing here is secret.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* A growing NUL-terminated output buffer; oom is set if a write failed */
typedef struct EvOut
{
	char	   *buf;
	size_t		len;
	size_t		cap;
	bool		oom;
} EvOut;

static void
ev_out(EvOut *o, const char *s, size_t n)
{
	if (o->oom)
		return;
	if (o->cap - o->len <= n)
	{
		size_t		cap = o->cap == 0 ? 256 : o->cap;
		char	   *nb;

		while (cap - o->len <= n)
		{
			if (cap > ((size_t) 1 << 40))
			{
				o->oom = true;
				return;
			}
			cap *= 2;
		}
		nb = realloc(o->buf, cap);
		if (nb == NULL)
		{
			o->oom = true;
			return;
		}
		o->buf = nb;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void ev_printf(EvOut *l, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

static void
ev_printf(EvOut *l, const char *fmt,...)
{
	char		tmp[256];
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t) n >= sizeof(tmp))
		l->oom = true;
	else
		ev_out(l, tmp, (size_t) n);
}

/*
 * Text from the export, printable on one line: control characters as
 * \u00XX, a backslash doubled, and with quoted, '"' as \".
 */
static void
ev_put_text(EvOut *l, const char *s, size_t n, bool quoted)
{
	size_t		i;

	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7f)
			ev_printf(l, "\\u%04x", c);
		else if (c == '\\')
			ev_out(l, "\\\\", 2);
		else if (quoted && c == '"')
			ev_out(l, "\\\"", 2);
		else
			ev_out(l, s + i, 1);
	}
}

/* <chain> tenant "<tenant>": , or <chain> without tenant: */
static void
ev_put_chain(EvOut *l, const EvExport *ex)
{
	ev_put_text(l, ex->chain, ex->chain_len, false);
	if (ex->tenant != NULL)
	{
		ev_out(l, " tenant \"", 9);
		ev_put_text(l, ex->tenant, ex->tenant_len, true);
		ev_out(l, "\": ", 3);
	}
	else
		ev_out(l, " without tenant: ", 17);
}

static const char *
ev_plural(size_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

char *
ev_result_line(const EvExport *ex, const EvResult *res)
{
	EvOut		l;

	memset(&l, 0, sizeof(l));
	if (res->witness_fail)
	{
		ev_out(&l, "FAIL: ", 6);
		ev_put_chain(&l, ex);
		if (res->newest_tree > 0)
			ev_printf(&l, "the newest checkpoint (seq %lld) has %d of %d witness cosignatures",
					  (long long) res->newest_tree, res->cosigned,
					  res->witnesses_needed);
		else
			ev_printf(&l, "no tree-head checkpoint verified, 0 of %d witness cosignatures",
					  res->witnesses_needed);
	}
	else if (!res->ok)
	{
		ev_printf(&l, "FAIL: seq %lld: %s", (long long) res->bad_seq, res->reason);
		if (res->where != NULL)
		{
			ev_out(&l, " (checkpoint in ", 16);
			ev_put_text(&l, res->where, strlen(res->where), false);
			ev_out(&l, ")", 1);
		}
	}
	else
	{
		ev_out(&l, "OK: ", 4);
		ev_put_chain(&l, ex);
		if (res->rows == 0)
			ev_out(&l, "no rows", 7);
		else
		{
			const char *start = res->first == 1 ? "from the genesis" :
				res->anchored ? "anchored by a checkpoint" :
				"starting mid-chain without an anchor";

			if (res->rows == 1)
				ev_printf(&l, "1 row (seq %lld, %s)", (long long) res->first, start);
			else
				ev_printf(&l, "%zu rows (seq %lld-%lld, %s)", res->rows,
						  (long long) res->first, (long long) res->last, start);
		}
		ev_printf(&l, ", %zu %s verified", res->checkpoints,
				  ev_plural(res->checkpoints, "checkpoint", "checkpoints"));
		if (res->have_log)
			ev_printf(&l, ", %zu from the server log", res->logged);
		if (res->rows > 0)
		{
			if (res->covered == 0)
				ev_out(&l, "; no row covered by a checkpoint yet", 36);
			else if (res->covered < res->last)
				ev_printf(&l, "; rows after seq %lld not yet covered by a checkpoint",
						  (long long) res->covered);
			else
				ev_out(&l, "; every row covered by a checkpoint", 35);
		}
		if (res->witnessed)
			ev_printf(&l, ", cosigned by %d %s", res->cosigned,
					  ev_plural((size_t) res->cosigned, "witness", "witnesses"));
	}
	if (l.oom || l.buf == NULL)
	{
		free(l.buf);
		return NULL;
	}
	return l.buf;
}
