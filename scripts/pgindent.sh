#!/usr/bin/env bash
# scripts/pgindent.sh: envault's C sources (src/*.[ch], tools/*.[ch]) laid
# out by PostgreSQL's pgindent, with PostgreSQL's rules.
#
#   scripts/pgindent.sh           check: print the diff and exit 1 if any
#                                 file would change (or pgindent fails on one)
#   scripts/pgindent.sh --write   rewrite the files in place
#
# The tools are PostgreSQL 17's own: pg_bsd_indent 2.1.2, the pgindent perl
# script and PostgreSQL's typedefs.list, all three shipped by Debian 13's
# postgresql-server-dev-17.  Debian 12 has only pg-bsd-indent 2.1.1, which
# pgindent 16 and later refuse, and Debian's archive mirror here serves
# binary packages but not source tarballs.  So the .deb is fetched from
# Debian's archive, checked against the SHA-256 pinned below (taken from
# trixie's signed Packages index; when the pinned file has left the archive
# the current one is found through that index, its InRelease signature
# checked with gpgv and Debian's archive keyring), and unpacked.  Debian
# 13's pg_bsd_indent needs glibc 2.38, so it runs under the ld.so and libc.so.6
# of Debian 13's libc6, fetched and checked the same way; Debian 12's own
# libc is left alone.  All of it is cached on the machine under
# /var/cache/envault/pgindent-<key>, the key a hash of the pins and this
# file: a later run neither downloads nor unpacks (the .debs themselves are
# kept in /var/cache/envault/pgindent-debs, checked again before each use).
#
# envault's own typedefs (typedef struct/enum/union, function pointers and
# plain typedefs in src/ and tools/), and those of the libraries' headers the
# sources include from /usr/include (OpenSSL, jansson, ...), are added to
# PostgreSQL's list on each run, so that pg_bsd_indent lays out
# "Foo *p" declarations as PostgreSQL's own code.

source "$(dirname "$0")/lib.sh"

PGINDENT_CACHE=${PGINDENT_CACHE:-/var/cache/envault}
PGINDENT_MIRROR=${PGINDENT_MIRROR:-http://deb.debian.org/debian}
PGINDENT_SUITE=trixie
# tools/ and the plain-C layers of src/ (the .c files that include neither
# postgres.h nor envault.h) are built without PostgreSQL's headers: there
# PostgreSQL's typedef "text" is a variable's name, which pg_bsd_indent
# cannot parse as a type
PGINDENT_PLAIN_NOT_TYPEDEFS="text"
# package  pool file  SHA-256 (from trixie's main/binary-amd64/Packages)
PGINDENT_DEBS="
postgresql-server-dev-17 pool/main/p/postgresql-17/postgresql-server-dev-17_17.12-0+deb13u1_amd64.deb d524d6d8169ce6c5733ab6b91caacfcf1d750123628cc43122baf8a8459a0f61
libc6 pool/main/g/glibc/libc6_2.41-12+deb13u5_amd64.deb b59b0625cd1a791375d40dab23a4d5d3d0641e3d0a773501becdc3725b7f99cf
"

write=0
case "${1:-}" in
--write) write=1 ;;
"") ;;
*) echo "usage: scripts/pgindent.sh [--write]" >&2; exit 2 ;;
esac

ENVAULT_PACKAGES=$PGINDENT_PACKAGES install_deps

