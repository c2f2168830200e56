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
# Revoking a token (revoke_token, revoke_tenant_tokens, revoke_tenant)
# likewise ends the tenant contexts it set in other sessions, at their next
# use, even a context set for the whole session (section f), and never
# waits for a transaction of the token's holder, even one that used the
# token and created a data key (section g).
#
# A REPEATABLE READ transaction B opened before a revocation is refused
# after it too: the key store reads its tables as of now, not as of the
# transaction's snapshot (see below).
#
# A control shows that B really decrypts from its cache: a change made
# behind envault's back (an UPDATE of envault.data_keys with triggers off,
# session_replication_role = replica, which tells no one) refuses a fresh
# session but not B.  A plain UPDATE of the key tables, by anyone, reaches
# B at its next statement (the statement trigger key_tables_changed).

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex write_private_file verbose_session);

use Fcntl qw(O_WRONLY O_CREAT O_TRUNC);
use PostgreSQL::Test::BackgroundPsql;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# --- sessions -----------------------------------------------------------------

# Set the state of acme/docs version 1 in its table with triggers off
# (session_replication_role = replica): a change that tells no one.
sub behind_back
{
	my ($s, $state, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	session_is(
		$s, qq{SET session_replication_role = replica;
	       UPDATE envault.data_keys SET state = '$state'
	       WHERE tenant = 'acme' AND purpose = 'docs' AND version = 1;
	       RESET session_replication_role},
		'', $name);
	return;
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
	'An administrator can unretire it with envault.unretire_data_key().');
my $destroyed_v1 = error_block(
	'55000',
	'data key of tenant "acme", purpose "docs", version 1 was destroyed',
	'Values encrypted under it can never be decrypted again.');
my $revoked = error_block(
	'55000',
	'envault tenant "acme" is revoked',
	'Its keys cannot be used until it is unrevoked.',
	'An administrator can unrevoke it with envault.unrevoke_tenant().');
my $shredded = error_block(
	'55000',
	'the keys of envault tenant "acme" were destroyed',
	'The tenant was crypto-shredded: its data can never be decrypted again.');
my $no_tenant = error_block(
	'42501',
	'no envault tenant is set',
	'Roles that are not members of envault_admin can use only the keys of the current tenant.',
	q{Call envault.authenticate() with the request's token first.});

# The error of a tenant context whose token ended; $why as in the detail.
sub context_ended
{
	my ($token_id, $why) = @_;
	return error_block(
		'28000',
		'envault token of the current tenant context is no longer valid',
		qq{Token $token_id $why; the context of tenant "acme" that it set has been cleared.},
		'Call envault.authenticate() with a valid token.');
}

# An application role (not an envault admin), and a token of acme for it.
sub app_setup
{
	my ($node) = @_;
	$node->safe_psql('postgres',
		'CREATE ROLE regress_app LOGIN; GRANT envault_user TO regress_app; '
		  . 'GRANT SELECT ON secrets TO regress_app');
	return;
}

sub new_token
{
	my ($node, $label) = @_;
	my $tok = $node->safe_psql('postgres',
		qq{SELECT envault.issue_token('acme', '$label')});
	return ($tok, substr($tok, 4, 16));
}

# Session C, the application role, authenticates for its session and
# decrypts; A (session $sa) revokes the token; C's next statement (on $node
# "$name: ") is refused and C has no tenant any more.  Returns C.
sub revocation_ends_session_context
{
	my ($node, $sa, $name) = @_;
	app_setup($node);
	my $sc = verbose_session($node);
	my ($tok, $tok_id) = new_token($node, "$name app session");
	session_is($sc,
		"SET ROLE regress_app;\nSELECT envault.authenticate('$tok', true)",
		'acme', "${name}C, the application role, authenticates for its session");
	session_is($sc, decrypt_literal_sql(3, 4, 5), decrypted(3, 4, 5),
		"${name}C decrypts the values of acme");
	session_is($sa, "SELECT envault.revoke_token('$tok_id')",
		't', "${name}A revokes the token of C's context");
	session_fails($sc, decrypt_literal_sql(3, 4, 5),
		context_ended($tok_id, 'was revoked'),
		"${name}C, next statement: its context ended with the token");
	session_is($sc, 'SELECT envault.current_tenant() IS NULL',
		't', "${name}C has no tenant any more");
	return $sc;
}

my $in_aborted = error_block('25P02',
	'current transaction is aborted, commands ignored until end of transaction block'
);

# ==== preloaded ===================================================================

my $key = random_key_hex();
my $node = PostgreSQL::Test::Cluster->new('preloaded');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key = '$key'\n"
	  . "envault.pepper = '" . random_key_hex() . "'");
$node->start;
setup_data($node);

my $sa = verbose_session($node);
my $sb = verbose_session($node);

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
behind_back($sa, 'retired', 'A retires version 1 behind envault\'s back');
fresh_fails($node, decrypt_sql(1), $retired_v1,
	'control: a fresh session, version 1 retired in the table');
session_is($sb, $acme_sql, $acme_out,
	'control: B still decrypts version 1 from its cache');
behind_back($sa, 'rotated', 'A puts version 1 back');

# A plain UPDATE of a key table is seen by B at its next statement.
session_is(
	$sa, q{UPDATE envault.data_keys SET state = 'retired'
	       WHERE tenant = 'acme' AND purpose = 'docs' AND version = 1},
	'', 'A retires version 1 with a plain UPDATE');
session_fails($sb, $acme_sql, $retired_v1,
	'B, next statement: the plain UPDATE reached it (key_tables_changed)');
session_is(
	$sa, q{UPDATE envault.data_keys SET state = 'rotated'
	       WHERE tenant = 'acme' AND purpose = 'docs' AND version = 1},
	'', 'A puts version 1 back with a plain UPDATE');
session_is($sb, $acme_sql, $acme_out, 'B, next statement, decrypts version 1 again');

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
behind_back($sa, 'retired', 'A marks version 1 retired behind envault\'s back');
session_is($sb, decrypt_literal_sql(3, 4, 5), decrypted(3, 4, 5),
	'B, next statement, decrypts after the tenant key rotation');
session_fails($sb, decrypt_literal_sql(1), $retired_v1,
	'B reloaded version 1 from the table after the rotation');
session_is($sb, 'ROLLBACK', '', 'B ends its transaction');
behind_back($sa, 'rotated', 'A removes the mark');
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

# --- rotate_data_key reaches a session that holds the active key at once ----------

# B encrypts for acme/notes (and so holds its active key, version 1), in a
# transaction; A rotates acme/notes; B's next statement in that same
# transaction encrypts under version 2.  (The statement names no table, as
# in decrypt_literal_sql: only the shared counter can tell B.)
my $notes_key_sql =
  q{SELECT encode(substr(envault.env_encrypt('acme', 'notes', 'x'::text), 5, 8), 'hex')};
sub notes_key_id
{
	my ($version) = @_;
	return $node->safe_psql('postgres',
		qq{SELECT lpad(to_hex(key_id), 16, '0') FROM envault.data_keys
		    WHERE tenant = 'acme' AND purpose = 'notes' AND version = $version});
}
session_is($sb, "BEGIN;\n$notes_key_sql", notes_key_id(1),
	'B opens a transaction and encrypts for acme/notes under version 1');
session_is($sb, $notes_key_sql, notes_key_id(1), 'and again, from its cache');
session_is($sa, q{SELECT envault.rotate_data_key('acme', 'notes')},
	'2', 'A rotates acme/notes');
session_is($sb, $notes_key_sql, notes_key_id(2),
	'B, next statement of its open transaction, encrypts under version 2');
session_is($sb, 'COMMIT', '', 'B commits');
session_is($sb, decrypt_sql(5), decrypted(5),
	'B still decrypts the value under version 1');

# --- rotate_data_key racing the creation of the first data key ---------------------

# A creates the first data key of (race, p) in an open transaction; B rotates
# (race, p) meanwhile, and waits for A; when A commits, B retires A's version
# and makes the next one, instead of failing.
$node->safe_psql('postgres', q{SELECT envault.create_tenant('race')});
session_is($sa,
	"BEGIN;\nSELECT envault.env_encrypt('race', 'p', 'first'::text) IS NOT NULL",
	't', 'A creates the first data key of (race, p) in an open transaction');
$sb->query_until(qr/rotating/,
	"\\echo rotating\nSELECT envault.rotate_data_key('race', 'p');\n");
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity
	   WHERE wait_event_type = 'Lock' AND query LIKE '%rotate_data_key(''race''%'})
  or die 'B is not waiting for A';
