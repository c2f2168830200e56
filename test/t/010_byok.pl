# envault TAP test: customer-managed keys (BYOK).
#
# envault is preloaded, with the master key in a 0600 file.
# envault.customer_key_command runs a shell script written by the test that
# plays the customers' KMS: the key of a tenant is SHA-256 of a secret (kept
# in a file) and the tenant name; when a file "withheld-<tenant>" exists,
# the KMS refuses, with exit code 3 and a message on stderr.  The script
# records each run and its arguments, so the test knows when, and with what,
# envault asked for a key.
#
# - use_customer_key re-keys the tenant: a fresh tenant key (version 2)
#   wrapped by the customer key (key_source 'customer', master_kcv NULL,
#   customer_kcv the check value computed here with Digest::SHA), every data
#   key rewrapped under it and a fresh active data key for every purpose;
#   everything still decrypts, the re-keying is in key_events.  A copy of
#   the key tables from before onboarding (a backup) opens, with the master
#   key, nothing encrypted afterwards; once reencrypt_column has moved the
#   old values to the new keys and destroy_superseded_keys has destroyed the
#   old ones, it opens no value in the database either (checked outside the
#   server with test/t/envault_keys.py).  A tenant name full of shell syntax reaches the script as
#   one argument, unchanged, and nothing in it runs; %% in the command is %.
# - Withholding, with envault.customer_key_ttl = 0 (the default): each
#   statement that uses the tenant asks the KMS once, so a withheld key
#   stops a session that had just used the keys at its next statement, even
#   inside an open transaction, and a new session at once.  Master-key
#   tenants never notice.  Handing the key back makes it work.
# - With a positive customer_key_ttl (2 s), a session holding the keys keeps
#   them that long after the key is withheld, then fails too: the explicit
#   trade-off of fewer KMS calls against a delay.
# - With a long customer_key_ttl, revoke_tenant still bites at once in a
#   session holding the keys, and restore_tenant makes it fetch them again;
#   lowering the TTL back to 0 reaches that session at its next statement.
# - A wrong customer key is told from the right one by its check value.
# - rotate_tenant_key keeps a tenant under its customer key; use_master_key
#   moves it back (rewrapping its tenant key: offboarding needs no
#   re-keying), after which the customer key no longer matters.
# - Errors: "already uses", a command that is not configured.
# - SHOW hides the command; the server log has no key and no KMS secret.

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex write_private_file kcv_hex verbose_session);

use Digest::SHA qw(sha256_hex);
use Fcntl qw(O_WRONLY O_CREAT O_TRUNC);
use File::Basename qw(dirname);
use PostgreSQL::Test::BackgroundPsql;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

sub master_kcv   { return kcv_hex($_[0], 'envault/v1/key-check-value'); }
sub customer_kcv { return kcv_hex($_[0], 'envault/v1/customer-key-check-value'); }

# The fingerprint envault shows in messages: the first 8 bytes of a kcv.
sub fingerprint { return substr($_[0], 0, 16); }

# A SQL string literal.
sub lit
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

my $node = PostgreSQL::Test::Cluster->new('byok');
my $dir = $node->basedir;
my $master_key = random_key_hex();
my $master_file = "$dir/master.key";
my $script = "$dir/kms-customer-key.sh";
my $secret_file = "$dir/kms-secret";
my $calls_file = "$dir/kms-calls";

write_private_file($master_file, "$master_key\n");

# The KMS secret; the customer key of a tenant derives from it.
my $secret = random_key_hex();
write_private_file($secret_file, $secret);

