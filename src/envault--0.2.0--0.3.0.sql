/*
 * envault upgrade script 0.2.0 -> 0.3.0.  Run by ALTER EXTENSION envault
 * UPDATE; it leaves a 0.2.0 database exactly as CREATE EXTENSION envault
 * leaves a new one (test/t/060_upgrade.pl compares the two, object by
 * object), and keeps every row.
 *
 * What changes:
 * - isolate_table() compares a tenant column with the current tenant
 *   exactly (current_tenant_as() for integer and uuid columns) and refuses
 *   column types and collations that cannot tell every tenant name apart;
 *   policies it created in 0.2.0 on such columns are reported as not
 *   isolating by isolation_report() until isolate_table() runs again;
 * - env_decrypt() and env_decrypt_text() cost 100, so that the planner
 *   decrypts above a sort or limit;
 * - rotate_master_key(), reencrypt_column() and migrate_pgcrypto_column()
 *   answer a NULL argument with 22004;
 *   reencrypt_column() and migrate_pgcrypto_column() check their columns
 *   and primary key in one function, prepare_column_walk(): a missing
 *   column is 42703 and a column not of type bytea 42804 in both;
 * - use_customer_key() re-keys the tenant (fresh tenant and data keys under
 *   the customer key) instead of rewrapping its tenant key; rekey_tenant()
 *   re-keys under the current key source, destroy_superseded_keys() ends
 *   a re-keying; envault.tenants gains rekeyed_at, and name_encoding (a
 *   tenant whose name is not ASCII, restored into a database of another
 *   encoding, gets an error that says so);
 * - token revocations are rows of a table of their own,
 *   envault.token_revocations (a revocation never waits for a transaction
 *   that used the token, and so updated its row); tokens.revoked_at, which
 *   dumps of earlier versions fill, still counts; revoke_tenant() records its event
 *   in the chain of no tenant, for the same reason;
 * - envault.secrets gains aad_version: the values stored by 0.2.0 keep
 *   version 1 (bound to their name), new ones are bound to a label, the
 *   tenant and the name;
 * - envault.audit_chains gains columns_meaning, and the DDL guards run on
 *   every command (chain_meaning());
 * - checkpoints name the database by envault.database_identity
 *   (database_id()); a database with checkpoints keeps its name as its
 *   identity, so that they keep verifying;
 * - checkpoints sign Merkle tree heads under the origin as key name
 *   (checkpoints.tree_root); those of 0.2.0 keep verifying as they are;
 *   witnesses cosign them (cosign(), checkpoint_cosignatures);
 * - envault.tenants and envault.data_keys get the statement trigger
 *   key_tables_changed (every backend drops its cached keys when any
 *   change to them commits, in one phase or two), and scale_out() makes
 *   them Citus reference tables (docs/scale-out.md).
 */
\echo Use "ALTER EXTENSION envault UPDATE TO '0.3.0'" to load this file. \quit

-- Row-level security: exact comparisons

CREATE FUNCTION envault.current_tenant_as(type_of anyelement)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'envault_current_tenant_as'
-- restricted like current_tenant(): parallel workers do not share the context
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION envault.current_tenant_as(anyelement) IS
	'The current tenant as a value of the type of the argument (int2, int4, int8, uuid); NULL unless the tenant name is exactly that value''s text';

REVOKE ALL ON FUNCTION envault.current_tenant_as(anyelement) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envault.current_tenant_as(anyelement) TO envault_user, envault_admin;

CREATE OR REPLACE FUNCTION envault.isolation_expr(tbl regclass, tenant_column name)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_isolation_expr'
LANGUAGE C STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION envault.isolation_expr(regclass, name) IS
	'The expression of the policy isolate_table creates for a tenant column (NULL if there is no such column, or if its type or collation cannot tell every tenant name apart)';

CREATE OR REPLACE FUNCTION envault.isolate_table(tbl regclass, tenant_column name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	expr text := envault.isolation_expr(tbl, tenant_column);
	coltype text;
BEGIN
	IF tbl IS NULL OR tenant_column IS NULL THEN
		RAISE EXCEPTION '% must not be null', CASE WHEN tbl IS NULL THEN 'tbl' ELSE 'tenant_column' END
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF expr IS NULL THEN
		SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)
			   OPERATOR(pg_catalog.||) COALESCE(' COLLATE ' OPERATOR(pg_catalog.||)
					pg_catalog.quote_ident(c.collname::pg_catalog.text), '')
		  INTO coltype
		  FROM pg_catalog.pg_attribute a
		  LEFT JOIN pg_catalog.pg_collation c
			ON c.oid OPERATOR(pg_catalog.=) a.attcollation
		   AND a.attcollation OPERATOR(pg_catalog.<>) 100
		 WHERE a.attrelid OPERATOR(pg_catalog.=) tbl
		   AND a.attname OPERATOR(pg_catalog.=) tenant_column
		   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
		IF coltype IS NULL THEN
			RAISE EXCEPTION 'column "%" of relation % does not exist', tenant_column, tbl
				USING ERRCODE = 'undefined_column';
		END IF;
		RAISE EXCEPTION 'tenant column "%" of relation % cannot isolate tenants exactly', tenant_column, tbl
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = pg_catalog.format('Its type is %s: two tenant names could compare equal to one value (a cast truncates, pads or normalises them, or the collation folds them).', coltype),
				  HINT = 'Use a text or varchar column with a deterministic collation, or an int2, int4, int8 or uuid column.';
	END IF;
	EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
	EXECUTE pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);

	-- the same policy again changes nothing; a policy of that name with any
	-- other definition (another column, altered expressions, restrictive,
	-- for some commands or roles only) is replaced
	IF envault.policy_isolates(tbl, expr) THEN
		RETURN;
	END IF;
	IF EXISTS (SELECT FROM pg_catalog.pg_policy p
				WHERE p.polrelid OPERATOR(pg_catalog.=) tbl
				  AND p.polname OPERATOR(pg_catalog.=) 'envault_tenant_isolation') THEN
		EXECUTE pg_catalog.format('DROP POLICY envault_tenant_isolation ON %s', tbl);
	END IF;
	EXECUTE pg_catalog.format('CREATE POLICY envault_tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING %s WITH CHECK %s',
							  tbl, expr, expr);
