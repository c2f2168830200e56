# scripts/citus.sh: sourced after scripts/lib.sh.  Builds Citus, used only
# by the scale-out tests, from the unmodified source release kept in the
# shared vendor directory, and installs it into the PostgreSQL that the
# tests run.  The build is cached on the machine under
# /var/cache/envault/citus-<key>, the key being a hash of the tarball, the
# PostgreSQL version and this file: a later run only copies the files in.
#
# Two changes are made to the unpacked source, not to the tarball:
# PostgreSQL 15.20 exports have_createdb_privilege() (commands/dbcommands.h),
# which Citus 13.2.2 also defines as a static function for 15; its copy is
# removed so that the declaration from PostgreSQL is the only one.  libcurl
# (Citus's anonymous statistics) is left out.

CITUS_PACKAGES="libkrb5-dev liblz4-dev libzstd-dev autoconf"
CITUS_CACHE=${CITUS_CACHE:-/var/cache/envault}

citus_tarball() {
	local t
	for t in "$ENVAULT_ROOT"/../shared/vendor/citus-*.tar.gz \
		/work/shared/vendor/citus-*.tar.gz; do
		[ -f "$t" ] && { echo "$t"; return 0; }
	done
	return 1
}

# citus_ensure: build (or reuse) Citus for $PG_CONFIG and install it.
# Prints nothing on success; returns non-zero if there is no source.
citus_ensure() {
	local tarball key dir stage
	tarball=$(citus_tarball) || { echo "citus source release not found" >&2; return 1; }
	EXTRA_PACKAGES="$CITUS_PACKAGES" install_deps
	key=$( { sha256sum "$tarball" | cut -c1-64; "$PG_CONFIG" --version;
		sha256sum "${BASH_SOURCE[0]}" | cut -c1-64; } | sha256sum | cut -c1-12)
	dir="$CITUS_CACHE/citus-$key"
	if [ ! -f "$dir/done" ]; then
		say "building Citus from $(basename "$tarball") (once per machine: $dir)"
		as_root rm -rf "$dir"
		as_root mkdir -p "$dir/src"
		as_root tar -xzf "$tarball" -C "$dir/src" --strip-components=1
		as_root perl -0pi -e \
			's/\nstatic inline bool\nhave_createdb_privilege\(void\)\n\{.*?\n\}\n/\n/s' \
			"$dir/src/src/include/pg_version_compat.h"
		(cd "$dir/src" &&
			as_root ./configure -q --without-libcurl PG_CONFIG="$PG_CONFIG" >"$dir/build.log" 2>&1 &&
			as_root make -s -j"$(nproc)" >>"$dir/build.log" 2>&1 &&
			as_root make -s install DESTDIR="$dir/stage" >>"$dir/build.log" 2>&1) ||
			{ tail -n 40 "$dir/build.log" >&2; return 1; }
		as_root rm -rf "$dir/src"
		as_root touch "$dir/done"
	fi
	# the staged tree mirrors the install paths: copy it over /
	as_root cp -a "$dir/stage/." /
}
