# envault TAP test: the secret access log under pressure.
#
# envault preloaded, the master key in a 0600 file, a queue of 16 records
# per database (envault.access_log_queue_size, the smallest allowed).  The
# guarantee under test (src/accesslog.c, src/accessworker.c): a record of
# every key a statement used is committed to envault.access_log before any
# row of the statement reaches the client, the statement's exact counts
# before it completes; records of rolled-back and read-only transactions are
# kept; a full queue makes decryption wait, never drops a record.
#
# 1. Queue full.  One session holds envault.access_log in ACCESS EXCLUSIVE
#    mode, so the worker cannot write; three sessions each decrypt the 300
#    values of 30 tenants (30 records, the queue holds 16).  They wait
#    (wait_event_type "Extension"), past the 10 s after which a flush that
#    must not wait would go to the server log, and access_log_status()
#    shows a full queue.  Once the lock is gone every statement completes,
#    with every record, exact counts, nothing in the server log.  And a
#    transaction that aborts with the queue full (its counts are queued
#    without waiting) sends what does not fit to the server log after
#    10 s: the log and the table together hold every record; so does a
#    statement cancelled while it waits for space.
# 2. Crash.  A session decrypts and has its result; at once every server
#    process is killed with SIGKILL.  After crash recovery the record of
#    that statement is there: one row, 300 rows of 30 tenants, get_secret,
#    the first row of a cursor (the transaction still open), a rolled-back
#    transaction whose statement failed after decrypting (waited for with
#    flush_access_log()), and a statement of the extended query protocol in
#    an open transaction.  A statement whose rows never reached its client
#    (the worker kept from writing) leaves no record, and nothing was
#    returned.  The access log's chains verify after every crash.
# 3. Several databases.  Records land in their own database's access_log,
#    each database has its worker in access_log_status(); a database whose
#    worker is connected cannot be dropped, and once the worker has been
#    idle for envault.access_log_worker_idle seconds it exits and DROP
#    DATABASE succeeds.
# 4. envault.access_log = off in postgresql.conf: each session that
#    decrypts records one "access log off" event and logs a LOG line; a
#    non-superuser cannot turn the log off with SET.
# 5. Not preloaded: records go to the server log as "envault access: "
#    and a JSON object, one line per record; the lines are parsed and
#    checked field by field.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest;
use EnvaultLog;
use IPC::Run;
use PostgreSQL::Test::BackgroundPsql;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $timeout = $PostgreSQL::Test::Utils::timeout_default;

my $node = PostgreSQL::Test::Cluster->new('access_log');
$node->init;
my $key_file = $node->basedir . '/master.key';
write_private_file($key_file, random_key_hex() . "\n");
# No autovacuum: no worker may start behind the test's back and outlive a
# killed postmaster.
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key_file = '$key_file'\n"
	  . "envault.access_log_queue_size = 16\n"
	  . "envault.access_log_databases = 3\n"
	  . "autovacuum = off\n");
$node->start;

# 30 tenants t01 ... t30, 10 values each: value i belongs to tenant
# t((i - 1) % 30 + 1), so the first 30 rows in id order use 30 data keys.
my @tenants = map { sprintf('t%02d', $_) } 1 .. 30;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
SELECT count(envault.create_tenant(format('t%s', lpad(g::text, 2, '0'))))
  FROM generate_series(1, 30) g;
CREATE TABLE v (id int PRIMARY KEY, tenant text NOT NULL, c bytea NOT NULL);
INSERT INTO v
SELECT g, t, envault.env_encrypt(t, 'pii', 'value ' || g, int4send(g))
  FROM generate_series(1, 300) g,
       LATERAL (SELECT format('t%s', lpad(((g - 1) % 30 + 1)::text, 2, '0')) AS t) s;
SELECT envault.put_secret('t01', 'api', 'sk-test-secret-value-0001');
CREATE ROLE regress_app LOGIN IN ROLE envault_user;
GRANT SELECT ON v TO regress_app;
});
my $all_tenants_10 = join(' ', map { "$_:10" } @tenants);

# Decryptions recorded for application $app: "tenant:sum of counts ..."
sub decrypted
{
	my ($app) = @_;
	return $node->safe_psql(
		'postgres', qq{
SELECT coalesce(string_agg(tenant || ':' || n, ' ' ORDER BY tenant), '')
  FROM (SELECT tenant, sum(count) AS n FROM envault.access_log
         WHERE application_name = '$app' AND event = 'decrypt' GROUP BY tenant) s});
}