session_is($sa, 'COMMIT', '', 'A commits');
my ($race_out, $race_err) = run_in($sb, q{SELECT 'after'});
is($race_err, '', 'B\'s rotation did not fail');
is($race_out, "2\nafter", 'B\'s rotation made version 2');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(version || ':' || state, ',' ORDER BY version)
		    FROM envault.data_keys WHERE tenant = 'race'}),
	'1:rotated,2:active',
	'A\'s version 1 is rotated, B\'s version 2 active');

# The same with B in a REPEATABLE READ transaction: envault reads and
# writes its key tables as of now, not as of B's snapshot, so B's rotation
# goes the same way once A commits.
$node->safe_psql('postgres', q{SELECT envault.create_tenant('race-rr')});
session_is($sb, "BEGIN ISOLATION LEVEL REPEATABLE READ;\nSELECT 1", '1',
	'B opens a REPEATABLE READ transaction');
session_is($sa,
	"BEGIN;\nSELECT envault.env_encrypt('race-rr', 'p', 'first'::text) IS NOT NULL",
	't', 'A creates the first data key of (race-rr, p) in an open transaction');
$sb->query_until(qr/rotating/,
	"\\echo rotating\nSELECT envault.rotate_data_key('race-rr', 'p');\n");
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity
	   WHERE wait_event_type = 'Lock' AND query LIKE '%rotate_data_key(''race-rr''%'})
  or die 'B is not waiting for A';
