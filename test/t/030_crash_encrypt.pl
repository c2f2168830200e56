# envault TAP test: the server killed with SIGKILL in the middle of
# encryption under load, and in the middle of key creation and rotation,
# loses nothing that was committed.
#
# envault preloaded, the master key in a 0600 file.  Concurrent sessions run
# psql scripts that echo a line after every COMMIT the server acknowledged.
# Once the sessions have made enough progress (polled, never slept for), the
# postmaster and every other server process are killed with SIGKILL at once,
# so that each backend dies wherever it is (killed alone, the postmaster
# would let the backends finish their statements and abort cleanly); the
# node goes through crash recovery at the next start.
#
# 1. Encryption under load.  Five writers insert rows in transactions of
#    three, each row's value the encryption of md5(id) with int8send(id) as
#    associated data, under tenant and purpose given by the transaction's
#    number; some purposes are new, so data keys are created (perhaps by
#    two writers at once) all along.  After the restart: every acknowledged
#    transaction is there, each writer's committed transactions are its
#    acknowledged ones plus at most the one in flight, whole; every row
#    there decrypts to exactly its plaintext under a key of its tenant and
#    purpose; the data keys are exactly those of the rows.
# 2. Key creation.  First, a data key created while a tenant key rotation
#    runs, both ways round: the rotation must not commit past a data key it
#    did not rewrap.  Then sessions create tenants and data keys (by
#    create_data_key, by a first encryption, by blind_index, two sessions
#    racing for the same new purposes) and rotate data keys and tenant keys
#    of shared tenants, writing a value after each step.  After the restart:
#    every acknowledged tenant, key, rotation and value is there, and at
#    most one step per session more; every value decrypts; blind indexes
#    are unchanged; and work goes on: the tenant whose creation was in
#    flight can be created (or exists, whole), every tenant key rotates.
#
# After each crash and at the end, the key tables are checked: every row
# meets the tables' check and unique constraints (copied into tables with
# the same ones) and the indexes match the heap (amcheck); exactly one
# active data key per (tenant, purpose), versions 1 to n, each wrapped
# under its tenant's current key version; envault.key_events holds exactly
# one creation event for every tenant and data key, one rotation event for
# every rotation, and nothing else.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_hex);
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(:DEFAULT acks_after_crash);
use PostgreSQL::Test::BackgroundPsql;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $timeout = $PostgreSQL::Test::Utils::timeout_default;

my $key = random_key_hex();
# check value of the master key: HMAC-SHA256(key, "envault/v1/key-check-value"), 16 bytes
my $kcv = substr(
	hmac_sha256_hex('envault/v1/key-check-value', pack('H*', $key)), 0, 32);

my $node = PostgreSQL::Test::Cluster->new('crash_encrypt');
$node->init;
my $key_file = $node->basedir . '/master.key';
write_private_file($key_file, "$key\n");
# No autovacuum: no worker may start behind the test's back and outlive the
# killed postmaster.  No statement logging: the scripts run thousands.
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'envault'\n"
	  . "envault.master_key_file = '$key_file'\n"
	  . "autovacuum = off\n"
	  . "log_statement = none\n");
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
CREATE EXTENSION amcheck;
-- the id of the data key a ciphertext names (bytes 4 to 11, big-endian)
CREATE FUNCTION key_id_of(c bytea) RETURNS bigint IMMUTABLE STRICT
LANGUAGE sql AS $$ SELECT ('x' || encode(substring(c FROM 5 FOR 8), 'hex'))::bit(64)::bigint $$;
-- the plaintext, or NULL if the ciphertext does not decrypt
CREATE FUNCTION try_decrypt(c bytea, aad bytea) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	RETURN envault.env_decrypt_text(c, aad);
EXCEPTION WHEN OTHERS THEN
	RETURN NULL;
END $$;
});

