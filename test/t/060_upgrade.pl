# envault TAP test: the upgrade from 0.1.0 (through 0.2.0) to the current version.
#
# One server, envault preloaded, with a master key, a pepper and a
# checkpoint signing key; the library is the current one throughout.
#
# Database "upgraded": CREATE EXTENSION envault VERSION '0.1.0' (the frozen
# install script), then what an application of 0.1.0 does: tenants, values
# encrypted (text and bytea, with and without associated data), blind
# indexes, tokens (one revoked), rotations of a data key and of a tenant
# key, so that key_events has rows of several tenants.  Decrypting works
# there, and the access records go to the server log (0.1.0 has no
# envault.access_log).  Then ALTER EXTENSION envault UPDATE, and:
# - the version is the current one (0.3.0); the key tables, the tokens, the ciphertexts and
#   the rows of key_events are exactly what they were;
# - its schema is that of database "fresh" (CREATE EXTENSION envault),
#   object by object: every extension member and everything in schema
#   envault, with definitions, columns, constraints, indexes, triggers,
#   policies, owners, ACLs and initial privileges, comments, dependencies,
#   event triggers, and the tables pg_dump dumps with their conditions
#   (pg_extension.extconfig and extcondition, by name).  A difference fails
#   and is listed.  A control makes changes in a transaction that rolls back
#   and checks that the comparison sees each one.  As a second, independent
#   check, pg_dump --schema-only --binary-upgrade (which writes out every
#   extension member) of both must be the same once OIDs, xids and sequence
#   values are taken out;
# - every value decrypts to its original, blind indexes are unchanged,
#   tokens verify (the revoked one does not);
# - key_events is an audit chain whose rows verify, the pre-upgrade rows
#   counted, per tenant, with envault's own chain ids; new key events join
#   it; it refuses UPDATE;
# - the new features work on the old data: secrets store, the audit chain
#   of a user table with rows, checkpoints, the access log,
#   reencrypt_column.
# Last, restores: a dump of the upgraded database, and a dump of the 0.1.0
# database taken before the upgrade (restored into the current version directly): the
# chains verify with every row, values decrypt, and the schema is the new
# install's.

use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use EnvaultTest qw(random_key_hex sql_lit);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf(
	'postgresql.conf', "shared_preload_libraries = 'envault'\n"
	  . "envault.master_key = '"
	  . random_key_hex() . "'\n"
	  . "envault.pepper = '"
	  . random_key_hex() . "'\n"
	  . "envault.signing_key = '"
	  . random_key_hex() . "'\n");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE upgraded');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');

# Run $sql in database $db; safe_psql talks UTF-8 bytes, this characters.
sub query
{
	my ($db, $sql) = @_;
	utf8::encode($sql);
	my $out = $node->safe_psql($db, $sql);
	utf8::decode($out);
	return $out;
}

sub q_up { return query('upgraded', $_[0]); }

is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(version, ',' ORDER BY version)
			FROM pg_available_extension_versions WHERE name = 'envault'}),
	'0.1.0,0.2.0,0.3.0',
	'versions 0.1.0, 0.2.0 and 0.3.0 are installed');

# --- a 0.1.0 database in use ------------------------------------------------------

q_up(q{CREATE EXTENSION envault VERSION '0.1.0'});
is(q_up(q{SELECT extversion FROM pg_extension WHERE extname = 'envault'}),
	'0.1.0', 'CREATE EXTENSION envault VERSION 0.1.0');
is( q_up(
		q{SELECT to_regproc('envault.key_events_append_only') IS NOT NULL,
				 to_regclass('envault.secrets') IS NULL}),
	't|t',
	'it is the 0.1.0 schema (append-only trigger function, no secrets store)');

# The originals, kept in Perl: id => [tenant, purpose, kind, plaintext, aad].
my %rows = (
	1 => [ 'acme', 'pii', 'text', 'alice@acme.example', '\x00000001' ],
	2 => [ 'acme', 'pii', 'text', "Gr\x{fc}\x{df}e \x{2713}", undef ],
	3 => [ 'acme', 'files', 'bytea', '00ff10fe7f80', '\x00000003' ],
	4 => [ 'globex', 'pii', 'text', 'bob@globex.example', undef ],
	5 => [ 'globex', 'files', 'bytea', 'c0ffee' x 50, undef ],
	6 => [ 'initech', 'pii', 'text', '', '\x00000006' ],);

sub insert_rows
{
	my (@ids) = @_;
	my $sql = '';
	foreach my $id (@ids)
	{
		my ($tenant, $purpose, $kind, $plain, $aad) = @{ $rows{$id} };
		my $pt =
		  $kind eq 'text' ? sql_lit($plain) . '::text' : "'\\x$plain'::bytea";
		my $aadlit = defined $aad ? sql_lit($aad) . '::bytea' : 'NULL::bytea';
		$sql .=
		    "INSERT INTO app.customers VALUES ($id, '$tenant', '$purpose', '$kind', $aadlit, "
		  . "envault.env_encrypt('$tenant', '$purpose', $pt, $aadlit), "
		  . "envault.blind_index('$tenant', 'email', "
		  . sql_lit($plain) . "));\n";
	}
	return $sql;
}