# The customer key of a tenant, as the script computes it.
sub cmk
{
	my ($tenant, $s) = @_;
	return sha256_hex(($s // $secret) . "/$tenant");
}

# The script: records its run and arguments, then refuses (withheld) or
# prints the key of the tenant given as its second argument.
my $body = <<'EOS';
#!/bin/sh
# plays the customers' KMS for envault.customer_key_command
d=@DIR@
{
	echo call
	echo "argc=$#"
	for a in "$@"; do printf 'arg=[%s]\n' "$a"; done
} >> "$d/kms-calls"
t=$2
if [ -e "$d/withheld-$t" ]; then
	printf 'kms: the owner of tenant %s withholds its key\n' "$t" >&2
	exit 3
fi
printf '%s/%s' "$(cat "$d/kms-secret")" "$t" | sha256sum | cut -c1-64
EOS
my $qdir = $dir;
$qdir =~ s/'/'\\''/g;
$body =~ s/\@DIR\@/'$qdir'/;
write_private_file($script, $body, 0700);

# The runs of the script since the last call: a list of argument lists.
sub take_calls
{
	return () unless -e $calls_file;
	my $log = slurp_file($calls_file);
	unlink($calls_file) or die "unlink: $!";
	my @calls;
	foreach my $block (split /^call\n/m, $log)
	{
		next if $block eq '';
		my ($argc) = $block =~ /^argc=(\d+)$/m;
		my @args = $block =~ /^arg=\[(.*)\]$/mg;
		die "garbled call record: $block"
		  unless defined $argc && $argc == @args;
		push @calls, \@args;
	}
	return @calls;
}

# The tenants the script was asked for since the last call, in order, as
# one string ("ent,ent"); every run must have had exactly the arguments
# "100%" and the tenant.
sub take_asked
{
	my @t;
	foreach my $c (take_calls())
	{
		push @t,
		  (@$c == 2 && $c->[0] eq '100%')
		  ? $c->[1]
		  : 'UNEXPECTED ARGUMENTS [' . join('|', @$c) . ']';
	}
	return join(',', @t);
}

sub withhold { write_private_file("$dir/withheld-$_[0]", "withheld\n"); }
sub hand_back { unlink("$dir/withheld-$_[0]") or die "unlink: $!"; }

# --- sessions and errors ----------------------------------------------------

sub run_in
{
	my ($s, $sql) = @_;
	my ($out) = $s->query($sql);
	my $err = $s->{stderr};
	$s->{stderr} = '';
	return ($out, $err);
}

sub session_is
{
	my ($s, $sql, $expected, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($out, $err) = run_in($s, $sql);
	is($err, '', "$name: no error");
	is($out, $expected, "$name: result");
	return;
}

sub error_block
{
	my ($sqlstate, $message, $detail, $hint) = @_;
	my $block = "ERROR:  $sqlstate: $message\n";
	$block .= "DETAIL:  $detail\n" if defined $detail;
	$block .= "HINT:  $hint\n"     if defined $hint;
	return $block;
}

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

# $sql in a new session (a cold key cache)
sub fresh_is
{
	my ($sql, $expected, $name, %opts) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, %opts);
	is($ret, 0, "$name: succeeds");
	is($err, '', "$name: no error");
	is($out, $expected, "$name: result");
	return;
}

sub fresh_fails
{
	my ($sql, $block, $name, %opts) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql", %opts);
	is($ret, 3, "$name: fails");
	like($err, qr/\Apsql:<stdin>:\d+: \Q$block\ELOCATION:  [^\n]+\n?\z/,
		"$name: the error");
	is($out, '', "$name: no result");
	return;
}

# Change a setting with ALTER SYSTEM (undef: RESET) and wait until new
# sessions see $shown.
sub set_system
{
	my ($name, $value, $shown) = @_;
	$node->safe_psql('postgres',
		defined $value
		? "ALTER SYSTEM SET $name = " . lit($value)
		: "ALTER SYSTEM RESET $name");
	$node->reload;
	$node->poll_query_until('postgres',
		"SELECT current_setting('$name') = " . lit($shown))
	  or die "$name did not become $shown";
	return;
}

# --- data ---------------------------------------------------------------------

# A tenant name that a shell would not leave alone.
my $qt = q{o'brien co; $(touch pwned) `touch pwned2` "%t" %% \\};

# id => [tenant, purpose, plaintext]
my %rows = (
	1 => [ 'ent', 'docs',  'ent docs' ],
	2 => [ 'ent', 'notes', 'ent notes' ],
	3 => [ 'smb', 'docs',  'smb docs' ],
	4 => [ $qt,   'docs',  "o'brien docs" ],);

sub decrypt_sql
{
	my @ids = @_;
	return 'SELECT string_agg(id || \':\' || envault.env_decrypt_text(ct), \',\' ORDER BY id)'
	  . ' FROM secrets WHERE id IN (' . join(', ', @ids) . ')';
}

sub decrypted
{
	my @ids = @_;
	return join(',', map { "$_:$rows{$_}[2]" } sort { $a <=> $b } @ids);
}

my $ent_sql = decrypt_sql(1, 2);
my $ent_out = decrypted(1, 2);
my $smb_sql = decrypt_sql(3);
my $smb_out = decrypted(3);
my $qt_sql = decrypt_sql(4);
my $qt_out = decrypted(4);
my $all_sql = decrypt_sql(1, 2, 3, 4);
my $all_out = decrypted(1, 2, 3, 4);
my $ent_encrypt_sql =
  q{SELECT envault.env_decrypt_text(envault.env_encrypt('ent', 'docs', 'fresh'::text))};

my $tenant_row_sql = q{
SELECT key_version || '|' || key_source || '|' || coalesce(encode(master_kcv, 'hex'), 'NULL')
       || '|' || coalesce(encode(customer_kcv, 'hex'), 'NULL')
  FROM envault.tenants WHERE tenant = 'ent'};

my $ent_cmk = cmk('ent');
my $ent_kcv = customer_kcv($ent_cmk);
my $mkcv = master_kcv($master_key);

my $withheld_ent = error_block(
	'38000',
	'customer key of envault tenant "ent" is not available',
	'envault.customer_key_command failed: child process exited with exit code 3.',
	'The customer may have withheld or revoked its key.');
my $revoked_ent = error_block(
	'55000',
	'envault tenant "ent" is revoked',
	'Its keys cannot be used until it is unrevoked.',
	'An administrator can unrevoke it with envault.unrevoke_tenant().');
my $not_configured = error_block(
	'F0000',
	'envault.customer_key_command is not configured',
	undef,
	q{Set it to a command that prints the customer's key of the tenant given as %t.});

# --- start --------------------------------------------------------------------

$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key_file = '$master_file'\n"
	  . "envault.customer_key_command = '$script 100%% %t'\n");
$node->start;
unlike(slurp_file($node->logfile), qr/WARNING/, 'no warning at startup');

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('ent');
SELECT envault.create_tenant('smb');
SELECT envault.create_tenant(} . lit($qt) . q{);
CREATE TABLE secrets (id int PRIMARY KEY, tenant text NOT NULL, ct bytea NOT NULL);
} . join(
		'',
		map {
			my ($t, $p, $v) = @{ $rows{$_} };
			"INSERT INTO secrets VALUES ($_, "
			  . lit($t)
			  . ", envault.env_encrypt("
			  . lit($t) . ", '$p', "
			  . lit($v)
			  . "::text));\n"
		} sort keys %rows));
is(take_asked(), '',
	'nothing asked the KMS while the tenants are under the master key');
is($node->safe_psql('postgres', $tenant_row_sql),
	"1|master|$mkcv|NULL", 'ent starts under the master key');

# --- use_customer_key ------------------------------------------------------------

# What a backup taken before onboarding holds: ent's tenant and data keys
my $keys_py = dirname(__FILE__) . '/envault_keys.py';
my $before_tenant = $node->safe_psql('postgres',
	q{SELECT key_version || ' ' || encode(wrapped_key, 'hex') FROM envault.tenants WHERE tenant = 'ent'});
my %before_dks = map { my @f = split / /; ("$f[0]/$f[1]" => [@f]) } split /\n/,
  $node->safe_psql('postgres', q{
SELECT purpose || ' ' || version || ' ' || key_id || ' ' || encode(wrapped_key, 'hex')
  FROM envault.data_keys WHERE tenant = 'ent' ORDER BY purpose, version});
my $before_ct1 = $node->safe_psql('postgres', q{SELECT encode(ct, 'hex') FROM secrets WHERE id = 1});

sub keys_py { my $out = `/usr/bin/python3 $keys_py @_`; chomp $out; return $out; }

# With the master key, such a copy opens ent's tenant key and data keys.
my $old_tkey = keys_py('tenant-key', $master_key, 'ent', split(/ /, $before_tenant));
like($old_tkey, qr/^[0-9a-f]{64}$/, 'the copy: the master key opens its tenant key');
my %old_dk = map {
	my ($p, $v, $id, $w) = @{ $before_dks{$_} };
	($id => keys_py('data-key', $old_tkey, 'ent', $p, $v, $id, $w))
} keys %before_dks;
is(scalar(grep { /^[0-9a-f]{64}$/ } values %old_dk), 2,
	'the copy: and its two data keys (docs, notes)');

# opens $ct_hex (of tenant ent) with any key of %$dks, or 'FAIL'
sub open_with
{
	my ($dks, $ct_hex) = @_;
	my $key_id = hex(substr($ct_hex, 8, 16));
	my ($purpose) = map { $_ =~ m{^(.*)/} } grep { $before_dks{$_}[2] == $key_id } keys %before_dks;
	return 'FAIL' unless defined $dks->{$key_id} && defined $purpose;
	return keys_py('decrypt', $dks->{$key_id}, 'ent', $purpose, $ct_hex);
}
is(pack('H*', open_with(\%old_dk, $before_ct1)), 'ent docs',
	'the copy opens a value of ent written before onboarding');

fresh_is(q{SELECT envault.use_customer_key('ent')},
	'', 'use_customer_key(ent)');
is(take_asked(), 'ent', 'it asked the KMS once, for ent, with "%%" as "%"');
is($node->safe_psql('postgres', $tenant_row_sql),
	"2|customer|NULL|$ent_kcv",
	'ent: a fresh tenant key (version 2), key_source customer, no master kcv, customer kcv of the customer key');
is( $node->safe_psql(
		'postgres', q{
SELECT (actor = current_user) || '|' || detail FROM envault.key_events
 WHERE operation = 'tenant re-keyed under a customer key' AND tenant = 'ent'}),
	'true|key version 2 under the customer key with check value ' . fingerprint($ent_kcv)
	  . '; 2 data keys rewrapped, 2 new active data keys',
	'key_events: the re-keying, by whom, with the check value');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(purpose || ' v' || version || ' ' || state || ' under ' || tenant_key_version, ', '
                  ORDER BY purpose, version)
  FROM envault.data_keys WHERE tenant = 'ent'}),
	'docs v1 rotated under 2, docs v2 active under 2, notes v1 rotated under 2, notes v2 active under 2',
	'ent: fresh active data keys, the old ones rotated, all under the new tenant key');
