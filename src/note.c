/*-------------------------------------------------------------------------
 *
 * note.c
 *		base64, C2SP signed notes and envault's checkpoint text, exactly as
 *		docs/audit-chain.md specifies them.
 *
 * Parsers here read untrusted text (checkpoints stored in a table that a
 * superuser can edit, export files, server logs): they check every length
 * before reading, accept exactly one spelling of everything, and never
 * allocate.  Nothing here is secret but the signing key, which only
 * crypto.c touches.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "note.h"

static const char note_b64[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The em dash (U+2014) and space that open a signature line */
static const char note_sig_prefix[] = "\xe2\x80\x94 ";
#define NOTE_SIG_PREFIX_LEN 4

size_t
env_base64_encode(const uint8_t *data, size_t len, char *out)
{
	size_t		i;
	char	   *p = out;

	for (i = 0; i + 2 < len; i += 3)
	{
		uint32_t	v = ((uint32_t) data[i] << 16) | ((uint32_t) data[i + 1] << 8) | data[i + 2];

		*p++ = note_b64[(v >> 18) & 63];
		*p++ = note_b64[(v >> 12) & 63];
		*p++ = note_b64[(v >> 6) & 63];
		*p++ = note_b64[v & 63];
	}
	if (i < len)
	{
		uint32_t	v = (uint32_t) data[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t) data[i + 1] << 8;
		*p++ = note_b64[(v >> 18) & 63];
		*p++ = note_b64[(v >> 12) & 63];
		*p++ = (i + 1 < len) ? note_b64[(v >> 6) & 63] : '=';
		*p++ = '=';
	}
	*p = '\0';
	return (size_t) (p - out);
}

static int
note_b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Strict base64: a multiple of 4 characters, padding only at the end, and
 * the unused bits of the last group zero, so that every byte string has one
 * encoding.  Fails if the result would exceed out_max bytes.  With out
 * NULL, only checks the text and counts the bytes.
 */
bool
env_base64_decode(const char *text, size_t len, uint8_t *out, size_t out_max,
				  size_t *out_len)
{
	size_t		i;
	size_t		n = 0;

	if (len % 4 != 0)
		return false;
	for (i = 0; i < len; i += 4)
	{
		int			v[4];
		int			pad = 0;
		int			j;
		uint32_t	w;

		for (j = 0; j < 4; j++)
		{
			if (text[i + j] == '=' && i + 4 == len && j >= 2)
			{
				v[j] = 0;
				pad++;
				continue;
			}
			if (pad > 0 || (v[j] = note_b64_value(text[i + j])) < 0)
				return false;
		}
		w = ((uint32_t) v[0] << 18) | ((uint32_t) v[1] << 12) |
			((uint32_t) v[2] << 6) | (uint32_t) v[3];
		if ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0))
			return false;
		if (out == NULL)
		{
			n += 3 - pad;
			continue;
		}
		if (n + 3 - pad > out_max)
			return false;
		out[n++] = (uint8_t) (w >> 16);
		if (pad < 2)
			out[n++] = (uint8_t) (w >> 8);
		if (pad < 1)
			out[n++] = (uint8_t) w;
	}
	*out_len = n;
	return true;
}

/*
 * The code point of well-formed UTF-8 at s[*i] (no overlong forms,
 * surrogates or code points above U+10FFFF); advances *i past it.
 */
static bool
note_utf8_next(const char *s, size_t len, size_t *i, uint32_t *cp)
{
	unsigned char c = (unsigned char) s[*i];
	int			n;
	int			j;

	if (c < 0x80)
	{
		*cp = c;
		(*i)++;
		return true;
	}
	if (c >= 0xc2 && c <= 0xdf)
		n = 1, *cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 2, *cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 3, *cp = c & 0x07;
	else
		return false;
	if ((size_t) n >= len - *i)
		return false;
	for (j = 1; j <= n; j++)
	{
		unsigned char cc = (unsigned char) s[*i + j];

		if ((cc & 0xc0) != 0x80)
			return false;
		*cp = (*cp << 6) | (cc & 0x3f);
	}
	if ((n == 2 && (*cp < 0x800 || (*cp >= 0xd800 && *cp <= 0xdfff))) ||
		(n == 3 && (*cp < 0x10000 || *cp > 0x10ffff)))
		return false;
	*i += n + 1;
	return true;
}

