-- bench/report.sql: print the results of every topic that ran.
--
-- Cases, one row per case: the median over the timed rounds, the median
-- per row, and the ratio of the median to the case's baseline.
-- Ratios, those the topics asked for: plain (whole query against whole
-- query, the scan included on both sides), net of the scan floor (the
-- floor case's median subtracted from both: the functions alone), and
-- fastest (the fastest round of each side: interference from other work
-- on the machine only ever slows a round down, so this is the ratio with
-- the least of it).  A target is judged on the medians; when only the
-- fastest rounds meet it, the report says so.
-- Absolute targets, in ms or per row, hold on this machine only.
-- Targets are printed for reading, never asserted.
-- Then every timed round, to show how noisy the run was, and the queries.

\pset format aligned
\pset border 1
\pset footer off
\pset null ''

\echo
\echo '== Setup'
SELECT fact, value FROM (
	SELECT 0 AS ord, 'server' AS fact, version() AS value
	UNION ALL
	SELECT 1, 'settings', 'jit=' || current_setting('jit')
		|| ', max_parallel_workers_per_gather='
		|| current_setting('max_parallel_workers_per_gather')
		|| ', envault.key_cache_ttl=' || current_setting('envault.key_cache_ttl')
	UNION ALL
	SELECT 1 + ord, fact, value FROM bench.facts
	UNION ALL
	SELECT 1000, 'timed rounds per case', string_agg(DISTINCT reps::text, ' or ')
		|| ' (median); fast cases: each timed run right after an untimed run'
	FROM bench.cases
) s ORDER BY ord;

\echo '== Cases (median of the timed rounds)'
SELECT m.name AS "case",
	   to_char(m.ms, 'FM999999990.0') AS "ms (median)",
	   to_char(m.ms * 1000 / m.nrows, 'FM99999990.000') AS "per-row us",
	   CASE WHEN m.baseline IS NULL THEN ''
			ELSE to_char(m.ms / b.ms, 'FM99990.00') || ' x ' || m.baseline
	   END AS "ratio vs baseline"
FROM bench.medians m LEFT JOIN bench.medians b ON b.name = m.baseline
ORDER BY m.ord;

\echo '== Ratios (net = floor case subtracted from both sides; fastest = fastest round over fastest round)'
SELECT r.label AS "ratio",
	   to_char(n.ms / d.ms, 'FM99990.000') AS "value",
	   to_char((n.ms - f.ms) / (d.ms - f.ms), 'FM99990.000') AS "net of scan",
	   to_char(n.min_ms / d.min_ms, 'FM99990.000') AS "fastest",
	   CASE WHEN r.target IS NULL THEN ''
			ELSE '<= ' || r.target
				 || CASE WHEN n.ms / d.ms <= r.target THEN ' (met)'
						 WHEN n.min_ms / d.min_ms <= r.target
						 THEN ' (met by fastest only)'
						 ELSE ' (NOT met)' END
	   END AS "target"
FROM bench.ratios r
JOIN bench.medians n ON n.name = r.num
JOIN bench.medians d ON d.name = r.den
LEFT JOIN bench.medians f ON f.name = r.floor
ORDER BY r.ord;

\echo '== Absolute targets (this machine only)'
SELECT l.label AS "absolute target",
	   CASE l.unit WHEN 'ms' THEN to_char(m.ms, 'FM999999990.0') || ' ms'
			ELSE to_char(m.ms * 1000 / m.nrows, 'FM99999990.000') || ' us per row'
	   END AS "measured (median)",
	   '< ' || l.below || ' ' || l.unit
	   || CASE WHEN (CASE l.unit WHEN 'ms' THEN m.ms
						 ELSE m.ms * 1000 / m.nrows END) < l.below
			   THEN ' (met)' ELSE ' (NOT met)' END AS "target"
FROM bench.limits l JOIN bench.medians m ON m.name = l.name
ORDER BY l.ord;

\echo '== Every timed round (ms, in round order)'
SELECT m.name AS "case",
	   (SELECT string_agg(to_char(t.ms, 'FM999999990.0'), '  ' ORDER BY t.round)
		FROM bench.timings t WHERE t.name = m.name) AS "rounds",
	   to_char(100 * (m.max_ms - m.min_ms) / m.ms, 'FM990.0') || ' %' AS "(max - min) / median"
FROM bench.medians m
ORDER BY m.ord;

\echo '== Queries (run as: the role of SET ROLE around the query; timed: in bench.run, or by bench.start/stop around top-level statements)'
SELECT name AS "case", coalesce(run_as, '') AS "run as",
	   CASE WHEN external THEN 'start/stop' ELSE 'bench.run' END AS "timed",
	   query
FROM bench.cases ORDER BY ord;
