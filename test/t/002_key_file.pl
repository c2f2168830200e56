# envault TAP test: the master key from envault.master_key_file, and the
# errors for a badly configured master key.
#
# envault is preloaded.  A 0600 key file works, across a restart, and its
# key is the one used (the stored check value is that of the file's key).
# A group- or world-accessible file, a malformed file, a missing file or a
# directory is refused: the server still starts with a WARNING, and each
# session that needs the key retries and reports the error.  Two sources
# at once, or none, are refused with a hint naming the three settings.

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
my $node = PostgreSQL::Test::Cluster->new('key_file');
my $keyfile = $node->basedir . '/master.key';
my $conf = $node->data_dir . '/envault.conf';

# The master key settings live in envault.conf, rewritten for each case.
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

# The WARNING the postmaster logs when it cannot load the key.
sub warning_re
{
	my ($message, $detail, $hint) = @_;
	my $re = '\] WARNING:  ' . quotemeta($message) . '\n';
	$re .= '.*\] DETAIL:  ' . quotemeta($detail) . '\n' if defined $detail;
	$re .= '.*\] HINT:  ' . quotemeta($hint) . '\n'     if defined $hint;
	return qr/$re/;
}

my $decrypt_sql = 'SELECT envault.env_decrypt_text(ct) FROM secrets ORDER BY id';
my $encrypt_sql =
  q{SELECT envault.env_encrypt('acme', 'secrets', 'more'::text) IS NOT NULL};

my $perm_detail =
  'A master key file must not be accessible to its group or to other users.';
my $perm_hint = 'Change its permissions with chmod 0600, or 0400.';
my $format_detail =
  'The master key must be 64 hexadecimal characters (32 bytes), optionally followed by a newline.';
my $sources_hint =
  'Set exactly one of envault.master_key, envault.master_key_file or envault.master_key_command in postgresql.conf and restart the server.';

# --- a 0600 key file works ----------------------------------------------

$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\ninclude 'envault.conf'");
write_private_file($keyfile, "$key\n");
set_key_conf(master_key_file => $keyfile);
$node->start;

unlike(slurp_file($node->logfile), qr/WARNING/,
	'no warning at startup with a 0600 key file');

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
CREATE TABLE secrets (id int PRIMARY KEY, ct bytea NOT NULL);
INSERT INTO secrets VALUES
	(1, envault.env_encrypt('acme', 'secrets', 'kept in a key file'::text)),
	(2, envault.env_encrypt('acme', 'secrets', 'second value'::text));
});
my $expected = "kept in a key file\nsecond value";

is($node->safe_psql('postgres', $decrypt_sql),
	$expected, 'values encrypted with the key file decrypt');
is( $node->safe_psql(
		'postgres',
		q{SELECT encode(master_kcv, 'hex') FROM envault.tenants WHERE tenant = 'acme'}
	),
	kcv_hex($key),
	'the tenant key is wrapped by the key in the file');

my $log = restart_and_log($node);
unlike($log, qr/WARNING/, 'no warning after a restart');
is($node->safe_psql('postgres', $decrypt_sql),
	$expected, 'values decrypt after a restart with the key file');

# --- group or world access ----------------------------------------------

my $perm_message = qq{master key file "$keyfile" has group or world access};

chmod(0640, $keyfile) or die "chmod: $!";
$log = restart_and_log($node);
like(
	$log,
	warning_re($perm_message, $perm_detail, $perm_hint),
	'a group-readable key file gives a WARNING at startup');
is($node->safe_psql('postgres', 'SELECT 1'),
	'1', 'the server runs with a group-readable key file');
check_error($node, 'postgres', 'encrypt, group-readable file', $encrypt_sql, 'F0000',
	$perm_message, $perm_detail, $perm_hint);
check_error($node, 'postgres', 'decrypt, group-readable file', $decrypt_sql, 'F0000',
	$perm_message, $perm_detail, $perm_hint);

# The postmaster has no key now, so each session reads the file itself.
foreach my $mode (0604, 0620, 0601)
{
	chmod($mode, $keyfile) or die "chmod: $!";
	check_error($node, 'postgres', sprintf('encrypt, mode %04o', $mode),
		$encrypt_sql, 'F0000', $perm_message, $perm_detail, $perm_hint);
}

# Fixing the permissions takes effect in the next session.
chmod(0400, $keyfile) or die "chmod: $!";
is($node->safe_psql('postgres', $decrypt_sql),
	$expected, 'a new session reads the key file once it is mode 0400');

# --- malformed files -------------------------------------------------------

my $malformed_message =
  qq{envault master key from envault.master_key_file "$keyfile" is malformed};
my $malformed_hint =
  'Check the contents of the file that envault.master_key_file names.';

write_private_file($keyfile, "not a key\n");
$log = restart_and_log($node);
like(
	$log,
	warning_re($malformed_message, $format_detail, $malformed_hint),
	'a malformed key file gives a WARNING at startup');
check_error($node, 'postgres', 'decrypt, malformed file', $decrypt_sql, 'F0000',
	$malformed_message, $format_detail, $malformed_hint);

