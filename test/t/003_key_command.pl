# envault TAP test: the master key from envault.master_key_command.
#
# envault is preloaded.  The command is a shell script written by the test;
# it logs each run to a file, so the test can tell when the key is read: once
# in the postmaster at server start, or, when that failed, once in each
# session that needs the key.  A command that fails (exit code, signal) or
# prints something other than a key is refused with a precise error.  SHOW
# hides the command from superusers and refuses it to other roles, and the
# command never reaches the server log.

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex write_private_file kcv_hex check_error restart_and_log);

use Fcntl qw(O_WRONLY O_CREAT O_TRUNC);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $key = random_key_hex();
my $node = PostgreSQL::Test::Cluster->new('key_command');
my $dir = $node->basedir;
my $keyfile = "$dir/master.key";
my $script = "$dir/fetch-envault-key.sh";
my $runs = "$dir/runs";

write_private_file($keyfile, "$key\n");

# (Re)write the script: it records its run, then does $body.
sub set_script
{
	my ($body) = @_;
	write_private_file($script,
		"#!/bin/sh\necho run >> '$runs'\n$body\n", 0700);
	return;
}

# How many times the script ran since the last call.
sub take_runs
{
	my $n = 0;
	if (-e $runs)
	{
		$n = () = slurp_file($runs) =~ /^run$/mg;
		unlink($runs) or die "unlink: $!";
	}
	return $n;
}

my $decrypt_sql = 'SELECT envault.env_decrypt_text(ct) FROM secrets ORDER BY id';
my $encrypt_sql =
  q{SELECT envault.env_encrypt('acme', 'secrets', 'more'::text) IS NOT NULL};
my $failed_message = 'envault.master_key_command failed';
my $failed_hint = 'Check envault.master_key_command and the service it asks.';
my $malformed_message =
  'envault master key from envault.master_key_command is malformed';
my $malformed_hint = 'Check that envault.master_key_command prints only the key.';
my $format_detail =
  'The master key must be 64 hexadecimal characters (32 bytes), optionally followed by a newline.';

# --- a working command ----------------------------------------------------

set_script("cat '$keyfile'");
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key_command = '$script'");
$node->start;

is(take_runs(), 1, 'the command ran once, at server start');
unlike(slurp_file($node->logfile), qr/WARNING/, 'no warning at startup');

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
CREATE TABLE secrets (id int PRIMARY KEY, ct bytea NOT NULL);
INSERT INTO secrets VALUES
	(1, envault.env_encrypt('acme', 'secrets', 'from a key command'::text)),
	(2, envault.env_encrypt('acme', 'other', 'another value'::text));
});
my $expected = "from a key command\nanother value";

is($node->safe_psql('postgres', $decrypt_sql),
	$expected, 'values encrypted with the command\'s key decrypt');
is( $node->safe_psql(
		'postgres',
		q{SELECT encode(master_kcv, 'hex') FROM envault.tenants WHERE tenant = 'acme'}
	),
	kcv_hex($key),
	'the tenant key is wrapped by the key the command printed');
is($node->safe_psql('postgres', $decrypt_sql),
	$expected, 'and decrypt in another session');
is(take_runs(), 0, 'sessions use the key read at startup');

restart_and_log($node);
is($node->safe_psql('postgres', $decrypt_sql),
	$expected, 'values decrypt after a restart');
is(take_runs(), 1, 'the command ran once more, at the restart');

# --- SHOW and friends ------------------------------------------------------

is($node->safe_psql('postgres', 'SHOW envault.master_key_command'),
	'********', 'SHOW envault.master_key_command hides the command');
is( $node->safe_psql(
		'postgres', q{SELECT current_setting('envault.master_key_command')}),
	'********',
	'current_setting() hides the command');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_settings WHERE name LIKE 'envault.master_key%'
		     AND name <> 'envault.master_key_file'}),
	'0',
	'pg_settings lists neither the key nor the command');
my $show_all = $node->safe_psql('postgres', 'SHOW ALL');
like($show_all, qr/^envault\.key_cache_size\|/m,
	'SHOW ALL lists envault settings');
unlike($show_all, qr/^envault\.master_key_command\|/m,
	'SHOW ALL does not list the command');
unlike($show_all, qr/\Q$script\E/, 'SHOW ALL does not contain the command');

check_error($node, 'postgres',
	'SET the command',
	q{SET envault.master_key_command = 'true'},
	'55P02',
	'parameter "envault.master_key_command" cannot be changed without restarting the server'
);

$node->safe_psql('postgres',
	'CREATE ROLE alice LOGIN; GRANT envault_admin TO alice; GRANT SELECT ON secrets TO alice');
