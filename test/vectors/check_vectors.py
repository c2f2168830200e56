#!/usr/bin/env python3
"""Check the envault test vectors of docs/format.md with an independent
implementation (Python standard library and the `cryptography` package only).

    check_vectors.py docs/format.md    recompute and decrypt every vector;
                                       one line per check, exit 1 on a mismatch
    check_vectors.py --generate        print the vector blocks for the document

A vector block is a fenced code block whose info string is "vector KIND",
holding one "name: hex" line per value (an empty value is "name:").
"""
import hashlib
import hmac
import re
import struct
import sys
import zlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


# --- XAES-256-GCM (c2sp.org/XAES-256-GCM) ---------------------------------

def aes(key, block):
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def xaes_derive(key, nonce):
    """L, the CMAC subkey K1, and the derived AES-256-GCM key Kx."""
    l = aes(key, bytes(16))
    k1 = (int.from_bytes(l, "big") << 1) & ((1 << 128) - 1)
    if l[0] & 0x80:
        k1 ^= 0x87
    kx = b""
    for i in (1, 2):
        m = int.from_bytes(bytes([0, i, 0x58, 0]) + nonce[:12], "big")
        kx += aes(key, (m ^ k1).to_bytes(16, "big"))
    return l, k1.to_bytes(16, "big"), kx


def xaes_seal(key, nonce, plaintext, aad):
    return AESGCM(xaes_derive(key, nonce)[2]).encrypt(nonce[12:], plaintext, aad)


def xaes_open(key, nonce, ciphertext, aad):
    return AESGCM(xaes_derive(key, nonce)[2]).decrypt(nonce[12:], ciphertext, aad)


# --- envault format 1 -----------------------------------------------------

def field(b):
    return struct.pack(">I", len(b)) + b


def kcv(master_key):
    mac = hmac.new(master_key, b"envault/v1/key-check-value", hashlib.sha256)
    return mac.digest()[:16]


def tenant_wrap_aad(tenant, key_version):
    return b"envault/v1/tenant-key" + field(tenant) + key_version


def data_key_wrap_aad(tenant, purpose, version, key_id):
    return b"envault/v1/data-key" + field(tenant) + field(purpose) + version + key_id


def wrap(kek, key, nonce, aad):
    return b"\x01" + nonce + xaes_seal(kek, nonce, key, aad)


def unwrap(kek, wrapped, aad):
    if len(wrapped) != 73 or wrapped[0] != 1:
        raise InvalidTag()
    return xaes_open(kek, wrapped[1:25], wrapped[25:], aad)


def xaes_subkey(key, label):
    """A 32-byte subkey of an XAES key: the XAES-256-GCM key derivation with
    a one-byte label instead of 'X' and an all-zero nonce half."""
    _, k1, _ = xaes_derive(key, bytes(24))
    k1 = int.from_bytes(k1, "big")
    out = b""
    for i in (1, 2):
        m = int.from_bytes(bytes([0, i, label, 0]) + bytes(12), "big")
        out += aes(key, (m ^ k1).to_bytes(16, "big"))
    return out


def blind_index(index_key, value):
    subkey = xaes_subkey(index_key, 0x42)            # 'B'
    return subkey, hmac.new(subkey, value, hashlib.sha256).digest()


def token_text(token_id, secret):
    body = b"evt_" + token_id.hex().encode() + b"_" + secret.hex().encode()
    return body + b"_" + ("%08x" % zlib.crc32(body)).encode()


def token_hmac(pepper, token_id, secret):
    return hmac.new(pepper, b"envault/v1/token" + token_id + secret, hashlib.sha256).digest()


def pepper_kcv(pepper):
    return hmac.new(pepper, b"envault/v1/pepper-check-value", hashlib.sha256).digest()[:16]


def customer_kcv(customer_key):
    mac = hmac.new(customer_key, b"envault/v1/customer-key-check-value", hashlib.sha256)
    return mac.digest()[:16]


def data_aad(header, tenant, purpose, aad):
    return header + field(tenant) + field(purpose) + field(aad)


def encrypt(data_key, key_id, nonce, tenant, purpose, plaintext, aad):
    header = b"EV\x01\x01" + key_id + nonce
    return header + xaes_seal(data_key, nonce, plaintext,
                              data_aad(header, tenant, purpose, aad))


def decrypt(data_key, tenant, purpose, ciphertext, aad):
    if len(ciphertext) < 52 or ciphertext[:4] != b"EV\x01\x01":
        raise InvalidTag()
    return xaes_open(data_key, ciphertext[12:36], ciphertext[36:],
                     data_aad(ciphertext[:36], tenant, purpose, aad))


