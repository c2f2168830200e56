#!/usr/bin/env bash
# Run the pg_regress suite and the pgTAP tests against envault built with
# AddressSanitizer and UndefinedBehaviorSanitizer (make SANITIZE=1).
#
# Debian's postgres is not instrumented, so the server is started with gcc's
# sanitizer runtimes preloaded (LD_PRELOAD): envault's own code is fully
# checked, the server's only through the runtime's interceptors (malloc,
# memcpy, strlen ...).  ASan writes each process's reports to a file of its
# own, forked backends included; UBSan writes them to the server log.
#
# Nothing outside a private temp dir is touched: the source is copied there
# and built, and installed into a relocated copy of the PostgreSQL tree
# (whose bin/postgres becomes a wrapper that preloads the runtimes).
#
# Fails if a test fails or if any sanitizer report exists, and prints them.
# Runs as root (the clusters then run as the postgres user) or as a sudoer.

source "$(dirname "$0")/lib.sh"

EXTRA_PACKAGES="${EXTRA_PACKAGES:-} libasan8 libubsan1"
install_deps

work=$(pg_workdir sanitize)
pgtap_dir="$work/pgtap"
cleanup() {
	[ -f "$pgtap_dir/data/postmaster.pid" ] && cluster_stop "$pgtap_dir"
	rm -rf "$work"
}
trap cleanup EXIT

say "relocated PostgreSQL tree for the sanitized build"
# The tree of the PG_CONFIG given (Debian's by default), assumed in Debian's
# layout: PREFIX/lib/postgresql/15/bin.  pg_config is relocatable.
usr=$(cd "$PGBIN/../../../.." && pwd)
[ -x "$usr/lib/postgresql/15/bin/postgres" ] && [ -d "$usr/share/postgresql/15" ] || {
	echo "sanitize.sh: $PG_CONFIG is not in Debian's layout (PREFIX/lib/postgresql/15/bin)" >&2
	exit 1
}
root="$work/pg/usr"
mkdir -p "$root/lib" "$root/share"
cp -a "$usr/lib/postgresql" "$root/lib/"
cp -a "$usr/share/postgresql" "$root/share/"
ln -s /usr/include "$root/include"
ln -s /usr/lib/x86_64-linux-gnu "$root/lib/x86_64-linux-gnu"
PG_CONFIG="$root/lib/postgresql/15/bin/pg_config"
PGBIN=$(dirname "$PG_CONFIG")
export PG_CONFIG
echo "$PG_CONFIG"

say "building envault with -fsanitize=address,undefined"
cp -a "$ENVAULT_ROOT"/. "$work/src"
tree="$work/src"
# objects of a normal build in the source tree must not be reused
make -C "$tree" -s PG_CONFIG="$PG_CONFIG" clean
make -C "$tree" -s -j2 SANITIZE=1 ${WERROR:+WERROR=1} PG_CONFIG="$PG_CONFIG" all
make -C "$tree" -s SANITIZE=1 PG_CONFIG="$PG_CONFIG" install >/dev/null
so="$($PG_CONFIG --pkglibdir)/envault.so"
syms=$(nm -D "$so")
grep -q ' __asan_report' <<<"$syms" && grep -q ' __ubsan_handle' <<<"$syms" || {
	echo "sanitize.sh: $so is not instrumented" >&2
	exit 1
}
# the runtimes envault.so was linked against; the server preloads them
asan_rt=$(ldd "$so" | awk '$1 ~ /^libasan\.so/ {print $3}')
ubsan_rt=$(ldd "$so" | awk '$1 ~ /^libubsan\.so/ {print $3}')
[ -f "$asan_rt" ] && [ -f "$ubsan_rt" ] || {
	echo "sanitize.sh: sanitizer runtimes of $so not found" >&2
	exit 1
}

