# envault TAP test: the server killed with SIGKILL in the middle of chained
# inserts under load loses nothing that was committed, and every chain
# verifies after crash recovery.
#
# envault preloaded, the master key in a 0600 file, the checkpoint signing
# key an Ed25519 PEM file (openssl genpkey), mode 0600.  A chained table,
# events, with tenants t0 to t5; most rows carry a value encrypted with
# env_encrypt under their tenant, md5(id) with int8send(id) as associated
# data.  Concurrent psql scripts (EnvaultTest.pm) echo a line after every
# COMMIT the server acknowledged:
#
#   w0, w1   one tenant each (t0, t1);
#   w2, w3   both on tenant t2, one writing plain rows, the other encrypted;
#   w4       every transaction writes 2 or 3 of t3, t4, t5;
#   w5       every transaction writes 2 of all six tenants;
#            (multi-tenant transactions write their tenants in increasing
#            order of chain lock key, read from pg_locks beforehand, so that
#            they never get the serialization failure of docs/audit-chain.md,
#            "Concurrency", which would stop the script)
#   signer   envault.checkpoint() of every chain of the table, echoing what
#            it signed, and a CHECKPOINT of the server every fourth time;
#   reader   decrypts the newest values (so that the access log's chain is
#            written by envault's worker at the same time).
#
# Once the writers, the signer and the server's checkpoints have made
# enough progress (polled, never slept for), the postmaster and every other
# server process are killed at once, wherever they are; the node goes
# through crash recovery at the next start.  Two rounds, the second on the
# chains as the first crash left them.  After each:
#   - every acknowledged transaction is there, whole; each writer's
#     transactions there are its acknowledged ones and at most the one in
#     flight, whole or not at all; nothing else;
#   - the indexes of the chained table are sound (amcheck), and so is the
#     unique index of envault.chain_heads, through which heads are read;
#   - every chain of every chained table verifies (verify_chain, which also
#     checks every stored checkpoint's signature and row), and,
#     independently, each tenant's numbers run 1 to count(*) and each row
#     links to the one before;
#   - every value decrypts to its plaintext; every acknowledged checkpoint
#     is stored, and in the server log;
#   - inserting goes on: each tenant's next row gets the number after the
#     head and links to its hash; a new checkpoint signs every head; every
#     chain still verifies.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest
  qw(:DEFAULT crash_when_ready acks_after_crash query_is chain_lock_key);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('crash_chain');
$node->init;
my $key_file = $node->basedir . '/master.key';
write_private_file($key_file, random_key_hex() . "\n");
my $signing_key = $node->basedir . '/signing.pem';
system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out',
	$signing_key);
chmod(0600, $signing_key) or die "could not chmod \"$signing_key\": $!";
# No autovacuum: no worker may start behind the test's back and outlive the
# killed postmaster.  No statement logging: the scripts run thousands.
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'envault'\n"
	  . "envault.master_key_file = '$key_file'\n"
	  . "envault.signing_key_file = '$signing_key'\n"
	  . "autovacuum = off\n"
	  . "max_connections = 30\n"
	  . "log_statement = none\n");
$node->start;

my @tenants = map { "t$_" } 0 .. 5;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
CREATE EXTENSION amcheck;
SELECT envault.create_tenant('t' || g), envault.create_data_key('t' || g, 'events')
  FROM generate_series(0, 5) g;
CREATE TABLE events (
	id		bigint PRIMARY KEY,
	tenant	text NOT NULL,
	writer	integer NOT NULL,
	tx		integer NOT NULL,
	secret	bytea		-- md5(id) encrypted under the tenant, aad int8send(id)
);
SELECT envault.enable_audit_chain('events', 'tenant');
-- the plaintext, or NULL if the ciphertext does not decrypt
CREATE FUNCTION try_decrypt(c bytea, aad bytea) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	RETURN envault.env_decrypt_text(c, aad);
EXCEPTION WHEN OTHERS THEN
	RETURN NULL;
END $$;
-- what the writers were to write, of the transactions they may have committed
CREATE TABLE planned (id bigint PRIMARY KEY, tenant text, writer integer,
                      tx integer, enc boolean, acked boolean);
CREATE TABLE cp_acked (tenant text, seq bigint);
});

