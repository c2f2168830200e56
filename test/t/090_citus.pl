# envault TAP test: a Citus cluster of a coordinator and two workers on one
# machine (docs/scale-out.md).  Citus is built from its source release by
# scripts/citus.sh, which the test command runs first; where it is not
# installed (the chroots of other PostgreSQL majors) the test is skipped.
#
# 1. envault.scale_out() refuses a coordinator that is not in the Citus
#    metadata, then makes envault.tenants and envault.data_keys reference
#    tables with a copy on each of the three nodes.
# 2. Data path pushed down: env_decrypt_text runs on the workers, next to
#    the shards, and returns what a single node returns; each worker's
#    access log records its decryptions, attributed to the coordinator
#    session (Citus's global pid in application_name).
# 3. Key changes bite on every node at once: a session whose worker
#    connections hold cached keys sees a retirement, a restore, a rotation
#    and a tenant revocation at its next statement (Citus commits them to
#    the workers in two phases; nothing is left prepared); so do a tenant
#    created afterwards, rekey_tenant and destroy_data_key.  On one node, a
#    key change made with PREPARE TRANSACTION bites at COMMIT PREPARED.
# 4. Tenant context on workers: an application role that authenticated in
#    a transaction sees its tenant's rows of a distributed table isolated
#    with envault.isolate_table, and no row without a context; the proof
#    that carries the context can neither be read nor forged by the role,
#    nor replayed for another role; a token revoked mid-transaction stops
#    the next statement, and no proof brings its context back to a worker
#    after ROLLBACK TO SAVEPOINT.
# 5. Shard moves (citus_move_shard_placement) and tenant isolation
#    (isolate_tenant_to_new_shard) keep every tenant's rows decrypting.
# 6. pgbench across the cluster: decryptions of single rows by many clients
#    complete without an error.
# 7. A customer-managed key (use_customer_key) reaches every node's copy of
#    the key tables; every node asks the same KMS command; withholding the
#    key stops decryption on the workers at the next statement.
# 8. Audit chains on a table distributed by its tenant column: each
#    tenant's chain lives on its shard; pgbench's concurrent writers leave
#    every chain gap-free and fork-free; verify_chain gathers from the
#    shards, per tenant and for all; the coordinator signs checkpoints of
#    the shards' Merkle tree heads, each shown to extend the last; shard
#    moves and tenant isolation keep the chains verifying and growing, and
#    the next checkpoints extend the earlier ones; a row changed and rows
#    cut from the end on a worker behind envault's back are found; what
#    distributed chains do not have (export, purge) is refused.
# 9. A chained table with rows and checkpoints distributed with its chain
#    (distribute_audit_chain): the rows keep their links, the earlier
#    checkpoints verify on the shards, and the chains grow on.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
my $sharedir = `$pg_config --sharedir`;
chomp $sharedir;
plan skip_all => 'Citus is not installed (scripts/citus.sh builds it)'
  unless -f "$sharedir/extension/citus.control";

my $master = random_key_hex();
my $pepper = random_key_hex();

# A KMS for customer-managed keys that every node asks (the same command on
# each): the key of a tenant derives from a secret; a tenant whose owner
# withholds its key gets none.
my $kms = PostgreSQL::Test::Utils::tempdir();
write_private_file("$kms/secret", random_key_hex());
write_private_file("$kms/customer-key.sh", <<"EOS");
#!/bin/sh
[ -e "$kms/withheld-\$1" ] && { echo "kms: key of \$1 withheld" >&2; exit 3; }
printf '%s/%s' "\$(cat '$kms/secret')" "\$1" | sha256sum | cut -c1-64
EOS
chmod 0700, "$kms/customer-key.sh";

# checkpoints of distributed chains are signed on the coordinator only
my $signing_key = "$kms/signing.pem";
system_or_bail('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', $signing_key);
chmod 0600, $signing_key;
my @nodes;
foreach my $name ('coordinator', 'worker1', 'worker2')
{
	my $n = PostgreSQL::Test::Cluster->new($name);
	$n->init;
	my $dir = $n->basedir;
	write_private_file("$dir/master.key", "$master\n");
	write_private_file("$dir/pepper.key", "$pepper\n");
	$n->append_conf('postgresql.conf',
		"shared_preload_libraries = 'citus, envault'\n"
		  . "envault.master_key_file = '$dir/master.key'\n"
		  . "envault.pepper_file = '$dir/pepper.key'\n"
		  . "citus.node_conninfo = 'sslmode=disable'\n"
		  . "citus.propagate_set_commands = 'local'\n"
		  . "citus.local_hostname = '" . $n->host . "'\n"
		  . "envault.customer_key_command = '$kms/customer-key.sh %t'\n"
		  . "max_connections = 60\n"
		  . "max_prepared_transactions = 20\n"
		  . ($name eq 'coordinator' ? "envault.signing_key_file = '$signing_key'\n" : ''));
	$n->start;
	$n->safe_psql('postgres', 'CREATE EXTENSION citus');
	push @nodes, $n;
}
my ($coord, @workers) = @nodes;

