# envault TAP test: concurrent writers of audit chains never fork a chain,
# leave a gap or a duplicate sequence number, or deadlock; writers of
# different tenants do not wait for each other; rolled-back inserts leave
# no trace (docs/audit-chain.md, "Concurrency").
#
# pgbench runs custom scripts with 8 clients on 2 threads against one
# chained table, audit.  Every transaction draws a number from a sequence,
# tags its rows with it, and when it commits records in an ordinary table,
# ledger, how many chained rows it kept; a row a transaction wrote and then
# undid (a savepoint rolled back, an error caught in a DO block, a ROLLBACK)
# is tagged 'undone' or 'aborted', so that it cannot hide among the kept
# ones.  The phases use tenants of their own:
#
#   a. 8 clients on 8 tenants, one each;
#   b. 8 clients on 1 tenant;
#   c. a mix on 4 tenants: 1 transaction in 10 rolls back, 1 in 4 rolls back
#      a savepoint, every one undoes a row in a DO block that raises and
#      catches the error, 1 in 4 also writes a second tenant in the
#      savepoint, 1 in 3 runs at REPEATABLE READ;
#   d. every transaction writes two of 3 tenants, in random order, so that
#      transactions writing the same tenants in opposite orders (and in
#      cycles of three) run concurrently; pgbench retries serialization
#      failures (--max-tries), and reports deadlock failures separately.
#      deadlock_timeout is 100ms, so that a deadlock could not go unnoticed.
#      Then the same, deterministically, with two sessions.
#   e. a session holds an open transaction after inserting into tenant e1:
#      an insert into e2 in another session completes without waiting for
#      any lock, one into e1 waits for the chain lock (seen in pg_locks and
#      pg_stat_activity) and, once the first commits, gets the next number.
#   f. INSERT ... ON CONFLICT, which could skip a row after it was linked,
#      is refused, also inside a WITH query.
#
# During b and d, another session signs checkpoints and verifies every
# chain, over and over: verification never sees a problem while writers
# commit around it.
#
# After each phase: verify_chain() finds every chain of the table sound and
# checks exactly the rows of the committed transactions; independently of
# it, in SQL, each tenant's numbers run 1, 2, 3 ... without gap or
# repetition, each row links to the hash of the row before it, each
# transaction's rows of a tenant are consecutive (one writer at a time); the
# rows are exactly those the ledger says were committed, none undone or
# aborted is there, and the committed transactions are those pgbench counts.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest
  qw(random_key_hex start_script finish_script query_is chain_lock_key);
use IPC::Run;
use PostgreSQL::Test::BackgroundPsql;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $timeout = $PostgreSQL::Test::Utils::timeout_default;

my $node = PostgreSQL::Test::Cluster->new('chain_concurrency');
$node->init;
# No statement logging: pgbench runs thousands.
$node->append_conf(
	'postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key = '"
	  . random_key_hex() . "'\n"
	  . "envault.signing_key = '"
	  . random_key_hex() . "'\n"
	  . "deadlock_timeout = '100ms'\n"
	  . "max_connections = 40\n"
	  . "log_statement = none\n");
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
CREATE TABLE audit (
	id		bigserial PRIMARY KEY,
	tx		bigint NOT NULL,	-- the transaction that wrote the row
	tenant	text NOT NULL,
	client	integer NOT NULL,
	kind	text NOT NULL CHECK (kind IN ('kept', 'undone', 'aborted'))
);
SELECT envault.enable_audit_chain('audit', 'tenant');
CREATE INDEX ON audit (tx);
-- every committed transaction: its phase and how many rows it kept
CREATE TABLE ledger (tx bigint PRIMARY KEY, phase text NOT NULL, nrows integer NOT NULL);
CREATE SEQUENCE txn;
-- one number per transaction that a script rolled back on purpose
CREATE SEQUENCE rolled_back;
});

