#!/usr/bin/env bash
# envault demo: installs what is needed, builds envault, starts a throwaway
# PostgreSQL 15 cluster with envault preloaded and freshly generated keys,
# runs scripts/demo.sql, then stops and removes the cluster.
# Run as root (the cluster runs as the postgres user) or as a sudoer.

source "$(dirname "$0")/lib.sh"

install_deps
build_and_install

dir=$(pg_workdir demo)
trap 'cluster_stop "$dir"; rm -rf "$dir"' EXIT

say "starting a throwaway cluster with a fresh master key, token pepper and checkpoint signing key in $dir (mode 0600)"
new_key_file "$dir/master.key"
new_key_file "$dir/pepper.key"
new_signing_key "$dir/signing.pem"
cluster_start "$dir" 54390 "envault.master_key_file = '$dir/master.key'" \
	"envault.pepper_file = '$dir/pepper.key'" \
	"envault.signing_key_file = '$dir/signing.pem'"

as_pg "$PGBIN/psql" -h "$dir" -p 54390 -d postgres -X -q < "$ENVAULT_ROOT/scripts/demo.sql"

say "stopping and removing the cluster"
