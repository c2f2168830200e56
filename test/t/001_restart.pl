# envault TAP test: encrypted values survive server restarts.
#
# envault preloaded, master key in envault.master_key.  Two tenants encrypt
# text and bytea values (with and without associated data) into a table;
# after a clean restart and after an immediate stop (crash recovery), every
# value decrypts to its original in fresh sessions (cold key cache), and the
# existing data keys are reused rather than recreated.

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex sql_lit);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $key = random_key_hex();

my $node = PostgreSQL::Test::Cluster->new('restart');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key = '$key'");
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
SELECT envault.create_tenant('globex');
CREATE TABLE secrets (
	id		int PRIMARY KEY,
	tenant	text NOT NULL,
	purpose	text NOT NULL,
	aad		bytea,
	ct		bytea NOT NULL
);
});

# The originals, kept in Perl: id => [tenant, purpose, kind, plaintext, aad].
# Text plaintexts are ASCII or UTF-8 literals; bytea ones are hex strings.
my %rows = (
	1 => [ 'acme',   'secrets',  'text',  'acme first secret', undef ],
	2 => [ 'acme',   'secrets',  'text',  'acme second secret', '\x0102' ],
	3 => [ 'acme',   'messages', 'text',  "Gr\x{fc}\x{df}e \x{2713}", undef ],
	4 => [ 'acme',   'files',    'bytea', '00ff10fe7f80', undef ],
	5 => [ 'globex', 'secrets',  'text',  'globex secret', undef ],
	6 => [ 'globex', 'secrets',  'text',  '', undef ],
	7 => [ 'globex', 'messages', 'text',  'globex message', '\xdeadbeef' ],
	8 => [ 'globex', 'files',    'bytea', '', undef ],
	9 => [ 'globex', 'files',    'bytea', 'c0ffee' x 100, '\x00' ],);

my $insert = '';
foreach my $id (sort { $a <=> $b } keys %rows)
{
	my ($tenant, $purpose, $kind, $plain, $aad) = @{ $rows{$id} };
	my $pt =
	  $kind eq 'text'
	  ? sql_lit($plain) . '::text'
	  : "'\\x$plain'::bytea";
	my $aadlit = defined $aad ? sql_lit($aad) . '::bytea' : 'NULL::bytea';
	$insert .=
	    "INSERT INTO secrets VALUES ($id, '$tenant', '$purpose', $aadlit, "
	  . "envault.env_encrypt('$tenant', '$purpose', $pt, $aadlit));\n";
}
utf8::encode($insert);
$node->safe_psql('postgres', $insert);

# One line per row, "id|plaintext", where a bytea plaintext is shown as hex
# (the rows with purpose 'files' hold bytea).
my $expected =
  join("\n", map { "$_|$rows{$_}[3]" } sort { $a <=> $b } keys %rows);

my $decrypt_sql = q{
SELECT id || '|' || CASE WHEN purpose = 'files'
	THEN encode(envault.env_decrypt(ct, aad), 'hex')
	ELSE envault.env_decrypt_text(ct, aad) END
  FROM secrets ORDER BY id;
};

# safe_psql talks UTF-8 bytes; compare characters.
sub decrypt_all
{
	my $out = $node->safe_psql('postgres', $decrypt_sql);
	utf8::decode($out);
	return $out;
}

# Sanity: the stored values really are ciphertexts, not the plaintexts.
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM secrets
		   WHERE position(convert_to('secret', 'UTF8') IN ct) > 0
		      OR octet_length(ct) < 16}),
	'0',
	'stored values do not contain the plaintext');

is(decrypt_all(), $expected, 'all values decrypt before restart');

my $key_count_sql = q{SELECT (SELECT count(*) FROM envault.tenants) || ','
	|| (SELECT count(*) FROM envault.data_keys)};
my $key_counts = $node->safe_psql('postgres', $key_count_sql);
is($key_counts, '2,6', 'two tenants with three data keys each');

my $ct_before =
  $node->safe_psql('postgres', q{SELECT string_agg(encode(ct, 'hex'), ',' ORDER BY id) FROM secrets});

# --- clean restart ------------------------------------------------------

$node->restart;

is(decrypt_all(), $expected, 'all values decrypt after a restart');
is(decrypt_all(), $expected,
	'all values decrypt again in another fresh session');

