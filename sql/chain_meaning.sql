-- chain_meaning: commands that would change what a chained table's stored
-- values mean without changing a single byte the row hashes cover.  Each was
-- accepted before 0.3.0 (issue 14) and is refused now, whichever object the
-- command names: a type, a domain, a parent table, a trigger on the parent.
SET search_path = public, envault;
\set SHOW_CONTEXT never
\set VERBOSITY default

CREATE TYPE regress_addr AS (street text, city text);
CREATE TYPE regress_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN regress_code AS text CHECK (VALUE ~ '^[a-z]+$');
CREATE TABLE regress_m (tenant text NOT NULL, addr regress_addr,
                        mood regress_mood, code regress_code,
                        name text COLLATE "C");
SELECT envault.enable_audit_chain('regress_m', 'tenant');
INSERT INTO regress_m VALUES ('t1', ROW('Main St', 'Springfield'), 'sad', 'abc', 'x');

-- what the guard compares: one line per column (the four chain columns
-- too), types down to composite attributes, enum labels, domain bases and
-- collations
SELECT envault.chain_meaning('regress_m');
SELECT columns_meaning = envault.chain_meaning('regress_m') AS recorded
  FROM envault.audit_chains WHERE tbl = 'regress_m'::regclass;

-- a composite's fields swap meaning: street and city renamed around
ALTER TYPE regress_addr RENAME ATTRIBUTE street TO tmp;
ALTER TYPE regress_addr ADD ATTRIBUTE zip text;
-- an enum value reads differently
ALTER TYPE regress_mood RENAME VALUE 'sad' TO 'happy-ish';
-- a type or domain replaced by another of the same name
ALTER TYPE regress_mood RENAME TO regress_mood_old;
ALTER DOMAIN regress_code RENAME TO regress_code_old;
ALTER TYPE regress_addr SET SCHEMA envault;
-- dropping a type drops the hashed column with it
DROP TYPE regress_mood CASCADE;
DROP DOMAIN regress_code CASCADE;

-- adding an enum label changes no stored value: accepted, and recorded
ALTER TYPE regress_mood ADD VALUE 'ecstatic';
INSERT INTO regress_m VALUES ('t1', NULL, 'ecstatic', NULL, NULL);
SELECT columns_meaning = envault.chain_meaning('regress_m') AS recorded,
       columns_meaning LIKE '%''ecstatic''%' AS has_new_label
  FROM envault.audit_chains WHERE tbl = 'regress_m'::regclass;
-- and the new label cannot be renamed either
ALTER TYPE regress_mood RENAME VALUE 'ecstatic' TO 'joy';

-- commands that change nothing a value means stay allowed
CREATE INDEX ON regress_m (tenant, envault_seq);
COMMENT ON TABLE regress_m IS 'audited';
ALTER TYPE regress_mood OWNER TO CURRENT_USER;
ALTER DOMAIN regress_code ADD CONSTRAINT short CHECK (length(VALUE) < 100);
CREATE TABLE regress_unrelated (a int);
ALTER TABLE regress_unrelated ADD COLUMN b text;
DROP TABLE regress_unrelated;

-- reg* types are refused wherever they hide: arrays, composites, domains,
-- ranges
CREATE TABLE regress_reg1 (tenant text, r regclass[]);
SELECT envault.enable_audit_chain('regress_reg1', 'tenant');
CREATE TYPE regress_regpair AS (t regtype, n int);
CREATE TABLE regress_reg2 (tenant text, r regress_regpair);
SELECT envault.enable_audit_chain('regress_reg2', 'tenant');
CREATE DOMAIN regress_regdom AS regclass;
CREATE TABLE regress_reg3 (tenant text, r regress_regdom[]);
SELECT envault.enable_audit_chain('regress_reg3', 'tenant');
-- nor can a composite column gain one later
CREATE TYPE regress_pair AS (a int);
CREATE TABLE regress_reg4 (tenant text, p regress_pair);
SELECT envault.enable_audit_chain('regress_reg4', 'tenant');
ALTER TYPE regress_pair ADD ATTRIBUTE t regtype;
DROP TABLE regress_reg1, regress_reg2, regress_reg3;
DROP TYPE regress_regpair;
DROP DOMAIN regress_regdom;