# $sql returns 0 (a count of what is wrong)
sub is_zero
{
	my ($sql, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	is($ret, 0, "$name: the query runs") or diag($err);
	is($out, '0', $name);
	return;
}

sub check_key_tables
{
	my ($name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	# Every row into a table with the same CHECK constraints and unique
	# indexes (the partial one on active keys included): all evaluated again.
	my ($ret, $out, $err) = $node->psql(
		'postgres', q{
BEGIN;
CREATE TEMP TABLE copy_tenants (LIKE envault.tenants INCLUDING ALL);
INSERT INTO copy_tenants SELECT * FROM envault.tenants;
CREATE TEMP TABLE copy_data_keys (LIKE envault.data_keys INCLUDING ALL);
INSERT INTO copy_data_keys SELECT * FROM envault.data_keys;
ROLLBACK;});
	is($ret, 0,
		"$name: every row of the key tables meets their check and unique constraints"
	) or diag($err);
	($ret, $out, $err) = $node->psql(
		'postgres', q{
SELECT count(bt_index_check(i.indexrelid::regclass, true)::text)
  FROM pg_index i
 WHERE i.indrelid = ANY ('{envault.tenants,envault.data_keys,envault.key_events,envault.tokens}'::regclass[])});
	is($ret . '|' . $out, '0|7',
		"$name: the 7 indexes of the key tables are sound and match their tables"
	) or diag($err);
	my $chains = $node->safe_psql('postgres',
		q{SELECT count(*) FROM (SELECT DISTINCT tenant FROM envault.key_events) d});
	is( $node->safe_psql(
			'postgres', q{
SELECT count(*) FILTER (WHERE NOT ok) || ' bad of ' || count(*) || ', '
       || (sum(rows_checked) = (SELECT count(*) FROM envault.key_events))
  FROM envault.verify_chain('envault.key_events')}),
		"0 bad of $chains, true",
		"$name: every chain of key events verifies, every event in it");

	is_zero(
		qq{SELECT count(*) FROM envault.tenants
		    WHERE state <> 'active' OR key_source <> 'master'
		       OR master_kcv IS DISTINCT FROM '\\x$kcv'},
		"$name: every tenant is active, its key wrapped by the master key");
	is_zero(
		q{SELECT count(*) FROM (SELECT FROM envault.data_keys
		   GROUP BY tenant, purpose
		  HAVING count(*) FILTER (WHERE state = 'active') <> 1
		      OR count(*) FILTER (WHERE state NOT IN ('active', 'rotated')) <> 0
		      OR count(*) <> max(version)
		      OR max(version) FILTER (WHERE state = 'active') <> max(version)) s},
		"$name: every (tenant, purpose) with data keys has exactly one active key, its latest, and versions 1 to n"
	);
	is_zero(
		q{SELECT count(*) FROM envault.data_keys d
		    LEFT JOIN envault.tenants t USING (tenant)
		   WHERE t.tenant IS NULL OR d.tenant_key_version <> t.key_version},
		"$name: every data key is wrapped under its tenant's current key version"
	);

	is_zero(
		q{SELECT count(*) FROM envault.tenants t
		   WHERE (SELECT count(*) FROM envault.key_events e
		           WHERE e.operation = 'tenant created' AND e.tenant = t.tenant) <> 1},
		"$name: one 'tenant created' event for every tenant");
	is_zero(
		q{SELECT (SELECT count(*) FROM envault.key_events WHERE operation = 'tenant created')
		       - (SELECT count(*) FROM envault.tenants)},
		"$name: no 'tenant created' event for a tenant that does not exist");
	is_zero(
		q{SELECT count(*) FROM envault.data_keys d
		   WHERE (SELECT count(*) FROM envault.key_events e
		           WHERE e.operation = 'data key created' AND e.tenant = d.tenant
		             AND e.purpose = d.purpose AND e.version = d.version) <> 1},
		"$name: one 'data key created' event for every data key");
	is_zero(
		q{SELECT (SELECT count(*) FROM envault.key_events WHERE operation = 'data key created')
		       - (SELECT count(*) FROM envault.data_keys)},
		"$name: no 'data key created' event for a data key that does not exist"
	);
	is_zero(
		q{SELECT count(*) FROM envault.data_keys d
		   WHERE (SELECT count(*) FROM envault.key_events e
		           WHERE e.operation = 'data key rotated' AND e.tenant = d.tenant
		             AND e.purpose = d.purpose AND e.version = d.version)
		         <> (d.version > 1)::int},
		"$name: one 'data key rotated' event for every version after the first, none for a first"
	);
	is_zero(
		q{SELECT (SELECT count(*) FROM envault.key_events WHERE operation = 'data key rotated')
		       - (SELECT count(*) FROM envault.data_keys WHERE version > 1)},
		"$name: no 'data key rotated' event for a version that does not exist"
	);
	is_zero(
		q{SELECT count(*) FROM envault.tenants t
		   WHERE ARRAY(SELECT substring(e.detail FROM '^key version (\d+);')::int
		                 FROM envault.key_events e
		                WHERE e.operation = 'tenant key rotated' AND e.tenant = t.tenant
		                ORDER BY e.event_id)
		         <> ARRAY(SELECT generate_series(2, t.key_version))},
		"$name: one 'tenant key rotated' event for every tenant key version after the first, in order"
	);
	is_zero(
		q{SELECT (SELECT count(*) FROM envault.key_events WHERE operation = 'tenant key rotated')
		       - (SELECT sum(key_version - 1) FROM envault.tenants)},
		"$name: no 'tenant key rotated' event for a version that does not exist"
	);
	is_zero(
		q{SELECT count(*) FROM envault.key_events
		   WHERE operation NOT IN ('tenant created', 'data key created',
		                           'data key rotated', 'tenant key rotated')},
		"$name: no other key event");
	return;
}

# Wait until $sql (a boolean) is true, every script still running; then
# kill the server.  Returns the log offset of the crash, and the value of
# $report (a query) just before it.
sub crash_after_progress
{
	my ($what, $sql, $report, @scripts) = @_;
	my $poll = $node->background_psql('postgres');
	my $deadline = time() + $timeout;
	while ($poll->query_safe($sql) ne 't')
	{
		foreach my $s (@scripts)
		{
			die "script $s->{name} stopped before the crash:\n"
			  . slurp_file($s->{err})
			  unless script_running($s);
		}
		die "no progress: $what" if time() > $deadline;
		usleep(10_000);
	}
	foreach my $s (@scripts)
	{
		die "script $s->{name} stopped before the crash:\n"
		  . slurp_file($s->{err})
		  unless script_running($s);
	}
	my $at = $poll->query_safe($report);
	my $offset = crash($node, $poll, every_process => 1);
	eval { $poll->{run}->kill_kill; };
	return ($offset, $at);
}

# ==== 1. encryption under load ================================================

my $nwriters = 5;
# far more than a writer commits before the crash
my $ntx = 4000;

$node->safe_psql(
	'postgres', q{
SELECT envault.create_tenant('ld' || g) FROM generate_series(0, 3) g;
SELECT envault.create_data_key('ld' || g, 'warm') FROM generate_series(0, 3) g;
-- Transaction t writes rows 3t, 3t + 1, 3t + 2, under one tenant and
-- purpose: 'warm', or a new purpose every 40 transactions (for each tenant,
-- in 2 to 4 transactions of 1 or 2 writers: created, perhaps by two at once).
CREATE FUNCTION load_tenant(t bigint) RETURNS text IMMUTABLE
LANGUAGE sql AS $$ SELECT 'ld' || t % 4 $$;
CREATE FUNCTION load_purpose(t bigint) RETURNS text IMMUTABLE
LANGUAGE sql AS $$ SELECT CASE WHEN t % 10 < 3 THEN 'g' || t / 40 ELSE 'warm' END $$;
CREATE FUNCTION load_ct(id bigint) RETURNS bytea VOLATILE
LANGUAGE sql AS $$
	SELECT envault.env_encrypt(load_tenant(id / 3), load_purpose(id / 3),
							   md5(id::text), int8send(id))
$$;
CREATE TABLE load (id bigint PRIMARY KEY, c bytea NOT NULL);
CREATE TABLE acked (t bigint PRIMARY KEY);
});

# Writer w runs transactions w, w + 5, w + 10 ..., echoing each number once
# it is committed.
my @writers;
foreach my $w (0 .. $nwriters - 1)
{
	my $sql = '';
	foreach my $k (0 .. $ntx - 1)
	{
		my $t = $k * $nwriters + $w;
		$sql .=
		    "BEGIN;\n"
		  . "INSERT INTO load SELECT i, load_ct(i) FROM generate_series("
		  . (3 * $t) . ', '
		  . (3 * $t + 2)
		  . ") i;\n"
		  . "COMMIT;\n"
		  . "\\echo $t\n";
	}
	push @writers, start_script($node, "writer$w", $sql);
}

my ($offset, $seen) = crash_after_progress(
	'writers',
	q{SELECT count(*) >= 900 FROM load},
	q{SELECT count(*) / 3 FROM load}, @writers);
note "killed with $seen transactions seen committed";

my @acked;
my %acked_by;
foreach my $w (0 .. $nwriters - 1)
{
	my @t = acks_after_crash($writers[$w]);
	my @want = map { $_ * $nwriters + $w } 0 .. $#t;
	is(join(',', @t), join(',', @want),
		"writer $w: its transactions were acknowledged in order");
	cmp_ok(scalar(@t), '<', $ntx,
		"writer $w: was still writing at the crash");
	$acked_by{$w} = scalar(@t);
	push @acked, @t;
}
note 'acknowledged transactions: '
  . join(', ', map { "writer $_: $acked_by{$_}" } sort keys %acked_by);
# Every transaction seen committed was acknowledged, or was about to be:
# at most one per writer had committed without its answer read.
cmp_ok(scalar(@acked), '>=', $seen - $nwriters,
	'the transactions seen committed before the crash were acknowledged');

restart_after_crash($node, $offset, 'killed under load');

$node->safe_psql('postgres',
	'INSERT INTO acked SELECT unnest(\'{' . join(',', @acked) . '}\'::bigint[])');

is_zero(
	q{SELECT count(*) FROM acked a
	   WHERE (SELECT count(*) FROM load WHERE id BETWEEN 3 * a.t AND 3 * a.t + 2) <> 3},
	'after the crash: every row of every acknowledged transaction is there');
is_zero(
	q{SELECT count(*) FROM (SELECT id / 3 FROM load GROUP BY 1 HAVING count(*) <> 3) s},
	'after the crash: every transaction there is whole');

# Each writer's transactions there: its acknowledged ones, and perhaps the
# one after them (committed, its answer lost in the crash); nothing else.
my %present = map { split /\|/ } split /\n/,
  $node->safe_psql(
	'postgres', qq{
SELECT w || '|' || n || ' ' || m
  FROM (SELECT t % $nwriters AS w, count(*) AS n, max(t / $nwriters) + 1 AS m
		  FROM (SELECT DISTINCT id / 3 AS t FROM load) s GROUP BY 1) s});
my $unacked = 0;
foreach my $w (0 .. $nwriters - 1)
{
	my ($n, $m) = split / /, ($present{$w} // '0 0');
	ok( $n == $m && ($n == $acked_by{$w} || $n == $acked_by{$w} + 1),
		"writer $w: after the crash its first $n transactions are there, $acked_by{$w} of them acknowledged"
	) or diag("transactions there: $n, up to number $m in its order");
	$unacked += $n - $acked_by{$w};
}
note "$unacked transactions committed without their acknowledgement";

# The values of $table (id, c), each md5(id) encrypted with int8send(id) as
# associated data, under the tenant and purpose given by two expressions:
#   values | right plaintext | wrong plaintext | not decrypting
#   | under a data key of their tenant and purpose
sub decrypt_sql
{
	my ($table, $tenant, $purpose) = @_;
	return qq{
SELECT count(*) || '|' || count(*) FILTER (WHERE d = md5(id::text))
	|| '|' || count(*) FILTER (WHERE d <> md5(id::text))
	|| '|' || count(*) FILTER (WHERE d IS NULL)
	|| '|' || count(*) FILTER (WHERE k.tenant = $tenant AND k.purpose = $purpose)
  FROM (SELECT *, try_decrypt(c, int8send(id)) AS d FROM $table) s
  LEFT JOIN envault.data_keys k ON k.key_id = key_id_of(s.c)};
}
my $load_sql = decrypt_sql('load', 'load_tenant(id / 3)', 'load_purpose(id / 3)');
my $nrows = $node->safe_psql('postgres', 'SELECT count(*) FROM load');
is($nrows, 3 * (scalar(@acked) + $unacked),
	'after the crash: three rows for each transaction there');
is($node->safe_psql('postgres', $load_sql),
	"$nrows|$nrows|0|0|$nrows",
	"after the crash: all $nrows rows decrypt to their plaintext, under a data key of their tenant and purpose"
);
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE try_decrypt(c, int8send(id + 1)) IS NULL) FROM load}),
	$nrows,
	'(and no row decrypts with the associated data of the next one)');