q_up(q{
SELECT envault.create_tenant('acme');
SELECT envault.create_tenant('globex');
SELECT envault.create_tenant('initech');
CREATE SCHEMA app;
CREATE TABLE app.customers (
	id		int PRIMARY KEY,
	tenant	text NOT NULL,
	purpose	text NOT NULL,
	kind	text NOT NULL,
	aad		bytea,
	ct		bytea NOT NULL,
	bidx	bytea NOT NULL
);
-- with a primary key, which pg_restore adds after it has loaded the
-- registry of chains, on a table that is chained by then
CREATE TABLE app.audit (id int PRIMARY KEY, tenant text, what text);
INSERT INTO app.audit VALUES (1, 'acme', 'signed up'), (2, 'globex', 'signed up'),
	(3, 'acme', 'paid'), (4, NULL, 'maintenance');
} . insert_rows(1, 3, 4, 6));
# values under version 1 and version 2 of acme's "pii" key; globex's data
# keys rewrapped under its second tenant key
q_up(q{SELECT envault.rotate_data_key('acme', 'pii')});
q_up(q{SELECT envault.rotate_tenant_key('globex')});
q_up(insert_rows(2, 5));

my %tokens;
foreach my $t ('acme', 'globex', 'initech')
{
	$tokens{$t} = q_up("SELECT envault.issue_token('$t', 'app')");
}
my $revoked = q_up(q{SELECT envault.issue_token('acme', 'old')});
q_up(
	q{SELECT envault.revoke_token(token_id) FROM envault.tokens WHERE label = 'old'}
);

# Decrypt every value with its associated data, in the order of the ids.
my $decrypt_sql = q{
SELECT id, CASE kind WHEN 'text' THEN envault.env_decrypt_text(ct, aad)
			ELSE encode(envault.env_decrypt(ct, aad), 'hex') END
  FROM app.customers ORDER BY id};
my $expected = join("\n",
	map { "$_|$rows{$_}[3]" } sort { $a <=> $b } keys %rows);
my $log_offset = -s $node->logfile;
is(q_up($decrypt_sql), $expected,
	'0.1.0 with the current library: every value decrypts');
# 0.1.0 has no access log table: the worker writes the records to the
# server log instead, and says why
$node->wait_for_log(
	qr/WARNING:  envault access log worker could not write \d+ records: relation "envault.access_log" does not exist/,
	$log_offset);