END
$$;
COMMENT ON FUNCTION envault.isolate_table(regclass, name) IS
	'Enable and force row-level security with a policy on the current tenant';


-- Decrypting above sorts and limits

ALTER FUNCTION envault.env_decrypt(bytea, bytea) COST 100;
ALTER FUNCTION envault.env_decrypt_text(bytea, bytea) COST 100;

-- NULL arguments: 22004 before anything else

CREATE OR REPLACE PROCEDURE envault.rotate_master_key(batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
-- No SET search_path: it COMMITs (see reencrypt_column); names are qualified.
AS $$
DECLARE
	r record;
	total bigint := 0;
BEGIN
	IF batch_size IS NULL THEN
		RAISE EXCEPTION 'batch_size must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	LOOP
		SELECT * INTO r FROM envault.rewrap_tenant_keys(batch_size);
		total := total OPERATOR(pg_catalog.+) r.rewrapped;
		COMMIT;
		RAISE NOTICE 'rotate_master_key: % tenant keys rewrapped, % remain', total, r.remaining;
		EXIT WHEN r.rewrapped OPERATOR(pg_catalog.=) 0 OR r.remaining OPERATOR(pg_catalog.=) 0;
	END LOOP;
	IF r.remaining OPERATOR(pg_catalog.=) 0 THEN
		RAISE NOTICE 'rotate_master_key: every tenant key is wrapped by the current master key; the previous master key can be removed from the configuration';
	ELSE
		RAISE NOTICE 'rotate_master_key: % tenant keys are locked by other transactions; call again', r.remaining;
	END IF;
END
$$;
COMMENT ON PROCEDURE envault.rotate_master_key(integer) IS
	'Rewrap every tenant key still under the previous master key, one committed batch at a time; resumable';

CREATE FUNCTION envault.prepare_column_walk(tbl regclass, col name, aad_col name,
											tenant_column name, caller text,
											OUT pk name, OUT pk_type text)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	what pg_catalog.text;
	c pg_catalog.name;
	must_be_bytea boolean;
	coltype pg_catalog.regtype;
BEGIN
	IF tbl IS NULL OR col IS NULL OR caller IS NULL THEN
		RAISE EXCEPTION '% must not be null',
			CASE WHEN tbl IS NULL THEN 'tbl' WHEN col IS NULL THEN 'col' ELSE 'caller' END
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- the column to rewrite, the one that holds its associated data, and
	-- the one that names each row's tenant (any type)
	FOR what, c, must_be_bytea IN
		SELECT v.w, v.c, v.b
		  FROM (VALUES (1, 'column', col, true), (2, 'aad column', aad_col, true),
					   (3, 'column', tenant_column, false)) v(i, w, c, b)
		 WHERE v.c IS NOT NULL ORDER BY v.i LOOP
		coltype := NULL;
		SELECT a.atttypid::pg_catalog.regtype INTO coltype
		  FROM pg_catalog.pg_attribute a
		 WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) c
		   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
		IF coltype IS NULL THEN
			RAISE EXCEPTION '% "%" of relation % does not exist', what, c, tbl
				USING ERRCODE = 'undefined_column';
		END IF;
		IF must_be_bytea AND coltype OPERATOR(pg_catalog.<>) 'pg_catalog.bytea'::pg_catalog.regtype THEN
			RAISE EXCEPTION '% "%" of relation % is not of type bytea', what, c, tbl
				USING ERRCODE = 'datatype_mismatch',
					  HINT = CASE WHEN what OPERATOR(pg_catalog.=) 'column'
							 THEN 'envault ciphertexts are bytea values.'
							 ELSE 'Keep the associated data in a bytea column, for example GENERATED ALWAYS AS (int4send(id)) STORED.' END;
		END IF;
	END LOOP;
	-- the key's type by schema and name: format_type() leaves pg_catalog's
	-- types unqualified, and the callers' casts run on their search_path
	SELECT a.attname, pg_catalog.format('%I.%I', tn.nspname, t.typname) INTO pk, pk_type
	  FROM pg_catalog.pg_index i
	  JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
	   AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
	  JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
	  JOIN pg_catalog.pg_namespace tn ON tn.oid OPERATOR(pg_catalog.=) t.typnamespace
	 WHERE i.indrelid OPERATOR(pg_catalog.=) tbl AND i.indisprimary
	   AND i.indnatts OPERATOR(pg_catalog.=) 1;
	IF pk IS NULL THEN
		RAISE EXCEPTION 'relation % has no single-column primary key', tbl
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = pg_catalog.format('%s walks the table in primary key order, one batch per transaction.', caller);
	END IF;
END
$$;
COMMENT ON FUNCTION envault.prepare_column_walk(regclass, name, name, name, text) IS
	'Internal to reencrypt_column and migrate_pgcrypto_column: check the columns they read, and return the single-column primary key they walk';