is_zero(
	q{SELECT count(*) FROM (
		SELECT tenant, purpose FROM envault.data_keys WHERE tenant LIKE 'ld%'
		EXCEPT SELECT DISTINCT load_tenant(id / 3), load_purpose(id / 3) FROM load) s},
	'after the crash: no data key of the load tenants without a row under it');
is_zero(
	q{SELECT count(*) FROM (
		SELECT DISTINCT load_tenant(id / 3), load_purpose(id / 3) FROM load
		EXCEPT SELECT tenant, purpose FROM envault.data_keys WHERE tenant LIKE 'ld%') s},
	'after the crash: a data key for every tenant and purpose of the rows');
my $created = $node->safe_psql('postgres',
	q{SELECT count(*) FROM envault.data_keys WHERE tenant LIKE 'ld%' AND purpose LIKE 'g%'});
note "$created data keys created during the load";
cmp_ok($created, '>=', 4, 'data keys were created during the load');
check_key_tables('after the crash under load');

# And it goes on: 300 rows more, with new purposes.
$node->safe_psql('postgres',
	q{INSERT INTO load SELECT i, load_ct(i) FROM generate_series(3000000, 3000299) i});
$nrows += 300;
is($node->safe_psql('postgres', $load_sql),
	"$nrows|$nrows|0|0|$nrows",
	'300 rows more: every row decrypts to its plaintext');

