# envault TAP test: pg_dump and pg_restore.
#
# A source server (envault preloaded; master key M, checkpoint signing key
# S and token pepper P, each in a 0600 file) holds a database with three
# tenants, one of them with a rotated data key and a rotated tenant key;
# encrypted columns bound to their rows by associated data, blind indexes,
# API tokens, secrets (one replaced), a user table turned into an audit
# chain with rows of three tenants and of none, signed checkpoints and an
# anchor left by purge_chain; envault.key_events; envault.access_log with
# records, checkpoints and a purged chain of its own.
#
# pg_dump -Fc, then on a second server configured with the same M, S and P
# (nothing else): CREATE DATABASE and pg_restore, no other step.  There:
# - pg_restore reports no error, and the tables keep their constraints;
# - every ciphertext, wrapped key, blind index and token HMAC is
#   byte-identical to the source's (nothing was encrypted twice), the data
#   keys are the same ones, and encrypting again creates none;
# - every value decrypts to its original, get_secret returns every secret,
#   tokens verify, blind indexes find their rows;
# - every chain (the user table, envault.key_events, envault.access_log) is
#   the same chain, row for row, and verifies with the checkpoints signed
#   before the dump; new rows and checkpoints go on from there.
# The same restore into a database with another name verifies too
# (checkpoints name the database they were signed in, and verification
# does not depend on it).
#
# A third server with another master key restores the same dump: its chains
# verify (that needs no master key), but nothing decrypts, and the error
# says why: SQLSTATE F0000, the configured master key does not match the
# key that wrapped the tenant, with both check values
# (src/keywrap.c, env_keywrap_master_for).

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_hex);
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest;
use EnvaultTest qw(sql_lit);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $key_m = random_key_hex();
my $key_other = random_key_hex();
my $pepper = random_key_hex();
die "two equal random keys" if $key_m eq $key_other;

# The check value of a master key as envault reports it: the first 8 bytes
# of HMAC-SHA256(key, "envault/v1/key-check-value"), in hex.
sub fingerprint
{
	my ($key_hex) = @_;
	return substr(
		hmac_sha256_hex('envault/v1/key-check-value', pack('H*', $key_hex)),
		0, 16);
}

my $tmp = PostgreSQL::Test::Utils::tempdir();
system('openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$tmp/signing.pem") == 0
  or die "openssl genpkey failed";
my $signing_key = slurp_file("$tmp/signing.pem");

# A started server with envault preloaded and the keys in files of its own.
sub new_server
{
	my ($name, $master_key) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $dir = $node->basedir;
	write_private_file("$dir/master.key", "$master_key\n");
	write_private_file("$dir/signing.pem", $signing_key);
	write_private_file("$dir/pepper.key", "$pepper\n");
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'envault'\n"
		  . "envault.master_key_file = '$dir/master.key'\n"
		  . "envault.signing_key_file = '$dir/signing.pem'\n"
		  . "envault.pepper_file = '$dir/pepper.key'\n");
	$node->start;
	return $node;
}

# ---- the source -------------------------------------------------------------------

my $source = new_server('dump_source', $key_m);
$source->safe_psql('postgres', 'CREATE DATABASE appdb');

# customers: id => [tenant, email, doc (hex bytea, or undef)]
my %customers = (
	1  => [ 'acme', 'alice@acme.example', '00ff10' ],
	2  => [ 'acme', 'bob@acme.example', undef ],
	3  => [ 'acme', "caf\xc3\xa9\@acme.example", 'deadbeef' ],    # UTF-8
	4  => [ 'acme', 'dora@acme.example', '' ],
	5  => [ 'acme', 'erin@acme.example', '01' ],
	6  => [ 'acme', 'frank@acme.example', undef ],
	7  => [ 'globex', 'alice@globex.example', 'c0ffee' x 50 ],
	8  => [ 'globex', 'grace@globex.example', undef ],
	9  => [ 'globex', 'alice@acme.example', '02' ],
	10 => [ 'Initech "EU"', "o'brien\@initech.example", '03' ],);