# Run pgbench with script $script (8 clients, 2 threads, @opts); returns
# its counts: processed, total, failed, serialization and deadlock
# failures, transactions retried and retries.
sub pgbench
{
	my ($name, $script, @opts) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $file = $node->basedir . "/pgbench_$name.sql";
	open my $fh, '>', $file or die "could not create \"$file\": $!";
	print $fh $script or die "could not write \"$file\": $!";
	close $fh or die "could not close \"$file\": $!";
	my ($stdout, $stderr) = ('', '');
	my $ok = IPC::Run::run(
		[
			$node->installed_command('pgbench'), '-n',
			'-c', '8', '-j', '2', @opts,
			'--failures-detailed', '-f', $file,
			$node->connstr('postgres')
		],
		'<', '/dev/null',
		'>', \$stdout,
		'2>', \$stderr,
		IPC::Run::timeout(3 * $timeout));
	ok($ok, "$name: pgbench ran to the end") or diag("$stdout\n$stderr");
	my %r;
	($r{processed}, $r{total}) =
	  $stdout =~ /^number of transactions actually processed: (\d+)\/(\d+)$/m;
	($r{failed}) = $stdout =~ /^number of failed transactions: (\d+) /m;
	($r{serialization}) =
	  $stdout =~ /^number of serialization failures: (\d+) /m;
	($r{deadlock}) = $stdout =~ /^number of deadlock failures: (\d+) /m;
	($r{retried}) = $stdout =~ /^number of transactions retried: (\d+) /m;
	($r{retries}) = $stdout =~ /^total number of retries: (\d+)$/m;
	# without --max-tries pgbench prints no retry counts
	$r{retried} //= 0;
	$r{retries} //= 0;
	foreach my $k (qw(processed total failed serialization deadlock))
	{
		die "pgbench printed no \"$k\" count:\n$stdout\n$stderr"
		  unless defined $r{$k};
	}
	note "$name: pgbench: "
	  . join(', ', map { "$_ $r{$_}" } sort keys %r);
	return \%r;
}

# The chains of the tenants whose names start with $prefix, after a phase
# whose transactions are in the ledger as $phase.
sub check_chains
{
	my ($phase, $prefix, $ntenants) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $tenants = "tenant LIKE '$prefix%'";
	my $nrows = $node->safe_psql('postgres',
		"SELECT sum(nrows) FROM ledger WHERE phase = '$phase'");

	query_is($node,
		qq{SELECT count(*) FILTER (WHERE NOT ok) || ' bad of ' || count(*)
		          || ', ' || sum(rows_checked)
		     FROM envault.verify_chain('audit') WHERE $tenants},
		"0 bad of $ntenants, $nrows",
		"$phase: verify_chain finds all $ntenants chains sound, with the $nrows rows committed"
	);
	query_is($node,
		q{SELECT count(*) FILTER (WHERE NOT ok) FROM envault.verify_chain('audit')},
		'0', "$phase: and every other chain of the table too");
	query_is($node,
		qq{SELECT count(*) || ' ' || sum(n) FROM (
		     SELECT tenant, count(*) AS n FROM audit WHERE $tenants GROUP BY tenant
		     HAVING count(*) = max(envault_seq) AND min(envault_seq) = 1
		        AND count(DISTINCT envault_seq) = count(*)) s},
		"$ntenants $nrows",
		"$phase: per tenant, count(*) = max(envault_seq), numbers from 1, no duplicate, so none missing"
	);
	query_is($node,
		qq{SELECT count(*) FROM (
		     SELECT envault_prev, lag(envault_hash, 1,
		              '\\x0000000000000000000000000000000000000000000000000000000000000000')
		              OVER (PARTITION BY tenant ORDER BY envault_seq) AS before
		       FROM audit WHERE $tenants) s
		    WHERE envault_prev IS DISTINCT FROM before},
		'0',
		"$phase: every row links to the hash of the row before it (row 1 to the genesis value)"
	);
	query_is($node,
		qq{SELECT count(*) FROM (
		     SELECT FROM audit WHERE $tenants GROUP BY tenant, tx
		     HAVING max(envault_seq) - min(envault_seq) + 1 <> count(*)) s},
		'0',
		"$phase: each transaction's rows of a tenant are consecutive in its chain"
	);
	query_is($node,
		qq{SELECT count(*) FROM ledger l
		    WHERE phase = '$phase'
		      AND nrows <> (SELECT count(*) FROM audit a WHERE a.tx = l.tx)},
		'0',
		"$phase: every committed transaction has exactly the rows it kept");
	query_is($node,
		qq{SELECT count(*) FROM audit a
		    WHERE $tenants
		      AND (kind <> 'kept'
		           OR NOT EXISTS (SELECT FROM ledger l WHERE l.tx = a.tx AND phase = '$phase'))},
		'0',
		"$phase: no row of a transaction rolled back, or undone in it, is there");
	return;
}

