# envault TAP test: envault without shared_preload_libraries.
#
# The master key is configured in a file but the library is not preloaded,
# so it is loaded by CREATE EXTENSION or by the first call in each session,
# and each session reads the key when it first needs it.  Encryption and
# decryption work, in the session that created the data and in later ones,
# across a restart; with envault.master_key_command the command runs once in
# each session that needs the key, and never in the postmaster.
#
# The settings that hold a key in hex (envault.master_key, .pepper, and
# their previous_ forms, and envault.signing_key) are refused without preloading, with an error that
# names the file setting to use: the postmaster, which has not loaded
# envault, logs the new value of any of them that a reload changes.

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex write_private_file kcv_hex restart_and_log);

use Fcntl qw(O_WRONLY O_CREAT O_TRUNC);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $key = random_key_hex();
my $node = PostgreSQL::Test::Cluster->new('not_preloaded');
my $dir = $node->basedir;
my $conf = $node->data_dir . '/envault.conf';
my $runs = "$dir/runs";

# Run $sql in a new session and check that it succeeds with output $expected.
# (Not safe_psql: a failure is reported as a failed test, and the rest of
# the file still runs.)
sub query_is
{
	my ($sql, $expected, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	is($ret, 0, "$name: succeeds") or diag($err);
	is($out, $expected, "$name: result");
	return;
}

# How many times the key command ran since the last call.
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

my $keyfile = "$dir/master.key";
write_private_file($keyfile, "$key\n");

$node->init;
$node->append_conf('postgresql.conf', "include 'envault.conf'");
write_private_file($conf, "envault.master_key_file = '$keyfile'\n");
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'envault is not preloaded');

# --- everything in one session ------------------------------------------------

