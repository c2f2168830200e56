# envault TAP test: a crash in the middle of a re-encryption or a tenant key
# rotation loses nothing.
#
# envault preloaded.  The postmaster is killed with SIGKILL (no shutdown of
# any kind), every other server process dies with it, and the node goes
# through crash recovery at the next start.
#
# 1. A table of 20,000 values encrypted under data key version 1, each bound
#    to its row by associated data (int4send(id), in a generated column).
#    After rotate_data_key, envault.reencrypt_column() moves the column onto
#    version 2, one committed batch of 500 rows at a time; it is killed
#    halfway.  After the restart the committed batches are on version 2, the
#    rest untouched on version 1, every value decrypts to its original; a
#    second CALL finishes the job.
# 2. A tenant with 1,000 data keys: its tenant key rotation (one transaction
#    rewrapping every data key) is killed halfway, then another one right
#    after it commits.  After each restart exactly the old or the new tenant
#    key is in place, with every data key wrapped under it, and every value
#    decrypts.
#
# The plaintexts are kept in a plain table and compared in SQL.

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex alive);

use PostgreSQL::Test::BackgroundPsql;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $key = random_key_hex();
my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
# No autovacuum: no worker may start (and outlive the postmaster) behind the
# test's back.
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key = '$key'\n"
	  . "autovacuum = off\n"
	  . "max_parallel_workers_per_gather = 0");
$node->start;

my $timeout = $PostgreSQL::Test::Utils::timeout_default;

# SIGKILL the postmaster and wait until every server process that session
# $s can see has exited (they notice the postmaster's death by themselves),
# and until the postmaster is reaped: while its pid exists, even as a
# zombie, a new postmaster refuses to start ("lock file already exists").
sub crash
{
	my ($s) = @_;
	my @pids = split /,/,
	  $s->query_safe(q{SELECT string_agg(pid::text, ',') FROM pg_stat_activity});
	my ($postmaster) =
	  slurp_file($node->data_dir . '/postmaster.pid') =~ /\A(\d+)\n/;
	die "no postmaster pid" unless $postmaster;
	my $offset = -s $node->logfile;
	$node->kill9;
	my $deadline = time() + $timeout;
	while (kill(0, $postmaster) || grep { alive($_) } @pids)
	{
		die "server processes still running after the postmaster was killed"
		  if time() > $deadline;
		usleep(20_000);
	}
	return $offset;
}

# Start the node again after crash(); check that it recovered from a crash.
sub restart_after_crash
{
	my ($offset, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$node->start;
	like(
		slurp_file($node->logfile, $offset),
		qr/database system was interrupted; last known up at .*\n.*database system was not properly shut down; automatic recovery in progress/,
		"$name: the server went through crash recovery");
	return;
}

# Pump a background session whose server died until psql reports the lost
# connection; returns its stderr.
sub wait_for_lost_connection
{
	my ($s) = @_;
	my $deadline = time() + $timeout;
	while ($s->{stderr} !~
		/server closed the connection unexpectedly|connection to server was lost/
		&& time() < $deadline)
	{
		last unless $s->{run}->pumpable;
		eval { $s->{run}->pump_nb; };
		usleep(20_000);
	}
	my $err = $s->{stderr};
	eval { $s->{run}->kill_kill; };
	return $err;
}

# ==== 1. reencrypt_column killed halfway =======================================

my $n = 20_000;
my $batch = 500;

$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
CREATE TABLE plain (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO plain
	SELECT i, 'value ' || i || ' ' || md5(i::text) FROM generate_series(1, $n) i;
CREATE TABLE t (
	id	int PRIMARY KEY,
	aad	bytea GENERATED ALWAYS AS (int4send(id)) STORED,
	c	bytea
);
INSERT INTO t (id, c)
	SELECT id, envault.env_encrypt('acme', 'docs', v, int4send(id)) FROM plain;
CREATE TABLE orig AS SELECT id, c FROM t;
});