REVOKE ALL ON FUNCTION envault.prepare_column_walk(regclass, name, name, name, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envault.prepare_column_walk(regclass, name, name, name, text) TO envault_admin;

CREATE OR REPLACE PROCEDURE envault.reencrypt_column(tbl regclass, col name,
										  aad_col name DEFAULT NULL,
										  batch_size integer DEFAULT 10000)
LANGUAGE plpgsql
-- No SET search_path: PostgreSQL forbids COMMIT in a procedure with SET
-- options.  It runs with its caller's rights (SECURITY INVOKER), and every
-- name in it is schema-qualified, the types of its variables too: they are
-- looked up on the caller's search_path when the procedure is compiled.
AS $$
DECLARE
	pk pg_catalog.name;
	pktype pg_catalog.text;
	aad_expr pg_catalog.text;
	remaining bigint;
	done bigint := 0;
	hi pg_catalog.text;
	lo pg_catalog.text;
	n bigint;
	m bigint;
	skipped bigint;
	bounds pg_catalog.text;
	s_retired bigint;
	s_destroyed bigint;
	s_revoked bigint;
	s_shredded bigint;
	n_retired bigint := 0;
	n_destroyed bigint := 0;
	n_revoked bigint := 0;
	n_shredded bigint := 0;
BEGIN
	IF tbl IS NULL OR col IS NULL OR batch_size IS NULL THEN
		RAISE EXCEPTION '% must not be null',
			CASE WHEN tbl IS NULL THEN 'tbl' WHEN col IS NULL THEN 'col' ELSE 'batch_size' END
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF batch_size OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT w.pk, w.pk_type INTO pk, pktype
	  FROM envault.prepare_column_walk(tbl, col, aad_col, NULL, 'reencrypt_column') w;
	aad_expr := CASE WHEN aad_col IS NULL THEN 'NULL'
					 ELSE pg_catalog.format('%I', aad_col) END;

	-- Rows under a rotated data key are re-encrypted; rows under a key that
	-- opens nothing (retired or destroyed, or of a revoked or destroyed
	-- tenant) cannot be, and are skipped and counted.
	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.count(*) FILTER (WHERE s OPERATOR(pg_catalog.=) ''rotated''),'
		'       pg_catalog.count(*) FILTER (WHERE s OPERATOR(pg_catalog.<>) ALL (''{active,rotated}''))'
		'  FROM (SELECT envault.key_state(%I) AS s FROM %s WHERE %I IS NOT NULL) x',
		col, tbl, col) INTO remaining, n;
	RAISE NOTICE 'reencrypt_column: % rows of % to re-encrypt', remaining, tbl;
	IF n OPERATOR(pg_catalog.>) 0 THEN
		RAISE NOTICE 'reencrypt_column: % rows of % are under keys that open nothing and will be skipped', n, tbl;
	END IF;

	-- Each batch's bounds; with rows to skip, also their counts by reason
	-- (which costs reading the column; without, only the key is read, and
	-- a row that becomes unusable during the run is still skipped, and
	-- counted at the end as not done).
	bounds := pg_catalog.format(
		CASE WHEN n OPERATOR(pg_catalog.>) 0 THEN
			'SELECT pg_catalog.max(k)::pg_catalog.text, pg_catalog.count(*),'
			'       pg_catalog.count(*) FILTER (WHERE s OPERATOR(pg_catalog.=) ''retired''),'
			'       pg_catalog.count(*) FILTER (WHERE s OPERATOR(pg_catalog.=) ''destroyed''),'
			'       pg_catalog.count(*) FILTER (WHERE s OPERATOR(pg_catalog.=) ''tenant revoked''),'
			'       pg_catalog.count(*) FILTER (WHERE s OPERATOR(pg_catalog.=) ''tenant destroyed'')'
			'  FROM (SELECT %1$I AS k, envault.key_state(%5$I) AS s FROM %2$s'
			'         WHERE $1 IS NULL OR %1$I OPERATOR(pg_catalog.>) $1::%3$s'
			'         ORDER BY %1$I LIMIT %4$s) b'
		ELSE
			'SELECT pg_catalog.max(k)::pg_catalog.text, pg_catalog.count(*), 0, 0, 0, 0'
			'  FROM (SELECT %1$I AS k FROM %2$s'
			'         WHERE $1 IS NULL OR %1$I OPERATOR(pg_catalog.>) $1::%3$s'
			'         ORDER BY %1$I LIMIT %4$s) b'
		END, pk, tbl, pktype, batch_size, col);

	-- walk the table in primary key order, one committed batch at a time;
	-- a restart walks it again, but rows already current are not rewritten
	LOOP
		EXECUTE bounds INTO hi, n, s_retired, s_destroyed, s_revoked, s_shredded USING lo;
		EXIT WHEN n OPERATOR(pg_catalog.=) 0;
		n_retired := n_retired OPERATOR(pg_catalog.+) s_retired;
		n_destroyed := n_destroyed OPERATOR(pg_catalog.+) s_destroyed;
		n_revoked := n_revoked OPERATOR(pg_catalog.+) s_revoked;
		n_shredded := n_shredded OPERATOR(pg_catalog.+) s_shredded;
		EXECUTE pg_catalog.format(
			'UPDATE %2$s SET %3$I = envault.env_reencrypt(%3$I, %4$s)'
			' WHERE ($1 IS NULL OR %1$I OPERATOR(pg_catalog.>) $1::%5$s)'
			'   AND %1$I OPERATOR(pg_catalog.<=) $2::%5$s'
			'   AND %3$I IS NOT NULL'
			'   AND envault.key_state(%3$I) OPERATOR(pg_catalog.=) ''rotated''',
			pk, tbl, col, aad_expr, pktype) USING lo, hi;
		GET DIAGNOSTICS m = ROW_COUNT;
		done := done OPERATOR(pg_catalog.+) m;
		remaining := GREATEST(remaining OPERATOR(pg_catalog.-) m, 0);
		lo := hi;
		COMMIT;
		IF m OPERATOR(pg_catalog.>) 0 THEN
			RAISE NOTICE 'reencrypt_column: % rows re-encrypted, % remaining', done, remaining;
		END IF;
	END LOOP;
	skipped := n_retired OPERATOR(pg_catalog.+) n_destroyed
			   OPERATOR(pg_catalog.+) n_revoked OPERATOR(pg_catalog.+) n_shredded;
	IF remaining OPERATOR(pg_catalog.>) 0 THEN
		RAISE NOTICE 'reencrypt_column: % of the rows counted at the start were not re-encrypted (deleted, or their keys changed state during the run); call it again to see why', remaining;
	END IF;
	IF skipped OPERATOR(pg_catalog.=) 0 THEN
		RAISE NOTICE 'reencrypt_column: done, % rows re-encrypted', done;
	ELSE
		RAISE NOTICE 'reencrypt_column: done, % rows re-encrypted, % skipped: %', done, skipped,
			pg_catalog.array_to_string(ARRAY[
				CASE WHEN n_retired OPERATOR(pg_catalog.>) 0
					 THEN n_retired OPERATOR(pg_catalog.||) ' under retired data keys' END,
				CASE WHEN n_destroyed OPERATOR(pg_catalog.>) 0
					 THEN n_destroyed OPERATOR(pg_catalog.||) ' under destroyed data keys' END,
				CASE WHEN n_revoked OPERATOR(pg_catalog.>) 0
					 THEN n_revoked OPERATOR(pg_catalog.||) ' of revoked tenants' END,
				CASE WHEN n_shredded OPERATOR(pg_catalog.>) 0
					 THEN n_shredded OPERATOR(pg_catalog.||) ' of destroyed tenants' END],
				', ');
	END IF;