session_is($sa, 'COMMIT', '', 'A commits');
($race_out, $race_err) = run_in($sb, 'COMMIT');
is($race_err, '', 'B, REPEATABLE READ: its rotation did not fail');
is($race_out, '2', 'B, REPEATABLE READ: its rotation made version 2');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(version || ':' || state, ',' ORDER BY version)
		    FROM envault.data_keys WHERE tenant = 'race-rr'}),
	'1:rotated,2:active',
	'B, REPEATABLE READ: A\'s version 1 is rotated, B\'s version 2 active');
is( $node->safe_psql(
		'postgres',
		q{SELECT ok FROM envault.verify_chain('envault.key_events', 'race-rr')}),
	't', 'B, REPEATABLE READ: the chain of key events of race-rr verifies');

# --- (f) revoking a token ends the tenant contexts it set ----------------------------

# Session C is the application: it authenticates with a token for the
# session and decrypts; A revokes the token; C's next statement is refused,
# with its context gone.  Then the same inside a transaction C had opened,
# with revoke_tenant_tokens.
my $sc = revocation_ends_session_context($node, $sa, '(f) ');
session_fails($sc, decrypt_literal_sql(3, 4, 5), $no_tenant,
	'C, decrypting without a tenant');

my ($tok2, $tok2_id) = new_token($node, 'app transaction');
session_is($sc, "BEGIN;\nSELECT envault.authenticate('$tok2')",
	'acme', 'C opens a transaction and authenticates');
session_is($sc, decrypt_literal_sql(3, 4, 5), decrypted(3, 4, 5),
	'C decrypts in that transaction');
session_is($sa, "SELECT envault.revoke_tenant_tokens('acme')",
	'1', 'A revokes every token of acme');
session_fails($sc, decrypt_literal_sql(3, 4, 5),
	context_ended($tok2_id, 'was revoked'),
	'C, in the transaction it had open: its context ended');
session_is($sc, 'ROLLBACK', '', 'C ends its transaction');
session_is($sc, 'SELECT envault.current_tenant() IS NULL',
	't', 'C has no tenant after the rollback either');

# revoke_tenant ends the contexts of the tenant's tokens too, for good
my ($tok3, $tok3_id) = new_token($node, 'app, tenant revoked');
session_is($sc, "SELECT envault.authenticate('$tok3', true)",
	'acme', 'C authenticates for its session again');
session_is($sa, q{SELECT envault.revoke_tenant('acme')}, '', 'A revokes acme');
session_fails($sc, 'SELECT envault.current_tenant()',
	context_ended($tok3_id, 'belongs to a revoked tenant'),
	'C, next statement: its context ended with the tenant');
session_is($sa, q{SELECT envault.restore_tenant('acme')}, '', 'A restores acme');
session_is($sc, 'SELECT envault.current_tenant() IS NULL',
	't', 'C stays without a tenant after the restore');
$sc->quit;

# --- (g) a token holder's open transaction never makes a revocation wait ---------

