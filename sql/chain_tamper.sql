-- chain_tamper: what a superuser can do to an audit chain behind envault's
-- back (session_replication_role = replica silences the chain's triggers
-- and event triggers), and how verify_chain names the first bad row and
-- the reason.  Uses regress_str() and regress_opt() from chain.
SET search_path = public, envault;
\set SHOW_CONTEXT never

CREATE TABLE regress_t (id int PRIMARY KEY, tenant text NOT NULL, note text);
SELECT envault.enable_audit_chain('regress_t', 'tenant');
-- one tenant per kind of tampering: 8 rows, a checkpoint, 2 more rows
INSERT INTO regress_t
SELECT 100 * t.n + g, t.name, 'row ' || g
  FROM unnest('{clean,change,delete,oldest,truncate,swap,forge,renumber,rewrite,badsig,gone,extra,head}'::text[])
       WITH ORDINALITY AS t(name, n),
       generate_series(1, 8) g;
SELECT count(*) AS checkpoints FROM envault.checkpoint('regress_t');
INSERT INTO regress_t
SELECT 100 * t.n + g, t.name, 'row ' || g
  FROM unnest('{clean,change,delete,oldest,truncate,swap,forge,renumber,rewrite,badsig,gone,extra,head}'::text[])
       WITH ORDINALITY AS t(name, n),
       generate_series(9, 10) g;
SELECT * FROM envault.verify_chain('regress_t') WHERE NOT ok;

-- the row hash of regress_t, computed independently (docs/audit-chain.md)
CREATE FUNCTION regress_t_hash(seq bigint, at timestamptz, prev bytea,
                               id int, tenant text, note text) RETURNS bytea
