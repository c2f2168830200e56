#!/usr/bin/env python3
"""Unwrap envault key rows with the master key, outside the database, as
docs/format.md specifies (reusing check_vectors.py's XAES-256-GCM).  Used by
test/t/070_no_secrets_in_log.pl to learn every key that a server held
unwrapped, so that it can look for them in the server log.

Reads lines from standard input, fields separated by spaces, strings and
keys in hex:

    master MASTER_KEY
    tenant TENANT KEY_VERSION MASTER_KCV WRAPPED_KEY
    data KEY_ID TENANT PURPOSE VERSION TENANT_KEY_VERSION WRAPPED_KEY
    open AAD CIPHERTEXT

"tenant" and "data" lines may repeat a row, and may hold rows that do not
unwrap (wrapped under another master key, or altered on purpose): each
wrapped key is tried, and only those whose tag verifies count.  "open"
decrypts a ciphertext with the data key its header names, once all rows are
read.  Writes

    tenant_key TENANT KEY_VERSION KEY
    data_key KEY_ID KEY
    plaintext PLAINTEXT            (or "open_failed", for each "open")
    summary NAME=COUNT ...

Exits non-zero only on malformed input.
"""
import importlib.util
import os
import struct
import sys

from cryptography.exceptions import InvalidTag

_spec = importlib.util.spec_from_file_location(
    "check_vectors", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "check_vectors.py"))
cv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cv)


def main():
    master = None
    tenant_rows = []
    data_rows = []
    opens = []
    for line in sys.stdin:
        f = line.split()
        if not f:
            continue
        if f[0] == "master" and len(f) == 2:
            master = bytes.fromhex(f[1])
        elif f[0] == "tenant" and len(f) == 5:
            tenant_rows.append((bytes.fromhex(f[1]), int(f[2]), bytes.fromhex(f[3]),
                                bytes.fromhex(f[4])))
        elif f[0] == "data" and len(f) == 7:
            data_rows.append((int(f[1]), bytes.fromhex(f[2]), bytes.fromhex(f[3]),
                              int(f[4]), int(f[5]), bytes.fromhex(f[6])))
        elif f[0] == "open" and len(f) == 3:
            opens.append((bytes.fromhex(f[1]), bytes.fromhex(f[2])))
        else:
            sys.exit("unwrap_keys.py: malformed line: " + line.strip())
    if master is None or len(master) != 32:
        sys.exit("unwrap_keys.py: no master key")

    counts = {"tenant_rows": len(tenant_rows), "other_master_key": 0,
              "tenant_failed": 0, "data_rows": len(data_rows), "data_failed": 0,
              "no_tenant_key": 0}
    mkcv = cv.kcv(master)

    # (tenant, key version) -> every distinct tenant key unwrapped for it
    tenant_keys = {}
    for tenant, version, kcv, wrapped in tenant_rows:
        if kcv != mkcv:
            counts["other_master_key"] += 1
            continue
        try:
            key = cv.unwrap(master, wrapped,
                            cv.tenant_wrap_aad(tenant, struct.pack(">I", version)))
        except InvalidTag:
            counts["tenant_failed"] += 1
            continue
        keys = tenant_keys.setdefault((tenant, version), [])
        if key not in keys:
            keys.append(key)

    # key id -> (tenant, purpose, data key)
    data_keys = {}
    for key_id, tenant, purpose, version, under, wrapped in data_rows:
        candidates = tenant_keys.get((tenant, under), [])
        if not candidates:
            counts["no_tenant_key"] += 1
            continue
        aad = cv.data_key_wrap_aad(tenant, purpose, struct.pack(">I", version),
                                   struct.pack(">Q", key_id))
        for kek in candidates:
            try:
                data_keys[key_id] = (tenant, purpose, cv.unwrap(kek, wrapped, aad))
                break
            except InvalidTag:
                pass
        else:
            counts["data_failed"] += 1

    for (tenant, version), keys in sorted(tenant_keys.items()):
        for key in keys:
            print("tenant_key", tenant.hex(), version, key.hex())
    for key_id, (_, _, key) in sorted(data_keys.items()):
        print("data_key", key_id, key.hex())

    counts["opened"] = 0
    for aad, ciphertext in opens:
        key_id = struct.unpack(">Q", ciphertext[4:12])[0] if len(ciphertext) >= 12 else -1
        try:
            tenant, purpose, key = data_keys[key_id]
            print("plaintext", cv.decrypt(key, tenant, purpose, ciphertext, aad).hex())
            counts["opened"] += 1
        except (KeyError, InvalidTag):
            print("open_failed")

    counts["tenant_keys"] = sum(len(k) for k in tenant_keys.values())
    counts["data_keys"] = len(data_keys)
    print("summary", " ".join("%s=%d" % kv for kv in sorted(counts.items())))


if __name__ == "__main__":
    main()
