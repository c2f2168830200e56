-- adversarial_keys: the key tables altered by someone who can write to them
-- (a superuser, a hand-edited restore, a bad migration).  Every single-byte
-- change and every truncation of a wrapped tenant key and of a wrapped data
-- key, and every swap of wrapped keys or key metadata between rows, is
-- refused with SQLSTATE XX001 naming the row (a changed check value of the
-- master key with F0000, as a wrong master key): no key is ever unwrapped
-- from it, so nothing decrypts or encrypts under it.
SET search_path = public, envault;
\set SHOW_CONTEXT never
SELECT envault.create_tenant('adv-k1');
SELECT envault.create_tenant('adv-k2');
CREATE TABLE regress_adv_kct (name text PRIMARY KEY, c bytea);
INSERT INTO regress_adv_kct VALUES
	('k1/secrets v1', env_encrypt('adv-k1', 'secrets', 'k1 secret v1')),
	('k1/files v1', env_encrypt('adv-k1', 'files', 'k1 file v1')),
	('k2/secrets v1', env_encrypt('adv-k2', 'secrets', 'k2 secret v1'));
SELECT envault.rotate_data_key('adv-k1', 'secrets') AS rotated_to;
INSERT INTO regress_adv_kct VALUES
	('k1/secrets v2', env_encrypt('adv-k1', 'secrets', 'k1 secret v2'));
-- the key id of each value's data key, and the rows as they are now
CREATE TABLE regress_adv_kid AS
SELECT k.name, d.key_id, d.tenant, d.purpose, d.version
  FROM regress_adv_kct k
  JOIN envault.data_keys d
    ON d.key_id = ('x' || encode(substr(k.c, 5, 8), 'hex'))::bit(64)::bigint;
SELECT name, tenant, purpose, version FROM regress_adv_kid ORDER BY name;
CREATE TABLE regress_adv_saved_t AS SELECT * FROM envault.tenants;
CREATE TABLE regress_adv_saved_d AS SELECT * FROM envault.data_keys;

-- Runs the statement tamper (with $1 = w), then decrypts c, in a
-- subtransaction that is always rolled back: the key tables are restored,
-- and any key unwrapped inside it leaves the key cache with it, so every
-- attempt starts from the tables, not from the cache.  Reports the SQLSTATE
-- and message, or what was decrypted.
CREATE FUNCTION regress_adv_tampered(tamper text, w bytea, c bytea) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v text;
BEGIN
	EXECUTE tamper USING w;
	v := envault.env_decrypt_text(c);
	RAISE EXCEPTION USING ERRCODE = 'RG001', MESSAGE = 'returned ' || quote_literal(v);
EXCEPTION WHEN OTHERS THEN
	RETURN CASE WHEN SQLSTATE = 'RG001' THEN SQLERRM ELSE SQLSTATE || ': ' || SQLERRM END;
END
$$;
-- The same, reporting the error's detail
CREATE FUNCTION regress_adv_tampered_detail(tamper text, w bytea, c bytea) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v text;
	d text;
BEGIN
	EXECUTE tamper USING w;
	v := envault.env_decrypt_text(c);
	RAISE EXCEPTION USING ERRCODE = 'RG001', MESSAGE = 'returned ' || quote_literal(v);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
	RETURN d;
