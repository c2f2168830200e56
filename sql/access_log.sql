-- access_log: every decryption is recorded in envault.access_log by
-- envault's background worker, also when the transaction rolls back or is
-- read-only.  Each part of this test sets its own application_name and
-- looks only at its own records.
SET search_path = public, envault;
\set SHOW_CONTEXT never

SELECT envault.create_tenant('al');
SELECT envault.create_tenant('al-other');
CREATE TABLE regress_al (id int PRIMARY KEY, tenant text, c bytea);
INSERT INTO regress_al
SELECT g, CASE WHEN g <= 90 THEN 'al' ELSE 'al-other' END,
       env_encrypt(CASE WHEN g <= 90 THEN 'al' ELSE 'al-other' END, 'pii', 'value ' || g)
  FROM generate_series(1, 100) g;
CREATE FUNCTION regress_records(app text)
RETURNS TABLE (event text, tenant text, purpose text, key_version integer,
               secret_name text, records bigint, decrypted numeric)
LANGUAGE sql AS $$
	SELECT event, tenant, purpose, key_version, secret_name, count(*), sum(count)
	  FROM envault.access_log WHERE application_name = app
	 GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
$$;

-- one statement that decrypts 90 values of one key, and 10 of another:
-- a record per key, with counts (results go to the client only after their
-- records are committed, so they are there when the statement returns)
SET application_name = 'regress-al-bulk';
SELECT count(env_decrypt_text(c)) FROM regress_al;
RESET application_name;
SELECT * FROM regress_records('regress-al-bulk');

-- rows streamed to the client: the first is sent after its key's record is
-- committed, the rest are counted by the end of the statement; the counts
-- add up
SET application_name = 'regress-al-rows';
SELECT id, env_decrypt_text(c) FROM regress_al WHERE id <= 5 ORDER BY id;
RESET application_name;
SELECT event, tenant, sum(decrypted) AS decrypted, sum(records) BETWEEN 1 AND 2 AS a_handful
  FROM regress_records('regress-al-rows') GROUP BY 1, 2;

-- a million values would make a handful of records too: 100,000 here
SET application_name = 'regress-al-many';
SELECT count(env_decrypt(c)) FROM regress_al, generate_series(1, 1000);
RESET application_name;
SELECT * FROM regress_records('regress-al-many');

-- a transaction that rolls back, and one that is read-only
SET application_name = 'regress-al-rollback';
BEGIN;
SELECT env_decrypt_text(c) FROM regress_al WHERE id = 1;
ROLLBACK;
BEGIN READ ONLY;
SET LOCAL application_name = 'regress-al-read-only';
SELECT env_decrypt_text(c) FROM regress_al WHERE id = 2;
COMMIT;
RESET application_name;
SELECT * FROM regress_records('regress-al-rollback');
SELECT * FROM regress_records('regress-al-read-only');

-- a statement that fails half-way: what was decrypted is recorded as the
-- transaction aborts; flush_access_log() waits for it to be committed
CREATE TABLE regress_al_bad AS SELECT id, c FROM regress_al WHERE id <= 3;
INSERT INTO regress_al_bad VALUES (4, '\x45560101');
SET application_name = 'regress-al-error';
SELECT id, env_decrypt_text(c) FROM regress_al_bad ORDER BY id;
SELECT envault.flush_access_log();
RESET application_name;
SELECT * FROM regress_records('regress-al-error');

-- what a record says: who, from where, in which statement
CREATE ROLE regress_al_app LOGIN IN ROLE envault_user;
GRANT SELECT ON regress_al TO regress_al_app;
SELECT envault.use_tenant('al', session => true);
SET ROLE regress_al_app;
SET application_name = 'regress-al-who';
SELECT env_decrypt_text(c) FROM regress_al WHERE id = 3;
RESET application_name;
RESET ROLE;
SELECT envault.reset_tenant();
SELECT role, session_role, client_addr, backend_pid = pg_backend_pid() AS this_backend,
       backend_start = (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()) AS session_start,
       statement_seq > 0 AS statement, at <= last_at AS times
  FROM envault.access_log WHERE application_name = 'regress-al-who';
