-- bench/harness.sql: the timing harness every topic file uses.
--
-- Read first by bench/run.sh, in the same psql session as the topic files
-- and bench/report.sql.  Everything lives in schema "bench" of the
-- throwaway database.
--
-- A topic file (bench/<topic>.sql) creates its data and registers
--   CALL bench.add_case(...)   the queries to time,
--   CALL bench.add_ratio(...)  the ratios to report,
--   CALL bench.add_fact(...)   lines for the report header (or INSERT INTO
--                              bench.facts),
-- then runs CALL bench.run('<topic>').  A case is one query of the form
-- SELECT count(f(col)) FROM table, or anything else returning one bigint:
-- the number of values computed, which is checked against the case's row
-- count, so a case that silently computed nothing is an error.  Slow cases,
-- where a warm-up run would cost more than it could change, pass
-- warmup => false.  A case with run_as => '<role>' runs its query (and only
-- its query) under SET ROLE, so that row-level security applies to it.
--
-- External cases (CALL bench.add_external_case(...)) are statements that
-- cannot run inside bench.run(): a procedure that COMMITs, such as
-- envault.reencrypt_column, cannot be called from a function.  The topic
-- file runs them as top-level statements between
--   CALL bench.start('<case>');
--   <the statement>;
--   CALL bench.stop('<case>', <round>, '<check query>');
-- bench.stop() reads clock_timestamp() first, then runs the check query
-- (untimed), which must return the case's row count, and stores the
-- timing like bench.run() does.  The measured time includes two client
-- round trips on a Unix socket (well under a millisecond), so external
-- cases are meant for statements that take seconds.
--
-- Absolute targets (CALL bench.add_limit(...)) are printed for reading,
-- like the ratio targets, and never asserted: they hold on one machine
-- only.
--
-- Method: bench.run() runs rounds 1..reps; in each round every case of the
-- topic runs once, interleaved with the others (the starting case rotates
-- each round, so no case always follows the same one), and is timed with
-- clock_timestamp() around EXECUTE.  Each timed run of a warmup case is
-- immediately preceded by one untimed run of the same query: the key cache,
-- the table's pages and pgcrypto's cipher lookup are warm for every timed
-- run, whatever ran before (on some virtual machines, memory left untouched
-- for a few seconds is reclaimed and the next scan pays to fault it back
-- in).  Each round commits, so timings are kept as they are taken.  The
-- report uses the median of the rounds.

SET client_min_messages = notice;

CREATE SCHEMA bench;

CREATE TABLE bench.cases (
	ord			serial,
	topic		text NOT NULL,
	name		text PRIMARY KEY,
	baseline	text REFERENCES bench.cases (name),	-- ratio shown in the table
	query		text NOT NULL,
	nrows		bigint NOT NULL,	-- values the query computes
	reps		integer NOT NULL,	-- timed rounds
	warmup		boolean NOT NULL,	-- run once untimed before each timed run
	run_as		name,				-- SET ROLE for the query, or NULL
	external	boolean NOT NULL DEFAULT false	-- timed by bench.start/stop
);

CREATE TABLE bench.timings (
	name		text NOT NULL REFERENCES bench.cases (name),
	round		integer NOT NULL,
	ms			double precision NOT NULL,
	PRIMARY KEY (name, round)
);

-- Ratios for the summary: median(num) / median(den); "net" subtracts the
-- median of case "floor" (the scan without any function) from both.
CREATE TABLE bench.ratios (
	ord			serial,
	label		text NOT NULL,
	num			text NOT NULL REFERENCES bench.cases (name),
	den			text NOT NULL REFERENCES bench.cases (name),
	floor		text REFERENCES bench.cases (name),
	target		double precision	-- informative only, never asserted
);

-- Absolute targets on one case: its median in ms, or per row in us.
CREATE TABLE bench.limits (
	ord			serial,
	label		text NOT NULL,
	name		text NOT NULL REFERENCES bench.cases (name),
	unit		text NOT NULL CHECK (unit IN ('ms', 'us per row')),
	below		double precision NOT NULL	-- informative only, never asserted
);

-- External cases being timed: when bench.start() was called.
CREATE TABLE bench.clock (
	name		text PRIMARY KEY REFERENCES bench.cases (name),
	t0			timestamptz NOT NULL
);

-- Facts a topic wants printed above the tables (row count, table size...).
CREATE TABLE bench.facts (
	ord			serial,
	fact		text NOT NULL,
	value		text NOT NULL
);

CREATE PROCEDURE bench.add_case(topic text, name text, baseline text,
							   query text, nrows bigint, reps integer,
							   warmup boolean DEFAULT true,
							   run_as name DEFAULT NULL)
LANGUAGE sql
BEGIN ATOMIC
	INSERT INTO bench.cases (topic, name, baseline, query, nrows, reps, warmup,
							 run_as)
	VALUES (topic, name, baseline, query, nrows, reps, warmup, run_as);
END;

-- statement: the text shown in the report; the topic file runs it itself.
CREATE PROCEDURE bench.add_external_case(topic text, name text, baseline text,
										statement text, nrows bigint,
										reps integer)
LANGUAGE sql
BEGIN ATOMIC
	INSERT INTO bench.cases (topic, name, baseline, query, nrows, reps, warmup,
							 external)
	VALUES (topic, name, baseline, statement, nrows, reps, false, true);
