#!/usr/bin/env bash
# Run the whole envault test suite: build and install, then
#   1. pg_regress (sql/, expected/) on a temporary instance,
#   2. TAP tests (test/t/*.pl) with PostgreSQL::Test::Cluster, among them a
#      Citus cluster of three nodes (Citus built by scripts/citus.sh),
#   3. pgTAP tests (test/pgtap/*.sql) with pg_prove,
#   4. every SQL example of README.md, docs/operations.md and
#      docs/application.md, run as
#      written (test/docs/run_examples.py); docs/reference.md against the
#      install script, META.json against
#      the PGXN Meta Spec, and make dist (the tarball
#      holds what it must and builds); src/ and tools/ as pgindent lays
#      them out (scripts/pgindent.sh); the format test vectors against an
#      independent implementation,
#   5. the audit chain test vectors against an independent implementation
#      and envault-verify, and the Merkle tree self-test (RFC 6962's data),
#   6. the Debian package (debian/, pg_buildext): built, installed with apt
#      on a fresh Debian 12 chroot, pg_regress against the installed
#      package (scripts/package.sh); a short run of every libFuzzer
#      harness (fuzz/run.sh),
#   7. PostgreSQL 17 and 18, each in a chroot of the Debian suite that
#      carries it: its Debian package (postgresql-17-envault,
#      postgresql-18-envault) built and installed with apt, then against
#      it pg_regress, pgTAP, the TAP tests of what differs between majors,
#      and a PostgreSQL 15 database restored (scripts/test-major.sh),
#   8. pg_regress and pgTAP again under ASan and UBSan (scripts/sanitize.sh).
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
# Runs as root (tests then run as the postgres user) or as a sudoer.

source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/citus.sh"

install_deps
build_and_install
# Citus, for the scale-out test (test/t/090_citus.pl); built once per machine
citus_ensure

work=$(pg_workdir test)
trap 'rm -rf "$work"' EXIT
# a stage that dies without counting must not end the run silently (the
# stages whose failures are counted from their logs end in "|| true": with
# pipefail a failing test run would fire this trap, which set +e does not
# prevent)
trap 'echo "scripts/test.sh: stopped at line $LINENO" >&2; echo; echo "$passed passed, $((failed + 1)) failed"' ERR
cp -a "$ENVAULT_ROOT"/. "$work/src"
[ "$(id -u)" = 0 ] && chown -R postgres: "$work"
tree="$work/src"
passed=0
failed=0

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

say "pg_regress"
as_pg make -C "$tree" -s installcheck TAP_TESTS= 2>&1 | tee "$work/regress.log" || true
ok=$(grep -cE '^(ok|test) .*\.\.\. ok|^ok [0-9]+ ' "$work/regress.log" || true)
bad=$(grep -cE '\.\.\. FAILED|^not ok ' "$work/regress.log" || true)
passed=$((passed + ok)); failed=$((failed + bad))
[ "$ok" -gt 0 ] || failed=$((failed + 1))
[ -f "$tree/regression.diffs" ] && cat "$tree/regression.diffs"

say "TAP tests"
as_pg make -C "$tree" -s installcheck REGRESS= PROVE_FLAGS=--timer 2>&1 | tee "$work/tap.log" || true
count_prove "$work/tap.log"
if grep -qE 'Failed|Dubious' "$work/tap.log"; then
	for f in "$tree"/tmp_check/log/regress_log_*; do
		[ -f "$f" ] && { echo "--- $f"; tail -n 60 "$f"; }
	done
fi

say "pgTAP tests"
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

say "documentation examples: every SQL block of README.md, docs/operations.md, docs/application.md and docs/reference.md, as written"
exdir="$work/examples"
as_pg mkdir -p "$exdir"
new_key_file "$exdir/master.key"
new_key_file "$exdir/pepper.key"
# a checkpoint signing key, for the audit chain examples of docs/reference.md
new_signing_key "$exdir/signing.pem"
# a KMS for the customer-managed key of the BYOK examples
as_pg sh -c "umask 077; openssl rand -hex 32 > '$exdir/kms.secret'"
as_pg tee "$exdir/kms.sh" >/dev/null <<EOF
#!/bin/sh
printf '%s/%s' "\$(cat '$exdir/kms.secret')" "\$1" | sha256sum | cut -c1-64
EOF
as_pg chmod 0700 "$exdir/kms.sh"
cluster_start "$exdir" 54393 "envault.master_key_file = '$exdir/master.key'" \
	"envault.pepper_file = '$exdir/pepper.key'" \
	"envault.signing_key_file = '$exdir/signing.pem'" \
	"envault.customer_key_command = '$exdir/kms.sh %t'"