# The queue of database postgres, from access_log_status()
sub queue_status
{
	return $node->safe_psql(
		'postgres', q{
SELECT queued || ' queued, ' || written || ' written, ' || to_server_log || ' to the server log'
  FROM envault.access_log_status() WHERE database = 'postgres'});
}

sub chains_verify
{
	my ($name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is( $node->safe_psql(
			'postgres', q{
SELECT count(*) FILTER (WHERE NOT ok) || ' bad, '
       || (coalesce(sum(rows_checked), 0) = (SELECT count(*) FROM envault.access_log))
  FROM envault.verify_chain('envault.access_log')}),
		'0 bad, true',
		"$name: every chain of envault.access_log verifies, every record in it");
	return;
}

# ==== 1. a full queue =========================================================

my $locker = $node->background_psql('postgres');
$locker->query_safe(
	'BEGIN; LOCK TABLE envault.access_log IN ACCESS EXCLUSIVE MODE');

my @full;
foreach my $n (1 .. 3)
{
	push @full,
	  start_script($node, "full$n",
		    "SET application_name = 'full-$n';\n"
		  . "SELECT count(envault.env_decrypt_text(c, int4send(id))) FROM v;\n");
}
my $waiting_sql = q{
SELECT count(*) FROM pg_stat_activity
 WHERE application_name LIKE 'full-_' AND state = 'active'
   AND wait_event_type = 'Extension' AND query LIKE '%env_decrypt_text%'};
ok($node->poll_query_until('postgres', $waiting_sql, '3'),
	'queue full: the three decrypting statements wait (wait_event_type Extension)');
my $waiting_since = time();
is(queue_status(),
	'16 queued, 0 written, 0 to the server log',
	'queue full: access_log_status() shows a full queue of 16 records');
ok( $node->poll_query_until(
		'postgres',
		q{SELECT string_agg(wait_event_type || '/' || wait_event, ',')
		    FROM pg_stat_activity WHERE backend_type = 'envault access log'},
		'Lock/relation'),
	'queue full: the worker waits for the lock on envault.access_log');

# A flush that must not wait (at the end of a transaction, or of the
# session) sends records to the server log once the queue stays full for
# 10 s.  A statement must never do that: the three still wait after 11 s.
my $still = 1;
while (time() < $waiting_since + 11)
{
	usleep(500_000);
	$still &&= $node->safe_psql('postgres', $waiting_sql) eq '3'
	  && (grep { script_running($_) } @full) == 3;
}
ok($still, 'queue full: after 11 s the three statements are still waiting');
is(queue_status(), '16 queued, 0 written, 0 to the server log',
	'queue full: the queue is still full, nothing went to the server log');
is(join('', map { slurp_file($_->{out}) } @full),
	'', 'queue full: no statement returned a result');

$locker->query_safe('COMMIT');
foreach my $n (1 .. 3)
{
	my ($out, $err) = finish_script($full[ $n - 1 ]);
	is($out . $err, "300\n",
		"queue full: session $n completes once the lock is released");
	is(decrypted("full-$n"), $all_tenants_10,
		"queue full: session $n has every record, 10 decryptions of each of the 30 tenants"
	);
	is( $node->safe_psql(
			'postgres',
			qq{SELECT count(*) FROM envault.access_log WHERE application_name = 'full-$n'}),
		'30',
		"queue full: session $n wrote one record per key (all 30 before its one row)"
	);
}
is(queue_status(),
	'0 queued, 90 written, 0 to the server log',
	'queue full: afterwards all 90 records are written, none to the server log');
unlike(slurp_file($node->logfile), qr/envault access: /,
	'queue full: no access record in the server log');
chains_verify('queue full');

# 1b. The counts of a transaction that aborts are queued as it aborts,
# without waiting (the client already has its error).  With the worker kept
# from writing, 16 of its 30 records fit in the queue; the other 14 stay
# counted in the backend.  The session ends: its exit waits for room, and
# once the queue has stayed full for 10 s it writes them to the server log
# (the last place left to an exiting backend).  Either way none is lost.
$locker->query_safe(
	'BEGIN; LOCK TABLE envault.access_log IN ACCESS EXCLUSIVE MODE');
my $offset = -s $node->logfile;
my $abort = start_script($node, 'abort',
	    "SET application_name = 'full-abort';\n"
	  . "DO \$\$BEGIN\n"
	  . "	PERFORM count(envault.env_decrypt_text(c, int4send(id))) FROM v;\n"
	  . "	RAISE EXCEPTION 'failing after decrypting';\n"
	  . "END\$\$;\n");
my ($out, $err) = finish_script($abort);
like($err, qr/ERROR:  failing after decrypting/,
	'queue full at an abort: the statement decrypted 300 values and failed');
ok( $node->poll_query_until(
		'postgres',
		q{SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'full-abort')}),
	'queue full at an abort: the backend finished its abort and exited');