END
$$;
COMMENT ON PROCEDURE envault.reencrypt_column(regclass, name, name, integer) IS
	'Move a column onto the active data keys, one committed batch at a time; restartable';

-- tenant_col is tenant_column, as in every other function (a parameter
-- cannot be renamed in place; positional calls are unchanged)
DROP PROCEDURE envault.migrate_pgcrypto_column(regclass, name, name, text, text, text, name, integer);
CREATE PROCEDURE envault.migrate_pgcrypto_column(tbl regclass, col name, tenant_column name,
												 purpose text, legacy_key text,
												 only_tenant text DEFAULT NULL,
												 aad_col name DEFAULT NULL,
												 batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
-- No SET search_path: it COMMITs (see reencrypt_column); names are qualified.
AS $$
DECLARE
	nsp pg_catalog.name;
	pk pg_catalog.name;
	pktype pg_catalog.text;
	aad_expr pg_catalog.text;
	tenant_filter pg_catalog.text;
	remaining bigint;
	done bigint := 0;
	hi pg_catalog.text;
	lo pg_catalog.text;
	n bigint;
	m bigint;
BEGIN
	IF tbl IS NULL OR col IS NULL OR tenant_column IS NULL OR purpose IS NULL
	   OR legacy_key IS NULL OR batch_size IS NULL THEN
		RAISE EXCEPTION '% must not be null',
			CASE WHEN tbl IS NULL THEN 'tbl' WHEN col IS NULL THEN 'col'
				 WHEN tenant_column IS NULL THEN 'tenant_column' WHEN purpose IS NULL THEN 'purpose'
				 WHEN legacy_key IS NULL THEN 'legacy_key' ELSE 'batch_size' END
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF batch_size OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT n.nspname INTO nsp FROM pg_catalog.pg_extension e
	  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
	 WHERE e.extname OPERATOR(pg_catalog.=) 'pgcrypto';
	IF nsp IS NULL THEN
		RAISE EXCEPTION 'pgcrypto is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'The migration opens the old values with pgcrypto''s pgp_sym_decrypt_bytea().';
	END IF;
	SELECT w.pk, w.pk_type INTO pk, pktype
	  FROM envault.prepare_column_walk(tbl, col, aad_col, tenant_column,
									   'migrate_pgcrypto_column') w;
	aad_expr := CASE WHEN aad_col IS NULL THEN 'NULL' ELSE pg_catalog.format('%I', aad_col) END;
	tenant_filter := CASE WHEN only_tenant IS NULL THEN 'true'
						  ELSE pg_catalog.format('%I::pg_catalog.text OPERATOR(pg_catalog.=) %L',
												 tenant_column, only_tenant) END;

	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.count(*) FROM %s WHERE %I IS NOT NULL'
		' AND pg_catalog.substr(%I, 1, 4) OPERATOR(pg_catalog.<>) ''\x45560101''::pg_catalog.bytea AND %s',
		tbl, col, col, tenant_filter) INTO remaining;
	RAISE NOTICE 'migrate_pgcrypto_column: % rows of % to migrate', remaining, tbl;
	LOOP
		EXECUTE pg_catalog.format(
			'SELECT pg_catalog.max(k)::pg_catalog.text, pg_catalog.count(*) FROM'
			' (SELECT %1$I AS k FROM %2$s WHERE $1 IS NULL OR %1$I OPERATOR(pg_catalog.>) $1::%3$s'
			'  ORDER BY %1$I LIMIT %4$s) b',
			pk, tbl, pktype, batch_size) INTO hi, n USING lo;
		EXIT WHEN n OPERATOR(pg_catalog.=) 0;
		EXECUTE pg_catalog.format(
			'UPDATE %2$s SET %3$I = envault.env_encrypt(%4$I::pg_catalog.text, $3,'
			'       %6$I.pgp_sym_decrypt_bytea(%3$I, $4), %5$s)'
			' WHERE ($1 IS NULL OR %1$I OPERATOR(pg_catalog.>) $1::%7$s)'
			'   AND %1$I OPERATOR(pg_catalog.<=) $2::%7$s'
			'   AND %3$I IS NOT NULL'
			'   AND pg_catalog.substr(%3$I, 1, 4) OPERATOR(pg_catalog.<>) ''\x45560101''::pg_catalog.bytea'
			'   AND %8$s',
			pk, tbl, col, tenant_column, aad_expr, nsp, pktype, tenant_filter)
			USING lo, hi, purpose, legacy_key;
		GET DIAGNOSTICS m = ROW_COUNT;
		done := done OPERATOR(pg_catalog.+) m;
		remaining := GREATEST(remaining OPERATOR(pg_catalog.-) m, 0);
		lo := hi;
		COMMIT;
		IF m OPERATOR(pg_catalog.>) 0 THEN
			RAISE NOTICE 'migrate_pgcrypto_column: % rows migrated, % remaining', done, remaining;
		END IF;
	END LOOP;
	RAISE NOTICE 'migrate_pgcrypto_column: done, % rows migrated', done;