(cd "$tree" && as_pg env PGHOST="$exdir" PGPORT=54393 PGUSER=postgres PSQL="$PGBIN/psql" \
	python3 test/docs/run_examples.py) 2>&1 | tee "$work/examples.log" || true
cluster_stop "$exdir"
ok=$(sed -n 's/^examples: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$work/examples.log")
bad=$(sed -n 's/^examples: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$work/examples.log")
passed=$((passed + ${ok:-0}))
failed=$((failed + ${bad:-1}))

say "release: docs/reference.md agrees with the install script; META.json (PGXN Meta Spec); make dist builds"
if python3 "$tree/test/reference/check_reference.py"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi
if python3 "$tree/test/meta/check_meta.py"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi
# the tarball of the committed tree holds what PGXN and a packager need,
# and builds on its own
dist_has_all() {
	local f
	for f in META.json LICENSE CHANGELOG.md README.md envault.control Makefile src/envault.sql; do
		[ -f "$1/$f" ] || { echo "dist: $f missing" >&2; return 1; }
	done
}
distdir=$(pg_workdir dist)
if [ ! -d "$tree/.git" ]; then
	echo "not a git checkout: make dist not tried"
elif as_pg make -C "$tree" -s dist &&
	as_pg tar -xzf "$tree"/envault-*.tar.gz -C "$distdir" &&
	dist_has_all "$distdir"/envault-* &&
	as_pg make -C "$distdir"/envault-* -s all >/dev/null; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi
rm -rf "$distdir"

say "pgindent: the C sources as PostgreSQL's pgindent lays them out (scripts/pgindent.sh)"
if bash "$ENVAULT_ROOT/scripts/pgindent.sh"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi

say "format test vectors (independent implementation)"
if python3 "$tree/test/vectors/check_vectors.py" "$tree/docs/format.md"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi

say "chain test vectors (independent implementation, and envault-verify)"
if python3 "$tree/test/vectors/check_chain.py" --verifier "$PGBIN/envault-verify" \
	"$tree/docs/audit-chain.md"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi

say "Merkle tree self-test (RFC 6962 test data, every proof up to 140 leaves)"
if cc -O1 -Wall -Werror -I"$tree/src" -o "$work/merkle_selftest" \
	"$tree/test/unit/merkle_selftest.c" "$tree/src/merkle.c" "$tree/src/crypto.c" -lcrypto &&
	"$work/merkle_selftest"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi

say "Debian package: built, installed on a fresh Debian 12, pg_regress against it (scripts/package.sh)"
if bash "$ENVAULT_ROOT/scripts/package.sh"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi

say "fuzzing (libFuzzer)"
fuzz_rc=0
"$tree/fuzz/run.sh" >"$work/fuzz.log" 2>&1 || fuzz_rc=$?
cat "$work/fuzz.log"
ok=$(grep -c '^ok   fuzz_' "$work/fuzz.log" || true)
bad=$(grep -c '^FAIL fuzz_' "$work/fuzz.log" || true)
passed=$((passed + ok)); failed=$((failed + bad))
[ "$fuzz_rc" -eq 0 ] || [ "$bad" -gt 0 ] || failed=$((failed + 1))

# PostgreSQL 17 and 18: in chroots of the Debian suites that carry them
# (scripts/chroot.sh, cached between runs), the pg_regress, pgTAP and the
# version-sensitive TAP tests (scripts/test-major.sh), and a database
# dumped by PostgreSQL 15 here restored there (test/cross/)
say "a PostgreSQL $ENVAULT_PG database to move to newer majors (test/cross/dump.sh)"
cross="$work/cross"
if bash "$ENVAULT_ROOT/test/cross/dump.sh" "$cross"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi
source "$ENVAULT_ROOT/scripts/chroot.sh"
for major in $ENVAULT_MAJORS; do
	say "PostgreSQL $major"
	started=$(date +%s)
	if ! root=$(chroot_ensure "$major"); then
		echo "could not make the PostgreSQL $major chroot"
		failed=$((failed + 1))
		continue
	fi
	chroot_test_major "$root" "$major" "$cross" 2>&1 | tee "$work/pg$major.log" || true
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/pg$major.log" | tail -1)
	if [ -n "$line" ]; then
		passed=$((passed + $(echo "$line" | cut -d' ' -f1)))
		failed=$((failed + $(echo "$line" | cut -d' ' -f3)))
	else
		failed=$((failed + 1))
	fi
	echo "PostgreSQL $major: ${line:-no result}, $(( $(date +%s) - started )) s"
done

say "sanitizers (ASan+UBSan)"
if bash "$ENVAULT_ROOT/scripts/sanitize.sh"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
fi

trap - ERR
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
