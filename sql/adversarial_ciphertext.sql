-- adversarial_ciphertext: what an attacker who can write ciphertexts (or an
-- unlucky copy) gets out of envault: every single-byte change, every
-- truncation and extension of a ciphertext, ciphertexts spliced together,
-- and ciphertexts moved between rows, purposes, versions and tenants.  Every
-- attempt ends in an error; none ever returns a value.
SET search_path = public, envault;
\set SHOW_CONTEXT never
SELECT envault.create_tenant('adv-c1');
SELECT envault.create_tenant('adv-c2');

-- Opens c with one of the decrypting functions and reports the SQLSTATE of
-- the error, or 'returned' and the value that came back.
CREATE FUNCTION regress_adv_open(fn text, c bytea, aad bytea) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v text;
BEGIN
	CASE fn
		WHEN 'env_decrypt' THEN
			v := encode(envault.env_decrypt(c, aad), 'hex');
		WHEN 'env_decrypt_text' THEN
			v := envault.env_decrypt_text(c, aad);
		WHEN 'env_reencrypt' THEN
			v := encode(envault.env_reencrypt(c, aad), 'hex');
		WHEN 'env_is_current' THEN
			v := envault.env_is_current(c)::text;
	END CASE;
	RETURN 'returned ' || coalesce(quote_literal(v), 'NULL');
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;