fresh_is($all_sql, $all_out, 'every value decrypts in a new session');
is(take_asked(), 'ent', 'that session asked the KMS once, for ent');
fresh_is($ent_encrypt_sql, 'fresh', 'a new session encrypts for ent');
is(take_asked(), 'ent', 'asking the KMS once');

# The copy from before onboarding opens nothing written since, with the master key
$node->safe_psql('postgres',
	q{INSERT INTO secrets VALUES (5, 'ent', envault.env_encrypt('ent', 'docs', 'after onboarding'::text))});
take_asked();
my $after_ct = $node->safe_psql('postgres', q{SELECT encode(ct, 'hex') FROM secrets WHERE id = 5});
is(open_with(\%old_dk, $after_ct), 'FAIL',
	'the copy from before onboarding does not open a value written after it');
my ($new_id, $new_wrapped) = split / /, $node->safe_psql('postgres', q{
SELECT key_id || ' ' || encode(wrapped_key, 'hex') FROM envault.data_keys
 WHERE tenant = 'ent' AND purpose = 'docs' AND state = 'active'});
is(keys_py('data-key', $old_tkey, 'ent', 'docs', 2, $new_id, $new_wrapped), 'FAIL',
	'nor the new data key, with its old tenant key');
is(keys_py('tenant-key', $master_key, 'ent', 2,
		$node->safe_psql('postgres', q{SELECT encode(wrapped_key, 'hex') FROM envault.tenants WHERE tenant = 'ent'})),
	'FAIL', 'nor does the master key open the new tenant key');