END
$$;
-- The field of a wrapped key (docs/format.md) that byte pos belongs to
CREATE FUNCTION regress_adv_wrap_region(pos int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN pos = 0 THEN '0: format'
				WHEN pos < 25 THEN '1-24: nonce'
				WHEN pos < 57 THEN '25-56: encrypted key'
				ELSE '57-72: tag' END
$$;

-- A new session: nothing cached, so every key below is unwrapped from the
-- tables (the functions above run every attempt in a subtransaction that
-- takes its keys with it).
\c
SET search_path = public, envault;
\set SHOW_CONTEXT never
\set t1 'UPDATE envault.tenants SET wrapped_key = $1 WHERE tenant = ''adv-k1'''
\set d1 'UPDATE envault.data_keys d SET wrapped_key = $1 FROM regress_adv_kid k WHERE d.key_id = k.key_id AND k.name = ''k1/secrets v1'''

-- Untouched, every value decrypts through the harness
SELECT name, regress_adv_tampered('SELECT $1', NULL, c) AS outcome
  FROM regress_adv_kct ORDER BY name;

-- Every byte of adv-k1's wrapped tenant key, changed to each of the 255
-- other values (73 * 255 attempts), and every truncation and extension
SELECT regress_adv_wrap_region(i) AS field,
       regress_adv_tampered(:'t1', set_byte(t.wrapped_key, i, v), k.c) AS outcome,
       count(*) AS attempts
  FROM regress_adv_saved_t t, regress_adv_kct k,
       generate_series(0, 72) i, generate_series(0, 255) v
 WHERE t.tenant = 'adv-k1' AND k.name = 'k1/secrets v1' AND v <> get_byte(t.wrapped_key, i)
 GROUP BY 1, 2 ORDER BY min(i);
SELECT w.kind, regress_adv_tampered(:'t1', w.variant, k.c) AS outcome, count(*) AS attempts
  FROM regress_adv_saved_t t, regress_adv_kct k,
       LATERAL (SELECT 'prefix' AS kind, substr(t.wrapped_key, 1, n) AS variant
                  FROM generate_series(0, 72) n
                UNION ALL
                SELECT 'extended', t.wrapped_key || '\x00'::bytea) w
 WHERE t.tenant = 'adv-k1' AND k.name = 'k1/secrets v1'
 GROUP BY 1, 2 ORDER BY 1;
-- a tenant key cannot be removed without destroying the tenant
SELECT regress_adv_tampered(:'t1', NULL, c) AS outcome FROM regress_adv_kct WHERE name = 'k1/secrets v1';
-- the whole error
SELECT regress_adv_tampered_detail(:'t1', set_byte(t.wrapped_key, 40, get_byte(t.wrapped_key, 40) # 1), k.c) AS detail
  FROM regress_adv_saved_t t, regress_adv_kct k
 WHERE t.tenant = 'adv-k1' AND k.name = 'k1/secrets v1';

-- The same for the wrapped data key of adv-k1/secrets version 1
SELECT regress_adv_wrap_region(i) AS field,
       regress_adv_tampered(:'d1', set_byte(d.wrapped_key, i, v), k.c) AS outcome,
       count(*) AS attempts
  FROM regress_adv_saved_d d
  JOIN regress_adv_kid ki ON ki.key_id = d.key_id AND ki.name = 'k1/secrets v1'
  JOIN regress_adv_kct k ON k.name = ki.name,
       generate_series(0, 72) i, generate_series(0, 255) v
 WHERE v <> get_byte(d.wrapped_key, i)
 GROUP BY 1, 2 ORDER BY min(i);
SELECT w.kind, regress_adv_tampered(:'d1', w.variant, k.c) AS outcome, count(*) AS attempts
  FROM regress_adv_saved_d d
  JOIN regress_adv_kid ki ON ki.key_id = d.key_id AND ki.name = 'k1/secrets v1'
  JOIN regress_adv_kct k ON k.name = ki.name,
       LATERAL (SELECT 'prefix' AS kind, substr(d.wrapped_key, 1, n) AS variant
                  FROM generate_series(0, 72) n
                UNION ALL
                SELECT 'extended', d.wrapped_key || '\x00'::bytea) w
 GROUP BY 1, 2 ORDER BY 1;
SELECT regress_adv_tampered(:'d1', NULL, c) AS outcome FROM regress_adv_kct WHERE name = 'k1/secrets v1';
-- the detail names the row by its key id
SELECT replace(regress_adv_tampered_detail(:'d1', set_byte(d.wrapped_key, 40, get_byte(d.wrapped_key, 40) # 1), k.c),
               ki.key_id::text, '<key id of k1/secrets v1>') AS detail
  FROM regress_adv_saved_d d
  JOIN regress_adv_kid ki ON ki.key_id = d.key_id AND ki.name = 'k1/secrets v1'
  JOIN regress_adv_kct k ON k.name = ki.name;

-- The check value of the master key stored with adv-k1, changed in any byte
-- or truncated: reported as a wrong master key (F0000), which it cannot
-- tell from one, and still no key is unwrapped
SELECT regress_adv_tampered('UPDATE envault.tenants SET master_kcv = $1 WHERE tenant = ''adv-k1''',
                            set_byte(t.master_kcv, i, v), k.c) AS outcome,
       count(*) AS attempts
  FROM regress_adv_saved_t t, regress_adv_kct k,
       generate_series(0, 15) i, generate_series(0, 255) v
 WHERE t.tenant = 'adv-k1' AND k.name = 'k1/secrets v1' AND v <> get_byte(t.master_kcv, i)
 GROUP BY 1;
SELECT regress_adv_tampered('UPDATE envault.tenants SET master_kcv = $1 WHERE tenant = ''adv-k1''',
                            substr(t.master_kcv, 1, n), k.c) AS outcome,
       count(*) AS attempts
  FROM regress_adv_saved_t t, regress_adv_kct k, generate_series(0, 15) n
 WHERE t.tenant = 'adv-k1' AND k.name = 'k1/secrets v1'
 GROUP BY 1;

-- Swaps between rows.  Every tampering below is undone with its
-- subtransaction; each line reads one value.
CREATE TABLE regress_adv_swaps (kind text, tamper text);
INSERT INTO regress_adv_swaps VALUES
	('tenant keys of adv-k1 and adv-k2 swapped',
	 'UPDATE envault.tenants t SET wrapped_key = o.wrapped_key FROM regress_adv_saved_t o
	   WHERE (t.tenant, o.tenant) IN ((''adv-k1'', ''adv-k2''), (''adv-k2'', ''adv-k1''))'),
	('adv-k2''s whole key (wrapped key, version, check value) copied to adv-k1',
	 'UPDATE envault.tenants t SET wrapped_key = o.wrapped_key, key_version = o.key_version,
	         master_kcv = o.master_kcv
	    FROM regress_adv_saved_t o WHERE t.tenant = ''adv-k1'' AND o.tenant = ''adv-k2'''),
	('adv-k1''s key version changed to 2',
	 'UPDATE envault.tenants SET key_version = 2 WHERE tenant = ''adv-k1'''),
	('data keys k1/secrets v1 and v2 swapped',
	 'UPDATE envault.data_keys d SET wrapped_key = o.wrapped_key
	    FROM regress_adv_kid a, regress_adv_kid b, regress_adv_saved_d o
	   WHERE a.name = ''k1/secrets v1'' AND b.name = ''k1/secrets v2''
	     AND ((d.key_id, o.key_id) = (a.key_id, b.key_id) OR (d.key_id, o.key_id) = (b.key_id, a.key_id))'),
	('data keys k1/secrets v1 and k1/files v1 swapped',
	 'UPDATE envault.data_keys d SET wrapped_key = o.wrapped_key
	    FROM regress_adv_kid a, regress_adv_kid b, regress_adv_saved_d o
	   WHERE a.name = ''k1/secrets v1'' AND b.name = ''k1/files v1''
	     AND ((d.key_id, o.key_id) = (a.key_id, b.key_id) OR (d.key_id, o.key_id) = (b.key_id, a.key_id))'),
	('data keys k1/secrets v1 and k2/secrets v1 swapped',
	 'UPDATE envault.data_keys d SET wrapped_key = o.wrapped_key
	    FROM regress_adv_kid a, regress_adv_kid b, regress_adv_saved_d o
	   WHERE a.name = ''k1/secrets v1'' AND b.name = ''k2/secrets v1''
	     AND ((d.key_id, o.key_id) = (a.key_id, b.key_id) OR (d.key_id, o.key_id) = (b.key_id, a.key_id))'),
	('purpose of k1/secrets v1 changed to "moved"',
	 'UPDATE envault.data_keys d SET purpose = ''moved'' FROM regress_adv_kid k
	   WHERE d.key_id = k.key_id AND k.name = ''k1/secrets v1'''),
	('version of k1/secrets v1 changed to 7',
	 'UPDATE envault.data_keys d SET version = 7 FROM regress_adv_kid k
	   WHERE d.key_id = k.key_id AND k.name = ''k1/secrets v1'''),
	('k1/files v1 moved to tenant adv-k2',
	 'UPDATE envault.data_keys d SET tenant = ''adv-k2'' FROM regress_adv_kid k
	   WHERE d.key_id = k.key_id AND k.name = ''k1/files v1'''),
	('k1/secrets v1 claims to be wrapped under tenant key version 2',
	 'UPDATE envault.data_keys d SET tenant_key_version = 2 FROM regress_adv_kid k
	   WHERE d.key_id = k.key_id AND k.name = ''k1/secrets v1''');
SELECT s.kind, k.name AS value, regress_adv_tampered(s.tamper, NULL, k.c) AS outcome
  FROM regress_adv_swaps s, regress_adv_kct k
 ORDER BY s.kind, k.name;
-- A data key row moved to another key id, with the value relabelled to name
-- the new id: the key id is bound into the wrap
SELECT regress_adv_tampered(
         'UPDATE envault.data_keys d SET key_id = d.key_id + 1 FROM regress_adv_kid k
           WHERE d.key_id = k.key_id AND k.name = ''k1/secrets v1''', NULL,
         overlay(k.c PLACING int8send(ki.key_id + 1) FROM 5 FOR 8)) AS outcome
  FROM regress_adv_kct k JOIN regress_adv_kid ki USING (name)
 WHERE k.name = 'k1/secrets v1';

-- No other way in: a tampered key is refused when encrypting, re-encrypting,
-- computing a blind index or creating a data key, and a tenant key rotation
-- refuses to rewrap (and so launder) a tampered data key.
CREATE FUNCTION regress_adv_tampered_call(tamper text, w bytea, call text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v text;
BEGIN
	EXECUTE tamper USING w;
	EXECUTE call INTO v;
	RAISE EXCEPTION USING ERRCODE = 'RG001', MESSAGE = 'returned';
EXCEPTION WHEN OTHERS THEN
	RETURN CASE WHEN SQLSTATE = 'RG001' THEN SQLERRM ELSE SQLSTATE || ': ' || SQLERRM END;
END
$$;
\set d2 'UPDATE envault.data_keys d SET wrapped_key = set_byte(d.wrapped_key, 30, get_byte(d.wrapped_key, 30) # 128) FROM regress_adv_kid k WHERE d.key_id = k.key_id AND k.name = ''k1/secrets v2'''
\set t1x 'UPDATE envault.tenants SET wrapped_key = set_byte(wrapped_key, 30, get_byte(wrapped_key, 30) # 128) WHERE tenant = ''adv-k1'''
SELECT c.tampered, c.call, regress_adv_tampered_call(c.tamper, NULL, c.call) AS outcome
  FROM (VALUES
    ('nothing', 'SELECT $1', 'SELECT envault.env_encrypt(''adv-k1'', ''secrets'', ''x'') IS NOT NULL'),
    ('nothing', 'SELECT $1', 'SELECT envault.rotate_tenant_key(''adv-k1'')'),
    ('data key k1/secrets v2', :'d2', 'SELECT envault.env_encrypt(''adv-k1'', ''secrets'', ''x'')'),
    ('data key k1/secrets v2', :'d2', 'SELECT envault.env_reencrypt(c) FROM regress_adv_kct WHERE name = ''k1/secrets v1'''),
    ('data key k1/secrets v2', :'d2', 'SELECT envault.rotate_tenant_key(''adv-k1'')'),
    ('tenant key adv-k1', :'t1x', 'SELECT envault.env_encrypt(''adv-k1'', ''secrets'', ''x'')'),
    ('tenant key adv-k1', :'t1x', 'SELECT envault.blind_index(''adv-k1'', ''email'', ''x'')'),
    ('tenant key adv-k1', :'t1x', 'SELECT envault.create_data_key(''adv-k1'', ''new-purpose'')'),
    ('tenant key adv-k1', :'t1x', 'SELECT envault.rotate_data_key(''adv-k1'', ''secrets'')'),
    ('tenant key adv-k1', :'t1x', 'SELECT envault.rotate_tenant_key(''adv-k1'')')) c(tampered, tamper, call);

-- Nothing above was committed, and nothing tampered stayed in the cache:
-- the tables are as they were, and every value decrypts
SELECT (SELECT count(*) FROM envault.tenants t JOIN regress_adv_saved_t s USING (tenant)
         WHERE (t.*) IS DISTINCT FROM (s.*)) AS tenants_changed,
       (SELECT count(*) FROM envault.data_keys d JOIN regress_adv_saved_d s USING (key_id)
         WHERE (d.*) IS DISTINCT FROM (s.*)) AS data_keys_changed,
       (SELECT count(*) FROM envault.data_keys d
         WHERE NOT EXISTS (SELECT FROM regress_adv_saved_d s WHERE s.key_id = d.key_id)) AS data_keys_added;
SELECT name, env_decrypt_text(c) FROM regress_adv_kct ORDER BY name;

DROP TABLE regress_adv_kct, regress_adv_kid, regress_adv_saved_t, regress_adv_saved_d,
	regress_adv_swaps;
DROP FUNCTION regress_adv_tampered(text, bytea, bytea),
	regress_adv_tampered_detail(text, bytea, bytea),
	regress_adv_tampered_call(text, bytea, text), regress_adv_wrap_region(int);