# ==== 2. key creation =========================================================

$node->safe_psql(
	'postgres', q{
CREATE TABLE kv (
	id		bigint PRIMARY KEY,
	tenant	text NOT NULL,
	purpose	text NOT NULL,
	c		bytea NOT NULL
);
CREATE PROCEDURE kv_put(id bigint, tenant text, purpose text)
LANGUAGE sql AS $$
	INSERT INTO kv VALUES (id, tenant, purpose,
		envault.env_encrypt(tenant, purpose, md5(id::text), int8send(id)))
$$;
SELECT envault.create_tenant(t) FROM unnest('{race1,race2}'::text[]) t;
});

# --- 2a. a data key created during a tenant key rotation ---------------------

# The rotation rewraps every data key of the tenant, and the old tenant key
# is gone once it commits: a data key it does not see (created meanwhile,
# not committed yet, or wrapped by the old key while it runs) could never be
# unwrapped again, nor anything under it.

# $s runs $sql in the background; wait until it waits for a lock, or is
# done.  True if it waits.
sub waits_for_lock
{
	my ($s, $pid, $sql, $marker) = @_;
	my $out = $s->query_until(qr/started\n/, "\\echo started\n$sql\n");
	# (what it printed after "started" is the statement's output)
	$s->{stdout} = ($out =~ s/\A.*?started\n//sr) . $s->{stdout};
	$node->poll_query_until(
		'postgres', qq{
SELECT wait_event_type = 'Lock' OR state = 'idle'
  FROM pg_stat_activity WHERE pid = $pid AND query LIKE '%$marker%'})
	  or die "the session running $marker neither ran nor waited";
	return $node->safe_psql('postgres',
		"SELECT wait_event_type FROM pg_stat_activity WHERE pid = $pid") eq
	  'Lock';
}

# $s's output, once it has printed $until
sub output_until
{
	my ($s, $until) = @_;
	my $deadline = time() + $timeout;
	while ($s->{stdout} !~ $until && time() < $deadline)
	{
		$s->{run}->pump_nb;
		usleep(10_000);
	}
	return $s->{stdout};
}

# "data key's tenant key version | tenant key version | the value decrypts",
# in a new session (nothing cached)
sub race_state
{
	my ($tenant, $purpose, $id) = @_;
	my ($ret, $out, $err) = $node->psql(
		'postgres', qq{
SELECT d.tenant_key_version || '|' || t.key_version || '|'
	|| coalesce((SELECT coalesce(try_decrypt(c, int8send(id)) = md5(id::text), false)
				   FROM kv WHERE id = $id)::text, 'no value')
  FROM envault.data_keys d JOIN envault.tenants t USING (tenant)
 WHERE tenant = '$tenant' AND purpose = '$purpose'});
	return $ret == 0 ? $out : "error: $err";
}

# A first encryption, not committed yet, then a rotation of its tenant's key.
my $enc = $node->background_psql('postgres');
$enc->query_safe(q{BEGIN; CALL kv_put(1, 'race1', 'new')});
my $rot = $node->background_psql('postgres');
my $rot_pid = $rot->query_safe('SELECT pg_backend_pid()');
ok( waits_for_lock(
		$rot, $rot_pid,
		q{SELECT 'rotated ' || envault.rotate_tenant_key('race1');},
		'rotate_tenant_key'),
	'a tenant key rotation waits for the transaction creating a data key of the tenant'
);
$enc->query_safe('COMMIT');
like(output_until($rot, qr/rotated \d+/),
	qr/rotated 2/, 'then it rotates to version 2');
is(race_state('race1', 'new', 1),
	'2|2|true',
	'the data key created meanwhile is rewrapped under version 2, and the value under it decrypts'
);
is( $node->safe_psql(
		'postgres',
		q{SELECT detail FROM envault.key_events
		   WHERE tenant = 'race1' AND operation = 'tenant key rotated'}),
	'key version 2; 1 data keys rewrapped',
	'the rotation counted it');

# A rotation, not committed yet, then a new data key of the tenant.
$rot->query_safe(q{BEGIN; SELECT envault.rotate_tenant_key('race2')});
my $enc_pid = $enc->query_safe('SELECT pg_backend_pid()');
ok( waits_for_lock(
		$enc, $enc_pid,
		q{SELECT 'created ' || envault.create_data_key('race2', 'new');},
		'create_data_key'),
	'creating a data key waits for the uncommitted rotation of its tenant key'
);
$rot->query_safe('COMMIT');
like(output_until($enc, qr/created \d+/),
	qr/created 1/, 'then it creates version 1');
$node->safe_psql('postgres', q{CALL kv_put(2, 'race2', 'new')});
is(race_state('race2', 'new', 2),
	'2|2|true',
	'wrapped under the new tenant key version 2, and the value under it decrypts'
);
$enc->quit;
$rot->quit;

# --- 2b. key operations, killed ------------------------------------------------

$node->safe_psql(
	'postgres', q{
SELECT envault.create_tenant('s' || g) FROM generate_series(0, 3) g;
CALL kv_put(10, 's0', 'p');
CALL kv_put(11, 's1', 'p');
CALL kv_put(12, 's2', 'p');
CALL kv_put(13, 's3', 'p');
});

# One transaction of a script: $body, then once committed, @acks echoed.
sub step
{
	my ($body, @acks) = @_;
	return "BEGIN;\n$body"
	  . "COMMIT;\n"
	  . join('', map { "\\echo $_\n" } @acks);
}

# A step's line: the value of id $id, under tenant $t and purpose $p
sub put
{
	my ($id, $t, $p) = @_;
	return "CALL kv_put($id, '$t', '$p');\n";
}

my @scripts;
my %max_unacked;    # values a session may have committed unacknowledged

# Sessions 1 and 2 create tenants cN_0, cN_1 ...: alone then with a data key
# (create_data_key) then a first encryption; or with a first encryption in
# the same transaction.
foreach my $c (0, 1)
{
	my $id = ($c + 1) * 1_000_000;
	my $sql = '';
	foreach my $i (0 .. 1999)
	{
		my $t = "c${c}_$i";
		my $create = "SELECT envault.create_tenant('$t') \\gset\n";
		if ($i % 3 == 2)
		{
			$sql .= step($create . put($id, $t, 'pc'), "tenant $t", "val $id");
			$id += 1;
			next;
		}
		$sql .= step($create, "tenant $t");
		$sql .= step(
			"SELECT envault.create_data_key('$t', 'pa') AS v \\gset\n"
			  . put($id, $t, 'pa'),
			"dk $t pa :v", "val $id");
		$sql .= step(put($id + 1, $t, 'pb') . put($id + 2, $t, 'pa'),
			'val ' . ($id + 1),
			'val ' . ($id + 2));
		$id += 3;
	}
	push @scripts, start_script($node, "creator$c", $sql);
	$max_unacked{ $c + 1 } = 2;
}

# Session 3 rotates data keys and tenant keys of s0 to s3, in turn, with a
# value after each rotation.
{
	my $id = 3_000_000;
	my $sql = '';
	foreach my $j (0 .. 2999)
	{
		my $s = 's' . ($j % 4);
		$sql .= step(
			"SELECT envault.rotate_data_key('$s', 'p') AS v \\gset\n"
			  . put($id, $s, 'p'),
			"drot $s p :v", "val $id");
		$sql .= step(
			"SELECT envault.rotate_tenant_key('$s') AS v \\gset\n"
			  . put($id + 1, $s, 'p'),
			"trot $s :v",
			'val ' . ($id + 1));
		$id += 2;
	}
	push @scripts, start_script($node, 'rotator', $sql);
	$max_unacked{3} = 1;
}

# Sessions 4 and 5 encrypt under new purposes qJ of s0 to s3, the same ones
# in the same order (racing to create each data key); session 4 also creates
# data keys rJ and blind index keys, recording the blind index of 'x'.
foreach my $n (4, 5)
{
	my $id = $n * 1_000_000;
	my $sql = '';
	foreach my $j (0 .. 5999)
	{
		my $s = 's' . ($j % 4);
		$sql .= step(put($id + $j, $s, "q$j"), 'val ' . ($id + $j));
		next if $n == 5;
		$sql .= step(
			"SELECT envault.create_data_key('$s', 'r$j') AS v \\gset\n",
			"dk $s r$j :v")
		  if $j % 2 == 0;
		$sql .= step(
			"SELECT encode(envault.blind_index('$s', 'q$j', 'x'), 'hex') AS h \\gset\n",
			"bidx $s q$j :h")
		  if $j % 4 == 1;
	}
	push @scripts, start_script($node, "purposes$n", $sql);
	$max_unacked{$n} = 1;
}

($offset) = crash_after_progress(
	'key operations', q{
SELECT (SELECT count(*) >= 400 FROM kv)
   AND (SELECT sum(key_version - 1) >= 8 FROM envault.tenants WHERE tenant LIKE 's_')
   AND (SELECT count(*) >= 20 FROM envault.tenants WHERE tenant LIKE 'c%')},
	'SELECT 1', @scripts);

# What each session had acknowledged
my (%tenants_acked, @keys_acked, @vals_acked);
foreach my $s (@scripts)
{
	foreach my $line (acks_after_crash($s))
	{
		my ($kind, @f) = split / /, $line;
		if ($kind eq 'tenant')
		{
			push @{ $tenants_acked{ substr($f[0], 0, 2) } }, $f[0];
		}
		elsif ($kind eq 'val')
		{
			push @vals_acked, $f[0];
		}
		else
		{
			die "unexpected acknowledgement \"$line\""
			  unless $kind =~ /^(dk|drot|trot|bidx)$/ && @f >= 2;
			push @keys_acked, [ $kind, @f ];
		}
	}
}
note sprintf(
	'acknowledged: %d tenants, %d key operations, %d values',
	scalar(map { @$_ } values %tenants_acked),
	scalar(@keys_acked), scalar(@vals_acked));

restart_after_crash($node, $offset, 'killed during key operations');

# --- after the crash -------------------------------------------------------------

# Tenants: the acknowledged ones, in order, and perhaps the next one.
my %next_tenant;
foreach my $c (0, 1)
{
	my @acked_t = @{ $tenants_acked{"c$c"} // [] };
	my $m = scalar(@acked_t);
	is(join(' ', @acked_t), join(' ', map { "c${c}_$_" } 0 .. $m - 1),
		"creator$c: its tenants were acknowledged in order");
	my $there = $node->safe_psql('postgres',
		qq{SELECT string_agg(tenant, ' ' ORDER BY split_part(tenant, '_', 2)::int)
		     FROM envault.tenants WHERE tenant LIKE 'c${c}\\_%'});
	$next_tenant{$c} = "c${c}_$m";
	ok( $there eq join(' ', @acked_t)
		  || $there eq join(' ', @acked_t, $next_tenant{$c}),
		"creator$c: after the crash its $m acknowledged tenants are there, and at most the next one"
	) or diag("tenants there: $there");
}

$node->safe_psql(
	'postgres', q{
CREATE TABLE keys_acked (kind text, tenant text, purpose text, version int, hex text);
CREATE TABLE vals_acked (id bigint PRIMARY KEY);
});
my @rows;
foreach my $k (@keys_acked)
{
	my ($kind, @f) = @$k;
	# dk and drot: tenant purpose version; trot: tenant version; bidx: tenant purpose hex
	my ($t, $p, $v, $h) =
	    $kind eq 'trot' ? ($f[0], undef, $f[1], undef)
	  : $kind eq 'bidx' ? ($f[0], $f[1], undef, $f[2])
	  :                   (@f, undef);
	push @rows,
	  '(' . join(', ',
		map { defined $_ ? "'$_'" : 'NULL' } ($kind, $t, $p, $v, $h)) . ')';
}
$node->safe_psql('postgres',
	'INSERT INTO keys_acked VALUES ' . join(",\n", @rows))
  if @rows;
$node->safe_psql('postgres',
	'INSERT INTO vals_acked SELECT unnest(\'{' . join(',', @vals_acked) . '}\'::bigint[])');

is_zero(
	q{SELECT count(*) FROM keys_acked a
	   WHERE a.kind IN ('dk', 'drot')
	     AND NOT EXISTS (SELECT FROM envault.data_keys d
	                      WHERE (d.tenant, d.purpose, d.version) = (a.tenant, a.purpose, a.version))},
	'after the crash: every acknowledged data key and data key rotation is there'
);
is_zero(
	q{SELECT count(*) FROM envault.data_keys d
	   WHERE d.tenant LIKE 's_' AND d.purpose = 'p' AND d.state = 'active'
	     AND d.version - (SELECT coalesce(max(a.version), 1) FROM keys_acked a
	                       WHERE a.kind = 'drot' AND a.tenant = d.tenant) NOT IN (0, 1)},
	'after the crash: the data keys of s0 to s3 are at the version last acknowledged, or one more'
);
is_zero(
	q{SELECT count(*) FROM envault.tenants t
	   WHERE t.tenant LIKE 's_'
	     AND t.key_version - (SELECT coalesce(max(a.version), 1) FROM keys_acked a
	                           WHERE a.kind = 'trot' AND a.tenant = t.tenant) NOT IN (0, 1)},
	'after the crash: the tenant keys of s0 to s3 are at the version last acknowledged, or one more'
);
is_zero(
	q{SELECT count(*) FROM keys_acked
	   WHERE kind = 'bidx'
	     AND encode(envault.blind_index(tenant, purpose, 'x'), 'hex') IS DISTINCT FROM hex},
	'after the crash: every acknowledged blind index is unchanged');
is_zero(
	q{SELECT count(*) FROM envault.data_keys
	   WHERE purpose LIKE '\_bidx.%'
	     AND envault.blind_index(tenant, substr(purpose, 7), 'x') IS NULL},
	'after the crash: every blind index key works');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE envault.create_data_key(tenant, purpose) = version)
		         || '|' || count(*)
		    FROM envault.data_keys
		   WHERE state = 'active' AND purpose NOT LIKE '\_bidx.%'}),
	$node->safe_psql(
		'postgres',
		q{SELECT count(*) || '|' || count(*) FROM envault.data_keys
		   WHERE state = 'active' AND purpose NOT LIKE '\_bidx.%'}),
	'after the crash: every active data key unwraps and stays the active one');