# Session D is the application: it authenticates with a new token (whose
# first use updates the token's row, locking it until D's transaction
# ends), encrypts under a purpose that has no data key yet (which creates one,
# and records it in acme's chain of key events), and keeps its transaction
# open.  Each revocation by A completes while D's transaction is open (A
# would otherwise hit its statement_timeout), and D's next statement is
# refused.
session_is($sa, q{SET statement_timeout = '20s'}, '',
	'(g) A waits at most 20 s for any statement');
my $sd = verbose_session($node);
session_is($sd, 'SET ROLE regress_app', '', '(g) D is the application role');
# (tokens of earlier sections still valid are revoked first, so that each
# case below revokes exactly D's token)
$node->safe_psql('postgres', q{SELECT envault.revoke_tenant_tokens('acme')});
my $g = 0;
foreach my $case (
	[ 'revoke_token', 't', 'was revoked' ],
	[ 'revoke_tenant_tokens', '1', 'was revoked' ],
	[ 'revoke_tenant', '', 'belongs to a revoked tenant' ])
{
	my ($fn, $result, $why) = @$case;
	$g++;
	my ($tok, $tok_id) = new_token($node, "holder $g");
	session_is($sd,
		"BEGIN;\nSELECT envault.authenticate('$tok');\n"
		  . "SELECT envault.env_encrypt('acme', 'holder-$g', 'x') IS NOT NULL",
		"acme\nt",
		"(g) $fn: D authenticates, creates a data key, and keeps its transaction open");
	my $arg = $fn eq 'revoke_token' ? $tok_id : 'acme';
	session_is($sa, "SELECT envault.$fn('$arg')", $result,
		"(g) $fn: A's revocation completes while D's transaction is open");
	session_fails($sd, decrypt_literal_sql(3, 4, 5), context_ended($tok_id, $why),
		"(g) $fn: D's next statement, in that transaction, is refused");
	session_is($sd, 'ROLLBACK', '', "(g) $fn: D ends its transaction");
}
is( $node->safe_psql(
		'postgres', q{
SELECT (tenant IS NULL) || ' ' || detail FROM envault.key_events
 WHERE operation = 'tenant revoked' ORDER BY event_id DESC LIMIT 1}),
	"true tenant 'acme'",
	"(g) the revocation is in the chain of no tenant, which D's transaction could not lock");
session_is($sa, q{SELECT envault.restore_tenant('acme')}, '', '(g) A restores acme');
# A cursor D opened before the revocation: the next FETCH that decrypts is
# refused (decrypting costs enough that the planner decrypts above the
# sort, as each row is fetched, not all rows before the first).
{
	my ($tok, $tok_id) = new_token($node, 'holder, cursor');
	my $values = join(', ', map { "($_, '\\x$ct{$_}'::bytea)" } (3, 4, 5));
	session_is($sd,
		"BEGIN;\nSELECT envault.authenticate('$tok');\n"
		  . "DECLARE c CURSOR FOR SELECT id, envault.env_decrypt_text(ct) FROM (VALUES $values) v(id, ct) ORDER BY id;\n"
		  . 'FETCH 1 FROM c',
		"acme\n" . "3|$rows{3}[3]",
		'(g) cursor: D authenticates, opens a cursor that sorts, and fetches a row');
	session_is($sa, "SELECT envault.revoke_token('$tok_id')", 't',
		'(g) cursor: A revokes the token');
	session_fails($sd, 'FETCH 1 FROM c', context_ended($tok_id, 'was revoked'),
		'(g) cursor: D\'s next FETCH is refused');
	session_is($sd, 'ROLLBACK', '', '(g) cursor: D ends its transaction');
}
session_is($sa, 'RESET statement_timeout', '', '(g) A resets its timeout');
$sd->quit;

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
	'5/5', 'every data key of acme is wiped');

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
# Without preloading only the file settings are accepted for secrets.
write_private_file($lazy->basedir . '/master.key', "$key2\n");
write_private_file($lazy->basedir . '/pepper.key', random_key_hex() . "\n");
$lazy->append_conf('postgresql.conf',
	"envault.master_key_file = '" . $lazy->basedir . "/master.key'\n"
	  . "envault.pepper_file = '" . $lazy->basedir . "/pepper.key'");
$lazy->start;
is($lazy->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'lazy: envault is not preloaded');
setup_data($lazy);

$sa = verbose_session($lazy);
$sb = verbose_session($lazy);

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

# A token revocation likewise ends a session context at its next
# transaction.
# (Each statement is a transaction of its own here.)
revocation_ends_session_context($lazy, $sa, 'lazy: ')->quit;

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
