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

# The database forgets its checkpoints (a superuser deletes them) while the
# chain stays genuine: envault sends no proof, the signer asks for one from
# the 15 rows it signed last, and signs once it checks.
sql(q{
SET session_replication_role = replica;
DELETE FROM envault.checkpoints;
});
sql(q{INSERT INTO audit SELECT 'acme', 'again ' || g FROM generate_series(1, 3) g});
is(sql(q{SELECT seq FROM envault.checkpoint('audit', 'acme')}), '18',
	'the signer asks for a proof from the tree it signed last, and signs');

# A superuser rewrites the chain from row 13 on (deleting rows 13 to 18
# behind envault's back, setting its head back, chaining new rows after
# row 12), deletes the checkpoints and the stored tree, so that nothing in
# the database remembers the tree that was signed: the signer does.
sql(q{
SET session_replication_role = replica;
DELETE FROM audit WHERE envault_seq > 12;
DELETE FROM envault.checkpoints;
DELETE FROM envault.chain_trees;
DELETE FROM envault.chain_nodes;
UPDATE envault.chain_heads h SET seq = 12, hash = a.envault_hash
  FROM audit a WHERE a.envault_seq = 12 AND h.tenant = 'acme';
});
my ($rc, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT envault.checkpoint('audit', 'acme')});
isnt($rc, 0, 'a chain cut back behind the last signed tree is not signed');
like($stderr, qr/signing_command refused, or failed/, '... the command refused');
like(slurp_file($node->logfile), qr/tree of 12 rows is smaller than the tree of 18 rows signed before/,
	'... and said why');
is(sql('SELECT count(*) FROM envault.checkpoints'), '0', '... and nothing was stored');

sql(q{INSERT INTO audit SELECT 'acme', 'forged ' || g FROM generate_series(1, 8) g});
is(sql(q{SELECT tree_size FROM envault.tree_head('audit', 'acme')}), '20',
	'rows 13 to 20 rewritten, a tree built from them');
($rc, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT envault.checkpoint('audit', 'acme')});
isnt($rc, 0, 'a rewritten chain is not signed: its tree does not extend the one signed');
like(slurp_file($node->logfile), qr/consistency proof from 18 rows does not verify/,
	'... the signer checked the proof it asked for, against its own tree head');
is(sql('SELECT count(*) FROM envault.checkpoints'), '0', '... and nothing was stored');

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
like($stderr, qr/signing_command refused, or failed: child process exited with exit code 7/,
	'a command that fails: refused, with its exit code');
is(sql(q{SELECT count(*) FROM envault.checkpoints WHERE tenant = 'globex'}), '0',
	'none of them stored a checkpoint');
set_command($signer);
is(sql(q{SELECT seq FROM envault.checkpoint('audit', 'globex')}), '1',
	'the token signs again once the command is restored');

# --- witnesses -------------------------------------------------------------------

