#!/usr/bin/env python3
"""docs/reference.md and what envault installs must agree.

From the install script (src/envault.sql): every function and procedure
of schema envault (name and argument types), every table and view; from the
C sources: every setting (DefineCustom*Variable("envault.…")).  Each must
appear in docs/reference.md: a function as `envault.name(` (`CALL envault.name(` for a
procedure, `env_name(` for the data path) followed by its arguments with
the same types in order, in the first column of a table, a table or view as `envault.name`,
a setting as `envault.name`.  Conversely, every `envault.name(...)`
signature in the first column of a reference table must be installed with
those argument types.  Exits non-zero listing every disagreement."""

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# type names as the install script writes them, and as the reference may
ALIASES = {
    "int": "integer", "int4": "integer", "int8": "bigint", "bool": "boolean",
    "timestamptz": "timestamp with time zone", "varchar": "character varying",
}


def norm_type(t):
    t = re.sub(r"\s+", " ", t.strip().lower())
    t = re.sub(r"^(in|out|inout|variadic) ", "", t)
    t = t.replace("pg_catalog.", "")
    return ALIASES.get(t, t)


def split_args(s):
    """Top-level comma split of an argument list."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def arg_type(a):
    """Type of one declared argument: [mode] [name] type [DEFAULT ...]."""
    a = re.split(r"\s+DEFAULT\s+|\s*=\s*", a.strip(), maxsplit=1, flags=re.I)[0].strip()
    words = a.split()
    if words and words[0].lower() in ("in", "out", "inout", "variadic"):
        mode = words[0].lower()
        words = words[1:]
    else:
        mode = "in"
    if mode == "out":
        return None
    known = ("text", "bytea", "integer", "int", "int4", "int8", "bigint", "boolean", "bool", "name",
             "regclass", "interval", "timestamptz", "timestamp", "anyelement", "uuid", "jsonb", "smallint")
    if len(words) >= 2 and words[0].lower() not in known:
        words = words[1:]		# drop the argument's name
    return norm_type(" ".join(words))


def installed():
    sql = open(os.path.join(ROOT, "src/envault.sql"), encoding="utf-8").read()
    funcs = {}
    for m in re.finditer(r"CREATE (?:OR REPLACE )?(FUNCTION|PROCEDURE) envault\.(\w+)\s*\((.*?)\)\s*\n?\s*(?:RETURNS|LANGUAGE|AS|SET|SECURITY)",
                         sql, re.S):
        args = [t for t in (arg_type(a) for a in split_args(m.group(3))) if t is not None]
        funcs.setdefault(m.group(2), []).append(tuple(args))
    rels = set(re.findall(r"CREATE (?:TABLE|VIEW) envault\.(\w+)", sql))
    settings = set()
    for f in glob.glob(os.path.join(ROOT, "src/*.c")):
        settings |= set(re.findall(r'DefineCustom\w+Variable\(\s*"envault\.(\w+)"', open(f, encoding="utf-8").read()))
    return funcs, rels, settings


def main():
    ref = open(os.path.join(ROOT, "docs/reference.md"), encoding="utf-8").read()
    funcs, rels, settings = installed()
    problems = []
    documented = {}
    # (data-path functions are written unqualified, procedures with CALL)
    for m in re.finditer(r"^\| `(?:CALL )?(?:envault\.)?(\w+)\((.*?)\)`", ref, re.M):
        args = tuple(t for t in (arg_type(a) for a in split_args(m.group(2))) if t is not None)
        documented.setdefault(m.group(1), []).append(args)
    for name, sigs in sorted(funcs.items()):
        for sig in sigs:
            if sig not in documented.get(name, []):
                problems.append(f"not in docs/reference.md: envault.{name}({', '.join(sig)})")
    for name, sigs in sorted(documented.items()):
        for sig in sigs:
            if sig not in funcs.get(name, []):
                problems.append(f"in docs/reference.md but not installed: envault.{name}({', '.join(sig)})")
    for r in sorted(rels):
        if not re.search(r"`envault\." + r + r"`", ref):
            problems.append(f"table or view not in docs/reference.md: envault.{r}")
    for s in sorted(settings):
        if not re.search(r"`envault\." + s + r"`", ref):
            problems.append(f"setting not in docs/reference.md: envault.{s}")
    for p in problems:
        print(p)
    n = sum(len(v) for v in funcs.values())
    if problems:
        print(f"docs/reference.md: {len(problems)} disagreement(s) with the install script")
        sys.exit(1)
    print(f"docs/reference.md: agrees with the install script ({n} functions and procedures, "
          f"{len(rels)} tables and views, {len(settings)} settings)")


if __name__ == "__main__":
    main()