-- a partition cannot be chained: its rows are reached through its parent,
-- whose DDL, triggers and ON CONFLICT would apply to it
CREATE TABLE regress_mp (tenant text NOT NULL, v text COLLATE "C")
  PARTITION BY LIST (tenant);
CREATE TABLE regress_mp_a PARTITION OF regress_mp FOR VALUES IN ('a');
SELECT envault.enable_audit_chain('regress_mp_a', 'tenant');
DROP TABLE regress_mp;
-- nor can a chained table become one (nor inherit: ordinary chain DDL)
CREATE TABLE regress_mp_b (tenant text NOT NULL, v text COLLATE "C");
SELECT envault.enable_audit_chain('regress_mp_b', 'tenant');
CREATE TABLE regress_mp (LIKE regress_mp_b) PARTITION BY LIST (tenant);
ALTER TABLE regress_mp ATTACH PARTITION regress_mp_b FOR VALUES IN ('b');
CREATE TABLE regress_inh_parent (tenant text NOT NULL, v text COLLATE "C");
ALTER TABLE regress_mp_b INHERIT regress_inh_parent;

-- a chained partition attached before 0.3.0 (made here by a superuser
-- with the guard disabled; the upgrade records what its columns mean):
-- DDL issued on the parent recurses to it, and is refused
ALTER EVENT TRIGGER envault_chain_ddl_guard DISABLE;
ALTER TABLE regress_mp ATTACH PARTITION regress_mp_b FOR VALUES IN ('b');
ALTER EVENT TRIGGER envault_chain_ddl_guard ENABLE;
UPDATE envault.audit_chains SET columns_meaning = envault.chain_meaning(tbl)
 WHERE tbl = 'regress_mp_b'::regclass;
INSERT INTO regress_mp (tenant, v) VALUES ('b', 'one');
ALTER TABLE regress_mp ALTER COLUMN v TYPE varchar(3) USING 'bad';
ALTER TABLE regress_mp ALTER COLUMN v TYPE text COLLATE "POSIX";
ALTER TABLE regress_mp ADD COLUMN extra text;
ALTER TABLE regress_mp ADD COLUMN shown text GENERATED ALWAYS AS (v || '!') STORED;
ALTER TABLE regress_mp RENAME COLUMN v TO w;
ALTER TABLE regress_mp DETACH PARTITION regress_mp_b;
-- a row trigger on the parent is cloned to the partition, where it would
-- fire after envault's (its name sorts after zz_envault_chain)
CREATE FUNCTION regress_mp_rewrite() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN NEW.v := 'rewritten'; RETURN NEW; END $$;
CREATE TRIGGER zzz_rewrite BEFORE INSERT ON regress_mp
  FOR EACH ROW EXECUTE FUNCTION regress_mp_rewrite();
-- one that sorts before it is fine
CREATE TRIGGER aaa_rewrite BEFORE INSERT ON regress_mp
  FOR EACH ROW EXECUTE FUNCTION regress_mp_rewrite();
DROP TRIGGER aaa_rewrite ON regress_mp;
-- ON CONFLICT through the parent would link a row, then skip it
CREATE UNIQUE INDEX ON regress_mp (tenant, v);
INSERT INTO regress_mp (tenant, v) VALUES ('b', 'one') ON CONFLICT DO NOTHING;
WITH w AS (INSERT INTO regress_mp (tenant, v) VALUES ('b', 'two')
           ON CONFLICT DO NOTHING RETURNING 1)
SELECT count(*) FROM w;
INSERT INTO regress_mp (tenant, v) VALUES ('b', 'two');

-- every chain still verifies, nothing was changed
SELECT tenant, rows_checked, ok FROM envault.verify_chain('regress_m');
SELECT tenant, rows_checked, ok FROM envault.verify_chain('regress_mp_b');
SELECT tenant, envault_seq, v FROM regress_mp ORDER BY envault_seq;

-- disabling the chain makes the table ordinary again, and the type can change
SELECT envault.disable_audit_chain('regress_m');
ALTER TYPE regress_mood RENAME VALUE 'sad' TO 'blue';
DROP TABLE regress_m;
SELECT envault.disable_audit_chain('regress_mp_b');
SELECT envault.disable_audit_chain('regress_reg4');
DROP TABLE regress_mp, regress_inh_parent, regress_reg4;
DROP TYPE regress_addr, regress_mood, regress_pair;
DROP DOMAIN regress_code;
DROP FUNCTION regress_mp_rewrite();
