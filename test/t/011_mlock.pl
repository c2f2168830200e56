# envault TAP test: key memory that cannot be locked against swapping.
#
# envault keeps keys in pages locked with mlock().  When the server's
# RLIMIT_MEMLOCK does not allow it, envault goes on (the pages are still
# excluded from core dumps and wiped) but says so: one WARNING per process,
# with a hint about the limit, however many keys that process loads.
#
# The limit of the running postmaster is lowered to 0 with prlimit(1), so
# the backends it forks afterwards cannot lock anything; a restart (by
# pg_ctl, with the test's own limit) brings the default back, and with it
# silence.

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex);

use Fcntl qw(O_WRONLY O_CREAT O_TRUNC);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $prlimit = '/usr/bin/prlimit';
plan skip_all => 'prlimit(1) is not available' unless -x $prlimit;

my $node = PostgreSQL::Test::Cluster->new('mlock');
my $keyfile = $node->basedir . '/master.key';
sysopen(my $fh, $keyfile, O_WRONLY | O_CREAT | O_TRUNC, 0600)
  or die "could not create \"$keyfile\": $!";
print $fh random_key_hex() . "\n";
close $fh;

$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key_file = '$keyfile'");
$node->start;
$node->safe_psql('postgres',
	q{CREATE EXTENSION envault; SELECT envault.create_tenant('acme')});

my $warning = qr/WARNING:  53000: could not lock envault key memory against swapping: [^\n]+\n/
  . qr/DETAIL:  \Qenvault goes on, but keys in this process may be written to swap.\E\n/
  . qr/HINT:  \QRaise the server's locked-memory limit (RLIMIT_MEMLOCK): LimitMEMLOCK= in its systemd unit, or ulimit -l where it is started.\E\n/;
$warning = qr/$warning/;

# Encrypt and decrypt under several data keys in one session: the key
# cache needs locked pages for each.
my $work = "\\set VERBOSITY verbose\n"
  . join('',
	map {
		"SELECT envault.env_decrypt_text(envault.env_encrypt('acme', 'p$_', 'v'::text));\n"
	} 1 .. 5);

my ($ret, $out, $err) = $node->psql('postgres', $work);
is($ret, 0, 'with the default limit: the session works');
unlike($err, qr/WARNING/, 'and warns of nothing');

my $pid = $node->{_pid};
system($prlimit, "--pid=$pid", '--memlock=0:0') == 0
  or die "prlimit failed: $?";
like(`$prlimit --pid=$pid --memlock --noheadings --raw`,
	qr/^MEMLOCK\s.*\s0\s+0\s/m, 'the postmaster may lock no memory any more');

my $offset = -s $node->logfile;
($ret, $out, $err) = $node->psql('postgres', $work);
is($ret, 0, 'without locked memory: the session still works');
is($out, join("\n", ('v') x 5), 'and encrypts and decrypts');
my @warnings = $err =~ /$warning/g;
is(scalar(@warnings), 1, 'it warns once, with the hint, for all its keys');

($ret, $out, $err) = $node->psql('postgres', $work);
@warnings = $err =~ /$warning/g;
is(scalar(@warnings), 1, 'another session warns once too');

my $log = slurp_file($node->logfile, $offset);
my @logged = $log =~ /WARNING:  could not lock envault key memory against swapping/g;
is(scalar(@logged), 2, 'the server log has one warning per session');

# A restart by pg_ctl gives the postmaster the test's limit again.
$node->restart;
($ret, $out, $err) = $node->psql('postgres', $work);
is($ret, 0, 'after a restart: the session works');
unlike($err, qr/WARNING/, 'and warns of nothing again');

$node->stop;
done_testing();
