# scripts/lib.sh: shared by scripts/demo.sh, scripts/test.sh,
# scripts/sanitize.sh and bench/run.sh.
# Installs the Debian packages envault needs, builds and installs it, and
# starts throwaway clusters as the postgres user (PostgreSQL refuses root).

set -euo pipefail

ENVAULT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# ENVAULT_PG is the PostgreSQL major (15 on Debian 12; 17 and 18 inside the
# chroots of scripts/chroot.sh); PG_CONFIG selects the installation to build
# against, install into and run (default: Debian's); PGBIN follows it.
ENVAULT_PG=${ENVAULT_PG:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$ENVAULT_PG/bin/pg_config}
PGBIN=$(dirname "$PG_CONFIG")
export PG_CONFIG
# (perl brings the core modules the TAP tests use: JSON::PP, Digest::SHA;
# postgresql-15 brings pgbench, pg_dump and pg_restore, which they run too)
# (scripts/pgindent.sh fetches and checks Debian 13's pgindent with these)
PGINDENT_PACKAGES="curl xz-utils gpgv debian-archive-keyring"
ENVAULT_PACKAGES="$PGINDENT_PACKAGES postgresql-15 postgresql-server-dev-15 libssl-dev libjansson-dev make gcc
  postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl libipc-run-perl
  perl python3 python3-cryptography openssl postgresql-15-cron clang-14
  libclang-rt-14-dev gdb softhsm2 opensc mmdebstrap"

say() { printf '\n== %s\n' "$*"; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Install missing Debian packages (apt-get update only when something is missing).
install_deps() {
	local missing=() p
	for p in $ENVAULT_PACKAGES ${EXTRA_PACKAGES:-}; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		say "installing Debian packages: ${missing[*]}"
		as_root apt-get update -q >/dev/null
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends "${missing[@]}" >/dev/null
	fi
}

build_and_install() {
	say "building envault"
	make -C "$ENVAULT_ROOT" -s ${WERROR:+WERROR=1} PG_CONFIG="$PG_CONFIG" all
	as_root make -C "$ENVAULT_ROOT" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# Run a command as the postgres user when we are root, else as ourselves.
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A directory the cluster user can write to.
pg_workdir() {
	local d
	d=$(mktemp -d "${TMPDIR:-/tmp}/envault-$1.XXXXXX")
	[ "$(id -u)" = 0 ] && chown postgres: "$d"
	echo "$d"
}

# A fresh random master key in a file readable only by the cluster user.
new_key_file() {
	local f=$1
	as_pg sh -c "umask 077; openssl rand -hex 32 > '$f'"
}

# new_signing_key FILE: a fresh Ed25519 private key in PEM, mode 0600
new_signing_key() {
	local f=$1
	as_pg sh -c "umask 077; openssl genpkey -algorithm ed25519 -out '$f'"
}

# cluster_start DIR PORT [extra postgresql.conf lines...]
cluster_start() {
	local dir=$1 port=$2
	shift 2
	as_pg "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
	{
		echo "port = $port"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "shared_preload_libraries = 'envault'"
		echo "fsync = off"
		for line in "$@"; do echo "$line"; done
	} | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
}

cluster_stop() {
	as_pg "$PGBIN/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}