# The tenants in increasing order of their chain lock keys
my %lock_key = map {
	$_ => chain_lock_key($node, "INSERT INTO events VALUES (-1, '$_', -1, -1, NULL)")
} @tenants;
my %rank;
my @by_key = sort { $lock_key{$a} cmp $lock_key{$b} } @tenants;
@rank{@by_key} = 0 .. $#by_key;
note 'tenants by chain lock key: ' . join(' ', @by_key);

my $ntx = 8000;    # far more than a writer commits before the crash
srand(51);

# Writer $w's transactions of round $round: lists of [id, tenant, encrypted]
sub plan_writer
{
	my ($round, $w) = @_;
	my @txs;
	foreach my $k (0 .. $ntx - 1)
	{
		my @t;
		if    ($w <= 1) { @t = ("t$w") }
		elsif ($w <= 3) { @t = ('t2') }
		elsif ($w == 4)
		{
			@t = grep { rand() < 0.8 } qw(t3 t4 t5);
			@t = qw(t3 t5) if @t < 2;
		}
		else
		{
			my $a = int(rand(6));
			my $b = ($a + 1 + int(rand(5))) % 6;
			@t = ("t$a", "t$b");
		}
		my $id = $round * 100_000_000 + $w * 10_000_000 + $k * 10;
		my @rows;
		foreach my $t (sort { $rank{$a} <=> $rank{$b} } @t)
		{
			foreach (1 .. 1 + int(rand(2)))
			{
				my $enc =
				    $w == 2 ? 0
				  : ($w == 1 || $w == 5) ? int(rand(2))
				  :                        1;
				push @rows, [ $id++, $t, $enc ];
			}
		}
		push @txs, \@rows;
	}
	return \@txs;
}

