#!/usr/bin/env python3
"""Run every SQL example of README.md, docs/operations.md,
docs/application.md and docs/reference.md, as written.

Each ```sql block runs in a database of its own (created and dropped
here), after the fixture that the comment <!-- example: NAME --> on the
line before it names (test/docs/fixtures.sql; default: keys), in one psql
session with ON_ERROR_STOP: a block that fails, or whose fixture fails,
fails the test.  A block preceded by <!-- example: expect TEXT --> must
also print TEXT.  A line "-- → TEXT" inside a block says what it
returns: the block then runs with psql's unaligned output (-At, fields
separated by " | "), and one line of its output must be exactly TEXT.  A
block preceded by <!-- example: skip REASON --> is not run (it needs
what the test cluster does not have, REASON says what); it is counted
apart.  Roles an example creates are dropped after it.

Connection: the PG* environment (PGHOST, PGPORT), as a superuser; psql
from $PSQL (default: psql).  Prints one line per example; exits non-zero
if any failed."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = ["README.md", "docs/operations.md", "docs/application.md", "docs/reference.md"]
PSQL = os.environ.get("PSQL", "psql")
EXAMPLE_ROLES = ["app", "app_owner"]
MARK = "-- example output --"


def fixtures():
    text = open(os.path.join(ROOT, "test/docs/fixtures.sql"), encoding="utf-8").read()
    out = {}
    for m in re.finditer(r"^-- fixture: (\w+)\n(.*?)(?=^-- fixture: |\Z)", text, re.S | re.M):
        out[m.group(1)] = m.group(2)
    # "-- include: NAME" stands for an earlier fixture
    for name in out:
        out[name] = re.sub(r"^-- include: (\w+)$", lambda i: out[i.group(1)], out[name], flags=re.M)
    return out


def examples(path):
    lines = open(os.path.join(ROOT, path), encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```sql\s*$", lines[i])
        if m:
            indent = len(m.group(1))
            fixture, expect, skip = "keys", None, None
            k = i - 1
            while k >= 0 and lines[k].strip() == "":
                k -= 1
            while k >= 0 and lines[k].strip().startswith("<!-- example:"):
                a = re.match(r"\s*<!-- example: (expect (.*?)|skip (.+?)|(\w+)) -->\s*$", lines[k])
                if not a:
                    raise SystemExit(f"{path}:{k + 1}: malformed example comment")
                if a.group(2) is not None:
                    expect = a.group(2)
                elif a.group(3) is not None:
                    skip = a.group(3)
                else:
                    fixture = a.group(4)
                k -= 1
            j = i + 1
            body = []
            while not re.match(r"^\s*```\s*$", lines[j]):
                body.append(lines[j][indent:])
                j += 1
            yield i + 1, fixture, expect, skip, "\n".join(body) + "\n"
            i = j
        i += 1


def returns(body):
    """The lines "-- → TEXT" of a block: what it must print."""
    return [m.group(1).strip() for m in re.finditer(r"^\s*-- → (.*)$", body, re.M)]


def psql(db, sql, unaligned=False):
    fmt = ["-A", "-t", "-F", " | "] if unaligned else []
    return subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", *fmt, "-d", db],
                          input=sql, capture_output=True, text=True)


def main():
    fx = fixtures()
    failed = passed = skipped = 0
    for path in FILES:
        for n, (line, fixture, expect, skip, body) in enumerate(examples(path), 1):
            name = f"{path}:{line}"
            if skip is not None:
                skipped += 1
                print(f"ok - {name} # SKIP {skip}")
                continue
            wanted = returns(body)
            db = f"example_{re.sub(r'[^a-z0-9]', '_', path.lower())}_{n}"
            if fixture not in fx:
                print(f"not ok - {name}: no fixture {fixture!r}")
                failed += 1
                continue
            subprocess.run([PSQL, "-X", "-q", "-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {db}",
                            "-c", f"CREATE DATABASE {db}"], check=True, capture_output=True)
            # (what the fixture prints does not count)
            r = psql(db, fx[fixture] + "\n\\echo " + MARK + "\n" + body, unaligned=bool(wanted))
            printed = [ln.rstrip() for ln in r.stdout.split(MARK + "\n", 1)[-1].split("\n")]
            missing = [w for w in wanted if w not in printed]
            ok = r.returncode == 0 and (expect is None or expect in r.stdout) and not missing
            subprocess.run([PSQL, "-X", "-q", "-d", "postgres", "-c", f"DROP DATABASE {db}"],
                           capture_output=True)
            subprocess.run([PSQL, "-X", "-q", "-d", "postgres", "-c",
                            "DROP ROLE IF EXISTS " + ", ".join(EXAMPLE_ROLES)], capture_output=True)
            if ok:
                passed += 1
                print(f"ok - {name} (fixture {fixture})")
            else:
                failed += 1
                print(f"not ok - {name} (fixture {fixture})")
                if expect is not None and expect not in r.stdout:
                    print(f"#   expected output containing {expect!r}")
                for w in missing:
                    print(f"#   expected a line {w!r}; printed {printed[-6:]!r}")
                for ln in (r.stderr.strip() or r.stdout.strip()).split("\n")[-15:]:
                    print("#   " + ln)
    if skipped:
        print(f"examples: {skipped} not run (skip)")
    print(f"examples: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
