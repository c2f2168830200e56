-- bench/encrypt.sql: the data path, per-row encryption and decryption.
--
-- envault.env_encrypt / env_decrypt against pgcrypto's raw AES
-- (encrypt_iv / decrypt_iv, which do no key management, no authentication
-- and no randomness) and its OpenPGP functions (pgp_sym_encrypt /
-- pgp_sym_decrypt), with md5() as the floor of any SQL function call and a
-- plain count(v) as the floor of the scan itself.
--
-- psql variables (set by bench/run.sh): rows, reps, slow_reps.
--
-- Every value varies per row and every function gets a table column, so
-- nothing is constant-folded (pgcrypto's encrypt_iv and decrypt_iv are
-- IMMUTABLE: with constant arguments the planner would compute them once).
-- The AES key is a constant, as an application's key parameter would be;
-- the IV is a per-row column.

\echo '-- topic encrypt: preparing' :rows 'rows of 64-byte values'

DO $$
BEGIN
	PERFORM envault.create_tenant('bench');
	PERFORM envault.create_data_key('bench', 'bench');
END
$$;

-- The AES-256 key for pgcrypto, folded to a constant at plan time.
CREATE FUNCTION bench.aes_key() RETURNS bytea
IMMUTABLE LANGUAGE sql
RETURN '\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea;

-- One table for every case, so all cases share the same scan.
--   v       64 random bytes (64 base64 characters, as bytes)
--   v_text  the same 64 characters as text (pgp_sym_encrypt takes text)
--   iv      16 random bytes, the per-row IV for encrypt_iv
--   ct_*    the same values encrypted beforehand, for the decrypt cases
CREATE TABLE bench.data (
	id			integer NOT NULL,
	v			bytea NOT NULL,
	v_text		text NOT NULL,
	iv			bytea NOT NULL,
	ct_env		bytea NOT NULL,
	ct_env_aad	bytea NOT NULL,
	ct_iv		bytea NOT NULL,
	ct_pgp		bytea NOT NULL
);

INSERT INTO bench.data
WITH p AS MATERIALIZED (
	SELECT i AS id,
		   encode(gen_random_bytes(48), 'base64') AS v_text,
		   gen_random_bytes(16) AS iv
	FROM generate_series(1, :rows) i
)
SELECT id, convert_to(v_text, 'UTF8'), v_text, iv,
	   envault.env_encrypt('bench', 'bench', convert_to(v_text, 'UTF8')),
	   envault.env_encrypt('bench', 'bench', convert_to(v_text, 'UTF8'),
						   int4send(id)),
	   encrypt_iv(convert_to(v_text, 'UTF8'), bench.aes_key(), iv, 'aes-cbc'),
	   pgp_sym_encrypt(v_text, 'passphrase')
FROM p;

VACUUM (FREEZE, ANALYZE) bench.data;
-- Write the dirty buffers out now rather than in a checkpoint during timing.
CHECKPOINT;

-- Sanity, untimed: distinct 64-byte values, and every ciphertext opens to
-- its value (pgp only on a sample: it is slow).
DO $$
DECLARE
	n		bigint;
	bad		bigint;
BEGIN
	SELECT count(*), count(*) FILTER (WHERE octet_length(v) <> 64
									   OR convert_from(v, 'UTF8') <> v_text)
	INTO n, bad FROM bench.data;
	IF bad <> 0 OR n <> (SELECT count(DISTINCT v) FROM bench.data) THEN
		RAISE EXCEPTION 'bench.data: values are not distinct 64-byte values';
	END IF;
	SELECT count(*) INTO bad FROM bench.data
	WHERE envault.env_decrypt(ct_env) <> v
	   OR envault.env_decrypt(ct_env_aad, int4send(id)) <> v
	   OR envault.env_decrypt_text(ct_env) <> v_text
	   OR decrypt_iv(ct_iv, bench.aes_key(), iv, 'aes-cbc') <> v;
	IF bad <> 0 THEN
		RAISE EXCEPTION 'bench.data: % ciphertexts do not decrypt to their value', bad;
	END IF;
	SELECT count(*) INTO bad FROM bench.data
	WHERE id <= 1000 AND pgp_sym_decrypt(ct_pgp, 'passphrase') <> v_text;
	IF bad <> 0 THEN
		RAISE EXCEPTION 'bench.data: % pgp ciphertexts do not decrypt', bad;
	END IF;