my @abort_lines = grep { $_->{application_name} eq 'full-abort' }
  access_lines($node, $offset);
is(scalar(@abort_lines), 14,
	'queue full at an abort: 14 records went to the server log');
# access_log_status() counts as sent to the server log only the records
# that went there (not those of the batch queued before it gave up), and
# the lines name the database.
is(queue_status(), '16 queued, 90 written, 14 to the server log',
	'queue full at an abort: access_log_status() counts 16 queued, 14 sent to the server log'
);
is(join(',', map { $_->{database} // 'null' } @abort_lines),
	join(',', map { 'postgres' } @abort_lines),
	'queue full at an abort: the lines name the database');
$locker->query_safe('COMMIT');
ok( $node->poll_query_until(
		'postgres',
		q{SELECT queued FROM envault.access_log_status() WHERE database = 'postgres'}, '0'),
	'queue full at an abort: the lock released, the queue drains');
my %abort_sum;
$abort_sum{ $_->{tenant} } += $_->{count} foreach @abort_lines;
foreach (split / /, decrypted('full-abort'))
{
	my ($t, $n) = split /:/;
	$abort_sum{$t} += $n;
}
is(join(' ', map { "$_:$abort_sum{$_}" } sort keys %abort_sum),
	$all_tenants_10,
	'queue full at an abort: the server log and envault.access_log together hold every record, exact counts'
);
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM envault.access_log WHERE application_name = 'full-abort'}),
	'16',
	'queue full at an abort: 16 records in envault.access_log, none twice');

# 1c. A statement cancelled while it waits for space in the full queue
# (statement_timeout): the counts it had not queued yet are queued by its
# abort, or, the queue still full 10 s later, written to the server log.
# None is lost (0.2.0 lost them: they were taken out of the counts before
# they were queued).
$locker->query_safe(
	'BEGIN; LOCK TABLE envault.access_log IN ACCESS EXCLUSIVE MODE');
$offset = -s $node->logfile;
my $cancelled = start_script($node, 'cancelled',
	    "SET application_name = 'full-cancelled';\n"
	  . "SET statement_timeout = '3s';\n"
	  . "SELECT count(envault.env_decrypt_text(c, int4send(id))) FROM v;\n");
($out, $err) = finish_script($cancelled);
like($err, qr/canceling statement due to statement timeout/,
	'cancelled while waiting: the statement waited for space and was cancelled');
ok( $node->poll_query_until(
		'postgres',
		q{SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'full-cancelled')}),
	'cancelled while waiting: the backend finished its abort and exited');
my @cancelled_lines = grep { $_->{application_name} eq 'full-cancelled' }
  access_lines($node, $offset);
$locker->query_safe('COMMIT');
ok( $node->poll_query_until(
		'postgres',
		q{SELECT queued FROM envault.access_log_status() WHERE database = 'postgres'}, '0'),
	'cancelled while waiting: the lock released, the queue drains');
my %cancelled_sum;
$cancelled_sum{ $_->{tenant} } += $_->{count} foreach @cancelled_lines;
foreach (split / /, decrypted('full-cancelled'))
{
	my ($t, $n) = split /:/;
	$cancelled_sum{$t} += $n;
}
is(join(' ', map { "$_:$cancelled_sum{$_}" } sort keys %cancelled_sum),
	$all_tenants_10,
	'cancelled while waiting: envault.access_log and the server log hold every decryption, exact counts');

# 1d. An abort does not wait for room (0.2.0 waited up to 10 s in the
# abort, then wrote the records to the server log): the client has its
# error at once, the records that did not fit stay counted in the backend,
# and the session's next statement queues them once there is room.
$locker->query_safe(
	'BEGIN; LOCK TABLE envault.access_log IN ACCESS EXCLUSIVE MODE');