# Checkpoints signed with a key the server reads (a superuser can sign
# anything with it), cosigned by a witness that keeps its own memory of
# every origin (here envault-witness with a key file; in production it runs
# as another user or elsewhere): a verifier that requires the witness's
# cosignature is not fooled by a fork that the log's key signed.
system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$dir/log.pem");
chmod 0600, "$dir/log.pem";
set_command('');
$node->safe_psql('postgres', "ALTER SYSTEM SET envault.signing_key_file = '$dir/log.pem'");
system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$dir/w1.pem");
system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$dir/w2.pem");
my %wkey;
for my $w ('w1', 'w2')
{
	my ($o, $e) = ('', '');
	IPC::Run::run([ "$bindir/envault-witness", '--key', "$dir/$w.pem", '--name',
		"witness.example/$w", '--print-vkey' ], '>', \$o, '2>', \$e)
	  or die "envault-witness --print-vkey: $e";
	chomp $o;
	$wkey{$w} = $o;
	open($fh, '>', "$dir/$w.vkey") or die;
	print $fh "$o\n";
	close $fh;
}
like($wkey{w1}, qr{^witness\.example/w1\+[0-9a-f]{8}\+B[A-P]}, 'a witness key is a verifier key of type 0x04');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
my $logkey = sql('SELECT envault.signing_public_key()');
open($fh, '>', "$dir/log.vkey") or die;
print $fh "$logkey\n";
close $fh;
$node->safe_psql('postgres', "ALTER SYSTEM SET envault.witness_keys = '$wkey{w1}'");
$node->safe_psql('postgres', "ALTER SYSTEM SET envault.witness_command = "
	  . "'$bindir/envault-witness --key $dir/w1.pem --name %w --log-key $dir/log.vkey --state $dir/w1-state'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');

sql(q{INSERT INTO audit SELECT 'wit', 'event ' || g FROM generate_series(1, 10) g});
is(sql(q{SELECT seq FROM envault.checkpoint('audit', 'wit')}), '10', 'a checkpoint signed with the key');
is(sql(q{SELECT seq || ' ' || witness FROM envault.cosign('audit', 'wit')}), '10 witness.example/w1',
	'the witness cosigns it');
is(sql(q{SELECT count(*) FROM envault.cosign('audit', 'wit')}), '0', '... once');
sql(q{INSERT INTO audit SELECT 'wit', 'more ' || g FROM generate_series(1, 4) g});
sql(q{SELECT envault.checkpoint('audit', 'wit')});
is(sql(q{SELECT seq FROM envault.cosign('audit', 'wit')}), '14',
	'the witness cosigns the next one, with a proof from the one it cosigned');
is(sql(q{SELECT ok FROM envault.verify_chain('audit', 'wit')}), 't', 'verify_chain accepts the chain');

sub verify_export
{
	my (@opts) = @_;
	open(my $ef, '>', "$dir/wit.json") or die;
	print $ef sql(q{SELECT envault.export_chain('audit', 'wit')}) . "\n";
	close $ef;
	my ($o, $e) = ('', '');
	IPC::Run::run([ "$bindir/envault-verify", '--key', "$dir/log.vkey", '--database', $dbid,
		@opts, "$dir/wit.json" ], '>', \$o, '2>', \$e);
	return $o . $e;
}
like(verify_export('--witness', "$dir/w1.vkey"), qr/^OK: .*cosigned by 1 witness/,
	'envault-verify accepts the export with the witness required');
like(verify_export('--witness', "$dir/w1.vkey", '--witness', "$dir/w2.vkey"),
	qr/^FAIL: .*has 1 of 2 witness cosignatures/,
	'... and refuses it when two witnesses are required and one cosigned');

# The fork: a superuser rewrites rows 13 on, deletes checkpoints,
# cosignatures and the stored tree, and signs the forged head with the key
sql(q{
SET session_replication_role = replica;
DELETE FROM audit WHERE tenant = 'wit' AND envault_seq > 12;
DELETE FROM envault.checkpoint_cosignatures;
DELETE FROM envault.checkpoints WHERE tenant = 'wit';
DELETE FROM envault.chain_trees WHERE tenant = 'wit';
DELETE FROM envault.chain_nodes WHERE tenant = 'wit';
UPDATE envault.chain_heads h SET seq = 12, hash = a.envault_hash
  FROM audit a WHERE a.tenant = 'wit' AND a.envault_seq = 12 AND h.tenant = 'wit';
});
sql(q{INSERT INTO audit SELECT 'wit', 'forged ' || g FROM generate_series(1, 4) g});
is(sql(q{SELECT seq FROM envault.checkpoint('audit', 'wit')}), '16',
	'the key in the server signs the forged head: nothing there remembers');
is(sql(q{SELECT ok FROM envault.verify_chain('audit', 'wit')}), 't',
	'... and verify_chain sees nothing wrong');
($rc, $stdout, $stderr) = $node->psql('postgres', q{SELECT envault.cosign('audit', 'wit')});
isnt($rc, 0, 'the witness refuses to cosign the fork');
like(slurp_file($node->logfile), qr/consistency proof from 14 rows does not verify/,
	'... having asked for a proof from the tree it cosigned');
like(verify_export(), qr/^OK: /, 'without witnesses, envault-verify accepts the forged export');
like(verify_export('--witness', "$dir/w1.vkey"),
	qr/^FAIL: .*has 0 of 1 witness cosignatures/,
	'with the witness required, it refuses it');

$node->stop;
done_testing();
