-- Privileged paths never run a less privileged role's code with elevated
-- rights.  envault's maintenance of a user's table (purging a chain,
-- linking its existing rows) runs as the table's owner in a
-- security-restricted operation, and purge_chain refuses a table whose
-- deletes would run code of its own.
--
-- The attacker: a member of envault_admin (not a superuser) who owns a
-- chained table.  Every trap tries to make the attacker a superuser and
-- notes the role it ran as.
CREATE ROLE regress_priv_owner IN ROLE envault_admin;
GRANT CREATE ON SCHEMA public TO regress_priv_owner;
SET ROLE regress_priv_owner;
CREATE TABLE regress_priv_ran (who name, what text);
CREATE FUNCTION regress_priv_escalate(what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.regress_priv_ran VALUES (current_user, what);
	BEGIN
		ALTER ROLE regress_priv_owner SUPERUSER;
	EXCEPTION WHEN insufficient_privilege THEN
		NULL;
	END;
END
$$;
CREATE FUNCTION regress_priv_trap() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_priv_escalate(TG_NAME);
	RETURN OLD;
END
$$;
CREATE TABLE regress_priv_audit (id int PRIMARY KEY, tenant text, what text);
SELECT envault.enable_audit_chain('regress_priv_audit', 'tenant');
INSERT INTO regress_priv_audit VALUES (1, 'acme', 'a');
INSERT INTO regress_priv_audit VALUES (2, 'acme', 'b');
INSERT INTO regress_priv_audit VALUES (3, 'acme', 'c');
SELECT tenant, seq FROM envault.checkpoint('regress_priv_audit');

-- 1. the reproduction: a BEFORE DELETE trigger, fired by purge_chain
CREATE TRIGGER a_evil BEFORE DELETE ON regress_priv_audit
	FOR EACH ROW EXECUTE FUNCTION regress_priv_trap();
SELECT envault.purge_chain('regress_priv_audit', 'acme', clock_timestamp());
DROP TRIGGER a_evil ON regress_priv_audit;
-- 2. a deferred constraint trigger would fire at commit, after envault
-- has given back its rights: refused as well (on a table of its own: the
-- chain's guard keeps its constraints, constraint triggers included)
CREATE TABLE regress_priv_later (tenant text);
SELECT envault.enable_audit_chain('regress_priv_later', 'tenant');
INSERT INTO regress_priv_later VALUES ('acme');
INSERT INTO regress_priv_later VALUES ('acme');
SELECT tenant, seq FROM envault.checkpoint('regress_priv_later');
CREATE CONSTRAINT TRIGGER a_later AFTER DELETE ON regress_priv_later
	DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION regress_priv_trap();
SELECT envault.purge_chain('regress_priv_later', 'acme', clock_timestamp());
SELECT envault.disable_audit_chain('regress_priv_later');
DROP TABLE regress_priv_later;
-- 3. a statement trigger
CREATE TRIGGER a_stmt AFTER DELETE ON regress_priv_audit
	FOR EACH STATEMENT EXECUTE FUNCTION regress_priv_trap();
SELECT envault.purge_chain('regress_priv_audit', 'acme', clock_timestamp());
DROP TRIGGER a_stmt ON regress_priv_audit;
-- 4. a cascading foreign key runs the referencing table's triggers
CREATE TABLE regress_priv_ref (id int REFERENCES regress_priv_audit ON DELETE CASCADE);
CREATE TRIGGER a_cascaded BEFORE DELETE ON regress_priv_ref
	FOR EACH ROW EXECUTE FUNCTION regress_priv_trap();
INSERT INTO regress_priv_ref VALUES (1);
SELECT envault.purge_chain('regress_priv_audit', 'acme', clock_timestamp()) IS NOT NULL;
RESET ROLE;

-- the same, called by a superuser
SELECT envault.purge_chain('regress_priv_audit', 'acme', clock_timestamp()) IS NOT NULL;
SET ROLE regress_priv_owner;
DROP TABLE regress_priv_ref;
-- a foreign key without an action only checks: allowed
CREATE TABLE regress_priv_ref (id int REFERENCES regress_priv_audit);
-- nothing ran, nobody became superuser
SELECT * FROM regress_priv_ran;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_priv_owner';
-- with no code of the table's left, the purge runs: rows 1 and 2 go, the
-- checkpointed row 3 stays as the anchor
SELECT envault.purge_chain('regress_priv_audit', 'acme', clock_timestamp()) AS purged;
SELECT id, envault_seq FROM regress_priv_audit;
SELECT tenant, rows_checked, ok FROM envault.verify_chain('regress_priv_audit');
RESET ROLE;

-- 5. linking existing rows updates them: a superuser enabling a chain on
-- the attacker's table runs the table's CHECK constraint and statement
-- trigger as the table's owner, not as superuser
SET ROLE regress_priv_owner;
CREATE FUNCTION regress_priv_check(id int) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.regress_priv_escalate('check constraint');
	RETURN true;
END
$$;
CREATE TABLE regress_priv_rows (id int CHECK (public.regress_priv_check(id)), tenant text);
INSERT INTO regress_priv_rows VALUES (1, 'acme'), (2, 'globex');
TRUNCATE regress_priv_ran;
CREATE TRIGGER a_stmt AFTER UPDATE ON regress_priv_rows
	FOR EACH STATEMENT EXECUTE FUNCTION regress_priv_trap();
RESET ROLE;
SELECT envault.enable_audit_chain('regress_priv_rows', 'tenant') AS rows_linked;
SELECT who, what, count(*) FROM regress_priv_ran GROUP BY who, what ORDER BY what;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_priv_owner';
SELECT tenant, rows_checked, ok FROM envault.verify_chain('regress_priv_rows');

-- clean up
SELECT envault.disable_audit_chain('regress_priv_rows');
SELECT envault.disable_audit_chain('regress_priv_audit');
DROP TABLE regress_priv_rows, regress_priv_ref, regress_priv_audit, regress_priv_ran;
DROP FUNCTION regress_priv_check(int), regress_priv_trap(), regress_priv_escalate(text);
REVOKE CREATE ON SCHEMA public FROM regress_priv_owner;
DROP ROLE regress_priv_owner;