/*
 * Is a code point a Unicode space (White_Space, as Go's unicode.IsSpace and
 * so the reference implementation of signed notes read it)?
 */
static bool
note_unicode_space(uint32_t cp)
{
	return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 ||
		cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
		cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
		cp == 0x3000;
}

/*
 * Key names (C2SP signed-note): non-empty well-formed UTF-8 with no
 * Unicode space and no '+'.  envault also refuses control characters and
 * names longer than 255 bytes.
 */
bool
env_note_name_valid(const char *name, size_t len)
{
	size_t		i = 0;
	uint32_t	cp;

	if (len == 0 || len > ENV_NOTE_NAME_MAXLEN)
		return false;
	while (i < len)
	{
		if (!note_utf8_next(name, len, &i, &cp) ||
			cp <= 0x20 || cp == 0x7f || cp == '+' ||
			(cp >= 0x80 && cp < 0xa0) || note_unicode_space(cp))
			return false;
	}
	return true;
}

/* key ID = SHA-256(name || 0x0A || type || public key)[:4] */
void
env_note_key_id_typed(const char *name, size_t name_len, uint8_t type,
					  const uint8_t *pub, uint8_t *key_id)
{
	uint8_t		buf[ENV_NOTE_NAME_MAXLEN + 2 + ENV_ED25519_PUBLIC_LEN];
	uint8_t		h[ENV_SHA256_LEN];

	if (name_len > ENV_NOTE_NAME_MAXLEN)
		name_len = ENV_NOTE_NAME_MAXLEN;
	memcpy(buf, name, name_len);
	buf[name_len] = 0x0a;
	buf[name_len + 1] = type;
	memcpy(buf + name_len + 2, pub, ENV_ED25519_PUBLIC_LEN);
	if (!env_sha256(buf, name_len + 2 + ENV_ED25519_PUBLIC_LEN, h))
		memset(h, 0, sizeof(h));
	memcpy(key_id, h, ENV_NOTE_KEYID_LEN);
}

void
env_note_key_id(const char *name, size_t name_len, const uint8_t *pub,
				uint8_t *key_id)
{
	env_note_key_id_typed(name, name_len, ENV_NOTE_TYPE_ED25519, pub, key_id);
}

static const char note_hex[] = "0123456789abcdef";

size_t
env_note_vkey(const char *name, size_t name_len, const uint8_t *pub,
			  char *out, size_t out_max)
{
	return env_note_vkey_typed(name, name_len, ENV_NOTE_TYPE_ED25519, pub,
							   out, out_max);
}

size_t
env_note_vkey_typed(const char *name, size_t name_len, uint8_t type,
					const uint8_t *pub, char *out, size_t out_max)
{
	uint8_t		key_id[ENV_NOTE_KEYID_LEN];
	uint8_t		typed[1 + ENV_ED25519_PUBLIC_LEN];
	size_t		need = name_len + 1 + 8 + 1 + ENV_BASE64_LEN(sizeof(typed)) + 1;
	char	   *p = out;
	int			i;

	if (!env_note_name_valid(name, name_len) || need > out_max)
		return 0;
	env_note_key_id_typed(name, name_len, type, pub, key_id);
	memcpy(p, name, name_len);
	p += name_len;
	*p++ = '+';
	for (i = 0; i < ENV_NOTE_KEYID_LEN; i++)
	{
		*p++ = note_hex[key_id[i] >> 4];
		*p++ = note_hex[key_id[i] & 15];
	}
	*p++ = '+';
	typed[0] = type;
	memcpy(typed + 1, pub, ENV_ED25519_PUBLIC_LEN);
	p += env_base64_encode(typed, sizeof(typed), p);
	return (size_t) (p - out);
}