LANGUAGE sql AS $$
	SELECT sha256(convert_to('envault/v1/chain-row', 'UTF8')
	              || regress_str('public.regress_t') || regress_opt(tenant)
	              || int8send(seq)
	              || regress_str(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
	              || prev
	              || sha256(convert_to('envault/v1/chain-columns', 'UTF8') || int4send(3)
	                        || regress_str('id') || regress_str('integer')
	                        || regress_str('tenant') || regress_str('pg_catalog.text')
	                        || regress_str('note') || regress_str('pg_catalog.text'))
	              || regress_opt(id::text) || regress_opt(tenant) || regress_opt(note))
$$;
SELECT count(*) AS rows,
       count(*) FILTER (WHERE regress_t_hash(envault_seq, envault_at, envault_prev, id, tenant, note)
                              = envault_hash) AS recomputed
  FROM regress_t;

SET session_replication_role = replica;
-- change one field of a middle row
UPDATE regress_t SET note = 'ROW 5' WHERE tenant = 'change' AND envault_seq = 5;
-- delete a middle row, and the oldest one
DELETE FROM regress_t WHERE tenant = 'delete' AND envault_seq = 5;
DELETE FROM regress_t WHERE tenant = 'oldest' AND envault_seq = 1;
-- delete the newest rows, behind the checkpoint at 8
DELETE FROM regress_t WHERE tenant = 'truncate' AND envault_seq >= 7;
-- swap two rows' sequence numbers
UPDATE regress_t SET envault_seq = envault_seq + 1000 WHERE tenant = 'swap' AND envault_seq IN (4, 6);
UPDATE regress_t SET envault_seq = CASE envault_seq WHEN 1004 THEN 6 ELSE 4 END
 WHERE tenant = 'swap' AND envault_seq > 1000;
-- replace a row by a forged one with a correctly recomputed hash and link
DELETE FROM regress_t WHERE tenant = 'forge' AND envault_seq = 5;
INSERT INTO regress_t (id, tenant, note, envault_seq, envault_at, envault_prev, envault_hash)
SELECT 705, 'forge', 'forged', 5, p.envault_at, p.envault_hash,
       regress_t_hash(5, p.envault_at, p.envault_hash, 705, 'forge', 'forged')
  FROM regress_t p WHERE p.tenant = 'forge' AND p.envault_seq = 4;
-- insert a forged row in the middle, renumbering the rows after it
UPDATE regress_t SET envault_seq = envault_seq + 1000 WHERE tenant = 'renumber' AND envault_seq >= 5;
UPDATE regress_t SET envault_seq = envault_seq - 999 WHERE tenant = 'renumber' AND envault_seq > 1000;
INSERT INTO regress_t (id, tenant, note, envault_seq, envault_at, envault_prev, envault_hash)
SELECT 899, 'renumber', 'forged', 5, p.envault_at, p.envault_hash,
       regress_t_hash(5, p.envault_at, p.envault_hash, 899, 'renumber', 'forged')
  FROM regress_t p WHERE p.tenant = 'renumber' AND p.envault_seq = 4;
-- rewrite a row and recompute every hash after it: a consistent chain, but
-- not the one the checkpoint signed
UPDATE regress_t SET note = 'rewritten' WHERE tenant = 'rewrite' AND envault_seq = 3;
DO $$
DECLARE
	r record;
	prev bytea;
	h bytea;
BEGIN
	FOR r IN SELECT * FROM regress_t WHERE tenant = 'rewrite' ORDER BY envault_seq LOOP
		IF r.envault_seq >= 3 THEN
			h := regress_t_hash(r.envault_seq, r.envault_at, prev, r.id, r.tenant, r.note);
			UPDATE regress_t SET envault_prev = prev, envault_hash = h WHERE id = r.id;
		ELSE
			h := r.envault_hash;
		END IF;
		prev := h;
	END LOOP;
END
$$;
-- a second row 3, forged with a correctly recomputed hash and link
INSERT INTO regress_t (id, tenant, note, envault_seq, envault_at, envault_prev, envault_hash)
SELECT 1299, 'extra', 'forged', 3, p.envault_at, p.envault_hash,
       regress_t_hash(3, p.envault_at, p.envault_hash, 1299, 'extra', 'forged')
  FROM regress_t p WHERE p.tenant = 'extra' AND p.envault_seq = 2;
-- delete the newest row, after the checkpoint: envault.chain_heads still
-- names it
DELETE FROM regress_t WHERE tenant = 'head' AND envault_seq = 10;
-- damage a checkpoint's signature
UPDATE envault.checkpoints c
   SET note = regexp_replace(note, ' [A-Za-z0-9+/]{10}', ' AAAAAAAAAA')
  FROM envault.audit_chains a
 WHERE a.chain_id = c.chain_id AND a.tbl = 'regress_t'::regclass AND c.tenant = 'badsig';
-- delete every row of a tenant
DELETE FROM regress_t WHERE tenant = 'gone';
RESET session_replication_role;

SELECT * FROM envault.verify_chain('regress_t') ORDER BY tenant;
SELECT * FROM envault.verify_chain('regress_t', 'rewrite');
-- the rewritten chain is consistent in itself: only the checkpoint tells
SELECT count(*) FILTER (WHERE regress_t_hash(envault_seq, envault_at, envault_prev, id, tenant, note)
                              = envault_hash) AS recomputed,
       count(*) AS rows
  FROM regress_t WHERE tenant = 'rewrite';

-- a superuser who also rewrites envault.chain_heads hides the loss of rows
-- that no checkpoint covers yet: the reason to take checkpoints often
SET session_replication_role = replica;
UPDATE envault.chain_heads h SET seq = 9, hash = r.envault_hash
  FROM regress_t r, envault.audit_chains c
 WHERE c.chain_id = h.chain_id AND c.tbl = 'regress_t'::regclass
   AND h.tenant = 'head' AND r.tenant = 'head' AND r.envault_seq = 9;
RESET session_replication_role;
SELECT * FROM envault.verify_chain('regress_t', 'head');

-- a checkpoint that does not even parse is exported too, so that a verifier
-- outside the database finds it as verify_chain does
SET session_replication_role = replica;
UPDATE envault.checkpoints c SET note = 'not a checkpoint'
  FROM envault.audit_chains a
 WHERE a.chain_id = c.chain_id AND a.tbl = 'regress_t'::regclass AND c.tenant = 'badsig';
RESET session_replication_role;
SELECT tenant, ok, first_bad_seq, reason FROM envault.verify_chain('regress_t', 'badsig');
SELECT json_array_length(e -> 'checkpoints') AS exported_checkpoints,
       e -> 'checkpoints' ->> 0 AS note
  FROM envault.export_chain('regress_t', 'badsig') e;
-- an export with no rows after since carries no checkpoint up to the head
SELECT json_array_length(e -> 'rows') AS rows, json_array_length(e -> 'checkpoints') AS checkpoints
  FROM envault.export_chain('regress_t', 'change', now() + interval '1 day') e;
SELECT json_array_length(e -> 'checkpoints') AS checkpoints_of_all_rows
  FROM envault.export_chain('regress_t', 'change') e;