# While pgbench runs phase $phase, a session signs checkpoints of the
# table's chains and verifies them, again and again, until the ledger holds
# the phase's $ntx transactions: verification under concurrent writes never
# reports a problem.  Lines: "checkpoints signed | chains not ok | detail".
sub start_verifier
{
	my ($phase, $ntx) = @_;
	my $sql = '';
	foreach (1 .. 5000)
	{
		$sql .= q{SELECT count(*) FROM envault.checkpoint('audit') \gset
SELECT :count || ' | ' || count(*) FILTER (WHERE NOT ok) || ' | '
       || coalesce(string_agg(tenant || ' ' || first_bad_seq || ' ' || reason, ', ')
                   FILTER (WHERE NOT ok), '')
  FROM envault.verify_chain('audit');
}
		  . "SELECT count(*) >= $ntx AS done FROM ledger WHERE phase = '$phase' \\gset\n"
		  . "\\if :done\n\\q\n\\endif\n";
	}
	return start_script($node, "verifier_$phase", $sql);
}

sub finish_verifier
{
	my ($v) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($out, $err) = finish_script($v);
	is($err, '', "$v->{name}: no error") or diag($err);
	my @lines = split /\n/, $out;
	my @bad = grep { !/^\d+ \| 0 \| $/ } @lines;
	my $signed = 0;
	$signed += (split / /)[0] foreach @lines;
	note "$v->{name}: "
	  . scalar(@lines)
	  . " verifications during the run, $signed checkpoints signed";
	cmp_ok(scalar(@lines), '>', 0, "$v->{name}: verified during the run");
	is(scalar(@bad), 0,
		"$v->{name}: every chain verified each time, checkpoints included")
	  or diag(join("\n", @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]));
	return;
}

# ==== a. 8 clients on 8 tenants ================================================

my $r = pgbench(
	'8_tenants', q{
\set n random(1, 3)
SELECT nextval('txn') AS tx \gset
BEGIN;
INSERT INTO audit (tx, tenant, client, kind)
SELECT :tx, 'a' || :client_id, :client_id, 'kept' FROM generate_series(1, :n);
INSERT INTO ledger VALUES (:tx, 'a', :n);
COMMIT;
}, '-t', '250');
is($r->{processed} . '/' . $r->{total} . ' ' . $r->{failed},
	'2000/2000 0', 'a: all 2000 transactions committed');
query_is($node, q{SELECT count(*) FROM ledger WHERE phase = 'a'},
	'2000', 'a: the ledger holds the 2000 transactions');
check_chains('a', 'a', 8);

# ==== b. 8 clients on 1 tenant ==================================================

my $verifier = start_verifier('b', 1600);
$r = pgbench(
	'1_tenant', q{
\set n random(1, 3)
SELECT nextval('txn') AS tx \gset
BEGIN;
INSERT INTO audit (tx, tenant, client, kind)
SELECT :tx, 'b', :client_id, 'kept' FROM generate_series(1, :n);
INSERT INTO ledger VALUES (:tx, 'b', :n);
COMMIT;
}, '-t', '200');
is($r->{processed} . '/' . $r->{total} . ' ' . $r->{failed},
	'1600/1600 0', 'b: all 1600 transactions committed');
finish_verifier($verifier);
query_is($node, q{SELECT count(*) FROM ledger WHERE phase = 'b'},
	'1600', 'b: the ledger holds the 1600 transactions');
check_chains('b', 'b', 1);
query_is($node,
	q{SELECT count(DISTINCT client) FROM audit WHERE tenant = 'b'},
	'8', 'b: all 8 clients wrote the one chain');

# ==== c. rollbacks, savepoints, errors caught, isolation levels ================