/*
 * Parse a verifier key.  name receives the key name, NUL-terminated (at
 * most ENV_NOTE_NAME_MAXLEN + 1 bytes).  The key ID in the text must be the
 * one the name and key give.
 */
bool
env_note_parse_vkey(const char *vkey, size_t len, char *name, uint8_t *key_id,
					uint8_t *pub)
{
	uint8_t		type;

	return env_note_parse_vkey_typed(vkey, len, name, key_id, &type, pub) &&
		type == ENV_NOTE_TYPE_ED25519;
}

/* A verifier key of type 0x01 or 0x04; *type says which */
bool
env_note_parse_vkey_typed(const char *vkey, size_t len, char *name,
						  uint8_t *key_id, uint8_t *type, uint8_t *pub)
{
	const char *plus1 = memchr(vkey, '+', len);
	const char *plus2;
	size_t		name_len;
	uint8_t		typed[1 + ENV_ED25519_PUBLIC_LEN];
	uint8_t		want[ENV_NOTE_KEYID_LEN];
	size_t		n;
	int			i;

	/* trailing newline or carriage return, as a key file usually has */
	while (len > 0 && (vkey[len - 1] == '\n' || vkey[len - 1] == '\r'))
		len--;
	if (plus1 == NULL || plus1 >= vkey + len)
		return false;
	name_len = (size_t) (plus1 - vkey);
	if (!env_note_name_valid(vkey, name_len))
		return false;
	if ((size_t) (vkey + len - plus1) < 10 || plus1[9] != '+')
		return false;
	plus2 = plus1 + 9;
	for (i = 0; i < ENV_NOTE_KEYID_LEN; i++)
	{
		const char *h = strchr(note_hex, plus1[1 + 2 * i]);
		const char *l = strchr(note_hex, plus1[2 + 2 * i]);

		if (plus1[1 + 2 * i] == '\0' || plus1[2 + 2 * i] == '\0' ||
			h == NULL || l == NULL)
			return false;
		key_id[i] = (uint8_t) (((h - note_hex) << 4) | (l - note_hex));
	}
	if (!env_base64_decode(plus2 + 1, (size_t) (vkey + len - plus2 - 1),
						   typed, sizeof(typed), &n) ||
		n != sizeof(typed) ||
		(typed[0] != ENV_NOTE_TYPE_ED25519 && typed[0] != ENV_NOTE_TYPE_COSIGNATURE))
		return false;
	*type = typed[0];
	memcpy(pub, typed + 1, ENV_ED25519_PUBLIC_LEN);
	env_note_key_id_typed(vkey, name_len, *type, pub, want);
	if (memcmp(want, key_id, ENV_NOTE_KEYID_LEN) != 0)
		return false;
	memcpy(name, vkey, name_len);
	name[name_len] = '\0';
	return true;
}

/*
 * Well-formed UTF-8 (no overlong forms, surrogates or code points above
 * U+10FFFF) without control characters other than newline.
 */
static bool
note_utf8_valid(const char *s, size_t len)
{
	size_t		i = 0;
	uint32_t	cp;

	while (i < len)
	{
		if (!note_utf8_next(s, len, &i, &cp) ||
			(cp < 0x20 && cp != '\n') || cp == 0x7f)
			return false;
	}
	return true;
}

/*
 * Parse a signed note: text ending in a newline, a blank line, then one or
 * more signature lines "— <name> <base64(key id || signature)>".  Control
 * characters other than newline make it malformed.
 */