# pgi_index PACKAGE: "FILENAME SHA256" of PACKAGE in the suite's signed index
pgi_index() {
	local tmp=$1 pkg=$2 sum
	if [ ! -f "$tmp/Packages" ]; then
		curl -fsS -m 120 -o "$tmp/InRelease" "$PGINDENT_MIRROR/dists/$PGINDENT_SUITE/InRelease"
		gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg \
			--output "$tmp/Release" "$tmp/InRelease" 2>/dev/null ||
			{ echo "pgindent: bad signature on $PGINDENT_SUITE's InRelease" >&2; return 1; }
		sum=$(awk '/^SHA256:/{s=1; next} /^[^ ]/{s=0}
			s && $3 == "main/binary-amd64/Packages.xz" {print $1}' "$tmp/Release")
		curl -fsS -m 300 -o "$tmp/Packages.xz" \
			"$PGINDENT_MIRROR/dists/$PGINDENT_SUITE/main/binary-amd64/Packages.xz"
		echo "$sum  $tmp/Packages.xz" | sha256sum -c --quiet - ||
			{ echo "pgindent: Packages.xz does not match InRelease" >&2; return 1; }
		xz -dc "$tmp/Packages.xz" >"$tmp/Packages"
	fi
	awk -v p="$pkg" '$1 == "Package:" {m = ($2 == p)}
		m && $1 == "Filename:" {f = $2} m && $1 == "SHA256:" {s = $2}
		m && /^$/ {exit} END {print f, s}' "$tmp/Packages"
}

# pgi_fetch TMP PACKAGE POOLFILE SHA256: the checked .deb's path on stdout;
# kept in $PGINDENT_CACHE/pgindent-debs, so that it is downloaded once
pgi_fetch() {
	local tmp=$1 pkg=$2 file=$3 sum=$4 deb kept
	kept="$PGINDENT_CACHE/pgindent-debs/$(basename "$file")"
	if [ -f "$kept" ] && echo "$sum  $kept" | sha256sum -c --quiet - >/dev/null 2>&1; then
		echo "$kept"
		return 0
	fi
	deb="$tmp/$(basename "$file")"
	if ! curl -fsS -m 300 -o "$deb" "$PGINDENT_MIRROR/$file" 2>/dev/null; then
		echo "pgindent: $file is no longer in the archive; taking $pkg from" \
			"$PGINDENT_SUITE's signed index (update PGINDENT_DEBS in scripts/pgindent.sh)" >&2
		read -r file sum < <(pgi_index "$tmp" "$pkg")
		[ -n "$file" ] || { echo "pgindent: $pkg not in $PGINDENT_SUITE" >&2; return 1; }
		deb="$tmp/$(basename "$file")"
		curl -fsS -m 300 -o "$deb" "$PGINDENT_MIRROR/$file"
	fi
	echo "$sum  $deb" | sha256sum -c --quiet - >&2 ||
		{ echo "pgindent: $deb: checksum mismatch" >&2; return 1; }
	kept="$PGINDENT_CACHE/pgindent-debs/$(basename "$deb")"
	as_root mkdir -p "${kept%/*}"
	as_root cp "$deb" "$kept"
	echo "$kept"
}

# pgi_ensure: the cached tools' directory on stdout, made on the first run
pgi_ensure() {
	local key dir tmp pkg file sum deb
	key=$( { echo "$PGINDENT_DEBS"; sha256sum "${BASH_SOURCE[0]}" | cut -c1-64; } |
		sha256sum | cut -c1-12)
	dir="$PGINDENT_CACHE/pgindent-$key"
	if [ ! -f "$dir/done" ]; then
		say "fetching PostgreSQL 17's pgindent and pg_bsd_indent (once per machine: $dir)" >&2
		tmp=$(mktemp -d)
		as_root rm -rf "$dir"
		as_root mkdir -p "$dir/bin" "$dir/lib"
		while read -r pkg file sum; do
			[ -n "$pkg" ] || continue
			deb=$(pgi_fetch "$tmp" "$pkg" "$file" "$sum") || { rm -rf "$tmp"; return 1; }
			dpkg-deb -x "$deb" "$tmp/root"
		done <<<"$PGINDENT_DEBS"
		as_root cp "$tmp/root/usr/lib/postgresql/17/bin/pg_bsd_indent" "$dir/bin/pg_bsd_indent.bin"
		as_root cp "$tmp/root/usr/lib/postgresql/17/bin/pgindent" "$dir/bin/pgindent"
		as_root cp "$tmp/root/usr/share/postgresql/17/typedefs.list" "$dir/typedefs.list"
		as_root cp -L "$tmp/root/usr/lib/x86_64-linux-gnu/libc.so.6" \
			"$tmp/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$dir/lib/"
		as_root tee "$dir/bin/pg_bsd_indent" >/dev/null <<'EOF'
#!/bin/sh
# Debian 13's pg_bsd_indent under Debian 13's loader and libc
d=$(dirname "$(readlink -f "$0")")/..
exec "$d/lib/ld-linux-x86-64.so.2" --library-path "$d/lib" "$d/bin/pg_bsd_indent.bin" "$@"
EOF
		as_root chmod 755 "$dir/bin/pg_bsd_indent"
		rm -rf "$tmp"
		"$dir/bin/pg_bsd_indent" --version | grep -q ' 2\.1\.2 ' ||
			{ echo "pgindent: $dir/bin/pg_bsd_indent does not run" >&2; return 1; }
		as_root touch "$dir/done"
	fi
	echo "$dir"
}

# envault_typedefs FILE...: typedef names declared in the files, one a line
envault_typedefs() {
	perl -0777 -ne '
		s{/\*.*?\*/}{ }gs; s{//[^\n]*}{}g;
		s{^\s*#(?:[^\n]*\\\n)*[^\n]*}{}mg;      # preprocessor lines
		while (/\btypedef\b/g) {
			my ($pos, $depth, $decl) = (pos, 0, "");
			for my $c (split //, substr($_, $pos)) {
				$depth++ if $c eq "{"; $depth-- if $c eq "}";
				last if $c eq ";" && $depth == 0;
				$decl .= $c if $depth == 0 && $c ne "}";
			}
			if ($decl =~ /\(\s*\*\s*(\w+)\s*\)\s*\(/) { print "$1\n"; next }
			$decl =~ s/\([^()]*\)//g;            # attributes
			for my $d (split /,/, $decl) {
				print "$1\n" if $d =~ /(\w+)\s*(?:\[[^\]]*\]\s*)*$/;
			}
		}' "$@" | grep -v -x -E 'const|volatile|struct|union|enum|' | sort -u
}

cd "$ENVAULT_ROOT"
shopt -s nullglob
files=(src/*.c src/*.h tools/*.c tools/*.h)
shopt -u nullglob
[ ${#files[@]} -gt 0 ] || { echo "pgindent: no C sources under $ENVAULT_ROOT" >&2; exit 1; }

# pg_bsd_indent garbles bytes above 0x7f in string and character literals
# (in comments they are safe): such a file is refused before it is touched
if ! perl -0777 -ne '
	while (m{/\*.*?\*/|//[^\n]*|("(?:\\.|[^"\\\n])*"|\x27(?:\\.|[^\x27\\\n])*\x27)}gs) {
		my ($lit, $at) = ($1, $-[0]);
		next unless defined $lit && $lit =~ /[\x80-\xff]/;
		my $line = 1 + (substr($_, 0, $at) =~ tr/\n//);
		print STDERR "$ARGV:$line: a non-ASCII byte in a literal (write it as \\x escapes)\n";
		$bad = 1;
	}
	END { exit $bad ? 1 : 0 }' "${files[@]}"; then
	echo "pgindent: pg_bsd_indent would garble the literals above" >&2
	exit 1
fi

tools=$(pgi_ensure)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# the library headers the sources include by name (<openssl/evp.h> brings
# every header of /usr/include/openssl: EVP_PKEY is declared elsewhere)
headers=()
while read -r inc; do
	if [ "${inc%/*}" != "$inc" ] && [ -d "/usr/include/${inc%%/*}" ] &&
		[ "${inc%%/*}" != postgresql ]; then
		headers+=(/usr/include/"${inc%%/*}"/*.h)
	elif [ -f "/usr/include/$inc" ]; then
		headers+=("/usr/include/$inc")
	fi
done < <(sed -n 's/^#[[:space:]]*include[[:space:]]*<\([^>]*\)>.*/\1/p' "${files[@]}" | sort -u)
{
	cat "$tools/typedefs.list"
	envault_typedefs "${files[@]}" ${headers[@]+"${headers[@]}"}
} | sort -u >"$work/typedefs.list"

grep -v -x -E "$(echo $PGINDENT_PLAIN_NOT_TYPEDEFS | tr ' ' '|')" \
	"$work/typedefs.list" >"$work/typedefs-plain.list"
if [ "$write" = 1 ]; then
	mode=()
else
	mode=(--check --diff)
fi
# run_pgindent TYPEDEFS FILE...: pgindent makes its temporary files in the
# current directory, so it runs in $work, on absolute paths
rc=0
: >"$work/out"
: >"$work/err"
run_pgindent() {
	local list=$1 f abs=()
	shift
	[ $# -gt 0 ] || return 0
	for f in "$@"; do abs+=("$ENVAULT_ROOT/$f"); done
	(cd "$work" && perl "$tools/bin/pgindent" --indent="$tools/bin/pg_bsd_indent" \
		--typedefs="$list" ${mode[@]+"${mode[@]}"} "${abs[@]}") \
		>>"$work/out" 2>>"$work/err" || rc=$?
}
pg=() plain=()
for f in "${files[@]}"; do
	case $f in
	tools/*) plain+=("$f") ;;
	*.c) if grep -qE '^#[[:space:]]*include[[:space:]]*"(postgres|envault)\.h"' "$f"; then
			pg+=("$f")
		else
			plain+=("$f")
		fi ;;
	*) pg+=("$f") ;;
	esac
done
run_pgindent "$work/typedefs.list" ${pg[@]+"${pg[@]}"}
run_pgindent "$work/typedefs-plain.list" ${plain[@]+"${plain[@]}"}
# diff headers as git's: a/FILE and b/FILE (not pgindent's temporary file)
perl -pe 'BEGIN { $r = shift } s{^--- \Q$r\E/(\S+)\t.*}{--- a/$1} and $f = $1;
	s{^\+\+\+ pgdiff\S*\t.*}{+++ b/$f}' "$ENVAULT_ROOT" "$work/out"
sed "s|$ENVAULT_ROOT/||g" "$work/err" >&2
# pgindent only warns (and goes on) when pg_bsd_indent fails on a file
failures=$(grep -c '^Failure in ' "$work/err" || true)
if [ "$failures" -gt 0 ]; then
	echo "pgindent: pg_bsd_indent could not handle $failures file(s)" >&2
	exit 1
fi
if [ "$write" = 1 ]; then
	[ "$rc" = 0 ] || exit 1
	echo "pgindent: ${#files[@]} files laid out"
elif [ "$rc" = 0 ]; then
	echo "pgindent: ${#files[@]} files clean"
else
	echo "pgindent: the files above are not as pgindent lays them out;" \
		"scripts/pgindent.sh --write rewrites them" >&2
	exit 1
fi
