# envault TAP test: the recipe of docs/audit-chain.md, "Checkpoints with
# pg_cron", exactly as the document gives it, but scheduled every minute
# instead of every five (pg_cron 1.4 schedules have minute granularity).
#
# The server preloads pg_cron and envault, with cron.database_name and
# cron.use_background_workers as the document says; two chained tables, one
# of them isolated by row-level security (envault.isolate_table), and
# envault's own chain of key events.  The job is scheduled by a role of its
# own, envault_checkpointer, a member of envault_admin with LOGIN and
# BYPASSRLS, rather than by a superuser: the document recommends it, and it
# shows that those rights are enough (and, below, that without BYPASSRLS
# the job could not sign).  Then, polling cron.job_run_details (each run
# comes at the start of a minute, so the test takes one to two minutes):
#
#   run 1 signs the head of every chain of the database: the checkpoints
#         are in envault.checkpoints, signed by the job's role, one per
#         chain, each naming its head, and each is in the server log, the
#         same note;
#   run 2, after rows were added to two chains, signs exactly those two:
#         the chains that did not grow are not signed again.
#
# verify_chain() finds every chain sound, every checkpoint verified.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex);
use MIME::Base64 qw(decode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('pg_cron');

# pg_cron comes from its own Debian package, which scripts/lib.sh installs
my $sharedir = $node->config_data('--sharedir');
my $pkglibdir = $node->config_data('--pkglibdir');
plan skip_all =>
  "pg_cron is not installed in $sharedir and $pkglibdir (Debian package postgresql-15-cron)"
  unless -f "$sharedir/extension/pg_cron.control"
  && -f "$pkglibdir/pg_cron.so";

$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_cron,envault'
cron.database_name = 'postgres'
cron.use_background_workers = on
envault.master_key = '${\ random_key_hex()}'
envault.signing_key = '${\ random_key_hex()}'
});
$node->start;

# The document's statements, with the chained tables of this test
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION envault;
CREATE TABLE orders_audit (id serial PRIMARY KEY, tenant text NOT NULL, action text);
SELECT envault.enable_audit_chain('orders_audit', 'tenant');
CREATE TABLE payments_audit (id serial PRIMARY KEY, tenant text NOT NULL, amount numeric);
SELECT envault.enable_audit_chain('payments_audit', 'tenant');
SELECT envault.isolate_table('payments_audit', 'tenant');
INSERT INTO orders_audit (tenant, action)
VALUES ('acme', 'login'), ('acme', 'order'), ('globex', 'login'), ('acme', 'logout');
INSERT INTO payments_audit (tenant, amount) VALUES ('acme', 10), ('acme', 20);

CREATE EXTENSION pg_cron;
CREATE ROLE envault_checkpointer LOGIN BYPASSRLS IN ROLE envault_admin;
GRANT USAGE ON SCHEMA cron TO envault_checkpointer;
GRANT SELECT ON public.orders_audit TO envault_checkpointer;
GRANT SELECT ON public.payments_audit TO envault_checkpointer;
});

# Without BYPASSRLS, the job's statement fails on the isolated table, and
# with it every run would sign nothing.
$node->safe_psql(
	'postgres', q{
CREATE ROLE no_bypassrls LOGIN IN ROLE envault_admin;
GRANT SELECT ON public.orders_audit, public.payments_audit TO no_bypassrls;
});
my ($ret, $out, $err) = $node->psql(
	'postgres', q{
\set VERBOSITY verbose
SET ROLE no_bypassrls;
SELECT envault.checkpoint(tbl) FROM envault.audit_chains;});
isnt($ret, 0, 'the job statement fails for a role that row-level security applies to');
like(
	$err,
	qr/ERROR:  42501: row-level security of table "payments_audit" applies to the current role/,
	'because it cannot read the isolated chained table (42501)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM envault.checkpoints'),
	'0', 'and it signed nothing');

# "chain tenant seq" of every chain's head, and of every stored checkpoint
my $heads_sql = q{
SELECT string_agg(c.tbl::text || ' ' || coalesce(v.tenant, 'NULL') || ' ' || v.rows_checked,
                  ', ' ORDER BY c.tbl::text, v.tenant)
  FROM envault.audit_chains c, envault.verify_chain(c.tbl) v
 WHERE v.rows_checked > 0};
my $checkpoints_sql = q{
SELECT string_agg(c.tbl::text || ' ' || coalesce(k.tenant, 'NULL') || ' ' || k.seq,
                  ', ' ORDER BY c.tbl::text, k.tenant)
  FROM envault.checkpoints k JOIN envault.audit_chains c USING (chain_id)
 WHERE k.checkpoint_id > $1};

sub checkpoints_since
{
	my ($id) = @_;
	my $sql = $checkpoints_sql =~ s/\$1/$id/r;
	return $node->safe_psql('postgres', $sql);
}