bool
env_note_parse(const char *note, size_t len, EnvNote *out)
{
	size_t		i;
	size_t		split = 0;
	bool		found = false;
	const char *p;
	const char *end = note + len;

	memset(out, 0, sizeof(*out));
	if (note == NULL || len < 2 || len > ENV_NOTE_READ_MAXLEN || note[len - 1] != '\n' ||
		!note_utf8_valid(note, len))
		return false;
	/* the last blank line separates the text from the signatures */
	for (i = len - 1; i > 0; i--)
	{
		if (note[i] == '\n' && note[i - 1] == '\n')
		{
			split = i - 1;
			found = true;
			break;
		}
	}
	if (!found || split == 0)
		return false;
	out->text = note;
	out->text_len = split + 1;

	p = note + split + 2;
	if (p >= end)
		return false;
	while (p < end)
	{
		const char *eol = memchr(p, '\n', (size_t) (end - p));
		const char *sp;
		EnvNoteSig *s;
		uint8_t		raw[ENV_NOTE_KEYID_LEN + ENV_NOTE_COSIG_LEN];
		size_t		rawlen;
		int			k;

		if (eol == NULL || out->nsigs >= ENV_NOTE_MAXSIGS)
			return false;
		if ((size_t) (eol - p) < NOTE_SIG_PREFIX_LEN ||
			memcmp(p, note_sig_prefix, NOTE_SIG_PREFIX_LEN) != 0)
			return false;
		p += NOTE_SIG_PREFIX_LEN;
		sp = memchr(p, ' ', (size_t) (eol - p));
		if (sp == NULL || !env_note_name_valid(p, (size_t) (sp - p)))
			return false;
		s = &out->sigs[out->nsigs];
		s->name = p;
		s->name_len = (size_t) (sp - p);

		/*
		 * signatures of any length (other algorithms: a cosignature, an
		 * ML-DSA signature) parse; only Ed25519's can verify
		 */
		if (!env_base64_decode(sp + 1, (size_t) (eol - sp - 1), NULL, 0,
							   &rawlen) ||
			rawlen <= ENV_NOTE_KEYID_LEN)
			return false;
		s->ed25519 = (rawlen == ENV_NOTE_KEYID_LEN + ENV_ED25519_SIG_LEN);
		s->cosig = (rawlen == ENV_NOTE_KEYID_LEN + ENV_NOTE_COSIG_LEN);
		if (!env_base64_decode(sp + 1, (s->ed25519 || s->cosig) ?
							   (size_t) (eol - sp - 1) : 8,
							   raw, sizeof(raw), &rawlen))
			return false;
		memcpy(s->key_id, raw, ENV_NOTE_KEYID_LEN);
		s->timestamp = 0;
		if (s->ed25519)
			memcpy(s->sig, raw + ENV_NOTE_KEYID_LEN, ENV_ED25519_SIG_LEN);
		else if (s->cosig)
		{
			for (k = 0; k < 8; k++)
				s->timestamp = (s->timestamp << 8) | raw[ENV_NOTE_KEYID_LEN + k];
			memcpy(s->sig, raw + ENV_NOTE_KEYID_LEN + 8, ENV_ED25519_SIG_LEN);
		}
		out->nsigs++;
		p = eol + 1;
	}
	return out->nsigs > 0;
}

EnvNoteCheck
env_note_verify(const char *note, size_t len, const char *name,
				size_t name_len, const uint8_t *pub, EnvNote *parsed)
{
	EnvNote		local;
	EnvNote    *n = parsed ? parsed : &local;
	uint8_t		key_id[ENV_NOTE_KEYID_LEN];
	int			i;
	bool		found = false;

	if (!env_note_parse(note, len, n))
		return ENV_NOTE_MALFORMED;
	env_note_key_id(name, name_len, pub, key_id);
	for (i = 0; i < n->nsigs; i++)
	{
		EnvNoteSig *s = &n->sigs[i];

		if (s->name_len != name_len || memcmp(s->name, name, name_len) != 0 ||
			memcmp(s->key_id, key_id, ENV_NOTE_KEYID_LEN) != 0)
			continue;
		/* every signature line by this key must verify */
		if (!s->ed25519 ||
			!env_ed25519_verify(pub, (const uint8_t *) n->text, n->text_len,
								s->sig))
			return ENV_NOTE_BAD_SIGNATURE;
		found = true;
	}
	return found ? ENV_NOTE_VERIFIED : ENV_NOTE_UNKNOWN_KEY;
}