# "rows|rows that decrypt to their original"
my $check_sql = q{
SELECT count(*) || '|' || count(*) FILTER (WHERE envault.env_decrypt_text(t.c, t.aad) = p.v)
  FROM t JOIN plain p USING (id)};
my $current_sql =
  q{SELECT count(*) FILTER (WHERE envault.env_is_current(c)) FROM t};

is($node->safe_psql('postgres', $check_sql),
	"$n|$n", 'every value decrypts to its original');
is($node->safe_psql('postgres', $current_sql),
	$n, 'every value is under the active data key');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM t JOIN plain p USING (id)
		   WHERE position(convert_to(p.v, 'UTF8') IN t.c) > 0}),
	'0',
	'no stored value contains its plaintext');

# The associated data binds each value to its row.
my $wrong_aad_sql =
  "\\set VERBOSITY verbose\nSELECT envault.env_decrypt_text(c, int4send(2)) FROM t WHERE id = 1";
my $auth_failed =
  qr/^psql:<stdin>:\d+: ERROR:  22V01: envault ciphertext failed authentication$/m;
my ($ret, $out, $err) = $node->psql('postgres', $wrong_aad_sql);
is($ret, 3, 'decrypting a value with the associated data of another row fails');
like($err, $auth_failed, 'and the error is an authentication failure');

is($node->safe_psql('postgres', q{SELECT envault.rotate_data_key('acme', 'docs')}),
	'2', 'data key rotated to version 2');
is($node->safe_psql('postgres', $current_sql),
	'0', 'no value is under the active data key any more');

# Every batch's UPDATE sleeps 0.1 s before it commits, so the CALL takes
# about 4 s: long enough to be caught halfway, and to be killed while a
# batch is written but not committed.
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN PERFORM pg_sleep(0.1); RETURN NULL; END $$;
CREATE TRIGGER slow_batch AFTER UPDATE ON t
	FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();
});

my $poll = $node->background_psql('postgres');
my $run = $node->background_psql('postgres', on_error_stop => 0);
$run->query_until(qr/started/,
	"\\echo started\nCALL envault.reencrypt_column('t', 'c', 'aad', batch_size => $batch);\n"
);

# Wait until at least two batches are committed.
my $seen;
my $deadline = time() + $timeout;
while (1)
{
	$seen = $poll->query_safe($current_sql);
	last if $seen >= 2 * $batch;
	die "reencrypt_column made no progress" if time() > $deadline;
	usleep(20_000);
}
my $offset = crash($poll);
note "killed after $seen rows were seen re-encrypted";
ok($seen < $n, 'the server was killed before the re-encryption ended');

$err = wait_for_lost_connection($run);
like(
	$err,
	qr/NOTICE:  reencrypt_column: $n rows of t to re-encrypt\n/,
	'the CALL had started');
like(
	$err,
	qr/NOTICE:  reencrypt_column: ${\ (2 * $batch)} rows re-encrypted, ${\ ($n - 2 * $batch)} remaining\n/,
	'the CALL had committed two batches');
unlike($err, qr/reencrypt_column: done/, 'the CALL had not finished');
like(
	$err,
	qr/server closed the connection unexpectedly|connection to server was lost/,
	'the CALL lost its server');
eval { $poll->{run}->kill_kill; };

restart_after_crash($offset, 'killed during reencrypt_column');

# The committed batches are exactly the first rows in primary key order.
my ($cur, $lo, $hi) = split /\|/,
  $node->safe_psql('postgres',
	q{SELECT count(*) || '|' || coalesce(min(id), 0) || '|' || coalesce(max(id), 0)
	    FROM t WHERE envault.env_is_current(c)});
note "$cur rows on the new data key version after the restart";
cmp_ok($cur, '>=', $seen,
	'every batch seen committed before the crash is still re-encrypted');
