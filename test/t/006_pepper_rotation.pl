# envault TAP test: rotating the token pepper, end to end.
#
# envault is preloaded with a master key file and pepper A in
# envault.pepper_file.  Tokens issued under A are stored as
# HMAC-SHA256(A, "envault/v1/token" || id || secret) with A's version (the
# first 8 bytes of its check value, in hex); both are computed here in Perl.
#
# Rotation starts with pepper B as the pepper and A as the previous pepper:
# a token made under A still verifies, and its first verification stores
# it again under B; new tokens are made under B.  A read-only transaction
# verifies without rewriting, and a rolled-back one leaves the row as it
# was.  When the rotation ends (B only), every token that was moved still
# verifies, and one that was never used during the rotation is dead.
#
# A previous pepper file that its group can read gives a WARNING at
# startup, and then every token operation raises that error (tokens of the
# current pepper included) until the file is fixed; a fixed file is read
# by the next session without a restart.  No pepper and no master key ever
# reach the server log.

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex write_private_file check_error restart_and_log);

use Digest::SHA qw(hmac_sha256_hex);
use Fcntl qw(O_WRONLY O_CREAT O_TRUNC);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The version envault stores for a pepper (hex): the first 8 bytes of its
# check value, HMAC-SHA256(pepper, "envault/v1/pepper-check-value").
sub pepper_version
{
	my ($pepper_hex) = @_;
	return substr(
		hmac_sha256_hex(
			'envault/v1/pepper-check-value', pack('H*', $pepper_hex)),
		0, 16);
}

# id and secret (hex) of a token "evt_<id>_<secret>_<crc>".
sub token_parts
{
	my ($token) = @_;
	$token =~ /^evt_([0-9a-f]{16})_([0-9a-f]{64})_[0-9a-f]{8}\z/
	  or die "not a token: $token";
	return ($1, $2);
}

# The token_hmac (hex) a token must have under a pepper:
# HMAC-SHA256(pepper, "envault/v1/token" || id bytes || secret bytes).
sub token_hmac
{
	my ($pepper_hex, $token) = @_;
	my ($id, $secret) = token_parts($token);
	return hmac_sha256_hex('envault/v1/token' . pack('H*', $id) . pack('H*', $secret),
		pack('H*', $pepper_hex));
}

my $master = random_key_hex();
my $pepper_a = random_key_hex();
my $pepper_b = random_key_hex();
my $version_a = pepper_version($pepper_a);
my $version_b = pepper_version($pepper_b);

my $node = PostgreSQL::Test::Cluster->new('pepper_rotation');
my $master_file = $node->basedir . '/master.key';
my $file_a = $node->basedir . '/pepper_a.key';
my $file_b = $node->basedir . '/pepper_b.key';
my $conf = $node->data_dir . '/envault.conf';

# The envault settings live in envault.conf, rewritten for each phase.
sub set_envault_conf
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

# The WARNING the postmaster logs when it cannot load a secret.
sub warning_re
{
	my ($message, $detail, $hint) = @_;
	my $re = '\] WARNING:  ' . quotemeta($message) . '\n';
	$re .= '.*\] DETAIL:  ' . quotemeta($detail) . '\n' if defined $detail;
	$re .= '.*\] HINT:  ' . quotemeta($hint) . '\n'     if defined $hint;
	return qr/$re/;
}

sub issue_token
{
	my ($label) = @_;
	return $node->safe_psql('postgres',
		"SELECT envault.issue_token('acme', '$label')");
}

sub verify_sql
{
	my ($token) = @_;
	return "SELECT envault.verify_token('$token')";
}

# The stored row of a token: pepper_version, token_hmac (hex), and whether
# last_used_at is set.
sub token_row
{
	my ($token) = @_;
	my ($id) = token_parts($token);
	my $row = $node->safe_psql(
		'postgres', qq{
SELECT pepper_version, encode(token_hmac, 'hex'),
       CASE WHEN last_used_at IS NULL THEN 'unused' ELSE 'used' END
  FROM envault.tokens WHERE token_id = '$id'});
	my @cols = split /\|/, $row;
	die "no row for token $id" unless @cols == 3;
	return { version => $cols[0], hmac => $cols[1], used => $cols[2] };
}

# Check that a token's row is stored under a pepper: its version, and the
# HMAC recomputed here; and, when given, its last_used_at state.
sub check_stored
{
	my ($name, $token, $pepper_hex, $used) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $row = token_row($token);
	is($row->{version}, pepper_version($pepper_hex),
		"$name: pepper_version");
	is($row->{hmac}, token_hmac($pepper_hex, $token), "$name: token_hmac");
	is($row->{used}, $used, "$name: last_used_at") if defined $used;
	return $row;
}