size_t
env_cosignature_message(const char *text, size_t text_len, uint64_t timestamp,
						char *out, size_t out_max)
{
	char		head[48];
	int			hlen = snprintf(head, sizeof(head), "cosignature/v1\ntime %llu\n",
								(unsigned long long) timestamp);

	if (hlen < 0 || (size_t) hlen + text_len > out_max)
		return 0;
	memcpy(out, head, (size_t) hlen);
	memcpy(out + hlen, text, text_len);
	return (size_t) hlen + text_len;
}

EnvNoteCheck
env_note_verify_cosignature(const char *note, size_t len, const char *name,
							size_t name_len, const uint8_t *pub,
							uint64_t *timestamp)
{
	EnvNote		n;
	uint8_t		key_id[ENV_NOTE_KEYID_LEN];
	char		msg[64 + ENV_NOTE_MAXLEN];
	int			i;
	bool		found = false;

	*timestamp = 0;
	if (!env_note_parse(note, len, &n))
		return ENV_NOTE_MALFORMED;
	env_note_key_id_typed(name, name_len, ENV_NOTE_TYPE_COSIGNATURE, pub, key_id);
	for (i = 0; i < n.nsigs; i++)
	{
		EnvNoteSig *s = &n.sigs[i];
		size_t		mlen;

		if (s->name_len != name_len || memcmp(s->name, name, name_len) != 0 ||
			memcmp(s->key_id, key_id, ENV_NOTE_KEYID_LEN) != 0)
			continue;
		mlen = s->cosig && s->timestamp <= (uint64_t) INT64_MAX ?
			env_cosignature_message(n.text, n.text_len, s->timestamp, msg,
									sizeof(msg)) : 0;
		if (mlen == 0 ||
			!env_ed25519_verify(pub, (const uint8_t *) msg, mlen, s->sig))
			return ENV_NOTE_BAD_SIGNATURE;
		if (s->timestamp > *timestamp)
			*timestamp = s->timestamp;
		found = true;
	}
	return found ? ENV_NOTE_VERIFIED : ENV_NOTE_UNKNOWN_KEY;
}

size_t
env_cosignature_line(const char *name, size_t name_len, const uint8_t *key_id,
					 uint64_t timestamp, const uint8_t *sig, char *out,
					 size_t out_max)
{
	uint8_t		raw[ENV_NOTE_KEYID_LEN + ENV_NOTE_COSIG_LEN];
	size_t		need = NOTE_SIG_PREFIX_LEN + name_len + 1 +
		ENV_BASE64_LEN(sizeof(raw)) + 2;
	char	   *p = out;
	int			k;

	if (!env_note_name_valid(name, name_len) || need > out_max)
		return 0;
	memcpy(raw, key_id, ENV_NOTE_KEYID_LEN);
	for (k = 0; k < 8; k++)
		raw[ENV_NOTE_KEYID_LEN + k] = (uint8_t) (timestamp >> (56 - 8 * k));
	memcpy(raw + ENV_NOTE_KEYID_LEN + 8, sig, ENV_ED25519_SIG_LEN);
	memcpy(p, note_sig_prefix, NOTE_SIG_PREFIX_LEN);
	p += NOTE_SIG_PREFIX_LEN;
	memcpy(p, name, name_len);
	p += name_len;
	*p++ = ' ';
	p += env_base64_encode(raw, sizeof(raw), p);
	*p++ = '\n';
	*p = '\0';
	return (size_t) (p - out);
}

/*
 * A note from its text and one Ed25519 signature line:
 * text || "\n" || "— " name " " base64(key id || signature) "\n"
 */