sub on_coord { return $coord->safe_psql('postgres', $_[0]); }

# psql on the coordinator: (exit code, stdout, stderr)
sub try_coord
{
	my ($sql, %opt) = @_;
	my ($out, $err);
	my $rc = $coord->psql('postgres', $sql,
		stdout => \$out, stderr => \$err,
		extra_params => ['-v', 'VERBOSITY=verbose', @{ $opt{params} // [] }]);
	return ($rc, $out, $err);
}

foreach my $w (@workers)
{
	on_coord(sprintf("SELECT citus_add_node('%s', %d)", $w->host, $w->port));
}

# --- 1. key tables on every node ---------------------------------------------

on_coord(q{
CREATE EXTENSION envault;
SELECT envault.create_tenant(t) FROM unnest(ARRAY['acme', 'globex', 'initech']) t;
});
my ($rc, $out, $err) = try_coord('SELECT * FROM envault.scale_out()');
like($err, qr/ERROR:  55000: the coordinator is not in the Citus metadata/,
	'scale_out: refused while the coordinator is not in the metadata');
on_coord(sprintf("SELECT citus_set_coordinator_host('%s', %d)", $coord->host, $coord->port));
is(on_coord('SELECT key_table, nodes FROM envault.scale_out() ORDER BY 1'),
	"envault.tenants|3\nenvault.data_keys|3",
	'scale_out: tenants and data_keys are reference tables on three nodes');
is(on_coord('SELECT key_table, nodes FROM envault.scale_out() ORDER BY 1'),
	"envault.tenants|3\nenvault.data_keys|3",
	'scale_out: running it again changes nothing');
foreach my $w (@workers)
{
	is( on_coord(qq{
SELECT result FROM run_command_on_workers(\$\$SELECT string_agg(tenant, ',' ORDER BY tenant) FROM envault.tenants\$\$)
 WHERE nodeport = @{[$w->port]}}),
		'acme,globex,initech', 'worker ' . $w->port . ': has every tenant');
}

# --- 2. the data path on the workers -------------------------------------------

# data keys are written to every node in two phases: create them before a
# statement that writes a distributed table uses them (docs/scale-out.md)
on_coord(q{
SELECT envault.create_data_key(t, 'pii') FROM unnest(ARRAY['acme', 'globex', 'initech']) t;
CREATE TABLE customers (tenant text NOT NULL, id int NOT NULL, email bytea NOT NULL,
                        PRIMARY KEY (tenant, id));
SELECT create_distributed_table('customers', 'tenant', shard_count => 8);
INSERT INTO customers
SELECT t, g, envault.env_encrypt(t, 'pii', g || '@' || t || '.example', int4send(g))
  FROM unnest(ARRAY['acme', 'globex', 'initech']) t, generate_series(1, 50) g;
});
# the same rows on one node, for comparison
on_coord(q{
CREATE TABLE customers_local AS SELECT * FROM customers;
});
is( on_coord(q{
SELECT count(*) FROM customers c JOIN customers_local l USING (tenant, id)
 WHERE envault.env_decrypt_text(c.email, int4send(c.id))
       IS DISTINCT FROM envault.env_decrypt_text(l.email, int4send(l.id))
    OR envault.env_decrypt_text(c.email, int4send(c.id)) <> c.id || '@' || c.tenant || '.example'}),
	'0', 'decrypt on the workers: identical to a single node');
my $plan = on_coord(q{
EXPLAIN (VERBOSE, COSTS OFF)
SELECT envault.env_decrypt_text(email, int4send(id)) FROM customers});
like($plan, qr/Task Count: 8/, 'a multi-shard decryption runs as one task per shard');
like($plan, qr/Node: host=\S+ port=@{[$workers[0]->port]}.*env_decrypt_text/s,
	'the task query that a worker runs decrypts there');

# every worker's access log records its decryptions, with the global pid
# of the coordinator session in application_name
my $gpid = on_coord(q{
SELECT citus_backend_gpid();
SELECT count(envault.env_decrypt_text(email, int4send(id))) FROM customers;
SELECT envault.flush_access_log();
SELECT result FROM run_command_on_workers('SELECT envault.flush_access_log()') LIMIT 0;
});
($gpid) = split /\n/, $gpid;
my $logged = 0;
foreach my $w (@workers)
{
	$w->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM envault.access_log WHERE application_name LIKE '%gpid=$gpid%'")
	  or die 'no access log record on worker ' . $w->port;
	$logged += $w->safe_psql('postgres', qq{
SELECT coalesce(sum(count), 0) FROM envault.access_log
 WHERE event = 'decrypt' AND application_name = 'citus_internal gpid=$gpid'});
}
is($logged, 150, 'workers: 150 decryptions recorded, attributed to the coordinator session');

# --- 3. key changes reach every node at once ---------------------------------

my $s = $coord->background_psql('postgres', on_error_stop => 0);
$s->query_safe('\set VERBOSITY verbose');
my $count_sql = q{SELECT count(envault.env_decrypt_text(email, int4send(id))) FROM customers WHERE tenant = 'globex';};
is($s->query($count_sql), '50', 'warm session: decrypts globex on a worker');
on_coord(q{SELECT envault.rotate_data_key('globex', 'pii')});
on_coord(q{SELECT envault.retire_data_key('globex', 'pii', 1)});
$s->{stderr} = '';
$s->query($count_sql);
like($s->{stderr}, qr/ERROR:  55000: data key of tenant "globex", purpose "pii", version 1 is retired\n.*CONTEXT:  while executing command on \S+:@{[$workers[0]->port]}|ERROR:  55000: data key of tenant "globex", purpose "pii", version 1 is retired\n.*CONTEXT:  while executing command on \S+:@{[$workers[1]->port]}/s,
	'warm session: a retirement bites at its next statement on the worker');
on_coord(q{SELECT envault.restore_data_key('globex', 'pii', 1)});
$s->{stderr} = '';
is($s->query($count_sql), '50', 'warm session: the restored key decrypts again');
on_coord(q{INSERT INTO customers VALUES
  ('globex', 51, envault.env_encrypt('globex', 'pii', '51@globex.example', int4send(51)))});
is( $s->query(q{SELECT envault.key_state(email) || ' ' || envault.env_decrypt_text(email, int4send(id))
  FROM customers WHERE tenant = 'globex' AND id = 51}),
	'active 51@globex.example', 'warm session: a value under the new data key decrypts on the worker');
on_coord(q{SELECT envault.revoke_tenant('globex')});
$s->{stderr} = '';
$s->query($count_sql);
like($s->{stderr}, qr/ERROR:  55000: envault tenant "globex" is revoked\n.*CONTEXT:  while executing command on /s,
	'warm session: a tenant revocation bites at its next statement on the worker');
on_coord(q{SELECT envault.restore_tenant('globex')});
$s->{stderr} = '';
is($s->query($count_sql), '51', 'warm session: the restored tenant decrypts again');

# a tenant created after scale_out, re-keyed, and a destroyed data key
on_coord(q{
SELECT envault.create_tenant('umbrella');
SELECT envault.create_data_key('umbrella', 'pii');
INSERT INTO customers VALUES
  ('umbrella', 1, envault.env_encrypt('umbrella', 'pii', 'u@umbrella.example', int4send(1)));
});
my $umbrella_sql = q{SELECT envault.env_decrypt_text(email, int4send(id)) FROM customers WHERE tenant = 'umbrella';};
is($s->query($umbrella_sql), 'u@umbrella.example',
	'warm session: a tenant created after scale_out decrypts on its worker');
on_coord(q{SELECT envault.rekey_tenant('umbrella')});
is($s->query($umbrella_sql), 'u@umbrella.example',
	'warm session: after rekey_tenant, the rewrapped data key still decrypts on the worker');
on_coord(q{
SELECT envault.rotate_data_key('umbrella', 'pii');
SELECT envault.retire_data_key('umbrella', 'pii', 1);
SELECT envault.destroy_data_key('umbrella', 'pii', 1);
});
$s->{stderr} = '';
$s->query($umbrella_sql);
like($s->{stderr}, qr/ERROR:  \w{5}: data key of tenant "umbrella", purpose "pii", version 1 was destroyed/,
	'warm session: a destroyed data key decrypts nothing on the worker');
foreach my $w (@workers)
{
	is( $w->safe_psql('postgres', q{
SELECT count(*) FROM envault.data_keys WHERE tenant = 'umbrella' AND version = 1
   AND state = 'destroyed' AND wrapped_key IS NULL}),
		'1', 'worker ' . $w->port . ': its copy of the destroyed key holds no key');
}
$s->quit;

# The same by hand, with one node's own keys: a key change prepared with
# PREPARE TRANSACTION is not seen until COMMIT PREPARED, then at once (a
# session whose cache holds the key)
# (in a database without Citus, which refuses PREPARE TRANSACTION for a
# transaction that wrote reference tables)
$coord->safe_psql('postgres', 'CREATE DATABASE plain');
$coord->safe_psql('plain', q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
CREATE TABLE customers_local (tenant text, id int, email bytea);
INSERT INTO customers_local
SELECT 'acme', g, envault.env_encrypt('acme', 'pii', 'x' || g, int4send(g)) FROM generate_series(1, 50) g;
});
my $local_sql = q{SELECT count(envault.env_decrypt_text(email, int4send(id))) FROM customers_local WHERE tenant = 'acme';};
$s = $coord->background_psql('plain', on_error_stop => 0);
$s->query_safe('\set VERBOSITY verbose');
is($s->query($local_sql), '50', 'one node, warm session: decrypts acme');
sub on_plain { return $coord->safe_psql('plain', $_[0]); }
on_plain(q{BEGIN; SELECT envault.revoke_tenant('acme'); PREPARE TRANSACTION 'envault_revoke_acme';});
$s->{stderr} = '';
is($s->query($local_sql), '50', 'one node: a prepared revocation is not in force yet');
is($s->{stderr}, '', 'one node: no error before COMMIT PREPARED');
on_plain(q{COMMIT PREPARED 'envault_revoke_acme'});
$s->query($local_sql);
like($s->{stderr}, qr/ERROR:  55000: envault tenant "acme" is revoked/,
	'one node, warm session: the revocation bites after COMMIT PREPARED');
on_plain(q{BEGIN; SELECT envault.restore_tenant('acme'); PREPARE TRANSACTION 'envault_restore_acme';});
on_plain(q{ROLLBACK PREPARED 'envault_restore_acme';});
$s->{stderr} = '';
$s->query($local_sql);
like($s->{stderr}, qr/ERROR:  55000: envault tenant "acme" is revoked/,
	'one node: a restore rolled back with ROLLBACK PREPARED changes nothing');
on_plain(q{SELECT envault.restore_tenant('acme')});
$s->{stderr} = '';
is($s->query($local_sql), '50', 'one node: restored');
$s->quit;

foreach my $n (@nodes)
{
	is($n->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
		'0', 'node ' . $n->port . ': no transaction left prepared');
}

# --- 4. the tenant context on the workers ------------------------------------

on_coord(q{
CREATE ROLE app LOGIN IN ROLE envault_user;
GRANT SELECT, INSERT ON customers TO app;
SELECT envault.isolate_table('customers', 'tenant');
});
is(on_coord(q{SELECT envault.policy_isolates('customers', envault.isolation_expr('customers', 'tenant'))}),
	't', 'isolate_table on a distributed table: its policy (without a subquery)');
my $token = on_coord(q{SELECT envault.issue_token('initech', 'app')});
my @as_app = (params => ['-U', 'app']);
($rc, $out, $err) = try_coord(qq{
BEGIN;
SELECT envault.authenticate('$token');
SELECT count(*), min(tenant), max(tenant), count(envault.env_decrypt_text(email, int4send(id))) FROM customers;
INSERT INTO customers VALUES ('initech', 99, envault.env_encrypt('initech', 'pii', 'x', int4send(99)));
COMMIT;}, @as_app);
is($err, '', 'app in a transaction: no error');
is($out, "initech\n50|initech|initech|50",
	'app: sees and decrypts only its tenant\'s rows, on the worker that holds them');
($rc, $out, $err) = try_coord(q{SELECT count(*) FROM customers}, @as_app);
is($out, '0', 'app without a context: no row on any worker');
($rc, $out, $err) = try_coord(q{SELECT count(envault.env_decrypt_text(email, int4send(id))) FROM customers WHERE tenant = 'acme'}, @as_app);
is($out, '0', 'app without a context: decrypts nothing');
($rc, $out, $err) = try_coord(qq{
BEGIN;
SELECT envault.authenticate('$token') IS NOT NULL;
SELECT current_setting('envault.tenant_proof');}, @as_app);
like($err, qr/ERROR:  42501: must be superuser or have privileges of pg_read_all_settings to examine "envault.tenant_proof"/,
	'app: cannot read the proof');
# (SET LOCAL in a transaction block: what Citus hands to the workers; the
# coordinator checks it first, at the statement's start)
($rc, $out, $err) = try_coord(q{
BEGIN;
SET LOCAL envault.tenant_proof = '1.61636d65.617070.999999999999999.0000000000000000000000000000000000000000000000000000000000000000';
SELECT count(*) FROM customers WHERE tenant = 'acme';}, @as_app);
like($err, qr/ERROR:  28000: envault tenant context proof is not valid\nDETAIL:  Its HMAC does not match/,
	'app: a forged proof is refused');
# a valid proof, made for the superuser, replayed by app
my $proof = (split /\n/, on_coord(q{
BEGIN;
SELECT envault.set_tenant('acme');
SELECT current_setting('envault.tenant_proof');
COMMIT;}))[1];
like($proof, qr/^1\.61636d65\.[0-9a-f]+\.\d+\.[0-9a-f]{64}$/, 'superuser: a proof for acme');
($rc, $out, $err) = try_coord(qq{
BEGIN;
SET LOCAL envault.tenant_proof = '$proof';
SELECT count(*) FROM customers WHERE tenant = 'acme';}, @as_app);
like($err, qr/ERROR:  28000: envault tenant context proof is not valid\nDETAIL:  It was made for another role/,
	'app: a proof made for another role is refused');
is(on_coord(q{SELECT count(*) FROM customers WHERE tenant = 'initech'}), '51',
	'the row app inserted is on its tenant\'s shard');

# A token revoked in the middle of app's transaction: its next statement
# fails even though every envault call of it runs on the workers, and
# after ROLLBACK TO SAVEPOINT no proof brings the context back there.
my $token2 = on_coord(q{SELECT envault.issue_token('initech', 'app, revoked')});
my $token2_id = (split /_/, $token2)[1];
my $sapp = $coord->background_psql('postgres', on_error_stop => 0,
	extra_params => [ '-U', 'app', '-v', 'VERBOSITY=verbose' ]);
my $decrypt_all = q{SELECT count(envault.env_decrypt_text(email, int4send(id))) FROM customers;};
$sapp->query_safe("BEGIN; SELECT envault.authenticate('$token2');");
is($sapp->query($decrypt_all), '51', 'app, token 2: decrypts on the workers');
$sapp->query_safe('SAVEPOINT s');
on_coord(qq{SELECT envault.revoke_token('$token2_id')});
$sapp->{stderr} = '';
$sapp->query($decrypt_all);
like($sapp->{stderr}, qr/ERROR:  28000: envault token of the current tenant context is no longer valid/,
	'app, token revoked: the next statement fails on the coordinator');
$sapp->{stderr} = '';
$sapp->query('ROLLBACK TO SAVEPOINT s');
is($sapp->query(q{SELECT count(*) FROM customers}), '0',
	'app, after ROLLBACK TO SAVEPOINT: no row on any worker (the proof is gone there too)');
is($sapp->{stderr}, '', 'app, after ROLLBACK TO SAVEPOINT: no error');
$sapp->query('ROLLBACK');
$sapp->quit;

# --- 5. shard moves and tenant isolation keep the data path -----------------------

my ($shard, $from) = split /\|/, on_coord(q{
SELECT s.shardid, n.nodeport
  FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)
 WHERE s.shardid = get_shard_id_for_distribution_column('customers', 'acme')});
my ($to) = grep { $_ != $from } map { $_->port } @workers;
on_coord(qq{SELECT citus_move_shard_placement($shard, '@{[$coord->host]}', $from,
  '@{[$coord->host]}', $to, shard_transfer_mode => 'block_writes')});
is( on_coord(q{SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
 WHERE p.shardid = get_shard_id_for_distribution_column('customers', 'acme')}),
	$to, 'acme\'s shard moved to the other worker');
is( on_coord(q{SELECT count(*) FROM customers
 WHERE tenant = 'acme' AND envault.env_decrypt_text(email, int4send(id)) = id || '@acme.example'}),
	'50', 'after the shard move, acme decrypts on its new worker');
on_coord(q{SELECT isolate_tenant_to_new_shard('customers', 'globex', shard_transfer_mode => 'block_writes')});
is( on_coord(q{SELECT count(*) FROM customers
 WHERE tenant = 'globex' AND envault.env_decrypt_text(email, int4send(id)) = id || '@globex.example'}),
	'51', 'globex isolated to a shard of its own: decrypts there');

# --- 6. pgbench across the cluster -------------------------------------------

my $script = $coord->basedir . '/decrypt.sql';
open my $fh, '>', $script or die $!;
print $fh q{\set id random(1, 50)
SELECT envault.env_decrypt_text(email, int4send(id)) FROM customers WHERE tenant = 'acme' AND id = :id;
};
close $fh;
my ($stdout, $stderr);
my $ok = IPC::Run::run(
	[ 'pgbench', '-n', '-h', $coord->host, '-p', $coord->port, '-c', '8', '-j', '2',
	  '-T', '3', '-f', $script, 'postgres' ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'pgbench: 8 clients decrypting single rows through the coordinator');
like($stdout, qr/number of failed transactions: 0 /, 'pgbench: no failed transaction');

# --- 7. customer-managed keys across the cluster ---------------------------

on_coord(q{SELECT envault.use_customer_key('initech')});
foreach my $w (@workers)
{
	is( $w->safe_psql('postgres', q{
SELECT key_source, customer_kcv IS NOT NULL, master_kcv IS NULL, key_version
  FROM envault.tenants WHERE tenant = 'initech'}),
		'customer|t|t|2', 'worker ' . $w->port . ': initech is under its customer key');
}
my $initech_sql = q{SELECT count(*) FROM customers
 WHERE tenant = 'initech' AND envault.env_decrypt_text(email, int4send(id)) = id || '@initech.example'};
is(on_coord($initech_sql), '50',
	'BYOK: the rewrapped data key decrypts on the worker, which asks the KMS');
write_private_file("$kms/withheld-initech", '');
($rc, $out, $err) = try_coord($initech_sql);
like($err, qr/ERROR:  38000: .*initech.*\n(.*\n)*CONTEXT:  while executing command on /,
	'BYOK: a withheld customer key stops decryption on the worker at once');
unlink "$kms/withheld-initech";
is(on_coord($initech_sql), '50', 'BYOK: the key given back, the worker decrypts again');

# --- 8. audit chains on a distributed table ----------------------------------

on_coord(q{CREATE TABLE events (tenant text NOT NULL, id bigserial, what text);
SELECT create_distributed_table('events', 'tenant', shard_count => 4);
CREATE TABLE filled (tenant text NOT NULL, x int);
SELECT create_distributed_table('filled', 'tenant');
INSERT INTO filled VALUES ('acme', 1)});
($rc, $out, $err) = try_coord(q{SELECT envault.enable_audit_chain('events', 'what')});
like($err, qr/ERROR:  0A000: "events" is distributed by column "tenant", not by tenant column "what"/,
	'chain: refused unless the tenant column is the distribution column');
($rc, $out, $err) = try_coord(q{SELECT envault.enable_audit_chain('filled', 'tenant')});
like($err, qr/ERROR:  55000: distributed table "filled" has rows/,
	'chain: refused on a distributed table that has rows');
is(on_coord(q{SELECT envault.enable_audit_chain('events', 'tenant')}), '0',
	'chain: enabled on an empty distributed table');
is( on_coord(q{SELECT count(*) FROM run_command_on_shards('events',
  $$SELECT count(*) FROM pg_trigger WHERE tgrelid = '%s'::regclass AND tgnargs = 3
      AND tgfoid = 'envault.chain_insert'::regproc$$) WHERE success AND result = '1'}),
	'4', 'chain: every shard has the chain trigger, which names the chain');

# many writers, six tenants, one row per statement
my $chain_script = $coord->basedir . '/chain.sql';
open $fh, '>', $chain_script or die $!;
print $fh q{\set t random(1, 6)
INSERT INTO events (tenant, what) VALUES ('tenant' || :t, 'client ' || :client_id);
};
close $fh;
$ok = IPC::Run::run(
	[ 'pgbench', '-n', '-h', $coord->host, '-p', $coord->port, '-c', '8', '-j', '2',
	  '-t', '150', '-f', $chain_script, 'postgres' ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'chain: pgbench, 8 clients inserting into six tenants\' chains');
like($stdout, qr/number of failed transactions: 0 /, 'chain: no failed insert');
is( on_coord(q{SELECT count(*), sum(n), bool_and(n = m AND n = d) FROM (
  SELECT count(*) n, max(envault_seq) m, count(DISTINCT envault_seq) d FROM events GROUP BY tenant) x}),
	'6|1200|t', 'chain: every tenant\'s chain numbered 1..n without a gap or a fork');
is( on_coord(q{SELECT count(*), sum(rows_checked), bool_and(ok) FROM envault.verify_chain('events')}),
	'6|1200|t', 'chain: verify_chain gathers all six chains from the shards: all verify');
my $count1 = on_coord(q{SELECT count(*) FROM events WHERE tenant = 'tenant1'});
is(on_coord(q{SELECT tenant, rows_checked, ok FROM envault.verify_chain('events', 'tenant1')}),
	"tenant1|$count1|t", 'chain: verify_chain of one tenant runs on its shard');
is(on_coord(q{SELECT tenant, rows_checked, ok FROM envault.verify_chain('events', 'nobody')}),
	'nobody|0|t', 'chain: a tenant without rows has an empty chain');

# checkpoints: signed on the coordinator, of tree heads from the shards
is(on_coord(q{SELECT count(*), sum(seq) FROM envault.checkpoint('events')}), '6|1200',
	'chain: checkpoint() signs the tree head of each of the six chains, read on its shard');
is( on_coord(q{SELECT t.tree_size = c.seq AND t.root = c.tree_root
  FROM envault.tree_head('events', 'tenant1') t, envault.checkpoints c WHERE c.tenant = 'tenant1'}),
	't', 'chain: tree_head() of a distributed table runs on the shard and matches the checkpoint');
($rc, $out, $err) = try_coord(q{BEGIN; SELECT * FROM envault.checkpoint('events'); COMMIT});
like($err, qr/ERROR:  25001: checkpoint\(\) of distributed audit chain public\.events cannot run inside a transaction block/,
	'chain: no checkpoint inside a transaction block, which could sign rows it wrote on the shards');

# rows of several tenants in one statement, a rolled-back insert
on_coord(q{INSERT INTO events (tenant, what) SELECT 'tenant' || (i % 6 + 1), 'bulk' FROM generate_series(1, 60) i;
BEGIN; INSERT INTO events (tenant, what) VALUES ('tenant3', 'rolled back'); ROLLBACK;
INSERT INTO events (tenant, what) VALUES ('tenant3', 'after the rollback')});
is( on_coord(q{SELECT count(*), sum(rows_checked), bool_and(ok) FROM envault.verify_chain('events')}),
	'6|1261|t', 'chain: a statement writing six shards, and a rollback, leave every chain whole');

# the shard of tenant1 moves; tenant2 gets a shard of its own
($shard, $from) = split /\|/, on_coord(q{
SELECT s.shardid, n.nodeport
  FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)
 WHERE s.shardid = get_shard_id_for_distribution_column('events', 'tenant1')});
($to) = grep { $_ != $from } map { $_->port } @workers;
on_coord(qq{SELECT citus_move_shard_placement($shard, '@{[$coord->host]}', $from,
  '@{[$coord->host]}', $to, shard_transfer_mode => 'block_writes')});
on_coord(q{SELECT isolate_tenant_to_new_shard('events', 'tenant2', shard_transfer_mode => 'block_writes')});
on_coord(q{INSERT INTO events (tenant, what) SELECT 'tenant' || (i % 2 + 1), 'after the move' FROM generate_series(1, 10) i});
is( on_coord(q{SELECT tenant, rows_checked, ok FROM envault.verify_chain('events')
  WHERE tenant IN ('tenant1', 'tenant2') ORDER BY 1}),
	join("\n", map { "tenant$_|" . on_coord("SELECT count(*) FROM events WHERE tenant = 'tenant$_'") . '|t' } 1, 2),
	'chain: after a shard move and a tenant isolation, the chains grow on and verify');
is( on_coord(q{SELECT bool_and(n = m) FROM (SELECT count(*) n, max(envault_seq) m FROM events GROUP BY tenant) x}),
	't', 'chain: the moved and split shards continue each chain where it ended');
is(on_coord(q{SELECT count(*) FROM envault.checkpoint('events')}), '6',
	'chain: after the move, each grown chain is shown to extend its last checkpoint and signed again');
is( on_coord(q{SELECT count(*), bool_and(ok) FROM envault.verify_chain('events')}), '6|t',
	'chain: every chain verifies against both of its checkpoints');

# what the chain refuses, on the shards as on one node
($rc, $out, $err) = try_coord(q{UPDATE events SET what = 'changed' WHERE tenant = 'tenant5'});
like($err, qr/ERROR:  42501: audit chain "events_\d+" is append-only/, 'chain: UPDATE refused on the shards');
($rc, $out, $err) = try_coord(q{INSERT INTO events (tenant, what) VALUES ('tenant5', 'x') ON CONFLICT DO NOTHING});
like($err, qr/ERROR:  0A000: INSERT \.\.\. ON CONFLICT is not supported on audit chain/,
	'chain: INSERT ... ON CONFLICT refused on the shards');
($rc, $out, $err) = try_coord(q{SELECT envault.export_chain('events', 'tenant5')});
like($err, qr/ERROR:  0A000: export_chain\(\) is not supported on distributed audit chain public\.events/,
	'chain: export_chain, which distributed chains do not have, is refused');

# a row changed on a worker behind envault's back
my ($tshard, $tport) = split /\|/, on_coord(q{
SELECT shard_name('events'::regclass, s.shardid), n.nodeport
  FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)
 WHERE s.shardid = get_shard_id_for_distribution_column('events', 'tenant4')});
my ($tworker) = grep { $_->port == $tport } @workers;
$tworker->safe_psql('postgres', qq{SET session_replication_role = replica;
UPDATE $tshard SET what = 'forged' WHERE tenant = 'tenant4' AND envault_seq = 3});
is(on_coord(q{SELECT tenant, ok, first_bad_seq, reason FROM envault.verify_chain('events') WHERE NOT ok}),
	'tenant4|f|3|hash mismatch', 'chain: a row forged on its worker is found, and only that chain is bad');

# the newest rows of tenant6, signed by a checkpoint, deleted on its worker
($tshard, $tport) = split /\|/, on_coord(q{
SELECT shard_name('events'::regclass, s.shardid), n.nodeport
  FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)
 WHERE s.shardid = get_shard_id_for_distribution_column('events', 'tenant6')});