my $invalid_detail = 'The token is unknown, expired, revoked or malformed.';

isnt($version_a, $version_b, 'the two peppers have different versions');

# --- before the rotation: pepper A only ------------------------------------

$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\ninclude 'envault.conf'");
write_private_file($master_file, "$master\n");
write_private_file($file_a, "$pepper_a\n");
write_private_file($file_b, "$pepper_b\n");
set_envault_conf(master_key_file => $master_file, pepper_file => $file_a);
$node->start;

unlike(slurp_file($node->logfile), qr/WARNING/,
	'no warning at startup with pepper A');

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
});

# T1, T2: used now and during the rotation.  T4: never used until the
# rotation has ended.  T5: first used during the rotation, by authenticate.
my %token;
foreach my $name (qw(T1 T2 T4 T5))
{
	$token{$name} = issue_token("token $name");
	like(
		$token{$name},
		qr/^evt_[0-9a-f]{16}_[0-9a-f]{64}_[0-9a-f]{8}\z/,
		"$name has the token format");
}
is( $node->safe_psql('postgres', 'SELECT count(DISTINCT token_id) FROM envault.tokens'),
	'4',
	'four tokens are stored');

my %before;
foreach my $name (qw(T1 T2 T4 T5))
{
	$before{$name} =
	  check_stored("$name issued under A", $token{$name}, $pepper_a, 'unused');
	is($before{$name}{version}, $version_a,
		"$name: pepper_version is the fingerprint of A");
}

foreach my $name (qw(T1 T2))
{
	is($node->safe_psql('postgres', verify_sql($token{$name})),
		'acme', "$name verifies under A");
	check_stored("$name after verifying under A", $token{$name}, $pepper_a,
		'used');
}

# --- the rotation starts: pepper B, previous pepper A --------------------

set_envault_conf(
	master_key_file => $master_file,
	pepper_file => $file_b,
	previous_pepper_file => $file_a);
my $log = restart_and_log($node);
unlike($log, qr/WARNING/, 'no warning at startup with peppers B and A');

check_stored('T1 after the restart, before use', $token{T1}, $pepper_a);

is($node->safe_psql('postgres', verify_sql($token{T1})),
	'acme', 'T1 (made under A) verifies during the rotation');
my $t1 = check_stored('T1 after its first use in the rotation',
	$token{T1}, $pepper_b, 'used');
is($t1->{version}, $version_b, 'T1: pepper_version is now the fingerprint of B');
isnt($t1->{hmac}, $before{T1}{hmac}, 'T1: token_hmac has changed');

is($node->safe_psql('postgres', verify_sql($token{T1})),
	'acme', 'T1 verifies again, now under B');
check_stored('T1 after its second use', $token{T1}, $pepper_b);

check_stored('T2, not used yet in the rotation', $token{T2}, $pepper_a,
	'used');

$token{T3} = issue_token('token T3');
my $t3 = check_stored('T3 issued during the rotation', $token{T3}, $pepper_b,
	'unused');
is($t3->{version}, $version_b, 'T3: pepper_version is the fingerprint of B');
is($node->safe_psql('postgres', verify_sql($token{T3})),
	'acme', 'T3 verifies during the rotation');

is( $node->safe_psql(
		'postgres', qq{
BEGIN;
SELECT envault.authenticate('$token{T1}'), envault.current_tenant();
COMMIT;}),
	'acme|acme',
	'authenticate with T1 during the rotation sets the tenant');

# authenticate moves a token made under A just as verify_token does
is( $node->safe_psql(
		'postgres', "SELECT envault.authenticate('$token{T5}')"),
	'acme',
	'authenticate with T5 (made under A) during the rotation');
check_stored('T5 after authenticate in the rotation', $token{T5}, $pepper_b,
	'used');

# A read-only transaction verifies but writes nothing.
is( $node->safe_psql(
		'postgres', qq{
BEGIN READ ONLY;
SELECT current_setting('transaction_read_only'), envault.verify_token('$token{T2}');
COMMIT;}),
	'on|acme',
	'T2 verifies in a read-only transaction');
my $t2 = check_stored('T2 after the read-only transaction', $token{T2},
	$pepper_a, 'used');
is($t2->{hmac}, $before{T2}{hmac},
	'T2: token_hmac unchanged by the read-only transaction');

# The rewrite belongs to the transaction: a rollback undoes it.
my ($t2_id) = token_parts($token{T2});
is( $node->safe_psql(
		'postgres', qq{
BEGIN;
SELECT envault.verify_token('$token{T2}');
SELECT pepper_version FROM envault.tokens WHERE token_id = '$t2_id';
ROLLBACK;}),
	"acme\n$version_b",
	'T2 verifies in a transaction that sees it moved to B');