# --- vectors --------------------------------------------------------------

# The values of each kind of vector, in the order they are printed, and the
# lengths of the fixed-size inputs.
NAMES = {
    "xaes-256-gcm": ["key", "nonce", "plaintext", "aad", "l", "k1", "kx", "ciphertext"],
    "envault-keys": ["master_key", "master_kcv", "tenant", "tenant_key_version",
                     "tenant_key", "tenant_wrap_nonce", "tenant_wrap_aad",
                     "wrapped_tenant_key", "purpose", "version", "key_id", "data_key",
                     "data_key_wrap_nonce", "data_key_wrap_aad", "wrapped_data_key"],
    "envault-data": ["tenant", "purpose", "key_id", "data_key", "nonce", "plaintext",
                     "aad", "data_aad", "ciphertext"],
    "envault-customer-key": ["customer_key", "customer_kcv", "tenant", "tenant_key_version",
                             "tenant_key", "tenant_wrap_nonce", "tenant_wrap_aad",
                             "wrapped_tenant_key"],
    "envault-blind-index": ["tenant", "purpose", "key_id", "index_key", "value", "subkey",
                            "blind_index"],
    "envault-token": ["pepper", "pepper_kcv", "token_id", "secret", "token", "token_hmac"],
}
LENGTHS = {"key": 32, "master_key": 32, "tenant_key": 32, "data_key": 32, "nonce": 24,
           "tenant_wrap_nonce": 24, "data_key_wrap_nonce": 24, "tenant_key_version": 4,
           "version": 4, "key_id": 8, "customer_key": 32, "index_key": 32, "pepper": 32,
           "token_id": 8, "secret": 32}


def derive(kind, v):
    """The values of a vector that are computed from its inputs."""
    if kind == "xaes-256-gcm":
        l, k1, kx = xaes_derive(v["key"], v["nonce"])
        ct = xaes_seal(v["key"], v["nonce"], v["plaintext"], v["aad"])
        return {"l": l, "k1": k1, "kx": kx, "ciphertext": ct}
    if kind == "envault-keys":
        taad = tenant_wrap_aad(v["tenant"], v["tenant_key_version"])
        daad = data_key_wrap_aad(v["tenant"], v["purpose"], v["version"], v["key_id"])
        return {"master_kcv": kcv(v["master_key"]),
                "tenant_wrap_aad": taad,
                "wrapped_tenant_key": wrap(v["master_key"], v["tenant_key"],
                                           v["tenant_wrap_nonce"], taad),
                "data_key_wrap_aad": daad,
                "wrapped_data_key": wrap(v["tenant_key"], v["data_key"],
                                         v["data_key_wrap_nonce"], daad)}
    if kind == "envault-customer-key":
        taad = tenant_wrap_aad(v["tenant"], v["tenant_key_version"])
        return {"customer_kcv": customer_kcv(v["customer_key"]),
                "tenant_wrap_aad": taad,
                "wrapped_tenant_key": wrap(v["customer_key"], v["tenant_key"],
                                           v["tenant_wrap_nonce"], taad)}
    if kind == "envault-blind-index":
        subkey, index = blind_index(v["index_key"], v["value"])
        return {"subkey": subkey, "blind_index": index}
    if kind == "envault-token":
        return {"pepper_kcv": pepper_kcv(v["pepper"]),
                "token": token_text(v["token_id"], v["secret"]),
                "token_hmac": token_hmac(v["pepper"], v["token_id"], v["secret"])}
    header = b"EV\x01\x01" + v["key_id"] + v["nonce"]
    return {"data_aad": data_aad(header, v["tenant"], v["purpose"], v["aad"]),
            "ciphertext": encrypt(v["data_key"], v["key_id"], v["nonce"], v["tenant"],
                                  v["purpose"], v["plaintext"], v["aad"])}


def seq(first, n):
    """n consecutive byte values from first: the fixed keys and nonces."""
    return bytes(range(first, first + n))


CHAIN = {"tenant": b"vector-tenant", "purpose": b"secrets",
         "key_id": (0x0123456789abcdef).to_bytes(8, "big")}
