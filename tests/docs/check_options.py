#!/usr/bin/env python3
"""
check_options.py - README's option tables against the parser's own table.

    check_options.py <print_options> <source dir>

print_options prints plugin/options.c's table (the one the parser dispatches from) as
JSON. This compares it with README.md's two option tables ("## Configuration" and
"### Commands ...", each "| option | value | default | meaning |"): the same names, in
the same table and order; per option the same value and default columns (README's code
marks and "\\|" escapes left out) and the meaning column word for word as the table's doc
(the source, from which scripts/gen-man5.py also writes mosquitto-kafka(5)); for a
number, the parser's range written in the value column. Then every plugin_opt_<name> mentioned in the example configurations
(mosquitto.conf.d/), the docs and the manual pages must be an option of the table.
Prints every difference, one a line, and exits 1 if there is any; else prints what it
compared and exits 0. Each run also makes a few differences on a copy of the docs (and of
the table) and fails unless the check finds every one (the self-test).
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HEADER = ["option", "value", "default", "meaning"]
# These describe the spike plugins of their measurements (their own plugin_opt_ options),
# not this plugin's.
NOT_OURS = {"docs/commands-facts.md", "docs/mosquitto-2.0.21.md"}


def docs(src):
    """The files under src that may mention options: README.md first."""
    files = ["README.md"] + sorted(
        glob.glob("mosquitto.conf.d/*", root_dir=src) + glob.glob("docs/*.md", root_dir=src)
        + glob.glob("docs/man/*", root_dir=src) + glob.glob("tests/*/README.md", root_dir=src))
    return [f for f in files if f not in NOT_OURS]


def cells(line):
    """The cells of a markdown table row; "\\|" stays inside a cell."""
    parts = re.split(r"(?<!\\)\|", line.strip())
    return [p.strip() for p in parts[1:-1]]


def plain(text):
    """A cell as the table in options.c writes it: no code marks, "|" unescaped."""
    return text.replace("`", "").replace("\\|", "|").strip()


def readme_tables(path):
    """{table name: [(line number, name, value, default, meaning)]} of README's option
    tables, named by the heading above each ("Configuration", "Commands: ...")."""
    tables = {}
    heading = None
    lines = open(path, encoding="utf-8").read().splitlines()
    fenced = False
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            fenced = not fenced
        m = re.match(r"^#+\s+(.*)$", lines[i])
        if m and not fenced:
            heading = m.group(1).strip()
        if lines[i].startswith("|") and cells(lines[i]) == HEADER:
            rows = []
            i += 2  # the header and the |---| line
            while i < len(lines) and lines[i].startswith("|"):
                c = cells(lines[i])
                if len(c) != 4:
                    rows.append((i + 1, None, f"{len(c)} cells, not 4", "", ""))
                else:
                    rows.append((i + 1, plain(c[0]), plain(c[1]), plain(c[2]), c[3]))
                i += 1
            tables.setdefault(heading, []).extend(rows)
            continue
        i += 1
    return tables


def known(name, options):
    """Is plugin_opt_<name> an option: a name of the table, or under one of its prefixes
    (route_x: route_<name>)? A "*" at the end stands for any property (kafka.*)."""
    for o in options:
        prefix = o["name"].split("<", 1)[0]
        if "<" in o["name"]:
            if name == o["name"] or (name.startswith(prefix) and len(name) > len(prefix)):
                return True
            if name.endswith("*") and name[:-1] == prefix:
                return True
        elif name == o["name"]:
            return True
    return False


def check(options, src):
    """Every difference between options.c's table and the docs under src, one a line,
    and a summary of what was compared."""
    problems = []
    tables = readme_tables(os.path.join(src, "README.md"))

    # README's tables, by the first word of their heading.
    by_table = {}
    for heading, rows in tables.items():
        by_table.setdefault(heading.split(":")[0].split()[0], []).extend(rows)
    for t in sorted({o["table"] for o in options} | set(by_table)):
        want = [o for o in options if o["table"] == t]
        rows = by_table.get(t)
        if rows is None:
            problems.append(f"README.md: no option table under a heading '{t}' "
                            f"(options.c has {len(want)} options for it)")
            continue
        if not want:
            problems.append(f"README.md: an option table under '{t}', which options.c's "
                            f"table does not have")
            continue
        readme_names = [r[1] for r in rows]
        for k, (line, name, value, dflt, meaning) in enumerate(rows):
            if name is None:
                problems.append(f"README.md:{line}: {value}")
                continue
            o = next((o for o in options if o["name"] == name), None)
            if o is None:
                problems.append(f"README.md:{line}: option '{name}' is not in options.c's "
                                f"table (the parser does not know it)")
                continue
            if readme_names.index(name) != k:
                problems.append(f"README.md:{line}: {name}: a second row")
            if o["table"] != t:
                problems.append(f"README.md:{line}: option '{name}' is in README's {t} "
                                f"table, options.c says {o['table']}")
            if value != o["value"]:
                problems.append(f"README.md:{line}: {name}: value column '{value}', "
                                f"options.c says '{o['value']}'")
            if dflt != o["default"]:
                problems.append(f"README.md:{line}: {name}: default column '{dflt}', "
                                f"options.c says '{o['default']}'")
            if "min" in o and f"{o['min']}..{o['max']}" not in value:
                problems.append(f"README.md:{line}: {name}: the value column does not say "
                                f"the range the parser takes, {o['min']}..{o['max']}")
            if not o.get("doc"):
                problems.append(f"README.md:{line}: {name}: options.c's table has no doc "
                                f"(the meaning column's text)")
            elif meaning.replace("\\|", "|") != o["doc"]:
                have = meaning.replace("\\|", "|")
                at = next((i for i, (a, b) in enumerate(zip(have, o["doc"])) if a != b),
                          min(len(have), len(o["doc"])))
                problems.append(f"README.md:{line}: {name}: meaning column differs from "
                                f"options.c's doc at character {at + 1}: README "
                                f"'...{have[max(0, at - 20):at + 40]}...', options.c "
                                f"'...{o['doc'][max(0, at - 20):at + 40]}...' (the doc in "
                                f"options.c is the source: copy it here word for word)")
        for o in want:
            if o["name"] not in readme_names:
                problems.append(f"README.md: option '{o['name']}' of options.c's table is "
                                f"not in README's {t} table")
        order = [n for n in readme_names if n in [o["name"] for o in want]]
        expected = [o["name"] for o in want if o["name"] in readme_names]
        if order != expected:
            at = next(i for i, (a, b) in enumerate(zip(order, expected)) if a != b)
            problems.append(f"README.md: the {t} table's order differs from options.c's at "
                            f"row {at + 1}: '{order[at]}' where options.c has "
                            f"'{expected[at]}'")

    # Every plugin_opt_ the docs and examples mention.
    files = docs(src)
    mentions = 0
    for rel in files:
        text = open(os.path.join(src, rel), encoding="utf-8").read()
        if rel.startswith("docs/man/"):  # roff: fonts and escaped hyphens left out
            text = re.sub(r"\\f[BIRP]", "", text).replace("\\-", "-")
        for n, line in enumerate(text.splitlines(), 1):
            for m in re.finditer(r"plugin_opt_([A-Za-z0-9_.<>{}*-]*)", line):
                name = m.group(1).rstrip(".")
                if name in ("", "*") or name.startswith("<"):
                    continue  # plugin_opt_<name>, plugin_opt_*: any option
                if re.match(r":\s*unknown option", line[m.end():]):
                    continue  # an example of the error a typo gets
                mentions += 1
                if not known(name, options):
                    problems.append(f"{rel}:{n}: plugin_opt_{name} is not an option of "
                                    f"options.c's table")

    counts = ", ".join(f"{t} {len([o for o in options if o['table'] == t])}"
                       for t in sorted({o["table"] for o in options}))
    summary = (f"README's tables agree with options.c's {len(options)} options ({counts}): "
               f"names, order, value, default and meaning columns, ranges; {mentions} "
               f"plugin_opt_ mentions in {len(files)} docs and examples are options")
    return problems, summary


def edit(path, old, new):
    text = open(path, encoding="utf-8").read()
    assert old in text, f"self-test: '{old}' not in {path}"
    open(path, "w", encoding="utf-8").write(text.replace(old, new, 1))


def self_test(options, src):
    """The check finds each of a few differences made on a copy of the docs (or of the
    table). Returns the failures."""
    row = next(ln for ln in open(os.path.join(src, "README.md"), encoding="utf-8")
               if ln.startswith("| `buffer_mb` |"))
    mutations = [
        ("README default changed", "README.md", "| `10` |", "| `5` |", None,
         "stats_interval: default column '5'"),
        ("README meaning changed", "README.md", "this often (retained)",
         "this often (kept)", None, "stats_interval: meaning column differs"),
        ("README value changed", "README.md", "| `buffer_mb` | 1..4096 |",
         "| `buffer_mb` | 1..4095 |", None, "buffer_mb: value column '1..4095'"),
        ("README row removed", "README.md", row, "", None,
         "option 'buffer_mb' of options.c's table is not in README's Configuration"),
        ("README row added", "README.md", row, row + "| `colour` | a | b | c |\n", None,
         "option 'colour' is not in options.c's table"),
        ("README rows swapped", "README.md", row, "", ("| `durability` |", row),
         "the Configuration table's order differs"),
        ("example names no option", "mosquitto.conf.d/mosquitto-kafka.conf",
         "#plugin_opt_overflow reject", "#plugin_opt_overfow reject", None,
         "plugin_opt_overfow is not an option"),
    ]
    failures = []
    with tempfile.TemporaryDirectory(prefix="mqk-options-doc-") as tmp:
        for what, rel, old, new, insert, expect in mutations:
            copy = os.path.join(tmp, what.replace(" ", "-"))
            for rel_file in docs(src):
                os.makedirs(os.path.dirname(os.path.join(copy, rel_file)), exist_ok=True)
                shutil.copy(os.path.join(src, rel_file), os.path.join(copy, rel_file))
            edit(os.path.join(copy, rel), old, new)
            if insert:
                edit(os.path.join(copy, rel), insert[0], insert[1] + insert[0])
            found, _ = check(options, copy)
            if not any(expect in p for p in found):
                failures.append(f"self-test: {what}: not found ({expect!r}); found: {found}")
    # The table changed instead: a range, a new option.
    changed = [dict(o, max=100) if o["name"] == "stats_interval" else
               dict(o, doc=o["doc"] + " More.") if o["name"] == "buffer_mb" else o
               for o in options]
    changed.append({"name": "colour", "table": "Configuration", "value": "a", "default": "b"})
    found, _ = check(changed, src)
    for expect in ["stats_interval: the value column does not say the range the parser "
                   "takes, 0..100", "option 'colour' of options.c's table is not in README",
                   "buffer_mb: meaning column differs from options.c's doc"]:
        if not any(expect in p for p in found):
            failures.append(f"self-test: table changed: not found ({expect!r}); found: {found}")
    return failures, len(mutations) + 3


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    program, src = sys.argv[1], sys.argv[2]
    out = subprocess.run([program], check=True, capture_output=True, text=True, timeout=10)
    options = json.loads(out.stdout)
    problems, summary = check(options, src)
    for p in problems:
        print(p)
    failures, n = self_test(options, src)
    for f in failures:
        print(f)
    if problems:
        print(f"options_doc: {len(problems)} difference(s) between the docs and options.c")
    if failures:
        print(f"options_doc: the self-test missed {len(failures)} of {n} differences")
    if problems or failures:
        return 1
    print(f"options_doc: {summary}")
    print(f"options_doc: self-test: each of {n} differences made on a copy was found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
