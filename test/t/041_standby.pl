# envault TAP test: a streaming hot standby.
#
# A primary and a hot standby made from its base backup, streaming; both
# preload envault and have the same master key and checkpoint signing key,
# each in a 0600 file of its own.  Tenants, encrypted values (with
# associated data), secrets and a chained table with signed checkpoints
# are written on the primary, some before the base backup and some after
# (those reach the standby by streaming).  On the standby:
#
# - env_decrypt_text and get_secret return the values written on the
#   primary; env_encrypt under an existing data key works too;
# - nothing can be written there, so every access record goes to the
#   standby's server log as one line, "envault access: " and a JSON object
#   (src/accesslog.c): each line parses, names tenant, purpose, secret,
#   count, role and backend, and no line holds a plaintext;
# - envault.access_log holds exactly the primary's records: the standby
#   added none;
# - verify_chain works: the user table, envault.key_events and
#   envault.access_log, with their checkpoints;
# - a data key cannot be created: SQLSTATE 25006 and a message naming the
#   tenant and purpose, while asking for an existing one works.
# Then the primary stops and the standby is promoted: a session opened
# during recovery goes on, and its records go to envault.access_log.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest;
use EnvaultLog;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $master_key = random_key_hex();

# An Ed25519 private key in PEM (PKCS#8), as envault.signing_key_file wants.
my $tmp = PostgreSQL::Test::Utils::tempdir();
system('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$tmp/signing.pem") == 0
  or die "openssl genpkey failed";
my $signing_key = slurp_file("$tmp/signing.pem");

# envault settings of a node, with key files of its own.
sub configure_keys
{
	my ($node) = @_;
	my $dir = $node->basedir;
	write_private_file("$dir/master.key", "$master_key\n");
	write_private_file("$dir/signing.pem", $signing_key);
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'envault'\n"
		  . "envault.master_key_file = '$dir/master.key'\n"
		  . "envault.signing_key_file = '$dir/signing.pem'\n");
	return;
}

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
configure_keys($primary);
$primary->start;

# Plaintexts, by id: tenant acme has ids 1 to 4, globex 5 to 7.
my %plain = (
	1 => 'acme card 4111-1111-1111-1111',
	2 => 'acme iban DE89 3704 0044 0532 0130 00',
	3 => 'acme phone +1 555 0100',
	4 => 'acme after the backup',
	5 => 'globex card 5500-0000-0000-0004',
	6 => 'globex phone +44 20 7946 0000',
	7 => 'globex after the backup');
my %secret = (
	'acme/openai' => 'sk-proj-primary-written-0123456789abcd',
	'globex/s3'   => 'aws-secret-primary-written-9876543210',
	'acme/webhook' => 'whsec-after-the-backup-5555');

sub insert_values
{
	my @ids = @_;
	return join('',
		map {
			my $t = $_ <= 4 ? 'acme' : 'globex';
			"INSERT INTO accounts VALUES ($_, '$t', envault.env_encrypt('$t', 'pii', '$plain{$_}', int4send($_)));\n"
		} @ids);
}

sub put_secret_sql
{
	my ($ts) = @_;
	my ($t, $name) = split m{/}, $ts;
	return "SELECT envault.put_secret('$t', '$name', '$secret{$ts}');\n";
}

$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
SELECT envault.create_tenant('globex');
CREATE TABLE accounts (id int PRIMARY KEY, tenant text NOT NULL, c bytea NOT NULL);
CREATE TABLE audit_events (id int PRIMARY KEY, tenant text NOT NULL, action text NOT NULL,
                           at timestamptz NOT NULL DEFAULT now());
SELECT envault.enable_audit_chain('audit_events', 'tenant');
INSERT INTO audit_events (id, tenant, action)
SELECT g, CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END, 'action ' || g
  FROM generate_series(1, 10) g;
}
	  . insert_values(1, 2, 3, 5, 6)
	  . put_secret_sql('acme/openai')
	  . put_secret_sql('globex/s3')
	  . q{
SET application_name = 'primary-reads';
SELECT count(envault.env_decrypt_text(c, int4send(id))) FROM accounts;
SELECT envault.get_secret('acme', 'openai');
RESET application_name;
SELECT count(*) FROM envault.checkpoint('audit_events');
SELECT count(*) FROM envault.checkpoint('envault.key_events');
SELECT count(*) FROM envault.checkpoint('envault.access_log');
});

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
configure_keys($standby);
$standby->start;