# Re-encrypting moves the old values to the new keys; destroying the
# superseded keys leaves the copy nothing to open in the database.
fresh_fails(q{SELECT envault.destroy_superseded_keys('smb')},
	error_block('55000', 'envault tenant "smb" was never re-keyed', undef,
		'Re-key it with envault.rekey_tenant() or envault.use_customer_key(), then re-encrypt its values with envault.reencrypt_column().'),
	'destroy_superseded_keys of a tenant never re-keyed');
$node->safe_psql('postgres', q{CALL envault.reencrypt_column('secrets', 'ct')});
take_asked();
is($node->safe_psql('postgres', q{SELECT count(*) FROM secrets WHERE tenant = 'ent' AND NOT envault.env_is_current(ct)}),
	'0', 'reencrypt_column: every value of ent is under a current key');
fresh_is(q{SELECT envault.destroy_superseded_keys('ent')}, '2',
	'destroy_superseded_keys(ent) destroys the two old data keys');
take_asked();
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(purpose || ' v' || version || ' ' || state, ', ' ORDER BY purpose, version)
  FROM envault.data_keys WHERE tenant = 'ent'}),
	'docs v1 destroyed, docs v2 active, notes v1 destroyed, notes v2 active',
	'only the keys of the re-keying are left');
my @live = split /\n/, $node->safe_psql('postgres',
	q{SELECT encode(ct, 'hex') FROM secrets WHERE tenant = 'ent' ORDER BY id});