$offset = -s $node->logfile;
my $stays = $node->background_psql('postgres', on_error_stop => 0);
$stays->query_safe("SET application_name = 'full-abort-stays'");
my $t0 = time();
$stays->query(
	q{DO $$BEGIN
	PERFORM count(envault.env_decrypt_text(c, int4send(id))) FROM v;
	RAISE EXCEPTION 'failing after decrypting';
END$$;});
my $abort_seconds = time() - $t0;
like($stays->{stderr}, qr/ERROR:  failing after decrypting/,
	'abort with the queue full: the statement decrypted 300 values and failed');
$stays->{stderr} = '';
cmp_ok($abort_seconds, '<', 6,
	'abort with the queue full: the error came at once (the abort did not wait for room)');
is( $node->safe_psql(
		'postgres',
		q{SELECT queued FROM envault.access_log_status() WHERE database = 'postgres'}),
	'16', 'abort with the queue full: 16 records queued');
$locker->query_safe('COMMIT');
is($stays->query_safe('SELECT 1; SELECT envault.flush_access_log();'),
	"1\n", 'abort with the queue full: the session runs its next statement');
is(decrypted('full-abort-stays'), $all_tenants_10,
	'abort with the queue full: the next statement queued the rest, exact counts in envault.access_log');
is(scalar(grep { $_->{application_name} eq 'full-abort-stays' } access_lines($node, $offset)),
	0, 'abort with the queue full: nothing went to the server log');
$stays->quit;

# ==== 2. a crash right after the client has its result ===========================

# A session that goes on after errors, and its backend's pid.
sub open_session
{
	my ($app) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->query_safe("SET application_name = '$app'");
	return ($s, $s->query_safe('SELECT pg_backend_pid()'));
}

# Kill every server process at once with SIGKILL (see EnvaultTest.pm;
# $poll, a session, lists them and is gone afterwards), restart, and check
# that the server went through crash recovery.
sub crash_and_restart
{
	my ($poll, $name) = @_;
	my $offset = crash($node, $poll, every_process => 1);
	eval { $poll->{run}->kill_kill; };
	restart_after_crash($node, $offset, $name);
	return;
}

# 2a. one row
my ($s, $pid) = open_session('crash-one');
is($s->query_safe('SELECT envault.env_decrypt_text(c, int4send(id)) FROM v WHERE id = 7'),
	'value 7', 'crash, one row: the client has the value');
crash_and_restart($s, 'crash, one row');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(concat_ws('|', event, tenant, purpose, key_version, secret_name, count,
                            role, session_role, backend_pid), ',')
  FROM envault.access_log WHERE application_name = 'crash-one'}),
	"decrypt|t07|pii|1|1|postgres|postgres|$pid",
	'crash, one row: its record survived the crash');

# 2b. 300 rows of 30 tenants
($s, $pid) = open_session('crash-many');
my $rows = $s->query_safe(
	'SELECT id, envault.env_decrypt_text(c, int4send(id)) FROM v ORDER BY id');
is($rows, join("\n", map { "$_|value $_" } 1 .. 300),
	'crash, 300 rows: the client has all of them');
crash_and_restart($s, 'crash, 300 rows');
is(decrypted('crash-many'), $all_tenants_10,
	'crash, 300 rows: the exact counts of all 30 keys survived the crash');

# 2c. get_secret
($s, $pid) = open_session('crash-secret');
is($s->query_safe(q{SELECT envault.get_secret('t01', 'api')}),
	'sk-test-secret-value-0001', 'crash, get_secret: the client has the secret');
crash_and_restart($s, 'crash, get_secret');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(concat_ws('|', tenant, purpose, secret_name, count, backend_pid), ',')
  FROM envault.access_log WHERE application_name = 'crash-secret'}),
	"t01|_secrets|api|1|$pid",
	'crash, get_secret: its record survived the crash');
is( $node->safe_psql(
		'postgres',
		q{SELECT last_used_at IS NOT NULL FROM envault.secrets WHERE tenant = 't01' AND name = 'api'}),
	't', 'crash, get_secret: and so did the secret\'s last_used_at');

