#!/usr/bin/env bash
# fuzz/run.sh [SECONDS]: build every libFuzzer harness of fuzz/ and run each
# for SECONDS (default 10: about a minute for all of them, build included),
# from its seed corpus in fuzz/corpus/<harness>/.  New inputs go to a
# scratch corpus in fuzz/bin/, never into the committed seeds.  Prints one
# line per harness, "ok" or "FAIL", and exits 1 if any harness crashed,
# broke a property, leaked or timed out; the input that did it is saved as
# fuzz/bin/crash-<harness>-* (reproduce with fuzz/bin/<harness> FILE).
#
#   fuzz/run.sh         the quick run scripts/test.sh makes
#   fuzz/run.sh 600     ten minutes per harness
#
# Needs clang 14 with its sanitizer runtimes (Debian packages clang-14 and
# libclang-rt-14-dev), libssl-dev and libjansson-dev.

set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
seconds=${1:-10}
case $seconds in
'' | *[!0-9]*)
	echo "usage: fuzz/run.sh [SECONDS]" >&2
	exit 2
	;;
esac
CLANG=${CLANG:-$(command -v clang-14 || command -v clang || true)}
if [ -z "$CLANG" ]; then
	echo "fuzz/run.sh: clang not found (Debian: apt-get install clang-14 libclang-rt-14-dev)" >&2
	exit 2
fi

bin="$here/bin"
mkdir -p "$bin"
CFLAGS="-g -O1 -std=gnu99 -fsanitize=fuzzer,address,undefined
  -fno-sanitize-recover=all -fno-omit-frame-pointer -Wall -Wextra -Werror
  -I$root/src -I$root/tools"
common="$root/src/crypto.c $root/src/note.c $root/src/chainfmt.c $root/src/merkle.c"

# harness, and the sources it needs besides its own and $common
harnesses=(
	"fuzz_ciphertext:$root/src/format.c"
	"fuzz_token:$root/src/format.c"
	"fuzz_note:"
	"fuzz_export:$root/tools/json.c $root/tools/export.c $root/tools/serverlog.c $root/tools/trust.c $root/tools/verify.c $root/tools/report.c"
	"fuzz_logline:$root/tools/serverlog.c"
)

for h in "${harnesses[@]}"; do
	name=${h%%:*}
	# shellcheck disable=SC2086
	"$CLANG" $CFLAGS -o "$bin/$name" "$here/$name.c" $common ${h#*:} -lcrypto -ljansson
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
for h in "${harnesses[@]}"; do
	name=${h%%:*}
	work="$bin/corpus-$name"
	mkdir -p "$work"
	log="$bin/$name.log"
	if "$bin/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$bin/crash-$name-" \
		"$work" "$here/corpus/$name" >"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
		cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
		corp=$(ls "$work" | wc -l)
		printf 'ok   %-16s %10s runs in %ss, coverage %s, corpus %s\n' \
			"$name" "${runs:-?}" "$seconds" "${cov:-?}" "$corp"
	else
		failed=$((failed + 1))
		printf 'FAIL %-16s see %s\n' "$name" "$log"
		grep -E 'ERROR|property failed|runtime error|SUMMARY|Test unit written' "$log" | head -5 | sed 's/^/     /'
	fi
done
[ "$failed" -eq 0 ]
