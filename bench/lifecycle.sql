-- bench/lifecycle.sql: key rotation and re-encryption.
--
-- rotate_tenant_key for a tenant with :data_keys data keys (every one is
-- unwrapped under the old tenant key, wrapped under the new one and written
-- back with one UPDATE by key_id), against the same tenant operation with a
-- single data key (the fixed cost) and against the writes alone, without
-- cryptography, on copies of the tenant's envault.data_keys rows (same
-- indexes): one UPDATE by key_id per row from PL/pgSQL, as the rotation
-- does them, and one UPDATE statement for all rows.  Each copy is updated
-- as often as envault.data_keys (autovacuum is off: all three tables
-- accumulate the same dead row versions).  The rotation is called through
-- bench.rotate_tenant_key(), which also counts the data keys now wrapped
-- under the new tenant key version, so every timed call checks that all of
-- them were rewrapped (the count is one index scan, well under a
-- millisecond).
--
-- reencrypt_column over :large_rows rows, after rotate_data_key, against a
-- plain UPDATE t SET v = envault.env_reencrypt(v) on an identical copy, and
-- against UPDATE t SET v = v (the writes alone, no cryptography) on a
-- third.  reencrypt_column COMMITs after every batch, so it cannot run
-- inside bench.run(): all three are external cases, timed the same way by
-- bench.start()/bench.stop() around top-level statements (generated with
-- \gexec).  Each statement starts from the same state: right before it, its
-- table is loaded from one template table whose values are all under data
-- key version 1, frozen, analyzed, checkpointed and scanned once untimed;
-- right after it (and its untimed check), the table is truncated, so that
-- only one copy at a time takes shared buffers.  The order of the three
-- rotates from round to round.
--
-- psql variables (set by bench/run.sh): large_rows, data_keys, reps,
-- slow_reps.

\echo '-- topic lifecycle: preparing' :data_keys 'data keys,' :large_rows 'rows to re-encrypt'

-- rotate_tenant_key

DO $$
BEGIN
	PERFORM envault.create_tenant('lc_many');
	PERFORM envault.create_tenant('lc_one');
	PERFORM envault.create_data_key('lc_one', 'p1');
END
$$;
SELECT count(envault.create_data_key('lc_many', 'p' || g)) AS n
FROM generate_series(1, :data_keys) g \gset

