# EnvaultTest: helpers shared by envault's TAP tests: keys and private files,
# psql scripts in the background, and killing the server.
#
#   use FindBin;
#   use lib $FindBin::RealBin;
#   use EnvaultTest;
#
# random_key_hex()                  a fresh random 256-bit key, in hex
# write_private_file($path, $text[, $mode])  a file only its owner can read
#                                   (mode 0600 unless given, e.g. 0700 for a script)
# start_script($node, $name, $sql)  psql runs $sql from a file, in the
#                                   background; stdout and stderr go to files
# script_running($script)           is that psql still running?
# finish_script($script)            wait for it to exit; its stdout, stderr
# crash($node, $session, %opts)     SIGKILL the postmaster (and with
#                                   every_process => 1 every server process
#                                   $session, a BackgroundPsql, can see),
#                                   wait until they are gone; returns the
#                                   log offset before the kill
# restart_after_crash($node, $offset, $name)
#                                   start again, test that it recovered
#
# On request (use EnvaultTest qw(... crash_when_ready acks_after_crash)):
#
# crash_when_ready($node, $what, $sql, @scripts)
#                                   poll $sql (a boolean) until it is true,
#                                   every script still running (one that
#                                   stopped is an error, with its stderr);
#                                   then crash() with every_process; returns
#                                   the log offset before the kill
# acks_after_crash($script)         test that the script lost its server
#                                   with no error before; returns the lines
#                                   it echoed (its acknowledgements)
# query_is($node, $sql, $want, $name)
#                                   two tests: $sql runs, and returns $want
# kcv_hex($key_hex[, $label])       a key's check value as envault stores it:
#                                   the first 16 bytes, in hex, of
#                                   HMAC-SHA256 keyed with $label
#                                   ('envault/v1/key-check-value' unless
#                                   given) over the key
# check_error($node, $db, $name, $sql, $sqlstate, $message, $detail, $hint, %psql)
#                                   two tests: $sql fails in $db, with
#                                   exactly that SQLSTATE, message, detail
#                                   and hint (undef: none), followed by its
#                                   CONTEXT or LOCATION; %psql goes to
#                                   $node->psql
# restart_and_log($node)            restart the server; what it logged
#                                   meanwhile
# sql_lit($value)                   an SQL literal of a Perl string (NULL
#                                   for undef)
# verbose_session($node)            a BackgroundPsql on postgres that goes
#                                   on after an error, with VERBOSITY verbose
# chain_lock_key($node, $insert)    the key of the audit chain lock that the
#                                   INSERT statement $insert takes (pg_locks:
#                                   classid the high half, objid the low
#                                   one), rolled back; 20 decimal digits, so
#                                   that keys compare as strings in the
#                                   order chain locks are taken
#
# A script's psql stops at the first error (ON_ERROR_STOP), and at a lost
# connection.  Its stdout is written only by its own \echo commands (-q, -t,
# -A), so a line it echoes after a COMMIT is an acknowledged commit: psql
# runs the next line only once the server has answered the one before.

package EnvaultTest;

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_hex);
use Exporter 'import';
use Fcntl qw(O_WRONLY O_CREAT O_TRUNC);
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(random_key_hex write_private_file start_script
  script_running finish_script crash restart_after_crash);
our @EXPORT_OK = qw(crash_when_ready acks_after_crash query_is chain_lock_key alive
  kcv_hex check_error restart_and_log sql_lit verbose_session);

my $timeout = $PostgreSQL::Test::Utils::timeout_default;

sub random_key_hex
{
	open my $fh, '<:raw', '/dev/urandom' or die "open /dev/urandom: $!";
	my $n = read($fh, my $bytes, 32);
	close $fh;
	die "short read from /dev/urandom" unless defined $n && $n == 32;
	return unpack('H*', $bytes);
}

sub write_private_file
{
	my ($path, $contents, $mode) = @_;
	$mode = 0600 unless defined $mode;
	unlink $path;
	sysopen(my $fh, $path, O_WRONLY | O_CREAT | O_TRUNC, 0600)
	  or die "could not create \"$path\": $!";
	print $fh $contents or die "could not write \"$path\": $!";
	close $fh or die "could not close \"$path\": $!";
	chmod($mode, $path) or die "could not chmod \"$path\": $!";
	return;
}

sub start_script
{
	my ($node, $name, $sql) = @_;
	my $base = $node->basedir . "/script_$name";
	my $s = {
		name => $name,
		sql => "$base.sql",
		out => "$base.out",
		err => "$base.err"
	};
	open my $fh, '>', $s->{sql} or die "could not create \"$s->{sql}\": $!";
	print $fh $sql or die "could not write \"$s->{sql}\": $!";
	close $fh or die "could not close \"$s->{sql}\": $!";
	$s->{run} = IPC::Run::start(
		[
			$node->installed_command('psql'), '-XAtq',
			'-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres'),
			'-f', $s->{sql}
		],
		'<', '/dev/null',
		'>', $s->{out},
		'2>', $s->{err},
		IPC::Run::timeout($timeout));
	return $s;
}

sub script_running
{
	my ($s) = @_;
	# (pump_nb dies once the process has ended: that is "not running")
	return 0 unless eval { $s->{run}->pump_nb; 1 };
	return $s->{run}->pumpable;
}