is(scalar(@live), 3, 'ent has three values in the database');
is(join(',', map { open_with(\%old_dk, $_) } @live), 'FAIL,FAIL,FAIL',
	'the copy from before onboarding opens none of them');
fresh_is(decrypt_sql(1, 2, 5), "1:ent docs,2:ent notes,5:after onboarding",
	'while envault, with the customer key, decrypts them all');
is(take_asked(), 'ent', 'asking the KMS once');
$node->safe_psql('postgres', q{DELETE FROM secrets WHERE id = 5});

# The shell-quoted tenant name.
fresh_is('SELECT envault.use_customer_key(' . lit($qt) . ')',
	'', 'use_customer_key of a tenant named with quotes and shell syntax');
my @calls = take_calls();
is(scalar(@calls), 1, 'the KMS was asked once');
is_deeply($calls[0], [ '100%', $qt ],
	'the script got "100%" and the exact tenant name, as two arguments');
ok(!-e $node->data_dir . '/pwned' && !-e $node->data_dir . '/pwned2'
	  && !-e "$dir/pwned" && !-e "$dir/pwned2",
	'nothing in the tenant name was run');
is( $node->safe_psql(
		'postgres',
		'SELECT key_source || \'|\' || encode(customer_kcv, \'hex\')'
		  . ' FROM envault.tenants WHERE tenant = ' . lit($qt)),
	'customer|' . customer_kcv(cmk($qt)),
	'that tenant is wrapped by its own customer key');
fresh_is($qt_sql, $qt_out, 'and its value decrypts');
is(take_asked(), $qt, 'with its key from the KMS');

# --- already ----------------------------------------------------------------------

fresh_fails(
	q{SELECT envault.use_customer_key('ent')},
	error_block(
		'55000', 'envault tenant "ent" already uses a customer-managed key', undef,
		'To give it fresh keys under the same customer key, use envault.rekey_tenant().'),
	'use_customer_key on a customer-managed tenant');
fresh_fails(
	q{SELECT envault.use_master_key('smb')},
	error_block('55000', 'envault tenant "smb" already uses the master key'),
	'use_master_key on a master-key tenant');
is(take_asked(), '', 'neither asked the KMS');
is($node->safe_psql('postgres', $tenant_row_sql),
	"2|customer|NULL|$ent_kcv", 'ent is unchanged');

# --- the customer withholds its key ---------------------------------------------

# By default (envault.customer_key_ttl = 0) a session keeps the keys of a
# customer-managed tenant only for the statement that fetched the customer
# key: each statement that uses the tenant asks the KMS once, whatever it
# decrypts, and a withheld key stops every session at its next statement,
# even inside a transaction it had already opened.
my $stmt = verbose_session($node);
session_is($stmt, 'SHOW envault.customer_key_ttl', '0',
	'by default customer keys are kept for one statement');
session_is($stmt, $ent_sql, $ent_out,
	'a session decrypts the values of ent under two data keys in one statement');
is(take_asked(), 'ent', 'that statement asked the KMS once');
session_is($stmt, $ent_sql, $ent_out, 'its next statement decrypts them again');
is(take_asked(), 'ent', 'asking the KMS again');
session_is($stmt, "BEGIN;\n$ent_sql;\n$ent_encrypt_sql;\nCOMMIT",
	"$ent_out\nfresh", 'two statements in one transaction');
is(take_asked(), 'ent,ent', 'each asked the KMS once');
session_is($stmt, "$smb_sql;\n$smb_sql", "$smb_out\n$smb_out",
	'statements using only a master-key tenant');
is(take_asked(), '', 'do not ask the KMS');

withhold('ent');
session_fails($stmt, $ent_sql, $withheld_ent,
	'withheld: that session, next statement, decrypting ent');
session_fails($stmt, $ent_encrypt_sql, $withheld_ent,
	'withheld: that session, encrypting for ent');
session_is($stmt, $smb_sql, $smb_out,
	'withheld: that session still decrypts smb (under the master key)');
is(take_asked(), 'ent,ent', 'the statements using ent asked the KMS, and were refused');
hand_back('ent');

session_is($stmt, "BEGIN;\n$ent_sql", $ent_out,
	'handed back: the session opens a transaction and decrypts ent');
withhold('ent');
session_fails($stmt, $ent_sql, $withheld_ent,
	'withheld: the next statement of that open transaction is refused');