is_zero(
	q{SELECT count(*) FROM envault.data_keys d
	   WHERE d.tenant LIKE 's_' AND d.purpose = 'p'
	     AND NOT EXISTS (SELECT FROM kv WHERE key_id_of(kv.c) = d.key_id)},
	'after the crash: every version of the rotated data keys has a value under it');

is_zero(q{SELECT count(*) FROM vals_acked a WHERE NOT EXISTS (SELECT FROM kv WHERE kv.id = a.id)},
	'after the crash: every acknowledged value is there');
my %extra = map { split /\|/ } split /\n/,
  $node->safe_psql(
	'postgres', q{
SELECT id / 1000000 || '|' || count(*) FROM kv
 WHERE id >= 1000000 AND id NOT IN (SELECT id FROM vals_acked)
 GROUP BY id / 1000000});
foreach my $n (sort keys %max_unacked)
{
	cmp_ok($extra{$n} // 0, '<=', $max_unacked{$n},
		"session $n: after the crash at most its step in flight is there unacknowledged"
	);
}

my $kv_sql = decrypt_sql('kv', 's.tenant', 's.purpose');
my $nvals = $node->safe_psql('postgres', 'SELECT count(*) FROM kv');
is($node->safe_psql('postgres', $kv_sql),
	"$nvals|$nvals|0|0|$nvals",
	"after the crash: all $nvals values decrypt to their plaintext, under a data key of their tenant and purpose"
);
check_key_tables('after the crash during key operations');

