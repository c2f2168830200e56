#!/usr/bin/env bash
# test/cross/restore.sh CROSSDIR WORKDIR: restore the dump of
# test/cross/dump.sh into a new cluster of this major (PG_CONFIG, inside its
# chroot), with the same key files, and run test/cross/check.sql; prints
# one "ok - ..." or "not ok - ..." line per check.
source "$(dirname "$0")/../../scripts/lib.sh"
cross=$1
dir=$2
as_pg mkdir -p "$dir"
for f in master.key pepper.key signing.pem; do
	install -o postgres -m 0600 "$cross/$f" "$dir/$f"
done
trap 'cluster_stop "$dir"' EXIT
cluster_start "$dir" 54397 "envault.master_key_file = '$dir/master.key'" \
	"envault.pepper_file = '$dir/pepper.key'" \
	"envault.signing_key_file = '$dir/signing.pem'"
if as_pg "$PGBIN/pg_restore" -h "$dir" -p 54397 -d postgres --exit-on-error \
	"$cross/dump.custom" >"$dir/restore.log" 2>&1; then
	echo "ok - pg_restore of the PostgreSQL 15 dump into PostgreSQL $ENVAULT_PG"
else
	echo "not ok - pg_restore of the PostgreSQL 15 dump into PostgreSQL $ENVAULT_PG"
	cat "$dir/restore.log"
	exit 0
fi
as_pg env CROSS_DIR="$cross" "$PGBIN/psql" -h "$dir" -p 54397 -d postgres -X \
	-f "$ENVAULT_ROOT/test/cross/check.sql" 2>&1 ||
	echo "not ok - test/cross/check.sql stopped"