END
$$;
COMMENT ON PROCEDURE envault.migrate_pgcrypto_column(regclass, name, name, text, text, text, name, integer) IS
	'Re-encrypt a column from pgp_sym_encrypt() to envault, one committed batch at a time, optionally one tenant; restartable';
REVOKE ALL ON PROCEDURE envault.migrate_pgcrypto_column(regclass, name, name, text, text, text, name, integer)
	FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE envault.migrate_pgcrypto_column(regclass, name, name, text, text, text, name, integer)
	TO envault_admin;


-- The secrets store: the associated data of each value

ALTER TABLE envault.secrets ADD COLUMN aad_version smallint;
UPDATE envault.secrets SET aad_version = 1;
ALTER TABLE envault.secrets
	ALTER COLUMN aad_version SET DEFAULT 2,
	ALTER COLUMN aad_version SET NOT NULL,
	ADD CHECK (aad_version OPERATOR(pg_catalog.=) ANY ('{1,2}'::pg_catalog.int2[]));
COMMENT ON COLUMN envault.secrets.aad_version IS
	'The associated data the value is bound to: 2, envault''s secrets label, the tenant and the name; 1, the name alone (values stored by 0.2.0)';

-- Customer-managed keys: onboarding re-keys the tenant

ALTER TABLE envault.tenants ADD COLUMN rekeyed_at timestamptz;
-- the tenants there were created in this database's encoding (or restored
-- into one of the same: a name that is not ASCII opens nothing otherwise)
ALTER TABLE envault.tenants ADD COLUMN name_encoding text;
UPDATE envault.tenants SET name_encoding = pg_catalog.getdatabaseencoding();
ALTER TABLE envault.tenants
	ALTER COLUMN name_encoding SET DEFAULT pg_catalog.getdatabaseencoding(),
	ALTER COLUMN name_encoding SET NOT NULL;
COMMENT ON COLUMN envault.tenants.name_encoding IS
	'The database encoding the tenant was created in: its name is bound into its keys as bytes of that encoding';
COMMENT ON COLUMN envault.tenants.rekeyed_at IS
	'When the tenant was last re-keyed: data keys created before are superseded (destroy_superseded_keys)';
COMMENT ON FUNCTION envault.use_customer_key(text) IS
	'Onboard a tenant to the customer-managed key that envault.customer_key_command returns (BYOK): fresh tenant and data keys under it';

CREATE FUNCTION envault.rekey_tenant(tenant text)
RETURNS integer
AS 'MODULE_PATHNAME', 'envault_rekey_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.rekey_tenant(text) IS
	'Fresh tenant and data keys under the key that wraps the tenant key now; returns the number of new active data keys';

CREATE FUNCTION envault.destroy_superseded_keys(tenant text)
RETURNS integer
AS 'MODULE_PATHNAME', 'envault_destroy_superseded_keys'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.destroy_superseded_keys(text) IS
	'Destroy the data keys a re-keying superseded, once their values are re-encrypted; returns how many';

