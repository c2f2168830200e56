/*-------------------------------------------------------------------------
 *
 * canon.c
 *		The canonical text of a column value, as audit-chain row hashes
 *		cover it: one spelling per value, whatever the session's DateStyle,
 *		TimeZone, IntervalStyle, extra_float_digits or bytea_output.
 *
 * Built-in scalar types have a fixed form written here (see "Canonical
 * values" in docs/audit-chain.md); types whose output functions do not read
 * any setting use those; every other type (arrays, composites, ranges,
 * geometric and user-defined types) is printed by its output function with
 * the settings that could change its output pinned to fixed values for the
 * duration of the call.  reg* types are refused: they print names that
 * depend on search_path, and their OIDs change across dump and restore.
 *
 *-------------------------------------------------------------------------
 */
#include "envault.h"
#include "canon.h"

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* Set while the pinned settings are in force, for the output functions */
static const struct
{
	const char *name;
	const char *value;
}			canon_pins[] =

{
	{"DateStyle", "ISO, YMD"},
	{"IntervalStyle", "postgres"},
	{"TimeZone", "UTC"},
	{"extra_float_digits", "1"},
	{"bytea_output", "hex"},
	{"lc_monetary", "C"},
	{"xmlbinary", "base64"}
};

/* Is a type one of the reg* types, which have no canonical text? */
bool
env_canon_reg_type(Oid typid)
{
	switch (typid)
	{
		case REGCLASSOID:
		case REGTYPEOID:
		case REGPROCOID:
		case REGPROCEDUREOID:
		case REGOPEROID:
		case REGOPERATOROID:
		case REGCONFIGOID:
		case REGDICTIONARYOID:
		case REGNAMESPACEOID:
		case REGROLEOID:
		case REGCOLLATIONOID:
			return true;
		default:
			return false;
	}
}

static Oid
canon_base_type(Oid typid, char *typtype)
{
	Oid			base = getBaseType(typid);

	*typtype = get_typtype(base);
	return base;
}

void
env_canon_init(EnvCanon *c, Oid typid, const char *column)
{
	char		typtype;
	Oid			base = canon_base_type(typid, &typtype);
	Oid			typoutput;
	bool		isvarlena;

	memset(c, 0, sizeof(*c));
	c->typid = base;
	switch (base)
	{
		case BOOLOID:
			c->kind = ENV_CANON_BOOL;
			return;
		case INT2OID:
			c->kind = ENV_CANON_INT2;
			return;
		case INT4OID:
			c->kind = ENV_CANON_INT4;
			return;
		case INT8OID:
			c->kind = ENV_CANON_INT8;
			return;
		case OIDOID:
		case XIDOID:
		case CIDOID:
			c->kind = ENV_CANON_UINT32;
			return;
		case FLOAT4OID:
			c->kind = ENV_CANON_FLOAT4;
			return;
		case FLOAT8OID:
			c->kind = ENV_CANON_FLOAT8;
			return;
		case NUMERICOID:
			c->kind = ENV_CANON_NUMERIC;
			return;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case JSONOID:
		case XMLOID:
			c->kind = ENV_CANON_TEXT;
			return;
		case NAMEOID:
			c->kind = ENV_CANON_NAME;
			return;
		case BYTEAOID:
			c->kind = ENV_CANON_BYTEA;
			return;
		case UUIDOID:
			c->kind = ENV_CANON_UUID;
			return;
		case DATEOID:
			c->kind = ENV_CANON_DATE;
			return;
		case TIMEOID:
			c->kind = ENV_CANON_TIME;
			return;
		case TIMETZOID:
			c->kind = ENV_CANON_TIMETZ;
			return;
		case TIMESTAMPOID:
			c->kind = ENV_CANON_TIMESTAMP;
			return;
		case TIMESTAMPTZOID:
			c->kind = ENV_CANON_TIMESTAMPTZ;
			return;
		case INTERVALOID:
			c->kind = ENV_CANON_INTERVAL;
			return;
		case CASHOID:
			c->kind = ENV_CANON_INT8;	/* in the currency's smallest unit */
			return;
		default:
			break;
	}
	if (env_canon_reg_type(base))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("column \"%s\" of type %s cannot be part of an audit chain",
						column, format_type_be(typid)),
				 errdetail("Values of reg* types print as names that depend on search_path, and their OIDs change across dump and restore."),
				 errhint("Store the object's name as text instead.")));

	getTypeOutputInfo(base, &typoutput, &isvarlena);
	fmgr_info_cxt(typoutput, &c->out, TopMemoryContext);
	switch (base)
	{
		case JSONBOID:
			c->kind = ENV_CANON_JSONB;
			return;
		case INETOID:
		case CIDROID:
		case MACADDROID:
		case MACADDR8OID:
		case BITOID:
		case VARBITOID:
		case CHAROID:
		case PG_LSNOID:
		case TSVECTOROID:
		case TSQUERYOID:
			c->kind = ENV_CANON_OUTPUT;
			return;
		default:
			break;
	}
	c->kind = (typtype == TYPTYPE_ENUM) ? ENV_CANON_OUTPUT : ENV_CANON_PINNED;
}

