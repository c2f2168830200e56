# envault TAP test: key lifecycle changes reach sessions that hold cached keys.
#
# Two long-lived sessions: A, the administrator, and B, which decrypts the
# values of tenant "acme" and so holds their keys in its key cache (kept for
# envault.key_cache_ttl, 300 s by default, far longer than this test).  Every
# change A commits (retire, restore, revoke, restore, rotation of the tenant
# key, destruction of a data key, destruction of the tenant) must reach B:
#
# - preloaded (node "preloaded"): a generation counter in shared memory is
#   bumped after A's commit and checked at every key lookup, so B's very next
#   statement obeys the change, even inside a transaction B had already
#   opened; a change A rolls back has no effect;
# - not preloaded (node "lazy"): there is no shared memory, and the change
#   travels as a relcache invalidation of envault.tenants, which B processes
#   at the latest at the start of its next transaction.  A transaction B had
#   already opened may go on using its cached keys until it ends: that is the
#   designed fallback, and the reason to preload envault.
#
# A REPEATABLE READ transaction B opened before a revocation is refused
# after it too: the key store reads its tables as of now, not as of the
# transaction's snapshot (see below).
#
# A control shows that B really decrypts from its cache: a change made
# behind envault's back (a plain UPDATE of envault.data_keys, which tells no
# one) refuses a fresh session but not B.

use strict;
use warnings;

use PostgreSQL::Test::BackgroundPsql;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# A fresh random master key, as 64 lowercase hex characters.
sub random_key_hex
{
	open my $fh, '<:raw', '/dev/urandom' or die "open /dev/urandom: $!";
	my $n = read($fh, my $bytes, 32);
	close $fh;
	die "short read from /dev/urandom" unless defined $n && $n == 32;
	return unpack('H*', $bytes);
}

# --- sessions -----------------------------------------------------------------

# A long-lived session that goes on after an error, with SQLSTATEs shown.
sub open_session
{
	my ($node) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->query_safe('\set VERBOSITY verbose');
	return $s;
}

# Run $sql in session $s: (stdout, stderr).  BackgroundPsql keeps stderr
# across queries, so it is taken and cleared here.
sub run_in
{
	my ($s, $sql) = @_;
	my ($out) = $s->query($sql);
	my $err = $s->{stderr};
	$s->{stderr} = '';
	return ($out, $err);
}

