# envault TAP test: a master key rotation over 10,000 tenants, killed
# halfway, resumed, finished; then the old key removed, then the wrong key.
#
# envault is preloaded; the master keys come from 0600 files.
#
# 1. Master key A.  10,000 tenants, one value encrypted per tenant, with its
#    plaintext kept beside it.
# 2. Restart with key B as the master key and A as the previous one.
#    master_key_status() shows both check values (computed here with
#    Digest::SHA); every value decrypts through key A.
# 3. CALL envault.rotate_master_key(500) in a background session.  Another
#    session stops it between batches: it holds a SHARE lock on
#    envault.key_events, which every batch writes to before it commits.
#    Once some but not all batches are committed, the rotation is held in
#    the middle of a batch (rewrapped rows written, not committed); every
#    value decrypts, the tenants under A and those under B alike.  Then the
#    postmaster is killed with SIGKILL.
# 4. After crash recovery: exactly the committed batches are under B, the
#    others byte for byte as they were under A, every value decrypts.
#    CALL envault.rotate_master_key() finishes the rotation: every tenant
#    under B, every value decrypts, the key events add up to 10,000.
# 5. Restart without the previous key: everything decrypts, and a rotation
#    is refused.
# 6. Restart with only key A, which no longer wraps anything: decryption
#    fails with the configuration error naming both check values.
# 7. Back to key B; the server log never contained either key.

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex write_private_file alive kcv_hex check_error);

use Fcntl qw(O_WRONLY O_CREAT O_TRUNC);
use List::Util qw(sum0);
use PostgreSQL::Test::BackgroundPsql;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $ntenants = 10_000;
my $batch = 500;
my $timeout = $PostgreSQL::Test::Utils::timeout_default;

my $key_a = random_key_hex();
my $key_b = random_key_hex();
$key_b = random_key_hex() while $key_b eq $key_a;
my $kcv_a = kcv_hex($key_a);
my $kcv_b = kcv_hex($key_b);
# master_key_status() shows the first 8 bytes of a check value
my $fp_a = substr($kcv_a, 0, 16);
my $fp_b = substr($kcv_b, 0, 16);
isnt($fp_a, $fp_b, 'the two keys have different fingerprints');

my $node = PostgreSQL::Test::Cluster->new('master_rotation');
my $file_a = $node->basedir . '/master_a.key';
my $file_b = $node->basedir . '/master_b.key';
my $conf = $node->data_dir . '/envault.conf';

# The master key settings live in envault.conf, rewritten for each step.
sub set_key_conf
{
	my (%settings) = @_;
	my $text = '';
	foreach my $name (sort keys %settings)
	{
		(my $value = $settings{$name}) =~ s/'/''/g;
		$text .= "envault.$name = '$value'\n";
	}
	write_private_file($conf, $text);
	return;
}

# Restart with the given key settings; check that the start-up was clean.
sub restart_with
{
	my ($name, %settings) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	set_key_conf(%settings);
	my $offset = -s $node->logfile;
	$node->restart;
	unlike(slurp_file($node->logfile, $offset),
		qr/WARNING/, "$name: the server starts without a warning");
	return;
}

# The tenant rows, against their snapshot taken under key A:
#   tenants | under A | under B | under A and unchanged byte for byte
#   | under B and rewrapped (a new wrapped key, of the same length)
#   | otherwise intact (active, master-wrapped, key version unchanged)
my $tenants_sql = qq{
SELECT count(*) || '|'
	|| count(*) FILTER (WHERE t.master_kcv = '\\x$kcv_a') || '|'
	|| count(*) FILTER (WHERE t.master_kcv = '\\x$kcv_b') || '|'
	|| count(*) FILTER (WHERE t.master_kcv = '\\x$kcv_a'
						  AND t.wrapped_key = b.wrapped_key) || '|'
	|| count(*) FILTER (WHERE t.master_kcv = '\\x$kcv_b'
						  AND t.wrapped_key <> b.wrapped_key
						  AND octet_length(t.wrapped_key) = octet_length(b.wrapped_key)) || '|'
	|| count(*) FILTER (WHERE t.state = 'active' AND t.key_source = 'master'
						  AND t.customer_kcv IS NULL
						  AND t.key_version = b.key_version)
  FROM envault.tenants t FULL JOIN tenants_before b USING (tenant)};