bool
env_canon_needs_pinning(const EnvCanon *c)
{
	return c->kind == ENV_CANON_PINNED;
}

/*
 * Pin the settings that output functions read, until env_canon_unpin();
 * returns the GUC nest level to pass to it.
 */
int
env_canon_pin(void)
{
	int			level = NewGUCNestLevel();
	int			i;

	for (i = 0; i < (int) lengthof(canon_pins); i++)
		(void) set_config_option(canon_pins[i].name, canon_pins[i].value,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

void
env_canon_unpin(int level)
{
	AtEOXact_GUC(true, level);
}

/* YYYY-MM-DD, with " BC" for years before 1 */
static char *
canon_put_ymd(char *p, struct pg_tm *tm, bool *bc)
{
	int			year = tm->tm_year;

	*bc = (year <= 0);
	if (*bc)
		year = -(year - 1);
	return p + sprintf(p, "%04d-%02d-%02d", year, tm->tm_mon, tm->tm_mday);
}

static char *
canon_put_hms(char *p, int h, int m, int s, int64 usec)
{
	return p + sprintf(p, "%02d:%02d:%02d.%06d", h, m, s, (int) usec);
}

/* n as exactly width decimal digits */
static inline char *
canon_digits(char *p, int64 n, int width)
{
	int			i;

	for (i = width - 1; i >= 0; i--)
	{
		p[i] = (char) ('0' + n % 10);
		n /= 10;
	}
	return p + width;
}

/*
 * A timestamp as YYYY-MM-DDTHH:MM:SS.ffffff, followed by Z when utc, and by
 * " BC" for years before 1; "infinity" and "-infinity" as such.  Writes at
 * most ENV_CANON_BUFLEN bytes including the NUL; returns the length.  This
 * formats every row's envault_at, so years 1 to 9999 take a fast path
 * without sprintf.
 */
size_t
env_canon_timestamp(Timestamp ts, bool utc, char *buf)
{
	struct pg_tm tm;
	fsec_t		fsec;
	char	   *p = buf;
	bool		bc;

	if (TIMESTAMP_IS_NOBEGIN(ts))
		return (size_t) sprintf(buf, "-infinity");
	if (TIMESTAMP_IS_NOEND(ts))
		return (size_t) sprintf(buf, "infinity");
	if (ts >= -(int64) 730119 * USECS_PER_DAY &&	/* 0001-01-01 */
		ts < (int64) 2921940 * USECS_PER_DAY)	/* 10000-01-01 */
	{
		/* rows come in runs of the same day: its text is kept */
		static int64 cached_days = PG_INT64_MIN;
		static char cached_date[10];
		int64		days = ts / USECS_PER_DAY;
		int64		time = ts % USECS_PER_DAY;

		if (time < 0)
		{
			time += USECS_PER_DAY;
			days--;
		}
		if (days != cached_days)
		{
			int			y,
						m,
						d;
			char	   *q = cached_date;

			j2date((int) (days + POSTGRES_EPOCH_JDATE), &y, &m, &d);
			q = canon_digits(q, y, 4);
			*q++ = '-';
			q = canon_digits(q, m, 2);
			*q++ = '-';
			(void) canon_digits(q, d, 2);
			cached_days = days;
		}
		memcpy(p, cached_date, sizeof(cached_date));
		p += sizeof(cached_date);
		*p++ = 'T';
		p = canon_digits(p, time / USECS_PER_HOUR, 2);
		*p++ = ':';
		p = canon_digits(p, (time / USECS_PER_MINUTE) % 60, 2);
		*p++ = ':';
		p = canon_digits(p, (time / USECS_PER_SEC) % 60, 2);
		*p++ = '.';
		p = canon_digits(p, time % USECS_PER_SEC, 6);
		if (utc)
			*p++ = 'Z';
		*p = '\0';
		return (size_t) (p - buf);
	}
	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	p = canon_put_ymd(p, &tm, &bc);
	*p++ = 'T';
	p = canon_put_hms(p, tm.tm_hour, tm.tm_min, tm.tm_sec, fsec);
	if (utc)
		*p++ = 'Z';
	if (bc)
		p += sprintf(p, " BC");
	*p = '\0';
	return (size_t) (p - buf);
}

static size_t
canon_time(TimeADT t, char *buf)
{
	int64		usec = t % USECS_PER_SEC;
	int64		secs = t / USECS_PER_SEC;

	return (size_t) (canon_put_hms(buf, (int) (secs / 3600), (int) ((secs / 60) % 60),
								   (int) (secs % 60), usec) - buf);
}

static const char canon_hex[] = "0123456789abcdef";

/*
 * jsonb: exactly the text of jsonb's output function (one space after each
 * ',' and ':', keys in jsonb's order, strings escaped as escape_json()
 * escapes them), written here because the output function costs as much as
 * the rest of a row's hash.  Runs of characters that need no escape are
 * copied at once.  Test: chain.sql compares this with jsonb::text.
 */
/* Append n bytes; the text is NUL-terminated once, at the end */
static inline void
canon_put(StringInfo out, const char *s, int n)
{
	if (out->len + n >= out->maxlen)
		enlargeStringInfo(out, n);
	memcpy(out->data + out->len, s, n);
	out->len += n;
}

static void
canon_json_string(StringInfo out, const char *s, int len)
{
	int			start = 0;
	int			i;

	canon_put(out, "\"", 1);
	for (i = 0; i < len; i++)
	{
		unsigned char ch = (unsigned char) s[i];
		const char *esc;
		char		u[7];

		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		canon_put(out, s + start, i - start);
		start = i + 1;
		switch (ch)
		{
			case '\b':
				esc = "\\b";
				break;
			case '\f':
				esc = "\\f";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
			case '"':
				esc = "\\\"";
				break;
			case '\\':
				esc = "\\\\";
				break;
			default:
				snprintf(u, sizeof(u), "\\u%04x", (int) ch);
				esc = u;
				break;
		}
		canon_put(out, esc, (int) strlen(esc));
	}
	canon_put(out, s + start, len - start);
	canon_put(out, "\"", 1);
}

static void
canon_jsonb_scalar(StringInfo out, const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			canon_put(out, "null", 4);
			break;
		case jbvString:
			canon_json_string(out, v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			{
				char	   *n = DatumGetCString(DirectFunctionCall1(numeric_out,
																	NumericGetDatum(v->val.numeric)));

				canon_put(out, n, (int) strlen(n));
				break;
			}
		case jbvBool:
			if (v->val.boolean)
				canon_put(out, "true", 4);
			else
				canon_put(out, "false", 5);
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

static void
canon_jsonb(StringInfo out, Jsonb *jb)
{
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbIteratorToken tok;
	JsonbValue	v;
	bool		first = true;
	bool		raw_scalar = false;

	initStringInfo(out);
	/* about as long as the binary form, as jsonb's output function assumes */
	enlargeStringInfo(out, VARSIZE(jb));
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
				if (!first)
					canon_put(out, ", ", 2);
				if (v.val.array.rawScalar)
					raw_scalar = true;
				else
					canon_put(out, "[", 1);
				first = true;
				break;
			case WJB_BEGIN_OBJECT:
				if (!first)
					canon_put(out, ", ", 2);
				canon_put(out, "{", 1);
				first = true;
				break;
			case WJB_KEY:
				if (!first)
					canon_put(out, ", ", 2);
				canon_json_string(out, v.val.string.val, v.val.string.len);
				canon_put(out, ": ", 2);
				/* a container value follows with first set: no comma */
				first = true;
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				if (!first)
					canon_put(out, ", ", 2);
				canon_jsonb_scalar(out, &v);
				first = false;
				break;
			case WJB_END_ARRAY:
				if (!raw_scalar)
					canon_put(out, "]", 1);
				first = false;
				break;
			case WJB_END_OBJECT:
				canon_put(out, "}", 1);
				first = false;
				break;
			default:
				elog(ERROR, "unexpected jsonb iterator token %d", (int) tok);
		}
	}
	out->data[out->len] = '\0';
}

/* NaN and the infinities as float4out and float8out write them; 0 if finite */
static size_t
canon_float_special(double f, char *buf)
{
	if (isnan(f))
		return (size_t) sprintf(buf, "NaN");
	if (isinf(f))
		return (size_t) sprintf(buf, f > 0 ? "Infinity" : "-Infinity");
	return 0;
}

/*
 * bytea as byteaout writes it with bytea_output = hex, in buf when it fits
 * (ENV_CANON_BUFLEN), else palloc'd.
 */
static const char *
canon_bytea(Datum d, char *buf, size_t *len)
{
	struct varlena *v = PG_DETOAST_DATUM_PACKED(d);
	size_t		n = VARSIZE_ANY_EXHDR(v);
	const uint8 *src = (const uint8 *) VARDATA_ANY(v);
	char	   *s;
	size_t		i;

	if (n > (MaxAllocSize - 3) / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("bytea value is too large for an audit chain row hash")));
	s = (2 + 2 * n < ENV_CANON_BUFLEN) ? buf : palloc(2 + 2 * n + 1);
	s[0] = '\\';
	s[1] = 'x';
	for (i = 0; i < n; i++)
	{
		s[2 + 2 * i] = canon_hex[src[i] >> 4];
		s[3 + 2 * i] = canon_hex[src[i] & 15];
	}
	*len = 2 + 2 * n;
	return s;
}

/* a uuid as uuid_out writes it: lowercase, hyphenated */
static size_t
canon_uuid(const uint8 *u, char *buf)
{
	char	   *p = buf;
	int			i;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = canon_hex[u[i] >> 4];
		*p++ = canon_hex[u[i] & 15];
	}
	return (size_t) (p - buf);
}