$node->wait_for_log(qr/LOG:  envault access: \{.*"tenant": "globex", "purpose": "files"/,
	$log_offset);
pass('0.1.0: the access records of those decryptions are in the server log');
is( q_up(q{SELECT envault.verify_token(} . sql_lit($tokens{acme}) . ')'),
	'acme', '0.1.0: a token verifies');

# What must not change
my %before;
my %digest_sql = (
	# the columns of 0.1.0 (0.3.0 adds rekeyed_at, NULL until a re-keying)
	'tenants' => q{SELECT md5(string_agg((tenant, state, key_version, key_source,
					   wrapped_key, master_kcv, customer_kcv, created_at, created_by,
					   state_changed_at)::text, '|' ORDER BY tenant))
					   FROM envault.tenants},
	'data keys' =>
	  q{SELECT md5(string_agg(d::text, '|' ORDER BY key_id)) FROM envault.data_keys d},
	# a token's revocation moves to envault.token_revocations in 0.3.0
	'tokens' => q{SELECT md5(string_agg((token_id, tenant, token_hmac, pepper_version,
					   label, created_by, created_at, expires_at, last_used_at,
					   revoked_at)::text, '|' ORDER BY token_id)) FROM envault.tokens},
	'key events' => q{SELECT md5(string_agg((event_id, at, actor, operation, tenant,
					   purpose, version, detail)::text, '|' ORDER BY event_id))
					   FROM envault.key_events},
	'ciphertexts' =>
	  q{SELECT md5(string_agg((id, ct, bidx)::text, '|' ORDER BY id)) FROM app.customers},
);
$before{$_} = q_up($digest_sql{$_}) foreach keys %digest_sql;
my $events_per_tenant = q{
SELECT coalesce(tenant, '(none)') || ':' || count(*) FROM envault.key_events
 GROUP BY tenant ORDER BY 1};
my $events_before = q_up($events_per_tenant);
my $nevents = q_up(q{SELECT count(*) FROM envault.key_events});
cmp_ok($nevents, '>=', 6, "0.1.0: key_events has $nevents rows");
like($events_before, qr/^acme:\d+\nglobex:\d+\ninitech:\d+$/,
	'0.1.0: key_events has rows of every tenant');

# a dump of the 0.1.0 database, restored below into the current version
my $dump010 = $node->basedir . '/v010.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'upgraded', '-f', $dump010 ],
	'pg_dump of the 0.1.0 database');

# --- ALTER EXTENSION envault UPDATE ------------------------------------------------

my ($ret, $out, $err) =
  $node->psql('upgraded', 'ALTER EXTENSION envault UPDATE');
is($ret, 0, 'ALTER EXTENSION envault UPDATE succeeds') or diag($err);
if ($ret != 0)
{
	# Nothing below can work without it.
	$node->stop;
	done_testing();
	exit;
}
is(q_up(q{SELECT extversion FROM pg_extension WHERE extname = 'envault'}),
	'0.3.0', 'the version is 0.3.0');

$digest_sql{tokens} = q{
SELECT md5(string_agg((k.token_id, k.tenant, k.token_hmac, k.pepper_version, k.label,
					   k.created_by, k.created_at, k.expires_at, k.last_used_at,
					   r.revoked_at)::text, '|' ORDER BY k.token_id))
  FROM envault.tokens k LEFT JOIN envault.token_revocations r USING (token_id)};
foreach my $what (sort keys %digest_sql)
{
	is(q_up($digest_sql{$what}), $before{$what},
		"the upgrade changes no $what");
}
is(q_up(q{SELECT count(*) FROM envault.tenants WHERE rekeyed_at IS NOT NULL}),
	'0', 'no tenant counts as re-keyed');

# --- a new install ----------------------------------------------------------------

$node->safe_psql('fresh', 'CREATE EXTENSION envault');
is($node->safe_psql('fresh',
		q{SELECT extversion FROM pg_extension WHERE extname = 'envault'}),
	'0.3.0', 'CREATE EXTENSION envault installs 0.3.0');

# --- the two schemas, object by object ------------------------------------------

# One line per fact about envault's objects: every extension member, and
# every relation, routine and type in schema envault whether a member or
# not, with what defines it.  Column positions count live columns only.
# OIDs never appear; names of RI triggers (which contain OIDs) are masked.
my $facts_sql = q{
WITH ext AS (
	SELECT e.* FROM pg_catalog.pg_extension e WHERE e.extname = 'envault'
), members AS (
	SELECT d.classid, d.objid, d.objsubid
	  FROM pg_catalog.pg_depend d, ext
	 WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
	   AND d.refobjid = ext.oid AND d.deptype = 'e'
), rels AS (
	SELECT c.* FROM pg_catalog.pg_class c
	 WHERE c.relnamespace = 'envault'::pg_catalog.regnamespace
), cons AS (
	SELECT c.* FROM pg_catalog.pg_constraint c
	 WHERE c.connamespace = 'envault'::pg_catalog.regnamespace
), trigs AS (
	SELECT t.* FROM pg_catalog.pg_trigger t WHERE t.tgrelid IN (SELECT oid FROM rels)
), pols AS (
	SELECT p.* FROM pg_catalog.pg_policy p WHERE p.polrelid IN (SELECT oid FROM rels)
), procs AS (
	SELECT p.* FROM pg_catalog.pg_proc p
	 WHERE p.pronamespace = 'envault'::pg_catalog.regnamespace
), facts(fact) AS (
	SELECT pg_catalog.format('extension %s: version %s, relocatable %s, schema %s, owner %s',
			 extname, extversion, extrelocatable, extnamespace::pg_catalog.regnamespace,
			 extowner::pg_catalog.regrole)
	  FROM ext
	UNION ALL
	-- the tables pg_dump dumps, and which rows (the order of the array does
	-- not matter to pg_dump, and an upgrade appends to it)
	SELECT pg_catalog.format('dumped with the extension: %s %s',
			 c.cfg::pg_catalog.regclass, pg_catalog.quote_literal(ext.extcondition[c.i]))
	  FROM ext, pg_catalog.unnest(ext.extconfig) WITH ORDINALITY c(cfg, i)
	UNION ALL
	SELECT 'member: ' || pg_catalog.pg_describe_object(classid, objid, objsubid)
	  FROM members
	UNION ALL
	SELECT pg_catalog.format('schema %s: owner %s, acl %s', n.nspname,
			 n.nspowner::pg_catalog.regrole, n.nspacl)
	  FROM pg_catalog.pg_namespace n WHERE n.nspname = 'envault'
	UNION ALL
	SELECT pg_catalog.format('relation %s: kind %s, owner %s, acl %s, persistence %s, row security %s, forced %s, options %s, replica identity %s, access method %s, partitioned %s, of type %s',
			 r.oid::pg_catalog.regclass, r.relkind, r.relowner::pg_catalog.regrole,
			 r.relacl, r.relpersistence, r.relrowsecurity, r.relforcerowsecurity,
			 r.reloptions, r.relreplident, am.amname, r.relispartition,
			 r.reloftype::pg_catalog.regtype)
	  FROM rels r LEFT JOIN pg_catalog.pg_am am ON am.oid = r.relam
	UNION ALL
	SELECT pg_catalog.format('column %s.%s (#%s): %s, not null %s, default %s, identity %s, generated %s, collation %s, storage %s, acl %s, options %s',
			 a.attrelid::pg_catalog.regclass, a.attname,
			 pg_catalog.row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum),
			 pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
			 pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
			 a.attcollation::pg_catalog.regcollation, a.attstorage, a.attacl,
			 -- pg_attver: set on every column by this machine's server, not by envault
			 ARRAY(SELECT o FROM pg_catalog.unnest(a.attoptions) o
				   WHERE o OPERATOR(pg_catalog.!~) '^pg_attver='))
	  FROM pg_catalog.pg_attribute a
	  LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	 WHERE a.attrelid IN (SELECT oid FROM rels) AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT pg_catalog.format('constraint %s on %s: %s, deferrable %s, deferred %s, validated %s, no inherit %s, index %s',
			 c.conname, c.conrelid::pg_catalog.regclass, pg_catalog.pg_get_constraintdef(c.oid),
			 c.condeferrable, c.condeferred, c.convalidated, c.connoinherit,
			 c.conindid::pg_catalog.regclass)
	  FROM cons c
	UNION ALL
	SELECT pg_catalog.format('index %s: %s, clustered %s, replica identity %s, valid %s',
			 i.indexrelid::pg_catalog.regclass, pg_catalog.pg_get_indexdef(i.indexrelid),
			 i.indisclustered, i.indisreplident, i.indisvalid)
	  FROM pg_catalog.pg_index i WHERE i.indrelid IN (SELECT oid FROM rels)
	UNION ALL
	SELECT pg_catalog.format('trigger %s: %s, enabled %s, internal %s', t.tgname,
			 pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled, t.tgisinternal)
	  FROM trigs t
	UNION ALL
	SELECT pg_catalog.format('policy %s on %s: command %s, %s, to %s, using %s, with check %s',
			 p.polname, p.polrelid::pg_catalog.regclass, p.polcmd,
			 CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
			 (SELECT pg_catalog.array_agg(x.r ORDER BY x.r)
				FROM (SELECT CASE WHEN r = 0 THEN 'public'
								  ELSE r::pg_catalog.regrole::pg_catalog.text END
						FROM pg_catalog.unnest(p.polroles) r) x(r)),
			 pg_catalog.pg_get_expr(p.polqual, p.polrelid),
			 pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))
	  FROM pols p
	UNION ALL
	SELECT pg_catalog.format('rule %s on %s: %s', r.rulename, r.ev_class::pg_catalog.regclass,
			 pg_catalog.pg_get_ruledef(r.oid))
	  FROM pg_catalog.pg_rewrite r WHERE r.ev_class IN (SELECT oid FROM rels)
	UNION ALL
	SELECT pg_catalog.format('sequence %s: %s, start %s, increment %s, min %s, max %s, cache %s, cycle %s',
			 s.seqrelid::pg_catalog.regclass, s.seqtypid::pg_catalog.regtype, s.seqstart,
			 s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle)
	  FROM pg_catalog.pg_sequence s WHERE s.seqrelid IN (SELECT oid FROM rels)
	UNION ALL
	SELECT pg_catalog.format('routine %s: kind %s, owner %s, acl %s',
			 p.oid::pg_catalog.regprocedure, p.prokind, p.proowner::pg_catalog.regrole, p.proacl)
	  FROM procs p
	UNION ALL
	-- definitions line by line, so that a difference names its line
	SELECT pg_catalog.format('routine %s, line %s: %s', p.oid::pg_catalog.regprocedure,
			 pg_catalog.lpad(l.n::pg_catalog.text, 4), l.line)
	  FROM procs p,
		   pg_catalog.regexp_split_to_table(pg_catalog.pg_get_functiondef(p.oid), E'\n')
			 WITH ORDINALITY l(line, n)
	UNION ALL
	SELECT pg_catalog.format('type %s: type %s, owner %s, acl %s',
			 t.oid::pg_catalog.regtype, t.typtype, t.typowner::pg_catalog.regrole, t.typacl)
	  FROM pg_catalog.pg_type t WHERE t.typnamespace = 'envault'::pg_catalog.regnamespace
	UNION ALL
	SELECT pg_catalog.format('event trigger %s: on %s, %s, tags %s, enabled %s, owner %s',
			 e.evtname, e.evtevent, e.evtfoid::pg_catalog.regprocedure, e.evttags,
			 e.evtenabled, e.evtowner::pg_catalog.regrole)
	  FROM pg_catalog.pg_event_trigger e
	UNION ALL
	SELECT pg_catalog.format('comment on %s: %s',
			 pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid),
			 pg_catalog.quote_literal(d.description))
	  FROM pg_catalog.pg_description d
	 WHERE (d.classoid, d.objoid) IN (SELECT classid, objid FROM members)
		OR (d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objoid IN (SELECT oid FROM rels))
		OR (d.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objoid IN (SELECT oid FROM procs))
		OR (d.classoid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objoid IN (SELECT oid FROM cons))
		OR (d.classoid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND d.objoid IN (SELECT oid FROM trigs))
		OR (d.classoid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objoid IN (SELECT oid FROM pols))
		OR (d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
			AND d.objoid = 'envault'::pg_catalog.regnamespace)
		OR d.classoid = 'pg_catalog.pg_event_trigger'::pg_catalog.regclass
	UNION ALL
	SELECT pg_catalog.format('initial privileges of %s: %s %s',
			 pg_catalog.pg_describe_object(i.classoid, i.objoid, i.objsubid),
			 i.privtype, i.initprivs)
	  FROM pg_catalog.pg_init_privs i
	 WHERE (i.classoid, i.objoid) IN (SELECT classid, objid FROM members)
		OR (i.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND i.objoid IN (SELECT oid FROM rels))
		OR (i.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND i.objoid IN (SELECT oid FROM procs))
	UNION ALL
	SELECT pg_catalog.format('dependency (%s) of %s on %s', d.deptype,
			 pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid),
			 pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid))
	  FROM pg_catalog.pg_depend d
	 WHERE (d.classid, d.objid) IN (SELECT classid, objid FROM members)
		OR (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM rels))
		OR (d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM procs))
		OR (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM cons))
		OR (d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM trigs))
		OR (d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM pols))
		OR (d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid IN
			(SELECT oid FROM pg_catalog.pg_attrdef WHERE adrelid IN (SELECT oid FROM rels)))
		OR d.classid = 'pg_catalog.pg_event_trigger'::pg_catalog.regclass
)
SELECT pg_catalog.regexp_replace(pg_catalog.replace(fact, E'\n', E'\\\\n'),
		 'RI_ConstraintTrigger_([ac])_[0-9]+', 'RI_ConstraintTrigger_\1_N', 'g') AS f
  FROM facts ORDER BY 1;
};