# 2d. the first row of a cursor, its transaction still open
($s, $pid) = open_session('crash-cursor');
is( $s->query_safe(
		q{BEGIN;
DECLARE cur NO SCROLL CURSOR FOR
 SELECT id, envault.env_decrypt_text(c, int4send(id)) FROM v WHERE tenant = 't05';
FETCH 1 FROM cur;}),
	'5|value 5',
	'crash, cursor: the client has the first row');
crash_and_restart($s, 'crash, cursor');
is(decrypted('crash-cursor'), 't05:1',
	'crash, cursor: the record of the one value decrypted before that row survived the crash'
);

# 2e. a rolled-back transaction: a statement that decrypted and returned its
# result, and one that failed after decrypting (its counts are queued as
# the transaction aborts, without waiting); flush_access_log() waits.
($s, $pid) = open_session('crash-rollback');
is( $s->query_safe(
		q{BEGIN READ ONLY;
SELECT count(envault.env_decrypt_text(c, int4send(id))) FROM v WHERE tenant = 't03';}),
	'10',
	'crash, rollback: a read-only transaction decrypts 10 values of t03');
$s->query(
	q{DO $$BEGIN
	PERFORM envault.env_decrypt_text(c, int4send(id)) FROM v WHERE tenant = 't04';
	RAISE EXCEPTION 'failing after decrypting';
END$$;});
like($s->{stderr}, qr/ERROR:  failing after decrypting/,
	'crash, rollback: then a statement decrypts 10 values of t04 and fails');
$s->{stderr} = '';
is($s->query_safe('ROLLBACK; SELECT envault.flush_access_log();'),
	'', 'crash, rollback: ROLLBACK, then flush_access_log()');
crash_and_restart($s, 'crash, rollback');
is(decrypted('crash-rollback'), 't03:10 t04:10',
	'crash, rollback: the records of the rolled-back transaction survived the crash'
);

# 2f. the extended query protocol (as most drivers use it), in an open
# transaction: pgbench runs the statement, has its 300 rows, then sleeps.
# With this protocol the portal of a completed SELECT, and so its
# ExecutorEnd, lives on until the next Bind or the end of the transaction:
# the exact counts must be durable once the rows are sent all the same
# (src/accesslog.c flushes them when the portal's output ends), 10 per key
# here, not just the records made before the first row.
{
	my $script = $node->basedir . '/extended.sql';
	open my $fh, '>', $script or die "could not write $script: $!";
	print $fh "BEGIN;\n"
	  . "SELECT id, envault.env_decrypt_text(c, int4send(id)) FROM v ORDER BY id;\n"
	  . "\\sleep 600 s\n" . "END;\n";
	close $fh;
	my ($pgb_out, $pgb_err) = ('', '');
	local $ENV{PGAPPNAME} = 'crash-extended';
	my $pgbench = IPC::Run::start(
		[
			$node->installed_command('pgbench'), '-n', '-M', 'extended',
			'-t', '1', '-f', $script, $node->connstr('postgres')
		],
		'<', \undef, '>', \$pgb_out, '2>', \$pgb_err,
		IPC::Run::timeout(2 * $timeout));
	ok( $node->poll_query_until(
			'postgres', q{
SELECT bool_or(state = 'idle in transaction'
               AND query LIKE 'SELECT id, envault.env_decrypt_text%')
  FROM pg_stat_activity WHERE application_name = 'crash-extended'}),
		'crash, extended protocol: the statement completed, its transaction is open'
	);
	my $poll = $node->background_psql('postgres');
	crash_and_restart($poll, 'crash, extended protocol');
	eval { $pgbench->kill_kill; };
	is(decrypted('crash-extended'), $all_tenants_10,
		'crash, extended protocol: the exact counts of the completed statement survived the crash'
	);
}

# 2h. The statement after a failed one.  The failed statement used the key
# of t11; the next one, with the same key, sends its first row and then
# waits for an advisory lock before its second.  0.2.0 kept the key marked
# recorded after the failure: the first row went out before any record of
# the new statement was queued, and the crash took it.  Each statement now
# starts with no key marked recorded.  (No ORDER BY: a sort would compute
# both rows before sending the first; the sequential scan of v, never
# updated, returns 11 before 41.)
my $holder = $node->background_psql('postgres');
$holder->query_safe('SELECT pg_advisory_lock(4242)');
my $after = start_script($node, 'after-error',
	    "\\set ON_ERROR_STOP 0\n"
	  . "SET application_name = 'crash-after-error';\n"
	  . "SELECT envault.env_decrypt_text(c, int4send(id)), 1 / (id - 11) FROM v WHERE id = 11;\n"
	  . "SELECT envault.env_decrypt_text(c, int4send(id))\n"
	  . "       || CASE WHEN id = 41 THEN (SELECT '' FROM pg_advisory_lock(4242)) ELSE '' END\n"
	  . "  FROM v WHERE id IN (11, 41);\n");