# A row's kind says what becomes of it: 'kept', 'undone' (its savepoint is
# rolled back, or its DO block raises), 'aborted' (its transaction rolls
# back).  The second tenant's rows are written in the savepoint only, so a
# transaction can also take its second chain lock in a subtransaction that
# is rolled back.
$r = pgbench(
	'mix', q{
\set t random(0, 3)
\set u random(0, 3)
\set r random(1, 10)
\set s random(1, 4)
\set w random(1, 4)
\set i random(1, 3)
SELECT nextval('txn') AS tx \gset
\if :i = 1
BEGIN ISOLATION LEVEL REPEATABLE READ;
\else
BEGIN;
\endif
INSERT INTO audit (tx, tenant, client, kind)
SELECT :tx, 'c' || :t, :client_id, CASE WHEN :r = 1 THEN 'aborted' ELSE 'kept' END
  FROM generate_series(1, 2);
SAVEPOINT sp;
INSERT INTO audit (tx, tenant, client, kind)
VALUES (:tx, 'c' || :t, :client_id,
        CASE WHEN :s = 1 THEN 'undone' WHEN :r = 1 THEN 'aborted' ELSE 'kept' END);
\if :w = 1
INSERT INTO audit (tx, tenant, client, kind)
VALUES (:tx, 'c' || :u, :client_id,
        CASE WHEN :s = 1 THEN 'undone' WHEN :r = 1 THEN 'aborted' ELSE 'kept' END);
\endif
\if :s = 1
ROLLBACK TO SAVEPOINT sp;
\else
RELEASE SAVEPOINT sp;
\endif
DO $$
BEGIN
	INSERT INTO audit (tx, tenant, client, kind) VALUES (:tx, 'c' || :t, :client_id, 'undone');
	RAISE EXCEPTION 'undo the insert';
EXCEPTION WHEN raise_exception THEN
	NULL;
END $$;
INSERT INTO audit (tx, tenant, client, kind)
VALUES (:tx, 'c' || :t, :client_id, CASE WHEN :r = 1 THEN 'aborted' ELSE 'kept' END);
\if :r = 1
SELECT nextval('rolled_back');
ROLLBACK;
\else
INSERT INTO ledger VALUES (:tx, 'c', 3 + (:s <> 1)::int * (1 + (:w = 1)::int));
COMMIT;
\endif
}, '-t', '250', '--max-tries=1000000');
is($r->{processed} . '/' . $r->{total} . ' ' . $r->{failed},
	'2000/2000 0',
	'c: all 2000 transactions ran to their COMMIT or ROLLBACK');
is($r->{deadlock}, 0, 'c: no deadlock');
my ($committed, $rolled) = split /\|/,
  $node->safe_psql(
	'postgres', q{
SELECT (SELECT count(*) FROM ledger WHERE phase = 'c') || '|'
       || (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM rolled_back)});
note "c: $committed transactions committed, $rolled rolled back";
is($committed + $rolled, 2000,
	'c: the committed transactions are those that did not roll back');
cmp_ok($rolled, '>', 0, 'c: some transactions rolled back');
query_is($node,
	q{SELECT bool_and(n > 0) FROM (
	    SELECT count(*) FILTER (WHERE nrows = 3) AS n FROM ledger WHERE phase = 'c'
	    UNION ALL SELECT count(*) FILTER (WHERE nrows = 4) FROM ledger WHERE phase = 'c'
	    UNION ALL SELECT count(*) FILTER (WHERE nrows = 5) FROM ledger WHERE phase = 'c') s},
	't',
	'c: committed transactions with a savepoint rolled back, released, and with a second tenant'
);
check_chains('c', 'c', 4);

# ==== d. two tenants in opposite orders ========================================

$verifier = start_verifier('d', 1600);
$r = pgbench(
	'opposite_orders', q{
\set k random(0, 2)
\set o random(1, 2)
SELECT nextval('txn') AS tx \gset
BEGIN;
INSERT INTO audit (tx, tenant, client, kind) VALUES (:tx, 'd' || :k, :client_id, 'kept');
INSERT INTO audit (tx, tenant, client, kind) VALUES (:tx, 'd' || (:k + :o) % 3, :client_id, 'kept');
INSERT INTO ledger VALUES (:tx, 'd', 2);
COMMIT;
}, '-t', '200', '--max-tries=1000000');
# A transaction that would wait for a chain lock smaller than one it holds
# fails at once with 40001 instead, and pgbench tries it again (a
# serialization failure is counted only once --max-tries is exhausted,
# which the other order finishing first precludes).  A deadlock would be a
# deadlock failure, never retried.
is($r->{deadlock}, 0, 'd: no deadlock failure');
finish_verifier($verifier);
is($r->{processed} . '/' . $r->{total} . ' ' . $r->{failed} . ' ' . $r->{serialization},
	'1600/1600 0 0',
	'd: all 1600 transactions committed, after retries');