my $alice = $node->connstr('postgres') . ' user=alice';
my $denied =
  'must be superuser or have privileges of pg_read_all_settings to examine "envault.master_key_command"';
check_error($node, 'postgres', 'SHOW as a non-superuser', 'SHOW envault.master_key_command',
	'42501', $denied, undef, undef, connstr => $alice);
check_error($node, 'postgres',
	'current_setting() as a non-superuser',
	q{SELECT current_setting('envault.master_key_command')},
	'42501', $denied, undef, undef, connstr => $alice);
is( $node->safe_psql(
		'postgres', 'SELECT envault.env_decrypt_text(ct) FROM secrets WHERE id = 1',
		connstr => $alice),
	'from a key command',
	'a non-superuser (an envault_admin, so no tenant context is needed) can still decrypt');

# --- a failing command -------------------------------------------------------

set_script('exit 3');
my $log = restart_and_log($node);
like(
	$log,
	qr/\] WARNING:  \Q$failed_message\E\n.*\] DETAIL:  \QThe command child process exited with exit code 3.\E\n.*\] HINT:  \Q$failed_hint\E\n/,
	'a command that exits with code 3 gives a WARNING at startup');
is(take_runs(), 1, 'the failing command ran at startup');
is($node->safe_psql('postgres', 'SELECT 1'),
	'1', 'the server runs although the command failed');
is(take_runs(), 0, 'a session that needs no key does not run the command');

check_error($node, 'postgres', 'decrypt, command exits 3', $decrypt_sql, 'F0000',
	$failed_message, 'The command child process exited with exit code 3.',
	$failed_hint);
is(take_runs(), 1, 'the session ran the command again');

# The postmaster has no key now, so each session runs the command itself.
set_script("cat '$keyfile'; exit 1");
check_error($node, 'postgres',
	'encrypt, command prints the key but exits 1',
	$encrypt_sql, 'F0000', $failed_message,
	'The command child process exited with exit code 1.',
	$failed_hint);

set_script('kill -KILL $PPID');
check_error($node, 'postgres',
	'encrypt, command killed by a signal',
	$encrypt_sql, 'F0000', $failed_message,
	'The command child process was terminated by signal 9: Killed.',
	$failed_hint);
take_runs();

# --- a command that prints something else than a key -----------------------

my %garbage = (
	'a message' => q{echo 'no key for you'},
	'nothing' => 'true',
	'63 hex characters' => 'echo ' . substr($key, 0, 63),
	'the key twice' => "echo $key; echo $key",
	'the key and more' => "echo ${key}00",
	# more than the first 256 bytes must be looked at
	'the key, 300 blanks and more' =>
	  "echo $key; printf '%300s' ''; echo 'and more'",);
foreach my $case (sort keys %garbage)
{
	set_script($garbage{$case});
	check_error($node, 'postgres', "decrypt, command prints $case",
		$decrypt_sql, 'F0000', $malformed_message, $format_detail,
		$malformed_hint);
}

# A long output is read and discarded without trouble.
set_script(
	q{i=0; while [ $i -lt 2000 ]; do echo 'not a key, not a key, not a key'; i=$((i+1)); done}
);
check_error($node, 'postgres', 'decrypt, command prints 64 kB', $decrypt_sql, 'F0000',
	$malformed_message, $format_detail, $malformed_hint);
take_runs();

# --- fixed again ---------------------------------------------------------------

# Without a restart, each session that needs the key runs the command once.
set_script("printf '%s' '$key'");
is( $node->safe_psql(
		'postgres', "$decrypt_sql;\n$decrypt_sql;\n$encrypt_sql"),
	"$expected\n$expected\nt",
	'the fixed command works in a new session, without a restart');
is(take_runs(), 1, 'that session ran the command once');
is($node->safe_psql('postgres', $decrypt_sql),
	$expected, 'and in the next session');
is(take_runs(), 1, 'which ran the command once too');

set_script("cat '$keyfile'");
$log = restart_and_log($node);
unlike($log, qr/WARNING/, 'no warning after a restart with a good command');
is($node->safe_psql('postgres', $decrypt_sql),
	$expected, 'values decrypt after the restart');
is(take_runs(), 1, 'the command ran once, at the restart');

$node->stop;

$log = slurp_file($node->logfile);
like($log, qr/statement: CREATE EXTENSION envault/,
	'the server log was written to');
unlike($log, qr/\Q$key\E/i, 'the server log does not contain the master key');
unlike($log, qr/\Q${\ substr($key, 0, 32)}\E/i,
	'the server log does not contain half of the master key either');
unlike($log, qr/fetch-envault-key/,
	'the server log does not contain the command');

done_testing();