# More after the base backup: these reach the standby by streaming.
$primary->safe_psql(
	'postgres',
	insert_values(4, 7)
	  . put_secret_sql('acme/webhook')
	  . q{
INSERT INTO audit_events (id, tenant, action)
SELECT g, CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END, 'action ' || g
  FROM generate_series(11, 16) g;
SELECT count(*) FROM envault.checkpoint('audit_events');
SET application_name = 'primary-reads';
SELECT count(envault.env_decrypt_text(c, int4send(id))) FROM accounts WHERE id IN (4, 7);
});
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery');

# ---- reads on the standby ------------------------------------------------------

my $offset = -s $standby->logfile;
my $s = $standby->background_psql('postgres');
my $pid = $s->query_safe('SELECT pg_backend_pid()');
$s->query_safe("SET application_name = 'standby-reads'");
is( $s->query_safe(
		q{SELECT string_agg(id || '=' || envault.env_decrypt_text(c, int4send(id)), ',' ORDER BY id)
		    FROM accounts}),
	join(',', map { "$_=$plain{$_}" } sort keys %plain),
	'standby: env_decrypt_text returns every value written on the primary');
is( $s->query_safe(
		q{SELECT envault.get_secret('acme', 'openai') || ',' || envault.get_secret('globex', 's3')
		         || ',' || envault.get_secret('acme', 'webhook')}),
	"$secret{'acme/openai'},$secret{'globex/s3'},$secret{'acme/webhook'}",
	'standby: get_secret returns the secrets stored on the primary, the streamed one too'
);
is( $s->query_safe(
		q{SELECT envault.env_decrypt_text(envault.env_encrypt('globex', 'pii', 'encrypted on the standby'))}),
	'encrypted on the standby',
	'standby: env_encrypt under an existing data key works, and decrypts');
$s->quit;

# Expected records of that session: tenant|purpose|secret => count
my %want = (
	'acme|pii|-'         => 4,
	'globex|pii|-'       => 4,
	'acme|_secrets|openai'  => 1,
	'acme|_secrets|webhook' => 1,
	'globex|_secrets|s3'    => 1);
my $lines = wait_for_backend_lines($standby, $offset, $pid, 11);
ok(defined $lines,
	'standby: the access records are in the standby\'s server log');