REVOKE ALL ON FUNCTION envault.rekey_tenant(text), envault.destroy_superseded_keys(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envault.rekey_tenant(text), envault.destroy_superseded_keys(text)
	TO envault_admin;

-- Token revocations: a row of their own, so that revoking a token never
-- waits for a transaction that used it (and so updated its row)

-- Token ids are compared byte for byte (COLLATE "C"): verify_token descends
-- these primary keys on every call (the index is rebuilt, the table is not
-- rewritten).
ALTER TABLE envault.tokens ALTER COLUMN token_id TYPE text COLLATE "C";
-- room on each page for the updates of last_used_at to be HOT (pages
-- written from now on; VACUUM FULL envault.tokens applies it to all)
ALTER TABLE envault.tokens SET (fillfactor = 80);

CREATE TABLE envault.token_revocations (
	token_id	text COLLATE "C" PRIMARY KEY REFERENCES envault.tokens (token_id),
	revoked_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	revoked_by	name
);
COMMENT ON TABLE envault.token_revocations IS
	'Revoked API tokens: verify_token and authenticate refuse them';
COMMENT ON COLUMN envault.token_revocations.revoked_by IS
	'Who revoked the token (NULL for revocations made before 0.3.0)';
INSERT INTO envault.token_revocations (token_id, revoked_at)
SELECT token_id, revoked_at FROM envault.tokens WHERE revoked_at IS NOT NULL;
-- (the column stays: dumps of earlier versions restore into it, and a
-- token is refused if it is set)
COMMENT ON COLUMN envault.tokens.revoked_at IS
	'Set by versions before 0.3.0 (and in their dumps); revocations are rows of envault.token_revocations since';
SELECT pg_catalog.pg_extension_config_dump('envault.token_revocations', '');
REVOKE ALL ON envault.token_revocations FROM PUBLIC;
GRANT SELECT ON envault.token_revocations TO envault_admin;

-- access_log_status() counts the worker's transactions (records per commit)
DROP FUNCTION envault.access_log_status();
CREATE FUNCTION envault.access_log_status()
RETURNS TABLE (database name, worker_pid integer, queued bigint, written bigint,
			   to_server_log bigint, commits bigint)
AS 'MODULE_PATHNAME', 'envault_access_log_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.access_log_status() IS
	'The access log queue of each database in use: its worker, records queued, written, sent to the server log instead, and the transactions that wrote them';
REVOKE ALL ON FUNCTION envault.access_log_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envault.access_log_status() TO envault_admin;

-- What a chained table's columns mean, recorded so that the DDL guard can
-- refuse any command that changes it (a type's attribute or label renamed,
-- a collation, DDL through a parent table); the guard now runs on every
-- command, since such commands name other objects than the table
CREATE FUNCTION envault.chain_meaning(tbl regclass)
RETURNS text
AS 'MODULE_PATHNAME', 'envault_chain_meaning'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION envault.chain_meaning(regclass) IS
	'What a table''s columns mean (names, types down to enum labels and composite attributes, collations, generated columns, parents), as the audit chain DDL guard compares it';
REVOKE ALL ON FUNCTION envault.chain_meaning(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envault.chain_meaning(regclass) TO envault_admin;
ALTER TABLE envault.audit_chains ADD COLUMN columns_meaning text;
COMMENT ON COLUMN envault.audit_chains.columns_meaning IS
	'What the table''s columns meant when it was chained (envault.chain_meaning()); the DDL guard refuses any command that changes it';
UPDATE envault.audit_chains SET columns_meaning = envault.chain_meaning(tbl);
DROP EVENT TRIGGER envault_chain_ddl_guard;
DROP EVENT TRIGGER envault_chain_drop_guard;
CREATE EVENT TRIGGER envault_chain_ddl_guard ON ddl_command_end
	EXECUTE FUNCTION envault.chain_ddl_guard();
CREATE EVENT TRIGGER envault_chain_drop_guard ON sql_drop
	EXECUTE FUNCTION envault.chain_drop_guard();

-- The identity checkpoints name this database by.  Checkpoints signed by
-- 0.2.0 name it by its name at the time; a database that has some keeps
-- that name as its identity (the oldest checkpoint's), so that they keep
-- verifying; one without takes a random identity, as CREATE EXTENSION does.
CREATE TABLE envault.database_identity (
	database_id	text PRIMARY KEY CHECK (database_id OPERATOR(pg_catalog.<>) ''),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE envault.database_identity IS
	'The identity that checkpoint origins name this database by: the oldest row (envault.database_id())';
INSERT INTO envault.database_identity (database_id)
	SELECT COALESCE((SELECT pg_catalog.current_database()::pg_catalog.text
					   FROM envault.checkpoints LIMIT 1),
					pg_catalog.gen_random_uuid()::pg_catalog.text);
SELECT pg_catalog.pg_extension_config_dump('envault.database_identity', '');

-- Checkpoints sign Merkle tree heads from now on; those of 0.2.0 signed
-- the head row's hash (head_hash) and keep verifying as they are
ALTER TABLE envault.checkpoints ADD COLUMN tree_root bytea;
COMMENT ON COLUMN envault.checkpoints.head_hash IS
	'The hash of row seq, the chain''s head when signed';
COMMENT ON COLUMN envault.checkpoints.tree_root IS
	'The Merkle tree head of rows 1 to seq, which the note signs; NULL for a checkpoint of envault 0.2.0, which signed head_hash';
COMMENT ON FUNCTION envault.checkpoint(regclass, text) IS
	'Sign the Merkle tree head of every (or one) tenant''s chain that grew since its last checkpoint, once shown to extend it';

-- Witness cosignatures (witness.c)
CREATE SEQUENCE envault.checkpoint_cosignatures_seq;
CREATE TABLE envault.checkpoint_cosignatures (
	cosignature_id bigint PRIMARY KEY
				DEFAULT pg_catalog.nextval('envault.checkpoint_cosignatures_seq'::pg_catalog.regclass),
	checkpoint_id bigint NOT NULL REFERENCES envault.checkpoints (checkpoint_id),
	witness		text NOT NULL,
	line		text NOT NULL,
	cosigned_at	timestamptz NOT NULL,
	requested_by name NOT NULL
);
CREATE INDEX checkpoint_cosignatures_checkpoint
	ON envault.checkpoint_cosignatures (checkpoint_id);
COMMENT ON TABLE envault.checkpoint_cosignatures IS
	'Witness cosignatures (C2SP tlog-cosignature) of checkpoints, appended to their notes in exports';
CREATE TRIGGER checkpoint_cosignatures_append_only
	BEFORE UPDATE OR DELETE ON envault.checkpoint_cosignatures
	FOR EACH ROW EXECUTE FUNCTION envault.append_only();
CREATE TRIGGER checkpoint_cosignatures_no_truncate
	BEFORE TRUNCATE ON envault.checkpoint_cosignatures
	FOR EACH STATEMENT EXECUTE FUNCTION envault.append_only();
SELECT pg_catalog.pg_extension_config_dump('envault.checkpoint_cosignatures', '');
SELECT pg_catalog.pg_extension_config_dump('envault.checkpoint_cosignatures_seq', '');
REVOKE ALL ON envault.checkpoint_cosignatures, envault.checkpoint_cosignatures_seq FROM PUBLIC;
GRANT SELECT ON envault.checkpoint_cosignatures TO envault_admin;
CREATE FUNCTION envault.cosign(tbl regclass, tenant text DEFAULT NULL, witness text DEFAULT NULL)
RETURNS TABLE (tenant text, seq bigint, witness text, cosigned_at timestamptz)
AS 'MODULE_PATHNAME', 'envault_cosign'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.cosign(regclass, text, text) IS
	'Have the witnesses of envault.witness_keys (or one) cosign the newest checkpoint of every (or one) tenant''s chain';
REVOKE ALL ON FUNCTION envault.cosign(regclass, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envault.cosign(regclass, text, text) TO envault_admin;
REVOKE ALL ON envault.database_identity FROM PUBLIC;
GRANT SELECT ON envault.database_identity TO envault_admin;
CREATE FUNCTION envault.database_id()
RETURNS text
AS 'MODULE_PATHNAME', 'envault_database_id'
LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION envault.database_id() IS
	'The identity checkpoint origins name this database by; auditors pin it (envault-verify --database)';
REVOKE ALL ON FUNCTION envault.database_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envault.database_id() TO envault_admin;

-- Merkle trees of audit chains: built from the rows when first asked for
-- The Merkle tree of each tenant's chain (chaintree.c), built when asked
-- for: its frontier, and the roots of its perfect subtrees of 256 leaves
-- or more
CREATE TABLE envault.chain_trees (
	chain_id	integer NOT NULL,
	tenant		text,
	size		bigint NOT NULL CHECK (size OPERATOR(pg_catalog.>) 0),
	frontier	bytea NOT NULL,
	UNIQUE NULLS NOT DISTINCT (chain_id, tenant)
);
COMMENT ON TABLE envault.chain_trees IS
	'Per audit chain and tenant, the Merkle tree built so far: its size and frontier (u64 size, then the roots of its perfect subtrees, largest first)';
CREATE TABLE envault.chain_nodes (
	chain_id	integer NOT NULL,
	tenant		text,
	level		smallint NOT NULL CHECK (level OPERATOR(pg_catalog.>=) 0),
	idx			bigint NOT NULL CHECK (idx OPERATOR(pg_catalog.>=) 0),
	hash		bytea NOT NULL,
	UNIQUE NULLS NOT DISTINCT (chain_id, tenant, level, idx)
);
COMMENT ON TABLE envault.chain_nodes IS
	'Roots of the perfect subtrees (2^level leaves, the idx-th at that level) of audit chains'' Merkle trees: level 8 and up, and below where a purge deleted rows; what proofs read';
SELECT pg_catalog.pg_extension_config_dump('envault.chain_trees', '');
SELECT pg_catalog.pg_extension_config_dump('envault.chain_nodes', '');
REVOKE ALL ON envault.chain_trees, envault.chain_nodes FROM PUBLIC;
GRANT SELECT ON envault.chain_trees, envault.chain_nodes TO envault_admin;

CREATE FUNCTION envault.tree_head(tbl regclass, tenant text, size bigint DEFAULT NULL,
								  OUT tree_size bigint, OUT root bytea)
AS 'MODULE_PATHNAME', 'envault_tree_head'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.tree_head(regclass, text, bigint) IS
	'The Merkle tree head (RFC 6962) of a tenant''s chain: of its first size rows, or of all';
CREATE FUNCTION envault.inclusion_proof(tbl regclass, tenant text, seq bigint, tree_size bigint)
RETURNS bytea[]
AS 'MODULE_PATHNAME', 'envault_inclusion_proof'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.inclusion_proof(regclass, text, bigint, bigint) IS
	'The audit path (RFC 9162) proving that row seq is in the Merkle tree of tree_size rows of a tenant''s chain';
CREATE FUNCTION envault.consistency_proof(tbl regclass, tenant text, old_size bigint, new_size bigint)
RETURNS bytea[]
AS 'MODULE_PATHNAME', 'envault_consistency_proof'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.consistency_proof(regclass, text, bigint, bigint) IS
	'The proof (RFC 9162) that the Merkle tree of old_size rows of a tenant''s chain is the start of that of new_size rows';
REVOKE ALL ON FUNCTION envault.tree_head(regclass, text, bigint),
	envault.inclusion_proof(regclass, text, bigint, bigint),
	envault.consistency_proof(regclass, text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envault.tree_head(regclass, text, bigint),
	envault.inclusion_proof(regclass, text, bigint, bigint),
	envault.consistency_proof(regclass, text, bigint, bigint) TO envault_admin;

-- Scale-out on Citus (docs/scale-out.md).  Whoever writes the key tables,
-- every backend drops its cached keys once the change commits; on a Citus
-- node the trigger also runs on the node's copies of them, whose changes
-- commit in two phases.
CREATE FUNCTION envault.key_tables_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'envault_key_tables_changed'
LANGUAGE C;
COMMENT ON FUNCTION envault.key_tables_changed() IS
	'Statement trigger of the key tables: every backend drops its cached keys when the change commits';
CREATE TRIGGER tenants_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON envault.tenants
	FOR EACH STATEMENT EXECUTE FUNCTION envault.key_tables_changed();
CREATE TRIGGER data_keys_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON envault.data_keys
	FOR EACH STATEMENT EXECUTE FUNCTION envault.key_tables_changed();

CREATE FUNCTION envault.scale_out()
RETURNS TABLE (key_table regclass, nodes integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Citus's notices about the tables' local data, which scale_out() removes
SET client_min_messages = warning
AS $scale_out$
DECLARE
	t	regclass;
	c	record;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_extension WHERE extname OPERATOR(=) 'citus') THEN
		RAISE EXCEPTION 'Citus is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Run CREATE EXTENSION citus first (docs/scale-out.md).';
	END IF;
	IF NOT pg_catalog.citus_is_coordinator() THEN
		RAISE EXCEPTION 'envault.scale_out() runs on the Citus coordinator'
			USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_node WHERE groupid OPERATOR(=) 0) THEN
		RAISE EXCEPTION 'the coordinator is not in the Citus metadata'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'envault reads its key tables on the coordinator from the coordinator''s own copy.',
				  HINT = 'Run SELECT citus_set_coordinator_host(host, port) on the coordinator.';
	END IF;
	IF pg_catalog.current_setting('shared_preload_libraries')
		   OPERATOR(pg_catalog.!~) '(^|[\s,"])envault($|[\s,"])' THEN
		RAISE EXCEPTION 'envault is not in shared_preload_libraries'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'On a Citus node, key changes commit in two phases, which envault follows through shared memory.',
				  HINT = 'Add envault to shared_preload_libraries on every node and restart them.';
	END IF;

	-- Citus allows no plain table to reference a reference table: the key
	-- tables' foreign keys go (envault's functions keep what they checked:
	-- a tenant's rows are only written after its row is locked, and
	-- tenants are never deleted).
	FOR c IN
		SELECT conrelid::regclass AS rel, conname
		  FROM pg_constraint
		 WHERE contype OPERATOR(=) 'f'
		   AND confrelid OPERATOR(=) 'envault.tenants'::regclass
	LOOP
		EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', c.rel, c.conname);
	END LOOP;

	-- the statement triggers above go with the tables onto every node
	PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
	FOREACH t IN ARRAY ARRAY['envault.tenants', 'envault.data_keys']::regclass[] LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
						WHERE logicalrelid OPERATOR(=) t) THEN
			PERFORM pg_catalog.create_reference_table(t);
			PERFORM pg_catalog.truncate_local_data_after_distributing_table(t);
		END IF;
		key_table := t;
		nodes := (SELECT pg_catalog.count(*)::integer
					FROM pg_catalog.pg_dist_placement p
					JOIN pg_catalog.pg_dist_shard s USING (shardid)
				   WHERE s.logicalrelid OPERATOR(=) t);
		RETURN NEXT;
	END LOOP;
END
$scale_out$;
COMMENT ON FUNCTION envault.scale_out() IS
	'On a Citus coordinator: make the key tables reference tables, held by every node (docs/scale-out.md)';
REVOKE ALL ON FUNCTION envault.key_tables_changed(), envault.scale_out() FROM PUBLIC;

-- audit chains on Citus: verify_chain() of each shard, pushed down
CREATE FUNCTION envault.verify_chain_json(tbl regclass, tenant text,
										  cp_tenants text[], cp_sizes bigint[],
										  cp_roots bytea[])
RETURNS json
AS 'MODULE_PATHNAME', 'envault_verify_chain_json'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.verify_chain_json(regclass, text, text[], bigint[], bytea[]) IS
	'Internal: verify_chain() of a Citus shard as one value, with the coordinator''s checkpoints as tree heads to find (docs/scale-out.md)';
CREATE FUNCTION envault.distribute_audit_chain(tbl regclass, shard_count integer DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'envault_distribute_audit_chain'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.distribute_audit_chain(regclass, integer) IS
	'On a Citus coordinator: distribute a chained table by its tenant column, its chain with it (docs/scale-out.md)';
REVOKE ALL ON FUNCTION envault.distribute_audit_chain(regclass, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envault.distribute_audit_chain(regclass, integer) TO envault_admin;
REVOKE ALL ON FUNCTION envault.verify_chain_json(regclass, text, text[], bigint[], bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envault.verify_chain_json(regclass, text, text[], bigint[], bytea[])
	TO envault_admin;

-- names (0.3.0): one flag for the scope of a tenant context, and a verb for
-- each undo; the old names stay as deprecated aliases until 0.4.0
CREATE FUNCTION envault.use_tenant(tenant text, session boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_use_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.use_tenant(text, boolean) IS
	'Make a tenant current without a token until the end of the transaction (or session); trusted middleware, envault_admin only';
CREATE FUNCTION envault.unretire_data_key(tenant text, purpose text, version integer)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_restore_data_key'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.unretire_data_key(text, text, integer) IS
	'Let a retired data key version decrypt again (undo envault.retire_data_key())';
CREATE FUNCTION envault.unrevoke_tenant(tenant text)
RETURNS void
AS 'MODULE_PATHNAME', 'envault_restore_tenant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION envault.unrevoke_tenant(text) IS 'Undo envault.revoke_tenant()';
COMMENT ON FUNCTION envault.set_tenant(text, boolean) IS
	'Deprecated alias of envault.use_tenant(tenant, session => NOT is_local), removed in 0.4.0';
COMMENT ON FUNCTION envault.restore_data_key(text, text, integer) IS
	'Deprecated alias of envault.unretire_data_key(), removed in 0.4.0';
COMMENT ON FUNCTION envault.restore_tenant(text) IS
	'Deprecated alias of envault.unrevoke_tenant(), removed in 0.4.0';
REVOKE ALL ON FUNCTION envault.use_tenant(text, boolean), envault.unretire_data_key(text, text, integer),
	envault.unrevoke_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envault.use_tenant(text, boolean), envault.unretire_data_key(text, text, integer),
	envault.unrevoke_tenant(text) TO envault_admin;

CREATE FUNCTION envault.chain_store_heads()
RETURNS trigger
AS 'MODULE_PATHNAME', 'envault_chain_store_heads'
LANGUAGE C;
COMMENT ON FUNCTION envault.chain_store_heads() IS
	'Trigger: write the heads an INSERT statement advanced to envault.chain_heads';
COMMENT ON FUNCTION envault.chain_heads() IS
	'Deprecated alias of envault.chain_store_heads(), for the triggers of chains made before 0.3.0; removed in 0.4.0';
REVOKE ALL ON FUNCTION envault.chain_store_heads() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envault.chain_store_heads() TO envault_admin;
-- every chain's heads trigger by its new name (the guard lets this script
-- change chained tables), as a fresh install makes them
DO $heads$
DECLARE
	c	record;
BEGIN
	FOR c IN
		SELECT t.tgrelid::regclass AS tbl
		  FROM pg_catalog.pg_trigger t
		 WHERE t.tgname OPERATOR(pg_catalog.=) 'zz_envault_chain_heads'
		   AND t.tgfoid OPERATOR(pg_catalog.=) 'envault.chain_heads()'::pg_catalog.regprocedure
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER zz_envault_chain_heads ON %s', c.tbl);
		EXECUTE pg_catalog.format('CREATE TRIGGER zz_envault_chain_heads AFTER INSERT ON %s'
								  ' FOR EACH STATEMENT EXECUTE FUNCTION envault.chain_store_heads()', c.tbl);
	END LOOP;
END
$heads$;