my $heads = $node->safe_psql('postgres', $heads_sql);
like($heads, qr/^envault\.key_events NULL \d+, orders_audit acme 3, orders_audit globex 1, payments_audit acme 2$/,
	'the chains of the database: key events, and the two tables');
my $nchains = () = $heads =~ /, /g;
$nchains += 1;

# The document's schedule, every minute
my $job = $node->safe_psql(
	'postgres', q{
SET ROLE envault_checkpointer;
SELECT cron.schedule('envault-checkpoints', '* * * * *',
       $$SELECT envault.checkpoint(tbl) FROM envault.audit_chains$$);
RESET ROLE;});
like($job, qr/^\d+$/, 'envault_checkpointer schedules the job');
is( $node->safe_psql(
		'postgres',
		"SELECT username || ' ' || database || ' ' || active FROM cron.job WHERE jobid = $job"
	),
	'envault_checkpointer postgres true',
	'the job is to run as envault_checkpointer, in database postgres');

# Wait for the job's run number $n to finish (each starts at the next
# minute); returns "status return_message username"
sub wait_for_run
{
	my ($n) = @_;
	my $deadline = time() + 90;
	while (1)
	{
		my $done = $node->safe_psql('postgres',
			"SELECT count(*) FROM cron.job_run_details WHERE jobid = $job AND status IN ('succeeded', 'failed')"
		);
		last if $done >= $n;
		die "run $n of the pg_cron job did not finish within 90 s" if time() > $deadline;
		usleep(250_000);
	}
	return $node->safe_psql(
		'postgres', qq{
SELECT status || ' ' || return_message || ' ' || username FROM cron.job_run_details
 WHERE jobid = $job ORDER BY runid OFFSET $n - 1 LIMIT 1});
}

# --- run 1: every chain is signed ------------------------------------------------

is(wait_for_run(1), "succeeded SELECT $nchains envault_checkpointer",
	"run 1 succeeds and signs $nchains checkpoints, as envault_checkpointer");
is(checkpoints_since(0), $heads,
	'one checkpoint per chain in envault.checkpoints, each naming its head');
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(DISTINCT signed_by, ',') FROM envault.checkpoints}),
	'envault_checkpointer',
	'signed by the job\'s role');

# Every stored checkpoint is in the server log, as one line: the same note,
# and its origin, sequence number and head hash.
my %logged;
foreach my $line (split /\n/, slurp_file($node->logfile))
{
	next
	  unless $line =~
	  /envault checkpoint: origin=(\S+) seq=(\d+) hash=(\S+) note=(\S+)$/;
	$logged{"$1 $2"} = [ $3, decode_base64($4) ];
}
my @stored = split /\n/,
  $node->safe_psql('postgres',
	q{SELECT encode(convert_to(note, 'UTF8'), 'hex') FROM envault.checkpoints ORDER BY checkpoint_id}
  );
is(scalar(@stored), $nchains, "$nchains checkpoints stored");
foreach my $hex (@stored)
{
	my $note = pack('H*', $hex);
	my ($origin, $seq, $hash) = split /\n/, $note;
	my $l = $logged{"$origin $seq"};
	ok( defined $l && $l->[0] eq $hash && $l->[1] eq $note,
		"checkpoint of $origin at $seq: in the server log, the same note");
}
is(scalar(keys %logged), $nchains, 'and the log has no other checkpoint');

chains_ok($nchains, 'every chain verifies, its checkpoint included');

# --- run 2: after inserts, only the chains that grew are signed ---------------

my $last = $node->safe_psql('postgres',
	'SELECT max(checkpoint_id) FROM envault.checkpoints');
$node->safe_psql(
	'postgres', q{
INSERT INTO orders_audit (tenant, action) VALUES ('acme', 'login'), ('acme', 'order');
INSERT INTO payments_audit (tenant, amount) VALUES ('globex', 5);
});
is(wait_for_run(2), 'succeeded SELECT 2 envault_checkpointer',
	'run 2 succeeds and signs two checkpoints, not those of the chains that did not grow');
is(checkpoints_since($last), 'orders_audit acme 5, payments_audit globex 1',
	'those of the two chains that grew, at their new heads');
chains_ok($nchains + 1,
	'every chain verifies (one more: globex\'s of payments_audit), every checkpoint included');

is( $node->safe_psql(
		'postgres', q{
SET ROLE envault_checkpointer;
SELECT cron.unschedule('envault-checkpoints');}),
	't',
	'envault_checkpointer unschedules the job');

$node->stop;
done_testing();

# verify_chain finds all $n chains of the chained tables sound
sub chains_ok
{
	my ($n, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	is( $node->safe_psql(
			'postgres', q{
SELECT count(*) FILTER (WHERE NOT v.ok) || ' bad of ' || count(*)
  FROM envault.audit_chains c, envault.verify_chain(c.tbl) v
 WHERE v.rows_checked > 0}),
		"0 bad of $n",
		$name);
	return;
}
