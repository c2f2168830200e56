# envault TAP test: starting with the wrong master key.
#
# Data is written under master key A.  Restarted with key B, every use of a
# tenant created under A fails with the "does not match" error (SQLSTATE
# F0000), whose detail names the check value stored with the tenant (A's)
# and the configured one (B's), both computed here independently.  A tenant
# created under B works under B.  Restarted with A again, everything written
# under A decrypts to its original, and B's tenant is refused the same way.

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex write_private_file kcv_hex);

use Fcntl qw(O_WRONLY O_CREAT O_TRUNC);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $key_a = random_key_hex();
my $key_b = random_key_hex();
die "two equal random keys" if $key_a eq $key_b;
my $kcv_a = kcv_hex($key_a);
my $kcv_b = kcv_hex($key_b);
die "two equal check values" if substr($kcv_a, 0, 16) eq substr($kcv_b, 0, 16);

my $node = PostgreSQL::Test::Cluster->new('wrong_key');

# Restart with envault.master_key = $key (in an included file, rewritten).
sub use_key
{
	my ($key, $label) = @_;
	write_private_file($node->data_dir . '/envault.conf',
		"envault.master_key = '$key'\n");
	my $offset = -s $node->logfile;
	$node->restart;
	unlike(slurp_file($node->logfile, $offset),
		qr/WARNING/, "no warning at startup with key $label");
	return;
}

# Run $sql, which must fail with the mismatch error for $tenant, whose key
# was wrapped by the master key with check value $stored while the one
# configured has $configured.
sub check_mismatch
{
	my ($name, $sql, $tenant, $stored, $configured) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	is($ret, 3, "$name: the statement fails");
	my $block =
	    "ERROR:  F0000: configured envault master key does not match the key that wrapped tenant \"$tenant\"\n"
	  . 'DETAIL:  The tenant key was wrapped by the master key with check value '
	  . substr($stored, 0, 16)
	  . '; the configured master key has check value '
	  . substr($configured, 0, 16) . ".\n"
	  . "HINT:  Configure the master key that this database's keys were created with.\n"
	  . 'LOCATION:  ';
	like($err, qr/^psql:<stdin>:\d+: \Q$block\E/m,
		"$name: SQLSTATE, message, both check values and hint");
	return;
}

sub decrypt_sql
{
	my ($id) = @_;
	return "SELECT envault.env_decrypt_text(ct, aad) FROM secrets WHERE id = $id";
}

my $all_sql =
  'SELECT id || \'|\' || envault.env_decrypt_text(ct, aad) FROM secrets ORDER BY id';

# --- data under key A ---------------------------------------------------------

$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\ninclude 'envault.conf'");
write_private_file($node->data_dir . '/envault.conf',
	"envault.master_key = '$key_a'\n");
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
SELECT envault.create_tenant('Globex "Intl"');
CREATE TABLE secrets (id int PRIMARY KEY, aad bytea, ct bytea NOT NULL);
INSERT INTO secrets VALUES
	(1, NULL, envault.env_encrypt('acme', 'secrets', 'acme under A'::text)),
	(2, '\x01', envault.env_encrypt('acme', 'messages', 'acme message'::text, '\x01')),
	(3, NULL, envault.env_encrypt('Globex "Intl"', 'secrets', 'globex under A'::text));
});
my $expected_a = "1|acme under A\n2|acme message\n3|globex under A";

is($node->safe_psql('postgres', $all_sql),
	$expected_a, 'values written under key A decrypt');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(tenant || '=' || encode(master_kcv, 'hex'), ',' ORDER BY tenant COLLATE "C")
		    FROM envault.tenants}),
	"Globex \"Intl\"=$kcv_a,acme=$kcv_a",
	'both tenants record the check value of key A');

# --- restart with key B ------------------------------------------------------------

use_key($key_b, 'B');

check_mismatch('decrypt acme', decrypt_sql(1), 'acme', $kcv_a, $kcv_b);
check_mismatch('decrypt acme with aad', decrypt_sql(2), 'acme', $kcv_a, $kcv_b);
check_mismatch('decrypt globex', decrypt_sql(3), 'Globex "Intl"', $kcv_a,
	$kcv_b);
check_mismatch(
	'encrypt for acme, existing data key',
	q{SELECT envault.env_encrypt('acme', 'secrets', 'x'::text)},
	'acme', $kcv_a, $kcv_b);
check_mismatch(
	'encrypt for acme, new purpose',
	q{SELECT envault.env_encrypt('acme', 'fresh', 'x'::text)},
	'acme', $kcv_a, $kcv_b);
check_mismatch(
	'create_data_key for globex',
	q{SELECT envault.create_data_key('Globex "Intl"', 'fresh')},
	'Globex "Intl"', $kcv_a, $kcv_b);

is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM envault.data_keys WHERE purpose = 'fresh'}),
	'0',
	'no data key was created under the wrong master key');

# A tenant created under B works under B.
$node->safe_psql(
	'postgres', q{
SELECT envault.create_tenant('initech');
INSERT INTO secrets VALUES
	(4, NULL, envault.env_encrypt('initech', 'secrets', 'initech under B'::text));
});
is($node->safe_psql('postgres', decrypt_sql(4)),
	'initech under B', 'a tenant created under key B works under key B');
is( $node->safe_psql(
		'postgres',
		q{SELECT encode(master_kcv, 'hex') FROM envault.tenants WHERE tenant = 'initech'}
	),
	$kcv_b,
	'it records the check value of key B');

# --- back to key A ------------------------------------------------------------

use_key($key_a, 'A');

is( $node->safe_psql(
		'postgres',
		'SELECT id || \'|\' || envault.env_decrypt_text(ct, aad) FROM secrets WHERE id < 4 ORDER BY id'
	),
	$expected_a,
	'with key A again, everything written under A decrypts');
is( $node->safe_psql(
		'postgres', q{
INSERT INTO secrets VALUES
	(5, NULL, envault.env_encrypt('acme', 'secrets', 'acme again'::text));
SELECT envault.env_decrypt_text(ct) FROM secrets WHERE id = 5;
}),
	'acme again',
	'and encrypting under A works again');
check_mismatch('decrypt initech under A', decrypt_sql(4), 'initech', $kcv_b,
	$kcv_a);

# A stored check value that is not 16 bytes is reported as such, not trusted.
$node->safe_psql('postgres',
	q{UPDATE envault.tenants SET master_kcv = '\x' WHERE tenant = 'initech'});
my ($ret, $out, $err) =
  $node->psql('postgres', "\\set VERBOSITY verbose\n" . decrypt_sql(4));
like(
	$err,
	qr/^psql:<stdin>:\d+: \QERROR:  F0000: configured envault master key does not match the key that wrapped tenant "initech"\E\n\QDETAIL:  The tenant key was wrapped by the master key with check value (none); the configured master key has check value ${\ substr($kcv_a, 0, 16)}.\E$/m,
	'an empty stored check value is reported as (none)');

$node->stop;

my $log = slurp_file($node->logfile);
like($log, qr/statement: CREATE EXTENSION envault/,
	'the server log was written to');
unlike($log, qr/\Q$key_a\E/i, 'the server log does not contain key A');
unlike($log, qr/\Q$key_b\E/i, 'the server log does not contain key B');

done_testing();