cmp_ok($cur, '<', $n, 'the re-encryption was not complete at the crash');
is($cur % $batch, 0, 'only whole batches were re-encrypted');
is("$lo|$hi", ($cur > 0 ? "1|$cur" : '0|0'),
	'the re-encrypted rows are the first ones in primary key order');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE t.c = o.c) || '|'
		      || count(*) FILTER (WHERE t.c <> o.c AND envault.env_is_current(t.c))
		    FROM t JOIN orig o USING (id)}),
	($n - $cur) . "|$cur",
	'the other rows are untouched, byte for byte');
is($node->safe_psql('postgres', $check_sql),
	"$n|$n", 'after the crash, every value decrypts to its original');

# Finish the job (at full speed).
$node->safe_psql('postgres', 'DROP TRIGGER slow_batch ON t');
my $rest = $n - $cur;
($ret, $out, $err) = $node->psql('postgres',
	"CALL envault.reencrypt_column('t', 'c', 'aad', batch_size => $batch)");
is($ret, 0, 'the CALL run again succeeds') or diag($err);
like(
	$err,
	qr/NOTICE:  reencrypt_column: $rest rows of t to re-encrypt\n/,
	'the second CALL finds exactly the rows left');
like(
	$err,
	qr/NOTICE:  reencrypt_column: done, $rest rows re-encrypted\n?\z/,
	'the second CALL re-encrypts exactly those');

is($node->safe_psql('postgres', $current_sql),
	$n, 'every value is under the active data key now');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM t JOIN orig o USING (id) WHERE t.c = o.c}),
	'0',
	'every stored value changed');
is($node->safe_psql('postgres', $check_sql),
	"$n|$n", 'every value decrypts to its original');
($ret, $out, $err) = $node->psql('postgres', $wrong_aad_sql);
is($ret, 3,
	'a re-encrypted value is still bound to its row: another row\'s associated data fails'
);
like($err, $auth_failed, 'with an authentication failure');

# Nothing needs version 1 any more: with it retired, everything still opens.
$node->safe_psql('postgres',
	q{SELECT envault.retire_data_key('acme', 'docs', 1)});
is($node->safe_psql('postgres', $check_sql),
	"$n|$n", 'with version 1 retired, every value still decrypts');

# ==== 2. rotate_tenant_key killed halfway, and right after its commit ===========

my $nkeys = 1000;
$node->safe_psql(
	'postgres', qq{
SELECT envault.create_tenant('bigco');
CREATE TABLE big (i int PRIMARY KEY, c bytea NOT NULL);
INSERT INTO big
	SELECT i, envault.env_encrypt('bigco', 'p' || i, 'big value ' || i)
	  FROM generate_series(1, $nkeys) i;
CREATE TABLE keys_before AS
	SELECT key_id, wrapped_key FROM envault.data_keys WHERE tenant = 'bigco';
CREATE TABLE tenant_before AS
	SELECT wrapped_key FROM envault.tenants WHERE tenant = 'bigco';
});

# "tenant key version|data keys|lowest and highest version they are wrapped under"
my $versions_sql = q{
SELECT t.key_version || '|' || count(*) || '|' || min(d.tenant_key_version)
       || '|' || max(d.tenant_key_version)
  FROM envault.tenants t JOIN envault.data_keys d USING (tenant)
 WHERE tenant = 'bigco' GROUP BY t.key_version};
# "data keys|of them with the wrapped key they had before|tenant key as before"
my $same_sql = q{
SELECT count(*) || '|' || count(*) FILTER (WHERE d.wrapped_key = b.wrapped_key)
       || '|' || (SELECT t.wrapped_key = tb.wrapped_key
                    FROM envault.tenants t, tenant_before tb WHERE t.tenant = 'bigco')
  FROM envault.data_keys d JOIN keys_before b USING (key_id)};