my %secrets = (
	'acme|openai'  => 'sk-proj-dumped-and-restored-0123456789',
	'acme|s3'      => 'aws/secret+key/with=symbols-ÆØÅ',
	'globex|stripe' => 'sk_live_globex_4242424242424242',
	'Initech "EU"|webhook' => 'whsec_initech_eu_0000');

sub insert_customers
{
	my @ids = @_;
	my $sql = '';
	foreach my $id (@ids)
	{
		my ($t, $email, $doc) = @{ $customers{$id} };
		my $tl = sql_lit($t);
		my $el = sql_lit($email);
		my $dl =
		  defined $doc ? "envault.env_encrypt($tl, 'docs', '\\x$doc'::bytea)" : 'NULL';
		$sql .= "INSERT INTO customers (id, tenant, email, email_bidx, doc) VALUES ($id, $tl, "
		  . "envault.env_encrypt($tl, 'email', ${el}::text, int4send($id)), "
		  . "envault.blind_index($tl, 'email', $el), $dl);\n";
	}
	return $sql;
}

sub put_secrets
{
	return join('',
		map {
			my ($t, $n) = split /\|/;
			'SELECT envault.put_secret(' . join(', ', map { sql_lit($_) } ($t, $n, $secrets{$_})) . ");\n"
		} @_);
}

# Rows of the chained table: $n rows from id $from, tenants in turn (and
# every fifth row without tenant).
sub insert_orders
{
	my ($from, $n) = @_;
	return qq{
INSERT INTO orders_audit (id, tenant, action, amount, meta, at)
SELECT g, CASE WHEN g % 5 = 0 THEN NULL ELSE (ARRAY['acme', 'globex', 'Initech "EU"'])[g % 3 + 1] END,
       'order ' || g, g * 10.25, jsonb_build_object('n', g, 'tags', ARRAY['a', 'b']),
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour'
  FROM generate_series($from, $from + $n - 1) g;
};
}

$source->safe_psql(
	'appdb',
	q{
CREATE EXTENSION envault;
SELECT envault.create_tenant('acme');
SELECT envault.create_tenant('globex');
SELECT envault.create_tenant('Initech "EU"');
CREATE TABLE customers (
	id			int PRIMARY KEY,
	tenant		text NOT NULL,
	aad			bytea GENERATED ALWAYS AS (int4send(id)) STORED,
	email		bytea NOT NULL,
	email_bidx	bytea NOT NULL,
	doc			bytea
);
CREATE INDEX customers_email_bidx ON customers (tenant, email_bidx);
CREATE TABLE orders_audit (
	id			bigint PRIMARY KEY,
	tenant		text,
	action		text NOT NULL,
	amount		numeric(12, 2),
	meta		jsonb,
	at			timestamptz NOT NULL
);
SELECT envault.enable_audit_chain('orders_audit', 'tenant');
}
	  . insert_customers(1, 2, 3)
	  . q{SELECT envault.rotate_data_key('acme', 'email');}
	  . insert_customers(4, 5)
	  . q{SELECT envault.rotate_tenant_key('acme');}
	  . insert_customers(6 .. 10)
	  . put_secrets(sort keys %secrets)
	  . insert_orders(1, 12)
	  . q{SELECT count(*) FROM envault.checkpoint('orders_audit');}
	  . insert_orders(13, 9)
	  . q{SELECT count(*) FROM envault.checkpoint('orders_audit');});

# A replaced secret, tokens, decryptions (access records), checkpoints and
# purges of the user table and of the access log.
$secrets{'acme|openai'} = 'sk-proj-replaced-value-9876543210';
my %tokens;
$tokens{$_} = $source->safe_psql('appdb',
	'SELECT envault.issue_token(' . sql_lit($_) . q{, 'ci')})
  foreach ('acme', 'globex');