session_is($stmt, 'ROLLBACK', '', 'the session ends its transaction');
fresh_fails($ent_sql, $withheld_ent, 'withheld: a new session is refused too');
is(take_asked(), 'ent,ent,ent',
	'each statement of that transaction and the new session asked the KMS');
hand_back('ent');
session_is($stmt, $ent_sql, $ent_out, 'handed back: the session decrypts ent again');
is(take_asked(), 'ent', 'asking the KMS once');
$stmt->quit;

# A positive envault.customer_key_ttl is the trade-off of fewer KMS calls
# against a delay: sessions that hold the keys go on using them that long
# after the customer withholds its key.
set_system('envault.customer_key_ttl', '2', '2s');

my $long = verbose_session($node);
session_is($long, 'SHOW envault.customer_key_ttl', '2s',
	'the long-lived session keeps customer keys 2 s');
my $t0 = time();
session_is($long, "$ent_sql;\n$smb_sql", "$ent_out\n$smb_out",
	'the long-lived session decrypts ent and smb');
my $loaded = time();
is(take_asked(), 'ent', 'it fetched the key of ent');

withhold('ent');
session_is($long, $ent_sql, $ent_out,
	'withheld: the long-lived session still decrypts ent from its cache');
my $still = time();
fresh_fails($ent_sql, $withheld_ent, 'withheld: a new session decrypting ent');
fresh_fails($ent_encrypt_sql, $withheld_ent,
	'withheld: a new session encrypting for ent');
is(take_asked(), 'ent,ent', 'each new session asked the KMS');
fresh_is("$smb_sql;\n$qt_sql", "$smb_out\n$qt_out",
	'withheld: a new session decrypts the other tenants');
is(take_asked(), $qt, 'asking the KMS only for the other customer tenant');
diag(sprintf('the cache hit came %.2f s after the fetch; the TTL is 2 s',
		$still - $t0))
  if $still - $t0 >= 1;

# The keys of ent expire 2 s after they were loaded.
sleep(3 - (time() - $loaded)) if time() - $loaded < 3;
session_fails($long, $ent_sql, $withheld_ent,
	'withheld, 3 s later: the long-lived session no longer decrypts ent');
session_fails($long, $ent_encrypt_sql, $withheld_ent,
	'nor encrypts for it');
is(take_asked(), 'ent,ent', 'it asked the KMS again, and was refused');
session_is($long, $smb_sql, $smb_out,
	'the long-lived session still decrypts smb (under the master key)');
is(take_asked(), '', 'without asking the KMS');

hand_back('ent');
session_is($long, "$ent_sql;\n$ent_encrypt_sql", "$ent_out\nfresh",
	'handed back: the long-lived session decrypts and encrypts ent again');
is(take_asked(), 'ent', 'with the key fetched once');
fresh_is($all_sql, $all_out, 'handed back: a new session decrypts everything');
take_calls();
$long->quit;

# --- revocation bites in a session that holds the keys ---------------------------

set_system('envault.customer_key_ttl', '3600', '1h');
my $held = verbose_session($node);
session_is($held, $ent_sql, $ent_out, 'a session with a 1 h TTL decrypts ent');
is(take_asked(), 'ent', 'fetching the key of ent');
withhold('ent');
session_is($held, $ent_sql, $ent_out,
	'withheld: that session still decrypts ent, from its cache');
is(take_asked(), '', 'without asking the KMS');

$node->safe_psql('postgres', q{SELECT envault.revoke_tenant('ent')});
session_fails($held, $ent_sql, $revoked_ent,
	'revoke_tenant(ent): the session holding its keys is refused at once');
session_fails($held, $ent_encrypt_sql, $revoked_ent, 'encrypting too');
session_is($held, $smb_sql, $smb_out, 'smb is unaffected');
fresh_fails($ent_sql, $revoked_ent, 'a new session is refused too');
is(take_asked(), '', 'a revoked tenant does not ask the KMS');

$node->safe_psql('postgres', q{SELECT envault.restore_tenant('ent')});
session_fails($held, $ent_sql, $withheld_ent,
	'restored, key still withheld: the session dropped the keys it held');
is(take_asked(), 'ent', 'it asked the KMS');
hand_back('ent');
session_is($held, $ent_sql, $ent_out,
	'restored and handed back: the session decrypts ent');
is(take_asked(), 'ent', 'with the key fetched again');
session_is($held, $ent_sql, $ent_out, 'and again');
is(take_asked(), '', 'from its cache');

