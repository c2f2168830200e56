#!/usr/bin/env python3
"""Verify exports of envault audit chains, independently of envault's C code.

Written from docs/audit-chain.md alone, with the Python standard library and
the `cryptography` package: the second implementation of "To verify an
export without envault", next to envault-verify, which it mirrors exactly.

    check_chain.py --key KEYFILE [--key KEYFILE ...] [--name NAME]
                   --database ID [--checkpoints LOGFILE ...] [--complete]
                   [--witness VKEYFILE ...] [--witnesses N]
                   EXPORT.json
        verify an export as envault-verify does and print the same one line;
        exit 0 (OK), 1 (FAIL) or 2 (usage or I/O error)

    check_chain.py --generate EXPORT.json [SINCE-EXPORT.json]
        print the chain-vector blocks of the document for an export made
        with the signing key of test/regress.conf (and cosigned, if at all,
        by the test witness), and for a second export of the same chain
        that starts mid-chain

    check_chain.py [--verifier PATH] docs/audit-chain.md
        check the worked example and test vectors of the document: the key
        IDs and verifier keys from the seeds, the first row's hash input
        byte by byte, every row hash, the Merkle tree, the checkpoints'
        signatures and the witness cosignature (recomputed from the seeds:
        Ed25519 is deterministic), the frontier of the mid-chain export;
        then verify both exports and refuse tampered copies of them, each
        with the line envault-verify prints.  With --verifier, that
        envault-verify program must print the same line for the vectors
        and every tampered copy.  One line per check; exit 1 on any failure.
"""
import base64
import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey, Ed25519PublicKey)

INT64_MAX = 2 ** 63 - 1
UINT64_MAX = 2 ** 64 - 1
EXPORT_MAXLEN = 256 << 20
KEYFILE_MAX = 65536
LOG_MAXLINE = 1 << 20
NOTE_MAXLEN = 4096              # of a checkpoint envault writes (its log lines)
NOTE_READ_MAXLEN = 1 << 20      # of a note read
NAME_MAXLEN = 2048              # a tree head's key name is its origin
MAXSIGS = 100
GENESIS = bytes(32)
ROW_LABEL = b"envault/v1/chain-row"
COLUMNS_LABEL = b"envault/v1/chain-columns"
FORMAT_V1 = "envault-chain-export-v1"
FORMAT_V2 = "envault-chain-export-v2"
TYPE_ED25519 = 0x01             # signature types of key IDs and verifier keys
TYPE_COSIGNATURE = 0x04         # C2SP tlog-cosignature, cosignature/v1
COSIG_LABEL = b"cosignature/v1\n"
MERKLE_MAX_LEVELS = 63          # a frontier holds at most 63 hashes (size < 2^63)
EM_DASH = "\u2014".encode()
LOG_MARKER = b"envault checkpoint: origin="
B64CHARS = re.compile(rb"[A-Za-z0-9+/=]*")


class Malformed(Exception):
    """The export is not one: FAIL: malformed export: <message>."""


class UsageError(Exception):
    """A usage or I/O error: exit status 2."""


# --- encodings (document: Conventions) -----------------------------------

def u32(n):
    return n.to_bytes(4, "big")


def str_(b):
    return u32(len(b)) + b


def opt(b):
    return b"\x00" if b is None else b"\x01" + str_(b)


def b64(b):
    return base64.b64encode(b).decode("ascii")


def unb64(s, maxlen=None):
    """Canonical base64 only: the one encoding of its bytes; else None."""
    if isinstance(s, str):
        try:
            s = s.encode("ascii")
        except UnicodeEncodeError:
            return None
    if len(s) % 4 or not re.fullmatch(rb"[A-Za-z0-9+/]*={0,2}", s):
        return None
    out = base64.b64decode(s, validate=True)
    if base64.b64encode(out) != s or (maxlen is not None and len(out) > maxlen):
        return None
    return out


def pct(b):
    """Percent-encode every byte but A-Z a-z 0-9 - . _ ~ (uppercase hex)."""
    safe = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    return "".join(chr(c) if c in safe else "%%%02X" % c for c in b).encode("ascii")


def as_int64(u):
    """A checkpoint's sequence number as a bigint reads it."""
    return u - 2 ** 64 if u > INT64_MAX else u


# --- signed notes and checkpoints (document: Checkpoints) -----------------

UNICODE_SPACES = set(range(0x09, 0x0e)) | {0x20, 0x85, 0xa0, 0x1680, 0x2028, 0x2029,
                                              0x202f, 0x205f, 0x3000} | set(range(0x2000, 0x200b))


def name_valid(name):
    """C2SP key names: UTF-8, no Unicode space, no '+'; envault: no control
    character either, at most 2048 bytes (a tree head's key name is its
    checkpoint's origin)."""
    if not 1 <= len(name) <= NAME_MAXLEN:
        return False
    try:
        chars = name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ord(c) > 0x20 and ord(c) != 0x7f and c != "+" and not 0x80 <= ord(c) < 0xa0
               and ord(c) not in UNICODE_SPACES for c in chars)


def key_id(name, pub, typ=TYPE_ED25519):
    """SHA-256(name || 0x0a || signature type || public key)[:4]"""
    return hashlib.sha256(name + b"\n" + bytes([typ]) + pub).digest()[:4]


def parse_note(note):
    """(text, [(name, key ID, signature, cosignature)]) of a readable note,
    else None.  signature: the 64 bytes of a line of 4 + 64 bytes, else
    None; cosignature: (timestamp, the 64-byte signature) of a line of
    4 + 8 + 64 bytes (cosignature/v1), else None."""
    if not 2 <= len(note) <= NOTE_READ_MAXLEN or note[-1:] != b"\n":
        return None
    try:
        chars = note.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any((ord(c) < 0x20 and c != "\n") or ord(c) == 0x7f for c in chars):
        return None
    split = note.rfind(b"\n\n")
    if split <= 0:
        return None
    text, rest = note[:split + 1], note[split + 2:]
    if not rest:
        return None
    sigs = []
    while rest:
        eol = rest.find(b"\n")
        if eol < 0 or len(sigs) >= MAXSIGS:
            return None
        line, rest = rest[:eol], rest[eol + 1:]
        if not line.startswith(EM_DASH + b" "):
            return None
        sp = line.find(b" ", 4)
        if sp < 0 or not name_valid(line[4:sp]):
            return None
        raw = unb64(line[sp + 1:])
        if raw is None or len(raw) <= 4:
            return None
        sigs.append((line[4:sp], raw[:4], raw[4:] if len(raw) == 68 else None,
                     (int.from_bytes(raw[4:12], "big"), raw[12:]) if len(raw) == 76 else None))
    return text, sigs


def ed25519_valid(pub, sig, message):
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, message)
    except InvalidSignature:
        return False
    return True


def verify_note(note, name, pub):
    """'verified', 'malformed', 'unknown key' or 'bad signature'."""
    parsed = parse_note(note)
    if parsed is None:
        return "malformed"
    text, sigs = parsed
    kid = key_id(name, pub)
    found = False
    for sname, skid, sig, _ in sigs:
        if sname != name or skid != kid:
            continue
        # every signature line by a known key must verify
        if sig is None or not ed25519_valid(pub, sig, text):
            return "bad signature"
        found = True
    return "verified" if found else "unknown key"


def cosignature_message(text, timestamp):
    """What a cosignature/v1 signs: its header, then the note's text."""
    return COSIG_LABEL + b"time %d\n" % timestamp + text


def verify_cosignature(note, name, pub):
    """'verified', 'malformed', 'unknown key' or 'bad signature', for a
    witness key (type 0x04): every line by its name and key ID must hold a
    cosignature/v1 (a timestamp up to 2^63 - 1 and an Ed25519 signature)
    valid for the text."""
    parsed = parse_note(note)
    if parsed is None:
        return "malformed"
    text, sigs = parsed
    kid = key_id(name, pub, TYPE_COSIGNATURE)
    found = False
    for sname, skid, _, cosig in sigs:
        if sname != name or skid != kid:
            continue
        if cosig is None or cosig[0] > INT64_MAX:
            return "bad signature"
        msg = cosignature_message(text, cosig[0])
        # envault builds the message in a buffer of 64 + 4096 bytes
        if len(msg) > 64 + NOTE_MAXLEN or not ed25519_valid(pub, cosig[1], msg):
            return "bad signature"
        found = True
    return "verified" if found else "unknown key"


def parse_checkpoint(text):
    """(origin, seq, hash) of a checkpoint's signed text (C2SP tlog-checkpoint:
    three lines, then opaque extension lines), else None."""
    lines = text.split(b"\n")
    if len(lines) < 4 or lines[-1] != b"" or any(not l for l in lines[:-1]):
        return None
    origin, seq, h = lines[:3]
    if any(c <= 0x20 or c == 0x7f or c == 0x2b for c in origin):
        return None
    if len(seq) > 20 or not re.fullmatch(rb"[1-9][0-9]*", seq) or int(seq) > UINT64_MAX:
        return None
    hb = unb64(h, 32)
    if hb is None or len(hb) != 32:
        return None
    return origin, int(seq), hb


def checkpoint_purge(text):
    """The anchor n of a purge statement ("purge <n>", the extension line
    right after the time line), else 0."""
    lines = text.split(b"\n")
    if len(lines) < 6 or not lines[3].startswith(b"time "):
        return 0
    m = re.fullmatch(rb"purge ([1-9][0-9]{0,19})", lines[4])
    return int(m.group(1)) if m and int(m.group(1)) <= UINT64_MAX else 0


def origin_names(origin, database, chain, tenant):
    """envault/<database>/<chain>[/<tenant>], percent-encoded; the database
    is the one the auditor pins (--database)."""
    want = (b"envault/" + pct(database) + b"/" + pct(chain)
            + (b"/" + pct(tenant) if tenant is not None else b""))
    return origin == want


def checkpoint_kind(note, keys, origin):
    """'tree' (a Merkle tree head: signed under the origin as key name),
    'row' (a head row's hash, as envault 0.2.0 signed: under the key's own
    name) or None (refused).  For each trusted key in order: a line under
    the origin decides, valid or not; then a line under the key's name;
    a key that signed under neither passes to the next."""
    for name, pub in keys:
        rc = verify_note(note, origin, pub) if len(origin) <= NAME_MAXLEN else "unknown key"
        if rc == "verified":
            return "tree"
        if rc != "bad signature":
            rc = verify_note(note, name, pub)
        if rc == "verified":
            return "row"
        if rc == "bad signature":
            return None
    return None