my $reads = q{
SET application_name = 'source-reads';
SELECT count(envault.env_decrypt_text(email, aad)) FROM customers;
SELECT envault.get_secret('acme', 'openai');
SELECT envault.get_secret('globex', 'stripe');
};
$source->safe_psql('appdb', put_secrets('acme|openai') . $reads . $reads);
$source->safe_psql(
	'appdb', q{
SELECT count(*) FROM envault.checkpoint('envault.access_log');
SELECT count(*) FROM envault.checkpoint('envault.key_events');
});
$source->safe_psql('appdb', $reads);
# (purge_chain wants a checkpoint signed before older_than: now(), in a
# later transaction)
$source->safe_psql(
	'appdb', q{
SELECT envault.purge_chain('orders_audit', 'globex', now());
SELECT envault.purge_chain('envault.access_log', 'acme', now());
}) =~ /\A(\d+)\n(\d+)\z/
  or die "purge_chain did not return two counts";
my ($purged_orders, $purged_log) = ($1, $2);
cmp_ok($purged_orders, '>', 0, "source: purge_chain removed $purged_orders rows of globex's orders");
cmp_ok($purged_log, '>', 0, "source: purge_chain removed $purged_log access records of acme");
$source->safe_psql('appdb', insert_orders(22, 6) . $reads);

# What must come through the dump unchanged, as name => query.
my %snapshot_sql = (
	'ciphertexts and blind indexes of customers' => q{
SELECT string_agg(id || ':' || md5(email) || ':' || coalesce(md5(doc), '-') || ':'
                  || encode(email_bidx, 'hex') || ':' || encode(aad, 'hex'), ',' ORDER BY id)
  FROM customers},
	'wrapped tenant keys' => q{
SELECT string_agg(concat_ws(':', tenant, state, key_version, key_source, md5(wrapped_key),
                            encode(master_kcv, 'hex')), ',' ORDER BY tenant)
  FROM envault.tenants},
	'data keys and their wrapped keys' => q{
SELECT count(*) || ' keys: '
       || string_agg(concat_ws(':', key_id, tenant, purpose, version, state,
                               md5(wrapped_key), tenant_key_version), ',' ORDER BY key_id)
  FROM envault.data_keys},
	'secrets' => q{
SELECT string_agg(concat_ws(':', tenant, name, md5(ciphertext), preview, created_at), ','
                  ORDER BY tenant, name)
  FROM envault.secrets},
	'token HMACs' => q{
SELECT string_agg(concat_ws(':', token_id, tenant, md5(token_hmac), pepper_version), ','
                  ORDER BY token_id)
  FROM envault.tokens},
	'audit chains registered' => q{
SELECT string_agg(concat_ws(':', chain_id, identity, tenant_column, builtin, min_retention), ','
                  ORDER BY chain_id)
  FROM envault.audit_chains},
	'checkpoints' => q{
SELECT count(*) || ' checkpoints, '
       || md5(string_agg(concat_ws(':', checkpoint_id, chain_id, tenant, seq, encode(head_hash, 'hex'), note),
                         ',' ORDER BY checkpoint_id))
  FROM envault.checkpoints},
	'anchors' => q{
SELECT string_agg(concat_ws(':', chain_id, tenant, seq, checkpoint_id, rows_purged), ','
                  ORDER BY chain_id, tenant)
  FROM envault.chain_anchors},
	'constraints, indexes and triggers of the tables' => q{
SELECT string_agg(d, E'\n' ORDER BY d) FROM (
	SELECT conrelid::regclass || ' constraint ' || conname || ': ' || pg_get_constraintdef(oid) AS d
	  FROM pg_constraint WHERE conrelid IN ('customers'::regclass, 'orders_audit'::regclass)
	UNION ALL
	SELECT tablename || ' index ' || indexdef FROM pg_indexes
	 WHERE tablename IN ('customers', 'orders_audit')
	UNION ALL
	SELECT tgrelid::regclass || ' trigger ' || tgname FROM pg_trigger
	 WHERE tgrelid IN ('customers'::regclass, 'orders_audit'::regclass) AND NOT tgisinternal) s});
