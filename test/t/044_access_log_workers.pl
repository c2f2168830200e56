# envault TAP test: the access log's workers cannot be crowded out.
#
# envault preloaded with two access log queues (envault.access_log_databases
# = 2) in a server of five background worker processes: the two access log
# workers are registered at server start and hold two of the five places,
# the logical replication launcher one; the other two are left for
# everything else (src/accessworker.c).
#
# 1. A role with no grants at all fills every background worker place it
#    can get: parallel queries (force_parallel_mode) that sleep.  0.2.0
#    started its worker on demand, could not, and every decryption in the
#    cluster hung.  Now decryption goes on, in two databases, each record
#    in its own database's envault.access_log.
# 2. Three databases, two queues: the third waits for a queue (a worker
#    idle while another database waits gives its queue back at once), and
#    every record lands in its own database; none goes to the server log.
# 3. The worker of a queue is terminated: the postmaster starts it again,
#    and the next decryption is recorded.
# 4. envault.access_log_databases must leave room in max_worker_processes:
#    a server configured otherwise refuses to start, and says why.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest;
use EnvaultLog;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('access_log_workers');
$node->init;
my $key_file = $node->basedir . '/master.key';
write_private_file($key_file, random_key_hex() . "\n");
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key_file = '$key_file'\n"
	  . "envault.access_log_databases = 2\n"
	  . "envault.access_log_worker_idle = 1\n"
	  . "max_worker_processes = 5\n"
	  . "max_parallel_workers = 4\n"
	  . "autovacuum = off\n");
$node->start;

my @dbs = ('postgres', 'appdb2', 'appdb3');
foreach my $db (@dbs)
{
	$node->safe_psql('postgres', "CREATE DATABASE $db") if $db ne 'postgres';
	$node->safe_psql(
		$db, qq{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme_$db');
CREATE TABLE v (id int PRIMARY KEY, c bytea NOT NULL);
INSERT INTO v SELECT g, envault.env_encrypt('acme_$db', 'pii', '$db ' || g, int4send(g))
  FROM generate_series(1, 3) g;
});
}
$node->safe_psql('postgres', 'CREATE ROLE regress_nobody LOGIN');

# The pids of the access log workers of this node, connected or not (an
# unconnected worker is not in pg_stat_activity): the children of its
# postmaster whose process title names them.
sub worker_pids
{
	my ($postmaster) =
	  slurp_file($node->data_dir . '/postmaster.pid') =~ /\A(\d+)\n/;
	my @pids;
	opendir(my $dh, '/proc') or die "could not read /proc: $!";
	foreach my $pid (grep { /^\d+$/ } readdir($dh))
	{
		open(my $st, '<', "/proc/$pid/stat") or next;
		my $stat = <$st> // '';
		close $st;
		next unless $stat =~ /^\d+ \(.*\) \S+ (\d+) /s && $1 == $postmaster;
		open(my $fh, '<', "/proc/$pid/cmdline") or next;
		my $cmd = <$fh> // '';
		close $fh;
		push @pids, $pid if $cmd =~ /envault access log worker \d+/;
	}
	closedir $dh;
	return join(',', sort { $a <=> $b } @pids);
}

like(worker_pids(), qr/^\d+,\d+$/,
	'two access log workers run from server start');

# Decrypt value $id in database $db as application $app, within 60 s.
sub decrypt
{
	my ($db, $id, $app) = @_;
	my ($ret, $out, $err) = $node->psql(
		$db, qq{SET application_name = '$app';
SET statement_timeout = '60s';
SELECT envault.env_decrypt_text(c, int4send(id)) FROM v WHERE id = $id});
	return $ret == 0 ? $out : "failed: $err";
}

# The records of application $app in database $db: "tenant:count ..."
sub records
{
	my ($db, $app) = @_;
	return $node->safe_psql(
		$db, qq{
SELECT string_agg(tenant || ':' || count, ' ' ORDER BY envault_seq)
  FROM envault.access_log WHERE application_name = '$app'});
}

# ==== 1. every other worker place taken ======================================

my $offset = -s $node->logfile;
my @hogs;
# (PostgreSQL 16 renamed force_parallel_mode to debug_parallel_query)
my $force_parallel =
  $node->pg_version >= 16 ? 'debug_parallel_query' : 'force_parallel_mode';