size_t
env_note_assemble(const char *text, size_t text_len, const char *name,
				  size_t name_len, const uint8_t *key_id, const uint8_t *sig,
				  char *out, size_t out_max)
{
	uint8_t		raw[ENV_NOTE_KEYID_LEN + ENV_ED25519_SIG_LEN];
	size_t		need;
	char	   *p = out;

	if (text_len == 0 || text[text_len - 1] != '\n' ||
		!env_note_name_valid(name, name_len))
		return 0;
	need = text_len + 1 + NOTE_SIG_PREFIX_LEN + name_len + 1 +
		ENV_BASE64_LEN(sizeof(raw)) + 2;
	if (need > out_max || need > ENV_NOTE_MAXLEN)
		return 0;
	memcpy(raw, key_id, ENV_NOTE_KEYID_LEN);
	memcpy(raw + ENV_NOTE_KEYID_LEN, sig, ENV_ED25519_SIG_LEN);
	memcpy(p, text, text_len);
	p += text_len;
	*p++ = '\n';
	memcpy(p, note_sig_prefix, NOTE_SIG_PREFIX_LEN);
	p += NOTE_SIG_PREFIX_LEN;
	memcpy(p, name, name_len);
	p += name_len;
	*p++ = ' ';
	p += env_base64_encode(raw, sizeof(raw), p);
	*p++ = '\n';
	*p = '\0';
	return (size_t) (p - out);
}

/* Sign a text with a key and make the note */
size_t
env_note_sign(const char *text, size_t text_len, const char *name,
			  size_t name_len, const EnvSigningKey *sk, char *out,
			  size_t out_max)
{
	uint8_t		key_id[ENV_NOTE_KEYID_LEN];
	uint8_t		sig[ENV_ED25519_SIG_LEN];

	if (text_len == 0 || text[text_len - 1] != '\n' ||
		!env_note_name_valid(name, name_len))
		return 0;
	env_note_key_id(name, name_len, sk->pub, key_id);
	if (!env_ed25519_sign(sk, (const uint8_t *) text, text_len, sig))
		return 0;
	return env_note_assemble(text, text_len, name, name_len, key_id, sig,
							 out, out_max);
}

static bool
note_time_valid(const char *t, size_t len)
{
	/* YYYY-MM-DDTHH:MM:SS.ffffffZ */
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
	size_t		i;

	if (len != ENV_CHECKPOINT_TIME_LEN)
		return false;
	for (i = 0; i < len; i++)
	{
		if (shape[i] == 'd' ? (t[i] < '0' || t[i] > '9') : t[i] != shape[i])
			return false;
	}
	return true;
}

/*
 * <origin>\n<seq>\n<base64 hash>\ntime <time>\n: the tlog-checkpoint body
 * with one extension line, the time of signing in UTC.
 */
size_t
env_checkpoint_text(const char *origin, size_t origin_len, uint64_t seq,
					const uint8_t *hash, const char *time, uint64_t purge,
					char *out, size_t out_max)
{
	char		seqbuf[24];
	char		purgebuf[32];
	int			seqlen = snprintf(seqbuf, sizeof(seqbuf), "%llu",
								  (unsigned long long) seq);
	int			purgelen = purge == 0 ? 0 :
		snprintf(purgebuf, sizeof(purgebuf), "purge %llu\n",
				 (unsigned long long) purge);
	size_t		need = origin_len + 1 + (size_t) seqlen + 1 +
		ENV_BASE64_LEN(ENV_SHA256_LEN) + 1 + 5 + ENV_CHECKPOINT_TIME_LEN + 2 +
		(size_t) purgelen;
	char	   *p = out;
	size_t		i;

	if (origin_len == 0 || need > out_max || seq == 0 ||
		!note_time_valid(time, strlen(time)))
		return 0;
	for (i = 0; i < origin_len; i++)
	{
		unsigned char c = (unsigned char) origin[i];

		if (c <= 0x20 || c == 0x7f || c == '+')
			return 0;
	}
	memcpy(p, origin, origin_len);
	p += origin_len;
	*p++ = '\n';
	memcpy(p, seqbuf, (size_t) seqlen);
	p += seqlen;
	*p++ = '\n';
	p += env_base64_encode(hash, ENV_SHA256_LEN, p);
	*p++ = '\n';
	memcpy(p, "time ", 5);
	p += 5;
	memcpy(p, time, ENV_CHECKPOINT_TIME_LEN);
	p += ENV_CHECKPOINT_TIME_LEN;
	*p++ = '\n';
	memcpy(p, purgebuf, (size_t) purgelen);
	p += purgelen;
	*p = '\0';
	return (size_t) (p - out);
}