my @chains = ('orders_audit', 'envault.key_events', 'envault.access_log');
foreach my $tbl (@chains)
{
	$snapshot_sql{"rows of chain $tbl"} = qq{
SELECT count(*) || ' rows, '
       || md5(string_agg(concat_ws(':', coalesce(tenant, '<none>'), envault_seq, envault_at,
                                   encode(envault_prev, 'hex'), encode(envault_hash, 'hex')),
                         ',' ORDER BY tenant NULLS FIRST, envault_seq))
  FROM $tbl};
}

sub snapshot
{
	my ($node, $db) = @_;
	return { map { $_ => $node->safe_psql($db, $snapshot_sql{$_}) } keys %snapshot_sql };
}

# verify_chain of every chain: "tenant:rows:ok ..."
sub verify_all
{
	my ($node, $db) = @_;
	return join(
		"\n",
		map {
			"$_ "
			  . $node->safe_psql(
				$db, qq{
SELECT string_agg(concat_ws(':', coalesce(tenant, '<none>'), rows_checked, ok, first_bad_seq, reason),
                  ' ' ORDER BY tenant NULLS FIRST)
  FROM envault.verify_chain('$_')})
		} @chains);
}

my $src_snapshot = snapshot($source, 'appdb');
my $src_verify = verify_all($source, 'appdb');
unlike($src_verify, qr/:f(?::|\s|$)/m, 'source: every chain verifies')
  or diag($src_verify);
like($src_snapshot->{'data keys and their wrapped keys'},
	qr/^13 keys: /,
	'source: 13 data keys (email, docs, _secrets and _bidx.email of each tenant; two versions of email for acme)'
);
like($src_snapshot->{'anchors'}, qr/(^|,)\d+:globex:\d+:\d+:$purged_orders(,|$)/,
	'source: the chain of globex in orders_audit was purged up to an anchor');
like($src_snapshot->{'anchors'}, qr/(^|,)\d+:acme:\d+:\d+:$purged_log(,|$)/,
	'source: so was the chain of acme in envault.access_log');

my $dump = "$tmp/appdb.dump";
my ($out, $err);
ok( IPC::Run::run(
		[
			$source->installed_command('pg_dump'), '-Fc', '-f', $dump,
			'-d', $source->connstr('appdb')
		],
		'<', \undef, '>', \$out, '2>', \$err),
	'pg_dump -Fc succeeds') or diag($err);
is($err, '', 'pg_dump reports nothing');

# CREATE DATABASE and pg_restore: the only steps.  Returns pg_restore's
# exit status and stderr.
sub restore
{
	my ($node, $db) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my ($rout, $rerr) = ('', '');
	IPC::Run::run(
		[
			$node->installed_command('pg_restore'), '-d', $node->connstr($db),
			$dump
		],
		'<', \undef, '>', \$rout, '2>', \$rerr);
	return ($? >> 8, $rerr);
}

# ---- restored with the same keys ----------------------------------------------------

my $target = new_server('dump_target', $key_m);
my ($status, $restore_err) = restore($target, 'appdb');
# pg_restore creates a chained table's primary key after its data, when
# envault.audit_chains has the table registered already: the DDL guard
# lets ADD PRIMARY KEY (and the SET NOT NULL it carries) through.
is($status, 0, 'restore: pg_restore succeeds');
is($restore_err, '', 'restore: pg_restore reports no error') or diag($restore_err);

my $tgt_snapshot = snapshot($target, 'appdb');
foreach my $what (sort keys %snapshot_sql)
{
	is($tgt_snapshot->{$what}, $src_snapshot->{$what},
		"restore: $what identical to the source");
}
# envault's own chained tables are reloaded through the chain trigger
# (src/chaintrigger.c, envault_chain_insert), which keeps the chain values the
# dump supplies: the next link, or on an empty chain its first row, which
# for the chain of acme in envault.access_log, purged on the source, is the
# row at its anchor.
is(verify_all($target, 'appdb'), $src_verify,
	'restore: every chain verifies as on the source, checkpoints signed before the dump included'
);

