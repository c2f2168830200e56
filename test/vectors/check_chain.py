#!/usr/bin/env python3
"""Verify exports of envault audit chains, independently of envault's C code.

Written from docs/audit-chain.md alone, with the Python standard library and
the `cryptography` package: the second implementation of "To verify an
export without envault", next to envault-verify, which it mirrors exactly.

    check_chain.py --key KEYFILE [--key KEYFILE ...] [--name NAME]
                   --database ID [--checkpoints LOGFILE ...] [--complete]
                   EXPORT.json
        verify an export as envault-verify does and print the same one line;
        exit 0 (OK), 1 (FAIL) or 2 (usage or I/O error)

    check_chain.py --generate EXPORT.json
        print the chain-vector blocks of the document for an export made
        with the signing key of test/regress.conf

    check_chain.py [--verifier PATH] docs/audit-chain.md
        check the worked example and test vectors of the document: the key
        ID and verifier key from the seed, the first row's hash input byte
        by byte, every row hash, the checkpoint's signature (recomputed from
        the seed: Ed25519 is deterministic); then verify the export and
        refuse tampered copies of it, each with the line envault-verify
        prints.  With --verifier, that envault-verify program must print the
        same line for the vector and every tampered copy.  One line per
        check; exit 1 on any failure.
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
NAME_MAXLEN = 255
MAXSIGS = 100
GENESIS = bytes(32)
ROW_LABEL = b"envault/v1/chain-row"
COLUMNS_LABEL = b"envault/v1/chain-columns"
FORMAT = "envault-chain-export-v1"
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
    character either, at most 255 bytes."""
    if not 1 <= len(name) <= NAME_MAXLEN:
        return False
    try:
        chars = name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ord(c) > 0x20 and ord(c) != 0x7f and c != "+" and not 0x80 <= ord(c) < 0xa0
               and ord(c) not in UNICODE_SPACES for c in chars)


def key_id(name, pub):
    return hashlib.sha256(name + b"\n\x01" + pub).digest()[:4]


def parse_note(note):
    """(text, [(name, key ID, signature or None)]) of a readable note, else None."""
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
        sigs.append((line[4:sp], raw[:4], raw[4:] if len(raw) == 68 else None))
    return text, sigs


def verify_note(note, name, pub):
    """'verified', 'malformed', 'unknown key' or 'bad signature'."""
    parsed = parse_note(note)
    if parsed is None:
        return "malformed"
    text, sigs = parsed
    kid = key_id(name, pub)
    found = False
    for sname, skid, sig in sigs:
        if sname != name or skid != kid:
            continue
        # every signature line by a known key must verify
        if sig is None:
            return "bad signature"
        try:
            Ed25519PublicKey.from_public_bytes(pub).verify(sig, text)
        except InvalidSignature:
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


def origin_names(origin, database, chain, tenant):
    """envault/<database>/<chain>[/<tenant>], percent-encoded; the database
    is the one the auditor pins (--database)."""
    want = (b"envault/" + pct(database) + b"/" + pct(chain)
            + (b"/" + pct(tenant) if tenant is not None else b""))
    return origin == want


def check_note(note, keys, database, chain, tenant):
    """(status, body): 0 verified, 1 unreadable, 2 bad; body when readable."""
    parsed = parse_note(note)
    body = parse_checkpoint(parsed[0]) if parsed else None
    if body is None:
        return 1, None
    status = 2
    for name, pub in keys:
        rc = verify_note(note, name, pub)
        if rc == "verified":
            status = 0
            break
        if rc == "bad signature":
            break
    if status == 0 and not origin_names(body[0], database, chain, tenant):
        status = 2
    return status, body


# --- keys ------------------------------------------------------------------

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
    text = text.strip(b" \t\r\n")
    m = re.fullmatch(rb"([^+]*)\+([0-9a-f]{8})\+(.*)", text, re.S)
    typed = unb64(m.group(3), 33) if m else None
    if (m is None or not name_valid(m.group(1)) or typed is None or len(typed) != 33
            or typed[0] != 1 or key_id(m.group(1), typed[1:]).hex() != m.group(2).decode()):
        raise UsageError("is neither a verifier key nor a PEM Ed25519 public key")
    return m.group(1), typed[1:]


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