# The server preloads, in this order: the ASan runtime (which must come
# first), scripts/sanitize_shim.c (see there: without it every postgres
# process hangs at startup, and UBSan would ignore its options) and the
# UBSan runtime.  bin/postgres becomes a wrapper that does so; the binary
# stays in bin/ (as postgres.real) so that it still finds share/ and lib/
# relative to itself.  initdb and pg_ctl, and pg_regress through them,
# start the server through the wrapper.
#   detect_leaks=0: PostgreSQL leaves freeing to process exit and memory
#     context resets, so LeakSanitizer would report every backend.
#   log_path: one file per process (suffix .PID) for ASan; a forked backend
#     reopens the file under its own pid before writing.  UBSan cannot have
#     one (see the shim) and writes to the server log, searched below.
#   halt_on_error=1: a report ends the backend, and the test fails with it.
reports="$work/reports"
mkdir "$reports"
"$($PG_CONFIG --cc)" -shared -fPIC -O2 -Wall -Werror -o "$work/sanitize_shim.so" \
	-DSANITIZE_UBSAN_OPTIONS='"print_stacktrace=1:halt_on_error=1"' \
	"$ENVAULT_ROOT/scripts/sanitize_shim.c"
mv "$PGBIN/postgres" "$PGBIN/postgres.real"
cat >"$PGBIN/postgres" <<EOF
#!/bin/sh
# scripts/sanitize.sh: the server with the sanitizer runtimes preloaded
LD_PRELOAD="$asan_rt $work/sanitize_shim.so $ubsan_rt\${LD_PRELOAD:+ \$LD_PRELOAD}" \\
ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:detect_stack_use_after_return=1:log_path=$reports/asan" \\
exec "$PGBIN/postgres.real" "\$@"
EOF
chmod 755 "$PGBIN/postgres"
[ "$(id -u)" = 0 ] && chown -R postgres: "$tree" "$reports"

failures=()

say "pg_regress (sanitized)"
if ! as_pg make -C "$tree" -s installcheck TAP_TESTS= PG_CONFIG="$PG_CONFIG"; then
	failures+=("pg_regress")
	[ -f "$tree/regression.diffs" ] && cat "$tree/regression.diffs"
fi

say "pgTAP tests (sanitized)"
as_pg mkdir -p "$pgtap_dir"
new_key_file "$pgtap_dir/master.key"
new_key_file "$pgtap_dir/pepper.key"
# a failure here must still let the reports below be printed
if cluster_start "$pgtap_dir" 54392 "envault.master_key_file = '$pgtap_dir/master.key'" \
	"envault.pepper_file = '$pgtap_dir/pepper.key'"; then
	# a backend must have the runtimes and the sanitized envault.so mapped,
	# or a run without reports would prove nothing
	maps=$(as_pg "$PGBIN/psql" -h "$pgtap_dir" -p 54392 -d postgres -qAt -v ON_ERROR_STOP=1 \
		-c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION envault" \
		-c "SELECT pg_read_file('/proc/self/maps')") || true
	if ! grep -qF "$asan_rt" <<<"$maps" || ! grep -qF "$ubsan_rt" <<<"$maps" ||
		! grep -qF "$so" <<<"$maps"; then
		echo "sanitize.sh: no backend with $asan_rt, $ubsan_rt and $so loaded" >&2
		failures+=("runtimes not loaded")
	fi
	if ! (cd "$tree" && as_pg pg_prove -h "$pgtap_dir" -p 54392 -d postgres test/pgtap/*.sql); then
		failures+=("pgTAP")
	fi
	cluster_stop "$pgtap_dir"
else
	failures+=("pgTAP server did not start")
fi

say "sanitizer reports"
logs=("$tree/log/postmaster.log" "$pgtap_dir/server.log")
nreports=0
for f in "$reports"/*; do
	[ -f "$f" ] || continue
	nreports=$((nreports + 1))
	echo "--- $f"
	cat "$f"
done
# UBSan's reports, and any ASan report that could not reach its file, are
# in the server logs: each runs from its first line up to the next line
# that PostgreSQL wrote (which starts with a timestamp)
start='runtime error:|^==[0-9]+==(ERROR|WARNING)'
for f in "${logs[@]}"; do
	if [ ! -f "$f" ]; then
		echo "sanitize.sh: server log $f is missing" >&2
		failures+=("missing $f")
		continue
	fi
	n=$(grep -cE "$start" "$f" || true)
	[ "$n" -gt 0 ] || continue
	nreports=$((nreports + n))
	echo "--- $f ($n)"
	awk -v start="$start" '$0 ~ start {p = 1} /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] / {p = 0} p' "$f"
done
echo "$nreports sanitizer report(s)"
[ "$nreports" -eq 0 ] || failures+=("$nreports sanitizer report(s)")

if [ ${#failures[@]} -gt 0 ]; then
	echo "sanitize.sh: FAILED: ${failures[*]}"
	exit 1
fi
echo "sanitize.sh: no sanitizer reports"
