# envault TAP test: envault-verify checks exported audit chains without the
# database, and finds what verify_chain finds.
#
# envault is preloaded and signs checkpoints with a 0600 PEM key file
# (envault.signing_key_file).  A chained table with several column types
# holds a few hundred rows of several tenants (the chain without tenant and
# a non-ASCII tenant among them) and two checkpoints per tenant.  Each
# tenant's export verifies with envault-verify (from the installed bindir),
# with the verifier key and with a PEM public key, and with the server log's
# checkpoint copies; so does a purged chain, from its anchor.  Then a superuser tampers with one tenant per kind of
# damage (docs/audit-chain.md, sql/chain_tamper.sql) and envault-verify
# reports the sequence number and reason verify_chain reports; exported
# files edited the same ways fail the same ways; rewrites that the database
# cannot see (re-signed, or deleted with their checkpoints) are caught with
# --checkpoints from the server log.  A checkpoint signed by another key is
# a bad signature until that key is trusted.  test/vectors/check_chain.py,
# the independent implementation, must print the same line every time.
# Last, the checks of the signing key file: group or world access, a key of
# another algorithm, a missing file.

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(check_error);

use Digest::SHA qw(sha256);
use Encode qw(encode_utf8);
use Fcntl qw(O_WRONLY O_CREAT O_TRUNC);
use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64 decode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('envault_verify');
$node->init;
my $dir = $node->basedir;

my $key1 = "$dir/signing1.pem";
my $key2 = "$dir/signing2.pem";
foreach my $k ($key1, $key2)
{
	system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', $k);
	chmod(0600, $k) or die "chmod $k: $!";
}
system_or_bail('openssl', 'pkey', '-in', $key1, '-pubout', '-out', "$dir/signing1.pub");

$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key = '"
	  . ('ab' x 32) . "'\n"
	  . "envault.signing_key_file = '$key1'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE appdb');

my $verifier = $node->config_data('--bindir') . '/envault-verify';
my $check_chain =
  File::Spec->rel2abs(dirname(__FILE__) . '/../vectors/check_chain.py');
ok(-x $verifier, 'envault-verify is installed in the bindir');

sub sql
{
	my ($query) = @_;
	return $node->safe_psql('appdb', $query);
}

# A SQL literal for a tenant, NULL for the chain without tenant
sub lit
{
	my ($t) = @_;
	return 'NULL' unless defined $t;
	(my $q = $t) =~ s/'/''/g;
	return "'$q'";
}