def read_export(data):
    doc = strict_json(data)
    fmt, database, chain, tenant, columns, rows, cps = members(
        doc, "the export",
        ["format", "database", "chain", "tenant", "columns", "rows", "checkpoints"])
    if fmt != FORMAT:
        raise Malformed("format: expected %r" % FORMAT)
    ex = {"database": text(database, "database"), "chain": text(chain, "chain"),
          "tenant": text(tenant, "tenant", True)}
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

def verify(ex, keys, logged=None, complete=False):
    """The result: a dict with ok, and seq / reason / where, or the counts."""
    database, chain, tenant = ex["database"], ex["chain"], ex["tenant"]
    cps = []
    for i, note in enumerate(ex["checkpoints"]):
        status, body = check_note(note, keys, database, chain, tenant)
        cps.append({"seq": as_int64(body[1]) if body else 0, "hash": body[2] if body else None,
                    "status": status, "where": None, "order": i, "logged": False})
    for i, c in enumerate(logged or []):
        cp = {"seq": 0, "hash": None, "status": 1, "where": c["where"],
              "order": len(ex["checkpoints"]) + i, "logged": True}
        if not c["parsed"]:
            if c["seq"] is not None:
                cp.update(seq=as_int64(c["seq"]), status=2)
        else:
            cp.update(seq=as_int64(c["seq"]), hash=c["hash"])
            status, body = check_note(c["note"], keys, database, chain, tenant)
            if status != 1 and body != (origin_of(ex), c["seq"], c["hash"]):
                status = 2
            cp["status"] = 2 if status == 1 else status
        cps.append(cp)
    cps.sort(key=lambda c: (c["seq"], c["order"]))

    res = {"ok": False, "seq": None, "reason": None, "where": None, "rows": 0,
           "first": 0, "last": 0, "anchored": False, "checkpoints": 0,
           "logged": 0, "have_log": logged is not None, "covered": 0}

    def bad(seq, reason, where=None):
        if res["reason"] is None or seq < res["seq"]:
            res.update(seq=seq, reason=reason, where=where)

    expect, prev, next_cp = 1, GENESIS, 0
    for i, row in enumerate(ex["rows"]):
        s = row["seq"]
        if i == 0:
            res["first"] = s
            expect = s
            prev = GENESIS if s == 1 else None
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
        if i == 0 and s != 1:
            res["anchored"] = row["hash"] is not None and any(
                c["seq"] == s and c["status"] == 0 and c["hash"] == row["hash"] for c in cps)
            if not res["anchored"] and complete:
                bad(1, "missing row")
        while next_cp < len(cps) and cps[next_cp]["seq"] < s:
            next_cp += 1
        while next_cp < len(cps) and cps[next_cp]["seq"] == s:
            c = cps[next_cp]
            if c["status"] == 0 and c["hash"] != row["hash"]:
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
    res["ok"] = res["reason"] is None
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


def result_line(ex, res):
    if not res["ok"]:
        line = "FAIL: seq %d: %s" % (res["seq"], res["reason"])
        if res["where"] is not None:
            line += " (checkpoint in %s)" % printable(res["where"].encode(), False)
        return line
    line = "OK: " + printable(ex["chain"], False)
    if ex["tenant"] is not None:
        line += ' tenant "%s": ' % printable(ex["tenant"], True)
    else:
        line += " without tenant: "
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
    return line


def verify_bytes(data, keys, database, log_paths=None, complete=False):
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
    return result_line(ex, verify(ex, keys, logged, complete))


