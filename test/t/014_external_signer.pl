# envault TAP test: checkpoints signed by envault.signing_command, with the
# private key in a PKCS#11 token (SoftHSM2) that the server never reads.
#
# A SoftHSM2 token holds an Ed25519 key made inside it; the server runs
# tools/envault-sign-pkcs11 (installed in the bindir) with the token's PIN
# and a state directory of its own.  Checkpoints verify inside the database
# and with envault-verify against the token's public key; the server has no
# signing key setting to read.  The signer refuses, from its own memory, to
# sign a chain that a superuser cut back or rewrote at the same number after
# deleting its checkpoints.  A command that prints no signature, or a
# signature by another key, stores nothing.

use strict;
use warnings;

use Digest::SHA qw(sha256);
use IPC::Run;
use MIME::Base64 qw(encode_base64 decode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $module = '/usr/lib/softhsm/libsofthsm2.so';
plan skip_all => 'SoftHSM2 and OpenSC are not installed'
  unless -e $module && `which pkcs11-tool softhsm2-util 2>/dev/null` =~ /softhsm2-util/;

my $node = PostgreSQL::Test::Cluster->new('external_signer');
$node->init;
my $dir = $node->basedir;
my $bindir = $node->config_data('--bindir');

# --- the token ---------------------------------------------------------------

mkdir "$dir/tokens" or die;
my $conf = "$dir/softhsm2.conf";
open(my $fh, '>', $conf) or die;
print $fh "directories.tokendir = $dir/tokens\nlog.level = ERROR\n";
close $fh;
$ENV{SOFTHSM2_CONF} = $conf;
system_or_bail('softhsm2-util', '--init-token', '--free', '--label', 'envault',
	'--pin', '4321', '--so-pin', '87654321');
system_or_bail('pkcs11-tool', '--module', $module, '--token-label', 'envault',
	'--login', '--pin', '4321', '--keypairgen', '--key-type', 'EC:edwards25519',
	'--id', '01', '--label', 'checkpoints');
system_or_bail('pkcs11-tool', '--module', $module, '--token-label', 'envault',
	'--read-object', '--type', 'pubkey', '--id', '01', '-o', "$dir/pub.pem");
my $pem = slurp_file("$dir/pub.pem");
$pem =~ s/-----[^-]+-----//g;
my $pub = substr(decode_base64($pem), -32);
is(length($pub), 32, 'the token made an Ed25519 key and gives its public key');
my $vkey = 'envault+'
  . unpack('H8', substr(sha256("envault\n\x01" . $pub), 0, 4)) . '+'
  . encode_base64("\x01" . $pub, '');
open($fh, '>', "$dir/pin") or die;
print $fh "4321\n";
close $fh;
chmod 0600, "$dir/pin";

my $signer = "SOFTHSM2_CONF=$conf $bindir/envault-sign-pkcs11 --module $module"
  . " --token envault --id 01 --pin-file $dir/pin --state $dir/signer-state";
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key = '" . ('cd' x 32) . "'\n"
	  . "envault.signing_command = '$signer'\n"
	  . "envault.signing_verifier_key = '$vkey'\n");
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
CREATE EXTENSION envault;
CREATE TABLE audit (tenant text, what text);
SELECT envault.enable_audit_chain('audit', 'tenant');
INSERT INTO audit SELECT 'acme', 'event ' || g FROM generate_series(1, 10) g;
});

# --- checkpoints signed in the token -----------------------------------------

is(sql(q{SELECT seq FROM envault.checkpoint('audit', 'acme')}), '10',
	'a checkpoint is signed by the command');
is(sql('SELECT envault.signing_public_key()'), $vkey,
	'signing_public_key() is the token\'s key');
is(sql(q{SELECT current_setting('envault.signing_key_file') || current_setting('envault.signing_key')}),
	'', 'the server has no signing key to read');
is(sql(q{SELECT ok FROM envault.verify_chain('audit', 'acme')}), 't',
	'verify_chain accepts the checkpoint');
my $dbid = sql('SELECT envault.database_id()');
open($fh, '>', "$dir/vkey") or die;
print $fh "$vkey\n";
close $fh;
open($fh, '>', "$dir/acme.json") or die;
print $fh sql(q{SELECT envault.export_chain('audit', 'acme')}) . "\n";
close $fh;
my ($out, $err) = ('', '');
IPC::Run::run([ "$bindir/envault-verify", '--key', "$dir/vkey", '--database', $dbid,
	"$dir/acme.json" ], '>', \$out, '2>', \$err);
like($out, qr/^OK: public\.audit tenant "acme": 10 rows .*1 checkpoint verified/,
	'envault-verify accepts it with the token\'s public key');

sql(q{INSERT INTO audit SELECT 'acme', 'more ' || g FROM generate_series(1, 5) g});
is(sql(q{SELECT seq FROM envault.checkpoint('audit', 'acme')}), '15',
	'the chain grew: the signer signs again');

# --- the signer's memory -------------------------------------------------------

# A superuser cuts the chain back to 12 rows and deletes its checkpoints:
# the database would sign seq 12; the signer remembers 15.
sql(q{
SET session_replication_role = replica;
DELETE FROM audit WHERE envault_seq > 12;
DELETE FROM envault.checkpoints;
UPDATE envault.chain_heads h SET seq = 12, hash = a.envault_hash
  FROM audit a WHERE a.envault_seq = 12 AND h.tenant = 'acme';
});
my ($rc, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT envault.checkpoint('audit', 'acme')});
isnt($rc, 0, 'a chain cut back behind the last checkpoint is not signed');
like($stderr, qr/signing_command refused to sign/, '... the command refused');
like(slurp_file($node->logfile), qr/refused: envault\/\Q$dbid\E\/public\.audit\/acme goes back from 15 to 12/,
	'... and said why');
is(sql('SELECT count(*) FROM envault.checkpoints'), '0', '... and nothing was stored');

# The same number with another hash: rows 13 to 15 added back differently
sql(q{INSERT INTO audit SELECT 'acme', 'forged ' || g FROM generate_series(1, 3) g});
($rc, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT envault.checkpoint('audit', 'acme')});
isnt($rc, 0, 'another head at the number signed before is not signed');
like(slurp_file($node->logfile), qr/refused: envault\/\Q$dbid\E\/public\.audit\/acme at 15 has another hash/,
	'... the signer said why');

# --- commands that do not sign properly -----------------------------------------

sub set_command
{
	my ($cmd) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET envault.signing_command = '$cmd'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	return;
}
sql(q{INSERT INTO audit VALUES ('globex', 'x')});
set_command('echo not-a-signature');
($rc, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT envault.checkpoint('audit', 'globex')});
like($stderr, qr/did not print the base64 of a 64-byte Ed25519 signature/,
	'a command that prints no signature: refused');
system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$dir/other.pem");
set_command("openssl pkeyutl -sign -rawin -inkey $dir/other.pem -in /dev/stdin | base64 -w0");
($rc, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT envault.checkpoint('audit', 'globex')});
like($stderr, qr/does not verify with envault.signing_verifier_key/,
	'a command that signs with another key: refused');
set_command('exit 7');
($rc, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT envault.checkpoint('audit', 'globex')});
like($stderr, qr/refused to sign, or failed: child process exited with exit code 7/,
	'a command that fails: refused, with its exit code');
is(sql(q{SELECT count(*) FROM envault.checkpoints WHERE tenant = 'globex'}), '0',
	'none of them stored a checkpoint');
set_command($signer);
is(sql(q{SELECT seq FROM envault.checkpoint('audit', 'globex')}), '1',
	'the token signs again once the command is restored');

$node->stop;
done_testing();