# Lowering the TTL shortens what a session already holds: back to 0, a
# session holding the keys drops them at its next statement.
set_system('envault.customer_key_ttl', '0', '0');
session_is($held, 'SHOW envault.customer_key_ttl', '0',
	'the session holding the keys sees the TTL back at 0');
withhold('ent');
session_fails($held, $ent_sql, $withheld_ent,
	'TTL lowered to 0 after the keys were cached: the next statement is refused');
is(take_asked(), 'ent', 'the session asked the KMS again, and was refused');
hand_back('ent');
session_is($held, $ent_sql, $ent_out, 'handed back: it decrypts again');
is(take_asked(), 'ent', 'with the key fetched once');
set_system('envault.customer_key_ttl', '2', '2s');

# --- a wrong customer key ------------------------------------------------------------

my $other_secret = random_key_hex();
write_private_file($secret_file, $other_secret);
my $wrong_kcv = customer_kcv(cmk('ent', $other_secret));
my $mismatch =
  'customer key of envault tenant "ent" does not match the key that wraps its tenant key';
fresh_fails(
	$ent_sql,
	error_block(
		'55000', $mismatch,
		'The tenant key is wrapped by the customer key with check value '
		  . fingerprint($ent_kcv)
		  . '; envault.customer_key_command returned one with check value '
		  . fingerprint($wrong_kcv)
		  . '.'),
	'a wrong customer key: decrypting in a new session');
fresh_fails(
	q{SELECT envault.rotate_tenant_key('ent')},
	error_block(
		'55000', $mismatch,
		'The tenant key is wrapped by the customer key with check value '
		  . fingerprint($ent_kcv)
		  . '; envault.customer_key_command returned one with check value '
		  . fingerprint($wrong_kcv)
		  . '.'),
	'a wrong customer key: rotate_tenant_key');
fresh_fails(q{SELECT envault.use_master_key('ent')},
	error_block('55000', $mismatch),
	'a wrong customer key: use_master_key');
is(take_asked(), 'ent,ent,ent', 'each asked the KMS for ent');
is($node->safe_psql('postgres', $tenant_row_sql),
	"2|customer|NULL|$ent_kcv", 'ent is unchanged');
fresh_is($smb_sql, $smb_out, 'smb is unaffected');
write_private_file($secret_file, $secret);
fresh_is($ent_sql, $ent_out, 'the right key again: ent decrypts');
take_calls();

# --- rotate_tenant_key -------------------------------------------------------------------

fresh_is(q{SELECT envault.rotate_tenant_key('ent')},
	'3', 'rotate_tenant_key(ent)');
my $asked = take_asked();
like($asked, qr/\Aent(,ent)*\z/, 'it asked the KMS, for ent only');
is($node->safe_psql('postgres', $tenant_row_sql),
	"3|customer|NULL|$ent_kcv",
	'ent: key version 3, still under the same customer key');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(purpose || '/' || tenant_key_version, ',' ORDER BY purpose)
  FROM envault.data_keys WHERE tenant = 'ent' AND state <> 'destroyed'}),
	'docs/3,notes/3',
	'its data keys are wrapped under tenant key version 3');
is( $node->safe_psql(
		'postgres', q{
SELECT detail FROM envault.key_events
 WHERE operation = 'tenant key rotated' AND tenant = 'ent'}),
	'key version 3; 2 data keys rewrapped',
	'key_events: the rotation');
fresh_is("$all_sql;\n$ent_encrypt_sql", "$all_out\nfresh",
	'after the rotation a new session decrypts everything and encrypts for ent');
is(join(',', sort split /,/, take_asked()),
	join(',', sort('ent', $qt)), 'fetching each customer key once');
session_is($held, $ent_sql, $ent_out,
	'the long-lived session decrypts ent after the rotation');
is(take_asked(), 'ent', 'with the key fetched again');
withhold('ent');
fresh_fails($ent_sql, $withheld_ent,
	'after the rotation, withholding the key still stops a new session');
hand_back('ent');
take_calls();

# --- use_master_key ---------------------------------------------------------------------

fresh_is(q{SELECT envault.use_master_key('ent')}, '', 'use_master_key(ent)');
is(take_asked(), 'ent', 'it asked the KMS for the key once more');
is($node->safe_psql('postgres', $tenant_row_sql),
	"3|master|$mkcv|NULL",
	'ent: key_source master, master kcv of the master key, no customer kcv');
is( $node->safe_psql(
		'postgres', q{
SELECT (actor = current_user) || '|' || detail FROM envault.key_events
 WHERE operation = 'customer key removed' AND tenant = 'ent'}),
	'true|customer key check value ' . fingerprint($ent_kcv),
	'key_events: the removal, with the check value');