# In one session: decrypt row 1 twice (the second time from the cache), and
# encrypt a new value for an existing (tenant, purpose): the data key made
# before the restart is reused, so no key row is added.
is( $node->safe_psql(
		'postgres', q{
SELECT envault.env_decrypt_text(ct) FROM secrets WHERE id = 1;
SELECT envault.env_decrypt_text(ct) FROM secrets WHERE id = 1;
INSERT INTO secrets VALUES (10, 'acme', 'secrets', NULL,
	envault.env_encrypt('acme', 'secrets', 'written after restart'::text));
SELECT envault.env_decrypt_text(ct) FROM secrets WHERE id = 10;
}),
	"acme first secret\nacme first secret\nwritten after restart",
	'same session: decrypt twice, encrypt and decrypt a new value');
$rows{10} = [ 'acme', 'secrets', 'text', 'written after restart', undef ];
$expected .= "\n10|written after restart";

is($node->safe_psql('postgres', $key_count_sql),
	$key_counts, 'no tenant or data key was created after the restart');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(encode(ct, 'hex'), ',' ORDER BY id) FROM secrets WHERE id < 10}),
	$ct_before,
	'stored ciphertexts are unchanged');

# --- immediate stop: crash recovery ------------------------------------

my $log_offset = -s $node->logfile;
$node->stop('immediate');
$node->start;
like(
	slurp_file($node->logfile, $log_offset),
	qr/database system was interrupted; last known up at .*\n.*database system was not properly shut down; automatic recovery in progress/,
	'the server went through crash recovery');

is(decrypt_all(), $expected,
	'all values decrypt after an immediate stop and crash recovery');
is($node->safe_psql('postgres', $key_count_sql),
	$key_counts, 'key tables intact after crash recovery');

# Wrong associated data still fails after the restart: decryption checks
# something real.
my ($ret, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT envault.env_decrypt_text(ct, '\\x0103') FROM secrets WHERE id = 2;"
);
isnt($ret, 0, 'decrypting with the wrong aad fails');
like(
	$err,
	qr/^psql:<stdin>:\d+: ERROR:  22V01: envault ciphertext failed authentication$/m,
	'decrypting with the wrong aad gives the authentication error');

# --- the key is not shown and not logged --------------------------------

is($node->safe_psql('postgres', 'SHOW envault.master_key'),
	'********', 'SHOW envault.master_key hides the key');

# ALTER SYSTEM would write the key to postgresql.auto.conf (and the statement
# to the log): refused.  The value given here is not the key.
($ret, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nALTER SYSTEM SET envault.master_key = 'not-the-key'"
);
is($ret, 3, 'ALTER SYSTEM SET envault.master_key fails');
like(
	$err,
	qr/^psql:<stdin>:\d+: ERROR:  55P02: parameter "envault.master_key" cannot be changed$/m,
	'ALTER SYSTEM SET envault.master_key is refused');
unlike(
	slurp_file($node->data_dir . '/postgresql.auto.conf'),
	qr/envault/,
	'postgresql.auto.conf has no envault setting');

# A reload that changes a key setting: with envault preloaded the setting
# takes effect only at server start, and PostgreSQL logs that, without the
# new value.  (The new value here is another random key, not the key.)
my $other = random_key_hex();
my $offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "envault.master_key = '$other'");
$node->reload;
$node->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM pg_file_settings
	   WHERE name = 'envault.master_key' AND NOT applied})
  or die 'the reload was not processed';
my $reload_log = slurp_file($node->logfile, $offset);
like(
	$reload_log,
	qr/LOG:  parameter "envault.master_key" cannot be changed without restarting the server/,
	'a reload that changes envault.master_key: PostgreSQL says it needs a restart');
unlike($reload_log, qr/\Q$other\E/i, 'and does not log the new value');
is($node->safe_psql('postgres', q{SELECT envault.env_decrypt_text(ct) FROM secrets WHERE id = 1}),
	'acme first secret', 'new sessions keep the key read at server start');

$node->stop;

my $log = slurp_file($node->logfile);
like($log, qr/statement: CREATE EXTENSION envault/,
	'the server log was written to');
unlike($log, qr/\Q$key\E/i, 'the server log does not contain the master key');
unlike($log, qr/\Q$other\E/i, 'nor the value a reload tried to set');

done_testing();
