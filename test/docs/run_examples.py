#!/usr/bin/env python3
"""Run every SQL example of README.md, docs/operations.md and
docs/application.md, as written.

Each ```sql block runs in a database of its own (created and dropped
here), after the fixture that the comment <!-- example: NAME --> on the
line before it names (test/docs/fixtures.sql; default: keys), in one psql
session with ON_ERROR_STOP: a block that fails, or whose fixture fails,
fails the test.  A block preceded by <!-- example: expect TEXT --> must
also print TEXT.  Roles an example creates are dropped after it.

Connection: the PG* environment (PGHOST, PGPORT), as a superuser; psql
from $PSQL (default: psql).  Prints one line per example; exits non-zero
if any failed."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = ["README.md", "docs/operations.md", "docs/application.md"]
PSQL = os.environ.get("PSQL", "psql")
EXAMPLE_ROLES = ["app", "app_owner"]


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
            fixture, expect = "keys", None
            k = i - 1
            while k >= 0 and lines[k].strip() == "":
                k -= 1
            while k >= 0 and lines[k].strip().startswith("<!-- example:"):
                a = re.match(r"\s*<!-- example: (expect (.*?)|(\w+)) -->\s*$", lines[k])
                if not a:
                    raise SystemExit(f"{path}:{k + 1}: malformed example comment")
                if a.group(2) is not None:
                    expect = a.group(2)
                else:
                    fixture = a.group(3)
                k -= 1
            j = i + 1
            body = []
            while not re.match(r"^\s*```\s*$", lines[j]):
                body.append(lines[j][indent:])
                j += 1
            yield i + 1, fixture, expect, "\n".join(body) + "\n"
            i = j
        i += 1


def psql(db, sql):
    return subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db],
                          input=sql, capture_output=True, text=True)


def main():
    fx = fixtures()
    failed = passed = 0
    for path in FILES:
        for n, (line, fixture, expect, body) in enumerate(examples(path), 1):
            name = f"{path}:{line}"
            db = f"example_{re.sub(r'[^a-z0-9]', '_', path.lower())}_{n}"
            if fixture not in fx:
                print(f"not ok - {name}: no fixture {fixture!r}")
                failed += 1
                continue
            subprocess.run([PSQL, "-X", "-q", "-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {db}",
                            "-c", f"CREATE DATABASE {db}"], check=True, capture_output=True)
            r = psql(db, fx[fixture] + "\n" + body)
            ok = r.returncode == 0 and (expect is None or expect in r.stdout)
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
                for ln in (r.stderr.strip() or r.stdout.strip()).split("\n")[-15:]:
                    print("#   " + ln)
    print(f"examples: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