/* A decimal number from 1 to 2^64 - 1 without a leading zero, or 0 */
static uint64_t
note_number(const char *s, size_t len)
{
	uint64_t	v = 0;
	size_t		n;

	if (len == 0 || len > 20 || s[0] == '0')
		return 0;
	for (n = 0; n < len; n++)
	{
		unsigned	d = (unsigned) (s[n] - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	return v;
}

/*
 * Parse the signed text of a checkpoint (C2SP tlog-checkpoint): the origin,
 * the tree size, the root hash, then any number of non-empty extension
 * lines, which are opaque; envault writes one, "time <UTC>", and *out gets
 * that time when the first extension line is one.
 */
bool
env_checkpoint_parse(const char *text, size_t len, EnvCheckpoint *out)
{
	const char *lines[3];
	size_t		lens[3];
	const char *p = text;
	const char *end = text + len;
	int			i;
	uint64_t	seq = 0;
	size_t		n;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < 3; i++)
	{
		const char *eol = p < end ? memchr(p, '\n', (size_t) (end - p)) : NULL;

		if (eol == NULL || eol == p)
			return false;
		lines[i] = p;
		lens[i] = (size_t) (eol - p);
		p = eol + 1;
	}

	for (n = 0; n < lens[0]; n++)
	{
		unsigned char c = (unsigned char) lines[0][n];

		if (c <= 0x20 || c == 0x7f || c == '+')
			return false;
	}
	out->origin = lines[0];
	out->origin_len = lens[0];

	if ((seq = note_number(lines[1], lens[1])) == 0)
		return false;
	out->seq = seq;

	if (!env_base64_decode(lines[2], lens[2], out->hash, ENV_SHA256_LEN, &n) ||
		n != ENV_SHA256_LEN)
		return false;

	/* extension lines */
	for (i = 0; p < end; i++)
	{
		const char *eol = memchr(p, '\n', (size_t) (end - p));

		if (eol == NULL || eol == p)
			return false;
		if (i == 0 && (size_t) (eol - p) == 5 + ENV_CHECKPOINT_TIME_LEN &&
			memcmp(p, "time ", 5) == 0 &&
			note_time_valid(p + 5, ENV_CHECKPOINT_TIME_LEN))
		{
			memcpy(out->time, p + 5, ENV_CHECKPOINT_TIME_LEN);
			out->time[ENV_CHECKPOINT_TIME_LEN] = '\0';
		}
		/* a purge statement: right after the time */
		if (i == 1 && out->time[0] != '\0' && eol - p > 6 &&
			memcmp(p, "purge ", 6) == 0)
			out->purge = note_number(p + 6, (size_t) (eol - p - 6));
		p = eol + 1;
	}
	return true;
}

/*
 * Check a checkpoint's note against trusted keys: it must parse as a signed
 * note with a checkpoint body, and the first signature by a trusted key
 * must verify, under the origin as key name (cp->tree: a tree head) or
 * under the key's own name (a head row's hash, as 0.2.0 signed).  The
 * signature does not cover the key name, but a tree head and a row hash
 * are SHA-256 over inputs of different domains (0x01 node, row label), so
 * reading one as the other would need a SHA-256 collision.
 *
 * Returns 0 when it verifies, 1 when the note or body is malformed, 2 when
 * no trusted key signed it validly.
 */
int
env_checkpoint_verify(const char *note, size_t len,
					  const EnvCheckpointKey *keys, int nkeys,
					  EnvCheckpoint *cp)
{
	EnvNote		parsed;
	int			k;

	memset(cp, 0, sizeof(*cp));
	if (!env_note_parse(note, len, &parsed) ||
		!env_checkpoint_parse(parsed.text, parsed.text_len, cp))
		return 1;
	for (k = 0; k < nkeys; k++)
	{
		EnvNoteCheck rc = ENV_NOTE_UNKNOWN_KEY;

		if (cp->origin_len <= ENV_NOTE_NAME_MAXLEN)
			rc = env_note_verify(note, len, cp->origin, cp->origin_len,
								 keys[k].pub, NULL);
		if (rc == ENV_NOTE_VERIFIED)
		{
			cp->tree = true;
			return 0;
		}
		if (rc != ENV_NOTE_BAD_SIGNATURE)
			rc = env_note_verify(note, len, keys[k].name, keys[k].name_len,
								 keys[k].pub, NULL);
		if (rc == ENV_NOTE_VERIFIED)
		{
			cp->tree = false;
			return 0;
		}
		if (rc == ENV_NOTE_BAD_SIGNATURE)
			break;
	}
	return 2;
}

/* Percent-encode everything but A-Z a-z 0-9 - . _ ~ */
static char *
note_pct(char *p, const char *s, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
			c == '~')
			*p++ = (char) c;
		else
		{
			*p++ = '%';
			*p++ = "0123456789ABCDEF"[c >> 4];
			*p++ = "0123456789ABCDEF"[c & 15];
		}
	}
	return p;
}