sub check_tenants
{
	my ($name, $under_a, $under_b) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is($node->safe_psql('postgres', $tenants_sql),
		"$ntenants|$under_a|$under_b|$under_a|$under_b|$ntenants",
		"$name: $under_a tenant keys untouched under A, $under_b rewrapped under B, no row damaged"
	);
	return;
}

# Every value decrypted (or, with $step, every $step-th one), by the master
# key over its tenant:
#   under A | of which right | under B | of which right | values
sub decrypt_sql
{
	my ($step) = @_;
	return qq{
SELECT count(*) FILTER (WHERE kcv = '\\x$kcv_a') || '|'
	|| count(*) FILTER (WHERE kcv = '\\x$kcv_a' AND ok) || '|'
	|| count(*) FILTER (WHERE kcv = '\\x$kcv_b') || '|'
	|| count(*) FILTER (WHERE kcv = '\\x$kcv_b' AND ok) || '|'
	|| count(*)
  FROM (SELECT t.master_kcv AS kcv,
			   envault.env_decrypt_text(v.ct) = v.expected AS ok
		  FROM vals v JOIN envault.tenants t USING (tenant)
		 WHERE v.id % $step = 0) s};
}

sub check_decrypt
{
	my ($name, $under_a, $under_b) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) = $node->psql('postgres', decrypt_sql(1));
	is($ret, 0, "$name: decrypting every value succeeds") or diag($err);
	is($out, "$under_a|$under_a|$under_b|$under_b|$ntenants",
		"$name: every value decrypts to its plaintext ($under_a tenants under A, $under_b under B)"
	);
	return;
}

# The same for every 50th value, all under one key ('A' or 'B'): where a
# full pass adds nothing but time.
sub check_decrypt_sample
{
	my ($name, $key) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $n = $ntenants / 50;
	my ($ret, $out, $err) = $node->psql('postgres', decrypt_sql(50));
	is($ret, 0, "$name: decrypting every 50th value succeeds") or diag($err);
	is($out, ($key eq 'A' ? "$n|$n|0|0|$n" : "0|0|$n|$n|$n"),
		"$name: every 50th value decrypts to its plaintext (all under $key)");
	return;
}

my $status_sql =
  'SELECT master_key || \'|\' || check_value FROM envault.master_key_status()';

# The 'master key rotation' events, in order: "rewrapped|remain" each.
sub rotation_events
{
	my $out = $node->safe_psql(
		'postgres', q{
SELECT detail FROM envault.key_events
 WHERE operation = 'master key rotation' ORDER BY event_id});
	my @events;
	foreach my $line (split /\n/, $out)
	{
		die "unexpected master key rotation event detail: $line"
		  unless $line =~ /^(\d+) tenant keys rewrapped, (\d+) remain$/;
		push @events, [ $1, $2 ];
	}
	return @events;
}

# ==== 1. key A, 10,000 tenants ==============================================

$node->init;
# No autovacuum: no worker may start behind the test's back and outlive the
# killed postmaster.
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "autovacuum = off\n"
	  . "include 'envault.conf'\n");
write_private_file($file_a, "$key_a\n");
write_private_file($file_b, "$key_b\n");
set_key_conf(master_key_file => $file_a);
$node->start;
unlike(slurp_file($node->logfile), qr/WARNING/,
	'key A: the server starts without a warning');

$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION envault;
SELECT envault.create_tenant('t' || g) FROM generate_series(1, $ntenants) g;
CREATE TABLE vals (
	id			int PRIMARY KEY,
	tenant		text NOT NULL,
	ct			bytea NOT NULL,
	expected	text NOT NULL
);
INSERT INTO vals
	SELECT g, 't' || g, envault.env_encrypt('t' || g, 'p', 'value ' || g), 'value ' || g
	  FROM generate_series(1, $ntenants) g;
