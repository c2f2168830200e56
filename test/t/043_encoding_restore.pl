# envault TAP test: a dump restored into a database of another encoding.
#
# A tenant's name is bound into its keys and values (the associated data of
# each wrap and ciphertext) as bytes of the database encoding it was created
# in, which envault.tenants.name_encoding records.  A dump of a UTF8
# database restored into a LATIN1 one: a tenant with an ASCII name works as
# before; one whose name is not ASCII ("café", 5 bytes in UTF8, 4 in
# LATIN1) cannot open its keys, and the error says why and what to do
# (55000, the encodings, restore into a UTF8 database), instead of calling
# the row altered (XX001).  Restored into another UTF8 database, both work.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# this file and every client speak UTF8, whatever the server's encoding
$ENV{PGCLIENTENCODING} = 'UTF8';

my $node = PostgreSQL::Test::Cluster->new('encoding');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
my $keyfile = $node->basedir . '/master.key';
write_private_file($keyfile, random_key_hex() . "\n");
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\nenvault.master_key_file = '$keyfile'\n");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql(
	'src', q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
SELECT envault.create_tenant('café');
CREATE TABLE t (id int PRIMARY KEY, tenant text, ct bytea);
INSERT INTO t VALUES (1, 'acme', envault.env_encrypt('acme', 'docs', 'ascii tenant'));
INSERT INTO t VALUES (2, 'café', envault.env_encrypt('café', 'docs', 'accented tenant'));
});
is( $node->safe_psql(
		'src', q{SELECT string_agg(tenant || ':' || name_encoding, ',' ORDER BY tenant)
		           FROM envault.tenants}),
	'acme:UTF8,café:UTF8', 'name_encoding records the encoding each tenant was created in');

my $dump = $node->basedir . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'src', '-f', $dump ], 'pg_dump');

sub restore_into
{
	my ($db, $encoding) = @_;
	$node->safe_psql('postgres',
		"CREATE DATABASE $db ENCODING '$encoding' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
	$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $db, $dump ],
		"pg_restore into a $encoding database");
}

restore_into('same', 'UTF8');
is($node->safe_psql('same', q{SELECT string_agg(envault.env_decrypt_text(ct), ',' ORDER BY id) FROM t}),
	'ascii tenant,accented tenant', 'restored into UTF8: every value decrypts');

restore_into('latin', 'LATIN1');
is($node->safe_psql('latin', q{SELECT envault.env_decrypt_text(ct) FROM t WHERE id = 1}),
	'ascii tenant', 'restored into LATIN1: the ASCII tenant\'s value decrypts');
my ($ret, $out, $err) = $node->psql('latin',
	"\\set VERBOSITY verbose\nSELECT envault.env_decrypt_text(ct) FROM t WHERE id = 2");
isnt($ret, 0, 'restored into LATIN1: the accented tenant\'s value does not');
like(
	$err,
	qr/ERROR:  55000: envault tenant "café" was created in a database of encoding UTF8, not LATIN1\nDETAIL:  A tenant's name is bound into its keys and values as bytes of the encoding it was created in, and this name is not ASCII.\nHINT:  Restore the dump into a database of encoding UTF8./,
	'and the error says why, and what to do');
unlike($err, qr/altered|XX001/, 'it does not suggest tampering');

$node->stop;
done_testing();