/*
 * envault/<database>/<chain>, and /<tenant> unless the tenant is NULL (the
 * chain of rows without a tenant); each part percent-encoded.
 */
size_t
env_origin_build(const char *database, size_t database_len,
				 const char *chain, size_t chain_len,
				 const char *tenant, size_t tenant_len,
				 char *out, size_t out_max)
{
	size_t		need = 8 + 3 * database_len + 1 + 3 * chain_len +
		(tenant ? 1 + 3 * tenant_len : 0) + 1;
	char	   *p = out;

	if (need > out_max)
		return 0;
	memcpy(p, "envault/", 8);
	p = note_pct(p + 8, database, database_len);
	*p++ = '/';
	p = note_pct(p, chain, chain_len);
	if (tenant)
	{
		*p++ = '/';
		p = note_pct(p, tenant, tenant_len);
	}
	*p = '\0';
	return (size_t) (p - out);
}

/*
 * Does the origin continue at *p with the percent-encoding of s?  Advances
 * *p past it if so.
 */
static bool
note_pct_match(const char **p, const char *end, const char *s, size_t len)
{
	const char *q = *p;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
			c == '~')
		{
			if (q >= end || *q != (char) c)
				return false;
			q++;
		}
		else
		{
			if (end - q < 3 || q[0] != '%' ||
				q[1] != "0123456789ABCDEF"[c >> 4] ||
				q[2] != "0123456789ABCDEF"[c & 15])
				return false;
			q += 3;
		}
	}
	*p = q;
	return true;
}

/*
 * Does an origin name this database (envault/<database>/...)?  For a
 * verifier that pins the database and takes any of its chains.
 */
bool
env_origin_in_database(const char *origin, size_t origin_len,
					   const char *database, size_t database_len)
{
	const char *end = origin + origin_len;
	const char *p;

	if (database == NULL || database_len == 0 || origin_len < 8 ||
		memcmp(origin, "envault/", 8) != 0)
		return false;
	p = origin + 8;
	if (!note_pct_match(&p, end, database, database_len))
		return false;
	/* then a chain */
	return end - p >= 2 && *p == '/';
}

/*
 * Does an origin name this database, chain and tenant?  The database is the
 * identity the verifier pins (envault.database_id() inside the database,
 * the auditor's --database outside it); NULL matches no origin.  NULL
 * tenant: the chain without tenant.  Compared in place, so that parts of
 * any length match.
 */
bool
env_origin_matches(const char *origin, size_t origin_len,
				   const char *database, size_t database_len,
				   const char *chain, size_t chain_len,
				   const char *tenant, size_t tenant_len)
{
	const char *end = origin + origin_len;
	const char *p;

	if (database == NULL || origin_len < 8 || memcmp(origin, "envault/", 8) != 0)
		return false;
	p = origin + 8;
	if (!note_pct_match(&p, end, database, database_len))
		return false;
	if (p >= end || *p != '/')
		return false;
	p++;
	if (!note_pct_match(&p, end, chain, chain_len))
		return false;
	if (tenant)
	{
		if (p >= end || *p != '/')
			return false;
		p++;
		if (!note_pct_match(&p, end, tenant, tenant_len))
			return false;
	}
	return p == end;
}