($tworker) = grep { $_->port == $tport } @workers;
my $last6 = on_coord(q{SELECT max(envault_seq) FROM events WHERE tenant = 'tenant6'});
$tworker->safe_psql('postgres', qq{SET session_replication_role = replica;
DELETE FROM $tshard WHERE tenant = 'tenant6' AND envault_seq >= $last6 - 1});
is( on_coord(q{SELECT tenant, ok, first_bad_seq, reason FROM envault.verify_chain('events', 'tenant6')}),
	"tenant6|f|@{[$last6 - 1]}|truncated after checkpoint",
	'chain: rows cut from the end of a chain on its worker are found through the checkpoint');

# --- 9. a chained table distributed with its chain ----------------------------

on_coord(q{CREATE TABLE ledger (tenant text NOT NULL, id bigserial, entry text);
SELECT envault.enable_audit_chain('ledger', 'tenant');
INSERT INTO ledger (tenant, entry) SELECT 'book' || (i % 4), 'entry ' || i FROM generate_series(1, 400) i;
SELECT count(*) FROM envault.checkpoint('ledger')});
($rc, $out, $err) = try_coord(q{SELECT envault.distribute_audit_chain('filled')});
like($err, qr/ERROR:  55000: table "filled" is not an envault audit chain/,
	'distribute: refused for a table that is not chained');