sub write_file
{
	my ($path, $contents, $mode) = @_;
	unlink $path;
	sysopen(my $fh, $path, O_WRONLY | O_CREAT | O_TRUNC, 0600)
	  or die "could not create \"$path\": $!";
	print $fh $contents or die "could not write \"$path\": $!";
	close $fh or die "could not close \"$path\": $!";
	chmod($mode // 0600, $path) or die "chmod $path: $!";
	return;
}

# Change a setting as postgresql.conf would, and wait until new sessions
# see it.
sub set_conf
{
	my ($name, $value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $name = " . lit($value));
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	$node->poll_query_until('postgres',
		"SELECT current_setting('$name') = " . lit($value))
	  or die "$name did not change";
	return;
}

# --- a chained table with several tenants and column types ---------------

my @main = ('acme', 'globex', 'initech', "Z\xc3\xbcrich/\xc3\x9f", undef);
my @kinds = qw(change delete truncate swap forge rewrite badsig gone oldest
  resign vanish otherkey);

my $audit_table = q{
CREATE TABLE audit (id bigserial PRIMARY KEY, tenant text, kind text,
                    amount numeric(12,2), ok boolean, happened timestamptz,
                    payload jsonb, ip inet, tags text[], blob bytea, uid uuid,
                    note text);
SELECT envault.enable_audit_chain('audit', 'tenant');
};
sql("CREATE EXTENSION envault;\n$audit_table");

# rows from..to of each tenant in the list
sub add_rows
{
	my ($tenants, $from, $to) = @_;
	my $array = 'ARRAY[' . join(', ', map { lit($_) } @$tenants) . ']::text[]';
	sql(qq{
INSERT INTO audit (tenant, kind, amount, ok, happened, payload, ip, tags, blob, uid, note)
SELECT t, (ARRAY['login', 'pay', 'refund', 'logout'])[1 + g % 4],
       round(g * 1.37, 2), g % 3 = 0,
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute',
       jsonb_build_object('n', g, 'list', jsonb_build_array('a', g)),
       ('10.0.' || g % 256 || '.1')::inet, ARRAY['x' || g, NULL],
       decode(lpad(to_hex(g), 8, '0'), 'hex'), md5(g::text)::uuid,
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g || ' \xc3\xa9' END
  FROM generate_series($from, $to) g, unnest($array) WITH ORDINALITY u(t, n)
 ORDER BY g, n});
	return;
}

add_rows(\@main, 1, 30);
add_rows(\@kinds, 1, 10);
is(sql('SELECT count(*) FROM envault.checkpoint(\'audit\')'),
	scalar(@main) + scalar(@kinds), 'a checkpoint of every tenant');
add_rows(\@main, 31, 60);
add_rows(\@kinds, 11, 20);
is(sql('SELECT count(*) FROM envault.checkpoint(\'audit\')'),
	scalar(@main) + scalar(@kinds), 'a second checkpoint of every tenant');
add_rows(\@main, 61, 80);
add_rows(\@kinds, 21, 25);
is(sql('SELECT count(*) FROM audit'), 80 * @main + 25 * @kinds,
	'rows of every tenant');

my $vkey1 = "$dir/signing1.vkey";
# the identity checkpoints name appdb by: a random UUID, not its name
my $dbid = sql('SELECT envault.database_id()');
like($dbid, qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
	'database_id() is a random UUID');
write_file($vkey1, sql('SELECT envault.signing_public_key()') . "\n");
like(slurp_file($vkey1), qr/^envault\+[0-9a-f]{8}\+[A-Za-z0-9+\/]{44}\n$/,
	'signing_public_key() is a verifier key');

# --- running the verifiers ------------------------------------------------

my $nexport = 0;

# Export a tenant's chain to a new file
sub export
{
	my ($tenant) = @_;
	my $file = sprintf('%s/export%03d.json', $dir, ++$nexport);
	write_file($file,
		sql('SELECT envault.export_chain(\'audit\', ' . lit($tenant) . ')')
		  . "\n");
	return $file;
}

# verify_chain's verdict on a tenant's chain, as envault-verify words it
sub verify_chain
{
	my ($tenant) = @_;
	my $where = defined $tenant ? 'tenant = ' . lit($tenant) : 'tenant IS NULL';
	return sql(
		"SELECT CASE WHEN ok THEN 'OK' ELSE format('FAIL: seq %s: %s', first_bad_seq, reason) END
		   FROM envault.verify_chain('audit', " . lit($tenant) . ") WHERE $where");
}

sub run
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	chomp $out;
	return ($? >> 8, $out, $err);
}

# Run envault-verify and check_chain.py with the same arguments: the one
# must print $expected (a whole line, or a prefix ending in ": "), the
# other the same line, both with the exit status that goes with it.
sub check_verify
{
	my ($name, $args, $expected) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	# the auditor pins appdb's identity, unless the case gives another
	$args = [ '--database', $dbid, @$args ]
	  unless grep { /^--database/ } @$args;
	my ($rc, $out, $err) = run($verifier, @$args);
	my $want_rc = $expected =~ /^OK: / ? 0 : 1;
	if ($expected =~ /: $/)
	{
		like($out, qr/^\Q$expected\E\S/, "$name: envault-verify");
	}
	else
	{
		is($out, $expected, "$name: envault-verify");
	}
	is($rc, $want_rc, "$name: envault-verify exits $want_rc")
	  or diag("stderr: $err");
	my ($prc, $pout, $perr) = run('python3', $check_chain, @$args);
	if ($expected =~ /^FAIL: malformed export: /)
	{
		like($pout, qr/^FAIL: malformed export: \S/,
			"$name: check_chain.py too");
	}
	else
	{
		is($pout, $out, "$name: check_chain.py agrees");
	}
	is($prc, $rc, "$name: check_chain.py exits $rc too") or diag("stderr: $perr");
	return $out;
}

# The success line of an export of public.audit (the chain without tenant
# for an undefined tenant)
sub ok_line
{
	my ($tenant, $rows, $first, $last, $start, $cps, $covered, $logged) = @_;
	return ok_line_of('public.audit', $tenant, $rows, $first, $last, $start,
		$cps, $covered, $logged);
}

sub ok_line_of
{
	my ($chain, $tenant, $rows, $first, $last, $start, $cps, $covered, $logged) =
	  @_;
	my $line = "OK: $chain "
	  . (defined $tenant ? "tenant \"$tenant\": " : 'without tenant: ')
	  . ($rows == 1 ? "1 row (seq $first, $start)" : "$rows rows (seq $first-$last, $start)")
	  . ", $cps checkpoint"
	  . ($cps == 1 ? '' : 's')
	  . ' verified';
	$line .= ", $logged from the server log" if defined $logged;
	$line .=
	  $covered == $last
	  ? '; every row covered by a checkpoint'
	  : "; rows after seq $covered not yet covered by a checkpoint";
	return $line;
}

# --- clean exports verify -------------------------------------------------

my %clean;
foreach my $t (@main)
{
	my $name = 'tenant ' . ($t // 'NULL');
	is(verify_chain($t), 'OK', "$name: verify_chain");
	my $file = export($t);
	$clean{ $t // '' } = $file;
	my $want = ok_line($t, 80, 1, 80, 'from the genesis', 2, 60);
	check_verify("$name: export", [ '--key', $vkey1, $file ], $want);
	check_verify(
		"$name: with the server log",
		[ '--key', $vkey1, '--checkpoints', $node->logfile, $file ],
		ok_line($t, 80, 1, 80, 'from the genesis', 2, 60, 2));
}
my $acme = $clean{acme};
check_verify('a PEM public key', [ '--key', "$dir/signing1.pub", $acme ],
	ok_line('acme', 80, 1, 80, 'from the genesis', 2, 60));
# tree heads are signed under their origin: a key's own name only matters
# for checkpoints of envault 0.2.0
check_verify(
	'a PEM public key under another name',
	[ '--key', "$dir/signing1.pub", '--name', 'other', $acme ],
	ok_line('acme', 80, 1, 80, 'from the genesis', 2, 60));
check_verify('--complete on a whole chain', [ '--key', $vkey1, '--complete', $acme ],
	ok_line('acme', 80, 1, 80, 'from the genesis', 2, 60));

# envault's own chain without tenant
sql(q{SELECT envault.checkpoint('envault.key_events')});
my $events = "$dir/key_events.json";
write_file($events,
	sql(q{SELECT envault.export_chain('envault.key_events', NULL)}) . "\n");
my $nevents = sql(q{SELECT count(*) FROM envault.key_events WHERE tenant IS NULL});
check_verify('envault.key_events', [ '--key', $vkey1, $events ],
	ok_line_of('envault.key_events', undef, $nevents, 1, $nevents,
		'from the genesis', 1, $nevents));

# usage and I/O errors exit 2
my ($rc, $out, $err) = run($verifier, $acme);
is($rc, 2, 'no --key: exit 2');
like($err, qr/no key given/, 'no --key: says so');
($rc, $out, $err) = run($verifier, '--key', $vkey1, $acme);
is($rc, 2, 'no --database: exit 2');
like($err, qr/no database given/, 'no --database: says so');
($rc, $out, $err) = run($verifier, '--key', "$dir/nonexistent", '--database', $dbid, $acme);
is($rc, 2, 'a missing key file: exit 2');
($rc, $out, $err) = run($verifier, '--key', $key1, '--database', $dbid, $acme);
is($rc, 2, 'a private key: exit 2');
like($err, qr/holds a private key/, 'a private key: refused as such');
is($out, '', 'a private key: nothing on stdout');
($rc, $out, $err) = run($verifier, '--key', $vkey1, '--database', $dbid, "$dir/nonexistent.json");
is($rc, 2, 'a missing export: exit 2');

# --- tampering in the database ----------------------------------------------

# Export a tenant's chain, recompute row hashes: the row hash of
# docs/audit-chain.md from an export's canonical values.
sub read_json
{
	my ($file) = @_;
	return JSON::PP->new->utf8->decode(slurp_file($file));
}

sub row_hash
{
	my ($ex, $row) = @_;
	my $str = sub { my $b = shift; return pack('N', length $b) . $b; };
	my $opt = sub {
		my $v = shift;
		return defined $v ? "\x01" . $str->(encode_utf8($v)) : "\x00";
	};
	my $columns = 'envault/v1/chain-columns' . pack('N', scalar @{ $ex->{columns} });
	for my $c (@{ $ex->{columns} })
	{
		$columns .= $str->(encode_utf8($c->[0])) . $str->(encode_utf8($c->[1]));
	}
	my $in =
	    'envault/v1/chain-row'
	  . $str->(encode_utf8($ex->{chain}))
	  . $opt->($ex->{tenant})
	  . pack('Q>', $row->{seq})
	  . $str->(encode_utf8($row->{at}))
	  . decode_base64($row->{prev})
	  . sha256($columns);
	$in .= $opt->($row->{values}[$_]) for 0 .. $#{ $ex->{columns} };
	return encode_base64(sha256($in), '');
}

my $kind_col;
{
	my $ex = read_json($acme);
	($kind_col) = grep { $ex->{columns}[$_][0] eq 'kind' } 0 .. $#{ $ex->{columns} };
	is(row_hash($ex, $ex->{rows}[0]), $ex->{rows}[0]{hash},
		'the row hash recomputed in Perl from an export');
}

# Rewrite rows of a tenant from seq $from on: kind becomes $kind and every
# later link and hash is recomputed, so the chain is consistent in itself.
sub rewrite_sql
{
	my ($tenant, $from, $kind, $only_one) = @_;
	my $ex = read_json(export($tenant));
	my @sql;
	my $prev;
	foreach my $row (@{ $ex->{rows} })
	{
		if ($row->{seq} < $from)
		{
			$prev = $row->{hash};
			next;
		}
		last if $only_one && $row->{seq} > $from;
		$row->{values}[$kind_col] = $kind if $row->{seq} == $from;
		$row->{prev} = $prev;
		$row->{hash} = row_hash($ex, $row);
		push @sql,
		  sprintf(
			"UPDATE audit SET kind = %s, envault_prev = decode('%s', 'base64'), envault_hash = decode('%s', 'base64') WHERE tenant = %s AND envault_seq = %d;",
			lit($row->{values}[$kind_col]), $row->{prev}, $row->{hash},
			lit($tenant), $row->{seq});
		$prev = $row->{hash};
	}
	return join("\n", @sql);
}

# What a superuser who rewrites a chain consistently also changes: the head
# envault.chain_heads records (verify_chain compares it with the table).
sub head_sql
{
	my ($tenant) = @_;
	return sprintf(
		"UPDATE envault.chain_heads h SET seq = a.envault_seq, hash = a.envault_hash FROM audit a"
		  . " WHERE h.chain_id = (SELECT chain_id FROM envault.audit_chains WHERE tbl = 'audit'::regclass)"
		  . " AND h.tenant = %s AND a.tenant = h.tenant"
		  . " AND a.envault_seq = (SELECT max(envault_seq) FROM audit WHERE tenant = %s);",
		lit($tenant), lit($tenant));
}

my $forge_sql = rewrite_sql('forge', 12, 'forged', 1);
my $rewrite_sql = rewrite_sql('rewrite', 12, 'rewritten');
my $resign_sql = rewrite_sql('resign', 12, 'rewritten');
my $resign_head = head_sql('resign');
my $vanish_head = head_sql('vanish');

sql(qq{
SET session_replication_role = replica;
UPDATE audit SET kind = 'tampered' WHERE tenant = 'change' AND envault_seq = 12;
DELETE FROM audit WHERE tenant = 'delete' AND envault_seq = 12;
DELETE FROM audit WHERE tenant = 'truncate' AND envault_seq >= 18;
UPDATE audit SET envault_seq = envault_seq + 1000 WHERE tenant = 'swap' AND envault_seq IN (12, 14);
UPDATE audit SET envault_seq = CASE envault_seq WHEN 1012 THEN 14 ELSE 12 END
 WHERE tenant = 'swap' AND envault_seq > 1000;
$forge_sql
$rewrite_sql
UPDATE envault.checkpoints SET note = regexp_replace(note, ' [A-Za-z0-9+/]{10}', ' AAAAAAAAAA')
 WHERE tenant = 'badsig' AND seq = 20;
DELETE FROM audit WHERE tenant = 'gone';
DELETE FROM audit WHERE tenant = 'oldest' AND envault_seq = 1;
$resign_sql
$resign_head
DELETE FROM envault.checkpoints WHERE tenant = 'resign' AND seq = 20;
DELETE FROM envault.chain_trees WHERE tenant IN ('resign', 'vanish');
DELETE FROM envault.chain_nodes WHERE tenant IN ('resign', 'vanish');
DELETE FROM audit WHERE tenant = 'vanish' AND envault_seq >= 18;
$vanish_head
DELETE FROM envault.checkpoints WHERE tenant = 'vanish' AND seq = 20;
RESET session_replication_role;
});
is(sql(q{SELECT seq FROM envault.checkpoint('audit', 'resign')}),
	'25', 'the rewritten chain re-signed');

my %expected = (
	change => 'FAIL: seq 12: hash mismatch',
	delete => 'FAIL: seq 12: missing row',
	truncate => 'FAIL: seq 18: truncated after checkpoint',
	swap => 'FAIL: seq 12: hash mismatch',
	forge => 'FAIL: seq 13: hash mismatch',
	rewrite => 'FAIL: seq 20: checkpoint mismatch',
	badsig => 'FAIL: seq 20: bad signature',
	gone => 'FAIL: seq 1: truncated after checkpoint',
	oldest => 'FAIL: seq 1: missing row',
	resign => 'OK',
	vanish => 'OK',);
foreach my $t (sort keys %expected)
{
	is(verify_chain($t), $expected{$t}, "tampered ($t): verify_chain");
}

my %file;
foreach my $t (qw(change delete truncate swap forge rewrite badsig gone))
{
	$file{$t} = export($t);
	check_verify("tampered ($t)", [ '--key', $vkey1, $file{$t} ], $expected{$t});
}

# An export that starts at row 2 may be one made with since, but its tree
# heads need the row before it, which is gone: the server has no frontier
# to give, and the checkpoints cannot be shown to sign these rows (with
# --complete, the missing first row comes first).
$file{oldest} = export('oldest');
check_verify('tampered (oldest)', [ '--key', $vkey1, $file{oldest} ],
	'FAIL: seq 10: checkpoint mismatch');
check_verify('tampered (oldest), --complete',
	[ '--key', $vkey1, '--complete', $file{oldest} ], $expected{oldest});

# What the database cannot see, the server log's copies of the checkpoints
# can: a chain rewritten and re-signed, rows deleted with their checkpoints.
sub log_line_of
{
	my ($tenant, $seq) = @_;
	my @lines = split /\n/, slurp_file($node->logfile);
	for my $n (0 .. $#lines)
	{
		return $n + 1
		  if $lines[$n] =~
		  m{envault checkpoint: origin=envault/$dbid/public\.audit/$tenant seq=$seq };
	}
	die "no logged checkpoint of $tenant at $seq";
}

$file{resign} = export('resign');
check_verify('re-signed', [ '--key', $vkey1, $file{resign} ],
	ok_line('resign', 25, 1, 25, 'from the genesis', 2, 25));
check_verify(
	're-signed, with the server log',
	[ '--key', $vkey1, '--checkpoints', $node->logfile, $file{resign} ],
	'FAIL: seq 20: checkpoint mismatch (checkpoint in '
	  . $node->logfile
	  . ' line '
	  . log_line_of('resign', 20)
	  . ')');
$file{vanish} = export('vanish');
check_verify('deleted with their checkpoints', [ '--key', $vkey1, $file{vanish} ],
	ok_line('vanish', 17, 1, 17, 'from the genesis', 1, 10));
check_verify(
	'deleted with their checkpoints, with the server log',
	[ '--key', $vkey1, '--checkpoints', $node->logfile, $file{vanish} ],
	'FAIL: seq 18: truncated after checkpoint (checkpoint in '
	  . $node->logfile
	  . ' line '
	  . log_line_of('vanish', 20)
	  . ')');

# The export's "database" member is covered by nothing.  Relabelled, it once
# hid every logged checkpoint of the chain from --checkpoints ("0 from the
# server log"), so rows deleted with their checkpoints passed.  The auditor
# pins the database identity: a relabelled export is refused, and pinning
# the relabelled name makes the exported checkpoint count for nothing.
my $relabelled = "$dir/vanish-relabelled.json";
{
	my $doc = slurp_file($file{vanish});
	$doc =~ s/"database": "\Q$dbid\E"/"database": "otherdb"/
	  or die "no database member";
	write_file($relabelled, $doc);
}
check_verify(
	'deleted with their checkpoints, export relabelled',
	[ '--key', $vkey1, '--checkpoints', $node->logfile, $relabelled ],
	qq{FAIL: malformed export: database: expected "$dbid" (--database), found another});
check_verify(
	'deleted with their checkpoints, export relabelled, its name pinned',
	[
		'--key', $vkey1, '--database', 'otherdb',
		'--checkpoints', $node->logfile, $relabelled
	],
	'FAIL: seq 10: bad signature');
# renaming the database changes nothing that checkpoints name
$node->safe_psql('postgres', 'ALTER DATABASE appdb RENAME TO appdb_renamed');
is($node->safe_psql('appdb_renamed', 'SELECT envault.database_id()'),
	$dbid, 'a renamed database keeps its identity');
my $renamed_export = "$dir/vanish-renamed.json";
write_file($renamed_export,
	$node->safe_psql('appdb_renamed',
		q{SELECT envault.export_chain('audit', 'vanish')}) . "\n");
$node->safe_psql('postgres', 'ALTER DATABASE appdb_renamed RENAME TO appdb');
check_verify(
	'deleted with their checkpoints, database renamed, with the server log',
	[ '--key', $vkey1, '--checkpoints', $node->logfile, $renamed_export ],
	'FAIL: seq 18: truncated after checkpoint (checkpoint in '
	  . $node->logfile
	  . ' line '
	  . log_line_of('vanish', 20)
	  . ')');

# Another database of the cluster, same signing key: a member of
# envault_admin (not a superuser) makes a table of the same name there,
# checkpoints made-up rows and relabels the export as appdb's.  Its
# checkpoint names its own database, and does not count for appdb.
$node->safe_psql('postgres', 'CREATE DATABASE otherdb');
$node->safe_psql('otherdb', q{
CREATE EXTENSION envault;
CREATE ROLE regress_mallory LOGIN IN ROLE envault_admin;
GRANT CREATE ON SCHEMA public TO regress_mallory;
});
$node->safe_psql('otherdb', "SET ROLE regress_mallory;\n$audit_table" . q{
INSERT INTO audit (tenant, kind, amount) VALUES ('acme', 'refund', 1e6),
       ('acme', 'refund', 2e6), ('acme', 'refund', 3e6);
SELECT envault.checkpoint('audit', 'acme');
});
my $otherid = $node->safe_psql('otherdb', 'SELECT envault.database_id()');
isnt($otherid, $dbid, 'another database has another identity');
my $forged = "$dir/forged-otherdb.json";
{
	my $doc = $node->safe_psql('otherdb',
		q{SELECT envault.export_chain('audit', 'acme')});
	$doc =~ s/"database": "\Q$otherid\E"/"database": "$dbid"/
	  or die "no database member";
	write_file($forged, "$doc\n");
}
check_verify('made up in another database, relabelled, --complete',
	[ '--key', $vkey1, '--complete', $forged ],
	'FAIL: seq 3: bad signature');

# A log line of this chain that does not verify (any role can RAISE LOG)
my $fake = "$dir/fake.log";
write_file($fake,
	    slurp_file($node->logfile)
	  . "2026-01-01 00:00:00 UTC [1] LOG:  envault checkpoint: origin=envault/$dbid/public.audit/acme seq=70 hash="
	  . ('A' x 43)
	  . "= note=bm90IGEgbm90ZQo=\n");
my $fake_line = () = slurp_file($fake) =~ /\n/g;
check_verify(
	'a forged log line',
	[ '--key', $vkey1, '--checkpoints', $fake, $acme ],
	"FAIL: seq 70: bad signature (checkpoint in $fake line $fake_line)");

# A long tenant: its origin is longer than a fixed buffer of note.c once
# held (fuzz/corpus/fuzz_note/regress-long-origin)
my $long = 'l' x 1100;
add_rows([$long], 1, 3);
is(sql('SELECT seq FROM envault.checkpoint(\'audit\', ' . lit($long) . ')'),
	'3', 'a checkpoint of a tenant of 1100 characters');
is(verify_chain($long), 'OK', 'a tenant of 1100 characters: verify_chain');
check_verify('a tenant of 1100 characters', [ '--key', $vkey1, export($long) ],
	ok_line($long, 3, 1, 3, 'from the genesis', 1, 3));

# --- a checkpoint signed by another key ---------------------------------------

set_conf('envault.signing_key_file', $key2);
my $vkey2 = "$dir/signing2.vkey";
write_file($vkey2, sql('SELECT envault.signing_public_key()') . "\n");
add_rows(['otherkey'], 26, 28);
is(sql(q{SELECT seq FROM envault.checkpoint('audit', 'otherkey')}),
	'28', 'a checkpoint signed with the second key');
set_conf('envault.signing_key_file', $key1);

is(verify_chain('otherkey'), 'FAIL: seq 28: bad signature',
	'another key: verify_chain refuses its checkpoint');
my $other = export('otherkey');
check_verify('another key', [ '--key', $vkey1, $other ],
	'FAIL: seq 28: bad signature');
check_verify(
	'another key, both keys trusted',
	[ '--key', $vkey1, '--key', $vkey2, $other ],
	ok_line('otherkey', 28, 1, 28, 'from the genesis', 3, 28));
check_verify('another key, only it trusted', [ '--key', $vkey2, $other ],
	'FAIL: seq 10: bad signature');

# docs/audit-chain.md: "list the old key's verifier key in
# envault.trusted_signing_keys (comma-separated verifier keys; reload)".
my $vkey2_text = slurp_file($vkey2);
chomp $vkey2_text;
my ($set_rc, $set_out, $set_err) = $node->psql('postgres',
	"ALTER SYSTEM SET envault.trusted_signing_keys = " . lit($vkey2_text));
is($set_rc, 0, 'envault.trusted_signing_keys takes a verifier key')
  or diag("ALTER SYSTEM says: $set_err");
if ($set_rc == 0)
{
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	$node->poll_query_until('postgres',
		"SELECT current_setting('envault.trusted_signing_keys') = "
		  . lit($vkey2_text))
	  or die 'envault.trusted_signing_keys did not change';
}
is(verify_chain('otherkey'), 'OK',
	'another key, listed in envault.trusted_signing_keys: verify_chain accepts it');
if ($set_rc == 0)
{
	$node->safe_psql('postgres', 'ALTER SYSTEM RESET envault.trusted_signing_keys');
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
}

# --- a purged chain: the export starts at its anchor ------------------------

# the purge signs a checkpoint of the chain's 80 rows that states it
is(sql(q{SELECT envault.purge_chain('audit', 'globex', clock_timestamp())}),
	'59', 'purge up to the newest checkpoint');
is(sql(q{SELECT seq || ' ' || split_part(note, E'\n', 5) FROM envault.checkpoints
		  WHERE tenant = 'globex' ORDER BY checkpoint_id DESC LIMIT 1}),
	'80 purge 60', 'the purge is a signed statement');
is(verify_chain('globex'), 'OK', 'purged: verify_chain from the anchor');
my $purged = export('globex');
check_verify('purged', [ '--key', $vkey1, $purged ],
	ok_line('globex', 21, 60, 80, 'anchored by a checkpoint', 2, 80));
check_verify('purged, --complete', [ '--key', $vkey1, '--complete', $purged ],
	ok_line('globex', 21, 60, 80, 'anchored by a checkpoint', 2, 80));
check_verify(
	'purged, with the server log',
	[ '--key', $vkey1, '--checkpoints', $node->logfile, $purged ],
	ok_line('globex', 21, 60, 80, 'anchored by a checkpoint', 2, 80, 3));
# without the statement (a made-up anchor), --complete refuses it
{
	my $doc = decode_json(slurp_file($purged));
	$doc->{checkpoints} = [ grep { !/\npurge 60\n/ } @{ $doc->{checkpoints} } ];
	my $unstated = "$dir/purged-unstated.json";
	open(my $uf, '>', $unstated) or die;
	print $uf JSON::PP->new->utf8->canonical->encode($doc) . "\n";
	close $uf;
	check_verify('purged, the statement removed, --complete',
		[ '--key', $vkey1, '--complete', $unstated ], 'FAIL: seq 1: purge not signed');
}

# --- the documented export command is byte-exact -------------------------------

# psql drops the noncharacters U+nFFFE and U+nFFFF of planes 1 to 16 when it
# prints a value; the export then no longer hashes to what was signed.
# docs/audit-chain.md's command moves the export as base64 instead.
sql(q{INSERT INTO audit (tenant, note)
      VALUES ('nonchar', U&'a\+01FFFEb\+01FFFFc\+10FFFEd\+10FFFFe\+00FFFFf')});
sql(q{SELECT count(*) FROM envault.checkpoint('audit', 'nonchar')});
my $psql = $node->config_data('--bindir') . '/psql';
my $connstr = $node->connstr('appdb');
my $export_sql =
  q{SELECT envault.export_chain('public.audit', 'nonchar')};
my $exact = "$dir/nonchar-exact.json";
my $printed = "$dir/nonchar-printed.json";
system_or_bail('sh', '-c',
	qq{"\$1" -XAt -d "\$2" -c "SELECT encode(convert_to((\$3)::text, 'UTF8'), 'base64')" | base64 -d > "\$4"},
	'sh', $psql, $connstr, $export_sql, $exact);
system_or_bail('sh', '-c', qq{"\$1" -XAt -d "\$2" -c "\$3" > "\$4"},
	'sh', $psql, $connstr, $export_sql, $printed);
like(slurp_file($exact), qr/a\xf0\x9f\xbf\xbeb\xf0\x9f\xbf\xbfc\xf4\x8f\xbf\xbed\xf4\x8f\xbf\xbfe\xef\xbf\xbff/,
	'the documented export command keeps every noncharacter byte for byte');
check_verify('noncharacters, documented export command',
	[ '--key', $vkey1, $exact ],
	ok_line('nonchar', 1, 1, 1, 'from the genesis', 1, 1));
isnt(slurp_file($printed), slurp_file($exact),
	'psql -At alone would have changed the export (why the docs do not use it)');

# --- exported files edited ----------------------------------------------------

my $nedit = 0;

# Edit a copy of the clean acme export and check both verifiers
sub check_edited
{
	my ($name, $edit, $expected, @extra) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $ex = read_json($acme);
	$edit->($ex);
	my $file = sprintf('%s/edited%02d.json', $dir, ++$nedit);
	write_file($file, JSON::PP->new->utf8->encode($ex));
	return check_verify("edited export ($name)", [ '--key', $vkey1, @extra, $file ],
		$expected);
}

sub rehash_from
{
	my ($ex, $i) = @_;
	for my $j ($i .. $#{ $ex->{rows} })
	{
		my $row = $ex->{rows}[$j];
		$row->{prev} = $ex->{rows}[ $j - 1 ]{hash} if $j > 0;
		$row->{hash} = row_hash($ex, $row);
	}
	return;
}

check_edited('a value changed',
	sub { $_[0]{rows}[39]{values}[$kind_col] = 'changed' },
	'FAIL: seq 40: hash mismatch');
check_edited('a middle row deleted', sub { splice(@{ $_[0]{rows} }, 39, 1) },
	'FAIL: seq 40: missing row');
check_edited('the newest rows deleted behind a checkpoint',
	sub { splice(@{ $_[0]{rows} }, 54) },
	'FAIL: seq 55: truncated after checkpoint');
check_edited(
	'two seqs swapped',
	sub {
		my $r = $_[0]{rows};
		($r->[39]{seq}, $r->[41]{seq}) = ($r->[41]{seq}, $r->[39]{seq});
	},
	'FAIL: seq 40: hash mismatch');
check_edited(
	'a forged row inserted with a recomputed hash',
	sub {
		my $ex = shift;
		my $r = $ex->{rows};
		my %forged = %{ $r->[39] };
		$forged{values} = [ @{ $r->[39]{values} } ];
		$forged{values}[$kind_col] = 'forged';
		$forged{hash} = row_hash($ex, \%forged);
		$_->{seq}++ for @$r[ 39 .. $#$r ];
		splice(@$r, 39, 0, \%forged);
	},
	'FAIL: seq 41: hash mismatch');
check_edited(
	'rewritten from row 40, every later hash recomputed',
	sub {
		$_[0]{rows}[39]{values}[$kind_col] = 'rewritten';
		rehash_from($_[0], 39);
	},
	'FAIL: seq 60: checkpoint mismatch');
check_edited(
	'a checkpoint signature damaged',
	sub { $_[0]{checkpoints}[1] =~ s/ [A-Za-z0-9+\/]{10}/ AAAAAAAAAA/ },
	'FAIL: seq 60: bad signature');
check_edited(
	'the newest rows and their checkpoint deleted',
	sub { splice(@{ $_[0]{rows} }, 54); splice(@{ $_[0]{checkpoints} }, 1) },
	ok_line('acme', 54, 1, 54, 'from the genesis', 1, 30));
check_edited(
	'the newest rows and their checkpoint deleted, with the server log',
	sub { splice(@{ $_[0]{rows} }, 54); splice(@{ $_[0]{checkpoints} }, 1) },
	'FAIL: seq 55: truncated after checkpoint (checkpoint in '
	  . $node->logfile
	  . ' line '
	  . log_line_of('acme', 60) . ')',
	'--checkpoints', $node->logfile);
check_edited('another tenant claimed', sub { $_[0]{tenant} = 'globex' },
	'FAIL: seq 1: hash mismatch');
check_edited('a hash that is not base64', sub { $_[0]{rows}[3]{hash} = 'abc' },
	'FAIL: malformed export: ');

my $cut = "$dir/cut.json";
write_file($cut, substr(slurp_file($acme), 0, 5000));
check_verify('a file cut short', [ '--key', $vkey1, $cut ], 'FAIL: malformed export: ');

# --- the signing key file ------------------------------------------------------

my $checkpoint_sql = q{SELECT * FROM envault.checkpoint('audit', 'acme')};
add_rows(['acme'], 81, 81);
foreach my $mode (0640, 0604)
{
	chmod($mode, $key1) or die "chmod: $!";
	check_error($node, 'appdb',
		sprintf('signing key file of mode %04o', $mode),
		$checkpoint_sql,
		'F0000',
		qq{signing key file "$key1" has group or world access},
		'A signing key file must not be accessible to its group or to other users.',
		'Change its permissions with chmod 0600, or 0400.');
}
chmod(0600, $key1) or die "chmod: $!";
is(sql("SELECT seq FROM envault.checkpoint('audit', 'acme')"),
	'81', 'a 0600 signing key file signs again');

my $rsa = "$dir/rsa.pem";
system_or_bail('openssl', 'genpkey', '-algorithm', 'RSA', '-pkeyopt',
	'rsa_keygen_bits:2048', '-out', $rsa);
chmod(0600, $rsa) or die "chmod: $!";
set_conf('envault.signing_key_file', $rsa);
add_rows(['acme'], 82, 82);
check_error($node, 'appdb',
	'an RSA key file',
	$checkpoint_sql,
	'F0000',
	qq{signing key file "$rsa" does not hold an Ed25519 private key},
	'It holds a private key of another algorithm.',
	'Create one with "openssl genpkey -algorithm ed25519".');

my $missing = "$dir/missing.pem";
set_conf('envault.signing_key_file', $missing);
check_error($node, 'appdb',
	'a missing key file',
	$checkpoint_sql,
	'F0000',
	qq{could not open signing key file "$missing": No such file or directory},
	undef,
	'Check envault.signing_key_file.');
set_conf('envault.signing_key_file', $key1);

# --- proofs: two checkpoints, or one row, with nothing else ---------------
#
# envault-verify --consistency and --inclusion, with proofs as the database
# gives them; a checkpoint of another database (by the pinned --database)
# does not count, nor does a row whose hash is not the one in the tree.
my ($old_seq, $new_seq) = split /\|/, sql(
	q{SELECT min(seq) || '|' || max(seq) FROM envault.checkpoints
	   WHERE tenant = 'acme' AND tree_root IS NOT NULL});
ok($old_seq < $new_seq, 'acme has two tree-head checkpoints');
my %note;
foreach my $seq ($old_seq, $new_seq)
{
	$note{$seq} = "$dir/acme-$seq.note";
	write_file($note{$seq},
		sql("SELECT note FROM envault.checkpoints WHERE tenant = 'acme'
			  AND tree_root IS NOT NULL AND seq = $seq ORDER BY checkpoint_id DESC LIMIT 1"));
}
my $cproof = "$dir/consistency.proof";
write_file($cproof,
	sql("SELECT string_agg(encode(h, 'base64'), E'\\n') FROM
		 unnest(envault.consistency_proof('audit', 'acme', $old_seq, $new_seq)) h")
	  . "\n");
my @keys = ('--key', $vkey1, '--key', $vkey2);
my ($rc, $out, $err) = run($verifier, @keys, '--database', $dbid,
	'--consistency', $note{$old_seq}, $note{$new_seq}, $cproof);
is($rc, 0, 'consistency: the newer checkpoint extends the older one') or diag($err);
like($out, qr/^OK: .*: the tree of $new_seq rows extends the tree of $old_seq rows$/,
	'consistency: what envault-verify says');
($rc, $out, $err) = run($verifier, @keys, '--database', $otherid,
	'--consistency', $note{$old_seq}, $note{$new_seq}, $cproof);
is($rc, 1, 'consistency: refused for another database');
like($out, qr/^FAIL: .* is a checkpoint of another database than \Q$otherid\E \(--database\)$/,
	'consistency: the checkpoint names another database');
($rc, $out, $err) = run($verifier, @keys, '--database', $dbid,
	'--consistency', $note{$new_seq}, $note{$old_seq}, $cproof);
is($rc, 1, 'consistency: refused with the checkpoints swapped');

my $row = 3;
my $row_hash = sql("SELECT encode(envault_hash, 'base64') FROM audit
					 WHERE tenant = 'acme' AND envault_seq = $row");
my $other_hash = sql("SELECT encode(envault_hash, 'base64') FROM audit
					   WHERE tenant = 'acme' AND envault_seq = $row + 1");
my $iproof = "$dir/inclusion.proof";
write_file($iproof,
	sql("SELECT string_agg(encode(h, 'base64'), E'\\n') FROM
		 unnest(envault.inclusion_proof('audit', 'acme', $row, $new_seq)) h")
	  . "\n");
($rc, $out, $err) = run($verifier, @keys, '--database', $dbid,
	'--inclusion', $note{$new_seq}, $row, $row_hash, $iproof);
is($rc, 0, 'inclusion: the row is in the signed tree') or diag($err);
like($out, qr/^OK: .*: row $row is in the tree of $new_seq rows$/,
	'inclusion: what envault-verify says');
($rc, $out, $err) = run($verifier, @keys, '--database', $dbid,
	'--inclusion', $note{$new_seq}, $row, $other_hash, $iproof);
is($rc, 1, 'inclusion: refused for another row\'s hash');
($rc, $out, $err) = run($verifier, @keys, '--database', $otherid,
	'--inclusion', $note{$new_seq}, $row, $row_hash, $iproof);
is($rc, 1, 'inclusion: refused for another database');

done_testing();