CREATE TABLE tenants_before AS
	SELECT tenant, key_version, wrapped_key, master_kcv FROM envault.tenants;
CREATE TABLE data_keys_before AS
	SELECT key_id, tenant, state, wrapped_key FROM envault.data_keys;
});

is($node->safe_psql('postgres', $status_sql),
	"current|$fp_a", 'key A: master_key_status shows key A only');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) || '|' || count(DISTINCT tenant) || '|'
		      || count(*) FILTER (WHERE position(convert_to(expected, 'UTF8') IN ct) > 0)
		    FROM vals}),
	"$ntenants|$ntenants|0",
	'one value per tenant, none holding its plaintext');
check_tenants('key A', $ntenants, 0);
check_decrypt_sample('key A', 'A');

# The data keys are wrapped by the tenant keys, which a master key rotation
# does not change: they must never be touched.
my $data_keys_sql = q{
SELECT count(*) || '|' || count(*) FILTER (WHERE d.wrapped_key = b.wrapped_key
											AND d.tenant = b.tenant
											AND d.state = b.state)
  FROM envault.data_keys d FULL JOIN data_keys_before b USING (key_id)};
is($node->safe_psql('postgres', $data_keys_sql),
	"$ntenants|$ntenants", 'one data key per tenant');

# ==== 2. key B, with A as the previous key ===================================

restart_with('key B, previous A',
	master_key_file => $file_b,
	previous_master_key_file => $file_a);
is( $node->safe_psql('postgres', $status_sql),
	"current|$fp_b\nprevious|$fp_a",
	'key B, previous A: master_key_status shows B as current, A as previous');
check_tenants('key B, previous A, before the rotation', $ntenants, 0);
check_decrypt('key B, previous A, before the rotation', $ntenants, 0);

# ==== 3. the rotation, held in the middle of a batch, then killed ============

my $gate = $node->background_psql('postgres');
my $rot = $node->background_psql('postgres');
my $rot_pid = $rot->query_safe('SELECT pg_backend_pid()');
my @server_pids = split /,/,
  $gate->query_safe(
	q{SELECT string_agg(pid::text, ',') FROM pg_stat_activity});
my ($postmaster_pid) =
  slurp_file($node->data_dir . '/postmaster.pid') =~ /\A(\d+)\n/;
die "no postmaster pid" unless $postmaster_pid;

$rot->query_until(qr/started/,
	"\\echo started\nCALL envault.rotate_master_key($batch);\n");

# Each probe takes the SHARE lock on envault.key_events (waiting for a
# batch that already wrote its event to commit), then counts the committed
# tenants under B.  Keep the lock once at least two batches are committed.
my $committed;
my $deadline = time() + $timeout;
while (1)
{
	$committed = $gate->query_safe(
		qq{BEGIN;
LOCK TABLE envault.key_events IN SHARE MODE;
SELECT count(*) FROM envault.tenants WHERE master_kcv = '\\x$kcv_b';});
	last if $committed >= 2 * $batch;
	$gate->query_safe('ROLLBACK');
	$rot->{run}->pump_nb;
	die "rotate_master_key failed:\n$rot->{stderr}"
	  if $rot->{stderr} =~ /ERROR|FATAL/ || !$rot->{run}->pumpable;
	die "rotate_master_key made no progress" if time() > $deadline;
	usleep(2_000);
}
note "the rotation is held with $committed tenant keys committed under B";
cmp_ok($committed, '<', $ntenants,
	'the rotation is held before it has rewrapped every tenant key')
  or die 'the rotation finished before it could be held';
is($committed % $batch, 0, 'only whole batches are committed');

# The rotation backend is now inside a batch: it wrote its rewrapped rows
# (it has a transaction id) and waits for the lock to record its event.
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) = 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
 WHERE l.pid = $rot_pid AND NOT l.granted
   AND l.relation = 'envault.key_events'::regclass
   AND a.backend_xid IS NOT NULL}),
	'the rotation waits, with an uncommitted batch, to record its event');