END;

CREATE PROCEDURE bench.add_limit(label text, name text, unit text,
								below double precision)
LANGUAGE sql
BEGIN ATOMIC
	INSERT INTO bench.limits (label, name, unit, below)
	VALUES (label, name, unit, below);
END;

CREATE PROCEDURE bench.add_ratio(label text, num text, den text,
								floor text DEFAULT NULL,
								target double precision DEFAULT NULL)
LANGUAGE sql
BEGIN ATOMIC
	INSERT INTO bench.ratios (label, num, den, floor, target)
	VALUES (label, num, den, floor, target);
END;

CREATE PROCEDURE bench.add_fact(fact text, value text)
LANGUAGE sql
BEGIN ATOMIC
	INSERT INTO bench.facts (fact, value) VALUES (fact, value);
END;

-- Run one case once; returns its duration in milliseconds.
CREATE FUNCTION bench.time_case(c bench.cases)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
	t0		timestamptz;
	t1		timestamptz;
	n		bigint;
BEGIN
	IF c.run_as IS NOT NULL THEN
		EXECUTE format('SET ROLE %I', c.run_as);
	END IF;
	t0 := clock_timestamp();
	EXECUTE c.query INTO n;
	t1 := clock_timestamp();
	IF c.run_as IS NOT NULL THEN
		RESET ROLE;
	END IF;
	IF n IS DISTINCT FROM c.nrows THEN
		RAISE EXCEPTION 'bench case "%" computed % values, expected %',
			c.name, n, c.nrows;
	END IF;
	RETURN extract(epoch FROM t1 - t0) * 1000;
END
$$;

CREATE PROCEDURE bench.run(run_topic text)
LANGUAGE plpgsql AS $$
DECLARE
	c			bench.cases;
	ncases		integer;
	maxreps		integer;
	r			integer;
	ms			double precision;
BEGIN
	SELECT count(*), max(reps) INTO ncases, maxreps
	FROM bench.cases WHERE topic = run_topic AND NOT external;
	IF ncases = 0 THEN
		RAISE EXCEPTION 'no bench cases for topic "%"', run_topic;
	END IF;

	FOR r IN 1 .. maxreps LOOP
		RAISE NOTICE '% round %/%', run_topic, r, maxreps;
		FOR c IN
			SELECT * FROM bench.cases x
			WHERE x.topic = run_topic AND NOT x.external AND x.reps >= r
			ORDER BY ((SELECT count(*) FROM bench.cases y
					   WHERE y.topic = run_topic AND NOT y.external
						 AND y.ord < x.ord)
					  + ncases - r % ncases) % ncases
		LOOP
			IF c.warmup THEN
				PERFORM bench.time_case(c);
			END IF;
			ms := bench.time_case(c);
			INSERT INTO bench.timings VALUES (c.name, r, ms);
		END LOOP;
		COMMIT;
	END LOOP;
END
$$;

-- External cases: start the clock (a top-level CALL, so it commits).
CREATE PROCEDURE bench.start(case_name text)
LANGUAGE plpgsql AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM bench.cases c
				   WHERE c.name = case_name AND c.external) THEN
		RAISE EXCEPTION 'no external bench case "%"', case_name;
	END IF;
	DELETE FROM bench.clock k WHERE k.name = case_name;
	INSERT INTO bench.clock VALUES (case_name, clock_timestamp());
END
$$;

-- External cases: stop the clock, check, store the timing of round run_round.
CREATE PROCEDURE bench.stop(case_name text, run_round integer, check_query text)
LANGUAGE plpgsql AS $$
DECLARE
	t1		timestamptz := clock_timestamp();
	t0		timestamptz;
	want	bigint;
	n		bigint;
BEGIN
	DELETE FROM bench.clock k WHERE k.name = case_name RETURNING k.t0 INTO t0;
	IF t0 IS NULL THEN
		RAISE EXCEPTION 'bench.stop(%): bench.start was not called', case_name;
	END IF;
	SELECT c.nrows INTO want FROM bench.cases c WHERE c.name = case_name;
	EXECUTE check_query INTO n;
	IF n IS DISTINCT FROM want THEN
		RAISE EXCEPTION 'bench case "%" computed % values, expected %',
			case_name, n, want;
	END IF;
	INSERT INTO bench.timings
	VALUES (case_name, run_round, extract(epoch FROM t1 - t0) * 1000);
END
$$;

-- The audit rows an application writes (who did what to which object):
-- the template of the tables of topics audit and pgbench.
CREATE TABLE bench.audit_row (
	id			bigint GENERATED ALWAYS AS IDENTITY,
	tenant		text NOT NULL,
	actor		text NOT NULL,
	action		text NOT NULL,
	object_id	bigint NOT NULL,
	detail		jsonb,
	created_at	timestamptz NOT NULL DEFAULT now()
);

-- Median per case, and the ratio to its baseline.
CREATE VIEW bench.medians AS
SELECT c.ord, c.topic, c.name, c.baseline, c.nrows, count(t.ms) AS reps,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY t.ms) AS ms,
	   min(t.ms) AS min_ms, max(t.ms) AS max_ms
FROM bench.cases c LEFT JOIN bench.timings t USING (name)
GROUP BY c.ord, c.topic, c.name, c.baseline, c.nrows;