note "d: $r->{retried} transactions retried after a serialization failure, "
  . "$r->{retries} retries in all";
query_is($node, q{SELECT count(*) FROM ledger WHERE phase = 'd'},
	'1600', 'd: the ledger holds the 1600 transactions');
query_is($node,
	q{SELECT count(*) FROM ledger l
	   WHERE phase = 'd'
	     AND (SELECT count(DISTINCT tenant) FROM audit a WHERE a.tx = l.tx) <> 2},
	'0', 'd: each committed transaction wrote two chains');
check_chains('d', 'd', 3);

# The same with two sessions, in the order that makes each wait for the
# other: tenants lo and hi, lo's lock key the smaller (as pg_locks shows
# them).  S2 holds lo and waits for hi, held by S1; S1 then needs lo, which
# is smaller than hi: it fails at once instead of waiting.
my @cand = ('k1', 'k2');
my %key = map {
	$_ => chain_lock_key($node,
		"INSERT INTO audit (tx, tenant, client, kind) VALUES (1000000000, '$_', 0, 'aborted')"
	  )
} @cand;
my ($lo, $hi) = sort { $key{$a} cmp $key{$b} } @cand;
note "chain lock keys: $lo $key{$lo} < $hi $key{$hi}";

# (transaction numbers from 10^9 on, far above the sequence's)
my $s1 = $node->background_psql('postgres', on_error_stop => 0);
my $s2 = $node->background_psql('postgres', on_error_stop => 0);
$s1->query_safe('\set VERBOSITY verbose');
my $s2_pid = $s2->query_safe('SELECT pg_backend_pid()');
$s1->query_safe(
	"BEGIN; INSERT INTO audit (tx, tenant, client, kind) VALUES (1000000001, '$hi', 1, 'aborted')"
);
$s2->query_safe(
	"BEGIN; INSERT INTO audit (tx, tenant, client, kind) VALUES (1000000002, '$lo', 2, 'kept')"
);
$s2->query_until(qr/waiting\n/,
	"\\echo waiting\nINSERT INTO audit (tx, tenant, client, kind) VALUES (1000000002, '$hi', 2, 'kept');\n\\echo inserted\n"
);
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) = 1 FROM pg_locks
 WHERE pid = $s2_pid AND locktype = 'advisory' AND objsubid = 17750 AND NOT granted}),
	'S2, holding the chain lock of lo, waits for that of hi');
my ($ret, $out, $err);
my ($out1, $failed) = $s1->query(
	"INSERT INTO audit (tx, tenant, client, kind) VALUES (1000000001, '$lo', 1, 'aborted')"
);
ok($failed, 'S1, holding hi, cannot insert into lo');
like(
	$s1->{stderr},
	qr/ERROR:  40001: could not serialize access to the audit chain of public\.audit, tenant '$lo'/,
	'S1 gets a serialization failure (40001), naming the chain and tenant');
unlike($s1->{stderr}, qr/40P01|deadlock detected/, 'not a deadlock');
$s1->{stderr} = '';
$s1->query_safe('ROLLBACK');
is($s2->query_until(qr/inserted\n/, ''),
	"inserted\n", 'S1 rolled back: S2 gets the chain lock of hi');
$s2->query_safe(q{INSERT INTO ledger VALUES (1000000002, 'k', 2); COMMIT});
query_is($node,
	qq{SELECT string_agg(tenant || ' ' || envault_seq || ' ' || tx, ', ' ORDER BY tenant)
	     FROM audit WHERE tenant IN ('$lo', '$hi')},
	join(', ', map { "$_ 1 1000000002" } sort @cand),
	'S2 committed: row 1 of each chain is its, nothing of S1 or of the rolled-back probes'
);
$s1->query_safe(
	"BEGIN; INSERT INTO audit (tx, tenant, client, kind) VALUES (1000000003, '$hi', 1, 'kept'), (1000000003, '$lo', 1, 'kept');"
	  . " INSERT INTO ledger VALUES (1000000003, 'k', 2); COMMIT");
