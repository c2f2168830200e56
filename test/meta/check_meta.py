#!/usr/bin/env python3
"""Check META.json against the rules of the PGXN Meta Spec 1.0.0 that a
distribution's file can break, and against the tree it describes:

- the mandatory keys (name, abstract, maintainer, license, provides,
  meta-spec, version) with their types; no unknown top-level key unless
  it starts with "x_" or "X_";
- name and extension names: at least two characters, no slash, backslash,
  control character or space; versions are semantic versions;
- license: one of the spec's names, or a map of names to URLs;
- provides: each extension has file and version (docfile, abstract
  optional), and its file and docfile exist;
- prereqs: phases configure/build/test/runtime/develop, relations
  requires/recommends/suggests/conflicts, versions as the spec writes
  them (semantic versions, "0", or comparisons);
- release_status: stable, testing or unstable; resources, tags, no_index
  with their types; meta-spec.version is "1.0.0";
- the versions agree with envault.control's default_version.

Exits non-zero with every problem found, one per line."""

import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+)?$")
TERM = re.compile(r"^[^/\\\s\x00-\x1f]{2,}$")
LICENSES = {"agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2",
            "bsd", "freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2",
            "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit", "mozilla_1_0",
            "mozilla_1_1", "openssl", "perl_5", "postgresql", "qpl_1_0",
            "ssleay", "sun", "zlib", "open_source", "restricted",
            "unrestricted", "unknown"}
TOP = {"name", "abstract", "maintainer", "license", "provides", "meta-spec",
       "version", "description", "generated_by", "no_index", "prereqs",
       "release_status", "resources", "tags"}
PHASES = {"configure", "build", "test", "runtime", "develop"}
RELATIONS = {"requires", "recommends", "suggests", "conflicts"}
VERSION_RANGE = re.compile(r"^\s*(?:(?:[<>]=?|[!=]=)\s*)?(0|(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+)?)\s*$")

problems = []


def bad(msg):
    problems.append(msg)


def check_version_range(where, v):
    if not isinstance(v, str) or not all(VERSION_RANGE.match(p) for p in v.split(",")):
        bad(f"{where}: not a version or version range: {v!r}")


def main():
    with open(os.path.join(ROOT, "META.json"), encoding="utf-8") as f:
        meta = json.load(f, object_pairs_hook=lambda pairs: dup_check(pairs))
    for k in ("name", "abstract", "maintainer", "license", "provides", "meta-spec", "version"):
        if k not in meta:
            bad(f"missing mandatory key {k!r}")
    for k in meta:
        if k not in TOP and not k.startswith(("x_", "X_")):
            bad(f"unknown top-level key {k!r}")
    if not TERM.match(meta.get("name", "")):
        bad("name: not a term")
    for k in ("abstract", "description", "generated_by"):
        if k in meta and (not isinstance(meta[k], str) or not meta[k].strip()):
            bad(f"{k}: not a non-empty string")
    if not SEMVER.match(str(meta.get("version", ""))):
        bad("version: not a semantic version")
    m = meta.get("maintainer")
    if not (isinstance(m, str) and m) and not (isinstance(m, list) and m and all(isinstance(x, str) and x for x in m)):
        bad("maintainer: not a string or a list of strings")
    lic = meta.get("license")
    if isinstance(lic, str):
        if lic not in LICENSES:
            bad(f"license: unknown name {lic!r}")
    elif isinstance(lic, list):
        if not lic or any(x not in LICENSES for x in lic):
            bad("license: unknown name in list")
    elif not (isinstance(lic, dict) and lic and all(isinstance(v, str) for v in lic.values())):
        bad("license: not a name, list of names or map of names to URLs")
    provides = meta.get("provides")
    if not isinstance(provides, dict) or not provides:
        bad("provides: not a non-empty map")
    else:
        for ext, p in provides.items():
            if not TERM.match(ext):
                bad(f"provides: {ext!r} is not a term")
            if not isinstance(p, dict) or "file" not in p or "version" not in p:
                bad(f"provides.{ext}: file and version are mandatory")
                continue
            if not SEMVER.match(p["version"]):
                bad(f"provides.{ext}.version: not a semantic version")
            for k in ("file", "docfile"):
                if k in p and not os.path.isfile(os.path.join(ROOT, p[k])):
                    bad(f"provides.{ext}.{k}: {p[k]} does not exist")
            for k in p:
                if k not in ("file", "docfile", "version", "abstract") and not k.startswith(("x_", "X_")):
                    bad(f"provides.{ext}: unknown key {k!r}")
    for phase, rels in meta.get("prereqs", {}).items():
        if phase not in PHASES:
            bad(f"prereqs: unknown phase {phase!r}")
        for rel, reqs in rels.items():
            if rel not in RELATIONS:
                bad(f"prereqs.{phase}: unknown relation {rel!r}")
            for name, v in reqs.items():
                check_version_range(f"prereqs.{phase}.{rel}.{name}", v)
    if meta.get("release_status", "stable") not in ("stable", "testing", "unstable"):
        bad("release_status: not stable, testing or unstable")
    tags = meta.get("tags", [])
    if not isinstance(tags, list) or any(not isinstance(t, str) or not 1 <= len(t) <= 255 or "/" in t or "\\" in t for t in tags):
        bad("tags: not a list of tags")
    for k, v in meta.get("no_index", {}).items():
        if k not in ("file", "directory") or not isinstance(v, list):
            bad(f"no_index.{k}: not file or directory with a list")
    for k, v in meta.get("resources", {}).items():
        if k not in ("homepage", "bugtracker", "repository") and not k.startswith(("x_", "X_")):
            bad(f"resources: unknown key {k!r}")
    spec = meta.get("meta-spec", {})
    if spec.get("version") != "1.0.0":
        bad("meta-spec.version: not 1.0.0")
    with open(os.path.join(ROOT, "envault.control"), encoding="utf-8") as f:
        control = re.search(r"^default_version = '([^']*)'", f.read(), re.M).group(1)
    if meta.get("version") != control:
        bad(f"version {meta.get('version')} is not envault.control's {control}")
    if isinstance(provides, dict) and provides.get("envault", {}).get("version") != control:
        bad(f"provides.envault.version is not envault.control's {control}")


def dup_check(pairs):
    keys = [k for k, _ in pairs]
    for k in set(keys):
        if keys.count(k) > 1:
            bad(f"duplicate key {k!r}")
    return dict(pairs)


if __name__ == "__main__":
    main()
    for p in problems:
        print("META.json:", p)
    if problems:
        sys.exit(1)
    print("META.json: ok (PGXN Meta Spec 1.0.0, version " + open(os.path.join(ROOT, "envault.control")).read().split("default_version = '")[1].split("'")[0] + ")")
