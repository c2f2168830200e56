#!/usr/bin/env bash
# scripts/test-major.sh: the tests of one PostgreSQL major other than
# Debian 12's, run by scripts/test.sh inside that major's chroot
# (scripts/chroot.sh) as root, with ENVAULT_PG set:
#   1. build the Debian package postgresql-$ENVAULT_PG-envault from the
#      sources (pg_buildext, debian/control made for this major from
#      debian/control.in), remove the one a previous run left, apt install
#      the new one and check that its files are what is installed: the
#      tests below run against it; and build the tree with -Werror,
#   2. pg_regress (sql/, expected/) on a temporary instance,
#   3. pgTAP tests (test/pgtap/*.sql) with pg_prove,
#   4. the TAP tests that touch what differs between majors: restarts and
#      shared memory, a standby, crashes, extension upgrades, the access
#      log and its workers (executor hooks, background workers),
#   5. a database dumped by PostgreSQL 15 restored into this major
#      (test/cross/, when scripts/test.sh left a dump in cross/).
# Ends with one line "N passed, N failed".

source "$(dirname "$0")/lib.sh"

ENVAULT_MAJOR_TAP=${ENVAULT_MAJOR_TAP:-"test/t/001_restart.pl test/t/008_crash_reencrypt.pl
  test/t/030_crash_encrypt.pl test/t/040_access_log.pl test/t/041_standby.pl
  test/t/044_access_log_workers.pl test/t/051_crash_chain.pl test/t/060_upgrade.pl"}

tree=$ENVAULT_ROOT
work=$(mktemp -d /tmp/envault-major.XXXXXX)
chown postgres: "$work"
chown -R postgres: "$tree"
passed=0
failed=0
trap 'echo "scripts/test-major.sh: stopped at line $LINENO" >&2; echo; echo "$passed passed, $((failed + 1)) failed"' ERR

count_prove() {				# add prove's counts from log $1
	local total bad dubious
	total=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' "$1" | tail -1)
	bad=$( (grep -oE 'Failed [0-9]+/[0-9]+ subtests' "$1" || true) |
		awk '{split($2,a,"/"); s+=a[1]} END {print s+0}')
	dubious=$(grep -c 'Dubious' "$1" || true)
	passed=$((passed + ${total:-0} - bad))
	failed=$((failed + bad + dubious))
	[ -n "$total" ] || failed=$((failed + 1))
}

# the package, from a copy of the sources as they came (nothing built yet)
say "PostgreSQL $ENVAULT_PG: the Debian package postgresql-$ENVAULT_PG-envault"
version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$tree/envault.control")
pkg="$work/package"
mkdir -p "$pkg"
cp -a "$tree" "$pkg/envault-$version"
# (for this major only, should the suite support several)
if (cd "$pkg/envault-$version" && export PG_SUPPORTED_VERSIONS="$ENVAULT_PG" &&
	pg_buildext updatecontrol &&
	grep -qx "Package: postgresql-$ENVAULT_PG-envault" debian/control &&
	dpkg-buildpackage -us -uc -b -j"$(nproc)") >"$work/package.log" 2>&1 &&
	deb=$(ls "$pkg"/postgresql-"$ENVAULT_PG"-envault_"$version"_*.deb) &&
	# the chroot is kept between runs, with the package of the last run
	# (of the same version): remove it, so that apt installs this one
	{ ! dpkg-query -W "postgresql-$ENVAULT_PG-envault" >/dev/null 2>&1 ||
		dpkg --purge "postgresql-$ENVAULT_PG-envault"; } >>"$work/package.log" 2>&1 &&
	(cd "$pkg" && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "./$(basename "$deb")") >>"$work/package.log" 2>&1 &&
	dpkg-deb -x "$deb" "$pkg/contents" &&
	lib=$("$PG_CONFIG" --pkglibdir) &&
	cmp "$pkg/contents$lib/envault.so" "$lib/envault.so" &&
	cmp "$pkg/contents$PGBIN/envault-verify" "$PGBIN/envault-verify"; then
	dpkg-query -W -f='${Package} ${Version}: installed\n' "postgresql-$ENVAULT_PG-envault"
	passed=$((passed + 1))
else
	tail -n 60 "$work/package.log"
	failed=$((failed + 1))
	echo; echo "$passed passed, $failed failed"
	exit 1
fi

say "PostgreSQL $ENVAULT_PG: building envault with -Werror (the tests use the package)"
if make -C "$tree" -s WERROR=1 PG_CONFIG="$PG_CONFIG" all >"$work/build.log" 2>&1; then
	passed=$((passed + 1))
else
	cat "$work/build.log"
	failed=$((failed + 1))
fi
chown -R postgres: "$tree"

say "PostgreSQL $ENVAULT_PG: pg_regress"
as_pg make -C "$tree" -s PG_CONFIG="$PG_CONFIG" installcheck TAP_TESTS= 2>&1 | tee "$work/regress.log" || true
ok=$(grep -cE '^(ok|test) .*\.\.\. ok|^ok [0-9]+ ' "$work/regress.log" || true)
bad=$(grep -cE '\.\.\. FAILED|^not ok ' "$work/regress.log" || true)
passed=$((passed + ok)); failed=$((failed + bad))
[ "$ok" -gt 0 ] || failed=$((failed + 1))
[ -f "$tree/regression.diffs" ] && cat "$tree/regression.diffs"

say "PostgreSQL $ENVAULT_PG: pgTAP tests"
pgdir="$work/pgtap"
as_pg mkdir -p "$pgdir"
new_key_file "$pgdir/master.key"
new_key_file "$pgdir/pepper.key"
cluster_start "$pgdir" 54391 "envault.master_key_file = '$pgdir/master.key'" \
	"envault.pepper_file = '$pgdir/pepper.key'"
as_pg "$PGBIN/psql" -h "$pgdir" -p 54391 -d postgres -qAt -v ON_ERROR_STOP=1 \
	-c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION envault" >/dev/null
(cd "$tree" && as_pg pg_prove -h "$pgdir" -p 54391 -d postgres test/pgtap/*.sql) 2>&1 | tee "$work/pgtap.log" || true
cluster_stop "$pgdir"
count_prove "$work/pgtap.log"

say "PostgreSQL $ENVAULT_PG: TAP tests"
# shellcheck disable=SC2086
as_pg make -C "$tree" -s PG_CONFIG="$PG_CONFIG" installcheck REGRESS= PROVE_FLAGS=--timer \
	PROVE_TESTS="$(echo $ENVAULT_MAJOR_TAP)" 2>&1 | tee "$work/tap.log" || true
count_prove "$work/tap.log"
if grep -qE 'Failed|Dubious' "$work/tap.log"; then
	for f in "$tree"/tmp_check/log/regress_log_*; do
		[ -f "$f" ] && { echo "--- $f"; tail -n 60 "$f"; }
	done
fi

if [ -f "$tree/cross/dump.custom" ]; then
	say "PostgreSQL $ENVAULT_PG: a database of PostgreSQL 15 restored"
	bash "$tree/test/cross/restore.sh" "$tree/cross" "$work/cross" 2>&1 | tee "$work/cross.log" || true
	ok=$(grep -c '^ok ' "$work/cross.log" || true)
	bad=$(grep -c '^not ok ' "$work/cross.log" || true)
	passed=$((passed + ok)); failed=$((failed + bad))
	[ "$ok" -gt 0 ] || failed=$((failed + 1))
fi

trap - ERR
rm -rf "$work"
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