-- The part of a ciphertext of len bytes that byte pos belongs to
-- (docs/format.md): header fields, body, tag.
CREATE FUNCTION regress_adv_region(pos int, len int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN pos < 4 THEN '0-3: magic, format, algorithm'
				WHEN pos < 12 THEN '4-11: key id'
				WHEN pos < 36 THEN '12-35: nonce'
				WHEN pos < len - 16 THEN 'body'
				ELSE 'tag' END
$$;

-- c with the key id (bytes 4 to 11) of other
CREATE FUNCTION regress_adv_relabel(c bytea, other bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$ SELECT overlay(c PLACING substr(other, 5, 8) FROM 5 FOR 8) $$;

-- Two short ciphertexts: 3 bytes of plaintext with aad (55 bytes), and an
-- empty plaintext without aad (52 bytes, the shortest ciphertext there is).
CREATE TABLE regress_adv_ct (name text PRIMARY KEY, c bytea, aad bytea);
INSERT INTO regress_adv_ct VALUES
	('short', env_encrypt('adv-c1', 'secrets', 'adv', 'row:1'::bytea), 'row:1'),
	('empty', env_encrypt('adv-c1', 'secrets', '', NULL), NULL);
-- unchanged, they open with every function (env_reencrypt returns a current
-- value unchanged)
SELECT x.name, octet_length(x.c) AS len, f.fn,
       replace(regress_adv_open(f.fn, x.c, x.aad), encode(x.c, 'hex'), '<itself>') AS outcome
  FROM regress_adv_ct x,
       (VALUES ('env_decrypt'), ('env_decrypt_text'), ('env_reencrypt')) f(fn)
 ORDER BY x.name DESC, f.fn;

-- Every position, every one of the 255 other byte values, through each of
-- the three functions: 55 * 255 * 3 and 52 * 255 * 3 attempts.  A changed
-- key id names a data key that does not exist (42704); any other change
-- fails authentication (22V01).  No attempt returns anything.
SELECT x.name, f.fn, regress_adv_region(i, octet_length(x.c)) AS region,
       regress_adv_open(f.fn, set_byte(x.c, i, v), x.aad) AS outcome,
       count(*) AS attempts
  FROM regress_adv_ct x,
       (VALUES ('env_decrypt'), ('env_decrypt_text'), ('env_reencrypt')) f(fn),
       generate_series(0, octet_length(x.c) - 1) i,
       generate_series(0, 255) v
 WHERE v <> get_byte(x.c, i)
 GROUP BY 1, 2, 3, 4
 ORDER BY 1 DESC, 2, min(i), 4;

-- Every truncation (each prefix, from 0 bytes to one byte short), every
-- ciphertext without its first n bytes, and every extension by 1 to 64
-- bytes (zeros, or a second copy of its own tag): all fail authentication.
SELECT x.name, f.fn, t.kind, regress_adv_open(f.fn, t.variant, x.aad) AS outcome,
       count(*) AS attempts
  FROM regress_adv_ct x,
       (VALUES ('env_decrypt'), ('env_decrypt_text'), ('env_reencrypt')) f(fn),
       LATERAL (SELECT 'prefix' AS kind, substr(x.c, 1, n) AS variant
                  FROM generate_series(0, octet_length(x.c) - 1) n
                UNION ALL
                SELECT 'suffix', substr(x.c, n + 1)
                  FROM generate_series(1, octet_length(x.c)) n
                UNION ALL
                SELECT 'extended with zeros', x.c || decode(repeat('00', n), 'hex')
                  FROM generate_series(1, 64) n
                UNION ALL
                SELECT 'tag appended', x.c || substr(x.c, octet_length(x.c) - 15)) t
 GROUP BY 1, 2, 3, 4
 ORDER BY 1 DESC, 2, 3, 4;
-- env_is_current reads only the header (it decrypts nothing), but a value
-- too short to be a ciphertext is refused the same way
SELECT regress_adv_open('env_is_current', substr(x.c, 1, n), NULL) AS outcome,
       count(*) AS attempts
  FROM regress_adv_ct x, generate_series(0, 51) n
 WHERE x.name = 'empty' GROUP BY 1;
SELECT env_is_current(substr(c, 1, 51)) FROM regress_adv_ct WHERE name = 'empty';

-- Splices of two ciphertexts of the same plaintext under the same key:
-- header of one with body and tag of the other, the other's nonce or tag,
-- and both concatenated.
CREATE TABLE regress_adv_pair AS
SELECT env_encrypt('adv-c1', 'secrets', 'same plaintext') AS a,
       env_encrypt('adv-c1', 'secrets', 'same plaintext') AS b;
SELECT s.kind, regress_adv_open('env_decrypt_text', s.variant, NULL) AS outcome
  FROM regress_adv_pair p,
       LATERAL (VALUES
         ('a as it is', p.a),
         ('header of a, body and tag of b', substr(p.a, 1, 36) || substr(p.b, 37)),
         ('a with the nonce of b', overlay(p.a PLACING substr(p.b, 13, 24) FROM 13 FOR 24)),
         ('a with the tag of b', substr(p.a, 1, octet_length(p.a) - 16) || substr(p.b, octet_length(p.b) - 15)),
         ('a || b', p.a || p.b),
         ('b || a', p.b || p.a)) s(kind, variant);

-- Moved between rows: each value is bound to its row by aad = int4send(id).
CREATE TABLE regress_adv_rows (id int PRIMARY KEY, c bytea);
INSERT INTO regress_adv_rows
SELECT g, env_encrypt('adv-c1', 'secrets', 'row ' || g, int4send(g)) FROM generate_series(1, 4) g;
SELECT id, regress_adv_open('env_decrypt_text', c, int4send(id)) AS in_place
  FROM regress_adv_rows ORDER BY id;
-- every value with the aad of each other row: 12 attempts
SELECT regress_adv_open('env_decrypt_text', a.c, int4send(b.id)) AS outcome, count(*) AS attempts
  FROM regress_adv_rows a, regress_adv_rows b WHERE a.id <> b.id GROUP BY 1;
-- really moved: every value one row down, then read in place
UPDATE regress_adv_rows r SET c = o.c
  FROM regress_adv_rows o WHERE o.id = r.id % 4 + 1;
SELECT id, regress_adv_open('env_decrypt_text', c, int4send(id)) AS in_place
  FROM regress_adv_rows ORDER BY id;
-- associated data is compared as bytes: the same id as another integer
-- type, no aad, or a single zero byte are all other associated data; and
-- NULL and the empty string are the same associated data
SELECT a.kind, regress_adv_open('env_decrypt_text', e.c, a.aad) AS outcome
  FROM (SELECT env_encrypt('adv-c1', 'secrets', 'bound to 1', int4send(1)) AS c) e,
       (VALUES ('int4send(1)', int4send(1)), ('int8send(1)', int8send(1)),
               ('int2send(1)', int2send(1::smallint)), ('NULL', NULL),
               ('empty', ''::bytea), ('\x00', '\x00'::bytea)) a(kind, aad);
SELECT a.kind, regress_adv_open('env_decrypt_text', e.c, a.aad) AS outcome
  FROM (SELECT env_encrypt('adv-c1', 'secrets', 'no aad') AS c) e,
       (VALUES ('NULL', NULL), ('empty', ''::bytea), ('\x00', '\x00'::bytea)) a(kind, aad);

-- Moved between purposes, versions and tenants: a value relabelled with the
-- key id of another data key is opened with that key, and fails
-- authentication, because the key differs and the tenant and purpose of the
-- key are bound into the associated data.
CREATE TABLE regress_adv_keys (name text PRIMARY KEY, c bytea);
INSERT INTO regress_adv_keys VALUES
	('c1/secrets v1', env_encrypt('adv-c1', 'secrets', 'c1 secret')),
	('c1/files v1', env_encrypt('adv-c1', 'files', 'c1 file')),
	('c2/secrets v1', env_encrypt('adv-c2', 'secrets', 'c2 secret'));
SELECT envault.rotate_data_key('adv-c1', 'secrets') AS rotated_to;
INSERT INTO regress_adv_keys VALUES
	('c1/secrets v2', env_encrypt('adv-c1', 'secrets', 'c1 secret, v2'));
SELECT a.name AS value, b.name AS relabelled_as,
       regress_adv_open('env_decrypt_text', regress_adv_relabel(a.c, b.c), NULL) AS outcome
  FROM regress_adv_keys a, regress_adv_keys b
 ORDER BY 1, 2;

-- The same as an application role, the current tenant being adv-c1: a value
-- of another tenant is refused before its key is used, and relabelled with
-- one of adv-c1's key ids it fails authentication.  Every single-byte
-- change gives the application the same outcomes as an administrator.
CREATE ROLE regress_adv_app LOGIN;
GRANT envault_user TO regress_adv_app;
SELECT envault.issue_token('adv-c1', 'adversarial ciphertext') AS c1_token \gset
GRANT SELECT ON regress_adv_ct, regress_adv_keys TO regress_adv_app;
SET ROLE regress_adv_app;
SELECT envault.authenticate(:'c1_token', true);
SELECT env_decrypt_text(c) FROM regress_adv_keys WHERE name = 'c2/secrets v1';
SELECT env_reencrypt(c) FROM regress_adv_keys WHERE name = 'c2/secrets v1';
SELECT env_is_current(c) FROM regress_adv_keys WHERE name = 'c2/secrets v1';
SELECT env_decrypt_text(regress_adv_relabel(a.c, b.c))
  FROM regress_adv_keys a, regress_adv_keys b
 WHERE a.name = 'c2/secrets v1' AND b.name = 'c1/secrets v2';
SELECT a.name AS value, b.name AS relabelled_as,
       regress_adv_open('env_decrypt_text', regress_adv_relabel(a.c, b.c), NULL) AS outcome
  FROM regress_adv_keys a, regress_adv_keys b
 ORDER BY 1, 2;
SELECT regress_adv_region(i, octet_length(x.c)) AS region,
       regress_adv_open('env_decrypt', set_byte(x.c, i, v), x.aad) AS outcome,
       count(*) AS attempts
  FROM regress_adv_ct x,
       generate_series(0, octet_length(x.c) - 1) i,
       generate_series(0, 255) v
 WHERE x.name = 'short' AND v <> get_byte(x.c, i)
 GROUP BY 1, 2
 ORDER BY min(i), 2;
SELECT envault.reset_tenant();
RESET ROLE;

-- Whatever the state of another tenant's key, the application learns only
-- that the value is not its tenant's: not the other tenant's name, nor the
-- purpose, version or state of its key, and no key of that tenant is
-- loaded for it (a customer-managed key would be fetched for it).
SELECT envault.rotate_data_key('adv-c2', 'secrets') AS rotated_to;
CREATE TABLE regress_adv_c2v2 AS SELECT env_encrypt('adv-c2', 'secrets', 'c2 secret, v2') AS c;
GRANT SELECT ON regress_adv_c2v2 TO regress_adv_app;
SELECT envault.retire_data_key('adv-c2', 'secrets', 1);
SET ROLE regress_adv_app;
SELECT envault.authenticate(:'c1_token', true);
SELECT env_decrypt_text(c) FROM regress_adv_keys WHERE name = 'c2/secrets v1';
SELECT env_is_current(c) FROM regress_adv_keys WHERE name = 'c2/secrets v1';
RESET ROLE;
SELECT envault.destroy_data_key('adv-c2', 'secrets', 1);
SET ROLE regress_adv_app;
SELECT envault.authenticate(:'c1_token', true);
SELECT env_decrypt_text(c) FROM regress_adv_keys WHERE name = 'c2/secrets v1';
RESET ROLE;
SELECT envault.revoke_tenant('adv-c2');
SET ROLE regress_adv_app;
SELECT envault.authenticate(:'c1_token', true);
SELECT env_reencrypt(c) FROM regress_adv_keys WHERE name = 'c2/secrets v1';
SELECT env_decrypt_text(env_encrypt('adv-c2', 'secrets', 'x'));
RESET ROLE;
SELECT envault.unrevoke_tenant('adv-c2');
-- nothing cached now (a change of state empties the key cache): with
-- adv-c2's wrapped tenant key damaged, the application is refused before
-- that key is unwrapped
BEGIN;
UPDATE envault.tenants SET wrapped_key = set_byte(wrapped_key, 40, get_byte(wrapped_key, 40) # 1)
 WHERE tenant = 'adv-c2';
SET LOCAL ROLE regress_adv_app;
SELECT envault.authenticate(:'c1_token');
SELECT env_decrypt_text(c) FROM regress_adv_c2v2;
ROLLBACK;
-- an administrator is told
SELECT env_decrypt_text(c) FROM regress_adv_keys WHERE name = 'c2/secrets v1';
SELECT env_decrypt_text(c) FROM regress_adv_c2v2;

-- Large values stored out of line and uncompressed are read in slices of
-- 64 KiB straight from their TOAST chunks (from 256 KiB on; results from
-- 32 MiB on are faulted in at once: src/encrypt.c).
-- Lengths around both thresholds and slice boundaries, under STORAGE
-- EXTERNAL (out of line, never compressed: each row shows its stored size
-- equal to its length).
CREATE TABLE regress_adv_big (len int PRIMARY KEY, p bytea, c bytea, aad bytea);
ALTER TABLE regress_adv_big ALTER p SET STORAGE EXTERNAL, ALTER c SET STORAGE EXTERNAL;
INSERT INTO regress_adv_big (len, p, aad)
SELECT len, substr(convert_to(repeat(md5(len::text), len / 32 + 1), 'UTF8'), 1, len),
       CASE WHEN len % 2 = 0 THEN convert_to('row:' || len, 'UTF8') END
  FROM unnest(ARRAY[262091, 262092, 262143, 262144, 262145, 327680, 327681,
                    458795, 1048576, 33554433]) AS len;
-- encrypted from the stored plaintext (itself read in slices when long enough)
UPDATE regress_adv_big SET c = env_encrypt('adv-c1', 'secrets', p, aad);
SELECT len, octet_length(c) - len AS overhead,
       pg_column_size(p) = len AS p_uncompressed,
       pg_column_size(c) = octet_length(c) AS c_uncompressed,
       octet_length(c) >= 262144 AS c_sliced
  FROM regress_adv_big ORDER BY len;
-- every value comes back whole: decrypted from the stored ciphertext,
-- re-encrypted unchanged (current), and as text
SELECT len, env_decrypt(c, aad) = p AS decrypts,
       env_reencrypt(c, aad) = c AS current_unchanged,
       md5(env_decrypt_text(c, aad)) = md5(convert_from(p, 'UTF8')) AS as_text
  FROM regress_adv_big ORDER BY len;
-- the wrong associated data, or none, fails authentication
SELECT len, regress_adv_open('env_decrypt', c, CASE WHEN aad IS NULL THEN 'x'::bytea END) AS outcome
  FROM regress_adv_big ORDER BY len;

-- One changed byte of a stored large ciphertext, in each part of it and at
-- the slice boundaries, fails like a short one: a changed key id names no
-- data key (42704), anything else fails authentication (22V01).  The
-- changed copies are stored out of line too, and opened from the table.
CREATE TABLE regress_adv_big_t (pos int PRIMARY KEY, c bytea, aad bytea);
ALTER TABLE regress_adv_big_t ALTER c SET STORAGE EXTERNAL;
INSERT INTO regress_adv_big_t
SELECT pos, set_byte(b.c, pos, get_byte(b.c, pos) # 1), b.aad
  FROM regress_adv_big b,
       unnest(ARRAY[0, 3, 5, 20, 36, 37, 36 + 65535, 36 + 65536, 36 + 4 * 65536,
                    1048576 + 35, 1048576 + 36, 1048576 + 51]) AS pos
 WHERE b.len = 1048576;
CREATE FUNCTION regress_adv_open_stored(want int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v text;
BEGIN
	SELECT md5(env_decrypt(t.c, t.aad)) INTO v FROM regress_adv_big_t t WHERE t.pos = want;
	RETURN 'returned ' || coalesce(quote_literal(v), 'NULL');
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;
SELECT pos, regress_adv_region(pos, 1048576 + 52) AS region,
       pg_column_size(c) = octet_length(c) AS uncompressed,
       regress_adv_open_stored(pos) AS outcome
  FROM regress_adv_big_t ORDER BY pos;
-- a truncated large ciphertext (its tag cut off) fails authentication too
UPDATE regress_adv_big_t SET c = substr(c, 1, octet_length(c) - 16) WHERE pos = 37;
SELECT octet_length(c), regress_adv_open_stored(pos) AS outcome
  FROM regress_adv_big_t WHERE pos = 37;
DROP TABLE regress_adv_big, regress_adv_big_t;
DROP FUNCTION regress_adv_open_stored(int);

DROP TABLE regress_adv_ct, regress_adv_pair, regress_adv_rows, regress_adv_keys, regress_adv_c2v2;
DROP FUNCTION regress_adv_open(text, bytea, bytea), regress_adv_region(int, int),
	regress_adv_relabel(bytea, bytea);
DROP ROLE regress_adv_app;
