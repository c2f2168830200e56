#!/usr/bin/env bash
# scripts/package.sh: build envault's Debian package (debian/, with
# Debian's PostgreSQL extension tooling, pg_buildext) and test it on a fresh
# Debian 12:
#   1. dpkg-buildpackage on this machine, from the committed files, gives
#      postgresql-15-envault_<version>_<arch>.deb;
#   2. a fresh Debian 12 chroot (mmdebstrap, cached without envault or a
#      PostgreSQL server, copied for each run) installs it with
#      apt install ./postgresql-15-envault_...deb, which brings the server;
#   3. the regression suite (pg_regress: sql/, expected/) runs there against
#      the installed package (make installcheck, nothing built), and the
#      package's envault-verify answers.
# Called by scripts/test.sh; ends with "package: ok" or exits non-zero.
# Leaves the .deb in $ENVAULT_PACKAGE_OUT (default: a temporary directory).

source "$(dirname "$0")/lib.sh"
source "$ENVAULT_ROOT/scripts/chroot.sh"

PACKAGE_BUILD_DEPS="debhelper postgresql-server-dev-all libssl-dev libjansson-dev dpkg-dev fakeroot"
EXTRA_PACKAGES="$PACKAGE_BUILD_DEPS" install_deps

version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$ENVAULT_ROOT/envault.control")
work=$(mktemp -d /tmp/envault-package.XXXXXX)
out=${ENVAULT_PACKAGE_OUT:-$work/out}
root="$work/root"
cleanup() {
	local m
	for m in dev/shm dev/pts dev sys proc; do
		mountpoint -q "$root/$m" 2>/dev/null && { as_root umount "$root/$m" || as_root umount -l "$root/$m"; }
	done
	as_root rm -rf "$work"
}
trap cleanup EXIT

# --- 1. build ------------------------------------------------------------------

say "building the Debian package of envault $version"
src="$work/envault-$version"
pristine="$work/pristine"
mkdir -p "$pristine" "$out"
if [ -d "$ENVAULT_ROOT/.git" ]; then
	git -C "$ENVAULT_ROOT" ls-files -z | (cd "$ENVAULT_ROOT" && tar --null -T - -cf -) | tar -xf - -C "$pristine"
else
	cp -a "$ENVAULT_ROOT"/. "$pristine"
	make -C "$pristine" -s clean >/dev/null
fi
cp -a "$pristine" "$src"
# debian/control must match debian/control.in for the versions of this system
(cd "$src" && pg_buildext checkcontrol)
(cd "$src" && dpkg-buildpackage -us -uc -b -j"$(nproc)" >"$work/build.log" 2>&1) ||
	{ tail -n 60 "$work/build.log" >&2; exit 1; }
deb=$(ls "$work"/postgresql-15-envault_"$version"_*.deb)
cp "$deb" "$out/"
dpkg-deb --contents "$deb" | awk '{print $6}' | grep -E 'envault(\.so|\.control|--.*\.sql)$|bin/envault-verify$' |
	sort | sed 's/^/  /'

# --- 2. a fresh Debian 12 ----------------------------------------------------------

# the base: apt, make and PostgreSQL's build files (for make installcheck),
# no server; cached under a name that holds the hash of its inputs
# (the suites of an installed Debian 12: the point releases' updates and
# the security updates too, as the PostgreSQL 15 the package is built
# against comes from them)
pkgs="make postgresql-server-dev-all ca-certificates"
sources=("deb http://deb.debian.org/debian bookworm main"
	"deb http://deb.debian.org/debian bookworm-updates main"
	"deb http://deb.debian.org/debian-security bookworm-security main")
key=$(printf '%s\n' bookworm "$pkgs" "${sources[@]}" 2 | sha256sum | cut -c1-12)
base="$ENVAULT_CHROOT_CACHE/bookworm-package-$key"
if [ ! -f "$base/.envault-complete" ]; then
	say "making a Debian 12 chroot for the package test in $base"
	as_root mkdir -p "$ENVAULT_CHROOT_CACHE"
	as_root rm -rf "$base.tmp"
	as_root mmdebstrap --variant=apt --quiet --include="$(echo $pkgs | tr ' ' ',')" \
		bookworm "$base.tmp" "${sources[@]}"
	as_root touch "$base.tmp/.envault-complete"
	as_root mv "$base.tmp" "$base"
fi
as_root cp -a "$base" "$root"
as_root cp /etc/resolv.conf "$root/etc/resolv.conf"
as_root cp "$deb" "$root/tmp/"
for m in proc sys dev dev/pts dev/shm; do
	as_root mkdir -p "$root/$m"
	as_root mount --bind "/$m" "$root/$m"
done
in_root() {
	as_root chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@"
}

say "apt install ./$(basename "$deb") in a fresh Debian 12"
in_root apt-get update -q >/dev/null
in_root sh -c "cd /tmp && apt-get install -y -q --no-install-recommends ./$(basename "$deb")" >"$work/install.log" 2>&1 ||
	{ tail -n 40 "$work/install.log" >&2; exit 1; }
grep -E '^(Setting up|Unpacking) postgresql-15-envault' "$work/install.log" | sed 's/^/  /'
in_root dpkg -s postgresql-15-envault | grep -E '^(Status|Version|Depends):' | sed 's/^/  /'

# --- 3. the regression suite against the installed package ---------------------

say "pg_regress against the installed package (debian/tests/installcheck)"
as_root cp -a "$pristine" "$root/build"
# the package's autopkgtest, as autopkgtest runs it: from the source tree,
# as root; nothing is built, the package's files are what runs
if in_root sh -c 'cd /build && sh debian/tests/installcheck' >"$work/regress.log" 2>&1; then
	grep -cE '\.\.\. ok|^ok ' "$work/regress.log" | sed 's/^/  tests passed: /'
else
	cat "$work/regress.log" >&2
	exit 1
fi
in_root sh -c 'test ! -e /build/envault.so && test ! -e /build/src/envault.o' ||
	{ echo "package test: something was built in the test tree" >&2; exit 1; }
in_root /usr/lib/postgresql/15/bin/envault-verify --help | grep -q '^Usage: envault-verify' ||
	{ echo "package test: the package's envault-verify does not run" >&2; exit 1; }
echo "package: ok ($(basename "$deb"))"