END
$$;

INSERT INTO bench.facts (fact, value)
SELECT 'rows in bench.data', count(*)::text FROM bench.data
UNION ALL
SELECT 'value size (bytes)', min(octet_length(v)) || ' (ciphertext: envault '
	   || min(octet_length(ct_env)) || ', aes-cbc ' || min(octet_length(ct_iv))
	   || ', pgp ~' || round(avg(octet_length(ct_pgp))) || ')'
FROM bench.data
UNION ALL
SELECT 'bench.data size', pg_size_pretty(pg_table_size('bench.data'))
	   || ' (shared_buffers ' || current_setting('shared_buffers') || ')';

-- Cases.  Order matters only for display; rounds rotate the start.
CALL bench.add_case('encrypt', 'count(v), no function', NULL,
	$q$SELECT count(v) FROM bench.data$q$, :rows, :reps);
CALL bench.add_case('encrypt', 'md5(v)', 'count(v), no function',
	$q$SELECT count(md5(v)) FROM bench.data$q$, :rows, :reps);

CALL bench.add_case('encrypt', 'encrypt_iv aes-cbc', 'md5(v)',
	$q$SELECT count(encrypt_iv(v, bench.aes_key(), iv, 'aes-cbc')) FROM bench.data$q$,
	:rows, :reps);
CALL bench.add_case('encrypt', 'env_encrypt', 'encrypt_iv aes-cbc',
	$q$SELECT count(envault.env_encrypt('bench', 'bench', v)) FROM bench.data$q$,
	:rows, :reps);
CALL bench.add_case('encrypt', 'env_encrypt, aad', 'encrypt_iv aes-cbc',
	$q$SELECT count(envault.env_encrypt('bench', 'bench', v, int4send(id))) FROM bench.data$q$,
	:rows, :reps);
CALL bench.add_case('encrypt', 'pgp_sym_encrypt', 'md5(v)',
	$q$SELECT count(pgp_sym_encrypt(v_text, 'passphrase')) FROM bench.data$q$,
	:rows, :slow_reps, false);

CALL bench.add_case('encrypt', 'decrypt_iv aes-cbc', 'md5(v)',
	$q$SELECT count(decrypt_iv(ct_iv, bench.aes_key(), iv, 'aes-cbc')) FROM bench.data$q$,
	:rows, :reps);
CALL bench.add_case('encrypt', 'env_decrypt', 'decrypt_iv aes-cbc',
	$q$SELECT count(envault.env_decrypt(ct_env)) FROM bench.data$q$,
	:rows, :reps);
CALL bench.add_case('encrypt', 'env_decrypt, aad', 'decrypt_iv aes-cbc',
	$q$SELECT count(envault.env_decrypt(ct_env_aad, int4send(id))) FROM bench.data$q$,
	:rows, :reps);
CALL bench.add_case('encrypt', 'env_decrypt_text', 'decrypt_iv aes-cbc',
	$q$SELECT count(envault.env_decrypt_text(ct_env)) FROM bench.data$q$,
	:rows, :reps);
CALL bench.add_case('encrypt', 'pgp_sym_decrypt', 'md5(v)',
	$q$SELECT count(pgp_sym_decrypt(ct_pgp, 'passphrase')) FROM bench.data$q$,
	:rows, :slow_reps, false);

CALL bench.add_ratio('envault / encrypt_iv, encrypt', 'env_encrypt',
					 'encrypt_iv aes-cbc', 'count(v), no function', 1.3);
CALL bench.add_ratio('envault / decrypt_iv, decrypt', 'env_decrypt',
					 'decrypt_iv aes-cbc', 'count(v), no function', 1.3);
CALL bench.add_ratio('envault / pgp_sym_encrypt', 'env_encrypt',
					 'pgp_sym_encrypt', 'count(v), no function');
CALL bench.add_ratio('envault / pgp_sym_decrypt', 'env_decrypt',
					 'pgp_sym_decrypt', 'count(v), no function');
CALL bench.add_ratio('envault / md5, encrypt', 'env_encrypt',
					 'md5(v)', 'count(v), no function');
CALL bench.add_ratio('envault / md5, decrypt', 'env_decrypt',
					 'md5(v)', 'count(v), no function');

\echo '-- topic encrypt: running (progress on stderr)'
CALL bench.run('encrypt');

-- The timings are in bench.timings; free the shared buffers for later topics.
DROP TABLE bench.data;