def check_note(note, keys, database, chain, tenant, witnesses=()):
    """(status, body, tree, cosigners): status 0 verified, 1 unreadable,
    2 bad; body (origin, seq, hash) when readable; tree when it signs a
    tree head; cosigners: the indexes in witnesses of the witnesses whose
    cosignatures it carries.  A line by a given witness that does not
    verify makes it bad."""
    parsed = parse_note(note)
    body = parse_checkpoint(parsed[0]) if parsed else None
    if body is None:
        return 1, None, False, set()
    kind = checkpoint_kind(note, keys, body[0])
    status = 0 if kind is not None else 2
    if status == 0 and not origin_names(body[0], database, chain, tenant):
        status = 2
    cosigners = set()
    for i, (name, pub) in enumerate(witnesses if status == 0 else ()):
        rc = verify_cosignature(note, name, pub)
        if rc == "bad signature":
            status = 2
            break
        if rc == "verified":
            cosigners.add(i)
    return status, body, kind == "tree", cosigners if status == 0 else set()


# --- keys ------------------------------------------------------------------

def parse_vkey(text, typ):
    """(name, public key) of a verifier key of the given type, else None."""
    text = text.strip(b" \t\r\n")
    m = re.fullmatch(rb"([^+]*)\+([0-9a-f]{8})\+(.*)", text, re.S)
    typed = unb64(m.group(3), 33) if m else None
    if (m is None or not name_valid(m.group(1)) or typed is None or len(typed) != 33
            or typed[0] != typ
            or key_id(m.group(1), typed[1:], typ).hex() != m.group(2).decode()):
        return None
    return m.group(1), typed[1:]


def parse_key(text, pem_name):
    """(name, public key) of a key file, or raise UsageError."""
    if b"-----BEGIN" in text:
        if b"PRIVATE KEY" in text:
            raise UsageError("holds a private key: give the public key")
        try:
            key = serialization.load_pem_public_key(text)
        except ValueError:
            key = None
        if not isinstance(key, Ed25519PublicKey):
            raise UsageError("is not a PEM Ed25519 public key")
        name = pem_name.encode()
        if not name_valid(name):
            raise UsageError("key name is not valid")
        return name, key.public_bytes(serialization.Encoding.Raw,
                                      serialization.PublicFormat.Raw)
    key = parse_vkey(text, TYPE_ED25519)
    if key is None:
        raise UsageError("is neither a verifier key nor a PEM Ed25519 public key")
    return key


def parse_witness_key(text):
    """(name, public key) of a witness's verifier key (type 0x04), or raise
    UsageError."""
    key = parse_vkey(text, TYPE_COSIGNATURE)
    if key is None:
        raise UsageError("is not a witness's verifier key (name+keyid+base64 of 04 "
                         "and the Ed25519 public key)")
    return key


# --- the export (document: Export) -----------------------------------------

def strict_json(data):
    if len(data) > EXPORT_MAXLEN:
        raise UsageError("larger than %d bytes" % EXPORT_MAXLEN)
    if data.startswith(b"\xef\xbb\xbf"):
        raise Malformed("byte order mark before the document")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Malformed("invalid UTF-8 at byte %d" % e.start)

    def pairs(items):
        seen = {}
        for k, v in items:
            if k in seen:
                raise Malformed("duplicate key %r in object" % k)
            seen[k] = v
        return seen

    def constant(name):
        raise Malformed("%s is not JSON" % name)

    try:
        doc = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise Malformed("line %d, column %d: %s" % (e.lineno, e.colno, e.msg))
    except RecursionError:
        raise Malformed("nested too deeply")

    def strings_ok(v):
        stack = [v]
        while stack:
            v = stack.pop()
            if isinstance(v, dict):
                stack.extend(v.keys())
                stack.extend(v.values())
            elif isinstance(v, list):
                stack.extend(v)
            elif isinstance(v, str):
                if "\x00" in v:
                    raise Malformed("U+0000 in a string")
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    raise Malformed("unpaired surrogate in a string")
    strings_ok(doc)
    return doc


def members(obj, path, names):
    if not isinstance(obj, dict):
        raise Malformed("%s: expected an object" % path)
    for k in obj:
        if k not in names:
            raise Malformed("%s: unknown member %r" % (path, k))
    for k in names:
        if k not in obj:
            raise Malformed("%s: missing member %r" % (path, k))
    return [obj[k] for k in names]


def text(v, path, nullable=False):
    if v is None and nullable:
        return None
    if not isinstance(v, str):
        raise Malformed("%s: expected a string" % path)
    return v.encode("utf-8")


def hash_field(v, path):
    if v is None:
        return None
    h = unb64(v, 32) if isinstance(v, str) else None
    if h is None or len(h) != 32:
        raise Malformed("%s: expected the base64 of 32 bytes, or null" % path)
    return h


class Frontier:
    """The frontier of a Merkle tree (RFC 6962) of `size` leaves: the roots
    of the perfect subtrees that size's binary digits give, largest
    (leftmost) first; what envault's tree_frontier holds."""

    def __init__(self, size=0, hashes=()):
        self.size, self.hashes = size, list(hashes)

    @staticmethod
    def get(raw):
        """u64be(size) || popcount(size) hashes of 32 bytes, size < 2^63;
        else None."""
        if len(raw) < 8:
            return None
        size = int.from_bytes(raw[:8], "big")
        n = bin(size).count("1")
        if size >= 2 ** 63 or len(raw) != 8 + 32 * n:
            return None
        return Frontier(size, [raw[8 + 32 * i:40 + 32 * i] for i in range(n)])

    def put(self):
        return self.size.to_bytes(8, "big") + b"".join(self.hashes)

    def append(self, row_hash):
        """Add a row: its leaf joins the subtrees it completes."""
        if self.size >= 2 ** 63:
            return False
        carry, level = hashlib.sha256(b"\x00" + row_hash).digest(), 0
        while (self.size >> level) & 1:
            carry = tree_node(self.hashes.pop(), carry)
            level += 1
        self.hashes.append(carry)
        self.size += 1
        return True

    def root(self):
        """The tree head (MTH) of the leaves so far."""
        if not self.hashes:
            return hashlib.sha256(b"").digest()
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = tree_node(h, r)
        return r


def read_export(data):
    doc = strict_json(data)
    names = ["format", "database", "chain", "tenant", "columns", "rows", "checkpoints"]
    if isinstance(doc, dict) and doc.get("format") == FORMAT_V2:
        names.insert(6, "tree_frontier")
    got = members(doc, "the export", names)
    fmt, database, chain, tenant, columns, rows = got[:6]
    cps = got[-1]
    if fmt not in (FORMAT_V1, FORMAT_V2):
        raise Malformed("format: expected %r or %r" % (FORMAT_V2, FORMAT_V1))
    ex = {"database": text(database, "database"), "chain": text(chain, "chain"),
          "tenant": text(tenant, "tenant", True)}
    # the frontier of the rows before the first exported: null, or base64;
    # one that does not read is no frontier (tree heads cannot be computed)
    frontier = got[6] if fmt == FORMAT_V2 else None
    if frontier is not None and not isinstance(frontier, str):
        raise Malformed("tree_frontier: expected a string or null")
    raw = unb64(frontier, 8 + 32 * MERKLE_MAX_LEVELS) if frontier is not None else None
    ex["frontier"] = Frontier.get(raw) if raw is not None else None
    if not ex["chain"]:
        raise Malformed("chain: empty")
    if not isinstance(columns, list) or len(columns) > 1600:
        raise Malformed("columns: expected an array of at most 1600 columns")
    ex["columns"] = []
    for i, c in enumerate(columns):
        if not isinstance(c, list) or len(c) != 2:
            raise Malformed("columns[%d]: expected [name, type]" % i)
        ex["columns"].append((text(c[0], "columns[%d]" % i), text(c[1], "columns[%d]" % i)))
    if not isinstance(rows, list):
        raise Malformed("rows: expected an array")
    ex["rows"] = []
    for i, r in enumerate(rows):
        seq, at, prev, h, values = members(r, "rows[%d]" % i,
                                           ["seq", "at", "prev", "hash", "values"])
        if type(seq) is not int or not 1 <= seq <= INT64_MAX:
            raise Malformed("rows[%d].seq: expected an integer from 1 to %d" % (i, INT64_MAX))
        if not isinstance(values, list) or len(values) != len(ex["columns"]):
            raise Malformed("rows[%d].values: expected one value per column" % i)
        ex["rows"].append({
            "seq": seq, "at": text(at, "rows[%d].at" % i),
            "prev": hash_field(prev, "rows[%d].prev" % i),
            "hash": hash_field(h, "rows[%d].hash" % i),
            "values": [text(v, "rows[%d].values[%d]" % (i, j), True)
                       for j, v in enumerate(values)],
            "index": i})
    ex["rows"].sort(key=lambda r: (r["seq"], r["index"]))
    if not isinstance(cps, list) or not all(isinstance(c, str) for c in cps):
        raise Malformed("checkpoints: expected an array of strings")
    ex["checkpoints"] = [c.encode("utf-8") for c in cps]
    return ex


def columns_input(ex):
    out = COLUMNS_LABEL + u32(len(ex["columns"]))
    for name, typ in ex["columns"]:
        out += str_(name) + str_(typ)
    return out


def row_hash_input(ex, row, columns=None):
    if columns is None:
        columns = hashlib.sha256(columns_input(ex)).digest()
    out = (ROW_LABEL + str_(ex["chain"]) + opt(ex["tenant"])
           + row["seq"].to_bytes(8, "big") + str_(row["at"]) + row["prev"]
           + columns)
    for value in row["values"]:
        out += opt(value)
    return out


def origin_of(ex):
    o = b"envault/" + pct(ex["database"]) + b"/" + pct(ex["chain"])
    return o + (b"/" + pct(ex["tenant"]) if ex["tenant"] is not None else b"")


# --- server logs ------------------------------------------------------------

def parse_log_line(line):
    """None, or a dict: origin, and seq / hash / note as far as they read."""
    at = line.find(LOG_MARKER)
    if at < 0:
        return None
    pos = at + len(LOG_MARKER)
    end = pos
    while end < len(line) and line[end] > 0x20 and line[end] != 0x7f:
        end += 1
    if end == pos:
        return None
    out = {"origin": line[pos:end], "seq": None, "parsed": False}
    rest = line[end:]
    m = re.match(rb" seq=([0-9]+)", rest)
    if not m or m.group(1)[:1] == b"0" or int(m.group(1)) > UINT64_MAX:
        return out
    out["seq"] = int(m.group(1))
    rest = rest[m.end():]
    if not rest.startswith(b" hash="):
        return out
    run = B64CHARS.match(rest, 6).group()
    h = unb64(run, 32)
    if h is None or len(h) != 32:
        return out
    rest = rest[6 + len(run):]
    if not rest.startswith(b" note="):
        return out
    note = unb64(B64CHARS.match(rest, 6).group(), NOTE_MAXLEN)
    if note is None:
        return out
    out.update(hash=h, note=note, parsed=True)
    return out


