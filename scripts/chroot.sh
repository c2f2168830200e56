# scripts/chroot.sh: PostgreSQL majors that Debian 12 does not carry, each in
# a chroot of the Debian suite that does (made with mmdebstrap from the same
# Debian archive), sourced by scripts/test.sh.
#
#   17: trixie (Debian 13)    18: forky (Debian testing)
#
# A chroot is cached in /var/cache/envault/chroots under a name that holds
# the hash of everything it is made from (suite, packages, options, this
# file's recipe version), so that a second run reuses it and a change to
# any input makes a new one.  Building one takes about two minutes.

ENVAULT_CHROOT_CACHE=${ENVAULT_CHROOT_CACHE:-/var/cache/envault/chroots}
ENVAULT_CHROOT_RECIPE=1		# bump when the recipe below changes
ENVAULT_MAJORS=${ENVAULT_MAJORS:-17 18}

# the suite of a major
chroot_suite() {
	case $1 in
	17) echo trixie ;;
	18) echo forky ;;
	*) echo "scripts/chroot.sh: no Debian suite for PostgreSQL $1" >&2; return 1 ;;
	esac
}

# what a chroot needs to build envault and its Debian package, and run its
# tests
chroot_packages() {
	local v=$1
	echo "postgresql-$v postgresql-server-dev-$v postgresql-$v-pgtap" \
		"libtap-parser-sourcehandler-pgtap-perl libipc-run-perl perl" \
		"libssl-dev libjansson-dev make gcc openssl procps" \
		"build-essential debhelper dpkg-dev fakeroot postgresql-server-dev-all"
}

# chroot_ensure MAJOR: print the path of the chroot, making it if needed
chroot_ensure() {
	local v=$1 suite pkgs key dir tmp
	suite=$(chroot_suite "$v") || return 1
	pkgs=$(chroot_packages "$v")
	# forky's Release file is signed with a validity that this machine's
	# clock may find expired; only the signature is checked then
	local aptopt='Acquire::Check-Valid-Until "false"'
	key=$(printf '%s\n' "$ENVAULT_CHROOT_RECIPE" "$suite" "$pkgs" "$aptopt" |
		sha256sum | cut -c1-12)
	dir="$ENVAULT_CHROOT_CACHE/$suite-pg$v-$key"
	if [ ! -f "$dir/.envault-complete" ]; then
		command -v mmdebstrap >/dev/null ||
			as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
				--no-install-recommends mmdebstrap >/dev/null
		as_root mkdir -p "$ENVAULT_CHROOT_CACHE"
		tmp="$dir.tmp.$$"
		as_root rm -rf "$tmp"
		say "making the PostgreSQL $v chroot ($suite) in $dir" >&2
		as_root mmdebstrap --variant=apt --quiet --aptopt="$aptopt" \
			--include="$(echo $pkgs | tr ' ' ',')" \
			"$suite" "$tmp" http://deb.debian.org/debian >&2
		as_root touch "$tmp/.envault-complete"
		as_root mv "$tmp" "$dir"
	fi
	echo "$dir"
}

# chroot_run DIR COMMAND...: run a command inside the chroot, with /proc,
# /sys and /dev (shared memory included) of the host mounted for the time
# it runs
chroot_run() {
	local dir=$1 m rc=0
	shift
	for m in proc sys dev dev/pts dev/shm; do
		as_root mkdir -p "$dir/$m"
		as_root mount --bind "/$m" "$dir/$m"
	done
	as_root chroot "$dir" "$@" || rc=$?
	for m in dev/shm dev/pts dev sys proc; do
		as_root umount "$dir/$m" || as_root umount -l "$dir/$m" || true
	done
	return $rc
}

# chroot_test_major DIR MAJOR [CROSSDIR]: copy the sources (not the host's
# build) and the PostgreSQL 15 dump into the chroot and run
# scripts/test-major.sh there, with nothing of the host's environment
chroot_test_major() {
	local dir=$1 v=$2 cross=${3:-}
	as_root rm -rf "$dir/build"
	as_root mkdir -p "$dir/build"
	if [ -e "$ENVAULT_ROOT/.git" ]; then
		git -C "$ENVAULT_ROOT" ls-files -z | (cd "$ENVAULT_ROOT" && tar --null -T - -cf -) |
			as_root tar -xf - -C "$dir/build"
	else
		as_root cp -a "$ENVAULT_ROOT"/. "$dir/build"
		as_root find "$dir/build" \( -name '*.o' -o -name '*.so' -o -name '*.bc' \) -delete
	fi
	if [ -n "$cross" ] && [ -f "$cross/dump.custom" ]; then
		as_root cp -a "$cross" "$dir/build/cross"
	fi
	chroot_run "$dir" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		ENVAULT_PG="$v" bash /build/scripts/test-major.sh
}