my $big_sql = q{
SELECT count(*) || '|' || count(*) FILTER (WHERE envault.env_decrypt_text(c) = 'big value ' || i)
  FROM big};
my $events_sql = q{
SELECT count(*) || '|' || coalesce(string_agg(detail, ';' ORDER BY event_id), '')
  FROM envault.key_events WHERE tenant = 'bigco' AND operation = 'tenant key rotated'};

is($node->safe_psql('postgres', $versions_sql),
	"1|$nkeys|1|1", "bigco has $nkeys data keys under tenant key version 1");
is($node->safe_psql('postgres', $big_sql),
	"$nkeys|$nkeys", 'every value of bigco decrypts');

# --- killed halfway ------------------------------------------------------------

# Another session holds the row of data key p500: the rotation, rewrapping
# the data keys one by one, blocks there, its transaction half done.
$poll = $node->background_psql('postgres');
my $locker = $node->background_psql('postgres');
$locker->query_safe(
	q{BEGIN; SELECT 1 FROM envault.data_keys
	   WHERE tenant = 'bigco' AND purpose = 'p500' FOR UPDATE});
$run = $node->background_psql('postgres', on_error_stop => 0);
my $run_pid = $run->query_safe('SELECT pg_backend_pid()');
$run->query_until(qr/started/,
	"\\echo started\nSELECT envault.rotate_tenant_key('bigco');\n");
ok( $node->poll_query_until(
		'postgres',
		qq{SELECT wait_event_type = 'Lock' AND query LIKE '%rotate_tenant_key%'
		     FROM pg_stat_activity WHERE pid = $run_pid}),
	'the rotation is blocked halfway, on the row of data key p500');

$offset = crash($poll);
$err = wait_for_lost_connection($run);
like(
	$err,
	qr/server closed the connection unexpectedly|connection to server was lost/,
	'the rotation lost its server');
eval { $locker->{run}->kill_kill; };
eval { $poll->{run}->kill_kill; };
restart_after_crash($offset, 'killed during rotate_tenant_key');

is($node->safe_psql('postgres', $versions_sql),
	"1|$nkeys|1|1",
	'after the crash, tenant key version 1 and every data key under it');
is($node->safe_psql('postgres', $same_sql),
	"$nkeys|$nkeys|true", 'every wrapped key is the one from before');
is($node->safe_psql('postgres', $events_sql),
	'0|', 'no tenant key rotation was recorded');
is($node->safe_psql('postgres', $big_sql),
	"$nkeys|$nkeys", 'every value of bigco decrypts');

# --- killed right after the commit ---------------------------------------------

$poll = $node->background_psql('postgres');
$run = $node->background_psql('postgres');
is($run->query_safe(q{SELECT envault.rotate_tenant_key('bigco')}),
	'2', 'the rotation to tenant key version 2 commits');
$offset = crash($poll);
# (idle psql sessions notice nothing: just end them)
eval { $run->{run}->kill_kill; };
eval { $poll->{run}->kill_kill; };
restart_after_crash($offset, 'killed after rotate_tenant_key');

is($node->safe_psql('postgres', $versions_sql),
	"2|$nkeys|2|2",
	'after the crash, tenant key version 2 and every data key under it');
is($node->safe_psql('postgres', $same_sql),
	"$nkeys|0|false", 'every wrapped key is a new one');
is( $node->safe_psql('postgres', $events_sql),
	"1|key version 2; $nkeys data keys rewrapped",
	'the rotation was recorded once');
is($node->safe_psql('postgres', $big_sql),
	"$nkeys|$nkeys", 'every value of bigco decrypts');
is($node->safe_psql('postgres', $check_sql),
	"$n|$n", 'and every value of acme still does');

$node->stop;

my $log = slurp_file($node->logfile);
like($log, qr/statement: SELECT envault.rotate_tenant_key/,
	'the server log was written to');
unlike($log, qr/\Q$key\E/i, 'the server log does not contain the master key');

done_testing();