($rc, $out, $err) = try_coord(q{SELECT envault.distribute_audit_chain('envault.key_events')});
like($err, qr/ERROR:  0A000: envault's own audit chain envault\.key_events stays on the coordinator/,
	'distribute: envault\'s own chains stay on the coordinator');
is(on_coord(q{SELECT envault.distribute_audit_chain('ledger', shard_count => 4)}), '400',
	'distribute: the chained table and its 400 rows go to the shards');
is( on_coord(q{SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'ledger'::regclass}),
	'4', 'distribute: four shards');
is( on_coord(q{SELECT count(*) FROM envault.chain_heads h JOIN envault.audit_chains c USING (chain_id)
 WHERE c.tbl = 'ledger'::regclass}), '0',
	'distribute: the coordinator keeps no heads of the chain: its shards\' rows are');
is( on_coord(q{SELECT count(*), sum(rows_checked), bool_and(ok) FROM envault.verify_chain('ledger')}),
	'4|400|t', 'distribute: every chain verifies on its shard against its checkpoint from before');
on_coord(q{INSERT INTO ledger (tenant, entry) SELECT 'book' || (i % 4), 'later ' || i FROM generate_series(1, 40) i});
is(on_coord(q{SELECT count(*) FROM envault.checkpoint('ledger')}), '4',
	'distribute: the grown chains extend their checkpoints from before the distribution');
is( on_coord(q{SELECT count(*), sum(rows_checked), bool_and(ok) FROM envault.verify_chain('ledger')}),
	'4|440|t', 'distribute: and verify with both checkpoints');

done_testing();