sub writer_sql
{
	my ($w, $txs) = @_;
	my $sql = '';
	foreach my $k (0 .. $#$txs)
	{
		$sql .= "BEGIN;\n";
		foreach my $r (@{ $txs->[$k] })
		{
			my ($id, $t, $enc) = @$r;
			my $secret =
			  $enc
			  ? "envault.env_encrypt('$t', 'events', md5('$id'), int8send($id))"
			  : 'NULL';
			$sql .= "INSERT INTO events VALUES ($id, '$t', $w, $k, $secret);\n";
		}
		$sql .= "COMMIT;\n\\echo $k\n";
	}
	return $sql;
}

my $signer_sql = '';
foreach my $i (1 .. 20000)
{
	$signer_sql .=
	    "SELECT coalesce(string_agg(tenant || ':' || seq, ' '), '-') AS signed"
	  . " FROM envault.checkpoint('events') \\gset\n"
	  . "\\echo :signed\n";
	$signer_sql .= "CHECKPOINT;\n" if $i % 4 == 0;
}
my $reader_sql =
  (     "SELECT count(envault.env_decrypt(secret, int8send(id))) FROM"
	  . " (SELECT * FROM events WHERE secret IS NOT NULL ORDER BY id DESC LIMIT 3) s;\n"
  ) x 20000;

# The head (seq and hash) of each tenant's chain: tenant => "seq hash"
sub heads
{
	return {
		map { split /\|/ } split /\n/,
		$node->safe_psql(
			'postgres', q{
SELECT DISTINCT ON (tenant) tenant || '|' || envault_seq || ' ' || encode(envault_hash, 'hex')
  FROM events ORDER BY tenant, envault_seq DESC})
	};
}

sub check_chains
{
	my ($name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $nrows = $node->safe_psql('postgres', 'SELECT count(*) FROM events');
	query_is($node,
		q{SELECT count(bt_index_check(indexrelid::regclass, true)::text) FROM pg_index
		   WHERE indrelid IN ('events'::regclass, 'envault.chain_heads'::regclass)},
		'2',
		"$name: the primary key and the unique index of envault.chain_heads are sound and match their tables"
	);
	query_is($node,
		q{SELECT count(*) FILTER (WHERE NOT ok) || ' bad of ' || count(*) || ', '
		         || sum(rows_checked)
		    FROM envault.verify_chain('events')},
		"0 bad of 6, $nrows",
		"$name: verify_chain finds the 6 chains of events sound, with all $nrows rows"
	);
	query_is($node,
		q{SELECT string_agg(c.tbl::text || ' ' || coalesce(v.tenant, 'NULL') || ' '
		                    || v.first_bad_seq || ' ' || v.reason, '; ')
		    FROM envault.audit_chains c, envault.verify_chain(c.tbl) v
		   WHERE NOT v.ok},
		'',
		"$name: every chain of every chained table verifies (key events, access log)"
	);
	query_is($node,
		q{SELECT count(*) FROM (
		    SELECT tenant FROM events GROUP BY tenant
		    HAVING count(*) <> max(envault_seq) OR min(envault_seq) <> 1
		        OR count(DISTINCT envault_seq) <> count(*)) s},
		'0',
		"$name: each tenant's numbers run 1 to count(*), no duplicate, none missing"
	);
	query_is($node,
		q{SELECT count(*) FROM (
		    SELECT envault_prev, lag(envault_hash, 1,
		             '\x0000000000000000000000000000000000000000000000000000000000000000')
		             OVER (PARTITION BY tenant ORDER BY envault_seq) AS before
		      FROM events) s
		   WHERE envault_prev IS DISTINCT FROM before},
		'0', "$name: every row links to the hash of the row before it");
	return;
}

foreach my $round (1, 2)
{
	# requested checkpoints: pg_stat_checkpointer from PostgreSQL 17 on
	my $requested = $node->pg_version >= 17
	  ? 'SELECT num_requested FROM pg_stat_checkpointer'
	  : 'SELECT checkpoints_req FROM pg_stat_bgwriter';
	my $name = "round $round";
	my %plan = map { $_ => plan_writer($round, $_) } 0 .. 5;
	my @writers =
	  map { start_script($node, "r${round}_w$_", writer_sql($_, $plan{$_})) }
	  0 .. 5;
	my $pgcp0 = $node->safe_psql('postgres', $requested);
	my $cp0 = $node->safe_psql('postgres',
		'SELECT coalesce(max(checkpoint_id), 0) FROM envault.checkpoints');
	my $signer = start_script($node, "r${round}_signer", $signer_sql);
	my $reader = start_script($node, "r${round}_reader", $reader_sql);

	my $offset = crash_when_ready(
		$node, $name, qq{
SELECT (SELECT count(*) >= 1500 FROM events WHERE id >= $round * 100000000)
   AND (SELECT count(DISTINCT writer) = 6 FROM events WHERE id >= $round * 100000000)
   AND (SELECT count(*) >= 12 FROM envault.checkpoints WHERE checkpoint_id > $cp0)
   AND ($requested) >= $pgcp0 + 2
   AND (SELECT count(*) >= $round FROM envault.access_log)},
		@writers, $signer, $reader);

	my %acked;
	foreach my $w (0 .. 5)
	{
		my @t = acks_after_crash($writers[$w]);
		is(join(',', @t), join(',', 0 .. $#t),
			"$name: w$w: its transactions were acknowledged in order");
		cmp_ok(scalar(@t), '<', $ntx, "$name: w$w: was still writing at the crash");
		$acked{$w} = scalar(@t);
	}
	my @signed = acks_after_crash($signer);
	acks_after_crash($reader);
	note "$name: acknowledged transactions: "
	  . join(', ', map { "w$_ $acked{$_}" } 0 .. 5)
	  . '; checkpoint calls: '
	  . scalar(@signed);

	restart_after_crash($node, $offset, $name);

	# The rows of each writer's acknowledged transactions, and of the one in
	# flight (acked = false)
	my @rows;
	foreach my $w (0 .. 5)
	{
		foreach my $k (0 .. $acked{$w})
		{
			my $acked = $k < $acked{$w} ? 'true' : 'false';
			push @rows, "($_->[0], '$_->[1]', $w, $k, "
			  . ($_->[2] ? 'true' : 'false')
			  . ", $acked)"
			  foreach @{ $plan{$w}[$k] };
		}
	}
	$node->safe_psql('postgres',
		"TRUNCATE planned; INSERT INTO planned VALUES " . join(",\n", @rows));
	my $this_round = "id >= $round * 100000000";

	query_is($node,
		q{SELECT count(*) FROM planned p
		   WHERE acked AND NOT EXISTS (SELECT FROM events e WHERE e.id = p.id)},
		'0', "$name: every row of every acknowledged transaction is there");
	query_is($node,
		qq{SELECT count(*) FROM events e
		    WHERE $this_round
		      AND NOT EXISTS (SELECT FROM planned p
		                       WHERE p.id = e.id AND p.tenant = e.tenant AND p.writer = e.writer
		                         AND p.tx = e.tx AND p.enc = (e.secret IS NOT NULL))},
		'0',
		"$name: every row there is one of those, as planned; nothing of a later transaction"
	);
	my $in_flight = $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE n = total) || ' ' || count(*) FILTER (WHERE n > 0 AND n < total)
  FROM (SELECT p.writer, count(e.id) AS n, count(*) AS total
          FROM planned p LEFT JOIN events e USING (id)
         WHERE NOT p.acked GROUP BY p.writer) s});
	my ($whole, $partial) = split / /, $in_flight;
	is($partial, 0,
		"$name: each writer's transaction in flight is there whole or not at all");
	note "$name: $whole transactions committed without their acknowledgement";

	check_chains("$name, after the crash");

	my $nsecrets = $node->safe_psql('postgres',
		'SELECT count(*) FROM events WHERE secret IS NOT NULL');
	query_is($node,
		q{SELECT count(*) || ' ' || count(*) FILTER (WHERE d = md5(id::text))
		    FROM (SELECT id, try_decrypt(secret, int8send(id)) AS d
		            FROM events WHERE secret IS NOT NULL) s},
		"$nsecrets $nsecrets",
		"$name: all $nsecrets committed values decrypt to their plaintext");

	# What the signer acknowledged: a line per call, "-" or tenant:seq ...
	my @cps = map { /^-$/ ? () : split / / } @signed;
	cmp_ok(scalar(@cps), '>=', 12, "$name: the signer signed checkpoints");
	$node->safe_psql('postgres',
		'TRUNCATE cp_acked; INSERT INTO cp_acked VALUES '
		  . join(', ', map { my ($t, $s) = split /:/; "('$t', $s)" } @cps));
	query_is($node,
		q{SELECT count(*) FROM cp_acked a
		   WHERE NOT EXISTS (SELECT FROM envault.checkpoints c
		                      WHERE c.chain_id = (SELECT chain_id FROM envault.audit_chains
		                                           WHERE tbl = 'events'::regclass)
		                        AND c.tenant = a.tenant AND c.seq = a.seq)},
		'0',
		"$name: every acknowledged checkpoint is stored");
	my $log = slurp_file($node->logfile);
	my $dbid = $node->safe_psql('postgres', 'SELECT envault.database_id()');
	my @missing = grep {
		my ($t, $s) = split /:/;
		$log !~ /envault checkpoint: origin=envault\/\Q$dbid\E\/public\.events\/$t seq=$s hash=/
	} @cps;
	is(scalar(@missing), 0,
		"$name: every acknowledged checkpoint is in the server log")
	  or diag("missing: @missing");

	# And inserting goes on: the next row of each tenant follows the head.
	my $before = heads();
	is(scalar(keys %$before), 6, "$name: all six tenants have chains");
	$node->safe_psql(
		'postgres',
		"INSERT INTO events SELECT $round * 100000000 + 99000000 + g, 't' || g, -1, -1,"
		  . " envault.env_encrypt('t' || g, 'events', md5(($round * 100000000 + 99000000 + g)::text),"
		  . " int8send($round * 100000000 + 99000000 + g))"
		  . " FROM generate_series(0, 5) g");
	my $after = $node->safe_psql(
		'postgres', qq{
SELECT string_agg(tenant || ' ' || envault_seq || ' ' || encode(envault_prev, 'hex'), ',' ORDER BY tenant)
  FROM events WHERE id >= $round * 100000000 + 99000000});
	is( $after,
		join(',',
			map { my ($s, $h) = split / /, $before->{$_}; "$_ " . ($s + 1) . " $h" }
			  sort @tenants),
		"$name: after the restart, each tenant's next row gets the number after its head and links to its hash"
	);
	query_is($node, q{SELECT count(*) FROM envault.checkpoint('events')},
		'6', "$name: a checkpoint signs the six new heads");
	check_chains("$name, after new rows");
}

$node->stop;
done_testing();