def read_log(path, origin):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError("could not read %s: %s" % (path, e.strerror))
    found = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for n, line in enumerate(lines, 1):
        if len(line) > LOG_MAXLINE:
            continue
        c = parse_log_line(line)
        if c is not None and c["origin"] == origin:
            c["where"] = "%s line %d" % (path, n)
            found.append(c)
    return found


# --- verification (document: Export, "The first problem") -------------------

def verify(ex, keys, logged=None, complete=False, witnesses=None, required=0):
    """The result: a dict with ok, and seq / reason / where, or the counts.
    witnesses: None, or the witness keys given ((name, public key), distinct);
    the newest tree-head checkpoint must then carry valid cosignatures by
    at least `required` of them."""
    database, chain, tenant = ex["database"], ex["chain"], ex["tenant"]
    cps = []
    for i, note in enumerate(ex["checkpoints"]):
        status, body, tree, cosigners = check_note(note, keys, database, chain, tenant,
                                                   witnesses or ())
        parsed = parse_note(note.encode() if isinstance(note, str) else note)
        cps.append({"seq": as_int64(body[1]) if body else 0, "hash": body[2] if body else None,
                    "status": status, "where": None, "order": i, "logged": False,
                    "tree": tree, "cosigners": cosigners,
                    "purge": checkpoint_purge(parsed[0]) if parsed else 0})
    for i, c in enumerate(logged or []):
        cp = {"seq": 0, "hash": None, "status": 1, "where": c["where"],
              "order": len(ex["checkpoints"]) + i, "logged": True, "tree": False,
              "cosigners": set(), "purge": 0}
        if not c["parsed"]:
            if c["seq"] is not None:
                cp.update(seq=as_int64(c["seq"]), status=2)
        else:
            cp.update(seq=as_int64(c["seq"]), hash=c["hash"])
            status, body, tree, _ = check_note(c["note"], keys, database, chain, tenant,
                                               witnesses or ())
            if status != 1 and body != (origin_of(ex), c["seq"], c["hash"]):
                status = 2
            parsed = parse_note(c["note"])
            cp.update(status=2 if status == 1 else status, tree=tree,
                      purge=checkpoint_purge(parsed[0]) if parsed else 0)
        cps.append(cp)
    cps.sort(key=lambda c: (c["seq"], c["order"]))

    res = {"ok": False, "seq": None, "reason": None, "where": None, "rows": 0,
           "first": 0, "last": 0, "anchored": False, "checkpoints": 0,
           "logged": 0, "have_log": logged is not None, "covered": 0,
           "witnesses": None if witnesses is None else len(witnesses),
           "required": required, "cosigned": 0, "cosigned_seq": None}

    def bad(seq, reason, where=None):
        if res["reason"] is None or seq < res["seq"]:
            res.update(seq=seq, reason=reason, where=where)

    def matches(c, row, root):
        """Does a verified checkpoint sign what the walk has at its row:
        the tree head there (tree), or the row's hash (a head row's)?"""
        if c["tree"]:
            return root is not None and c["hash"] == root
        return row["hash"] is not None and c["hash"] == row["hash"]

    # the Merkle tree of the rows walked so far: from row 1, or from the
    # export's frontier of the rows before its first; None when it cannot
    # be computed (no frontier or one of another size, a row missing or
    # without a hash)
    tree = None
    expect, prev, next_cp = 1, GENESIS, 0
    for i, row in enumerate(ex["rows"]):
        s = row["seq"]
        if i == 0:
            res["first"] = s
            expect = s
            prev = GENESIS if s == 1 else None
            if s == 1:
                tree = Frontier()
            elif ex["frontier"] is not None and ex["frontier"].size == s - 1:
                tree = Frontier(ex["frontier"].size, ex["frontier"].hashes)
        res["rows"] += 1
        if s < expect:
            bad(s, "extra row")
        elif s > expect:
            bad(expect, "missing row")
        if row["hash"] is None or row["prev"] is None:
            bad(s, "hash mismatch")
        elif hashlib.sha256(row_hash_input(ex, row)).digest() != row["hash"]:
            bad(s, "hash mismatch")
        elif prev is not None and s == expect and row["prev"] != prev:
            bad(s, "hash mismatch")
        # the row's leaf, unless it repeats a number (an extra row)
        if s >= expect:
            if (tree is None or row["hash"] is None or s != tree.size + 1
                    or not tree.append(row["hash"])):
                tree = None
        root = tree.root() if tree is not None else None
        if i == 0 and s != 1:
            res["anchored"] = any(c["seq"] == s and c["status"] == 0 and matches(c, row, root)
                                  for c in cps)
            if not res["anchored"] and complete:
                bad(1, "missing row")
            # the whole chain from an anchor: a purge that a checkpoint states
            elif complete and not any(c["status"] == 0 and c["purge"] == s for c in cps):
                bad(1, "purge not signed")
        while next_cp < len(cps) and cps[next_cp]["seq"] < s:
            next_cp += 1
        while next_cp < len(cps) and cps[next_cp]["seq"] == s:
            c = cps[next_cp]
            if c["status"] == 0 and not matches(c, row, root):
                bad(s, "checkpoint mismatch", c["where"])
            next_cp += 1
        prev = row["hash"]
        expect = min(max(s, expect - 1) + 1, INT64_MAX)
        res["last"] = max(res["last"], s)

    for c in cps:
        if c["status"] != 0:
            bad(c["seq"] if c["seq"] > 0 else 1, "bad signature", c["where"])
        else:
            if c["seq"] > res["last"]:
                bad(res["last"] + 1, "truncated after checkpoint", c["where"])
            elif ex["rows"] and c["seq"] >= res["first"]:
                res["covered"] = max(res["covered"], c["seq"])
            res["logged" if c["logged"] else "checkpoints"] += 1

    # witnesses: the distinct given witnesses that cosigned the newest
    # verified tree-head checkpoint of the export (all of its number)
    if witnesses is not None:
        heads = [c for c in cps if c["status"] == 0 and c["tree"] and not c["logged"]]
        if heads:
            newest = max(c["seq"] for c in heads)
            res["cosigned_seq"] = newest
            res["cosigned"] = len(set().union(*(c["cosigners"] for c in heads
                                                if c["seq"] == newest)))
    res["ok"] = res["reason"] is None and res["cosigned"] >= required
    return res


def printable(b, quoted):
    out = []
    for ch in b.decode("utf-8"):
        if ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append("\\u%04x" % ord(ch))
        elif ch == "\\":
            out.append("\\\\")
        elif quoted and ch == '"':
            out.append('\\"')
        else:
            out.append(ch)
    return "".join(out)


def chain_name(ex):
    """<chain> tenant "<tenant>": , or <chain> without tenant: """
    line = printable(ex["chain"], False)
    if ex["tenant"] is not None:
        return line + ' tenant "%s": ' % printable(ex["tenant"], True)
    return line + " without tenant: "


def result_line(ex, res):
    if res["reason"] is not None:
        line = "FAIL: seq %d: %s" % (res["seq"], res["reason"])
        if res["where"] is not None:
            line += " (checkpoint in %s)" % printable(res["where"].encode(), False)
        return line
    if not res["ok"]:
        # too few witnesses cosigned the newest tree head
        if res["cosigned_seq"] is None:
            return "FAIL: %sno tree-head checkpoint verified, 0 of %d witness cosignatures" % (
                chain_name(ex), res["required"])
        return "FAIL: %sthe newest checkpoint (seq %d) has %d of %d witness cosignatures" % (
            chain_name(ex), res["cosigned_seq"], res["cosigned"], res["required"])
    line = "OK: " + chain_name(ex)
    n = res["rows"]
    if n == 0:
        line += "no rows"
    else:
        start = ("from the genesis" if res["first"] == 1 else
                 "anchored by a checkpoint" if res["anchored"] else
                 "starting mid-chain without an anchor")
        if n == 1:
            line += "1 row (seq %d, %s)" % (res["first"], start)
        else:
            line += "%d rows (seq %d-%d, %s)" % (n, res["first"], res["last"], start)
    k = res["checkpoints"]
    line += ", %d %s verified" % (k, "checkpoint" if k == 1 else "checkpoints")
    if res["have_log"]:
        line += ", %d from the server log" % res["logged"]
    if n > 0:
        if res["covered"] == 0:
            line += "; no row covered by a checkpoint yet"
        elif res["covered"] < res["last"]:
            line += "; rows after seq %d not yet covered by a checkpoint" % res["covered"]
        else:
            line += "; every row covered by a checkpoint"
    if res["witnesses"]:
        k = res["cosigned"]
        line += ", cosigned by %d %s" % (k, "witness" if k == 1 else "witnesses")
    return line


def verify_bytes(data, keys, database, log_paths=None, complete=False, witnesses=None,
                 required=None):
    """The one line envault-verify prints for an export."""
    try:
        ex = read_export(data)
    except Malformed as e:
        return "FAIL: malformed export: %s" % e
    # the auditor's identity decides, never the file's
    if ex["database"] != database:
        return ('FAIL: malformed export: database: expected "%s" (--database), found another'
                % os.fsdecode(database))
    logged = None
    if log_paths is not None:
        logged = []
        for p in log_paths:
            logged += read_log(p, origin_of(ex))
    if witnesses is not None and required is None:
        required = len(witnesses)
    return result_line(ex, verify(ex, keys, logged, complete, witnesses, required or 0))


def read_key_file(path):
    try:
        with open(path, "rb") as f:
            data = f.read(KEYFILE_MAX + 1)
    except OSError as e:
        raise UsageError("could not read key file %s: %s" % (path, e.strerror))
    if len(data) > KEYFILE_MAX:
        raise UsageError("key file %s is too large for a key" % path)
    return data