my ($ret, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION envault');
is($ret, 0, 'CREATE EXTENSION envault without preloading succeeds')
  or diag($err);
if ($ret != 0)
{
	# Nothing below can work without the extension.
	$node->stop;
	done_testing();
	exit;
}

query_is(
	q{
SELECT envault.create_tenant('acme');
CREATE TABLE secrets (id int PRIMARY KEY, ct bytea NOT NULL);
INSERT INTO secrets VALUES
	(1, envault.env_encrypt('acme', 'secrets', 'loaded lazily'::text)),
	(2, envault.env_encrypt('acme', 'files', '\xdeadbeef'::bytea));
SELECT envault.env_decrypt_text(ct) FROM secrets WHERE id = 1;
SELECT encode(envault.env_decrypt(ct), 'hex') FROM secrets WHERE id = 2;
},
	"\nloaded lazily\ndeadbeef",
	'create a tenant, encrypt and decrypt in one session');

my $decrypt_sql = q{
SELECT envault.env_decrypt_text(ct) FROM secrets WHERE id = 1;
SELECT encode(envault.env_decrypt(ct), 'hex') FROM secrets WHERE id = 2;
};
my $expected = "loaded lazily\ndeadbeef";

# --- other sessions load the library and the key themselves -------------------

query_is($decrypt_sql, $expected, 'a new session decrypts');
query_is(
	q{SELECT encode(master_kcv, 'hex') FROM envault.tenants WHERE tenant = 'acme'},
	kcv_hex($key),
	'the tenant key is wrapped by the configured key');
query_is(
	q{INSERT INTO secrets VALUES
	(3, envault.env_encrypt('acme', 'secrets', 'third'::text));
SELECT envault.env_decrypt_text(ct) FROM secrets WHERE id = 3},
	'third',
	'a new session encrypts');

my $log = restart_and_log($node);
unlike($log, qr/WARNING/, 'no warning at startup');
query_is($decrypt_sql, $expected, 'values decrypt after a restart');

# --- the key is read by each session that needs it ------------------------------

my $script = "$dir/fetch-envault-key.sh";
write_private_file($script, "#!/bin/sh\necho run >> '$runs'\necho '$key'\n",
	0700);
write_private_file($conf, "envault.master_key_command = '$script'\n");
take_runs();
$log = restart_and_log($node);
unlike($log, qr/WARNING/, 'no warning at startup with a key command');
is(take_runs(), 0, 'the postmaster does not run the command');

query_is('SELECT count(*) FROM secrets', '3',
	'a session that does not use envault');
is(take_runs(), 0, 'does not run the command');

query_is("$decrypt_sql\n$decrypt_sql", "$expected\n$expected",
	'a session decrypting twice');
is(take_runs(), 1, 'runs the command once');

query_is($decrypt_sql, $expected, 'the next session');
is(take_runs(), 1, 'runs the command once too');

# --- a missing key is reported in the session -------------------------------------

write_private_file($conf, '');
$log = restart_and_log($node);
unlike($log, qr/WARNING/,
	'without preloading, a missing key is not reported at startup');
($ret, $out, $err) =
  $node->psql('postgres', "\\set VERBOSITY verbose\n$decrypt_sql");
is($ret, 3, 'decrypt without a master key fails');
like(
	$err,
	qr/^psql:<stdin>:\d+: \QERROR:  F0000: envault master key is not configured\E\n\QHINT:  Set exactly one of envault.master_key, envault.master_key_file or envault.master_key_command in postgresql.conf and restart the server.\E$/m,
	'decrypt without a master key: the error and its hint');

# --- hex key settings are refused ------------------------------------------------

# Each with another random key, never used for anything.
my $hex_detail =
  q{Without shared_preload_libraries = 'envault' it could be changed by a reload, and PostgreSQL logs the new value of such a setting.};
my %refused = (
	master_key => [
		'envault.master_key_file or envault.master_key_command',
		$decrypt_sql
	],
	previous_master_key => [
		'envault.previous_master_key_file or envault.previous_master_key_command',
		'SELECT master_key FROM envault.master_key_status()'
	],
	pepper =>
	  [ 'envault.pepper_file', q{SELECT envault.issue_token('acme', 'x')} ],
	previous_pepper => [
		'envault.previous_pepper_file', q{SELECT envault.issue_token('acme', 'x')}
	],
	signing_key =>
	  [ 'envault.signing_key_file', q{SELECT envault.signing_public_key()} ],);
my $pepperfile = "$dir/pepper.key";
write_private_file($pepperfile, random_key_hex() . "\n");
my @throwaway;
foreach my $name (sort keys %refused)
{
	my ($use, $sql) = @{ $refused{$name} };
	my $hex = random_key_hex();
	push @throwaway, $hex;
	my $text = "envault.$name = '$hex'\n";
	$text .= "envault.master_key_file = '$keyfile'\n" if $name ne 'master_key';
	$text .= "envault.pepper_file = '$pepperfile'\n" if $name eq 'previous_pepper';
	write_private_file($conf, $text);
	restart_and_log($node);
	my $message = "envault.$name is not accepted when envault is not preloaded";
	my $hint =
	  "Use $use instead, or add envault to shared_preload_libraries and restart the server.";
	($ret, $out, $err) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	is($ret, 3, "envault.$name in hex: the statement fails");
	like(
		$err,
		qr/^psql:<stdin>:\d+: WARNING:  F0000: \Q$message\E\nDETAIL:  \Q$hex_detail\E\nHINT:  \Q$hint\E\n/m,
		"envault.$name in hex: a WARNING when the library loads");
	like(
		$err,
		qr/^psql:<stdin>:\d+: ERROR:  F0000: \Q$message\E\nDETAIL:  \Q$hex_detail\E\nHINT:  \Q$hint\E\n/m,
		"envault.$name in hex: the error names the setting to use");
}

# A reload that sets one: the sessions refuse it, but the postmaster has
# logged the value already.  That is PostgreSQL's doing, and why envault
# refuses the hex settings without preloading: with them refused, a key is
# never kept in a form that a reload logs.
write_private_file($conf, "envault.master_key_file = '$keyfile'\n");
restart_and_log($node);
query_is($decrypt_sql, $expected, 'the key file again: values decrypt');
my $exposed = random_key_hex();
push @throwaway, $exposed;
my $offset = -s $node->logfile;
write_private_file($conf,
	"envault.master_key_file = '$keyfile'\nenvault.master_key = '$exposed'\n");
$node->reload;
$node->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM pg_file_settings WHERE name = 'envault.master_key'})
  or die 'the reload was not processed';
like(
	slurp_file($node->logfile, $offset),
	qr/LOG:  parameter "envault.master_key" changed to "\Q$exposed\E"/,
	'a reload: the postmaster, without envault, logs the new value itself');
($ret, $out, $err) =
  $node->psql('postgres', "\\set VERBOSITY verbose\n$decrypt_sql");
is($ret, 3, 'after that reload a new session refuses the key settings');
like(
	$err,
	qr/^psql:<stdin>:\d+: ERROR:  F0000: \Qenvault.master_key is not accepted when envault is not preloaded\E$/m,
	'with the same error');

$node->stop;

$log = slurp_file($node->logfile);
like($log, qr/statement: \s*CREATE EXTENSION envault/,
	'the server log was written to');
unlike($log, qr/\Q$key\E/i, 'the server log does not contain the master key');

done_testing();