sub finish_script
{
	my ($s) = @_;
	# (psql exits with 2 on a lost connection, 3 on an error in a script)
	eval { $s->{run}->finish; };
	die "psql of script $s->{name} did not exit: $@" if $@;
	return (slurp_file($s->{out}), slurp_file($s->{err}));
}

# Is process $pid running (a zombie counts as gone)?
sub alive
{
	my ($pid) = @_;
	return 0 unless kill(0, $pid);
	if (open my $fh, '<', "/proc/$pid/stat")
	{
		my $stat = <$fh>;
		close $fh;
		return 0 if defined $stat && $stat =~ /^\d+ \(.*\) Z /s;
	}
	return 1;
}

# The postmaster is killed with SIGKILL: no shutdown of any kind.  The
# other server processes notice by themselves, at their next wait: a busy
# backend first finishes its statement (a COMMIT too), then exits as if its
# client had gone, aborting its transaction.  With every_process, they are
# all killed at once instead, wherever they are: in the middle of a
# statement, or between writing a commit record and answering it.  Waits
# until they are gone and the postmaster is reaped (a new one refuses to
# start while its pid exists, even as a zombie).  Returns the log offset
# before the kill.
sub crash
{
	my ($node, $session, %opts) = @_;
	my @pids = split /\n/,
	  $session->query_safe('SELECT pid FROM pg_stat_activity');
	my ($postmaster) =
	  slurp_file($node->data_dir . '/postmaster.pid') =~ /\A(\d+)\n/;
	die "no postmaster pid" unless $postmaster;
	my $offset = -s $node->logfile;
	$node->kill9;
	kill('KILL', @pids) if $opts{every_process};
	my $deadline = time() + $timeout;
	while (kill(0, $postmaster) || grep { alive($_) } @pids)
	{
		die "server processes still running after the postmaster was killed"
		  if time() > $deadline;
		usleep(20_000);
	}
	return $offset;
}

sub crash_when_ready
{
	my ($node, $what, $sql, @scripts) = @_;
	my $poll = $node->background_psql('postgres');
	my $deadline = time() + $timeout;
	my $all_running = sub {
		foreach my $s (@scripts)
		{
			die "script $s->{name} stopped before the crash:\n"
			  . slurp_file($s->{err})
			  unless script_running($s);
		}
	};
	while ($poll->query_safe($sql) ne 't')
	{
		$all_running->();
		die "no progress: $what" if time() > $deadline;
		usleep(10_000);
	}
	$all_running->();
	my $offset = crash($node, $poll, every_process => 1);
	eval { $poll->{run}->kill_kill; };
	return $offset;
}

sub acks_after_crash
{
	my ($s) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($out, $err) = finish_script($s);
	unlike($err, qr/ERROR/, "$s->{name}: no error before the crash")
	  or diag($err);
	like(
		$err,
		qr/server closed the connection unexpectedly|connection to server was lost|terminating connection due to unexpected postmaster exit/,
		"$s->{name}: lost its server");
	return split /\n/, $out;
}

sub query_is
{
	my ($node, $sql, $want, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	is($ret, 0, "$name: the query runs") or diag($err);
	is($out, $want, $name);
	return;
}

sub kcv_hex
{
	my ($key_hex, $label) = @_;
	$label //= 'envault/v1/key-check-value';
	return substr(hmac_sha256_hex($label, pack('H*', $key_hex)), 0, 32);
}

sub check_error
{
	my ($node, $db, $name, $sql, $sqlstate, $message, $detail, $hint, %psql)
	  = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) =
	  $node->psql($db, "\\set VERBOSITY verbose\n$sql", %psql);
	is($ret, 3, "$name: the statement fails");
	my $block = "ERROR:  $sqlstate: $message\n";
	$block .= "DETAIL:  $detail\n" if defined $detail;
	$block .= "HINT:  $hint\n"     if defined $hint;
	like(
		$err,
		qr/^psql:<stdin>:\d+: \Q$block\E(?:CONTEXT|LOCATION):  /m,
		"$name: SQLSTATE, message, detail and hint");
	return;
}

sub restart_and_log
{
	my ($node) = @_;
	my $offset = -s $node->logfile;
	$node->restart;
	return slurp_file($node->logfile, $offset);
}

sub sql_lit
{
	my ($v) = @_;
	return 'NULL' unless defined $v;
	$v =~ s/'/''/g;
	return "'$v'";
}

sub verbose_session
{
	my ($node) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->query_safe('\set VERBOSITY verbose');
	return $s;
}

sub chain_lock_key
{
	my ($node, $insert) = @_;
	my $key = $node->safe_psql(
		'postgres', qq{
BEGIN;
$insert;
SELECT lpad((classid::int8::numeric * 4294967296 + objid::int8)::text, 20, '0')
  FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 17750 AND pid = pg_backend_pid();
ROLLBACK;});
	die "\"$insert\" took no audit chain lock" unless $key =~ /^\d{20}$/;
	return $key;
}

sub restart_after_crash
{
	my ($node, $offset, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$node->start;
	like(
		slurp_file($node->logfile, $offset),
		qr/database system was not properly shut down; automatic recovery in progress/,
		"$name: the server went through crash recovery");
	return;
}

1;