# Its progress so far, as it reported it.
my $rest = $ntenants - $committed;
$deadline = time() + $timeout;
while ($rot->{stderr} !~
	/NOTICE:  rotate_master_key: $committed tenant keys rewrapped, $rest remain\n/
	&& time() < $deadline)
{
	$rot->{run}->pump_nb;
	usleep(10_000);
}
like(
	$rot->{stderr},
	qr/NOTICE:  rotate_master_key: $committed tenant keys rewrapped, $rest remain\n\z/,
	'the rotation reported the committed batches, and nothing more');

# Meanwhile both kinds of tenants work, the ones in the held batch too
# (still under A for everyone else).
check_tenants('during the rotation', $rest, $committed);
check_decrypt('during the rotation', $rest, $committed);

my $offset = -s $node->logfile;
$node->kill9;
$deadline = time() + $timeout;
# (the postmaster must be reaped: a new one refuses to start while its
# pid exists, even as a zombie)
while (kill(0, $postmaster_pid) || grep { alive($_) } @server_pids)
{
	die "server processes still running after the postmaster was killed"
	  if time() > $deadline;
	usleep(20_000);
}

# The rotation's psql notices its lost server.
$deadline = time() + $timeout;
while ($rot->{stderr} !~
	/server closed the connection unexpectedly|connection to server was lost/
	&& $rot->{run}->pumpable
	&& time() < $deadline)
{
	eval { $rot->{run}->pump_nb; };
	usleep(20_000);
}
like(
	$rot->{stderr},
	qr/server closed the connection unexpectedly|connection to server was lost/,
	'the CALL lost its server');
unlike($rot->{stderr}, qr/can be removed/, 'the CALL had not finished');
eval { $rot->{run}->kill_kill; };
eval { $gate->{run}->kill_kill; };

# ==== 4. after the crash: resume the rotation ================================

$node->start;
like(
	slurp_file($node->logfile, $offset),
	qr/database system was not properly shut down; automatic recovery in progress/,
	'the server went through crash recovery');
is( $node->safe_psql('postgres', $status_sql),
	"current|$fp_b\nprevious|$fp_a",
	'after the crash: master_key_status shows B as current, A as previous');

my $after = $node->safe_psql('postgres',
	qq{SELECT count(*) FROM envault.tenants WHERE master_kcv = '\\x$kcv_b'});
cmp_ok($after, '>=', $committed,
	'after the crash: every batch committed before the kill is still under B');
is($after, $committed,
	'after the crash: the batch held uncommitted at the kill was rolled back');
check_tenants('after the crash', $rest, $committed);
check_decrypt('after the crash', $rest, $committed);
is($node->safe_psql('postgres', $data_keys_sql),
	"$ntenants|$ntenants", 'after the crash: no data key was touched');

my @events = rotation_events();
is(scalar(@events), $committed / $batch,
	'after the crash: one rotation event per committed batch');
is(sum0(map { $_->[0] } @events),
	$committed, 'after the crash: the events add up to the committed batches');

# psql prefixes what the server says with where it read the statement
my $where = qr/psql:<stdin>:\d+: /;
my $done_notice =
  'NOTICE:  rotate_master_key: every tenant key is wrapped by the current master key; the previous master key can be removed from the configuration';
my ($ret, $out, $err) =
  $node->psql('postgres', 'CALL envault.rotate_master_key()');
is($ret, 0, 'the rotation called again succeeds') or diag($err);
my @progress = $err =~
  /^$where?NOTICE:  rotate_master_key: (\d+) tenant keys rewrapped, (\d+) remain$/mg;
my @pairs;
push @pairs, [ splice(@progress, 0, 2) ] while @progress;
is(scalar(@pairs), int(($rest + 999) / 1000),
	'the second CALL reports one batch of 1000 at a time');
is( scalar(grep { $_->[0] + $_->[1] == $rest } @pairs),
	scalar(@pairs),
	'every report of the second CALL accounts for exactly the tenant keys left'
);
like(
	$err,
	qr/NOTICE:  rotate_master_key: $rest tenant keys rewrapped, 0 remain\n$where?\Q$done_notice\E\n?\z/,
	'the second CALL ends with 0 remain, and says the previous key can go');