withhold('ent');
fresh_is("$ent_sql;\n$ent_encrypt_sql", "$ent_out\nfresh",
	'under the master key, a withheld customer key no longer matters');
session_is($held, $ent_sql, $ent_out, 'in the long-lived session too');
is(take_asked(), '', 'nothing asked the KMS');
fresh_fails(
	q{SELECT envault.use_master_key('ent')},
	error_block('55000', 'envault tenant "ent" already uses the master key'),
	'use_master_key again');
fresh_fails(q{SELECT envault.use_customer_key('ent')},
	$withheld_ent, 'use_customer_key while the customer withholds its key');
is(take_asked(), 'ent', 'that one asked the KMS');
is($node->safe_psql('postgres', $tenant_row_sql),
	"3|master|$mkcv|NULL", 'ent stays under the master key');
hand_back('ent');
$held->quit;

# --- envault.customer_key_command not configured ---------------------------------------

set_system('envault.customer_key_command', '', '');
fresh_fails(q{SELECT envault.use_customer_key('smb')},
	$not_configured, 'use_customer_key without a command');
fresh_fails($qt_sql, $not_configured,
	'a customer-managed tenant without a command');
fresh_is("$ent_sql;\n$smb_sql", "$ent_out\n$smb_out",
	'master-key tenants do not need it');
is(take_asked(), '', 'nothing ran');
is( $node->safe_psql(
		'postgres', q{SELECT key_source FROM envault.tenants WHERE tenant = 'smb'}),
	'master', 'smb stays under the master key');
set_system('envault.customer_key_command', undef, '********');
fresh_is($qt_sql, $qt_out, 'the command back: the customer tenant decrypts');
is(take_asked(), $qt, 'asking the KMS');

# --- SHOW -----------------------------------------------------------------------------------

is($node->safe_psql('postgres', 'SHOW envault.customer_key_command'),
	'********', 'SHOW envault.customer_key_command hides the command');
is( $node->safe_psql(
		'postgres', q{SELECT current_setting('envault.customer_key_command')}),
	'********', 'current_setting() hides it too');
unlike($node->safe_psql('postgres', 'SHOW ALL'),
	qr/customer_key_command|kms-customer-key/,
	'SHOW ALL lists neither the setting nor the command');
$node->safe_psql('postgres',
	'CREATE ROLE alice LOGIN; GRANT envault_admin TO alice');
my $alice = $node->connstr('postgres') . ' user=alice';
my $denied = error_block('42501',
	'must be superuser or have privileges of pg_read_all_settings to examine "envault.customer_key_command"'
);
fresh_fails('SHOW envault.customer_key_command',
	$denied, 'SHOW as a non-superuser', connstr => $alice);
fresh_fails(q{SELECT current_setting('envault.customer_key_command')},
	$denied, 'current_setting() as a non-superuser', connstr => $alice);

# --- the server log ---------------------------------------------------------------------------

$node->stop;
my $log = slurp_file($node->logfile);
like($log, qr/statement: SELECT envault.use_customer_key\('ent'\)/,
	'the server log was written to');
like($log, qr/kms: the owner of tenant ent withholds its key/,
	'it has the KMS\'s message');
my %secrets = (
	'the master key'                          => $master_key,
	'the customer key of ent'                 => $ent_cmk,
	'the customer key of the quoted tenant'   => cmk($qt),
	'the customer key of smb'                 => cmk('smb'),
	'the wrong customer key of ent'           => cmk('ent', $other_secret),
	'the KMS secret'                          => $secret,
	'the other KMS secret'                    => $other_secret,);
foreach my $what (sort keys %secrets)
{
	my $k = $secrets{$what};
	unlike($log, qr/\Q$k\E/i, "the server log does not contain $what");
	unlike($log, qr/\Q${\ substr($k, 0, 32)}\E|\Q${\ substr($k, 32)}\E/i,
		"nor half of it");
}
# PostgreSQL itself logs the new value of a setting changed by a reload
# (here by ALTER SYSTEM RESET): that is the only place the command may be.
my @command_lines =
  grep { !/\] LOG:  parameter "envault\.customer_key_command" changed to "/ }
  grep { /kms-customer-key/ } split /\n/, $log;
is(join("\n", @command_lines), '',
	'the command appears only where PostgreSQL logs a reloaded setting');

done_testing();