ok( $node->poll_query_until(
		'postgres', q{
SELECT wait_event_type = 'Lock' AND wait_event = 'advisory' FROM pg_stat_activity
 WHERE application_name = 'crash-after-error' AND state = 'active'}),
	'crash after a failed statement: the next statement sent its first row and waits before its second');
crash_and_restart($holder, 'crash after a failed statement');
finish_script($after);
is(decrypted('crash-after-error'), 't11:2',
	'crash after a failed statement: the failed statement\'s record and the next one\'s first row\'s both survived');

# 2g. a statement kept from returning its rows: the worker cannot write, so
# the statement waits before its first row; killed then, the client never
# had the value, and no record of it is there (it was only queued).
$locker = $node->background_psql('postgres');
$locker->query_safe(
	'BEGIN; LOCK TABLE envault.access_log IN ACCESS EXCLUSIVE MODE');
my $unsent = start_script($node, 'unsent',
	    "SET application_name = 'crash-unsent';\n"
	  . "SELECT envault.env_decrypt_text(c, int4send(id)) FROM v WHERE id = 9;\n");
ok( $node->poll_query_until(
		'postgres', q{
SELECT wait_event_type = 'Extension' FROM pg_stat_activity
 WHERE application_name = 'crash-unsent' AND state = 'active'}),
	'crash, rows not sent: the statement waits for its record before its row');
crash_and_restart($locker, 'crash, rows not sent');
($out, $err) = finish_script($unsent);
is($out, '', 'crash, rows not sent: the client never had the value');
like($err, qr/server closed the connection unexpectedly|connection to server was lost/,
	'crash, rows not sent: it lost its server');
is(decrypted('crash-unsent'), '',
	'crash, rows not sent: and there is no record of it (it was only queued)');

chains_verify('after the crashes');

# ==== 3. several databases ====================================================

# Workers stay until the test lets them go.
$node->safe_psql('postgres',
	'ALTER SYSTEM SET envault.access_log_worker_idle = 3600');
$node->reload;

my %db_tenant = (appdb1 => 'one', appdb2 => 'two');
foreach my $db (sort keys %db_tenant)
{
	my $t = $db_tenant{$db};
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql(
		$db, qq{
CREATE EXTENSION envault;
SELECT envault.create_tenant('$t');
CREATE TABLE w (id int PRIMARY KEY, c bytea NOT NULL);
INSERT INTO w SELECT g, envault.env_encrypt('$t', 'pii', '$t ' || g) FROM generate_series(1, 5) g;
});
}
foreach my $case (
	[ 'appdb1', 'c', 'w WHERE id <= 3', 'one 1,one 2,one 3' ],
	[ 'appdb2', 'c', 'w WHERE id <= 2', 'two 1,two 2' ],
	[ 'postgres', 'c, int4send(id)', 'v WHERE id = 1', 'value 1' ])
{
	my ($db, $args, $from, $values) = @$case;
	is( $node->safe_psql(
			$db, qq{SET application_name = 'multi';
SELECT string_agg(envault.env_decrypt_text($args), ',' ORDER BY id) FROM $from}),
		$values,
		"several databases: $db decrypts");
}
my %want = (appdb1 => 'one:3', appdb2 => 'two:2', postgres => 't01:1');
foreach my $db (sort keys %want)
{
	is( $node->safe_psql(
			$db, q{
SELECT string_agg(tenant || ':' || count || ':' || current_database(), ' ')
  FROM envault.access_log WHERE application_name = 'multi'}),
		"$want{$db}:$db",
		"several databases: $db has its own record, and only its own");
}
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(s.database || ':' || (a.pid IS NOT NULL), ' ' ORDER BY s.database)
       || ', ' || count(DISTINCT s.worker_pid)
  FROM envault.access_log_status() s
  LEFT JOIN pg_stat_activity a
    ON a.pid = s.worker_pid AND a.datname = s.database
   AND a.backend_type = 'envault access log'
 WHERE s.database IN ('appdb1', 'appdb2', 'postgres')}),
	'appdb1:true appdb2:true postgres:true, 3',
	'several databases: access_log_status() shows a worker of its own connected to each'
);