def main_verify(argv):
    keys_files, logs, name, complete, export, database = [], [], "envault", False, None, None
    i = 0
    try:
        while i < len(argv):
            a = argv[i]
            opt_name, eq, value = a.partition("=")
            if opt_name in ("--key", "--name", "--checkpoints", "--database"):
                if not eq:
                    if i + 1 >= len(argv):
                        raise UsageError("option %s needs a value" % a)
                    i += 1
                    value = argv[i]
                {"--key": keys_files, "--checkpoints": logs}.get(opt_name, []).append(value)
                if opt_name == "--name":
                    name = value
                if opt_name == "--database":
                    if not value:
                        raise UsageError("--database needs a database identity")
                    database = value
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
            try:
                with open(k, "rb") as f:
                    data = f.read(KEYFILE_MAX + 1)
            except OSError as e:
                raise UsageError("could not read key file %s: %s" % (k, e.strerror))
            if len(data) > KEYFILE_MAX:
                raise UsageError("key file %s is too large for a key" % k)
            try:
                keys.append(parse_key(data, name))
            except UsageError as e:
                raise UsageError("key file %s %s" % (k, e))
        try:
            if export == "-":
                data = sys.stdin.buffer.read(EXPORT_MAXLEN + 1)
            else:
                with open(export, "rb") as f:
                    data = f.read(EXPORT_MAXLEN + 1)
        except OSError as e:
            raise UsageError("could not read %s: %s" % (export, e.strerror))
        line = verify_bytes(data, keys, os.fsencode(database), logs if logs else None, complete)
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


