# envault TAP test: with everything logged, nothing secret is in the log.
#
# envault is preloaded with a fresh random master key and pepper, in files,
# so that they occur in no statement.  The server logs every statement
# (log_statement = all), every message down to DEBUG5 with its statement
# (log_min_messages and log_min_error_statement = debug5), verbosely.  The
# test runs every pg_regress suite (the REGRESS list of the Makefile, in
# order, adversarial suites included) through psql, ignoring their output,
# then a workload of marker plaintexts: 32-byte values computed inside the
# server from a seed (only the seed is in any statement), encrypted,
# decrypted, compared, re-encrypted, indexed and refused, as an
# administrator and as an application role.
#
# Every key the server held unwrapped is computed here: a trigger (of this
# test) logs every row ever written to the key tables, rolled back or not,
# and test/vectors/unwrap_keys.py unwraps each with the master key
# (docs/format.md); decrypting the markers' ciphertexts with those keys
# proves them right.  Then the whole log is scanned for the master key, the
# pepper, every tenant key and data key, and every marker: in hex (either
# case, and each half), raw, and base64.  None may occur.  Finally secrets
# are planted in the log on purpose, and the same scan must find each, so it
# cannot pass by looking at nothing.
#
# The log grows to nearly 1 GB (every debug message carries its statement,
# and the adversarial suites run tens of thousands of subtransactions); it
# is read in chunks.  The whole test takes about a minute and a half.

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex write_private_file);

use Digest::SHA qw(sha256_hex);
use Fcntl qw(O_WRONLY O_CREAT O_TRUNC);
use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/../..');

# The pg_regress suites, in the order of the Makefile's REGRESS list
my $makefile = slurp_file("$root/Makefile");
$makefile =~ /^REGRESS\s*=((?:[^\n]*\\\n)*[^\n]*)/m
  or die "no REGRESS list in $root/Makefile";
(my $regress = $1) =~ s/\\\n/ /g;
my @suites = split ' ', $regress;
ok(scalar(@suites) >= 12 && $suites[0] eq 'setup',
	'the REGRESS list starts with setup: ' . join(' ', @suites));
cmp_ok(scalar(grep { /^adversarial_/ } @suites), '>=', 4, 'and the adversarial suites');

my $master = random_key_hex();
my $pepper = random_key_hex();
my $seed = substr(random_key_hex(), 0, 32);
my $nmarkers = 20;
my @markers = map { sha256_hex("envault-log-marker-$_-$seed") } 1 .. $nmarkers;

my $node = PostgreSQL::Test::Cluster->new('no_secrets_in_log');
$node->init;
my $master_file = $node->basedir . '/master.key';
my $pepper_file = $node->basedir . '/pepper.key';
write_private_file($master_file, "$master\n");
write_private_file($pepper_file, "$pepper\n");
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'envault'
envault.master_key_file = '$master_file'
envault.pepper_file = '$pepper_file'
log_statement = 'all'
log_min_messages = debug5
log_min_error_statement = debug5
log_error_verbosity = verbose
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE regression');