# Every value decrypts to its original.
my $expected_values = join(',',
	map { "$_=$customers{$_}[1]/" . ($customers{$_}[2] // '-') }
	sort { $a <=> $b } keys %customers);
my $values_sql = q{
SELECT string_agg(id || '=' || envault.env_decrypt_text(email, aad) || '/'
                  || coalesce(encode(envault.env_decrypt(doc), 'hex'), '-'), ',' ORDER BY id)
  FROM customers};
is($target->safe_psql('appdb', $values_sql),
	$expected_values, 'restore: every value decrypts to its original');
is( $target->safe_psql(
		'appdb', q{
SELECT count(*) FILTER (WHERE envault.blind_index(tenant, 'email', envault.env_decrypt_text(email, aad))
                              = email_bidx) || ' of ' || count(*)
  FROM customers}),
	'10 of 10',
	'restore: blind indexes computed again equal the restored ones');
is( $target->safe_psql(
		'appdb', q{
SELECT string_agg(id::text, ',' ORDER BY id) FROM customers
 WHERE tenant = 'acme' AND email_bidx = envault.blind_index('acme', 'email', 'alice@acme.example')}),
	'1',
	'restore: a blind index lookup finds its row (only in its tenant)');
is( $target->safe_psql(
		'appdb',
		join("\n",
			map { 'SELECT envault.verify_token(' . sql_lit($tokens{$_}) . ');' }
			sort keys %tokens)),
	join("\n", sort keys %tokens),
	'restore: the tokens issued on the source verify');
is( $target->safe_psql(
		'appdb',
		join("\n",
			map { my ($t, $n) = split /\|/; "SELECT envault.get_secret(" . sql_lit($t) . ', ' . sql_lit($n) . ');' }
			sort keys %secrets)),
	join("\n", map { $secrets{$_} } sort keys %secrets),
	'restore: get_secret returns every secret, the replaced one with its new value');

# Encrypting again uses the restored data keys.
my $nkeys = $target->safe_psql('appdb', 'SELECT count(*) FROM envault.data_keys');
is( $target->safe_psql(
		'appdb', q{
SELECT count(*) FILTER (WHERE envault.env_is_current(envault.env_encrypt(tenant, purpose, 'again'::text)))
       || ' of ' || count(*)
  FROM envault.data_keys WHERE state = 'active' AND purpose NOT LIKE '\_%'}),
	'6 of 6',
	'restore: every (tenant, purpose) encrypts again under its active data key');
is($target->safe_psql('appdb', 'SELECT count(*) FROM envault.data_keys'),
	$nkeys, 'restore: no data key was created');

# The chains go on.
$target->safe_psql(
	'appdb',
	insert_orders(100, 6) . q{
SELECT envault.create_tenant('hooli');
SELECT count(*) FROM envault.checkpoint('orders_audit');
SELECT count(*) FROM envault.checkpoint('envault.key_events');
SELECT count(*) FROM envault.checkpoint('envault.access_log');
});
my $after = verify_all($target, 'appdb');
unlike($after, qr/:f(?::|\s|$)/m,
	'restore: after new rows and checkpoints, every chain still verifies')
  or diag($after);
is( $target->safe_psql(
		'appdb',
		q{SELECT count(*) FROM envault.access_log WHERE application_name = 'source-reads'}),
	$source->safe_psql(
		'appdb',
		q{SELECT count(*) FROM envault.access_log WHERE application_name = 'source-reads'}),
	'restore: the source\'s access records are all there');

# ---- another database name ------------------------------------------------------

($status, my $copy_err) = restore($target, 'appdb_copy');
is($copy_err, $restore_err,
	'restore as appdb_copy: pg_restore reports what it reported for appdb');
is(verify_all($target, 'appdb_copy'), $src_verify,
	'restore as appdb_copy: every chain verifies as on the source');
is( $target->safe_psql('appdb_copy', q{SELECT envault.database_id()}),
	$source->safe_psql('appdb', q{SELECT envault.database_id()}),
	'restore as appdb_copy: the database identity of the source (not its name)');
is( $target->safe_psql(
		'appdb_copy',
		q{SELECT count(*) FROM envault.checkpoints
		   WHERE note LIKE 'envault/' || envault.database_id() || '/%'}),
	(split / /, $src_snapshot->{checkpoints})[0],
	'restore as appdb_copy: (all checkpoints name that identity)');
is($target->safe_psql('appdb_copy', $values_sql),
	$expected_values, 'restore as appdb_copy: every value decrypts');
$target->stop;

# ---- another master key -------------------------------------------------------------

my $other = new_server('dump_other_key', $key_other);
($status, my $other_err) = restore($other, 'appdb');
is($other_err, $restore_err,
	'other master key: pg_restore reports what it reported with the right key');
my $other_snapshot = snapshot($other, 'appdb');
is( $other_snapshot->{'ciphertexts and blind indexes of customers'} . "\n"
	  . $other_snapshot->{'wrapped tenant keys'},
	$src_snapshot->{'ciphertexts and blind indexes of customers'} . "\n"
	  . $src_snapshot->{'wrapped tenant keys'},
	'other master key: the restored data is the same');
is(verify_all($other, 'appdb'), $src_verify,
	'other master key: the chains verify (that needs no master key)');

my $fp_m = fingerprint($key_m);
my $fp_other = fingerprint($key_other);
sub mismatch
{
	my ($tenant) = @_;
	return
	    "ERROR:  F0000: configured envault master key does not match the key that wrapped tenant \"$tenant\"\n"
	  . "DETAIL:  The tenant key was wrapped by the master key with check value $fp_m; "
	  . "the configured master key has check value $fp_other.\n"
	  . "HINT:  Configure the master key that this database's keys were created with.\n"
	  . 'LOCATION:  ';
}
foreach my $case (
	[ 'decrypt a value of acme', 'SELECT envault.env_decrypt_text(email, aad) FROM customers WHERE id = 1', 'acme' ],
	[ 'decrypt a value of Initech "EU"', 'SELECT envault.env_decrypt(doc) FROM customers WHERE id = 10', 'Initech "EU"' ],
	[ 'get_secret of globex', q{SELECT envault.get_secret('globex', 'stripe')}, 'globex' ],
	[ 'encrypt for acme', q{SELECT envault.env_encrypt('acme', 'email', 'x'::text)}, 'acme' ],
	[ 'blind index for globex', q{SELECT envault.blind_index('globex', 'email', 'x')}, 'globex' ])
{
	my ($name, $sql, $tenant) = @$case;
	my ($ret, $o, $e) = $other->psql('appdb', "\\set VERBOSITY verbose\n$sql");
	is($ret, 3, "other master key: $name fails");
	like($e, qr/^psql:<stdin>:\d+: \Q${\ mismatch($tenant)}\E/m,
		"other master key: $name: F0000, the master key does not match, both check values");
	is($o, '', "other master key: $name returns nothing");
}
is( $other->safe_psql(
		'appdb', q{SELECT count(*) FROM envault.access_log WHERE application_name IS DISTINCT FROM 'source-reads'}),
	'0',
	'other master key: no access record (nothing was decrypted)');
is( $other->safe_psql('appdb', 'SELECT count(*) FROM envault.data_keys'),
	$nkeys, 'other master key: no data key was created');
$other->stop;
$source->stop;

foreach my $node ($source, $target, $other)
{
	my $log = slurp_file($node->logfile);
	unlike($log, qr/\Q$key_m\E|\Q$key_other\E|\Q$pepper\E/i,
		$node->name . ': no key in the server log');
}

done_testing();