query_is($node,
	q{SELECT string_agg(tenant || ' ' || envault_seq, ', ' ORDER BY tenant)
	    FROM audit WHERE tx = 1000000003},
	join(', ', map { "$_ 2" } sort @cand),
	'S1 tries again and succeeds: row 2 of each chain');
check_chains('k', 'k', 2);

# ==== e. writers of different tenants do not wait for each other ===============

$node->safe_psql('postgres',
	q{INSERT INTO audit (tx, tenant, client, kind) SELECT 1000000010, t, 0, 'kept'
	    FROM unnest('{e1,e1,e2}'::text[]) t;
	  INSERT INTO ledger VALUES (1000000010, 'e', 3)});
my $sa = $node->background_psql('postgres', on_error_stop => 0);
my $sb = $node->background_psql('postgres', on_error_stop => 0);
my $sc = $node->background_psql('postgres', on_error_stop => 0);
my $sa_pid = $sa->query_safe('SELECT pg_backend_pid()');
my $sc_pid = $sc->query_safe('SELECT pg_backend_pid()');
is( $sa->query_safe(
		q{BEGIN; INSERT INTO audit (tx, tenant, client, kind) VALUES (1000000011, 'e1', 10, 'kept') RETURNING envault_seq}
	),
	'3',
	'A inserts row 3 of tenant e1 and keeps its transaction open');
is( $node->safe_psql(
		'postgres', qq{
SELECT mode || ' ' || granted FROM pg_locks
 WHERE pid = $sa_pid AND locktype = 'advisory' AND objsubid = 17750}),
	'ExclusiveLock true',
	'A holds the chain lock of e1');

# lock_timeout makes any wait for a lock an error: the insert into e2 must
# not wait at all (statement_timeout guards against a hang all the same);
# the same guard stops an insert into e1, which shows it discriminates.
$sb->query_safe(q{SET lock_timeout = '10ms'; SET statement_timeout = '60s'});
is( $sb->query_safe(
		q{INSERT INTO audit (tx, tenant, client, kind) VALUES (1000000012, 'e2', 11, 'kept') RETURNING envault_seq;
		  INSERT INTO ledger VALUES (1000000012, 'e', 1)}),
	'2',
	'B inserts row 2 of tenant e2 without waiting for any lock, while A is open'
);
($out1, $failed) = $sb->query(
	q{INSERT INTO audit (tx, tenant, client, kind) VALUES (1000000013, 'e1', 11, 'aborted')});
ok($failed, 'with the same lock_timeout, an insert into e1 fails');
like($sb->{stderr}, qr/canceling statement due to lock timeout/,
	'because it would wait for a lock');
$sb->{stderr} = '';

$sc->query_until(qr/waiting\n/,
	"\\echo waiting\nINSERT INTO audit (tx, tenant, client, kind) VALUES (1000000014, 'e1', 13, 'kept') RETURNING envault_seq;\n\\echo inserted\n"
);
ok( $node->poll_query_until(
		'postgres', qq{
SELECT a.wait_event_type = 'Lock' AND a.wait_event = 'advisory'
  FROM pg_stat_activity a
 WHERE a.pid = $sc_pid}),
	'C, inserting into e1, waits for an advisory lock (pg_stat_activity)');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM pg_locks w JOIN pg_locks h USING (locktype, database, classid, objid, objsubid)
 WHERE w.pid = $sc_pid AND NOT w.granted AND h.pid = $sa_pid AND h.granted
   AND w.locktype = 'advisory' AND w.objsubid = 17750}),
	'1',
	'the lock C waits for is the chain lock A holds (pg_locks)');
is( $node->safe_psql(
		'postgres', q{SELECT string_agg(envault_seq::text, ',' ORDER BY envault_seq)
		                FROM audit WHERE tenant = 'e1'}),
	'1,2',
	'meanwhile nothing of A or C is visible in e1');
$sa->query_safe(q{INSERT INTO ledger VALUES (1000000011, 'e', 1); COMMIT});
like($sc->query_until(qr/inserted\n/, ''),
	qr/^4\ninserted\n/m, 'A commits: C gets row 4 of e1');
