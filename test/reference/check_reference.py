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
those argument types.

Every function and procedure has an entry: a heading "#### `signature`"
followed by the lines "- Called by:", "- Returns:", "- Errors:" and
"- Example:" and a ```sql block.  "Called by" must name exactly the roles
(`envault_admin`, `envault_user`, `PUBLIC`) the GRANT and REVOKE statements
of src/envault.sql leave with EXECUTE on it, and say "superuser" when they
leave none.  Every SQLSTATE (a backquoted five-character code) of "Errors"
must be a PostgreSQL code (errcodes.txt, or errcodes.h of pg_config
--includedir-server) or one envault defines (MAKE_SQLSTATE in src/*.h), and
must appear in the SQLSTATE table at the end, whose codes must each be
listed by some function (or be marked a WARNING).  Every code the
function's own body raises must be listed: errcode(ERRCODE_...) in the C
function named by its AS 'MODULE_PATHNAME', '...' (found in src/*.c), or
ERRCODE = '...' in its PL/pgSQL body (22004 excepted for STRICT
functions, which never see a NULL).  Codes raised by the helpers a
function calls are not checked.  Exits non-zero listing every
disagreement."""

import glob
import os
import re
import subprocess
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
    # drop the argument's name (which may itself be a type's name: "name text")
    if len(words) >= 2 and (words[0].lower() not in known or " ".join(words[1:]).lower() in known):
        words = words[1:]
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
        c = open(f, encoding="utf-8").read()
        settings |= set(re.findall(r'DefineCustom\w+Variable\(\s*"envault\.(\w+)"', c))
        # the master key's and the pepper's settings are defined from a
        # table of names (masterkey.c: .hex_name = "envault.master_key" ...)
        settings |= set(re.findall(r'\.\w+_name\s*=\s*"envault\.(\w+)"', c))
    return funcs, rels, settings


def errcodes():
    """{ERRCODE_NAME: code} and {condition_name: code} of PostgreSQL, and envault's own codes."""
    macros, conds = {}, {}
    txt = sorted(glob.glob("/usr/share/postgresql/*/errcodes.txt"))
    try:
        share = subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True).stdout.strip()
        if os.path.exists(os.path.join(share, "errcodes.txt")):
            txt = [os.path.join(share, "errcodes.txt")]
    except OSError:
        pass
    if txt:
        for line in open(txt[-1], encoding="utf-8"):
            m = re.match(r"^([0-9A-Z]{5})\s+[EWS]\s+(ERRCODE_\w+)(?:\s+(\w+))?", line)
            if m:
                macros[m.group(2)] = m.group(1)
                if m.group(3):		# PL/pgSQL takes a name's first code (null_value_not_allowed: 22004)
                    conds.setdefault(m.group(3), m.group(1))
    headers = sorted(glob.glob("/usr/include/postgresql/*/server/utils/errcodes.h"))
    mk = r"#define\s+(ERRCODE_\w+)\s+MAKE_SQLSTATE\('(.)',\s*'(.)',\s*'(.)',\s*'(.)',\s*'(.)'\)"
    for h in (headers[-1:] if not txt else []) + glob.glob(os.path.join(ROOT, "src/*.h")):
        for m in re.finditer(mk, open(h, encoding="utf-8").read()):
            macros[m.group(1)] = "".join(m.group(i) for i in range(2, 7))
    if not macros:
        raise SystemExit("check_reference.py: no errcodes.txt or errcodes.h of PostgreSQL found")
    return macros, conds


def granted(sql):
    """{(name, argtypes): set of roles with EXECUTE} after the script's GRANTs and REVOKEs."""
    objs = {}
    for m in re.finditer(r"CREATE (?:OR REPLACE )?(FUNCTION|PROCEDURE) envault\.(\w+)\s*\((.*?)\)\s*\n?\s*(?:RETURNS|LANGUAGE|AS|SET|SECURITY)",
                         sql, re.S):
        args = tuple(t for t in (arg_type(a) for a in split_args(m.group(3))) if t is not None)
        objs[(m.group(2), args)] = {"kind": m.group(1), "roles": {"PUBLIC"}}
    stmt = r"(GRANT|REVOKE)\s+(?:ALL|EXECUTE)(?:\s+PRIVILEGES)?\s+ON\s+(.*?)\s+(TO|FROM)\s+(.*?);"
    for m in re.finditer(stmt, sql, re.S):
        what, roles = m.group(2), {r.strip() for r in m.group(4).split(",")}
        roles = {"PUBLIC" if r.upper() == "PUBLIC" else r for r in roles}
        if re.match(r"ALL FUNCTIONS IN SCHEMA envault$", what):
            targets = [k for k, v in objs.items() if v["kind"] == "FUNCTION"]
        elif re.match(r"ALL (ROUTINES|PROCEDURES) IN SCHEMA envault$", what):
            targets = [k for k, v in objs.items()
                       if what.startswith("ALL ROUTINES") or v["kind"] == "PROCEDURE"]
        elif re.match(r"(FUNCTION|PROCEDURE|ROUTINE)\s", what):
            targets = []
            body = re.sub(r"^(FUNCTION|PROCEDURE|ROUTINE)\s+", "", what)
            for ref in split_args(body):
                r = re.match(r"\s*envault\.(\w+)\s*\((.*)\)\s*$", ref, re.S)
                if r:
                    targets.append((r.group(1), tuple(norm_type(t) for t in split_args(r.group(2)))))
        else:
            continue
        for t in targets:
            if t in objs:
                objs[t]["roles"] = (objs[t]["roles"] | roles) if m.group(1) == "GRANT" else (objs[t]["roles"] - roles)
    return {k: v["roles"] for k, v in objs.items()}


def raised(sql, macros, conds):
    """{(name, argtypes): (codes the function's own body raises, where)}."""
    out = {}
    c_bodies = {}
    for f in sorted(glob.glob(os.path.join(ROOT, "src/*.c"))):
        text = open(f, encoding="utf-8").read()
        for m in re.finditer(r"^(\w+)\(PG_FUNCTION_ARGS\)\s*\n\{(.*?)\n\}", text, re.S | re.M):
            c_bodies[m.group(1)] = (m.group(2), os.path.relpath(f, ROOT))
    heads = list(re.finditer(r"CREATE (?:OR REPLACE )?(?:FUNCTION|PROCEDURE) envault\.(\w+)\s*\((.*?)\)\s*\n?\s*(?:RETURNS|LANGUAGE|AS|SET|SECURITY)",
                             sql, re.S))
    for i, m in enumerate(heads):
        args = tuple(t for t in (arg_type(a) for a in split_args(m.group(2))) if t is not None)
        end = heads[i + 1].start() if i + 1 < len(heads) else len(sql)
        decl = sql[m.start():end]
        strict = re.search(r"\b(STRICT|RETURNS NULL ON NULL INPUT)\b", decl.split("AS", 1)[0] + decl[:400]) is not None
        codes, where = set(), None
        sym = re.search(r"'MODULE_PATHNAME',\s*'(\w+)'", decl)
        if sym:
            if sym.group(1) not in c_bodies:
                out[(m.group(1), args)] = (None, sym.group(1))
                continue
            body, where = c_bodies[sym.group(1)]
            for e in re.findall(r"errcode\((ERRCODE_\w+)\)", body):
                codes.add(macros.get(e, e))
            where = f"{where}: {sym.group(1)}()"
        else:
            q = re.search(r"AS\s+(\$\w*\$)(.*?)\1", decl, re.S)
            body = q.group(2) if q else ""
            for e in re.findall(r"ERRCODE\s*=\s*'(\w+)'", body):
                codes.add(e.upper() if re.match(r"^[0-9A-Z]{5}$", e.upper()) and e not in conds else conds.get(e, e))
            where = "src/envault.sql"
        if strict:
            codes.discard("22004")
        out[(m.group(1), args)] = (codes, where)
    return out


def entries(ref):
    """{(name, argtypes): (heading line, text of the entry)} of the "#### `signature`" entries."""
    out = {}
    heads = list(re.finditer(r"^#### `(?:CALL )?(?:envault\.)?(\w+)\((.*?)\)`[^\n]*$", ref, re.M))
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(ref)
        nxt = re.search(r"^#{1,3} ", ref[m.end():end], re.M)
        if nxt:
            end = m.end() + nxt.start()
        args = tuple(t for t in (arg_type(a) for a in split_args(m.group(2))) if t is not None)
        out[(m.group(1), args)] = (ref[:m.start()].count("\n") + 1, ref[m.start():end])
    return out


def field(text, name):
    m = re.search(r"^- " + name + r":(.*)$", text, re.M)
    return m.group(1).strip() if m else None


def check_entries(ref, sql, problems):
    macros, conds = errcodes()
    valid = set(macros.values())
    grants = granted(sql)
    codes = raised(sql, macros, conds)
    ents = entries(ref)
    listed_anywhere = set()
    for key, (line, text) in sorted(ents.items()):
        name = f"envault.{key[0]}({', '.join(key[1])}) (docs/reference.md:{line})"
        for part in ("Called by", "Returns", "Errors", "Example"):
            if field(text, part) is None:
                problems.append(f"{name}: no \"- {part}:\" line")
        if not re.search(r"^\s*```sql\s*$", text, re.M):
            problems.append(f"{name}: no ```sql example")
        who = field(text, "Called by")
        if who is not None and key in grants:
            said = set(re.findall(r"`(envault_admin|envault_user|PUBLIC)`", who))
            if said != grants[key]:
                problems.append(f"{name}: \"Called by\" names {sorted(said) or 'no role'}, "
                                f"src/envault.sql grants EXECUTE to {sorted(grants[key]) or 'no role'}")
            if not grants[key] and "superuser" not in who:
                problems.append(f"{name}: no role may call it, \"Called by\" must say superuser")
        errs = field(text, "Errors")
        if errs is None:
            continue
        listed = set(re.findall(r"`([0-9A-Z]{5})`", errs))
        listed_anywhere |= listed
        for c in sorted(listed - valid):
            problems.append(f"{name}: {c} is not a PostgreSQL SQLSTATE (nor one of envault's)")
        own, where = codes.get(key, (set(), None))
        if own is None:
            problems.append(f"{name}: its C function {where}() is not in src/*.c")
            continue
        for c in sorted(own - listed):
            problems.append(f"{name}: {where} raises {c}, its \"Errors\" do not list it")
    # the SQLSTATE table at the end
    tail = ref[ref.find("\n### Errors"):] if "\n### Errors" in ref else ""
    table = {}
    for m in re.finditer(r"^\| `([0-9A-Z]{5})` \|(.*)$", tail, re.M):
        table.setdefault(m.group(1), []).append(m.group(2))
    if not table:
        problems.append("docs/reference.md: no SQLSTATE table (### Errors)")
    for c in sorted(listed_anywhere - set(table)):
        problems.append(f"docs/reference.md: {c} is listed by a function but not in the SQLSTATE table")
    for c, rows in sorted(table.items()):
        if c not in valid:
            problems.append(f"docs/reference.md: SQLSTATE table: {c} is not a PostgreSQL SQLSTATE (nor one of envault's)")
        if c not in listed_anywhere and not any("WARNING" in r for r in rows):
            problems.append(f"docs/reference.md: SQLSTATE table: no function lists {c}")
    return len(ents)


def main():
    ref = open(os.path.join(ROOT, "docs/reference.md"), encoding="utf-8").read()
    funcs, rels, settings = installed()
    problems = []
    documented = {}
    # (data-path functions are written unqualified, procedures with CALL)
    for m in re.finditer(r"^#### `(?:CALL )?(?:envault\.)?(\w+)\((.*?)\)`", ref, re.M):
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
    # and every setting of the reference's table of settings is defined
    section = re.search(r"^## Settings\n(.*?)^## ", ref, re.S | re.M)
    for row in re.findall(r"^\| (`envault\.[^|]*)\|", section.group(1) if section else "", re.M):
        for s in re.findall(r"`envault\.(\w+)`", row):
            if s not in settings:
                problems.append(f"in docs/reference.md but not a setting: envault.{s}")
    sql = open(os.path.join(ROOT, "src/envault.sql"), encoding="utf-8").read()
    check_entries(ref, sql, problems)
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
