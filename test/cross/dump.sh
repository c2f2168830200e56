#!/usr/bin/env bash
# test/cross/dump.sh OUTDIR: on this machine's PostgreSQL (15), a database
# with envault (test/cross/setup.sql) dumped with pg_dump into
# OUTDIR/dump.custom, with the key files it needs (master key, pepper,
# signing key) and its identity, for test/cross/restore.sh to restore into
# a newer major.  pg_upgrade would need both majors' binaries in one system;
# Debian carries each major in a different suite, so the move tested is the
# one every major supports: pg_dump of the old, pg_restore into the new.
source "$(dirname "$0")/../../scripts/lib.sh"
out=$1
dir=$(pg_workdir cross-dump)
trap 'cluster_stop "$dir"; rm -rf "$dir"' EXIT
mkdir -p "$out"
chown postgres: "$out"
new_key_file "$out/master.key"
new_key_file "$out/pepper.key"
new_signing_key "$out/signing.pem"
cluster_start "$dir" 54396 "envault.master_key_file = '$out/master.key'" \
	"envault.pepper_file = '$out/pepper.key'" \
	"envault.signing_key_file = '$out/signing.pem'"
as_pg "$PGBIN/psql" -h "$dir" -p 54396 -d postgres -X -q -f "$ENVAULT_ROOT/test/cross/setup.sql" >/dev/null
as_pg "$PGBIN/psql" -h "$dir" -p 54396 -d postgres -XAtq \
	-c 'SELECT envault.database_id()' >"$out/database_id"
as_pg "$PGBIN/pg_dump" -h "$dir" -p 54396 -Fc -f "$out/dump.custom" postgres
echo "dumped a PostgreSQL $ENVAULT_PG database into $out"