BIDX_KEY_ID = (0x0123456789abcdf0).to_bytes(8, "big")
INPUTS = [
    ("xaes-256-gcm", {"key": b"\x01" * 32, "nonce": b"ABCDEFGHIJKLMNOPQRSTUVWX",
                      "plaintext": b"XAES-256-GCM", "aad": b""}),
    ("xaes-256-gcm", {"key": b"\x03" * 32, "nonce": b"ABCDEFGHIJKLMNOPQRSTUVWX",
                      "plaintext": b"XAES-256-GCM", "aad": b"c2sp.org/XAES-256-GCM"}),
    ("envault-keys", dict(CHAIN, master_key=seq(0x00, 32), tenant_key=seq(0x20, 32),
                          tenant_key_version=b"\0\0\0\1", tenant_wrap_nonce=seq(0xa0, 24),
                          version=b"\0\0\0\1", data_key=seq(0x40, 32),
                          data_key_wrap_nonce=seq(0xc0, 24))),
    ("envault-data", dict(CHAIN, data_key=seq(0x40, 32), nonce=seq(0xe0, 24),
                          plaintext=b"envault test vector", aad=b"row:42")),
    ("envault-data", dict(CHAIN, data_key=seq(0x40, 32), nonce=seq(0x80, 24),
                          plaintext=b"envault test vector", aad=b"")),
    ("envault-data", dict(CHAIN, data_key=seq(0x40, 32), nonce=seq(0x60, 24),
                          plaintext=b"", aad=b"")),
    # the same tenant key wrapped by a customer-managed key (BYOK)
    ("envault-customer-key", {"customer_key": seq(0x10, 32), "tenant": CHAIN["tenant"],
                              "tenant_key_version": b"\0\0\0\1", "tenant_key": seq(0x20, 32),
                              "tenant_wrap_nonce": seq(0xb0, 24)}),
    # the blind-index key of (vector-tenant, email): a data key of purpose _bidx.email
    ("envault-keys", dict(CHAIN, purpose=b"_bidx.email", key_id=BIDX_KEY_ID,
                          master_key=seq(0x00, 32), tenant_key=seq(0x20, 32),
                          tenant_key_version=b"\0\0\0\1", tenant_wrap_nonce=seq(0xa0, 24),
                          version=b"\0\0\0\1", data_key=seq(0x50, 32),
                          data_key_wrap_nonce=seq(0xd0, 24))),
    ("envault-blind-index", {"tenant": CHAIN["tenant"], "purpose": b"email",
                             "key_id": BIDX_KEY_ID, "index_key": seq(0x50, 32),
                             "value": b"alice@example.com"}),
    # a token under the pepper of test/regress.conf
    ("envault-token", {"pepper": seq(0xf0, 16) + bytes.fromhex("00112233445566778899aabbccddeeff"),
                       "token_id": seq(0x70, 8), "secret": seq(0x90, 32)}),
]


def generate():
    for kind, v in INPUTS:
        v = dict(v, **derive(kind, v))
        print("```vector " + kind)
        for name in NAMES[kind]:
            print((name + ": " + v[name].hex()).rstrip())
        print("```\n")


BLOCK = re.compile(r"^```vector ([a-z0-9-]+)\n(.*?)^```$", re.M | re.S)
LINE = re.compile(r"^([a-z0-9_]+):[ \t]*((?:[0-9a-f]{2})*)$")


def parse(text):
    blocks = []
    for m in BLOCK.finditer(text):
        v = {}
        for line in m.group(2).splitlines():
            lm = LINE.match(line.strip())
            if not lm or lm.group(1) in v:
                raise ValueError("bad line in a %s vector: %r" % (m.group(1), line))
            v[lm.group(1)] = bytes.fromhex(lm.group(2))
        blocks.append((m.group(1), v))
    return blocks