# Run a file of SQL through psql (as pg_regress does), and its exit status
sub run_sql_file
{
	my ($file, $user) = @_;
	my ($out, $err) = ('', '');
	my $connstr = $node->connstr('regression');
	$connstr .= " user=$user" if defined $user;
	IPC::Run::run(
		[ 'psql', '-X', '-a', '-q', '-d', $connstr, '-f', $file ],
		'<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(1800))
	  or return ($? >> 8, $out, $err);
	return (0, $out, $err);
}

# --- every suite, everything logged -----------------------------------------

# After setup (which creates the extension): a trigger logs every row
# written to the key tables, with its wrapped key, as LOG lines (which no
# rollback undoes), so that every key the server ever unwrapped can be
# computed afterwards.  Wrapped keys are not secret.
my $key_rows_sql = q{
CREATE FUNCTION public.log_test_key_rows() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NEW.wrapped_key IS NOT NULL AND TG_TABLE_NAME = 'tenants' THEN
		RAISE LOG 'envault-key-row tenant % % % %',
			encode(convert_to(NEW.tenant, 'UTF8'), 'hex'), NEW.key_version,
			coalesce(encode(NEW.master_kcv, 'hex'), '00'), encode(NEW.wrapped_key, 'hex');
	ELSIF NEW.wrapped_key IS NOT NULL THEN
		RAISE LOG 'envault-key-row data % % % % % %', NEW.key_id,
			encode(convert_to(NEW.tenant, 'UTF8'), 'hex'),
			encode(convert_to(NEW.purpose, 'UTF8'), 'hex'), NEW.version,
			NEW.tenant_key_version, encode(NEW.wrapped_key, 'hex');
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER log_test_key_rows AFTER INSERT OR UPDATE ON envault.tenants
	FOR EACH ROW EXECUTE FUNCTION public.log_test_key_rows();
CREATE TRIGGER log_test_key_rows AFTER INSERT OR UPDATE ON envault.data_keys
	FOR EACH ROW EXECUTE FUNCTION public.log_test_key_rows();
};

my %last_statement;
foreach my $suite (@suites)
{
	my $file = "$root/sql/$suite.sql";
	# the first line of its last statement, to find in the log
	my ($last) = reverse grep { /^(SELECT|CREATE|INSERT|UPDATE|DELETE|DROP|CALL) / }
	  split /\n/, slurp_file($file);
	$last =~ s/;$//;
	$last_statement{$suite} = $last;
	my ($rc, $out, $err) = run_sql_file($file);
	is($rc, 0, "psql ran suite $suite");
	if ($suite eq 'setup')
	{
		$node->safe_psql('regression', $key_rows_sql);
	}
}

# --- marker plaintexts ------------------------------------------------------

# 32-byte markers computed in the server: as text (64 hex digits) and raw
my $marker_sql = qq{
CREATE TABLE public.log_markers AS
SELECT g, encode(sha256(convert_to('envault-log-marker-' || g || '-$seed', 'UTF8')), 'hex') AS m,
       sha256(convert_to('envault-log-marker-' || g || '-$seed', 'UTF8')) AS r
  FROM generate_series(1, $nmarkers) g;
SELECT envault.create_tenant('log-markers');
CREATE TABLE public.log_ct (g int PRIMARY KEY, c bytea, b bytea, a bytea,
                            aad bytea GENERATED ALWAYS AS (int4send(g)) STORED);
INSERT INTO public.log_ct (g, c, b, a)
SELECT g, envault.env_encrypt('log-markers', 'secrets', m, int4send(g)),
       envault.env_encrypt('log-markers', 'files', r),
       envault.env_encrypt('log-markers', 'secrets', 'bound to a marker', r)
  FROM public.log_markers;
-- decrypted and compared, each way
SELECT count(*) AS text_ok FROM public.log_ct k JOIN public.log_markers s USING (g)
 WHERE envault.env_decrypt_text(k.c, int4send(g)) = s.m;
SELECT count(*) AS bytes_ok FROM public.log_ct k JOIN public.log_markers s USING (g)
 WHERE envault.env_decrypt(k.b) = s.r AND envault.env_decrypt_text(k.a, s.r) = 'bound to a marker';
SELECT count(*) AS unequal FROM public.log_ct k JOIN public.log_markers s USING (g)
 WHERE envault.env_decrypt_text(k.c, int4send(g)) <> s.m;
SELECT envault.env_decrypt_text(k.c, int4send(g)) < s.m FROM public.log_ct k JOIN public.log_markers s USING (g);
-- refused: wrong aad, not text, a marker as the wrong aad, truncated
SELECT envault.env_decrypt_text(c, int4send(g + 1)) FROM public.log_ct WHERE g = 1;
SELECT envault.env_decrypt_text(b) FROM public.log_ct WHERE g = 2;
SELECT envault.env_decrypt(k.a, s.r) FROM public.log_ct k JOIN public.log_markers s ON s.g = k.g + 1 WHERE k.g = 3;
SELECT envault.env_decrypt(substr(c, 1, 60), int4send(g)) FROM public.log_ct WHERE g = 4;
-- re-encrypted after a rotation, one by one and by column
SELECT envault.rotate_data_key('log-markers', 'secrets');
UPDATE public.log_ct SET a = envault.env_reencrypt(a, (SELECT r FROM public.log_markers s WHERE s.g = log_ct.g));
SELECT envault.rotate_data_key('log-markers', 'secrets');
CALL envault.reencrypt_column('public.log_ct', 'c', 'aad', 7);
SELECT envault.rotate_tenant_key('log-markers');
SELECT count(*) AS still_ok FROM public.log_ct k JOIN public.log_markers s USING (g)
 WHERE envault.env_decrypt_text(k.c, int4send(g)) = s.m AND envault.env_is_current(k.c);
-- blind indexes and pepper HMACs of markers
SELECT count(DISTINCT envault.blind_index('log-markers', 'markers', m)) FROM public.log_markers;
SELECT count(DISTINCT envault.pepper_hmac(r)) FROM public.log_markers;
-- for an application role, through its token
CREATE ROLE log_app LOGIN;
GRANT envault_user TO log_app;
CREATE TABLE public.log_tokens AS SELECT envault.issue_token('log-markers', 'log test') AS token;
GRANT SELECT ON public.log_ct, public.log_markers, public.log_tokens TO log_app;
};
my $app_sql = q{
SELECT envault.authenticate(token, true) IS NOT NULL FROM public.log_tokens;
SELECT count(*) AS app_ok FROM public.log_ct k JOIN public.log_markers s USING (g)
 WHERE envault.env_decrypt_text(k.c, int4send(g)) = s.m AND envault.env_decrypt(k.b) = s.r;
SELECT envault.env_decrypt_text(b) FROM public.log_ct WHERE g = 5;
};
unlike($marker_sql . $app_sql, qr/\Q$markers[0]\E/, 'no marker occurs in any statement sent');
my $marker_file = $node->basedir . '/markers.sql';
my $app_file = $node->basedir . '/markers_app.sql';
write_private_file($marker_file, $marker_sql);
write_private_file($app_file, $app_sql);
my ($rc, $out, $err) = run_sql_file($marker_file);
is($rc, 0, 'psql ran the marker workload');
like($out, qr/ text_ok \n-+\n +$nmarkers\n/, 'every text marker decrypted to itself');
like($out, qr/ bytes_ok \n-+\n +$nmarkers\n/, 'every raw marker decrypted to itself, and as aad');
like($out, qr/ still_ok \n-+\n +$nmarkers\n/,
	'and again after rotations, reencrypt_column and a tenant key rotation');
like($err, qr/envault ciphertext failed authentication/, 'wrong aad and truncation were refused');
like($err, qr/decrypted value is not valid text/, 'a raw marker was refused as text');
($rc, $out, $err) = run_sql_file($app_file, 'log_app');
is($rc, 0, 'psql ran the application workload');
like($out, qr/ app_ok \n-+\n +$nmarkers\n/, 'the application decrypted every marker');

# --- reading the log ---------------------------------------------------------

# The log is large (hundreds of megabytes): it is read in chunks, each
# starting with the last 4 kB of the one before, so that nothing shorter
# than that (every secret, every key row line) is cut in two.  Calls
# $cb->($text) for each chunk of the log from byte $from on.
sub each_chunk
{
	my ($from, $cb) = @_;
	open my $fh, '<:raw', $node->logfile or die "open log: $!";
	seek($fh, $from, 0) or die "seek log: $!";
	my $carry = '';
	while (1)
	{
		my $n = read($fh, my $buf, 64 * 1024 * 1024);
		die "read log: $!" unless defined $n;
		last if $n == 0;
		my $text = $carry . $buf;
		$cb->($text);
		$carry = substr($text, -4096);
	}
	close $fh;
	return;
}

# --- the keys the server held -----------------------------------------------

# (whole bytes only: a row is taken only as the server logged it whole)
my $hex = qr/(?:[0-9a-f]{2})+/;
my %rows;
each_chunk(
	0,
	sub {
		$rows{$_} = 1 foreach $_[0] =~
		  /envault-key-row (tenant $hex \d+ $hex $hex|data \d+ $hex $hex \d+ \d+ $hex)$/mg;
	});
my $ct = $node->safe_psql('regression',
	"SELECT 'open ' || encode(aad, 'hex') || ' ' || encode(c, 'hex') FROM public.log_ct ORDER BY g");
# (through a file: if the helper stops early, its message is what shows)
my $helper_in = $node->basedir . '/unwrap_keys.in';
open(my $hin, '>', $helper_in) or die "could not write $helper_in: $!";
print $hin "master $master\n", map({ "$_\n" } sort keys %rows), "$ct\n";
close($hin) or die "could not write $helper_in: $!";
my ($keys_out, $keys_err) = ('', '');
IPC::Run::run([ 'python3', "$root/test/vectors/unwrap_keys.py" ],
	'<', $helper_in, '>', \$keys_out, '2>', \$keys_err)
  or die "unwrap_keys.py failed: $keys_err";
my @tenant_keys = $keys_out =~ /^tenant_key \S+ \d+ ([0-9a-f]{64})$/mg;
my %tenant_versions = map { $_ => 1 } $keys_out =~ /^tenant_key (\S+ \d+) [0-9a-f]{64}$/mg;
my %data_keys = $keys_out =~ /^data_key (\d+) ([0-9a-f]{64})$/mg;
my @data_keys = values %data_keys;
my @plaintexts = $keys_out =~ /^plaintext ([0-9a-f]*)$/mg;
my ($summary) = $keys_out =~ /^summary (.*)$/m;
note "unwrap_keys.py: $summary";
cmp_ok(scalar(keys %rows), '>', 1000,
	'the key tables were written to many times (' . scalar(keys %rows) . ' distinct rows logged)');
cmp_ok(scalar(@tenant_keys), '>=', 20, scalar(@tenant_keys) . ' tenant keys unwrapped');
cmp_ok(scalar(@data_keys), '>=', 50, scalar(@data_keys) . ' data keys unwrapped');
# every key in the tables now is among them
my @missing = grep { !$tenant_versions{$_} } split /\n/,
  $node->safe_psql('regression',
	"SELECT encode(convert_to(tenant, 'UTF8'), 'hex') || ' ' || key_version FROM envault.tenants"
	  . " WHERE state <> 'destroyed' AND master_kcv IS NOT NULL"
	  . " AND master_kcv = (SELECT master_kcv FROM envault.tenants WHERE tenant = 'log-markers')");
is(scalar(@missing), 0, 'every tenant key in envault.tenants was unwrapped');
@missing = grep { !$data_keys{$_} } split /\n/,
  $node->safe_psql('regression',
	"SELECT d.key_id FROM envault.data_keys d JOIN envault.tenants t USING (tenant)"
	  . " WHERE d.wrapped_key IS NOT NULL AND t.state <> 'destroyed'"
	  . " AND t.master_kcv = (SELECT master_kcv FROM envault.tenants WHERE tenant = 'log-markers')");
is(scalar(@missing), 0, 'every data key in envault.data_keys was unwrapped');
is_deeply([ map { pack('H*', $_) } @plaintexts ], \@markers,
	'those keys decrypt the markers, outside the server');

# --- the scan -----------------------------------------------------------------

# Every form of a secret (given in hex) to look for: hex in either case,
# each half of it, raw, base64
sub forms
{
	my ($hex) = @_;
	my $raw = pack('H*', $hex);
	my $half = length($hex) / 2;
	return (
		lc($hex), uc($hex),
		substr(lc($hex), 0, $half), substr(lc($hex), $half),
		substr(uc($hex), 0, $half), substr(uc($hex), $half),
		$raw, encode_base64($raw, ''));
}

my %secrets = (
	'the master key' => [$master],
	'the pepper' => [$pepper],
	'a tenant key' => \@tenant_keys,
	'a data key' => \@data_keys,
	# a marker is 32 bytes (a bytea plaintext and aad) whose hex is a text
	# plaintext: both are looked for, and the hex of that text
	'a marker' => [ @markers, map { unpack('H*', $_) } @markers ]);

# needle => what it is
my %needle;
foreach my $what (keys %secrets)
{
	foreach my $hex (@{ $secrets{$what} })
	{
		$needle{$_} = $what foreach forms($hex);
	}
}
my $needles = join('|', map { quotemeta } sort { length($b) <=> length($a) } keys %needle);
my $needle_re = qr/($needles)/;

# What the scan finds in $text: adds what => occurrences to %$found
sub scan
{
	my ($text, $found) = @_;
	while ($text =~ /$needle_re/g)
	{
		$found->{ $needle{$1} }++;
	}
	return $found;
}

# The whole log (so far: the planting below comes after), scanned for
# secrets, and for signs that everything was logged
my (%found, $statements, $debug, $statement_lines, $location);
my %suite_logged;
each_chunk(
	0,
	sub {
		my ($text) = @_;
		scan($text, \%found);
		$statements += () = $text =~ / LOG:  00000: statement: /g;
		$debug ||= $text =~ / DEBUG:  00000: StartTransaction\(1\)/;
		$statement_lines ||= $text =~ / STATEMENT:  /;
		$location ||= $text =~ / LOCATION:  \w+, \w+\.c:\d+\n/;
		foreach my $suite (@suites)
		{
			$suite_logged{$suite} ||= index($text, $last_statement{$suite}) >= 0;
		}
		$suite_logged{markers} ||=
		  index($text, 'envault.env_decrypt_text(k.c, int4send(g)) = s.m') >= 0;
	});

my $log_size = -s $node->logfile;
cmp_ok($log_size, '>', 10_000_000, "the server log is large ($log_size bytes)");
cmp_ok($statements, '>', 500, "it holds every statement ($statements)");
ok($debug, 'and DEBUG5 messages');
ok($statement_lines, 'and the statement of each message');
ok($location, 'verbosely, with the location of each message');
foreach my $suite (@suites)
{
	ok($suite_logged{$suite}, "suite $suite was logged to its end");
}
ok($suite_logged{markers}, 'the marker workload was logged');
foreach my $what (sort keys %secrets)
{
	is($found{$what} // 0, 0, "the server log never contains $what");
}

# --- the scan finds what is there ---------------------------------------------

# Secrets planted in the log on purpose, read from files by the server, so
# that no statement holds them either.
write_private_file($node->basedir . '/planted_tenant_key', $tenant_keys[0]);
write_private_file($node->basedir . '/planted_data_key', uc($data_keys[-1]));
my $dir = $node->basedir;
my $planted_from = -s $node->logfile;
$node->safe_psql(
	'regression', qq{
DO \$\$
BEGIN
	RAISE LOG 'planted %', pg_read_file('$master_file');
	RAISE LOG 'planted %', encode(decode(btrim(pg_read_file('$pepper_file'), E'\\n'), 'hex'), 'base64');
	RAISE LOG 'planted %', pg_read_file('$dir/planted_tenant_key');
	RAISE LOG 'planted %', substr(pg_read_file('$dir/planted_data_key'), 33);
	RAISE LOG 'planted %', (SELECT m FROM public.log_markers WHERE g = 7);
END
\$\$;
});
my %planted;
each_chunk($planted_from, sub { scan($_[0], \%planted) });
foreach my $what (sort keys %secrets)
{
	cmp_ok($planted{$what} // 0, '>=', 1, "the scan finds $what planted in the log");
}
# the raw form (which the server cannot log as text) is found too
my %raw_planted;
scan('x' x 1000 . pack('H*', $data_keys[0]) . 'y' x 1000, \%raw_planted);
is($raw_planted{'a data key'} // 0, 1, 'the scan finds a raw data key');

$node->stop;
done_testing();