def main_verify(argv):
    keys_files, logs, name, complete, export, database = [], [], "envault", False, None, None
    witness_files, required = [], None
    i = 0
    try:
        while i < len(argv):
            a = argv[i]
            opt_name, eq, value = a.partition("=")
            if opt_name in ("--key", "--name", "--checkpoints", "--database", "--witness",
                            "--witnesses"):
                if not eq:
                    if i + 1 >= len(argv):
                        raise UsageError("option %s needs a value" % a)
                    i += 1
                    value = argv[i]
                {"--key": keys_files, "--checkpoints": logs,
                 "--witness": witness_files}.get(opt_name, []).append(value)
                if opt_name == "--name":
                    name = value
                if opt_name == "--database":
                    if not value:
                        raise UsageError("--database needs a database identity")
                    database = value
                if opt_name == "--witnesses":
                    if not re.fullmatch(r"[0-9]{1,9}", value):
                        raise UsageError("--witnesses needs a number of witnesses")
                    required = int(value)
            elif a == "--complete":
                complete = True
            elif a.startswith("-") and a != "-":
                raise UsageError("unknown option %s" % a)
            elif export is None:
                export = a
            else:
                raise UsageError("more than one export file given")
            i += 1
        if not keys_files or database is None or export is None:
            raise UsageError("usage: check_chain.py --key KEYFILE [...] --database ID EXPORT.json")
        keys = []
        for k in keys_files:
            data = read_key_file(k)
            try:
                keys.append(parse_key(data, name))
            except UsageError as e:
                raise UsageError("key file %s %s" % (k, e))
        # witnesses: each counted once, however often given
        witnesses = []
        for w in witness_files:
            data = read_key_file(w)
            try:
                key = parse_witness_key(data)
            except UsageError as e:
                raise UsageError("witness key file %s %s" % (w, e))
            if key not in witnesses:
                witnesses.append(key)
        if required is not None and required > len(witnesses):
            raise UsageError("--witnesses %d: only %d witness key(s) given"
                             % (required, len(witnesses)))
        try:
            if export == "-":
                data = sys.stdin.buffer.read(EXPORT_MAXLEN + 1)
            else:
                with open(export, "rb") as f:
                    data = f.read(EXPORT_MAXLEN + 1)
        except OSError as e:
            raise UsageError("could not read %s: %s" % (export, e.strerror))
        line = verify_bytes(data, keys, os.fsencode(database), logs if logs else None, complete,
                            witnesses or None, required)
    except UsageError as e:
        print("check_chain.py: %s" % e, file=sys.stderr)
        return 2
    print(line)
    return 0 if line.startswith("OK: ") else 1


# The database identity of the worked example (docs/audit-chain.md): a
# database upgraded from 0.2.0 keeps its name as its identity
VECTOR_DATABASE = b"appdb"


def regress_seed():
    conf = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "regress.conf")
    with open(conf) as f:
        m = re.search(r"^envault\.signing_key\s*=\s*'([0-9a-f]{64})'", f.read(), re.M)
    return bytes.fromhex(m.group(1))


# The test witness of the worked example: its seed is the SHA-256 of this
# label (public, for tests only)
WITNESS_SEED_LABEL = b"envault test witness"
WITNESS_NAME = b"witness.example/w1"


def raw_public(sk):
    return sk.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)


def vkey(name, pub, typ=TYPE_ED25519):
    """A verifier key: <name>+<key ID>+base64(type || public key)."""
    return "%s+%s+%s" % (name.decode(), key_id(name, pub, typ).hex(), b64(bytes([typ]) + pub))


def test_witness():
    """(name, private key) of the test witness."""
    return WITNESS_NAME, Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(WITNESS_SEED_LABEL).digest())


def generate(export_path, since_path=None):
    """Print the chain-vector blocks for an export signed with the regress key
    (and cosigned, if at all, by the test witness), and for a second export
    of the same chain that starts mid-chain."""
    with open(export_path, "rb") as f:
        data = f.read()
    ex = read_export(data)
    seed = regress_seed()
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    pub = raw_public(sk)
    name = b"envault"
    keys = [(name, pub)]
    wname, wsk = test_witness()
    wpub = raw_public(wsk)
    origin = origin_of(ex)

    def pad(label, col=14):
        return label.ljust(col) if len(label) < col else label + " "

    def wrap(label, b, comment=None, width=32):
        chunks = [b[i:i + width].hex() for i in range(0, len(b), width)] or [""]
        first = pad(label) + chunks[0]
        if comment is not None:
            first += "  # " + comment
        return "\n".join([first] + [pad("") + c for c in chunks[1:]])

    def block(kind, body):
        print("```chain-vector %s\n%s\n```\n" % (kind, body.rstrip("\n")))

    block("key", "\n".join([
        wrap("seed", seed), wrap("public-key", pub),
        wrap("key-id-input", name + b"\n\x01" + pub, "name, 0a, 01, public key", 48),
        wrap("key-id", key_id(name, pub)),
        pad("verifier-key") + "%s" % (vkey(name, pub))]))
    block("export", data.decode("utf-8"))
    row = ex["rows"][0]

    def show(b):
        return b.decode("utf-8") if b is not None else "NULL"

    out = [pad("label") + "%s  # %s" % (COLUMNS_LABEL.hex(), COLUMNS_LABEL.decode()),
           pad("ncols") + "%s  # u32(%d)" % (u32(len(ex["columns"])).hex(), len(ex["columns"]))]
    for n, (cname, ctype) in enumerate(ex["columns"], 1):
        parts = [u32(len(cname)).hex(), cname.hex(), u32(len(ctype)).hex(), ctype.hex()]
        out.append(pad("column-%d" % n) + "%s  # %s %s" % (" ".join(parts), show(cname),
                                          show(ctype)))
    columns = hashlib.sha256(columns_input(ex)).digest()
    out.append(pad("sha256") + "%s" % (columns.hex()))
    block("columns", "\n".join(out))

    t = ex["tenant"]
    out = [pad("label") + "%s  # %s" % (ROW_LABEL.hex(), ROW_LABEL.decode()),
           pad("chain") + "%s %s  # str(%s)" % (u32(len(ex["chain"])).hex(), ex["chain"].hex(),
                                       show(ex["chain"])),
           pad("tenant") + "%s  # opt(%s)" % (" ".join(x.hex() for x in
                                                      ([b"\x01", u32(len(t)), t] if t is not None
                                                       else [b"\x00"])), show(t)),
           pad("seq") + "%s  # u64(%d)" % (row["seq"].to_bytes(8, "big").hex(), row["seq"]),
           pad("at") + "%s %s  # str(%s)" % (u32(len(row["at"])).hex(), row["at"].hex(),
                                       show(row["at"])),
           pad("prev") + "%s  # the genesis value" % (row["prev"].hex()),
           pad("columns") + "%s  # the columns hash" % (columns.hex())]
    for n, ((cname, _), v) in enumerate(zip(ex["columns"], row["values"]), 1):
        parts = ["00"] if v is None else ["01", u32(len(v)).hex(), v.hex()]
        out.append(pad("value-%d" % n) + "%s  # opt(%s) for %s" % (" ".join(parts), show(v),
                                                   show(cname)))
    out.append(pad("sha256") + "%s" % (hashlib.sha256(row_hash_input(ex, row)).hexdigest()))
    out.append(pad("base64") + "%s" % (b64(row["hash"])))
    block("row-hash", "\n".join(out))

    # the Merkle tree of the rows (of an export from row 1)
    leaves = [hashlib.sha256(b"\x00" + r["hash"]).digest() for r in ex["rows"]]
    n = len(leaves)
    out = []
    for i, leaf in enumerate(leaves, 1):
        out.append(pad("leaf-%d" % i, 15) + leaf.hex())
    for i in range(1, n + 1):
        out.append(pad("head-%d" % i, 15) + mth(leaves[:i]).hex())
    if n >= 2:
        proof = inclusion_path(1, leaves)
        out.append(pad("inclusion-2-%d" % n, 15) + proof[0].hex())
        out += [pad("", 15) + h.hex() for h in proof[1:]]
    if n >= 3:
        proof = consistency_proof(3, leaves)
        out.append(pad("consistency-3-%d" % n, 15) + proof[0].hex())
        out += [pad("", 15) + h.hex() for h in proof[1:]]
    block("tree", "\n".join(out))

    # the checkpoints: a head row's hash (envault 0.2.0), a tree head, and
    # the test witness's cosignature of a tree head
    cosigned = False
    for note in ex["checkpoints"]:
        text, sigs = parse_note(note)
        kind = checkpoint_kind(note, keys, parse_checkpoint(text)[0])
        under = origin if kind == "tree" else name
        line = [s for s in sigs if s[0] == under and s[1] == key_id(under, pub)][0]
        prefix = "tree-" if kind == "tree" else ""
        block(prefix + "checkpoint", note.decode("utf-8"))
        out = [wrap("signed-text", text)]
        if kind == "tree":
            out.append(wrap("key-id-input", under + b"\n\x01" + pub,
                            "origin, 0a, 01, public key", 48))
        out += [wrap("key-id", line[1]), wrap("signature", line[2])]
        block(prefix + "signature", "\n".join(out))
        wkid = key_id(wname, wpub, TYPE_COSIGNATURE)
        for s in sigs:
            if kind != "tree" or s[0] != wname or s[1] != wkid or s[3] is None:
                continue
            cosigned = True
            ts, sig = s[3]
            block("witness-key", "\n".join([
                wrap("seed", hashlib.sha256(WITNESS_SEED_LABEL).digest(),
                     'SHA-256("%s")' % WITNESS_SEED_LABEL.decode()),
                wrap("public-key", wpub),
                wrap("key-id-input", wname + b"\n\x04" + wpub, "name, 0a, 04, public key", 48),
                wrap("key-id", wkid),
                pad("verifier-key") + "%s" % (vkey(wname, wpub, TYPE_COSIGNATURE))]))
            block("cosignature", "\n".join([
                wrap("message", cosignature_message(text, ts)),
                wrap("key-id", wkid),
                wrap("timestamp", ts.to_bytes(8, "big"), "u64(%d)" % ts),
                wrap("signature", sig),
                pad("line") + "%s %s %s" % (EM_DASH.decode(), wname.decode(),
                                    b64(wkid + ts.to_bytes(8, "big") + sig))]))
    witnesses = [(wname, wpub)] if cosigned else None
    block("result", result_line(ex, verify(ex, keys, witnesses=witnesses,
                                           required=1 if cosigned else 0)))
    if since_path is None:
        return
    with open(since_path, "rb") as f:
        sdata = f.read()
    sx = read_export(sdata)
    fr = sx["frontier"]
    if fr is not None:
        out = [wrap("size", fr.size.to_bytes(8, "big"), "u64(%d)" % fr.size)]
        for i, h in enumerate(fr.hashes, 1):
            out.append(wrap("hash-%d" % i, h))
        out.append(pad("base64") + "%s" % (b64(fr.put())))
        block("frontier", "\n".join(out))
    block("export-since", sdata.decode("utf-8"))
    block("result-since", result_line(sx, verify(sx, keys, witnesses=witnesses,
                                                 required=1 if cosigned else 0)))


# --- the test vectors of the document ---------------------------------------

BLOCK = re.compile(r"^```chain-vector ([a-z-]+)\n(.*?)^```$", re.M | re.S)