# Lines of $a not in $b and of $b not in $a, each line counted.
sub line_diff
{
	my ($a, $b) = @_;
	my %count;
	$count{$_}++ foreach split /\n/, $a;
	$count{$_}-- foreach split /\n/, $b;
	my @only_a = grep { $count{$_} > 0 } sort keys %count;
	my @only_b = grep { $count{$_} < 0 } sort keys %count;
	return (\@only_a, \@only_b);
}

# Pass if two texts have the same lines; otherwise list the differences.
sub same_lines
{
	my ($a, $b, $name_a, $name_b, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($only_a, $only_b) = line_diff($a, $b);
	my $ok = ok(@$only_a == 0 && @$only_b == 0, $what);
	if (!$ok)
	{
		diag("only in $name_a:\n  " . join("\n  ", @$only_a)) if @$only_a;
		diag("only in $name_b:\n  " . join("\n  ", @$only_b)) if @$only_b;
	}
	return $ok;
}

my $facts_upgraded = $node->safe_psql('upgraded', $facts_sql);
my $facts_fresh = $node->safe_psql('fresh', $facts_sql);
my $nfacts = () = $facts_fresh =~ /\n/g;
cmp_ok($nfacts, '>', 1000, "the comparison covers $nfacts facts");
foreach my $kind ('member: ', 'column ', 'constraint ', 'index ', 'trigger ',
	'policy ', 'sequence ', 'routine ', 'type ', 'event trigger ',
	'comment on ', 'initial privileges of ', 'dependency ',
	'dumped with the extension: ', 'schema ', 'extension ')
{
	like($facts_fresh, qr/^\Q$kind\E/m, "the comparison covers: $kind...");
}
same_lines($facts_upgraded, $facts_fresh, 'the upgraded database',
	'the new install', 'the upgraded schema is the new one, object by object');

# The comparison sees differences: each change below, made in a
# transaction that rolls back, must show up.
my %mutations = (
	q{COMMENT ON FUNCTION envault.get_secret(text, text) IS 'changed'} =>
	  qr/^comment on function envault\.get_secret\(text,text\): 'changed'$/,
	q{GRANT EXECUTE ON FUNCTION envault.access_log_status() TO envault_user} =>
	  qr/^routine envault\.access_log_status\(\): kind f, owner \S+, acl \{.*envault_user=X/,
	q{ALTER FUNCTION envault.key_state(bytea) IMMUTABLE} =>
	  qr/^routine envault\.key_state\(bytea\), line +\d+:  IMMUTABLE/,
	q{ALTER TABLE envault.secrets ALTER COLUMN preview DROP NOT NULL} =>
	  qr/^column envault\.secrets\.preview \(#4\): text, not null f,/,
	q{DROP TRIGGER checkpoints_no_truncate ON envault.checkpoints} =>
	  qr/^trigger checkpoints_no_truncate: /,
	q{ALTER TABLE envault.data_keys DROP CONSTRAINT data_keys_purpose_check} =>
	  qr/^constraint data_keys_purpose_check on envault\.data_keys: /,
	q{ALTER EXTENSION envault DROP TABLE envault.secrets} =>
	  qr/^member: table envault\.secrets$/,
	q{ALTER EVENT TRIGGER envault_chain_ddl_guard DISABLE} =>
	  qr/^event trigger envault_chain_ddl_guard: .*enabled D/,);
my $mutated = $node->safe_psql('upgraded',
	"BEGIN;\n" . join(";\n", sort keys %mutations) . ";\n$facts_sql;\nROLLBACK;");
my ($only_mutated, $only_fresh) = line_diff($mutated, $facts_fresh);
foreach my $m (sort keys %mutations)
{
	ok( (grep { $_ =~ $mutations{$m} } @$only_mutated, @$only_fresh),
		"the comparison sees: $m");
}

# pg_dump in binary-upgrade mode writes out every extension member; -N app
# leaves out the application's tables.  Taken out: OIDs, xids, sequence
# values, pg_dump's per-run \restrict key.
sub schema_dump
{
	my ($db) = @_;
	my $file = $node->basedir . "/$db.schema.sql";
	$node->command_ok(
		[
			'pg_dump', '--schema-only', '--binary-upgrade', '-N', 'app',
			'-d', $db, '-f', $file
		],
		"pg_dump --schema-only --binary-upgrade $db");
	my @out;
	foreach (split /\n/, slurp_file($file))
	{
		next if /^\\(un)?restrict /;
		next if /binary_upgrade_set_next_/;
		s/(binary_upgrade_create_empty_extension\('envault', 'envault', false, '[^']*'), .*\);$/$1, ...);/;
		s/SET relfrozenxid = '\d+', relminmxid = '\d+'/SET relfrozenxid = N, relminmxid = N/;
		s/WHERE oid = '\d+';/WHERE oid = N;/;
		s/(pg_catalog\.setval\('[^']+'), \d+, (true|false)\)/$1, N)/;
		s/RI_ConstraintTrigger_([ac])_\d+/RI_ConstraintTrigger_$1_N/g;
		push @out, $_;
	}
	return join("\n", @out);
}
my $dump_upgraded = schema_dump('upgraded');
my $dump_fresh = schema_dump('fresh');
like($dump_fresh, qr/^ALTER EXTENSION envault ADD TABLE envault\.key_events;$/m,
	'the dump writes out extension members');
my $ndump = () = $dump_fresh =~ /\n/g;
same_lines($dump_upgraded, $dump_fresh, 'the upgraded database',
	'the new install',
	"pg_dump --schema-only of both is the same ($ndump lines)");

# --- old data, new functions ----------------------------------------------------

is(q_up($decrypt_sql), $expected, 'after the upgrade every value decrypts');
is( q_up(
		q{SELECT string_agg(id || ':' || envault.key_state(ct), ',' ORDER BY id)
			FROM app.customers}),
	'1:rotated,2:active,3:active,4:active,5:active,6:active',
	'key_state of the old values');
my $plaintexts = join(', ',
	map { "($_, " . sql_lit($rows{$_}[3]) . ')' } sort { $a <=> $b } keys %rows);
is( q_up(
		qq{SELECT count(*) FROM app.customers c JOIN (VALUES $plaintexts) p(id, plain)
			USING (id) WHERE c.bidx = envault.blind_index(c.tenant, 'email', p.plain)}),
	'6',
	'blind indexes computed now match those computed under 0.1.0');

foreach my $t (sort keys %tokens)
{
	is(q_up(q{SELECT envault.verify_token(} . sql_lit($tokens{$t}) . ')'),
		$t, "the token of $t verifies");
}
is(q_up(q{SELECT envault.verify_token(} . sql_lit($revoked) . ') IS NULL'),
	't', 'the token revoked under 0.1.0 stays revoked');
is( q_up(
		q{BEGIN; SELECT envault.authenticate(} . sql_lit($tokens{globex}) . q{);
		  SELECT envault.current_tenant(); COMMIT}),
	"globex\nglobex",
	'authenticate with a token of 0.1.0');

# key_events is an audit chain with every row of 0.1.0
my $verify_events = q{
SELECT coalesce(tenant, '(none)') || ':' || rows_checked, ok, first_bad_seq, reason
  FROM envault.verify_chain('envault.key_events') ORDER BY 1};
my $events_ok = join("\n", map { "$_|t||" } split(/\n/, $events_before));
is(q_up($verify_events), $events_ok,
	'key_events verifies as an audit chain, with every pre-upgrade row, per tenant');
is( q_up(
		q{SELECT chain_id || ':' || tbl::text || ':' || builtin FROM envault.audit_chains
		   ORDER BY chain_id}),
	"1:envault.access_log:true\n2:envault.key_events:true",
	'envault\'s own chains, with the chain ids of a new install');
is( q_up(
		q{SELECT count(*), bool_and(h.builtin) FROM envault.chain_heads h
		   JOIN envault.audit_chains c USING (chain_id)
		  WHERE c.tbl = 'envault.key_events'::regclass}),
	'3|t',
	'the heads of the linked key_events rows are envault\'s own (not dumped)');
is( q_up(
		q{SELECT count(*) FROM envault.key_events
		   WHERE operation = 'audit chain enabled'}),
	'0',
	'chaining envault\'s own tables records no key event');

($ret, $out, $err) = $node->psql('upgraded',
	"\\set VERBOSITY verbose\nUPDATE envault.key_events SET detail = 'x'");
like(
	$err,
	qr/ERROR:  42501: audit chain "key_events" is append-only/,
	'key_events refuses UPDATE as an audit chain');

q_up(q{SELECT envault.rotate_data_key('initech', 'pii')});
my $events_now = q_up($events_per_tenant);
isnt($events_now, $events_before, 'the rotation is recorded in key_events');
is(q_up($verify_events), join("\n", map { "$_|t||" } split(/\n/, $events_now)),
	'new key events join the chains, which verify with every row');

# the new features
is( q_up(
		q{SELECT envault.put_secret('acme', 'stripe', 'sk_live_0123456789abcdef');
		  SELECT envault.get_secret('acme', 'stripe');
		  SELECT name || ':' || preview FROM envault.list_secrets()}),
	"...cdef\nsk_live_0123456789abcdef\nstripe:...cdef",
	'the secrets store works (its data key purpose passes the new check)');
is(q_up(q{SELECT envault.enable_audit_chain('app.audit', 'tenant')}),
	'4', 'enable_audit_chain on a user table links its 4 rows');
q_up(q{INSERT INTO app.audit VALUES (5, 'acme', 'refund')});
is( q_up(
		q{SELECT coalesce(tenant, '(none)') || ':' || rows_checked || ':' || ok
			FROM envault.verify_chain('app.audit') ORDER BY 1}),
	"(none):1:true\nacme:3:true\nglobex:1:true",
	'the user chain verifies');
is( q_up(
		q{SELECT count(*) FROM envault.key_events
		   WHERE operation = 'audit chain enabled' AND detail LIKE 'app.audit %'}),
	'1',
	'enabling it is a key event');
is( q_up(
		q{SELECT count(*) FROM envault.checkpoint('envault.key_events')}),
	'4',
	'checkpoints of the four key_events chains (three tenants, and the events without one) are signed');
is( q_up(
		q{SELECT bool_and(ok) FROM envault.verify_chain('envault.key_events')}),
	't',
	'key_events verifies with its checkpoints');

q_up(q{SET application_name = 'upgrade test';}
	  . $decrypt_sql
	  . q{; SELECT envault.flush_access_log()});
is( q_up(
		q{SELECT string_agg(tenant || ':' || purpose || ':' || key_version || ':' || count,
							',' ORDER BY tenant, purpose, key_version)
			FROM envault.access_log WHERE application_name = 'upgrade test'}),
	'acme:files:1:1,acme:pii:1:1,acme:pii:2:1,globex:files:1:1,globex:pii:1:1,initech:pii:1:1',
	'decryptions after the upgrade are in envault.access_log');
is( q_up(
		q{SELECT count(*) FROM envault.access_log
		   WHERE secret_name = 'stripe' AND tenant = 'acme'}),
	'1',
	'get_secret is in envault.access_log');
is( q_up(
		q{SELECT bool_and(ok) FROM envault.verify_chain('envault.access_log')}),
	't',
	'the access log verifies as an audit chain');

($ret, $out, $err) = $node->psql('upgraded',
	q{CALL envault.reencrypt_column('app.customers', 'ct', 'aad', 2)});
is($ret, 0, 'reencrypt_column on the old values') or diag($err);
like($err, qr/reencrypt_column: done, 2 rows re-encrypted$/m,
	'it re-encrypts the two values under rotated keys (acme, and initech since the upgrade)');
is(q_up($decrypt_sql), $expected, 'and every value still decrypts');
is( q_up(
		q{SELECT envault.revoke_token(token_id) FROM envault.tokens k
		   WHERE tenant = 'initech'
		     AND NOT EXISTS (SELECT FROM envault.token_revocations r
		                      WHERE r.token_id = k.token_id);
		  SELECT envault.verify_token(} . sql_lit($tokens{initech}) . q{) IS NULL}),
	"t\nt",
	'revoke_token (now in C) revokes a token of 0.1.0');

# --- a dump of the upgraded database, restored ----------------------------------------

my $dumpfile = $node->basedir . '/upgraded.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'upgraded', '-f', $dumpfile ],
	'pg_dump of the upgraded database');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', 'restored', $dumpfile ],
	'pg_restore into a new database');
my $chains_sql = q{
SELECT c.tbl::text || ':' || coalesce(v.tenant, '(none)') || ':' || v.rows_checked || ':' || v.ok
  FROM envault.audit_chains c, envault.verify_chain(c.tbl) v ORDER BY 1};
my $chains = q_up($chains_sql);
like($chains, qr/^envault\.key_events:acme:\d+:true$/m,
	'the upgraded database: chains verify');
is($node->safe_psql('restored', $chains_sql), $chains,
	'restored: every chain verifies, with the same rows');
is(query('restored', $decrypt_sql), $expected,
	'restored: every value decrypts');
same_lines($node->safe_psql('restored', $facts_sql), $facts_fresh,
	'the restored database', 'the new install',
	'restored: the schema is the new one too');

# The other way to 0.3.0: a dump of 0.1.0 restored where 0.3.0 is
# installed.  The dump says CREATE EXTENSION without a version, so the
# restore creates 0.3.0, and the rows of key_events load through its chain
# trigger.
$node->safe_psql('postgres', 'CREATE DATABASE from010');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', 'from010', $dump010 ],
	'a dump of 0.1.0 restores into 0.3.0');
is( $node->safe_psql('from010',
		q{SELECT extversion FROM pg_extension WHERE extname = 'envault'}),
	'0.3.0',
	'restored from 0.1.0: the version is 0.3.0');
is(query('from010', $verify_events), $events_ok,
	'restored from 0.1.0: key_events verifies with every row of 0.1.0');
is(query('from010', $decrypt_sql), $expected,
	'restored from 0.1.0: every value decrypts');
is( query('from010',
		q{SELECT envault.verify_token(} . sql_lit($tokens{acme}) . ')'),
	'acme', 'restored from 0.1.0: a token verifies');
same_lines($node->safe_psql('from010', $facts_sql), $facts_fresh,
	'the database restored from 0.1.0', 'the new install',
	'restored from 0.1.0: the schema is the new one');

# --- from 0.2.0 ---------------------------------------------------------------------

# A 0.2.0 database used by the current library before its update (between
# the restart and ALTER EXTENSION UPDATE): its secrets are stored as 0.2.0
# stores them (bound to their name), its revocations in tokens.revoked_at.
# The update marks those secrets aad_version 1, which still open, moves the
# revocations to envault.token_revocations, and new secrets are stored with
# the associated data of 0.3.0.
$node->safe_psql('postgres', 'CREATE DATABASE from020');
sub q20 { return query('from020', $_[0]); }
q20(q{CREATE EXTENSION envault VERSION '0.2.0'});
q20(q{SELECT envault.create_tenant('acme')});
is(q20(q{SELECT envault.put_secret('acme', 'old', 'stored before the update')}),
	'...date', '0.2.0 schema: put_secret');
is(q20(q{SELECT envault.get_secret('acme', 'old')}), 'stored before the update',
	'0.2.0 schema: get_secret');
my $tok20 = q20(q{SELECT envault.issue_token('acme', 'old')});
my $tok20b = q20(q{SELECT envault.issue_token('acme', 'old, revoked')});
is(q20(q{SELECT envault.revoke_token(substr(} . sql_lit($tok20b) . q{, 5, 16))}), 't',
	'0.2.0 schema: revoke_token');
is(q20(q{SELECT envault.verify_token(} . sql_lit($tok20) . q{) || ',' ||
		  (envault.verify_token(} . sql_lit($tok20b) . q{) IS NULL)}),
	'acme,true', '0.2.0 schema: tokens verify, the revoked one does not');
q20('ALTER EXTENSION envault UPDATE');
is(q20(q{SELECT extversion FROM pg_extension WHERE extname = 'envault'}),
	'0.3.0', 'from 0.2.0: updated to 0.3.0');
is(q20(q{SELECT aad_version FROM envault.secrets WHERE name = 'old'}), '1',
	'from 0.2.0: the stored secret is marked aad_version 1');
is(q20(q{SELECT envault.get_secret('acme', 'old')}), 'stored before the update',
	'from 0.2.0: and still opens');
q20(q{SELECT envault.put_secret('acme', 'new', 'stored after the update')});
is(q20(q{SELECT string_agg(name || ':' || aad_version, ',' ORDER BY name) FROM envault.secrets}),
	'new:2,old:1', 'from 0.2.0: a new secret is stored with aad_version 2');
is(q20(q{SELECT envault.get_secret('acme', 'new')}), 'stored after the update',
	'from 0.2.0: and opens');
is(q20(q{SELECT count(*) FROM envault.token_revocations}), '1',
	'from 0.2.0: the revocation moved to envault.token_revocations');
is(q20(q{SELECT envault.verify_token(} . sql_lit($tok20) . q{) || ',' ||
		  (envault.verify_token(} . sql_lit($tok20b) . q{) IS NULL)}),
	'acme,true', 'from 0.2.0: the tokens verify as before');

$node->stop;
done_testing();