# A background worker connected to a database keeps DROP DATABASE from
# proceeding: PostgreSQL waits 5 s for the other sessions of the database
# to leave (it terminates only autovacuum workers on its own), then fails.
# That is why the access log worker exits once it has been idle for
# envault.access_log_worker_idle seconds: the database can then be dropped
# without WITH (FORCE) and without terminating anything by hand.
my $ret;
($ret, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nDROP DATABASE appdb2");
is($ret, 3, 'several databases: DROP DATABASE fails while its worker is connected');
like(
	$err,
	qr/ERROR:  55006: database "appdb2" is being accessed by other users\nDETAIL:  There is 1 other session using the database\./,
	'several databases: because the worker is using the database');

$node->safe_psql('postgres',
	'ALTER SYSTEM SET envault.access_log_worker_idle = 1');
$node->reload;
ok( $node->poll_query_until(
		'postgres', q{
SELECT NOT EXISTS (SELECT FROM envault.access_log_status()
                    WHERE database IN ('appdb1', 'appdb2') AND worker_pid IS NOT NULL)
   AND NOT EXISTS (SELECT FROM pg_stat_activity WHERE datname IN ('appdb1', 'appdb2'))}),
	'several databases: idle for envault.access_log_worker_idle, the workers exit');
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE appdb2');
is($ret, 0, 'several databases: then DROP DATABASE succeeds') or diag($err);
is( $node->safe_psql(
		'appdb1',
		q{SET application_name = 'multi-again';
SELECT envault.env_decrypt_text(c) FROM w WHERE id = 5;
SELECT envault.flush_access_log();
SELECT string_agg(tenant || ':' || count, ' ') FROM envault.access_log
 WHERE application_name = 'multi-again'}),
	"one 5\n\none:1",
	'several databases: appdb1 starts a new worker when it decrypts again');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET envault.access_log_worker_idle');
$node->reload;

# ==== 4. envault.access_log = off ==============================================

$node->append_conf('postgresql.conf', "envault.access_log = off\n");
$node->reload;
ok( $node->poll_query_until(
		'postgres', 'SHOW envault.access_log', 'off'),
	'access log off: set in postgresql.conf');
$offset = -s $node->logfile;
my ($off1, $off1_pid) = open_session('off-1');
is( $off1->query_safe(
		q{SELECT envault.env_decrypt_text(c, int4send(id)) FROM v WHERE id = 1;
SELECT count(envault.env_decrypt_text(c, int4send(id))) FROM v;
SELECT envault.flush_access_log();}),
	"value 1\n300\n",
	'access log off: a session decrypts in two statements');
my ($off2, $off2_pid) = open_session('off-2');
is( $off2->query_safe(
		q{SELECT envault.set_tenant('t02', false);
SET ROLE regress_app;
SELECT envault.env_decrypt_text(c, int4send(id)) FROM v WHERE id = 2;
RESET ROLE;
SELECT envault.flush_access_log();}),
	"\nvalue 2\n",
	'access log off: another session decrypts as an application role');
$off1->quit;
$off2->quit;
$node->adjust_conf('postgresql.conf', 'envault.access_log', 'on');
$node->reload;
ok($node->poll_query_until('postgres', 'SHOW envault.access_log', 'on'),
	'access log on again');
foreach my $case ([ $off1_pid, 'postgres' ], [ $off2_pid, 'regress_app' ])
{
	my ($p, $role) = @$case;
	is( $node->safe_psql(
			'postgres', qq{
SELECT string_agg(concat_ws('|', event, coalesce(tenant, '-'), count, role, session_role),
                  ',')
  FROM envault.access_log WHERE backend_pid = $p}),
		"access log off|-|0|$role|postgres",
		"access log off: session of $role recorded one 'access log off' event, no decryption"
	);
}
my $log = slurp_file($node->logfile, $offset);
my @off_lines = $log =~
  /LOG:  envault access log is off for this session\n[^\n]*DETAIL:  Role "([^"]+)" decrypts without access records\./g;
is( join(',', sort @off_lines),
	'postgres,regress_app',
	'access log off: one LOG line per session, naming its role');
unlike($log, qr/envault access: /,
	'access log off: no access record in the server log');