# --- and work goes on -------------------------------------------------------

foreach my $c (0, 1)
{
	my $t = $next_tenant{$c};
	my $existed = $node->safe_psql('postgres',
		"SELECT count(*) FROM envault.tenants WHERE tenant = '$t'");
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT envault.create_tenant('$t')");
	if ($existed)
	{
		is($ret, 3, "creator$c: $t, created but not acknowledged, cannot be created again");
		like($err, qr/ERROR:  42710: envault tenant "$t" already exists/,
			'because it already exists');
	}
	else
	{
		is($ret, 0, "creator$c: $t, whose creation was lost, can be created")
		  or diag($err);
	}
	$node->safe_psql('postgres', "CALL kv_put(" . (8_000_000 + $c) . ", '$t', 'after')");
}

my $ntenants = $node->safe_psql('postgres', 'SELECT count(*) FROM envault.tenants');
$node->safe_psql(
	'postgres', q{
SELECT envault.rotate_data_key(tenant, 'p') FROM envault.tenants WHERE tenant LIKE 's_';
CALL kv_put(9000000, 's0', 'p');
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT 9000001 + row_number() OVER (ORDER BY tenant) AS id, tenant
			   FROM envault.tenants LOOP
		CALL kv_put(r.id, r.tenant, 'later');
	END LOOP;
END $$;
});
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM (SELECT envault.rotate_tenant_key(tenant) FROM envault.tenants) s}),
	$ntenants,
	"after the crash: every tenant key rotates ($ntenants tenants)");
is_zero(
	q{SELECT count(*) FROM envault.tenants t
	   WHERE (SELECT e.detail FROM envault.key_events e
	           WHERE e.operation = 'tenant key rotated' AND e.tenant = t.tenant
	           ORDER BY e.event_id DESC LIMIT 1)
	         <> 'key version ' || t.key_version || '; '
	            || (SELECT count(*) FROM envault.data_keys d WHERE d.tenant = t.tenant)
	            || ' data keys rewrapped'},
	'each rotation rewrapped every data key of its tenant');
$nvals = $node->safe_psql('postgres', 'SELECT count(*) FROM kv');
is($node->safe_psql('postgres', $kv_sql),
	"$nvals|$nvals|0|0|$nvals",
	"after new values and rotations: all $nvals values decrypt to their plaintext"
);
is($node->safe_psql('postgres', $load_sql),
	"$nrows|$nrows|0|0|$nrows",
	"and all $nrows rows of the load");
check_key_tables('at the end');

$node->stop;
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$key\E/i, 'the server log does not contain the master key');

done_testing();