my %malformed = (
	'63 hex characters' => substr($key, 0, 63) . "\n",
	'65 hex characters' => $key . "0\n",
	'a non-hex character' => substr($key, 0, 63) . "g\n",
	'text after the key' => "$key extra\n",
	'text before the key' => "key=$key\n",
	'an empty file' => '',
	'two keys' => "$key\n$key\n",
	# more than the first 256 bytes must be looked at
	'text after 300 blanks' => "$key\n" . (' ' x 300) . "junk\n",);
foreach my $case (sort keys %malformed)
{
	write_private_file($keyfile, $malformed{$case});
	check_error($node, 'postgres', "encrypt, key file with $case",
		$encrypt_sql, 'F0000', $malformed_message, $format_detail,
		$malformed_hint);
}

# What the documented format allows: any case, an optional line ending.
my %wellformed = (
	'no newline' => $key,
	'a CRLF ending' => "$key\r\n",
	'upper case hex' => uc($key) . "\n",);
foreach my $case (sort keys %wellformed)
{
	write_private_file($keyfile, $wellformed{$case});
	is($node->safe_psql('postgres', $decrypt_sql),
		$expected, "a key file with $case works");
}

# The same for envault.master_key itself (set to 64 characters that are
# not all hex: not a key, and nothing to keep out of the log).
set_key_conf(master_key => ('z' x 64));
my $hex_message = 'envault master key from envault.master_key is malformed';
my $hex_hint = 'Check envault.master_key in postgresql.conf.';
$log = restart_and_log($node);
like(
	$log,
	warning_re($hex_message, $format_detail, $hex_hint),
	'a malformed envault.master_key gives a WARNING at startup');
check_error($node, 'postgres', 'decrypt, malformed envault.master_key', $decrypt_sql, 'F0000',
	$hex_message, $format_detail, $hex_hint);
set_key_conf(master_key_file => $keyfile);

# --- a missing file, a directory -----------------------------------------

unlink($keyfile) or die "unlink: $!";
my $open_message = qq{could not open master key file "$keyfile"};
$log = restart_and_log($node);
like(
	$log,
	warning_re(
		$open_message, 'No such file or directory',
		'Check envault.master_key_file.'),
	'a missing key file gives a WARNING at startup');
check_error($node, 'postgres',
	'decrypt, missing file', $decrypt_sql, 'F0000', $open_message,
	'No such file or directory',
	'Check envault.master_key_file.');

mkdir($keyfile, 0700) or die "mkdir: $!";
check_error($node, 'postgres',
	'decrypt, directory',
	$decrypt_sql,
	'F0000',
	qq{master key file "$keyfile" is not a regular file},
	undef,
	'Check envault.master_key_file.');
rmdir($keyfile) or die "rmdir: $!";

# --- two sources, or none ------------------------------------------------

write_private_file($keyfile, "$key\n");
my $twice_message = 'envault master key is configured more than once';
my $twice_detail =
  'More than one of envault.master_key, envault.master_key_file and envault.master_key_command is set.';

set_key_conf(master_key_file => $keyfile, master_key => $key);
$log = restart_and_log($node);
like(
	$log,
	warning_re($twice_message, $twice_detail, $sources_hint),
	'key file and key: WARNING at startup');
check_error($node, 'postgres', 'decrypt, key file and key', $decrypt_sql, 'F0000',
	$twice_message, $twice_detail, $sources_hint);

set_key_conf(
	master_key_file => $keyfile,
	master_key_command => "cat '$keyfile'");
$log = restart_and_log($node);
like(
	$log,
	warning_re($twice_message, $twice_detail, $sources_hint),
	'key file and command: WARNING at startup');
check_error($node, 'postgres', 'encrypt, key file and command', $encrypt_sql, 'F0000',
	$twice_message, $twice_detail, $sources_hint);

my $none_message = 'envault master key is not configured';
set_key_conf();
$log = restart_and_log($node);
like(
	$log,
	warning_re($none_message, undef, $sources_hint),
	'no master key: WARNING at startup');
check_error($node, 'postgres', 'decrypt, no master key', $decrypt_sql, 'F0000', $none_message,
	undef, $sources_hint);
check_error($node, 'postgres',
	'create_tenant, no master key',
	q{SELECT envault.create_tenant('initech')},
	'F0000', $none_message, undef, $sources_hint);

# --- back to the good file ------------------------------------------------

set_key_conf(master_key_file => $keyfile);
$log = restart_and_log($node);
unlike($log, qr/WARNING/, 'no warning once the key file is right again');
is($node->safe_psql('postgres', $decrypt_sql),
	$expected, 'values decrypt again with the right key file');
is($node->safe_psql('postgres', q{SELECT count(*) FROM envault.tenants}),
	'1', 'no tenant was created while the key was missing');

$node->stop;

$log = slurp_file($node->logfile);
like($log, qr/statement: CREATE EXTENSION envault/,
	'the server log was written to');
unlike($log, qr/\Q$key\E/i, 'the server log does not contain the master key');
unlike($log, qr/\Q${\ substr($key, 0, 32)}\E/i,
	'the server log does not contain half of the master key either');

done_testing();