($ret, $out, $err) = $node->psql(
	'postgres',
	"\\set VERBOSITY verbose\nSET envault.access_log = off",
	extra_params => [ '-U', 'regress_app' ]);
is($ret, 3, 'access log off: a non-superuser cannot turn it off with SET');
like(
	$err,
	qr/ERROR:  42501: permission denied to set parameter "envault\.access_log"/,
	'access log off: permission denied, SQLSTATE 42501');
chains_verify('at the end');
$node->stop;

# ==== 5. not preloaded ==========================================================

my $lazy = PostgreSQL::Test::Cluster->new('access_log_lazy');
$lazy->init;
my $lazy_key = $lazy->basedir . '/master.key';
write_private_file($lazy_key, random_key_hex() . "\n");
$lazy->append_conf('postgresql.conf', "envault.master_key_file = '$lazy_key'\n");
$lazy->start;
is($lazy->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'not preloaded: envault is not in shared_preload_libraries');
$lazy->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('lazy');
CREATE TABLE lv (id int PRIMARY KEY, c bytea NOT NULL, d bytea NOT NULL);
INSERT INTO lv SELECT g, envault.env_encrypt('lazy', 'pii', 'lazy pii ' || g),
                      envault.env_encrypt('lazy', 'notes', 'lazy note ' || g)
  FROM generate_series(1, 5) g;
CREATE ROLE regress_lazy_app LOGIN IN ROLE envault_user;
GRANT SELECT ON lv TO regress_lazy_app;
});

$offset = -s $lazy->logfile;
my $ls = $lazy->background_psql('postgres');
my $lpid = $ls->query_safe('SELECT pg_backend_pid()');
$ls->query_safe("SET application_name = 'lazy-session'");
is($ls->query_safe('SELECT envault.env_decrypt_text(c) FROM lv WHERE id = 1'),
	'lazy pii 1', 'not preloaded: a statement decrypts one value');
# Without shared_preload_libraries there is no queue, but each statement's
# records are still made when it ends and go to the server log then, not
# aggregated over the session's life.
my @now = grep { $_->{backend_pid} == $lpid } access_lines($lazy, $offset);
is(join(',', map { "$_->{purpose}:$_->{count}" } @now),
	'pii:1', 'not preloaded: the statement\'s record is in the server log once it completed');
is( $ls->query_safe(
		q{SELECT envault.set_tenant('lazy', false);
SET ROLE regress_lazy_app;
SELECT string_agg(envault.env_decrypt_text(c) || '/' || envault.env_decrypt_text(d), ',' ORDER BY id)
  FROM lv WHERE id IN (2, 3);
RESET ROLE;}),
	"\nlazy pii 2/lazy note 2,lazy pii 3/lazy note 3",
	'not preloaded: then an application role decrypts two values of each of two purposes'
);
$ls->quit;
my $lines = wait_for_backend_lines($lazy, $offset, $lpid, 5);
ok(defined $lines, 'not preloaded: the session\'s records are in the server log');
my @recs = @{ $lines // [] };
my %sum;
$sum{"$_->{role}|$_->{tenant}|$_->{purpose}|$_->{key_version}"} += $_->{count}
  foreach @recs;
is( join(' ', map { "$_=$sum{$_}" } sort keys %sum),
	'postgres|lazy|pii|1=1 regress_lazy_app|lazy|notes|1=2 regress_lazy_app|lazy|pii|1=2',
	'not preloaded: tenant, purpose, key version, role and count of every decryption'
);
is( scalar(grep {
			    $_->{event} eq 'decrypt'
			  && $_->{session_role} eq 'postgres'
			  && $_->{application_name} eq 'lazy-session'
			  && !defined $_->{secret_name}
			  && !defined $_->{client_addr}
		} @recs),
	scalar(@recs),
	'not preloaded: every line names the event, session role and application');
# Lines written at backend exit, outside any transaction, name the
# database too.
is(join(',', map { $_->{database} // 'null' } @recs),
	join(',', map { 'postgres' } @recs),
	'not preloaded: every line names the database');
unlike(join("\n", map { $_->{_line} } @recs), qr/lazy (pii|note) \d/,
	'not preloaded: no plaintext in the lines');
is($lazy->safe_psql('postgres', 'SELECT count(*) FROM envault.access_log'),
	'0', 'not preloaded: envault.access_log stays empty');
$lazy->stop;

done_testing();
