-- bench/values.sql: large values (documents, attachments, big JSON).
--
-- env_encrypt and env_decrypt of values of 64 B, 4 KiB, 64 KiB, 1 MiB and
-- 16 MiB against md5() of the same plaintexts, which reads (detoasts) each
-- value once and hashes it: the floor of any function that looks at every
-- byte of a stored value.  Every size but 64 B has the same number of bytes
-- in all (:value_bytes), so the ratio of two sizes' times is the ratio of
-- their costs per byte: flat means close to 1.  64-byte values, where the
-- cost per row dominates, have a sixteenth of that.
--
-- Plaintexts and ciphertexts are stored EXTERNAL (out of line, never
-- compressed), as an application storing encrypted documents would: a
-- ciphertext does not compress, and the plaintext column is what it would
-- encrypt from.  Values of 64 B stay in the row.
--
-- psql variables (set by bench/run.sh): value_bytes, reps.

\echo '-- topic values: preparing' :value_bytes 'bytes of values per size'

DO $$
BEGIN
	PERFORM envault.create_tenant('bench_values');
END
$$;

CREATE TABLE bench.value_sizes (
	label		text PRIMARY KEY,
	size		integer NOT NULL,
	nvalues		integer NOT NULL
);
INSERT INTO bench.value_sizes
SELECT label, size, greatest(1, (CASE WHEN size = 64 THEN :value_bytes / 16
									  ELSE :value_bytes END) / size)
FROM (VALUES ('64 B', 64), ('4 KiB', 4096), ('64 KiB', 65536),
			 ('1 MiB', 1048576), ('16 MiB', 16777216)) v(label, size);

-- Distinct plaintexts, each of exactly its size (md5 hex of the row and
-- a counter, repeated), and their ciphertexts made beforehand.
CREATE TABLE bench.values_data (
	label		text NOT NULL,
	id			integer NOT NULL,
	v			bytea NOT NULL,
	ct			bytea
);
ALTER TABLE bench.values_data ALTER v SET STORAGE EXTERNAL,
	ALTER ct SET STORAGE EXTERNAL;
INSERT INTO bench.values_data (label, id, v)
SELECT s.label, i,
	   substr(convert_to(repeat(md5(s.label || i), s.size / 32 + 1), 'UTF8'), 1, s.size)
FROM bench.value_sizes s, generate_series(1, s.nvalues) i;
UPDATE bench.values_data SET ct = envault.env_encrypt('bench_values', 'documents', v);
CREATE INDEX ON bench.values_data (label);
VACUUM (FREEZE, ANALYZE) bench.values_data;
CHECKPOINT;

-- Sanity, untimed: sizes, storage as intended (out of line values: their
-- stored size is their length, nothing compressed), and every value
-- decrypts.
DO $$
DECLARE
	bad		bigint;
BEGIN
	SELECT count(*) INTO bad FROM bench.values_data d JOIN bench.value_sizes s USING (label)
	WHERE octet_length(d.v) <> s.size OR octet_length(d.ct) <> s.size + 52
	   OR (s.size > 2048 AND (pg_column_size(d.v) <> s.size
							  OR pg_column_size(d.ct) <> s.size + 52))
	   OR envault.env_decrypt(d.ct) <> d.v;
	IF bad <> 0 THEN
		RAISE EXCEPTION 'bench.values_data: % values are not as intended', bad;
	END IF;
END
$$;

INSERT INTO bench.facts (fact, value)
SELECT 'values: ' || label, nvalues || ' values of ' || size || ' bytes ('
	   || pg_size_pretty(nvalues::bigint * size) || '), plaintext and ciphertext STORAGE EXTERNAL'
FROM bench.value_sizes ORDER BY size;

SELECT set_config('bench.values_reps', :'reps', false) \g /dev/null
DO $$
DECLARE
	s		record;
	reps	integer := current_setting('bench.values_reps')::integer;
BEGIN
	FOR s IN SELECT * FROM bench.value_sizes ORDER BY size LOOP
		CALL bench.add_case('values', 'md5, ' || s.label, NULL,
			format($q$SELECT count(md5(v)) FROM bench.values_data WHERE label = %L$q$, s.label),
			s.nvalues, reps);
		CALL bench.add_case('values', 'env_encrypt, ' || s.label, 'md5, ' || s.label,
			format($q$SELECT count(envault.env_encrypt('bench_values', 'documents', v))
	FROM bench.values_data WHERE label = %L$q$, s.label),
			s.nvalues, reps);
		CALL bench.add_case('values', 'env_decrypt, ' || s.label, 'md5, ' || s.label,
			format($q$SELECT count(envault.env_decrypt(ct)) FROM bench.values_data WHERE label = %L$q$,
				   s.label),
			s.nvalues, reps);
		CALL bench.add_ratio('env_encrypt / md5, ' || s.label, 'env_encrypt, ' || s.label,
			'md5, ' || s.label, NULL, CASE WHEN s.size = 1048576 THEN 1.2 END);
		CALL bench.add_ratio('env_decrypt / md5, ' || s.label, 'env_decrypt, ' || s.label,
			'md5, ' || s.label, NULL, CASE WHEN s.size = 1048576 THEN 1.2 END);
	END LOOP;
END
$$;

-- Cost per byte against 4 KiB values (same bytes in all: a time ratio).
CALL bench.add_ratio('env_encrypt per byte, 64 KiB / 4 KiB', 'env_encrypt, 64 KiB', 'env_encrypt, 4 KiB');
CALL bench.add_ratio('env_encrypt per byte, 1 MiB / 4 KiB', 'env_encrypt, 1 MiB', 'env_encrypt, 4 KiB');
CALL bench.add_ratio('env_encrypt per byte, 16 MiB / 4 KiB', 'env_encrypt, 16 MiB', 'env_encrypt, 4 KiB');
CALL bench.add_ratio('env_decrypt per byte, 64 KiB / 4 KiB', 'env_decrypt, 64 KiB', 'env_decrypt, 4 KiB');
CALL bench.add_ratio('env_decrypt per byte, 1 MiB / 4 KiB', 'env_decrypt, 1 MiB', 'env_decrypt, 4 KiB');
CALL bench.add_ratio('env_decrypt per byte, 16 MiB / 4 KiB', 'env_decrypt, 16 MiB', 'env_decrypt, 4 KiB');

\echo '-- topic values: running (progress on stderr)'
CALL bench.run('values');

DROP TABLE bench.values_data, bench.value_sizes;