def check(path):
    failed = 0

    def report(ok, what):
        nonlocal failed
        failed += not ok
        print("%-4s %s" % ("ok" if ok else "FAIL", what))

    def opens(what, expected, fn, *args):
        try:
            report(fn(*args) == expected, what)
        except InvalidTag:
            report(False, what + " (authentication failed)")

    def refused(what, fn, *args):
        try:
            fn(*args)
            report(False, what + " (was accepted)")
        except InvalidTag:
            report(True, what)

    try:
        with open(path, encoding="utf-8") as f:
            blocks = parse(f.read())
    except (OSError, ValueError) as e:
        report(False, "read %s: %s" % (path, e))
        return 1

    data_keys = {}                      # key_id -> data key unwrapped from its chain
    purposes = {}                       # key_id -> purpose of that data key
    for n, (kind, v) in enumerate(blocks, 1):
        name = "vector %d (%s):" % (n, kind)
        if set(v) != set(NAMES.get(kind, ())):
            report(False, "%s values must be exactly %s" % (name, NAMES.get(kind)))
            continue
        bad = [k for k in v if k in LENGTHS and len(v[k]) != LENGTHS[k]]
        if "key_id" in v and v["key_id"][0] & 0x80:
            bad.append("key_id (not a positive bigint)")
        report(not bad, "%s lengths of inputs %s" % (name, ", ".join(bad) or "ok"))
        if bad:
            continue
        for k, value in derive(kind, v).items():
            report(value == v[k], "%s %s" % (name, k))

        if kind == "xaes-256-gcm":
            opens(name + " decrypts to plaintext", v["plaintext"],
                  xaes_open, v["key"], v["nonce"], v["ciphertext"], v["aad"])
            refused(name + " other aad refused",
                    xaes_open, v["key"], v["nonce"], v["ciphertext"], v["aad"] + b"x")
        elif kind == "envault-keys":
            taad = tenant_wrap_aad(v["tenant"], v["tenant_key_version"])
            daad = data_key_wrap_aad(v["tenant"], v["purpose"], v["version"], v["key_id"])
            opens(name + " master key unwraps tenant key", v["tenant_key"],
                  unwrap, v["master_key"], v["wrapped_tenant_key"], taad)
            opens(name + " tenant key unwraps data key", v["data_key"],
                  unwrap, v["tenant_key"], v["wrapped_data_key"], daad)
            refused(name + " tenant key of another key_version refused",
                    unwrap, v["master_key"], v["wrapped_tenant_key"],
                    tenant_wrap_aad(v["tenant"], b"\0\0\0\2"))
            try:
                data_keys[v["key_id"]] = unwrap(
                    unwrap(v["master_key"], v["wrapped_tenant_key"], taad),
                    v["wrapped_data_key"], daad)
                purposes[v["key_id"]] = v["purpose"]
            except InvalidTag:
                pass
        elif kind == "envault-customer-key":
            taad = tenant_wrap_aad(v["tenant"], v["tenant_key_version"])
            opens(name + " customer key unwraps tenant key", v["tenant_key"],
                  unwrap, v["customer_key"], v["wrapped_tenant_key"], taad)
            refused(name + " another tenant's wrap AAD refused",
                    unwrap, v["customer_key"], v["wrapped_tenant_key"],
                    tenant_wrap_aad(v["tenant"] + b"x", v["tenant_key_version"]))
        elif kind == "envault-blind-index":
            report(data_keys.get(v["key_id"]) == v["index_key"]
                   and purposes.get(v["key_id"]) == b"_bidx." + v["purpose"],
                   name + " index_key is the data key of purpose _bidx.<purpose> with that key_id")
            report(blind_index(v["index_key"], v["value"] + b"x")[1] != v["blind_index"],
                   name + " another value gives another index")
        elif kind == "envault-token":
            t = v["token"].decode("ascii")
            report(re.fullmatch(r"evt_[0-9a-f]{16}_[0-9a-f]{64}_[0-9a-f]{8}", t) is not None
                   and bytes.fromhex(t[4:20]) == v["token_id"]
                   and bytes.fromhex(t[21:85]) == v["secret"],
                   name + " token text is evt_<id>_<secret>_<crc>")
            report(int(t[86:], 16) == zlib.crc32(t[:85].encode()),
                   name + " checksum is the CRC-32 of everything before the last _")
        else:
            # Decrypt as a reader does: the data key named by the header,
            # unwrapped from its key rows.
            dk = data_keys.get(v["ciphertext"][4:12])
            if dk is None:
                report(False, name + " no envault-keys vector for its key_id before it")
                continue
            opens(name + " decrypts to plaintext", v["plaintext"],
                  decrypt, dk, v["tenant"], v["purpose"], v["ciphertext"], v["aad"])
            refused(name + " other aad refused",
                    decrypt, dk, v["tenant"], v["purpose"], v["ciphertext"], v["aad"] + b"x")
            refused(name + " other purpose refused",
                    decrypt, dk, v["tenant"], b"other", v["ciphertext"], v["aad"])

    for kind in NAMES:
        report(any(k == kind for k, _ in blocks), "at least one %s vector" % kind)
    print("%d check(s) failed" % failed if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--generate"]:
        generate()
    elif len(sys.argv) == 2 and not sys.argv[1].startswith("-"):
        sys.exit(check(sys.argv[1]))
    else:
        sys.exit(__doc__)