foreach my $i (1 .. 3)
{
	my $h = $node->background_psql('postgres', on_error_stop => 0,
		extra_params => [ '-U', 'regress_nobody' ]);
	$h->query_until(qr/go/,
		    "SET $force_parallel = on;\n"
		  . "\\echo go\n"
		  . "SELECT pg_sleep(600);\n");
	push @hogs, $h;
}
ok( $node->poll_query_until(
		'postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'},
		'2'),
	'a role with no grants holds every background worker place left (2 parallel workers)'
);
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'parallel worker' AND usename = 'regress_nobody'}),
	'2', 'the parallel workers are that role\'s');

is(decrypt('postgres', 1, 'crowded'), 'postgres 1',
	'worker places full: a decryption in database postgres completes');
is(decrypt('appdb2', 2, 'crowded'), 'appdb2 2',
	'worker places full: and one in database appdb2');
is(records('postgres', 'crowded'), 'acme_postgres:1',
	'worker places full: postgres has its record');
is(records('appdb2', 'crowded'), 'acme_appdb2:1',
	'worker places full: appdb2 has its record');
is(scalar(access_lines($node, $offset)), 0,
	'worker places full: no record went to the server log');
# (a backend in pg_sleep does not notice that its client is gone)
$node->safe_psql('postgres',
	q{SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
	   WHERE usename = 'regress_nobody' AND backend_type = 'client backend'});
foreach my $h (@hogs)
{
	eval { $h->{run}->kill_kill; };
}
ok( $node->poll_query_until(
		'postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'},
		'0'),
	'the sleeping parallel queries are gone');

# ==== 2. more databases than queues ==========================================

$offset = -s $node->logfile;
foreach my $round (1 .. 2)
{
	foreach my $db (@dbs)
	{
		is(decrypt($db, 3, "three-$round"), "$db 3",
			"three databases, two queues, round $round: $db decrypts");
	}
}
foreach my $db (@dbs)
{
	is(records($db, 'three-1') . ' ' . records($db, 'three-2'),
		"acme_$db:1 acme_$db:1",
		"three databases, two queues: $db has its own two records, and only its own");
}
is(scalar(access_lines($node, $offset)), 0,
	'three databases, two queues: no record went to the server log');

# ==== 3. a terminated worker comes back =======================================

# (by the operating system's signal: a worker waiting unconnected for a
# database is not a backend that pg_terminate_backend() can reach)
my $before = worker_pids();
is(kill('TERM', split(/,/, $before)), 2, "both workers ($before) are sent SIGTERM");
# two workers, neither of them one of those terminated
sub restarted
{
	my ($now, $old) = @_;
	my %gone = map { $_ => 1 } split /,/, $old;
	my @pids = split /,/, $now;
	return @pids == 2 && !grep { $gone{$_} } @pids;
}
# The postmaster starts a worker that exited again the next time its loop
# runs; with nothing else to do it may sleep up to a minute first.  A
# connection wakes it, as any client's would: poll with one.
my $after = '';
foreach (1 .. 300)
{
	$after = worker_pids();
	last if restarted($after, $before);
	$node->safe_psql('postgres', 'SELECT 1');
	usleep(100_000);
}
ok(restarted($after, $before),
	"terminated workers ($before) are started again by the postmaster ($after)");
is(decrypt('postgres', 2, 'after-terminate'), 'postgres 2',
	'after the workers were terminated, a decryption completes');
is(records('postgres', 'after-terminate'), 'acme_postgres:1',
	'and its record is there');

# ==== 4. a configuration without room =========================================

$node->stop;
$node->append_conf('postgresql.conf', "envault.access_log_databases = 5\n");
$offset = -s $node->logfile;
ok(!$node->start(fail_ok => 1),
	'access_log_databases = max_worker_processes: the server does not start');
like(
	slurp_file($node->logfile, $offset),
	qr/envault\.access_log_databases \(5\) must be less than max_worker_processes \(5\)/,
	'and the log says why');
$node->append_conf('postgresql.conf', "envault.access_log_databases = 2\n");
$node->start;
is(decrypt('postgres', 3, 'restarted'), 'postgres 3',
	'with room again the server starts and decrypts');

$node->stop;
done_testing();