check_tenants('after the rotation', 0, $ntenants);
check_decrypt('after the rotation', 0, $ntenants);
is($node->safe_psql('postgres', $data_keys_sql),
	"$ntenants|$ntenants", 'after the rotation: no data key was touched');

@events = rotation_events();
is(sum0(map { $_->[0] } @events),
	$ntenants, 'the master key rotation events add up to 10,000 rewrapped');
my $left = $ntenants;
my $consistent = 1;
foreach my $e (@events)
{
	$left -= $e->[0];
	$consistent = 0 unless $e->[0] > 0 && $e->[1] == $left;
}
ok($consistent && $events[-1][1] == 0,
	'each rotation event counts down the tenant keys left, to 0');

# A finished rotation called again rewraps nothing and records nothing.
($ret, $out, $err) =
  $node->psql('postgres', 'CALL envault.rotate_master_key()');
is($ret, 0, 'a finished rotation called again succeeds') or diag($err);
like(
	$err,
	qr/\A$where?NOTICE:  rotate_master_key: 0 tenant keys rewrapped, 0 remain\n$where?\Q$done_notice\E\n?\z/,
	'and reports nothing left to do');
is(scalar(rotation_events()), scalar(@events),
	'and records no rotation event');

# ==== 5. the previous key removed ============================================

restart_with('key B alone', master_key_file => $file_b);
is($node->safe_psql('postgres', $status_sql),
	"current|$fp_b", 'key B alone: master_key_status shows key B only');
check_decrypt('key B alone', 0, $ntenants);
check_error($node, 'postgres',
	'key B alone: rotate_master_key',
	'CALL envault.rotate_master_key()',
	'55000',
	'no previous envault master key is configured',
	undef,
	'Set envault.previous_master_key_file (or _key, or _key_command) to the old key and the master key settings to the new one, and restart the server.'
);
check_tenants('key B alone, after the refused rotation', 0, $ntenants);
is(scalar(rotation_events()), scalar(@events),
	'the refused rotation recorded no event');

# ==== 6. the wrong key: A alone ==============================================

restart_with('key A alone', master_key_file => $file_a);
is($node->safe_psql('postgres', $status_sql),
	"current|$fp_a", 'key A alone: master_key_status shows key A only');
check_error($node, 'postgres',
	'key A alone: decrypt',
	q{SELECT envault.env_decrypt_text(ct) FROM vals WHERE id = 1},
	'F0000',
	'configured envault master key does not match the key that wrapped tenant "t1"',
	"The tenant key was wrapped by the master key with check value $fp_b; the configured master key has check value $fp_a.",
	q{Configure the master key that this database's keys were created with.}
);
check_error($node, 'postgres',
	'key A alone: decrypt another tenant',
	q{SELECT envault.env_decrypt_text(ct) FROM vals WHERE id = 9999},
	'F0000',
	'configured envault master key does not match the key that wrapped tenant "t9999"',
	"The tenant key was wrapped by the master key with check value $fp_b; the configured master key has check value $fp_a.",
	q{Configure the master key that this database's keys were created with.}
);
check_tenants('key A alone', 0, $ntenants);

# ==== 7. back to key B; the log ==============================================

restart_with('key B again', master_key_file => $file_b);
check_decrypt_sample('key B again', 'B');

$node->stop;

my $log = slurp_file($node->logfile);
like($log, qr/statement: CREATE EXTENSION envault/,
	'the server log was written to');
foreach my $k ([ 'A', $key_a ], [ 'B', $key_b ])
{
	my ($name, $hex) = @$k;
	unlike($log, qr/\Q$hex\E/i, "the server log does not contain key $name");
	unlike($log, qr/\Q${\ substr($hex, 0, 32)}\E/i,
		"the server log does not contain the first half of key $name");
	unlike($log, qr/\Q${\ substr($hex, 32)}\E/i,
		"the server log does not contain the second half of key $name");
}

done_testing();
