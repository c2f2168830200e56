-- adversarial_values: the values an unlucky user passes: NULL in every
-- argument of every function, empty strings, values of 0 bytes, names at
-- and just past their limits, bytes that are not UTF-8 through
-- env_decrypt_text, values of hundreds of megabytes, and plaintexts and
-- associated data at and past the largest size PostgreSQL can hold.
-- Every one gets a value or a clear error with its SQLSTATE; none crashes.
SET search_path = public, envault;
\set SHOW_CONTEXT never
SELECT envault.create_tenant('adv-v1');
CREATE TABLE regress_adv_tok AS
SELECT envault.issue_token('adv-v1', 'adversarial values') AS token;

-- Runs stmt and reports what its first column returned (quoted; NULL for
-- NULL), or the error's SQLSTATE, message, detail and hint.
CREATE FUNCTION regress_adv_try(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	r text;
	st text;
	msg text;
	det text;
	hnt text;
BEGIN
	IF stmt ~* '^CALL ' THEN
		EXECUTE stmt;
		RETURN 'done';
	END IF;
	EXECUTE stmt INTO r;
	RETURN 'returned ' || quote_nullable(r);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	RETURN st || ': ' || msg || coalesce(' DETAIL: ' || nullif(det, ''), '')
		|| coalesce(' HINT: ' || nullif(hnt, ''), '');
END
$$;
-- Decrypts c with aad: 'returned' and the length of the plaintext, or the
-- SQLSTATE of the error.
CREATE FUNCTION regress_adv_open(c bytea, aad bytea) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	RETURN 'returned ' || octet_length(envault.env_decrypt(c, aad)) || ' bytes';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;
CREATE TABLE regress_adv_one AS
SELECT env_encrypt('adv-v1', 'secrets', 'one', 'aad') AS c,
       env_encrypt('adv-v1', 'secrets', 'no aad') AS c_noaad;

-- NULL in each argument of each function.  NULL plaintexts, ciphertexts and
-- values give NULL (whatever else is NULL); a NULL aad is the empty aad; a
-- NULL tenant, purpose, label, version or token is an error.
SELECT stmt, regress_adv_try(stmt) AS outcome
  FROM (VALUES
    ('SELECT envault.env_encrypt(NULL, ''secrets'', ''x'') IS NOT NULL'),
    ('SELECT envault.env_encrypt(''adv-v1'', NULL, ''x'') IS NOT NULL'),
    ('SELECT envault.env_encrypt(''adv-v1'', ''secrets'', NULL::text)'),
    ('SELECT envault.env_encrypt(''adv-v1'', ''secrets'', NULL::bytea)'),
    ('SELECT envault.env_encrypt(NULL, NULL, NULL::text)'),
    ('SELECT envault.env_decrypt_text(envault.env_encrypt(''adv-v1'', ''secrets'', ''x'', NULL), NULL)'),
    ('SELECT envault.env_decrypt(NULL)'),
    ('SELECT envault.env_decrypt(NULL, ''aad'')'),
    ('SELECT envault.env_decrypt(c, NULL) FROM regress_adv_one'),
    ('SELECT envault.env_decrypt(c_noaad, NULL) FROM regress_adv_one'),
    ('SELECT envault.env_decrypt_text(NULL)'),
    ('SELECT envault.env_decrypt_text(c, NULL) FROM regress_adv_one'),
    ('SELECT envault.env_decrypt_text(c_noaad, NULL) FROM regress_adv_one'),
    ('SELECT envault.env_reencrypt(NULL)'),
    ('SELECT envault.env_reencrypt(c, NULL) FROM regress_adv_one'),
    ('SELECT envault.env_reencrypt(c_noaad, NULL) = c_noaad FROM regress_adv_one'),
    ('SELECT envault.env_is_current(NULL)'),
    ('SELECT envault.blind_index(NULL, ''email'', ''x'')'),
    ('SELECT envault.blind_index(''adv-v1'', NULL, ''x'')'),
    ('SELECT envault.blind_index(''adv-v1'', ''email'', NULL)'),
    ('SELECT envault.pepper_hmac(NULL)'),
    ('SELECT envault.authenticate(NULL)'),
    ('SELECT envault.authenticate(NULL, true)'),
    ('SELECT envault.authenticate(token, NULL) FROM regress_adv_tok'),
    ('SELECT envault.verify_token(NULL)'),
    ('SELECT envault.set_tenant(NULL)'),
    ('SELECT envault.current_tenant()'),
    ('SELECT envault.set_tenant(''adv-v1'', NULL)'),
    ('SELECT envault.reset_tenant()'),
    ('SELECT envault.issue_token(NULL, ''label'')'),
    ('SELECT envault.issue_token(''adv-v1'', NULL)'),
    ('SELECT envault.issue_token(''adv-v1'', ''label'', NULL) IS NOT NULL'),
    ('SELECT envault.revoke_token(NULL)'),
    ('SELECT envault.revoke_tenant_tokens(NULL)'),
    ('SELECT envault.create_tenant(NULL)'),
    ('SELECT envault.create_data_key(NULL, ''secrets'')'),
    ('SELECT envault.create_data_key(''adv-v1'', NULL)'),
    ('SELECT envault.rotate_data_key(NULL, ''secrets'')'),
    ('SELECT envault.rotate_data_key(''adv-v1'', NULL)'),
    ('SELECT envault.rotate_tenant_key(NULL)'),
    ('SELECT envault.retire_data_key(NULL, ''secrets'', 1)'),
    ('SELECT envault.retire_data_key(''adv-v1'', NULL, 1)'),
    ('SELECT envault.retire_data_key(''adv-v1'', ''secrets'', NULL)'),
    ('SELECT envault.restore_data_key(NULL, ''secrets'', 1)'),
    ('SELECT envault.restore_data_key(''adv-v1'', NULL, 1)'),
    ('SELECT envault.restore_data_key(''adv-v1'', ''secrets'', NULL)'),
    ('SELECT envault.destroy_data_key(NULL, ''secrets'', 1)'),
    ('SELECT envault.destroy_data_key(''adv-v1'', NULL, 1)'),
    ('SELECT envault.destroy_data_key(''adv-v1'', ''secrets'', NULL)'),
    ('SELECT envault.destroy_tenant(NULL)'),
    ('SELECT envault.revoke_tenant(NULL)'),
    ('SELECT envault.restore_tenant(NULL)'),
    ('SELECT envault.use_customer_key(NULL)'),
    ('SELECT envault.use_master_key(NULL)'),
    ('SELECT envault.rewrap_tenant_keys(NULL)'),
    ('SELECT envault.isolate_table(NULL, ''tenant'')'),
    ('SELECT envault.isolate_table(''regress_adv_one'', NULL)'),
    ('CALL envault.reencrypt_column(NULL, ''c'')'),
    ('CALL envault.reencrypt_column(''regress_adv_one'', NULL)'),
    ('CALL envault.reencrypt_column(''regress_adv_one'', ''c'', NULL, NULL)'),
    ('CALL envault.rotate_master_key(NULL)')) s(stmt);
-- none of that changed the tenant's keys or revoked its tokens
SELECT (SELECT count(*) FROM envault.data_keys WHERE tenant = 'adv-v1') AS data_keys,
       (SELECT count(*) FROM envault.tokens k WHERE tenant = 'adv-v1' AND NOT EXISTS (SELECT FROM envault.token_revocations r WHERE r.token_id = k.token_id)) AS live_tokens,
       (SELECT state FROM envault.tenants WHERE tenant = 'adv-v1') AS state;

-- Empty strings and values of 0 bytes.  An empty plaintext is a value (52
-- bytes of ciphertext) that decrypts to an empty value, never to NULL; an
-- empty ciphertext is not a ciphertext; an empty tenant or purpose is
-- invalid; an empty aad is no aad.
SELECT stmt, regress_adv_try(stmt) AS outcome
  FROM (VALUES
    ('SELECT octet_length(envault.env_encrypt(''adv-v1'', ''secrets'', ''''))'),
    ('SELECT octet_length(envault.env_encrypt(''adv-v1'', ''secrets'', ''''::bytea))'),
    ('SELECT envault.env_decrypt_text(envault.env_encrypt(''adv-v1'', ''secrets'', ''''))'),
    ('SELECT envault.env_decrypt(envault.env_encrypt(''adv-v1'', ''secrets'', ''''::bytea))'),
    ('SELECT envault.env_decrypt_text(envault.env_encrypt(''adv-v1'', ''secrets'', '''', ''''::bytea), NULL)'),
    ('SELECT envault.env_decrypt_text(envault.env_encrypt(''adv-v1'', ''secrets'', ''x'', ''''::bytea))'),
    ('SELECT envault.env_decrypt(''''::bytea)'),
    ('SELECT envault.env_decrypt_text(''''::bytea)'),
    ('SELECT envault.env_reencrypt(''''::bytea)'),
    ('SELECT envault.env_is_current(''''::bytea)'),
    ('SELECT envault.env_encrypt('''', ''secrets'', ''x'')'),
    ('SELECT envault.env_encrypt(''adv-v1'', '''', ''x'')'),
    ('SELECT envault.blind_index('''', ''email'', ''x'')'),
    ('SELECT envault.blind_index(''adv-v1'', '''', ''x'')'),
    ('SELECT octet_length(envault.blind_index(''adv-v1'', ''email'', ''''))'),
    ('SELECT envault.blind_index(''adv-v1'', ''email'', '''') = envault.blind_index(''adv-v1'', ''email'', '' '')'),
    ('SELECT octet_length(envault.pepper_hmac(''''::bytea))'),
    ('SELECT envault.authenticate('''')'),
    ('SELECT envault.verify_token('''')'),
    ('SELECT envault.set_tenant('''')'),
    ('SELECT envault.create_tenant('''')'),
    ('SELECT envault.issue_token('''', ''label'')'),
    ('SELECT envault.issue_token(''adv-v1'', '''') IS NOT NULL'),
    ('SELECT envault.revoke_token('''')'),
    ('SELECT envault.revoke_tenant_tokens('''')'),
    ('SELECT envault.rotate_tenant_key('''')'),
    ('SELECT envault.rotate_data_key(''adv-v1'', '''')'),
    ('SELECT envault.retire_data_key('''', '''', 1)'),
    ('SELECT envault.destroy_tenant('''')'),
    ('SELECT envault.revoke_tenant('''')')) s(stmt);

-- Plaintexts of every length from 0 to 64 bytes, cut from a string of all
-- 256 byte values, round-trip exactly, each ciphertext 52 bytes longer
SELECT count(*) FILTER (WHERE env_decrypt(c) = p) AS round_trips,
       count(*) FILTER (WHERE octet_length(c) = octet_length(p) + 52) AS right_length,
       count(*) AS plaintexts
  FROM (SELECT p, env_encrypt('adv-v1', 'secrets', p) AS c
          FROM (SELECT n, substr(decode(string_agg(lpad(to_hex(b), 2, '0'), '' ORDER BY b), 'hex'),
                                 1 + n * 3, n) AS p
                  FROM generate_series(0, 255) b, generate_series(0, 64) n
                 GROUP BY n) x) y;

-- Names at and just past their limits.  A tenant name is 1 to 255 bytes of
-- anything but control characters, quotes and backslashes included; a
-- purpose is 1 to 63 characters of a-z, 0-9, "_", "-", ".", starting with a
-- letter or digit; a blind-index purpose at most 57.
SELECT stmt, regress_adv_try(stmt) AS outcome
  FROM (VALUES
    ('SELECT envault.create_tenant(repeat(''東'', 85))'),
    ('SELECT envault.env_decrypt_text(envault.env_encrypt(repeat(''東'', 85), ''secrets'', ''85 characters, 255 bytes''))'),
    ('SELECT envault.create_tenant(repeat(''東'', 86))'),
    ('SELECT envault.create_tenant(repeat(''t'', 254) || ''é'')'),
    ('SELECT envault.create_tenant(E''adv quote '''' and \\ backslash'')'),
    ('SELECT envault.env_decrypt_text(envault.env_encrypt(E''adv quote '''' and \\ backslash'', ''secrets'', ''quoted''))'),
    ('SELECT envault.retire_data_key(E''adv quote '''' and \\ backslash'', ''secrets'', 9)'),
    ('SELECT envault.env_encrypt(''adv-nobody"; DROP TABLE x; --'', ''secrets'', ''x'')'),
    ('SELECT envault.create_tenant(E''adv\ttab'')'),
    ('SELECT envault.create_tenant(E''adv\x7fdel'')'),
    ('SELECT envault.create_tenant(E''adv\x1fus'')'),
    ('SELECT envault.env_decrypt_text(envault.env_encrypt(''adv-v1'', repeat(''p'', 63), ''63''))'),
    ('SELECT envault.env_encrypt(''adv-v1'', repeat(''p'', 64), ''64'')'),
    ('SELECT envault.env_decrypt_text(envault.env_encrypt(''adv-v1'', ''9.a_b-c'', ''digits and punctuation''))'),
    ('SELECT envault.env_encrypt(''adv-v1'', ''-leading'', ''x'')'),
    ('SELECT envault.env_encrypt(''adv-v1'', ''_bidx.email'', ''x'')'),
    ('SELECT envault.env_encrypt(''adv-v1'', ''Secrets'', ''x'')'),
    ('SELECT envault.env_encrypt(''adv-v1'', ''sécrets'', ''x'')'),
    ('SELECT envault.env_encrypt(''adv-v1'', ''with space'', ''x'')'),
    ('SELECT octet_length(envault.blind_index(''adv-v1'', repeat(''b'', 57), ''x''))'),
    ('SELECT envault.blind_index(''adv-v1'', repeat(''b'', 58), ''x'')')) s(stmt);

-- Bytes that are not UTF-8, the database encoding, through env_decrypt_text:
-- always SQLSTATE 22021 with the same message and hint, which never show the
-- bytes; env_decrypt returns them unchanged.  The edges of UTF-8 that are
-- valid come back as text.
SELECT b.kind, regress_adv_try(format('SELECT envault.env_decrypt_text(%L::bytea)', c)) AS decrypt_text,
       env_decrypt(c) = b.bytes AS decrypt_same
  FROM (VALUES
    ('lone 0xff', '\xff'::bytea),
    ('continuation byte without a lead', '\x80'),
    ('lead byte at the end', '\x61c3'),
    ('lead byte, then no continuation', '\xc328'),
    ('overlong "/" (2 bytes)', '\xc0af'),
    ('overlong NUL (3 bytes)', '\xe08080'),
    ('UTF-16 surrogate U+D800', '\xeda080'),
    ('beyond U+10FFFF', '\xf4908080'),
    ('5-byte form', '\xf888808080'),
    ('NUL byte', '\x00'),
    ('NUL inside text', '\x610062'),
    ('Latin-1 "café"', '\x636166e9'),
    ('valid text, then 0xff', convert_to(repeat('valid ', 100000), 'UTF8') || '\xff'::bytea),
    ('0xff, then valid text', '\xff'::bytea || convert_to(repeat('valid ', 100000), 'UTF8'))) b(kind, bytes),
       LATERAL (SELECT env_encrypt('adv-v1', 'files', b.bytes) AS c) e;
SELECT b.kind, env_decrypt_text(env_encrypt('adv-v1', 'files', b.bytes)) = convert_from(b.bytes, 'UTF8') AS decrypt_text_same
  FROM (VALUES
    ('U+10FFFF, the last code point', '\xf48fbfbf'::bytea),
    ('U+FEFF byte order mark', '\xefbbbf'),
    ('U+1F600 (4 bytes)', '\xf09f9880'),
    ('U+0080, the first 2-byte code point', '\xc280'),
    ('empty', '')) b(kind, bytes);
-- the whole error
SELECT env_decrypt_text(env_encrypt('adv-v1', 'files', '\x736563726574ff'::bytea));

-- Hundreds of megabytes: a 200 MiB text plaintext, stored in a (TOASTed)
-- temporary table, encrypted from it into it with aad, decrypted from it;
-- then the same 200 MiB as aad; then an invalid byte at its very end.  This
-- needs about 1 GB of memory for a moment and no setting.
CREATE TEMP TABLE regress_adv_big (id int PRIMARY KEY, p text, c bytea);
INSERT INTO regress_adv_big (id, p)
SELECT 1, repeat(encode(string_agg(sha256(int4send(g)), '' ORDER BY g), 'hex'), 102400)
  FROM generate_series(1, 32) g;
UPDATE regress_adv_big SET c = env_encrypt('adv-v1', 'big', p, int4send(id));
SELECT octet_length(p) AS plaintext_len, octet_length(c) AS ciphertext_len,
       pg_column_size(p) < octet_length(p) AS plaintext_compressed,
       env_decrypt_text(c, int4send(id)) = p AS same_text,
       env_decrypt(c, int4send(id)) = convert_to(p, 'UTF8') AS same_bytes
  FROM regress_adv_big;
SELECT regress_adv_try('SELECT envault.env_decrypt(c, int4send(2)) FROM regress_adv_big') AS other_row,
       regress_adv_try('SELECT envault.env_decrypt(set_byte(c, 100000000, get_byte(c, 100000000) # 1), int4send(1)) FROM regress_adv_big') AS one_byte_changed,
       regress_adv_try('SELECT envault.env_decrypt(substr(c, 1, octet_length(c) - 1), int4send(1)) FROM regress_adv_big') AS truncated;
SELECT env_decrypt_text(env_encrypt('adv-v1', 'big', 'small', convert_to(p, 'UTF8')),
                        convert_to(p, 'UTF8')) AS with_200_mib_aad
  FROM regress_adv_big;
SELECT regress_adv_try('SELECT envault.env_decrypt(envault.env_encrypt(''adv-v1'', ''big'', ''small'', convert_to(p, ''UTF8'')),'
                       ' convert_to(p || ''.'', ''UTF8'')) FROM regress_adv_big') AS aad_one_byte_longer;
SELECT env_decrypt_text(env_encrypt('adv-v1', 'big', convert_to(p, 'UTF8') || '\xff'::bytea))
  FROM regress_adv_big;
DROP TABLE regress_adv_big;

-- The largest plaintext: a ciphertext is at most 1073741819 bytes, the
-- largest value PostgreSQL holds (1 GB - 1 with its 4-byte header), so a
-- plaintext can be at most 52 bytes less, 1073741767 bytes.  That one
-- encrypts and decrypts back (all its bytes are "x": nothing is left after
-- trimming them); one byte more is refused with SQLSTATE 54000 before
-- anything is allocated for the ciphertext.  About 3 GB of memory for a
-- moment.
SELECT octet_length(c) AS ciphertext_len, octet_length(d) AS plaintext_len,
       ltrim(d, 'x'::bytea) = ''::bytea AS all_x
  FROM (SELECT c, env_decrypt(c) AS d
          FROM (SELECT env_encrypt('adv-v1', 'big', repeat(repeat('x', 413), 2599859)) AS c
                OFFSET 0) s
        OFFSET 0) t;
SELECT regress_adv_try('SELECT envault.env_encrypt(''adv-v1'', ''big'', repeat(repeat(''x'', 88), 12201611))') AS one_byte_more;

-- The largest associated data: any bytea, up to 1073741819 bytes, is
-- accepted, and must be given again to decrypt.  About 3 GB for a moment.
SELECT octet_length(a) AS aad_len, regress_adv_open(c, a) AS same_aad,
       regress_adv_open(c, NULL) AS no_aad
  FROM (SELECT a, env_encrypt('adv-v1', 'big', 'largest aad', a) AS c
          FROM (SELECT convert_to(repeat(repeat('x', 2969), 361651), 'UTF8') AS a OFFSET 0) s
        OFFSET 0) t;

DROP TABLE regress_adv_one, regress_adv_tok;
DROP FUNCTION regress_adv_try(text), regress_adv_open(bytea, bytea);