def fields(body):
    """'label value  # comment' lines; indented lines continue the value before."""
    out, order, last = {}, [], None
    for line in body.splitlines():
        line = line.split(" #")[0].rstrip()
        if not line.strip():
            continue
        if line[0] in " \t" and last is not None:
            out[last] += " " + line.strip()
            continue
        label, _, value = line.partition(" ")
        if label in out:
            raise ValueError("label %s twice" % label)
        out[label] = value.strip()
        order.append(label)
        last = label
    return out, order


def unhex(s):
    return bytes.fromhex("".join(s.split()))


# --- Merkle trees (RFC 6962 section 2.1, RFC 9162 sections 2.1.3 and 2.1.4) ---

def tree_node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    """The Merkle tree head of a list of leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return tree_node(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(index, size, leaf, proof, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = tree_node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = tree_node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof):
    if first < 1 or first > second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = ([first_root] if first & (first - 1) == 0 else []) + list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = tree_node(c, fr), tree_node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = tree_node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


def inclusion_path(index, leaves):
    """RFC 6962 PATH(m, D[n]): the audit path of a leaf, leaf end first."""
    if len(leaves) <= 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if index < k:
        return inclusion_path(index, leaves[:k]) + [mth(leaves[k:])]
    return inclusion_path(index - k, leaves[k:]) + [mth(leaves[:k])]


def consistency_proof(first, leaves, whole=True):
    """RFC 6962 SUBPROOF(m, D[n], true): from the tree of `first` leaves."""
    if first == len(leaves):
        return [] if whole else [mth(leaves)]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if first <= k:
        return consistency_proof(first, leaves[:k], whole) + [mth(leaves[k:])]
    return consistency_proof(first - k, leaves[k:], False) + [mth(leaves[:k])]


def check_document(path, verifier=None):
    failed = 0

    def report(ok, what):
        nonlocal failed
        failed += not ok
        print("%-4s %s" % ("ok" if ok else "FAIL", what))
        return ok

    try:
        with open(path, encoding="utf-8") as f:
            blocks = {}
            for m in BLOCK.finditer(f.read()):
                if m.group(1) in blocks:
                    raise ValueError("two %s blocks" % m.group(1))
                blocks[m.group(1)] = m.group(2)
    except (OSError, ValueError) as e:
        report(False, "read %s: %s" % (path, e))
        return 1
    kinds = ["key", "export", "columns", "row-hash", "checkpoint", "signature", "tree",
             "tree-checkpoint", "tree-signature", "witness-key", "cosignature", "result",
             "frontier", "export-since", "result-since"]
    if not report(all(k in blocks for k in kinds),
                  "chain-vector blocks %s present" % ", ".join(kinds)):
        return 1

    # the key: seed, public key, key ID, verifier key
    key, _ = fields(blocks["key"])
    seed = unhex(key["seed"])
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    pub = raw_public(sk)
    conf = os.path.join(os.path.dirname(os.path.abspath(path)), "..", "test", "regress.conf")
    if os.path.exists(conf):
        with open(conf) as f:
            m = re.search(r"^envault\.signing_key\s*=\s*'([0-9a-f]{64})'", f.read(), re.M)
        report(m is not None and m.group(1) == seed.hex(),
               "key: seed is envault.signing_key of test/regress.conf")
    report(unhex(key["public-key"]) == pub, "key: public key from the seed")
    name = key["verifier-key"].split("+")[0].encode()
    report(unhex(key["key-id-input"]) == name + b"\n\x01" + pub,
           "key: key ID input is name || 0a || 01 || public key")
    report(unhex(key["key-id"]) == key_id(name, pub), "key: key ID")
    report(key["verifier-key"] == vkey(name, pub), "key: verifier key")
    try:
        report(parse_key(key["verifier-key"].encode(), "envault") == (name, pub),
               "key: verifier key reads back")
    except UsageError:
        report(False, "key: verifier key reads back")
    keys = [(name, pub)]

    # the witness key: seed, public key, key ID (type 04), verifier key
    wkey, _ = fields(blocks["witness-key"])
    wseed = unhex(wkey["seed"])
    wsk = Ed25519PrivateKey.from_private_bytes(wseed)
    wpub = raw_public(wsk)
    wname = wkey["verifier-key"].split("+")[0].encode()
    report(wseed == hashlib.sha256(WITNESS_SEED_LABEL).digest() and wname == WITNESS_NAME,
           'witness-key: seed is SHA-256("%s"), name %s' % (WITNESS_SEED_LABEL.decode(),
                                                          WITNESS_NAME.decode()))
    report(unhex(wkey["public-key"]) == wpub, "witness-key: public key from the seed")
    report(unhex(wkey["key-id-input"]) == wname + b"\n\x04" + wpub,
           "witness-key: key ID input is name || 0a || 04 || public key")
    report(unhex(wkey["key-id"]) == key_id(wname, wpub, TYPE_COSIGNATURE), "witness-key: key ID")
    report(wkey["verifier-key"] == vkey(wname, wpub, TYPE_COSIGNATURE),
           "witness-key: verifier key (type 04)")
    try:
        report(parse_witness_key(wkey["verifier-key"].encode()) == (wname, wpub),
               "witness-key: verifier key reads back as a witness's")
    except UsageError:
        report(False, "witness-key: verifier key reads back as a witness's")
    for what, fn, k in [("the witness key is not a signing key", parse_key,
                         wkey["verifier-key"]),
                        ("the signing key is not a witness key", parse_witness_key,
                         key["verifier-key"])]:
        try:
            fn(k.encode(), *(["envault"] if fn is parse_key else []))
            report(False, "keys: " + what)
        except UsageError:
            report(True, "keys: " + what)
    witness = [(wname, wpub)]

    # the export
    data = blocks["export"].encode("utf-8")
    try:
        ex = read_export(data)
    except Malformed as e:
        report(False, "export: reads (%s)" % e)
        return 1
    report(True, "export: reads, %d rows, %d checkpoint(s)" % (len(ex["rows"]),
                                                               len(ex["checkpoints"])))
    base = json.loads(blocks["export"])
    report(base["format"] == FORMAT_V2 and "tree_frontier" in base and
           base["tree_frontier"] is None and ex["rows"][0]["seq"] == 1,
           "export: format v2, from row 1, tree_frontier null")
    report(3 <= len(ex["rows"]) <= 5 and len(ex["checkpoints"]) == 2 and
           any(v is None for r in ex["rows"] for v in r["values"]) and
           any(max(v or b"\0") >= 0x80 for r in ex["rows"] for v in r["values"]),
           "export: 3 to 5 rows with a NULL and a non-ASCII value, two checkpoints")

    # the columns hash, part by part
    parts, order = fields(blocks["columns"])
    given = b"".join(unhex(parts[k]) for k in order if k != "sha256")
    want = columns_input(ex)
    report(given == want, "columns: input of the columns hash (%d bytes)" % len(want))
    report(unhex(parts["sha256"]) == hashlib.sha256(want).digest(),
           "columns: its SHA-256")

    # the first row's hash input, part by part
    parts, order = fields(blocks["row-hash"])
    row = ex["rows"][0]
    given = b"".join(unhex(parts[k]) for k in order if k not in ("sha256", "base64"))
    want = row_hash_input(ex, row)
    report(given == want, "row-hash: input of row 1 (%d bytes)" % len(want))
    report(unhex(parts["sha256"]) == hashlib.sha256(want).digest() == row["hash"],
           "row-hash: SHA-256 of the input is row 1's hash")
    report(parts["base64"] == b64(row["hash"]), "row-hash: its base64")
    for i, r in enumerate(ex["rows"]):
        report(hashlib.sha256(row_hash_input(ex, r)).digest() == r["hash"] and
               r["prev"] == (ex["rows"][i - 1]["hash"] if i else GENESIS),
               "row %d: hash and link recomputed" % r["seq"])

    # the Merkle tree of the rows: leaves, heads, and RFC 9162's proofs
    tree, _ = fields(blocks["tree"])
    leaves = [hashlib.sha256(b"\x00" + r["hash"]).digest() for r in ex["rows"]]
    for i, leaf in enumerate(leaves):
        report(unhex(tree["leaf-%d" % (i + 1)]) == leaf, "tree: leaf %d" % (i + 1))
        report(unhex(tree["head-%d" % (i + 1)]) == mth(leaves[:i + 1]),
               "tree: head of %d rows (RFC 6962 MTH)" % (i + 1))
    n = len(leaves)
    incl = [unhex(h) for h in tree["inclusion-2-%d" % n].split()]
    report(incl == inclusion_path(1, leaves), "tree: audit path of row 2 (RFC 6962 PATH)")
    report(verify_inclusion(1, n, leaves[1], incl, mth(leaves)),
           "tree: audit path of row 2 verifies (RFC 9162, 2.1.3.2)")
    report(not verify_inclusion(1, n, leaves[2], incl, mth(leaves)),
           "tree: ... and not for another row")
    cons = [unhex(h) for h in tree["consistency-3-%d" % n].split()]
    report(cons == consistency_proof(3, leaves),
           "tree: consistency proof 3 to %d (RFC 6962 PROOF)" % n)
    report(verify_consistency(3, n, mth(leaves[:3]), mth(leaves), cons),
           "tree: consistency proof 3 to %d verifies (RFC 9162, 2.1.4.2)" % n)
    report(not verify_consistency(3, n, mth(leaves[:2] + leaves[3:4]), mth(leaves), cons),
           "tree: ... and not from another old head")
    f = Frontier()
    for i, r in enumerate(ex["rows"]):
        f.append(r["hash"])
        report(f.root() == mth(leaves[:i + 1]) and len(f.hashes) == bin(i + 1).count("1"),
               "tree: frontier of %d rows, %d hash(es), gives head-%d" % (i + 1, len(f.hashes),
                                                                         i + 1))

    # the checkpoint of row 3 (envault 0.2.0: the head row's hash, under the
    # key's name) and its signature
    origin = origin_of(ex)
    note = blocks["checkpoint"].encode("utf-8")
    report(note == ex["checkpoints"][0], "checkpoint: the export's first checkpoint")
    parsed = parse_note(note)
    body = parse_checkpoint(parsed[0]) if parsed else None
    report(body is not None, "checkpoint: reads as a signed note and a checkpoint")
    if body is None:
        return 1
    report(body[0] == origin and body[2] == ex["rows"][body[1] - 1]["hash"],
           "checkpoint: origin, and the hash of row %d" % body[1])
    report(checkpoint_kind(note, keys, origin) == "row",
           "checkpoint: signed under the key's name: a head row's hash")
    sig, _ = fields(blocks["signature"])
    report(unhex(sig["signed-text"]) == parsed[0], "signature: signed text")
    report(unhex(sig["key-id"]) == parsed[1][0][1] == key_id(name, pub),
           "signature: key ID of the signature line")
    report(unhex(sig["signature"]) == parsed[1][0][2] == sk.sign(parsed[0]),
           "signature: Ed25519 signature recomputed from the seed")
    report(verify_note(note, name, pub) == "verified", "signature: verifies")

    # the tree-head checkpoint of the 4 rows (under the origin as key
    # name), its signature, and the witness's cosignature
    tnote = blocks["tree-checkpoint"].encode("utf-8")
    report(tnote == ex["checkpoints"][1], "tree-checkpoint: the export's second checkpoint")
    tparsed = parse_note(tnote)
    tbody = parse_checkpoint(tparsed[0]) if tparsed else None
    report(tbody is not None, "tree-checkpoint: reads as a signed note and a checkpoint")
    if tbody is None:
        return 1
    report(tbody[0] == origin and tbody[1] == n and tbody[2] == mth(leaves),
           "tree-checkpoint: origin, and the tree head of %d rows" % tbody[1])
    report(tparsed[0].split(b"\n")[3] == b"time 2026-12-01T10:27:31.684012Z",
           "tree-checkpoint: time line")
    report(checkpoint_kind(tnote, keys, origin) == "tree",
           "tree-checkpoint: signed under the origin: a tree head")
    tsig, _ = fields(blocks["tree-signature"])
    tline = tparsed[1][0]
    report(unhex(tsig["signed-text"]) == tparsed[0], "tree-signature: signed text")
    report(unhex(tsig["key-id-input"]) == origin + b"\n\x01" + pub,
           "tree-signature: key ID input is origin || 0a || 01 || public key")
    report(tline[0] == origin and unhex(tsig["key-id"]) == tline[1] == key_id(origin, pub),
           "tree-signature: key name and key ID of the signature line")
    report(unhex(tsig["signature"]) == tline[2] == sk.sign(tparsed[0]),
           "tree-signature: Ed25519 signature recomputed from the seed")
    report(verify_note(tnote, origin, pub) == "verified" and
           verify_note(tnote, name, pub) == "unknown key",
           "tree-signature: verifies under the origin, no line under the key's name")
    cos, _ = fields(blocks["cosignature"])
    cline = tparsed[1][1]
    ts = int.from_bytes(unhex(cos["timestamp"]), "big")
    report(len(tparsed[1]) == 2 and cline[0] == wname and cline[3] is not None and
           cline[3][0] == ts, "cosignature: the second line of the tree-head checkpoint")
    report(unhex(cos["message"]) == cosignature_message(tparsed[0], ts) and
           unhex(cos["message"]).startswith(b"cosignature/v1\ntime %d\n" % ts),
           "cosignature: message is cosignature/v1, time %d, the checkpoint's text" % ts)
    report(unhex(cos["key-id"]) == cline[1] == key_id(wname, wpub, TYPE_COSIGNATURE),
           "cosignature: key ID of the line (type 04)")
    report(unhex(cos["signature"]) == cline[3][1] == wsk.sign(unhex(cos["message"])),
           "cosignature: Ed25519 signature recomputed from the witness's seed")
    report(cos["line"].encode() + b"\n" == tnote.split(b"\n\n")[1].split(b"\n", 1)[1] and
           cos["line"] == "%s %s %s" % (EM_DASH.decode(), wname.decode(),
                                         b64(cline[1] + ts.to_bytes(8, "big") + cline[3][1])),
           "cosignature: the line is name, base64 of key ID || u64 time || signature")
    report(verify_cosignature(tnote, wname, wpub) == "verified", "cosignature: verifies")

    # the mid-chain export and its frontier
    sdata = blocks["export-since"].encode("utf-8")
    try:
        sx = read_export(sdata)
    except Malformed as e:
        report(False, "export-since: reads (%s)" % e)
        return 1
    since = json.loads(blocks["export-since"])
    first = sx["rows"][0]["seq"] if sx["rows"] else 0
    report(since["format"] == FORMAT_V2 and first > 1 and
           since["rows"] == base["rows"][first - 1:] and
           sx["checkpoints"] == [c for c in ex["checkpoints"]
                                 if parse_checkpoint(parse_note(c)[0])[1] >= first],
           "export-since: rows %d-%d of the export, and its checkpoints from row %d"
           % (first, sx["rows"][-1]["seq"], first))
    fr, _ = fields(blocks["frontier"])
    fsize = int.from_bytes(unhex(fr["size"]), "big")
    fhashes = [unhex(fr[k]) for k in sorted(k for k in fr if k.startswith("hash-"))]
    want = Frontier()
    for r in ex["rows"][:first - 1]:
        want.append(r["hash"])
    report(fsize == first - 1 and fhashes == want.hashes and len(fhashes) == bin(fsize).count("1"),
           "frontier: size %d, the roots of its perfect subtrees (%d)" % (fsize, len(fhashes)))
    report(len(fhashes) == 1 and
           fhashes[0] == mth(leaves[:fsize]) == unhex(tree["head-%d" % fsize]),
           "frontier: its one hash is head-%d" % fsize)
    report(fr["base64"] == b64(unhex(fr["size"]) + b"".join(fhashes)) == since["tree_frontier"],
           "frontier: base64 of u64(size) || hashes is the export's tree_frontier")
    report(sx["frontier"] is not None and sx["frontier"].put() == want.put(),
           "frontier: reads back")

    # the exports verify, and tampered copies do not
    result = blocks["result"].strip()
    result_since = blocks["result-since"].strip()
    result_plain = result[:result.rindex(", cosigned by ")]
    other = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"another key").digest())
    w2name = b"witness.example/w2"
    w2sk = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"envault test witness 2").digest())
    w2pub = raw_public(w2sk)
    W1 = vkey(wname, wpub, TYPE_COSIGNATURE)
    W2 = vkey(w2name, w2pub, TYPE_COSIGNATURE)
    cases = [("the vector", data, result, {"witnesses": [W1]}),
             ("the vector, without --witness", data, result_plain, {}),
             ("the mid-chain vector", sdata, result_since, {"witnesses": [W1]})]

    def tampered(what, edit, expected, doc=None, **opts):
        d = copy.deepcopy(base if doc is None else doc)
        edit(d)
        cases.append((what, json.dumps(d, ensure_ascii=False).encode("utf-8"), expected, opts))

    def rehash(doc, frm):
        """Recompute the links and hashes of the rows from index frm on."""
        e = read_export(json.dumps(doc).encode())
        for i in range(frm, len(doc["rows"])):
            r = doc["rows"][i]
            if i > 0:
                r["prev"] = doc["rows"][i - 1]["hash"]
            e["rows"][i]["prev"] = unb64(r["prev"])
            r["hash"] = b64(hashlib.sha256(row_hash_input(e, e["rows"][i])).digest())

    def set_value(doc, i, j, v):
        doc["rows"][i]["values"][j] = v

    def rewrite(doc, i):
        """Change row i and recompute every hash from it on: a consistent chain."""
        set_value(doc, i, 2, "forged")
        rehash(doc, i)

    def forge(doc, i):
        """Change row i and recompute its hash alone; the rows after it stay."""
        later = copy.deepcopy(doc["rows"][i + 1:])
        rewrite(doc, i)
        doc["rows"][i + 1:] = later

    def swap(doc):
        a, b = doc["rows"][1], doc["rows"][2]
        a["seq"], b["seq"] = b["seq"], a["seq"]

    def note_text(doc, idx):
        return parse_note(doc["checkpoints"][idx].encode())[0]

    def ed_line(t, under, key):
        return (EM_DASH + b" " + under + b" " +
                b64(key_id(under, raw_public(key)) + key.sign(t)).encode() + b"\n")

    def cosig_line(t, wn, wk, when=None):
        when = ts if when is None else when
        return (EM_DASH + b" " + wn + b" " +
                b64(key_id(wn, raw_public(wk), TYPE_COSIGNATURE) + when.to_bytes(8, "big") +
                    wk.sign(cosignature_message(t, when))).encode() + b"\n")

    def sign(doc, signer, text_edit=lambda t: t, idx=0, under=None):
        """Replace a checkpoint by its (edited) text signed by signer, under
        the key's name (the row-3 checkpoint) or the origin (the tree head)."""
        t = text_edit(note_text(doc, idx))
        if under is None:
            under = name if idx == 0 else parse_checkpoint(t)[0]
        doc["checkpoints"][idx] = (t + b"\n" + ed_line(t, under, signer)).decode()

    def damage(doc, idx=0, back=20):
        """One character of the last signature line's base64 changed."""
        n_ = doc["checkpoints"][idx]
        i = len(n_) - back
        doc["checkpoints"][idx] = n_[:i] + ("B" if n_[i] == "A" else "A") + n_[i + 1:]

    def edit_checkpoint(doc, old, new, idx=0):
        doc["checkpoints"][idx] = doc["checkpoints"][idx].replace(old, new, 1)

    def relabel(doc, idx, frm, to):
        """Move a signature line to another key name (with that name's key
        ID): the signature, which does not cover the name, stays."""
        text_, sigs = parse_note(doc["checkpoints"][idx].encode())
        lines = []
        for sname, skid, s, c in sigs:
            if sname == frm:
                sname, skid = to, key_id(to, pub)
            raw = skid + (s if s is not None else c[0].to_bytes(8, "big") + c[1])
            lines.append(EM_DASH + b" " + sname + b" " + b64(raw).encode() + b"\n")
        doc["checkpoints"][idx] = (text_ + b"\n" + b"".join(lines)).decode()

    def add_lines(doc, idx, lines):
        doc["checkpoints"][idx] += b"".join(lines).decode()

    def drop_cosignature(doc, idx=1):
        n_ = doc["checkpoints"][idx]
        doc["checkpoints"][idx] = n_[:n_.rindex("\u2014 " + wname.decode())]

    last = ex["rows"][-1]["seq"]
    tampered("a value changed", lambda d: set_value(d, 1, 2, "paiement recu"),
             "FAIL: seq 2: hash mismatch")
    tampered("a NULL given a value", lambda d: set_value(d, 0, 3, "0.00"),
             "FAIL: seq 1: hash mismatch")
    tampered("a middle row deleted", lambda d: d["rows"].pop(2), "FAIL: seq 3: missing row")
    tampered("the newest rows deleted behind the checkpoints",
             lambda d: d["rows"].__delitem__(slice(2, None)),
             "FAIL: seq 3: truncated after checkpoint")
    tampered("the newest row deleted behind the tree head",
             lambda d: d["rows"].pop(), "FAIL: seq 4: truncated after checkpoint")
    tampered("two rows' seq swapped", swap, "FAIL: seq 2: hash mismatch")
    tampered("a row repeated", lambda d: d["rows"].insert(2, copy.deepcopy(d["rows"][1])),
             "FAIL: seq 2: extra row")
    tampered("a row forged with a recomputed hash", lambda d: forge(d, 1),
             "FAIL: seq 3: hash mismatch")
    tampered("the chain rewritten from row 2, every later hash recomputed",
             lambda d: rewrite(d, 1), "FAIL: seq 3: checkpoint mismatch")
    tampered("the last row rewritten, its hash recomputed (the tree head covers it)",
             lambda d: rewrite(d, len(d["rows"]) - 1), "FAIL: seq 4: checkpoint mismatch")
    tampered("without the tree head, the last row rewritten (not yet covered: undetectable)",
             lambda d: (d["checkpoints"].pop(1), rewrite(d, len(d["rows"]) - 1)),
             'OK: public.orders_audit tenant "acme": 4 rows (seq 1-4, from the genesis), '
             '1 checkpoint verified; rows after seq 3 not yet covered by a checkpoint')
    tampered("the checkpoint's signature damaged", damage, "FAIL: seq 3: bad signature")
    tampered("the checkpoint's sequence number changed, not re-signed",
             lambda d: edit_checkpoint(d, "\n3\n", "\n2\n"), "FAIL: seq 2: bad signature")
    tampered("the checkpoint re-signed by another key", lambda d: sign(d, other),
             "FAIL: seq 3: bad signature")
    tampered("the checkpoint re-signed for another tenant",
             lambda d: sign(d, sk, lambda t: t.replace(b"/acme\n", b"/globex\n", 1)),
             "FAIL: seq 3: bad signature")
    tampered("the export claims another tenant", lambda d: d.__setitem__("tenant", "globex"),
             "FAIL: seq 1: hash mismatch")
    tampered("the export relabelled as another database's",
             lambda d: d.__setitem__("database", "evil"), "FAIL: malformed export")
    tampered("the checkpoint re-signed for another database (its origin)",
             lambda d: sign(d, sk, lambda t: t.replace(b"envault/appdb/", b"envault/evil/", 1)),
             "FAIL: seq 3: bad signature")
    tampered("the first row left out: the tree head cannot be recomputed",
             lambda d: d["rows"].pop(0), "FAIL: seq 4: checkpoint mismatch")
    tampered("the first row left out, with the frontier of row 1",
             lambda d: (d["rows"].pop(0),
                        d.__setitem__("tree_frontier", b64(u32(0) + u32(1) + leaves[0]))),
             'OK: public.orders_audit tenant "acme": %d rows (seq 2-%d, starting mid-chain '
             'without an anchor), 2 checkpoints verified; every row covered by a checkpoint'
             % (len(ex["rows"]) - 1, last))
    tampered("the first row left out, with --complete", lambda d: d["rows"].pop(0),
             "FAIL: seq 1: missing row", complete=True)
    tampered("a row hash that is not base64", lambda d: d["rows"][0].__setitem__("hash", "x"),
             "FAIL: malformed export")
    tampered("an unknown member", lambda d: d.__setitem__("extra", 1), "FAIL: malformed export")

    # tree heads (under the origin) and head-row hashes (under the key's
    # name): neither can pass for the other
    head3 = mth(leaves[:3])
    tampered("the tree head re-signed with another root (head-3)",
             lambda d: sign(d, sk, lambda t: t.replace(b64(mth(leaves)).encode(),
                                                       b64(head3).encode()), idx=1),
             "FAIL: seq 4: checkpoint mismatch")
    tampered("the tree head's root changed, not re-signed",
             lambda d: edit_checkpoint(d, b64(mth(leaves)), b64(head3), idx=1),
             "FAIL: seq 4: bad signature")
    tampered("the tree head re-signed by another key", lambda d: sign(d, other, idx=1),
             "FAIL: seq 4: bad signature")
    tampered("the tree head re-signed for another tenant (under its origin)",
             lambda d: sign(d, sk, lambda t: t.replace(b"/acme\n", b"/globex\n", 1), idx=1),
             "FAIL: seq 4: bad signature")
    tampered("the tree head re-labelled: its signature line under the key's name",
             lambda d: relabel(d, 1, origin, name), "FAIL: seq 4: checkpoint mismatch")
    tampered("the row-3 checkpoint re-labelled: its signature line under the origin",
             lambda d: relabel(d, 0, name, origin), "FAIL: seq 3: checkpoint mismatch")
    tampered("row 4's hash signed under the origin (as a tree head)",
             lambda d: sign(d, sk, lambda t: t.replace(b64(mth(leaves)).encode(),
                                                       b64(ex["rows"][3]["hash"]).encode()),
                            idx=1),
             "FAIL: seq 4: checkpoint mismatch")
    tampered("the head of 4 rows signed under the key's name (as a row hash)",
             lambda d: sign(d, sk, idx=1, under=name), "FAIL: seq 4: checkpoint mismatch")
    tampered("the row-3 checkpoint also signed under the origin (the origin's line decides)",
             lambda d: add_lines(d, 0, [ed_line(note_text(d, 0), origin, sk)]),
             "FAIL: seq 3: checkpoint mismatch")
    tampered("a bad line under the origin next to the row-3 checkpoint's valid one",
             lambda d: add_lines(d, 0, [EM_DASH + b" " + origin + b" " +
                                        b64(key_id(origin, pub) + bytes(64)).encode() + b"\n"]),
             "FAIL: seq 3: bad signature")
    tampered("a bad line under the key's name next to the tree head's valid one (ignored)",
             lambda d: add_lines(d, 1, [EM_DASH + b" " + name + b" " +
                                        b64(key_id(name, pub) + bytes(64)).encode() + b"\n"]),
             result_plain)
    tampered("a second, bad line under the origin in the tree head",
             lambda d: add_lines(d, 1, [EM_DASH + b" " + origin + b" " +
                                        b64(key_id(origin, pub) + bytes(64)).encode() + b"\n"]),
             "FAIL: seq 4: bad signature")
    tampered("the vector as format v1, without tree_frontier",
             lambda d: (d.__setitem__("format", FORMAT_V1), d.pop("tree_frontier")),
             result_plain)
    tampered("format v1 with a tree_frontier",
             lambda d: d.__setitem__("format", FORMAT_V1), "FAIL: malformed export")
    tampered("format v2 without tree_frontier", lambda d: d.pop("tree_frontier"),
             "FAIL: malformed export")
    tampered("a frontier given though the export starts at row 1 (ignored)",
             lambda d: d.__setitem__("tree_frontier", since["tree_frontier"]), result_plain)

    # the mid-chain export: its frontier
    def frontier_of(k, edit=lambda f: f):
        f_ = Frontier()
        for r in ex["rows"][:k]:
            f_.append(r["hash"])
        return b64(edit(f_.put()))

    tampered("mid-chain: the frontier changed (leaf-2 for head-2)",
             lambda d: d.__setitem__("tree_frontier", b64(u32(0) + u32(2) + leaves[1])),
             "FAIL: seq 4: checkpoint mismatch", doc=since)
    tampered("mid-chain: the frontier of 1 row (the wrong size)",
             lambda d: d.__setitem__("tree_frontier", frontier_of(1)),
             "FAIL: seq 4: checkpoint mismatch", doc=since)
    tampered("mid-chain: the frontier of 3 rows (the wrong size)",
             lambda d: d.__setitem__("tree_frontier", frontier_of(3)),
             "FAIL: seq 4: checkpoint mismatch", doc=since)
    tampered("mid-chain: a frontier of size 2 with a hash too many",
             lambda d: d.__setitem__("tree_frontier", frontier_of(2, lambda b: b + leaves[2])),
             "FAIL: seq 4: checkpoint mismatch", doc=since)
    tampered("mid-chain: a frontier of size 2 without its hash",
             lambda d: d.__setitem__("tree_frontier", frontier_of(2, lambda b: b[:8])),
             "FAIL: seq 4: checkpoint mismatch", doc=since)
    tampered("mid-chain: a frontier that is not base64",
             lambda d: d.__setitem__("tree_frontier", "x"),
             "FAIL: seq 4: checkpoint mismatch", doc=since)
    tampered("mid-chain: no frontier",
             lambda d: d.__setitem__("tree_frontier", None),
             "FAIL: seq 4: checkpoint mismatch", doc=since)
    tampered("mid-chain: a frontier that is not a string",
             lambda d: d.__setitem__("tree_frontier", 2), "FAIL: malformed export", doc=since)
    tampered("mid-chain: without row 3's checkpoint (no anchor)",
             lambda d: d["checkpoints"].pop(0),
             'OK: public.orders_audit tenant "acme": 2 rows (seq 3-4, starting mid-chain '
             'without an anchor), 1 checkpoint verified; every row covered by a checkpoint',
             doc=since)
    tampered("mid-chain: without row 3's checkpoint, with --complete",
             lambda d: d["checkpoints"].pop(0), "FAIL: seq 1: missing row", doc=since,
             complete=True)

    def from_row4(d, k=3):
        d["rows"].pop(0)
        d["checkpoints"].pop(0)
        d["tree_frontier"] = frontier_of(k)

    tampered("mid-chain from row 4: the tree head anchors it (frontier of 3 rows)",
             from_row4, 'OK: public.orders_audit tenant "acme": 1 row (seq 4, anchored by a '
             'checkpoint), 1 checkpoint verified; every row covered by a checkpoint, '
             'cosigned by 1 witness', doc=since, witnesses=[W1])
    tampered("mid-chain from row 4, anchored, with --complete: no purge statement",
             from_row4, "FAIL: seq 1: purge not signed", doc=since, complete=True)

    def purged_to4(d, n=b"4"):
        from_row4(d)
        sign(d, sk, lambda t: t + b"purge " + n + b"\n", idx=0,
             under=parse_checkpoint(note_text(d, 0))[0])

    tampered("purged to row 4: a checkpoint states it (purge 4), with --complete",
             purged_to4, 'OK: public.orders_audit tenant "acme": 1 row (seq 4, anchored by a '
             'checkpoint), 1 checkpoint verified; every row covered by a checkpoint',
             doc=since, complete=True)
    tampered("purged to row 4: a statement of another purge (purge 3), with --complete",
             lambda d: purged_to4(d, b"3"), "FAIL: seq 1: purge not signed", doc=since,
             complete=True)
    tampered("mid-chain from row 4 with the frontier of 2 rows, with --complete",
             lambda d: from_row4(d, 2), "FAIL: seq 1: missing row", doc=since, complete=True)

    # witnesses: cosignatures of the newest tree head
    tampered("the cosignature altered", lambda d: damage(d, 1), "FAIL: seq 4: bad signature",
             witnesses=[W1])
    tampered("the cosignature altered, without --witness (a line of an unknown key)",
             lambda d: damage(d, 1), result_plain)
    tampered("the cosignature removed", drop_cosignature,
             'FAIL: public.orders_audit tenant "acme": the newest checkpoint (seq 4) has '
             '0 of 1 witness cosignatures', witnesses=[W1])
    tampered("the cosignature removed, --witnesses 0", drop_cosignature,
             result_plain + ", cosigned by 0 witnesses", witnesses=[W1], required=0)
    tampered("two witnesses given, one cosigned", lambda d: None,
             'FAIL: public.orders_audit tenant "acme": the newest checkpoint (seq 4) has '
             '1 of 2 witness cosignatures', witnesses=[W1, W2])
    tampered("two witnesses given, one cosigned, --witnesses 1", lambda d: None,
             result, witnesses=[W1, W2], required=1)
    tampered("two witnesses given, both cosigned",
             lambda d: add_lines(d, 1, [cosig_line(note_text(d, 1), w2name, w2sk)]),
             result_plain + ", cosigned by 2 witnesses", witnesses=[W1, W2])
    tampered("the witness's cosignature repeated",
             lambda d: add_lines(d, 1, [cosig_line(note_text(d, 1), wname, wsk)]),
             result, witnesses=[W1])
    tampered("the witness's cosignature of the tree head copied onto the row-3 checkpoint",
             lambda d: add_lines(d, 0, [cosig_line(note_text(d, 1), wname, wsk)]),
             "FAIL: seq 3: bad signature", witnesses=[W1])
    def retime(doc):
        """The cosignature's timestamp changed, its signature kept."""
        drop_cosignature(doc)
        add_lines(doc, 1, [EM_DASH + b" " + wname + b" " +
                           b64(cline[1] + (ts + 1).to_bytes(8, "big") + cline[3][1]).encode() +
                           b"\n"])

    tampered("the witness's cosignature with another timestamp, not re-signed", retime,
             "FAIL: seq 4: bad signature", witnesses=[W1])
    tampered("a cosignature with a timestamp above 2^63 - 1, validly signed",
             lambda d: (drop_cosignature(d),
                        add_lines(d, 1, [cosig_line(note_text(d, 1), wname, wsk, 2 ** 63)])),
             "FAIL: seq 4: bad signature", witnesses=[W1])
    tampered("a line by the witness of a signature's length (68 bytes)",
             lambda d: add_lines(d, 1, [EM_DASH + b" " + wname + b" " +
                                        b64(key_id(wname, wpub, TYPE_COSIGNATURE) +
                                            wsk.sign(note_text(d, 1))).encode() + b"\n"]),
             "FAIL: seq 4: bad signature", witnesses=[W1])
    tampered("the witness's signature as a note signature (type 01 key ID: another key)",
             lambda d: add_lines(d, 1, [ed_line(note_text(d, 1), wname, wsk)]),
             result, witnesses=[W1])
    def resigned_head4(doc):
        """The tree head of 4 rows signed again later, without cosignature."""
        t = note_text(doc, 1).replace(b".684012Z", b".700000Z")
        doc["checkpoints"].append((t + b"\n" + ed_line(t, origin, sk)).decode())

    tampered("another tree head of 4 rows, not cosigned, next to the cosigned one",
             resigned_head4,
             result_plain.replace("2 checkpoints", "3 checkpoints") + ", cosigned by 1 witness",
             witnesses=[W1])
    tampered("only the row-3 checkpoint: no tree head to cosign",
             lambda d: d["checkpoints"].pop(1),
             'FAIL: public.orders_audit tenant "acme": no tree-head checkpoint verified, '
             '0 of 1 witness cosignatures', witnesses=[W1])
    def cosigned_head3(doc):
        """A tree head of 3 rows, cosigned, before the tree head of 4 rows,
        whose cosignature is dropped."""
        t = note_text(doc, 1).replace(b"\n4\n", b"\n3\n").replace(
            b64(mth(leaves)).encode(), b64(head3).encode())
        drop_cosignature(doc)
        doc["checkpoints"].insert(1, (t + b"\n" + ed_line(t, origin, sk) +
                                      cosig_line(t, wname, wsk)).decode())

    tampered("a cosigned tree head of 3 rows, the newest (of 4 rows) not cosigned",
             cosigned_head3,
             'FAIL: public.orders_audit tenant "acme": the newest checkpoint (seq 4) has '
             '0 of 1 witness cosignatures', witnesses=[W1])

    # C2SP signed-note and tlog-checkpoint: what a conforming verifier
    # accepts and refuses (docs/audit-chain.md, "Checkpoints")
    def add_sigs(doc, lines, idx=0):
        doc["checkpoints"][idx] += "".join("\u2014 %s %s\n" % (n_, b64(raw)) for n_, raw in lines)

    def sig_line(doc, name_, key):
        t = note_text(doc, 0)
        return name_.decode(), key_id(name_, raw_public(key)) + key.sign(t)

    tampered("a cosignature by an unknown key with a non-ASCII name",
             lambda d: add_sigs(d, [sig_line(d, "témoin.example/w1".encode(), other)]),
             result_plain)
    tampered("a signature of 3309 bytes (ML-DSA-65's size) by an unknown key",
             lambda d: add_sigs(d, [("pq.example/log", b"\x01\x02\x03\x04" + bytes(3309))]),
             result_plain)
    tampered("99 more signatures by unknown keys (100 in all)",
             lambda d: add_sigs(d, [("w%d" % i, bytes(68)) for i in range(99)]), result_plain)
    tampered("100 more signatures by unknown keys (101 in all: unreadable)",
             lambda d: add_sigs(d, [("w%d" % i, bytes(68)) for i in range(100)]),
             "FAIL: seq 1: bad signature")
    tampered("the trusted key's signature repeated", lambda d: add_sigs(d, [sig_line(d, name, sk)]),
             result_plain)
    tampered("a valid and an invalid signature by the trusted key",
             lambda d: add_sigs(d, [(name.decode(), sig_line(d, name, sk)[1][:4] + bytes(64))]),
             "FAIL: seq 3: bad signature")
    tampered("a signature by the trusted key of another length",
             lambda d: add_sigs(d, [(name.decode(), sig_line(d, name, sk)[1][:4] + bytes(65))]),
             "FAIL: seq 3: bad signature")
    tampered("a signature by the trusted key of a cosignature's length",
             lambda d: add_sigs(d, [(name.decode(), sig_line(d, name, sk)[1][:4] + bytes(72))]),
             "FAIL: seq 3: bad signature")
    tampered("a key name with a Unicode space (unreadable)",
             lambda d: add_sigs(d, [("w\u2003x", bytes(68))]), "FAIL: seq 1: bad signature")
    tampered("a key name of 2048 bytes", lambda d: add_sigs(d, [("w" * 2048, bytes(68))]),
             result_plain)
    tampered("a key name of 2049 bytes (unreadable)",
             lambda d: add_sigs(d, [("w" * 2049, bytes(68))]), "FAIL: seq 1: bad signature")
    tampered("the checkpoint without extension lines, signed",
             lambda d: sign(d, sk, lambda t: t[:t.rindex(b"time ")]), result_plain)
    tampered("the checkpoint with a second extension line, signed",
             lambda d: sign(d, sk, lambda t: t + b"witnessed-by example\n"), result_plain)

    with tempfile.TemporaryDirectory() as tmp:
        keyfile = os.path.join(tmp, "vector.vkey")
        with open(keyfile, "w") as f:
            f.write(key["verifier-key"] + "\n")
        wfiles = {}
        for i, w in enumerate([W1, W2]):
            wfiles[w] = os.path.join(tmp, "witness%d.vkey" % (i + 1))
            with open(wfiles[w], "w") as f:
                f.write(w + "\n")
        for what, doc, expected, opts in cases:
            ws = opts.get("witnesses")
            wkeys = [parse_witness_key(w.encode()) for w in ws] if ws else None
            line = verify_bytes(doc, keys, VECTOR_DATABASE, None, opts.get("complete", False),
                                wkeys, opts.get("required"))
            ok = line == expected or (expected == "FAIL: malformed export" and
                                      line.startswith(expected + ": "))
            report(ok, "%s: %s" % (what, line if ok else "%s, expected %s" % (line, expected)))
            if verifier is None:
                continue
            exp = os.path.join(tmp, "export.json")
            with open(exp, "wb") as f:
                f.write(doc)
            args = (["--complete"] if opts.get("complete") else [])
            for w in ws or []:
                args += ["--witness", wfiles[w]]
            if opts.get("required") is not None:
                args += ["--witnesses", str(opts["required"])]
            run = subprocess.run([verifier, "--key", keyfile, "--database", VECTOR_DATABASE.decode()]
                                 + args + [exp], capture_output=True, text=True)
            cline = run.stdout.rstrip("\n")
            same = (cline == line if not line.startswith("FAIL: malformed export: ")
                    else cline.startswith("FAIL: malformed export: "))
            report(same and run.returncode == (0 if line.startswith("OK: ") else 1),
                   "%s: envault-verify agrees%s" % (what, "" if same else " (it printed %r, exit %d)"
                                                   % (cline, run.returncode)))

        # usage errors (exit 2): keys of the wrong type, more witnesses
        # required than given
        usage = [("a witness key given as --key", ["--key", wfiles[W1]]),
                 ("the signing key given as --witness", ["--key", keyfile, "--witness", keyfile]),
                 ("--witnesses 2 with one --witness",
                  ["--key", keyfile, "--witness", wfiles[W1], "--witnesses", "2"])]
        exp = os.path.join(tmp, "export.json")
        with open(exp, "wb") as f:
            f.write(data)
        for what, args in usage:
            args = args + ["--database", VECTOR_DATABASE.decode(), exp]
            saved, sys.stderr = sys.stderr, open(os.devnull, "w")
            try:
                rc = main_verify(args)
            finally:
                sys.stderr.close()
                sys.stderr = saved
            report(rc == 2, "usage: %s: exit %d" % (what, rc))
            if verifier is not None:
                run = subprocess.run([verifier] + args, capture_output=True, text=True)
                report(run.returncode == 2 and not run.stdout,
                       "usage: %s: envault-verify agrees (exit %d)" % (what, run.returncode))
    print("%d check(s) failed" % failed if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if any(a == "--key" or a.startswith("--key=") for a in args):
        sys.exit(main_verify(args))
    if len(args) in (2, 3) and args[0] == "--generate":
        generate(*args[1:])
        sys.exit(0)
    verifier = None
    if len(args) == 3 and args[0] == "--verifier":
        verifier, args = args[1], args[2:]
    if len(args) == 1 and not args[0].startswith("-"):
        sys.exit(check_document(args[0], verifier))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