def generate(export_path):
    """Print the chain-vector blocks for an export signed with the regress key."""
    with open(export_path, "rb") as f:
        data = f.read()
    ex = read_export(data)
    seed = regress_seed()
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    pub = sk.public_key().public_bytes(serialization.Encoding.Raw,
                                       serialization.PublicFormat.Raw)
    name = b"envault"

    def wrap(label, b, comment=None, width=32):
        chunks = [b[i:i + width].hex() for i in range(0, len(b), width)] or [""]
        first = "%-14s%s" % (label, chunks[0])
        if comment is not None:
            first += "  # " + comment
        return "\n".join([first] + ["%-14s%s" % ("", c) for c in chunks[1:]])

    print("```chain-vector key")
    print(wrap("seed", seed))
    print(wrap("public-key", pub))
    print(wrap("key-id-input", name + b"\n\x01" + pub, "name, 0a, 01, public key", 48))
    print(wrap("key-id", key_id(name, pub)))
    print("%-14s%s+%s+%s" % ("verifier-key", name.decode(), key_id(name, pub).hex(),
                               b64(b"\x01" + pub)))
    print("```\n")
    print("```chain-vector export")
    sys.stdout.write(data.decode("utf-8").rstrip("\n") + "\n")
    print("```\n")
    row = ex["rows"][0]

    def show(b):
        return b.decode("utf-8") if b is not None else "NULL"

    print("```chain-vector columns")
    print("%-14s%s  # %s" % ("label", COLUMNS_LABEL.hex(), COLUMNS_LABEL.decode()))
    print("%-14s%s  # u32(%d)" % ("ncols", u32(len(ex["columns"])).hex(), len(ex["columns"])))
    for n, (cname, ctype) in enumerate(ex["columns"], 1):
        parts = [u32(len(cname)).hex(), cname.hex(), u32(len(ctype)).hex(), ctype.hex()]
        print("%-14s%s  # %s %s" % ("column-%d" % n, " ".join(parts), show(cname), show(ctype)))
    columns = hashlib.sha256(columns_input(ex)).digest()
    print("%-14s%s" % ("sha256", columns.hex()))
    print("```\n")
    print("```chain-vector row-hash")
    print("%-14s%s  # %s" % ("label", ROW_LABEL.hex(), ROW_LABEL.decode()))
    print("%-14s%s %s  # str(%s)" % ("chain", u32(len(ex["chain"])).hex(), ex["chain"].hex(),
                                     show(ex["chain"])))
    t = ex["tenant"]
    print("%-14s%s  # opt(%s)" % ("tenant", " ".join(x.hex() for x in
                                                       ([b"\x01", u32(len(t)), t] if t is not None
                                                        else [b"\x00"])), show(t)))
    print("%-14s%s  # u64(%d)" % ("seq", row["seq"].to_bytes(8, "big").hex(), row["seq"]))
    print("%-14s%s %s  # str(%s)" % ("at", u32(len(row["at"])).hex(), row["at"].hex(),
                                     show(row["at"])))
    print("%-14s%s  # the genesis value" % ("prev", row["prev"].hex()))
    print("%-14s%s  # the columns hash" % ("columns", columns.hex()))
    for n, ((cname, _), v) in enumerate(zip(ex["columns"], row["values"]), 1):
        parts = ["00"] if v is None else ["01", u32(len(v)).hex(), v.hex()]
        print("%-14s%s  # opt(%s) for %s" % ("value-%d" % n, " ".join(parts), show(v),
                                              show(cname)))
    print("%-14s%s" % ("sha256", hashlib.sha256(row_hash_input(ex, row)).hexdigest()))
    print("%-14s%s" % ("base64", b64(row["hash"])))
    print("```\n")
    note = ex["checkpoints"][0]
    text, sigs = parse_note(note)
    print("```chain-vector checkpoint")
    sys.stdout.write(note.decode("utf-8"))
    print("```\n")
    print("```chain-vector signature")
    print(wrap("signed-text", text))
    print(wrap("key-id", sigs[0][1]))
    print(wrap("signature", sigs[0][2]))
    print("```\n")
    print("```chain-vector result")
    print(result_line(ex, verify(ex, [(name, pub)])))
    print("```")


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
    kinds = ["key", "export", "columns", "row-hash", "checkpoint", "signature", "result", "tree"]
    if not report(all(k in blocks for k in kinds),
                  "chain-vector blocks %s present" % ", ".join(kinds)):
        return 1

    # the key: seed, public key, key ID, verifier key
    key, _ = fields(blocks["key"])
    seed = unhex(key["seed"])
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    pub = sk.public_key().public_bytes(serialization.Encoding.Raw,
                                       serialization.PublicFormat.Raw)
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
    report(key["verifier-key"] == "%s+%s+%s" % (name.decode(), key_id(name, pub).hex(),
                                                 b64(b"\x01" + pub)),
           "key: verifier key")
    try:
        report(parse_key(key["verifier-key"].encode(), "envault") == (name, pub),
               "key: verifier key reads back")
    except UsageError:
        report(False, "key: verifier key reads back")
    keys = [(name, pub)]

    # the export
    data = blocks["export"].encode("utf-8")
    try:
        ex = read_export(data)
    except Malformed as e:
        report(False, "export: reads (%s)" % e)
        return 1
    report(True, "export: reads, %d rows, %d checkpoint(s)" % (len(ex["rows"]),
                                                               len(ex["checkpoints"])))
    report(3 <= len(ex["rows"]) <= 5 and len(ex["checkpoints"]) == 1 and
           any(v is None for r in ex["rows"] for v in r["values"]) and
           any(max(v or b"\0") >= 0x80 for r in ex["rows"] for v in r["values"]),
           "export: 3 to 5 rows with a NULL and a non-ASCII value, one checkpoint")

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

    # the checkpoint and its signature
    note = blocks["checkpoint"].encode("utf-8")
    report(note == ex["checkpoints"][0], "checkpoint: the export's checkpoint")
    parsed = parse_note(note)
    body = parse_checkpoint(parsed[0]) if parsed else None
    report(body is not None, "checkpoint: reads as a signed note and a checkpoint")
    if body is None:
        return 1
    report(body[0] == origin_of(ex) and body[2] == ex["rows"][body[1] - 1]["hash"],
           "checkpoint: origin, and the hash of row %d" % body[1])
    sig, _ = fields(blocks["signature"])
    report(unhex(sig["signed-text"]) == parsed[0], "signature: signed text")
    report(unhex(sig["key-id"]) == parsed[1][0][1] == key_id(name, pub),
           "signature: key ID of the signature line")
    report(unhex(sig["signature"]) == parsed[1][0][2] == sk.sign(parsed[0]),
           "signature: Ed25519 signature recomputed from the seed")
    report(verify_note(note, name, pub) == "verified", "signature: verifies")

    # the Merkle tree of the rows: leaves, heads, and RFC 9162's proofs
    tree, _ = fields(blocks["tree"])
    leaves = [hashlib.sha256(b"\x00" + r["hash"]).digest() for r in ex["rows"]]
    for i, leaf in enumerate(leaves):
        report(unhex(tree["leaf-%d" % (i + 1)]) == leaf, "tree: leaf %d" % (i + 1))
        report(unhex(tree["head-%d" % (i + 1)]) == mth(leaves[:i + 1]),
               "tree: head of %d rows (RFC 6962 MTH)" % (i + 1))
    n = len(leaves)
    incl = [unhex(h) for h in tree["inclusion-2-%d" % n].split()]
    report(verify_inclusion(1, n, leaves[1], incl, mth(leaves)),
           "tree: audit path of row 2 verifies (RFC 9162, 2.1.3.2)")
    report(not verify_inclusion(1, n, leaves[2], incl, mth(leaves)),
           "tree: ... and not for another row")
    cons = [unhex(h) for h in tree["consistency-3-%d" % n].split()]
    report(verify_consistency(3, n, mth(leaves[:3]), mth(leaves), cons),
           "tree: consistency proof 3 to %d verifies (RFC 9162, 2.1.4.2)" % n)
    report(not verify_consistency(3, n, mth(leaves[:2] + leaves[3:4]), mth(leaves), cons),
           "tree: ... and not from another old head")

    # the export verifies, and tampered copies do not
    result = blocks["result"].strip()
    cases = [("the vector", data, result, False)]
    base = json.loads(blocks["export"])

    def tampered(what, edit, expected, complete=False):
        doc = copy.deepcopy(base)
        edit(doc)
        cases.append((what, json.dumps(doc, ensure_ascii=False).encode("utf-8"),
                      expected, complete))

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

    def sign(doc, signer, text_edit=lambda t: t):
        """Replace the checkpoint by its (edited) text signed by signer."""
        t = text_edit(parse_note(doc["checkpoints"][0].encode())[0])
        spub = signer.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        doc["checkpoints"][0] = (t + b"\n" + EM_DASH + b" " + name + b" " +
                                 b64(key_id(name, spub) + signer.sign(t)).encode() +
                                 b"\n").decode()

    def damage(doc):
        """One character of the signature's base64 changed."""
        n = doc["checkpoints"][0]
        i = len(n) - 20
        doc["checkpoints"][0] = n[:i] + ("B" if n[i] == "A" else "A") + n[i + 1:]

    def edit_checkpoint(doc, old, new):
        doc["checkpoints"][0] = doc["checkpoints"][0].replace(old, new, 1)

    other = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"another key").digest())
    last = ex["rows"][-1]["seq"]
    tampered("a value changed", lambda d: set_value(d, 1, 2, "paiement recu"),
             "FAIL: seq 2: hash mismatch")
    tampered("a NULL given a value", lambda d: set_value(d, 0, 3, "0.00"),
             "FAIL: seq 1: hash mismatch")
    tampered("a middle row deleted", lambda d: d["rows"].pop(2), "FAIL: seq 3: missing row")
    tampered("the newest rows deleted behind the checkpoint",
             lambda d: d["rows"].__delitem__(slice(2, None)),
             "FAIL: seq 3: truncated after checkpoint")
    tampered("two rows' seq swapped", swap, "FAIL: seq 2: hash mismatch")
    tampered("a row repeated", lambda d: d["rows"].insert(2, copy.deepcopy(d["rows"][1])),
             "FAIL: seq 2: extra row")
    tampered("a row forged with a recomputed hash", lambda d: forge(d, 1),
             "FAIL: seq 3: hash mismatch")
    tampered("the chain rewritten from row 2, every later hash recomputed",
             lambda d: rewrite(d, 1), "FAIL: seq 3: checkpoint mismatch")
    tampered("the row after the checkpoint rewritten (not yet covered: undetectable)",
             lambda d: rewrite(d, len(d["rows"]) - 1), result)
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
    tampered("the first row left out", lambda d: d["rows"].pop(0),
             'OK: public.orders_audit tenant "acme": %d rows (seq 2-%d, starting mid-chain '
             'without an anchor), 1 checkpoint verified; rows after seq 3 not yet covered by '
             'a checkpoint' % (len(ex["rows"]) - 1, last))
    tampered("the first row left out, with --complete", lambda d: d["rows"].pop(0),
             "FAIL: seq 1: missing row", complete=True)
    tampered("a row hash that is not base64", lambda d: d["rows"][0].__setitem__("hash", "x"),
             "FAIL: malformed export")
    tampered("an unknown member", lambda d: d.__setitem__("extra", 1), "FAIL: malformed export")

    # C2SP signed-note and tlog-checkpoint: what a conforming verifier
    # accepts and refuses (docs/audit-chain.md, "Checkpoints")
    def add_sigs(doc, lines):
        doc["checkpoints"][0] += "".join("\u2014 %s %s\n" % (n, b64(raw)) for n, raw in lines)

    def sig_line(doc, name_, key):
        t = parse_note(doc["checkpoints"][0].encode())[0]
        kpub = key.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)
        return name_.decode(), key_id(name_, kpub) + key.sign(t)

    tampered("a cosignature by an unknown key with a non-ASCII name",
             lambda d: add_sigs(d, [sig_line(d, "témoin.example/w1".encode(), other)]), result)
    tampered("a signature of 3309 bytes (ML-DSA-65's size) by an unknown key",
             lambda d: add_sigs(d, [("pq.example/log", b"\x01\x02\x03\x04" + bytes(3309))]), result)
    tampered("99 more signatures by unknown keys (100 in all)",
             lambda d: add_sigs(d, [("w%d" % i, bytes(68)) for i in range(99)]), result)
    tampered("100 more signatures by unknown keys (101 in all: unreadable)",
             lambda d: add_sigs(d, [("w%d" % i, bytes(68)) for i in range(100)]),
             "FAIL: seq 1: bad signature")
    tampered("the trusted key's signature repeated", lambda d: add_sigs(d, [sig_line(d, name, sk)]),
             result)
    tampered("a valid and an invalid signature by the trusted key",
             lambda d: add_sigs(d, [(name.decode(), sig_line(d, name, sk)[1][:4] + bytes(64))]),
             "FAIL: seq 3: bad signature")
    tampered("a signature by the trusted key of another length",
             lambda d: add_sigs(d, [(name.decode(), sig_line(d, name, sk)[1][:4] + bytes(65))]),
             "FAIL: seq 3: bad signature")
    tampered("a key name with a Unicode space (unreadable)",
             lambda d: add_sigs(d, [("w\u2003x", bytes(68))]), "FAIL: seq 1: bad signature")
    tampered("the checkpoint without extension lines, signed",
             lambda d: sign(d, sk, lambda t: t[:t.rindex(b"time ")]), result)
    tampered("the checkpoint with a second extension line, signed",
             lambda d: sign(d, sk, lambda t: t + b"witnessed-by example\n"), result)

    with tempfile.TemporaryDirectory() as tmp:
        keyfile = os.path.join(tmp, "vector.vkey")
        with open(keyfile, "w") as f:
            f.write(key["verifier-key"] + "\n")
        for what, doc, expected, complete in cases:
            line = verify_bytes(doc, keys, VECTOR_DATABASE, None, complete)
            ok = line == expected or (expected == "FAIL: malformed export" and
                                      line.startswith(expected + ": "))
            report(ok, "%s: %s" % (what, line if ok else "%s, expected %s" % (line, expected)))
            if verifier is None:
                continue
            exp = os.path.join(tmp, "export.json")
            with open(exp, "wb") as f:
                f.write(doc)
            run = subprocess.run([verifier, "--key", keyfile, "--database", VECTOR_DATABASE.decode()]
                                 + (["--complete"] if complete else [])
                                 + [exp], capture_output=True, text=True)
            cline = run.stdout.rstrip("\n")
            same = (cline == line if not line.startswith("FAIL: malformed export: ")
                    else cline.startswith("FAIL: malformed export: "))
            report(same and run.returncode == (0 if line.startswith("OK: ") else 1),
                   "%s: envault-verify agrees%s" % (what, "" if same else " (it printed %r, exit %d)"
                                                   % (cline, run.returncode)))
    print("%d check(s) failed" % failed if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if any(a == "--key" or a.startswith("--key=") for a in args):
        sys.exit(main_verify(args))
    if len(args) == 2 and args[0] == "--generate":
        generate(args[1])
        sys.exit(0)
    verifier = None
    if len(args) == 3 and args[0] == "--verifier":
        verifier, args = args[1], args[2:]
    if len(args) == 1 and not args[0].startswith("-"):
        sys.exit(check_document(args[0], verifier))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