-- Rotate, then count the tenant's data keys wrapped under the new version.
CREATE FUNCTION bench.rotate_tenant_key(t text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	v		integer := envault.rotate_tenant_key(t);
BEGIN
	RETURN (SELECT count(*) FROM envault.data_keys k
			WHERE k.tenant = t AND k.tenant_key_version = v);
END
$$;

-- The floors: the same rows, the same indexes, no cryptography.
CREATE TABLE bench.dk_rows (LIKE envault.data_keys INCLUDING ALL);
INSERT INTO bench.dk_rows SELECT * FROM envault.data_keys WHERE tenant = 'lc_many';
CREATE TABLE bench.dk_stmt (LIKE envault.data_keys INCLUDING ALL);
INSERT INTO bench.dk_stmt SELECT * FROM envault.data_keys WHERE tenant = 'lc_many';
VACUUM (ANALYZE) envault.data_keys, envault.tenants, bench.dk_rows, bench.dk_stmt;

-- One UPDATE by key_id per row (a cached plan, like the rotation's).
CREATE FUNCTION bench.update_keys_one_by_one(t text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	ids		bigint[];
	id		bigint;
BEGIN
	ids := ARRAY(SELECT k.key_id FROM bench.dk_rows k WHERE k.tenant = t);
	FOREACH id IN ARRAY ids LOOP
		UPDATE bench.dk_rows SET wrapped_key = wrapped_key,
			   tenant_key_version = tenant_key_version + 1
		WHERE key_id = id;
	END LOOP;
	RETURN cardinality(ids);
END
$$;

\set rotate_many 'rotate_tenant_key, ' :data_keys ' data keys'
\set update_rows 'UPDATE by key_id x ' :data_keys ', no crypto'
\set update_stmt 'one UPDATE of ' :data_keys ' rows, no crypto'
CALL bench.add_case('lifecycle', :'update_stmt', NULL,
	$q$WITH u AS (UPDATE bench.dk_stmt SET wrapped_key = wrapped_key,
		tenant_key_version = tenant_key_version + 1
		WHERE tenant = 'lc_many' RETURNING 1)
	SELECT count(*) FROM u$q$, :data_keys, :reps);
CALL bench.add_case('lifecycle', :'update_rows', :'update_stmt',
	$q$SELECT bench.update_keys_one_by_one('lc_many')$q$, :data_keys, :reps);
CALL bench.add_case('lifecycle', 'rotate_tenant_key, 1 data key', NULL,
	$q$SELECT bench.rotate_tenant_key('lc_one')$q$, 1, :reps);
CALL bench.add_case('lifecycle', :'rotate_many', :'update_rows',
	$q$SELECT bench.rotate_tenant_key('lc_many')$q$, :data_keys, :reps);

CALL bench.add_ratio('rotate_tenant_key / UPDATE by key_id, ' || :data_keys || ' keys',
					 :'rotate_many', :'update_rows');
CALL bench.add_ratio('rotate_tenant_key / one UPDATE, ' || :data_keys || ' keys',
					 :'rotate_many', :'update_stmt');
CALL bench.add_ratio('rotate_tenant_key, ' || :data_keys || ' keys / 1 key',
					 :'rotate_many', 'rotate_tenant_key, 1 data key');
CALL bench.add_limit('rotate_tenant_key, ' || :data_keys || ' data keys, per call',
					 :'rotate_many', 'ms', 1000);

\echo '-- topic lifecycle: running rotate_tenant_key (progress on stderr)'
CALL bench.run('lifecycle');

-- reencrypt_column

DO $$
BEGIN
	PERFORM envault.create_tenant('lc_data');
	PERFORM envault.create_data_key('lc_data', 'col');
END
$$;

CREATE TABLE bench.re_template (
	id			integer PRIMARY KEY,
	v			bytea NOT NULL
);
INSERT INTO bench.re_template
SELECT i, envault.env_encrypt('lc_data', 'col',
							  convert_to(encode(gen_random_bytes(48), 'base64'), 'UTF8'))
FROM generate_series(1, :large_rows) i;
-- From now on version 2 is active; every value of the template is under 1.
SELECT envault.rotate_data_key('lc_data', 'col') AS active_version \gset
CREATE TABLE bench.re_call (LIKE bench.re_template INCLUDING ALL);
CREATE TABLE bench.re_update (LIKE bench.re_template INCLUDING ALL);
CREATE TABLE bench.re_floor (LIKE bench.re_template INCLUDING ALL);
VACUUM (FREEZE, ANALYZE) bench.re_template;

-- The three statements, timed by bench.start/stop.  chk runs untimed
-- right after and must return the row count: every value of the table is
-- different from the template's, under the active version, and decrypts to
-- the template's value (for the floor: every value is still the template's).
CREATE TABLE bench.re_ops (
	k			integer NOT NULL,
	name		text NOT NULL,
	baseline	text,
	tbl			text NOT NULL,
	stmt		text NOT NULL,
	chk			text NOT NULL
);
INSERT INTO bench.re_ops VALUES
	(0, 'UPDATE SET v = v, no crypto', NULL, 'bench.re_floor',
	 $s$UPDATE bench.re_floor SET v = v$s$,
	 $s$SELECT count(*) FROM bench.re_floor f JOIN bench.re_template t USING (id)
		WHERE f.v = t.v$s$),
	(1, 'UPDATE SET v = env_reencrypt(v)', 'UPDATE SET v = v, no crypto',
	 'bench.re_update',
	 $s$UPDATE bench.re_update SET v = envault.env_reencrypt(v)$s$,
	 $s$SELECT count(*) FROM bench.re_update u JOIN bench.re_template t USING (id)
		WHERE u.v <> t.v AND envault.env_is_current(u.v)
		  AND envault.env_decrypt(u.v) = envault.env_decrypt(t.v)$s$),
	(2, 'reencrypt_column, batch_size 10000', 'UPDATE SET v = env_reencrypt(v)',
	 'bench.re_call',
	 $s$CALL envault.reencrypt_column('bench.re_call', 'v', batch_size => 10000)$s$,
	 $s$SELECT count(*) FROM bench.re_call c JOIN bench.re_template t USING (id)
		WHERE c.v <> t.v AND envault.env_is_current(c.v)
		  AND envault.env_decrypt(c.v) = envault.env_decrypt(t.v)$s$);

-- (CALL takes no subquery as an argument; \gexec runs the generated CALLs)
SELECT format('CALL bench.add_external_case(%L, %L, %L, %L, %s, %s)',
			  'lifecycle', name, baseline, stmt, :large_rows, :slow_reps)
FROM bench.re_ops ORDER BY k \gexec
CALL bench.add_ratio('reencrypt_column / UPDATE env_reencrypt',
					 'reencrypt_column, batch_size 10000',
					 'UPDATE SET v = env_reencrypt(v)', 'UPDATE SET v = v, no crypto', 2);
CALL bench.add_ratio('UPDATE env_reencrypt / UPDATE SET v = v',
					 'UPDATE SET v = env_reencrypt(v)', 'UPDATE SET v = v, no crypto');

INSERT INTO bench.facts (fact, value)
SELECT 'lifecycle: data keys', (SELECT count(*) FROM envault.data_keys
								 WHERE tenant = 'lc_many')
	   || ' of tenant lc_many, 1 of tenant lc_one'
UNION ALL
SELECT 'lifecycle: rows to re-encrypt', count(*) || ' (integer primary key, '
	   || min(octet_length(v)) || '-byte ciphertexts of 64-byte values), under data key version 1; version '
	   || :active_version || ' active'
FROM bench.re_template
UNION ALL
SELECT 'lifecycle: table size', pg_size_pretty(pg_table_size('bench.re_template'))
	   || ' + ' || pg_size_pretty(pg_indexes_size('bench.re_template'))
	   || ' primary key, per copy before the update';

\echo '-- topic lifecycle: running reencrypt_column (progress on stderr)'
-- Per round, the three statements in rotating order, each on a fresh copy.
SELECT s
FROM generate_series(1, :slow_reps) r,
	 bench.re_ops op,
	 unnest(ARRAY[
		format($f$DO $d$ BEGIN RAISE NOTICE 'lifecycle reencrypt round %s/%s: %s'; END $d$$f$,
			   r, :slow_reps, op.name),
		format('INSERT INTO %s SELECT * FROM bench.re_template ORDER BY id', op.tbl),
		format('VACUUM (FREEZE, ANALYZE) %s', op.tbl),
		'CHECKPOINT',
		-- warm: the table's pages and the key cache
		format($f$DO $d$ BEGIN PERFORM count(envault.env_is_current(v)) FROM %s; END $d$$f$,
			   op.tbl),
		'SET client_min_messages = warning',
		format('CALL bench.start(%L)', op.name),
		op.stmt,
		format('CALL bench.stop(%L, %s, %L)', op.name, r, op.chk),
		'SET client_min_messages = notice',
		format('TRUNCATE %s', op.tbl)]) WITH ORDINALITY AS a(s, i)
ORDER BY r, (op.k + r) % 3, i \gexec

DROP TABLE bench.re_template, bench.re_call, bench.re_update, bench.re_floor,
	bench.re_ops, bench.dk_rows, bench.dk_stmt;
