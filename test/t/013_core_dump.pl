# envault TAP test: no key in a core dump of a backend that used them.
#
# A backend decrypts (master key, tenant key, data key), verifies a token
# (pepper) and signs a checkpoint (Ed25519 signing key); gcore then dumps
# it, as a crash or an administrator would.  gcore honours MADV_DONTDUMP,
# as the kernel does for a core file.  None of the five raw keys may be in
# the dump, nor the pepper's two HMAC states (the SHA-256 states after its
# padded blocks, which envault prepares once per process and which verify
# tokens as well as the pepper): envault keeps them, and OpenSSL's expanded
# forms of the keys (AES key schedules start with the raw key, HMAC
# contexts hold it), only in memory excluded from core dumps, and wipes
# every other buffer that held one.
#
# The tenant and data keys are recovered from their wrapped rows with the
# independent implementation of docs/format.md (test/t/envault_keys.py),
# so the test knows what to look for.  A control dumps the same backend with the raw
# keys planted in ordinary memory (a bytea in a session variable), to show
# the search finds what is there.

use strict;
use warnings;

use File::Basename qw(dirname);
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA;

my $gcore = '/usr/bin/gcore';
plan skip_all => 'gcore (gdb) is not available' unless -x $gcore;
my $python = '/usr/bin/python3';
plan skip_all => 'python3 is not available' unless -x $python;


sub random_bytes
{
	open my $fh, '<:raw', '/dev/urandom' or die "open /dev/urandom: $!";
	my $n = read($fh, my $bytes, $_[0]);
	close $fh;
	die "short read from /dev/urandom" unless defined $n && $n == $_[0];
	return $bytes;
}

my $node = PostgreSQL::Test::Cluster->new('core');
$node->init;
my $dir = $node->basedir;

my $master = random_bytes(32);
my $pepper = random_bytes(32);
my $seed = random_bytes(32);
write_private_file("$dir/master.key", unpack('H*', $master) . "\n");
write_private_file("$dir/pepper.key", unpack('H*', $pepper) . "\n");
# an Ed25519 private key in PKCS#8, as openssl genpkey writes it
my $der = pack('H*', '302e020100300506032b657004220420') . $seed;
my $b64 = MIME_base64($der);
write_private_file("$dir/signing.pem",
	"-----BEGIN PRIVATE KEY-----\n$b64-----END PRIVATE KEY-----\n");

sub MIME_base64
{
	require MIME::Base64;
	return MIME::Base64::encode_base64($_[0]);
}

$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'envault'
envault.master_key_file = '$dir/master.key'
envault.pepper_file = '$dir/pepper.key'
envault.signing_key_file = '$dir/signing.pem'
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
CREATE TABLE audit (tenant text, what text);
SELECT envault.enable_audit_chain('audit', 'tenant');
INSERT INTO audit VALUES ('acme', 'one');
});

# One session that uses every key, and stays open for the dump
my $session = $node->background_psql('postgres');
my $pid = $session->query_safe('SELECT pg_backend_pid()');
$session->query_safe(q{
SELECT envault.env_decrypt_text(envault.env_encrypt('acme', 'pii', 'alice@example.com'));
SELECT envault.verify_token(envault.issue_token('acme', 'core'));
SELECT count(*) FROM envault.checkpoint('audit');
SELECT envault.get_secret('acme', 'x') FROM (SELECT envault.put_secret('acme', 'x', 'a secret value')) p;
});

# The raw tenant and data keys, unwrapped outside the server
my $rows = $node->safe_psql('postgres', q{
SELECT t.key_version, encode(t.wrapped_key, 'hex'), d.version, d.key_id,
       encode(d.wrapped_key, 'hex')
  FROM envault.tenants t JOIN envault.data_keys d USING (tenant)
 WHERE t.tenant = 'acme' AND d.purpose = 'pii'});
my ($tver, $twrapped, $dver, $did, $dwrapped) = split /\|/, $rows;
my $keys_py = dirname(__FILE__) . '/envault_keys.py';
my $tenant_hex = `$python $keys_py tenant-key @{[unpack('H*', $master)]} acme $tver $twrapped`;
chomp $tenant_hex;
my $data_hex = `$python $keys_py data-key $tenant_hex acme pii $dver $did $dwrapped`;
chomp $data_hex;
ok(defined $data_hex && length($data_hex) == 64,
	'the tenant and data keys unwrap outside the server');

# The SHA-256 state after one padded key block, as OpenSSL's SHA256_CTX
# holds it (eight 32-bit words, little-endian here): the HMAC states of the
# pepper that envault prepares once per process verify tokens as well as the
# pepper itself would.
sub sha256_pad_state
{
	my ($key, $pad) = @_;
	my $sha = Digest::SHA->new(256);
	$sha->add(($key . ("\0" x (64 - length($key)))) ^ (chr($pad) x 64));
	my ($h) = $sha->getstate =~ /^H:(.*)$/m;
	return pack('V8', map { hex } split /:/, $h);
}

my %keys = (
	'master key' => $master,
	'pepper' => $pepper,
	'pepper HMAC inner state' => sha256_pad_state($pepper, 0x36),
	'pepper HMAC outer state' => sha256_pad_state($pepper, 0x5c),
	'signing key' => $seed,
	'tenant key' => pack('H*', $tenant_hex // ''),
	'data key' => pack('H*', $data_hex // ''),);

sub dump_backend
{
	my ($name) = @_;
	my $core = "$dir/$name";
	system("$gcore -o $core $pid >$dir/$name.log 2>&1") == 0
	  or die "gcore failed: " . slurp_file("$dir/$name.log");
	$core = "$core.$pid";
	open my $fh, '<:raw', $core or die "open $core: $!";
	local $/;
	my $bytes = <$fh>;
	close $fh;
	unlink $core;
	return $bytes;
}

my $dump = dump_backend('core');
cmp_ok(length($dump), '>', 1_000_000, 'the backend was dumped');
foreach my $what (sort keys %keys)
{
	my $key = $keys{$what};
	is(index($dump, $key), -1, "the $what is not in the core");
	is(index(lc($dump), unpack('H*', $key)), -1,
		"the $what is not in the core in hex either");
}

# Control: the same keys in ordinary memory are found
my $planted = join ',', map { "'\\x" . unpack('H*', $keys{$_}) . "'::bytea" } sort keys %keys;
$session->query_safe(
	"CREATE TEMP TABLE planted AS SELECT unnest(ARRAY[$planted]) AS k; SELECT count(*) FROM planted WHERE k IS NOT NULL");
$session->query_safe('SELECT k FROM planted');
$dump = dump_backend('control');
foreach my $what (sort keys %keys)
{
	isnt(index($dump, $keys{$what}), -1,
		"control: the $what planted in ordinary memory is found");
}

$session->quit;
$node->stop;
done_testing();