# $sql succeeds in session $s, with output $expected and nothing on stderr.
sub session_is
{
	my ($s, $sql, $expected, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($out, $err) = run_in($s, $sql);
	is($err, '', "$name: no error");
	is($out, $expected, "$name: result");
	return;
}

# The complete error block psql prints (VERBOSITY verbose) for one error.
sub error_block
{
	my ($sqlstate, $message, $detail, $hint) = @_;
	my $block = "ERROR:  $sqlstate: $message\n";
	$block .= "DETAIL:  $detail\n" if defined $detail;
	$block .= "HINT:  $hint\n"     if defined $hint;
	return $block;
}

# $sql fails in session $s with exactly the error $block and prints nothing.
sub session_fails
{
	my ($s, $sql, $block, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($out, $err) = run_in($s, $sql);
	like(
		$err,
		qr/\Apsql:<stdin>:\d+: \Q$block\ELOCATION:  [^\n]+\n?\z/,
		"$name: the error");
	is($out, '', "$name: no result");
	return;
}

# The same for a new session (a cold key cache).
sub fresh_fails
{
	my ($node, $sql, $block, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	is($ret, 3, "$name: fails");
	like($err, qr/\Apsql:<stdin>:\d+: \Q$block\ELOCATION:  [^\n]+\n?\z/,
		"$name: the error");
	return;
}

# --- data -----------------------------------------------------------------------

# id => [tenant, purpose, data key version, plaintext]
my %rows = (
	1 => [ 'acme',   'docs',  1, 'acme docs v1, first' ],
	2 => [ 'acme',   'docs',  1, 'acme docs v1, second' ],
	3 => [ 'acme',   'docs',  2, 'acme docs v2' ],
	4 => [ 'acme',   'docs',  3, 'acme docs v3' ],
	5 => [ 'acme',   'notes', 1, 'acme notes v1' ],
	6 => [ 'globex', 'docs',  1, 'globex docs v1' ],);

# Create tenants acme and globex and the table secrets holding %rows, with
# acme/docs rotated twice, so that it has versions 1 and 2 rotated and 3
# active.
sub setup_data
{
	my ($node) = @_;
	my $sql = q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
SELECT envault.create_tenant('globex');
CREATE TABLE secrets (id int PRIMARY KEY, tenant text NOT NULL, ct bytea NOT NULL);
};
	my $version = 1;
	foreach my $id (sort { $a <=> $b } keys %rows)
	{
		my ($tenant, $purpose, $v, $plain) = @{ $rows{$id} };
		if ($tenant eq 'acme' && $purpose eq 'docs' && $v > $version)
		{
			$sql .= "SELECT envault.rotate_data_key('acme', 'docs');\n";
			$version = $v;
		}
		$sql .=
		  "INSERT INTO secrets VALUES ($id, '$tenant', "
		  . "envault.env_encrypt('$tenant', '$purpose', '$plain'::text));\n";
	}
	$node->safe_psql('postgres', $sql);
	is( $node->safe_psql(
			'postgres',
			q{SELECT string_agg(tenant || '/' || purpose || '/' || version || '/' || state, ','
			    ORDER BY tenant, purpose, version) FROM envault.data_keys}),
		'acme/docs/1/rotated,acme/docs/2/rotated,acme/docs/3/active,'
		  . 'acme/notes/1/active,globex/docs/1/active',
		$node->name . ': the data keys and their states');
	load_ciphertexts($node);
	return;
}

# Decrypt the rows with ids @ids, as "id:plaintext,...", and the expected
# output.
sub decrypt_sql
{
	my @ids = @_;
	return 'SELECT string_agg(id || \':\' || envault.env_decrypt_text(ct), \',\' ORDER BY id)'
	  . ' FROM secrets WHERE id IN (' . join(', ', @ids) . ')';
}

sub decrypted
{
	my @ids = @_;
	return join(',', map { "$_:$rows{$_}[3]" } sort { $a <=> $b } @ids);
}

# The ciphertexts of the current node, id => hex, for decrypt_literal_sql.
my %ct;

sub load_ciphertexts
{
	my ($node) = @_;
	%ct = map { split /\|/ }
	  split /\n/,
	  $node->safe_psql('postgres',
		q{SELECT id || '|' || encode(ct, 'hex') FROM secrets ORDER BY id});
	return;
}

# The same as decrypt_sql, with the ciphertexts given as literals.
#
# PostgreSQL absorbs invalidation messages not only at transaction start but
# also whenever a statement opens a relation it has not locked yet in this
# transaction: a table named in the query, or a catalog read on a catalog
# cache miss.  A statement that names no table and repeats one the
# transaction has already run does neither, so only envault's shared
# generation counter can reach it: the in-transaction checks below use such
# repeated statements.  The node without preloading runs the very same
# sequence and is not refused, which shows that the check is not met by a
# relcache invalidation.
sub decrypt_literal_sql
{
	my @ids = @_;
	return 'SELECT string_agg(id || \':\' || envault.env_decrypt_text(ct), \',\' ORDER BY id)'
	  . ' FROM (VALUES '
	  . join(', ', map { "($_, '\\x$ct{$_}'::bytea)" } @ids)
	  . ') v(id, ct)';
}

my @acme = (1, 2, 3, 4, 5);
my $acme_sql = decrypt_sql(@acme);
my $acme_out = decrypted(@acme);
my $globex_sql = decrypt_sql(6);
my $globex_out = decrypted(6);

# Encrypt a new value for acme in each of its purposes and decrypt it again
# (this uses, and caches, the active data keys).
my $encrypt_sql = q{
SELECT envault.env_decrypt_text(envault.env_encrypt('acme', 'docs', 'new docs'::text))
    || ',' || envault.env_decrypt_text(envault.env_encrypt('acme', 'notes', 'new notes'::text))};
my $encrypt_out = 'new docs,new notes';

my $retired_v1 = error_block(
	'55000',
	'data key of tenant "acme", purpose "docs", version 1 is retired',
	'A retired data key decrypts nothing.',
	'An administrator can restore it with envault.restore_data_key().');
my $destroyed_v1 = error_block(
	'55000',
	'data key of tenant "acme", purpose "docs", version 1 was destroyed',
	'Values encrypted under it can never be decrypted again.');
my $revoked = error_block(
	'55000',
	'envault tenant "acme" is revoked',
	'Its keys cannot be used until it is restored.',
	'An administrator can restore it with envault.restore_tenant().');
my $shredded = error_block(
	'55000',
	'the keys of envault tenant "acme" were destroyed',
	'The tenant was crypto-shredded: its data can never be decrypted again.');
my $in_aborted = error_block('25P02',
	'current transaction is aborted, commands ignored until end of transaction block'
);

# ==== preloaded ===================================================================

my $key = random_key_hex();
my $node = PostgreSQL::Test::Cluster->new('preloaded');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key = '$key'");
$node->start;
setup_data($node);

my $sa = open_session($node);
my $sb = open_session($node);

session_is($sb, 'SHOW envault.key_cache_ttl', '5min',
	'B: cached keys would be kept for 5 minutes');
session_is($sb, $acme_sql, $acme_out, 'B decrypts every value of acme');
session_is($sb, decrypt_literal_sql(@acme), $acme_out,
	'B decrypts every value of acme given as literals');
session_is($sb, $globex_sql, $globex_out, 'B decrypts the value of globex');
session_is($sb, $encrypt_sql, $encrypt_out, 'B encrypts for acme');

# --- control: B really uses its cache -----------------------------------------

# A plain UPDATE of the key table tells no backend: a fresh session sees the
# key retired, B goes on with the key it holds.
session_is(
	$sa, q{UPDATE envault.data_keys SET state = 'retired'
	       WHERE tenant = 'acme' AND purpose = 'docs' AND version = 1},
	'', 'A retires version 1 behind envault\'s back');
fresh_fails($node, decrypt_sql(1), $retired_v1,
	'control: a fresh session, version 1 retired in the table');
session_is($sb, $acme_sql, $acme_out,
	'control: B still decrypts version 1 from its cache');
session_is(
	$sa, q{UPDATE envault.data_keys SET state = 'rotated'
	       WHERE tenant = 'acme' AND purpose = 'docs' AND version = 1},
	'', 'A puts version 1 back');

# Each change below is first checked in a transaction B opened (and
# decrypted in, from its cache) before A made it, with literal ciphertexts,
# then in B's following statements.

# --- (a) retire and restore a data key version -----------------------------------

session_is($sb, "BEGIN;\n" . decrypt_literal_sql(@acme),
	$acme_out, '(a) B opens a transaction and decrypts');
session_is($sa, q{SELECT envault.retire_data_key('acme', 'docs', 1)},
	'', 'A retires acme/docs version 1');
session_fails($sb, decrypt_literal_sql(@acme), $retired_v1,
	'B, next statement, the same statement, refused for the retired version');
session_fails($sb, 'SELECT 1', $in_aborted, 'B was inside its transaction');
session_is($sb, 'ROLLBACK', '', 'B ends its transaction');
session_fails($sb, decrypt_sql(1), $retired_v1,
	'B, a value under the retired version');
session_fails($sb, decrypt_sql(2), $retired_v1,
	'B, the other value under the retired version');
session_is($sb, decrypt_sql(3, 4, 5), decrypted(3, 4, 5),
	'B decrypts the values under other versions and purposes');
session_is($sa, q{SELECT envault.restore_data_key('acme', 'docs', 1)},
	'', 'A restores acme/docs version 1');
session_is($sb, $acme_sql, $acme_out,
	'B decrypts every value of acme again after the restore');

# --- a rolled-back revocation does not bite -------------------------------------

session_is($sb, "BEGIN;\n" . decrypt_literal_sql(@acme),
	$acme_out, 'B opens a transaction and decrypts');
session_is($sa, q{BEGIN; SELECT envault.revoke_tenant('acme')},
	'', 'A revokes acme in an open transaction');
session_is($sb, decrypt_literal_sql(@acme), $acme_out,
	'B decrypts while the revocation is not committed');
session_is($sa, 'ROLLBACK', '', 'A rolls the revocation back');
session_is($sb, decrypt_literal_sql(@acme), $acme_out,
	'B decrypts after the revocation was rolled back');
session_is($sb, 'COMMIT', '', 'B commits');
session_is($sb, $acme_sql, $acme_out,
	'B decrypts in its next transaction');
session_is($sb, $encrypt_sql, $encrypt_out,
	'B encrypts after the revocation was rolled back');
session_is(
	$sa, q{SELECT state FROM envault.tenants WHERE tenant = 'acme'},
	'active', 'acme is still active');

# --- (b) revoke and restore the tenant ---------------------------------------------

# Between B's transactions.
session_is($sa, q{SELECT envault.revoke_tenant('acme')},
	'', 'A revokes acme');
session_fails($sb, decrypt_sql(4), $revoked,
	'B, next statement, decrypting after the revocation');
session_fails($sb, $acme_sql, $revoked,
	'B, decrypting every value of acme');
session_fails($sb, $encrypt_sql, $revoked, 'B, encrypting for acme');
session_is($sb, $globex_sql, $globex_out,
	'B still decrypts the value of another tenant');
fresh_fails($node, $acme_sql, $revoked, 'a fresh session, revoked');
session_is($sa, q{SELECT envault.restore_tenant('acme')},
	'', 'A restores acme');
session_is($sb, $acme_sql, $acme_out, 'B decrypts again after the restore');
session_is($sb, $encrypt_sql, $encrypt_out,
	'B encrypts again after the restore');

# Inside a transaction B opened (and decrypted in) before the revocation.
session_is($sb, "BEGIN;\n" . decrypt_literal_sql(@acme),
	$acme_out, '(b) B opens a transaction and decrypts');
session_is($sa, q{SELECT envault.revoke_tenant('acme')},
	'', 'A revokes acme while B\'s transaction is open');
session_fails($sb, decrypt_literal_sql(@acme), $revoked,
	'B, in the transaction it had open, decrypting after the revocation');
session_fails($sb, 'SELECT 1', $in_aborted,
	'B was inside that transaction');
session_is($sb, 'ROLLBACK', '', 'B ends its transaction');
session_fails($sb, $acme_sql, $revoked,
	'B, in a new transaction, still refused');
session_is($sa, q{SELECT envault.restore_tenant('acme')},
	'', 'A restores acme again');
session_is($sb, $acme_sql, $acme_out,
	'B decrypts again after the second restore');

# The same in a REPEATABLE READ transaction B opened before the revocation.
# B's cache is flushed, and the key tables are read again as of now, not
# under the transaction's snapshot (taken before the revocation, which still
# shows acme active); so B is refused in that transaction, and keeps no
# stale key for its later ones.  (Likewise after destroy_tenant or
# destroy_data_key.)
session_is($sb,
	"BEGIN ISOLATION LEVEL REPEATABLE READ;\n" . decrypt_literal_sql(@acme),
	$acme_out, 'B opens a REPEATABLE READ transaction and decrypts');
session_is($sa, q{SELECT envault.revoke_tenant('acme')},
	'', 'A revokes acme while B\'s REPEATABLE READ transaction is open');
session_fails($sb, decrypt_literal_sql(@acme), $revoked,
	'B, in its REPEATABLE READ transaction, decrypting after the revocation');
session_is($sb, 'ROLLBACK', '', 'B ends its REPEATABLE READ transaction');
session_fails($sb, decrypt_literal_sql(@acme), $revoked,
	'B, in its next transaction, refused');
session_fails($sb, $acme_sql, $revoked,
	'B, reading from the table in a later transaction, refused');
fresh_fails($node, $acme_sql, $revoked,
	'a fresh session, revoked (third time)');
session_is($sa, q{SELECT envault.restore_tenant('acme')},
	'', 'A restores acme a third time');
session_is($sb, $acme_sql, $acme_out,
	'B decrypts again after the third restore');

# --- (c) rotate the tenant key ---------------------------------------------------

session_is($sb, "BEGIN;\n" . decrypt_literal_sql(1),
	decrypted(1), '(c) B opens a transaction and decrypts version 1');
session_is($sb, decrypt_literal_sql(3, 4, 5),
	decrypted(3, 4, 5), '(c) and the other versions');
session_is($sa, q{SELECT envault.rotate_tenant_key('acme')},
	'2', 'A rotates the tenant key of acme to version 2');
session_is(
	$sa, q{SELECT t.key_version || ',' || string_agg(DISTINCT d.tenant_key_version::text, ',')
	        FROM envault.tenants t JOIN envault.data_keys d USING (tenant)
	       WHERE tenant = 'acme' GROUP BY t.key_version},
	'2,2',
	'every data key of acme is wrapped under tenant key version 2');

# Again behind envault's back, mark version 1 retired in the table: if B
# reloads its keys (as it must after the rotation) it sees that, if it kept
# its cached keys it would not.
session_is(
	$sa, q{UPDATE envault.data_keys SET state = 'retired'
	       WHERE tenant = 'acme' AND purpose = 'docs' AND version = 1},
	'', 'A marks version 1 retired behind envault\'s back');
session_is($sb, decrypt_literal_sql(3, 4, 5), decrypted(3, 4, 5),
	'B, next statement, decrypts after the tenant key rotation');
session_fails($sb, decrypt_literal_sql(1), $retired_v1,
	'B reloaded version 1 from the table after the rotation');
session_is($sb, 'ROLLBACK', '', 'B ends its transaction');
session_is(
	$sa, q{UPDATE envault.data_keys SET state = 'rotated'
	       WHERE tenant = 'acme' AND purpose = 'docs' AND version = 1},
	'', 'A removes the mark');
session_is($sb, $acme_sql, $acme_out,
	'B decrypts every value of acme under the new tenant key');
session_is($sb, $encrypt_sql, $encrypt_out,
	'B encrypts for acme under the new tenant key');
is($node->safe_psql('postgres', $acme_sql),
	$acme_out, 'a fresh session decrypts every value of acme');

# --- (d) destroy a data key version ----------------------------------------------

session_is($sb, "BEGIN;\n" . decrypt_literal_sql(@acme),
	$acme_out, '(d) B opens a transaction and decrypts');
session_is($sa, q{SELECT envault.destroy_data_key('acme', 'docs', 1)},
	'', 'A destroys acme/docs version 1');
session_fails($sb, decrypt_literal_sql(@acme), $destroyed_v1,
	'B, next statement, the same statement, refused for the destroyed version');
session_is($sb, 'ROLLBACK', '', 'B ends its transaction');
session_fails($sb, decrypt_sql(1), $destroyed_v1,
	'B, a value under the destroyed version');
session_fails($sb, decrypt_sql(2), $destroyed_v1,
	'B, the other value under the destroyed version');
session_is($sb, decrypt_sql(3, 4, 5), decrypted(3, 4, 5),
	'B decrypts the values under the other versions');

# --- (e) destroy the tenant ------------------------------------------------------

session_is($sb, "BEGIN;\n" . decrypt_literal_sql(3, 4, 5),
	decrypted(3, 4, 5), '(e) B opens a transaction and decrypts');
session_is($sa, q{SELECT envault.destroy_tenant('acme')},
	'', 'A destroys tenant acme');
session_fails($sb, decrypt_literal_sql(3, 4, 5), $shredded,
	'B, next statement, the same statement, after the tenant was destroyed');
session_is($sb, 'ROLLBACK', '', 'B ends its transaction');
session_fails($sb, decrypt_sql(4), $shredded,
	'B, a value of the destroyed tenant');
session_fails($sb, decrypt_sql(3, 5), $shredded,
	'B, the other values of the destroyed tenant');
session_fails($sb, $encrypt_sql, $shredded,
	'B, encrypting for the destroyed tenant');
session_is($sb, $globex_sql, $globex_out,
	'B still decrypts the value of globex');
session_is(
	$sa, q{SELECT count(*) FILTER (WHERE wrapped_key IS NULL) || '/' || count(*)
	        FROM envault.data_keys WHERE tenant = 'acme'},
	'4/4', 'every data key of acme is wiped');

$sa->quit;
$sb->quit;
$node->stop;

my $log = slurp_file($node->logfile);
like($log, qr/statement: SELECT envault.destroy_tenant/,
	'preloaded: the server log was written to');
unlike($log, qr/\Q$key\E/i,
	'preloaded: the server log does not contain the master key');

# ==== not preloaded ================================================================

my $key2 = random_key_hex();
my $lazy = PostgreSQL::Test::Cluster->new('lazy');
$lazy->init;
$lazy->append_conf('postgresql.conf', "envault.master_key = '$key2'");
$lazy->start;
is($lazy->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'lazy: envault is not preloaded');
setup_data($lazy);

$sa = open_session($lazy);
$sb = open_session($lazy);

session_is($sb, $acme_sql, $acme_out, 'lazy: B decrypts every value of acme');
session_is($sb, $encrypt_sql, $encrypt_out, 'lazy: B encrypts for acme');

# Between statements (each its own transaction), B obeys at once.
session_is($sa, q{SELECT envault.revoke_tenant('acme')},
	'', 'lazy: A revokes acme');
session_fails($sb, $acme_sql, $revoked,
	'lazy: B, next statement (a new transaction), decrypting');
session_fails($sb, $encrypt_sql, $revoked, 'lazy: B, encrypting');
session_is($sb, $globex_sql, $globex_out,
	'lazy: B decrypts the value of another tenant');
session_is($sa, q{SELECT envault.restore_tenant('acme')},
	'', 'lazy: A restores acme');
session_is($sb, $acme_sql, $acme_out, 'lazy: B decrypts after the restore');

# In a transaction B had already opened, its cached keys may go on working
# until the transaction ends: the designed fallback without preloading.
# Nothing tells B before it next absorbs invalidation messages, which it does
# at the start of each transaction, and within one whenever a statement opens
# a relation it has not locked yet (see decrypt_literal_sql; a statement
# reading the ciphertexts from a table by name would already be refused).  A
# repeated statement that names no table shows the window; the preloaded
# node refuses the very same statement.
session_is($sb, "BEGIN;\n" . decrypt_literal_sql(@acme),
	$acme_out, 'lazy: B opens a transaction and decrypts');
session_is($sa, q{SELECT envault.revoke_tenant('acme')},
	'', 'lazy: A revokes acme while B\'s transaction is open');
session_is($sb, decrypt_literal_sql(@acme), $acme_out,
	'lazy: B, in the transaction it had open, still decrypts from its cache');
session_is($sb, 'COMMIT', '', 'lazy: B ends its transaction');
session_fails($sb, decrypt_literal_sql(@acme), $revoked,
	'lazy: B, in its next transaction, refused');
session_fails($sb, $acme_sql, $revoked,
	'lazy: B, decrypting from the table in its next transaction, refused');
session_fails($sb, $encrypt_sql, $revoked,
	'lazy: B, encrypting in the next transaction, refused');
session_is($sa, q{SELECT envault.restore_tenant('acme')},
	'', 'lazy: A restores acme');
session_is($sb, $acme_sql, $acme_out,
	'lazy: B decrypts after the second restore');

# A retired version likewise, at B's next transaction.
session_is($sb, "BEGIN;\n" . decrypt_literal_sql(@acme),
	$acme_out, 'lazy: B opens another transaction and decrypts');
session_is($sa, q{SELECT envault.retire_data_key('acme', 'docs', 1)},
	'', 'lazy: A retires acme/docs version 1');
session_is($sb, decrypt_literal_sql(@acme), $acme_out,
	'lazy: B, in its open transaction, still decrypts the retired version');
session_is($sb, 'COMMIT', '', 'lazy: B ends that transaction');
session_fails($sb, decrypt_literal_sql(1), $retired_v1,
	'lazy: B, next transaction, a value under the retired version');
session_is($sb, decrypt_sql(3, 4, 5), decrypted(3, 4, 5),
	'lazy: B decrypts the values under other versions');

$sa->quit;
$sb->quit;
$lazy->stop;

$log = slurp_file($lazy->logfile);
like($log, qr/statement: SELECT envault.retire_data_key/,
	'lazy: the server log was written to');
unlike($log, qr/\Q$key2\E/i,
	'lazy: the server log does not contain the master key');

done_testing();
