#!/usr/bin/env python3
"""Open envault's wrapped keys and ciphertexts outside the server, with the
independent implementation of docs/format.md in test/vectors, for TAP tests
that must know what a key is or whether a copy of the key tables opens a
value.  Prints the hex of the result, or FAIL when authentication fails.

    envault_keys.py tenant-key KEK TENANT KEY_VERSION WRAPPED
    envault_keys.py data-key TENANT_KEY TENANT PURPOSE VERSION KEY_ID WRAPPED
    envault_keys.py decrypt DATA_KEY TENANT PURPOSE CIPHERTEXT [AAD]

Keys, wrapped keys, ciphertexts and associated data are hex; KEK is the
master key (or a customer key).
"""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "vectors"))
from cryptography.exceptions import InvalidTag  # noqa: E402
from check_vectors import (data_key_wrap_aad, decrypt,  # noqa: E402
                           tenant_wrap_aad, unwrap)


def main(argv):
    op, args = argv[1], argv[2:]
    try:
        if op == "tenant-key":
            kek, tenant, version, wrapped = args
            out = unwrap(bytes.fromhex(kek), bytes.fromhex(wrapped),
                         tenant_wrap_aad(tenant.encode(), struct.pack(">I", int(version))))
        elif op == "data-key":
            tkey, tenant, purpose, version, key_id, wrapped = args
            out = unwrap(bytes.fromhex(tkey), bytes.fromhex(wrapped),
                         data_key_wrap_aad(tenant.encode(), purpose.encode(),
                                           struct.pack(">I", int(version)),
                                           struct.pack(">Q", int(key_id))))
        elif op == "decrypt":
            dkey, tenant, purpose, ct = args[:4]
            aad = bytes.fromhex(args[4]) if len(args) > 4 else b""
            out = decrypt(bytes.fromhex(dkey), tenant.encode(), purpose.encode(),
                          bytes.fromhex(ct), aad)
        else:
            sys.exit("unknown operation " + op)
    except InvalidTag:
        print("FAIL")
        return
    print(out.hex())


if __name__ == "__main__":
    main(sys.argv)