check_stored('T2 after the rolled-back transaction', $token{T2}, $pepper_a);

# A normal transaction moves it.
is( $node->safe_psql(
		'postgres', qq{
BEGIN;
SELECT envault.verify_token('$token{T2}');
COMMIT;}),
	'acme',
	'T2 verifies in a committed transaction');
$t2 = check_stored('T2 after the committed transaction', $token{T2},
	$pepper_b, 'used');
isnt($t2->{hmac}, $before{T2}{hmac}, 'T2: token_hmac has changed');

check_stored('T4, never used in the rotation', $token{T4}, $pepper_a,
	'unused');

# --- the rotation ends: pepper B only --------------------------------------

set_envault_conf(master_key_file => $master_file, pepper_file => $file_b);
$log = restart_and_log($node);
unlike($log, qr/WARNING/, 'no warning at startup with pepper B only');

foreach my $name (qw(T1 T2 T3 T5))
{
	is($node->safe_psql('postgres', verify_sql($token{$name})),
		'acme', "$name verifies after the rotation");
	check_stored("$name after the rotation", $token{$name}, $pepper_b,
		'used');
}

is( $node->safe_psql(
		'postgres', "SELECT envault.verify_token('$token{T4}') IS NULL"),
	't',
	'T4 (made under A, never used in the rotation) no longer verifies');
check_error($node, 'postgres',
	'authenticate with T4 after the rotation',
	"SELECT envault.authenticate('$token{T4}')",
	'28000', 'envault token is not valid', $invalid_detail);
check_stored('T4 after the rotation: its row is untouched',
	$token{T4}, $pepper_a, 'unused');

# --- a previous pepper file that its group can read ------------------------

my $perm_message = qq{previous pepper file "$file_a" has group or world access};
my $perm_detail =
  'A previous pepper file must not be accessible to its group or to other users.';
my $perm_hint = 'Change its permissions with chmod 0600, or 0400.';

chmod(0640, $file_a) or die "chmod: $!";
set_envault_conf(
	master_key_file => $master_file,
	pepper_file => $file_b,
	previous_pepper_file => $file_a);
$log = restart_and_log($node);
like(
	$log,
	warning_re($perm_message, $perm_detail, $perm_hint),
	'a group-readable previous pepper file gives a WARNING at startup');
is(scalar(() = $log =~ /\] WARNING:  /g),
	1, 'and that is the only warning');
is($node->safe_psql('postgres', 'SELECT 1'),
	'1', 'the server runs with a group-readable previous pepper file');

# Token operations fail closed with that error, even for a token of the
# current pepper: the previous pepper is configured but cannot be used.
check_error($node, 'postgres', 'verify_token with T1 (made under B)',
	verify_sql($token{T1}),
	'F0000', $perm_message, $perm_detail, $perm_hint);
check_error($node, 'postgres', 'verify_token with T4 (made under A)',
	verify_sql($token{T4}),
	'F0000', $perm_message, $perm_detail, $perm_hint);
check_error($node, 'postgres', 'authenticate with T1',
	"SELECT envault.authenticate('$token{T1}')",
	'F0000', $perm_message, $perm_detail, $perm_hint);
check_error($node, 'postgres', 'issue_token',
	q{SELECT envault.issue_token('acme', 'not issued')},
	'F0000', $perm_message, $perm_detail, $perm_hint);
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM envault.tokens WHERE label = 'not issued'}),
	'0',
	'no token was issued');
check_stored('T4 with a group-readable previous pepper file',
	$token{T4}, $pepper_a, 'unused');

# Each session reads the file again: fixing it needs no restart.
chmod(0600, $file_a) or die "chmod: $!";
is($node->safe_psql('postgres', verify_sql($token{T1})),
	'acme', 'T1 verifies once the previous pepper file is mode 0600');
is($node->safe_psql('postgres', verify_sql($token{T4})),
	'acme', 'T4 verifies again with A back as the previous pepper');
check_stored('T4 after verifying with A as the previous pepper',
	$token{T4}, $pepper_b, 'used');

$node->stop;

# --- nothing secret in the server log --------------------------------------

$log = slurp_file($node->logfile);
like($log, qr/statement: CREATE EXTENSION envault/,
	'the server log was written to');
foreach my $secret ([ 'the master key', $master ],
	[ 'pepper A', $pepper_a ], [ 'pepper B', $pepper_b ])
{
	my ($what, $hex) = @$secret;
	unlike($log, qr/\Q$hex\E/i, "the server log does not contain $what");
	unlike($log, qr/\Q${\ substr($hex, 0, 32)}\E/i,
		"the server log does not contain half of $what either");
	unlike($log, qr/\Q${\ substr($hex, 32)}\E/i,
		"the server log does not contain the other half of $what");
}

done_testing();