my @recs = @{ $lines // [] };
my %got;
$got{ join('|', $_->{tenant}, $_->{purpose}, $_->{secret_name} // '-') } +=
  $_->{count}
  foreach @recs;
is( join(' ', map { "$_=$got{$_}" } sort keys %got),
	join(' ', map { "$_=$want{$_}" } sort keys %want),
	'standby: the lines give tenant, purpose, secret name and count of every decryption'
);
is( scalar(
		grep {
			     $_->{event} eq 'decrypt'
			  && $_->{key_version} == 1
			  && $_->{role} eq 'postgres'
			  && $_->{session_role} eq 'postgres'
			  && $_->{database} eq 'postgres'
			  && $_->{application_name} eq 'standby-reads'
			  && $_->{statement_seq} > 0
		} @recs),
	scalar(@recs),
	'standby: every line names the key version, roles, database, application and statement'
);
is(scalar(keys %{ { map { $_->{statement_seq} => 1 } @recs } }),
	3, 'standby: the records of three statements, each with its own number');

# (the log has the statements too, log_statement being "all" in tests: the
# one literal plaintext the standby's statements hold is looked for only in
# the access lines)
my $standby_log = slurp_file($standby->logfile);
my $access_text = join("\n", map { $_->{_line} } @recs);
is(join(', ', grep { index($standby_log, $_) >= 0 } (values %plain, values %secret)),
	'', 'standby: no value or secret in the standby\'s server log');
is(join(', ', grep { index($access_text, $_) >= 0 } 'encrypted on the standby'),
	'', 'standby: no plaintext in the access lines');

# ---- nothing written ---------------------------------------------------------------

is( $standby->safe_psql(
		'postgres',
		q{SELECT count(*) FROM envault.access_log WHERE application_name = 'standby-reads'}),
	'0',
	'standby: envault.access_log has no record of the standby\'s reads');
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
my $log_sql = q{
SELECT count(*) || ' records, ' || md5(string_agg(concat_ws('|', tenant, envault_seq, encode(envault_hash, 'hex')),
                                        ',' ORDER BY tenant, envault_seq))
  FROM envault.access_log};
is($standby->safe_psql('postgres', $log_sql),
	$primary->safe_psql('postgres', $log_sql),
	'standby: its envault.access_log is exactly the primary\'s');
is( $primary->safe_psql(
		'postgres',
		q{SELECT count(*) FROM envault.access_log WHERE application_name = 'standby-reads'}),
	'0',
	'primary: (which has no record of the standby\'s reads either)');

# ---- chains ----------------------------------------------------------------------

foreach my $tbl ('audit_events', 'envault.key_events', 'envault.access_log')
{
	my $sql = qq{
SELECT count(*) FILTER (WHERE NOT ok) || ' bad of ' || count(*) || ', '
       || (sum(rows_checked) = (SELECT count(*) FROM $tbl))
  FROM envault.verify_chain('$tbl')};
	my $res = $standby->safe_psql('postgres', $sql);
	like($res, qr/^0 bad of [1-9]\d*, true$/,
		"standby: verify_chain('$tbl') verifies every chain, every row");
	is($res, $primary->safe_psql('postgres', $sql),
		"standby: the same result as on the primary for $tbl");
}
is( $standby->safe_psql(
		'postgres',
		q{SELECT count(*) FROM envault.checkpoints c JOIN envault.audit_chains a USING (chain_id)
		   WHERE a.identity = 'public.audit_events'}),
	'4',
	'standby: (the chains of audit_events have 4 checkpoints to verify)');

# ---- no new data keys ---------------------------------------------------------------

my ($ret, $out, $err) = $standby->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT envault.create_data_key('acme', 'fresh')");
is($ret, 3, 'standby: create_data_key for a new purpose fails');
like(
	$err,
	qr/^psql:<stdin>:\d+: ERROR:  25006: tenant "acme" has no data key for purpose "fresh"\nDETAIL:  A data key cannot be created in a read-only transaction\.\nHINT:  Create it with envault\.create_data_key\(\) in a read-write transaction\.\nLOCATION:  /m,
	'standby: with SQLSTATE 25006, naming tenant and purpose');
($ret, $out, $err) = $standby->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT envault.env_encrypt('globex', 'fresh', 'x'::text)");
like($err,
	qr/^psql:<stdin>:\d+: ERROR:  25006: tenant "globex" has no data key for purpose "fresh"\n/m,
	'standby: so does a first encryption for a new purpose');
is($standby->safe_psql('postgres', q{SELECT envault.create_data_key('acme', 'pii')}),
	'1', 'standby: create_data_key of an existing data key returns its version');
is( $primary->safe_psql(
		'postgres', q{SELECT count(*) FROM envault.data_keys WHERE purpose = 'fresh'}),
	'0',
	'primary: no data key was created');

# ---- after promotion -----------------------------------------------------------

# A session opened during recovery goes on after the standby is promoted:
# from then on its records go to the new primary's envault.access_log.
$s = $standby->background_psql('postgres');
$pid = $s->query_safe('SELECT pg_backend_pid()');
$s->query_safe("SET application_name = 'promoted-reads'");
is($s->query_safe('SELECT envault.env_decrypt_text(c, int4send(id)) FROM accounts WHERE id = 1'),
	$plain{1}, 'standby: a session decrypts during recovery');
$offset = -s $standby->logfile;
$primary->stop;
$standby->promote;
is($s->query_safe('SELECT pg_is_in_recovery()'), 'f', 'promoted: the session goes on');
is($s->query_safe('SELECT envault.env_decrypt_text(c, int4send(id)) FROM accounts WHERE id = 5'),
	$plain{5}, 'promoted: it decrypts again');
is( $s->query_safe(
		q{SELECT string_agg(concat_ws('|', tenant, purpose, count, backend_pid), ',')
		    FROM envault.access_log WHERE application_name = 'promoted-reads'}),
	"globex|pii|1|$pid",
	'promoted: the record is in envault.access_log, and only that one');
$s->quit;
is(scalar(grep { $_->{backend_pid} == $pid } access_lines($standby, $offset)),
	0, 'promoted: and not in the server log');
is( $standby->safe_psql(
		'postgres',
		q{SELECT bool_and(ok) FROM envault.verify_chain('envault.access_log')}),
	't', 'promoted: the chains of envault.access_log verify');

$standby->stop;

done_testing();