/* a date in ISO form, whatever DateStyle says */
static size_t
canon_date(DateADT date, char *buf)
{
	struct pg_tm tm;
	bool		bc;
	char	   *p;

	if (DATE_IS_NOBEGIN(date))
		return (size_t) sprintf(buf, "-infinity");
	if (DATE_IS_NOEND(date))
		return (size_t) sprintf(buf, "infinity");
	j2date(date + POSTGRES_EPOCH_JDATE, &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
	p = canon_put_ymd(buf, &tm, &bc);
	if (bc)
		p += sprintf(p, " BC");
	return (size_t) (p - buf);
}

/* a time with time zone: the time, then its offset east of UTC to the second */
static size_t
canon_timetz(const TimeTzADT *t, char *buf)
{
	int			off = -t->zone; /* seconds east of UTC */
	int			a = off < 0 ? -off : off;
	size_t		n = canon_time(t->time, buf);

	n += (size_t) sprintf(buf + n, "%c%02d:%02d:%02d",
						  off < 0 ? '-' : '+',
						  a / 3600, (a / 60) % 60, a % 60);
	return n;
}

/*
 * The canonical text of a non-null value of the column.  Returns a pointer
 * to its bytes, which is buf (ENV_CANON_BUFLEN bytes), memory of the datum
 * itself, or memory allocated in the current context; sets *len.
 */
const char *
env_canon_text(const EnvCanon *c, Datum d, char *buf, size_t *len)
{
	switch (c->kind)
	{
		case ENV_CANON_BOOL:
			if (DatumGetBool(d))
			{
				*len = 4;
				return "true";
			}
			*len = 5;
			return "false";
		case ENV_CANON_INT2:
			*len = (size_t) pg_itoa(DatumGetInt16(d), buf);
			return buf;
		case ENV_CANON_INT4:
			*len = (size_t) pg_ltoa(DatumGetInt32(d), buf);
			return buf;
		case ENV_CANON_INT8:
			*len = (size_t) pg_lltoa(DatumGetInt64(d), buf);
			return buf;
		case ENV_CANON_UINT32:
			*len = (size_t) pg_ultoa_n(DatumGetUInt32(d), buf);
			buf[*len] = '\0';
			return buf;
		case ENV_CANON_FLOAT4:
			{
				float4		f = DatumGetFloat4(d);

				*len = canon_float_special(f, buf);
				if (*len == 0)
					*len = (size_t) float_to_shortest_decimal_buf(f, buf);
				return buf;
			}
		case ENV_CANON_FLOAT8:
			{
				float8		f = DatumGetFloat8(d);

				*len = canon_float_special(f, buf);
				if (*len == 0)
					*len = (size_t) double_to_shortest_decimal_buf(f, buf);
				return buf;
			}
		case ENV_CANON_NUMERIC:
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, d));

				*len = strlen(s);
				return s;
			}
		case ENV_CANON_TEXT:
			{
				struct varlena *v = PG_DETOAST_DATUM_PACKED(d);

				*len = VARSIZE_ANY_EXHDR(v);
				return VARDATA_ANY(v);
			}
		case ENV_CANON_NAME:
			{
				const char *s = NameStr(*DatumGetName(d));

				*len = strlen(s);
				return s;
			}
		case ENV_CANON_BYTEA:
			return canon_bytea(d, buf, len);
		case ENV_CANON_UUID:
			*len = canon_uuid(DatumGetUUIDP(d)->data, buf);
			return buf;
		case ENV_CANON_DATE:
			*len = canon_date(DatumGetDateADT(d), buf);
			return buf;
		case ENV_CANON_TIME:
			*len = canon_time(DatumGetTimeADT(d), buf);
			return buf;
		case ENV_CANON_TIMETZ:
			*len = canon_timetz(DatumGetTimeTzADTP(d), buf);
			return buf;
		case ENV_CANON_TIMESTAMP:
			*len = env_canon_timestamp(DatumGetTimestamp(d), false, buf);
			return buf;
		case ENV_CANON_TIMESTAMPTZ:
			*len = env_canon_timestamp(DatumGetTimestampTz(d), true, buf);
			return buf;
		case ENV_CANON_INTERVAL:
			{
				Interval   *iv = DatumGetIntervalP(d);

				*len = (size_t) sprintf(buf, "%d:%d:" INT64_FORMAT,
										iv->month, iv->day, iv->time);
				return buf;
			}
		case ENV_CANON_JSONB:
			{
				StringInfoData out;

				canon_jsonb(&out, DatumGetJsonbP(d));
				*len = out.len;
				return out.data;
			}
		case ENV_CANON_OUTPUT:
		case ENV_CANON_PINNED:
			{
				char	   *s = OutputFunctionCall((FmgrInfo *) &c->out, d);

				*len = strlen(s);
				return s;
			}
	}
	elog(ERROR, "unknown canonical value kind %d", (int) c->kind);
	return NULL;				/* keep compiler quiet */
}