$sc->query_safe(q{INSERT INTO ledger VALUES (1000000014, 'e', 1)});
check_chains('e', 'e', 2);
$_->quit foreach ($s1, $s2, $sa, $sb, $sc);

# ==== f. no gap through INSERT ... ON CONFLICT inside a WITH query ==============

# A row skipped by ON CONFLICT DO NOTHING after the chain trigger linked it
# would leave a gap, so INSERT ... ON CONFLICT is refused on a chained table
# (docs/audit-chain.md, "What is refused"): for any writer, and however the
# statement is written.  (A table of its own, so that the checks above and
# below are not affected.)
$node->safe_psql(
	'postgres', q{
CREATE TABLE audit_f (id integer PRIMARY KEY, tenant text NOT NULL);
SELECT envault.enable_audit_chain('audit_f', 'tenant');
INSERT INTO audit_f VALUES (1, 'f');
});
($ret, $out, $err) = $node->psql('postgres',
	q{INSERT INTO audit_f VALUES (1, 'f'), (2, 'f') ON CONFLICT DO NOTHING});
like($err, qr/INSERT \.\.\. ON CONFLICT is not supported on audit chain "audit_f"/,
	'f: INSERT ... ON CONFLICT DO NOTHING is refused');
{
	# inside a WITH query, where the chain trigger would link the
	# conflicting row before it is skipped
	($ret, $out, $err) = $node->psql(
		'postgres', q{
WITH i AS (INSERT INTO audit_f VALUES (1, 'f'), (2, 'f') ON CONFLICT DO NOTHING RETURNING id)
SELECT count(*) FROM i});
	like($err, qr/INSERT \.\.\. ON CONFLICT is not supported on audit chain "audit_f"/,
		'f: INSERT ... ON CONFLICT DO NOTHING inside a WITH query is refused too');
	$node->safe_psql('postgres', q{INSERT INTO audit_f VALUES (3, 'f')});
	is( $node->safe_psql(
			'postgres',
			q{SELECT string_agg(envault_seq::text, ',' ORDER BY envault_seq) FROM audit_f}),
		'1,2' . ($ret == 0 ? ',3' : ''),
		'f: and the chain has no gap');
	is( $node->safe_psql(
			'postgres', q{SELECT ok FROM envault.verify_chain('audit_f')}),
		't',
		'f: verify_chain finds it sound');
}

# ==== and checkpoints sign every head ===========================================

my $nchains = $node->safe_psql('postgres',
	q{SELECT count(DISTINCT tenant) FROM audit});
# heads not signed yet (the verifiers signed those of phases b and d)
my $heads_sql = q{
SELECT count(*) FILTER (WHERE h.head > coalesce(c.last, 0)) || ' ' || count(*)
  FROM (SELECT tenant, max(envault_seq) AS head FROM audit GROUP BY tenant) h
  LEFT JOIN (SELECT tenant, max(seq) AS last FROM envault.checkpoints
              WHERE chain_id = (SELECT chain_id FROM envault.audit_chains
                                 WHERE tbl = 'audit'::regclass)
              GROUP BY tenant) c USING (tenant)};
my ($unsigned) = split / /, $node->safe_psql('postgres', $heads_sql);
cmp_ok($unsigned, '>', 0, 'some chains have grown since their last checkpoint');
query_is($node, q{SELECT count(*) FROM envault.checkpoint('audit')},
	$unsigned, "a checkpoint signs the heads of those $unsigned chains");
query_is($node, $heads_sql, "0 $nchains",
	"now the head of each of the $nchains chains is signed");
query_is($node,
	q{SELECT count(*) FILTER (WHERE ok) || '/' || count(*) || ' '
	         || (sum(rows_checked) = (SELECT count(*) FROM audit))
	    FROM envault.verify_chain('audit')},
	"$nchains/$nchains true",
	'and every chain still verifies, with every row of the table');
query_is($node,
	q{SELECT count(*) FROM audit a
	   WHERE NOT EXISTS (SELECT FROM ledger l WHERE l.tx = a.tx) OR kind <> 'kept'},
	'0', 'the table holds only rows of committed transactions, none undone');

$node->stop;
done_testing();