-- every statement has its own number (the records of each are counted
-- above: 9 in all, or 10 if the rows query wrote two)
SELECT count(DISTINCT statement_seq) AS statements,
       count(*) BETWEEN 9 AND 10 AS records_9_or_10
  FROM envault.access_log WHERE application_name LIKE 'regress-al-%';

-- a procedure that ends its transaction (ROLLBACK, COMMIT) in the middle
-- of its CALL: the CALL is one statement, and the statements after it have
-- numbers of their own, each flushed as it ends (0.2.0 gave the next two
-- one number, and skipped their flushes)
CREATE PROCEDURE regress_al_proc() LANGUAGE plpgsql AS $$
BEGIN
	PERFORM env_decrypt_text(c) FROM regress_al WHERE id = 1;
	ROLLBACK;
	PERFORM env_decrypt_text(c) FROM regress_al WHERE id = 2;
	COMMIT;
END
$$;
SET application_name = 'regress-al-proc';
CALL regress_al_proc();
SET application_name = 'regress-al-proc-after';
SELECT env_decrypt_text(c) FROM regress_al WHERE id = 3;
SELECT env_decrypt_text(c) FROM regress_al WHERE id = 4;
RESET application_name;
SELECT application_name, count(*) AS records, sum(count) AS decryptions,
       count(DISTINCT statement_seq) AS statements
  FROM envault.access_log WHERE application_name LIKE 'regress-al-proc%'
 GROUP BY application_name ORDER BY application_name;
DROP PROCEDURE regress_al_proc();

-- turning the log off takes a superuser, and is recorded
SET ROLE regress_al_app;
SET envault.access_log = off;
RESET ROLE;
SET application_name = 'regress-al-off';
SET envault.access_log = off;
SELECT env_decrypt_text(c) FROM regress_al WHERE id = 4;
SELECT env_decrypt_text(c) FROM regress_al WHERE id = 5;
RESET envault.access_log;
SELECT envault.flush_access_log();
RESET application_name;
SELECT * FROM regress_records('regress-al-off');

-- behind a pooler one server session serves client after client: with the
-- log off, the event is recorded again for each client it serves (another
-- application_name, or another authenticated token)
SET envault.access_log = off;
SET application_name = 'regress-al-off-client-a';
SELECT env_decrypt_text(c) FROM regress_al WHERE id = 4;
SELECT env_decrypt_text(c) FROM regress_al WHERE id = 5;
SET application_name = 'regress-al-off-client-b';
SELECT env_decrypt_text(c) FROM regress_al WHERE id = 4;
RESET envault.access_log;
SELECT envault.flush_access_log();
RESET application_name;
SELECT application_name, event, count(*) AS records FROM envault.access_log
 WHERE application_name LIKE 'regress-al-off-client-%' GROUP BY 1, 2 ORDER BY 1;

-- the access log is an audit chain per tenant: append-only, and verified
UPDATE envault.access_log SET count = 0;
DELETE FROM envault.access_log;
SELECT count(*) > 0 AS chains, bool_and(ok) AS all_ok,
       sum(rows_checked) = (SELECT count(*) FROM envault.access_log) AS every_record
  FROM envault.verify_chain('envault.access_log');
SELECT database, worker_pid IS NOT NULL AS worker, queued, written > 0 AS written,
       to_server_log, commits BETWEEN 1 AND written AS commits
  FROM envault.access_log_status() WHERE database = current_database();
-- only envault_admin reads it
SET ROLE regress_al_app;
SELECT count(*) FROM envault.access_log;
SELECT * FROM envault.access_log_status();
RESET ROLE;
REVOKE SELECT ON regress_al FROM regress_al_app;
DROP ROLE regress_al_app;
