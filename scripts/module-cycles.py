#!/usr/bin/env python3
"""No import cycle between the modules of one crate.

For every library and binary target of the workspace (from `cargo metadata`),
this builds the graph whose nodes are the target's module files (`lib.rs`,
`config/mod.rs`, `config/scan.rs`, ...) and whose edges are the references
one file makes to another, then fails listing each cycle it finds, with the
lines that make it.

What counts as a reference from file A to file B:
- a `use` of a path that resolves into B (`use crate::b::X`, `use super::X`,
  `use self::b::X`, `use b::X` for a child module `b`), globs included;
- a path in code that does (`crate::b::f()`, `super::X`, `b::f()` for a
  child module `b`, `$crate::...` in a macro).

What does not count:
- `mod b;` itself: declaring a child is not using it;
- a module's use of one of its ancestors (`super::AppState`,
  `crate::StoreError`): an ancestor is the scope a module lives in, the base
  its children build on, as a crate root is for every module;
- a re-export (`pub use`, `pub(crate) use`, ...) of an item of one of the
  module's own descendants: a parent presenting its children's API;
- test code: an item under `#[cfg(test)]` (a `mod tests`, a test-only
  function or import), and the files such a module declares.

So a parent that routes to its children (`api/mod.rs` building the router
from `api::profiles`, which uses `super::AppState`) is no cycle: the parent
is their base. A cycle is two modules neither of which encloses the other
(siblings, cousins, or a parent's child's sibling) reaching each other,
directly or through others: `store::inbound` -> `store::telegram` ->
`store::inbound`, or `store::sidecar` -> `store::capabilities` ->
`store::sidecar`. The way out: move what both need into a module both may
use (a new sibling, or a common ancestor), so that the files form layers.

Inline modules (`mod m { ... }`) belong to the file that holds them. The
scan is lexical (comments, strings and characters removed, then tokens), in
Python 3's standard library only; a path it cannot resolve (an external
crate, a local item) makes no edge.

Usage: python3 scripts/module-cycles.py [WORKSPACE_DIR]   (exit 1 on a cycle)
"""

import json
import os
import re
import subprocess
import sys

TOKEN = re.compile(
    r"""
    (?P<ident>\$?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<path>::)
  | (?P<punct>[{}();,\[\]#*=<>!&|.:+\-/%^@?~$])
  | (?P<num>[0-9][A-Za-z0-9_.]*)
  | (?P<ws>\s+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def strip(text):
    """The text with comments, strings and character literals blanked out
    (newlines kept, so that line numbers stay right)."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        return "".join("\n" if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif re.match(r'(?:b|c)?r#*"', text[i:i + 8]) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            m = re.match(r'(?:b|c)?r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(blank(text[i:j]))
            i = j
        elif c == '"' or (c in "bc" and text.startswith('"', i + 1) and (
                i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"))):
            j = i + (1 if c == '"' else 2)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(blank(text[i:j + 1]))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'", text[i:])
            if m:
                out.append(blank(m.group(0)))
                i += m.end()
            else:  # a lifetime or a label
                out.append(" ")
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def tokens(text):
    """(kind, text, line) of every token but whitespace."""
    line = 1
    result = []
    for m in TOKEN.finditer(strip(text)):
        kind = m.lastgroup
        if kind != "ws":
            result.append((kind, m.group(), line))
        line += m.group().count("\n")
    return result


class Crate:
    """The module tree of one target: module path (a tuple) -> file."""

    def __init__(self, name, root):
        self.name = name
        self.root = root
        self.file_of = {}  # module path -> file it lives in (inline: the holder)
        self.children = {}  # module path -> {child name}
        self.modules = {}  # file -> its module path
        self.edges = {}  # (from file, to file) -> [line of from file]
        self.pending = []
        self.add_file((), root, mod_rs=True)
        while self.pending:
            self.scan(*self.pending.pop())

    def add_file(self, path, file, mod_rs):
        if not os.path.isfile(file) or file in self.modules:
            return
        self.modules[file] = path
        self.file_of[path] = file
        self.children.setdefault(path, set())
        self.pending.append((path, file, mod_rs))

    def child_file(self, file, mod_rs, inline, name, attr_path):
        """The file of `mod name;` declared in `file` inside inline modules
        `inline`."""
        here = os.path.dirname(file)
        if attr_path:
            base = here if (mod_rs or inline) else os.path.join(here, stem(file))
            return os.path.normpath(os.path.join(base, *inline, attr_path) if inline
                                    else os.path.join(here, attr_path))
        base = here if mod_rs else os.path.join(here, stem(file))
        base = os.path.join(base, *inline)
        flat = os.path.join(base, name + ".rs")
        return flat if os.path.isfile(flat) else os.path.join(base, name, "mod.rs")

    def scan(self, path, file, mod_rs):
        with open(file, encoding="utf-8") as f:
            toks = tokens(f.read())
        # First pass: child modules (declared or inline), skipping test items.
        uses, refs = [], []
        stack = [(path, 0, ())]  # (module path, brace depth, inline names)
        depth, i, n = 0, 0, len(toks)
        attr_path = None
        while i < n:
            kind, text, line = toks[i]
            if text == "#" and i + 1 < n and toks[i + 1][1] == "[":
                end = matching(toks, i + 1, "[", "]")
                attr = [t[1] for t in toks[i + 2:end]]
                if attr[:1] == ["path"]:
                    raw = re.search(r'#\s*\[\s*path\s*=\s*"([^"]*)"', source_line(file, line))
                    attr_path = raw.group(1) if raw else None
                if is_cfg_test(attr):
                    i = skip_item(toks, end + 1)
                    attr_path = None
                    continue
                i = end + 1
                continue
            cur, _, inline = stack[-1]
            if text == "mod" and i + 1 < n and toks[i + 1][0] == "ident":
                name = toks[i + 1][1]
                after = toks[i + 2][1] if i + 2 < n else ";"
                self.children.setdefault(cur, set()).add(name)
                if after == ";":
                    child = self.child_file(file, mod_rs, inline, name, attr_path)
                    self.add_file(cur + (name,), child, child.endswith("mod.rs") or bool(attr_path))
                    i += 3
                elif after == "{":
                    self.file_of[cur + (name,)] = file
                    self.children.setdefault(cur + (name,), set())
                    depth += 1
                    stack.append((cur + (name,), depth, inline + (name,)))
                    i += 3
                else:
                    i += 2
                attr_path = None
                continue
            attr_path = None if kind == "ident" and text not in ("pub", "crate", "in") else attr_path
            if text == "use":
                end = i + 1
                while end < n and toks[end][1] != ";":
                    end += 1
                reexport = is_pub(toks, i)
                uses.append((cur, toks[i + 1:end], line, reexport))
                i = end + 1
                continue
            if text == "{":
                depth += 1
            elif text == "}":
                if len(stack) > 1 and stack[-1][1] == depth:
                    stack.pop()
                depth -= 1
            elif kind == "ident" and i + 1 < n and toks[i + 1][1] == "::" and (
                    i == 0 or toks[i - 1][1] != "::"):
                j = i
                segs = []
                while j < n and toks[j][0] == "ident":
                    segs.append(toks[j][1])
                    if j + 1 < n and toks[j + 1][1] == "::":
                        j += 2
                    else:
                        break
                refs.append((cur, segs, line))
                i = j + 1
                continue
            i += 1
        self.deferred = getattr(self, "deferred", [])
        self.deferred.append((file, uses, refs))

    def resolve_all(self):
        for file, uses, refs in getattr(self, "deferred", []):
            for cur, toks, line, reexport in uses:
                for segs in use_paths(toks):
                    self.edge(file, cur, segs, line, reexport)
            for cur, segs, line in refs:
                self.edge(file, cur, segs, line, False)

    def absolute(self, cur, segs):
        """The module path `segs` names from module `cur`, and the rest."""
        if not segs:
            return None
        head = segs[0]
        if head in ("crate", "$crate"):
            base, rest = (), segs[1:]
        elif head in ("super", "self"):
            base, rest = cur, segs
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    if not base:
                        return None
                    base = base[:-1]
                rest = rest[1:]
        elif head in self.children.get(cur, ()):
            base, rest = cur, segs
        else:
            return None
        module = base
        for seg in rest:
            if seg in self.children.get(module, ()):
                module = module + (seg,)
            else:
                break
        return module

    def edge(self, file, cur, segs, line, reexport):
        module = self.absolute(cur, segs)
        if module is None:
            return
        target = self.file_of.get(module)
        if target is None or target == file:
            return
        own = self.modules[file]
        if reexport and module[:len(own)] == own:
            return
        if own[:len(module)] == module:
            return  # a module using an ancestor: the scope it lives in
        self.edges.setdefault((file, target), []).append(line)


def stem(file):
    return os.path.splitext(os.path.basename(file))[0]


def source_line(file, line):
    with open(file, encoding="utf-8") as f:
        return f.read().split("\n")[line - 1]


def matching(toks, i, open_, close):
    depth = 0
    for j in range(i, len(toks)):
        if toks[j][1] == open_:
            depth += 1
        elif toks[j][1] == close:
            depth -= 1
            if depth == 0:
                return j
    return len(toks) - 1


def is_cfg_test(attr):
    """`cfg(test)`, or a `cfg(all(test, ...))`: test-only code."""
    if attr[:2] != ["cfg", "("]:
        return False
    words = [a for a in attr if a not in ("(", ")", ",")]
    return words[1:2] == ["test"] or (words[1:3] == ["all", "test"])


def skip_item(toks, i):
    """The index after the item starting at `i` (its attributes included)."""
    n = len(toks)
    while i < n and toks[i][1] == "#":
        i = matching(toks, i + 1, "[", "]") + 1
    paren = 0
    while i < n:
        t = toks[i][1]
        if t in "([":
            paren += 1
        elif t in ")]":
            paren -= 1
        elif t == ";" and paren == 0:
            return i + 1
        elif t == "{" and paren == 0:
            return matching(toks, i, "{", "}") + 1
        i += 1
    return n


def is_pub(toks, i):
    """Whether the `use` at `i` is a re-export (`pub use`, `pub(crate) use`)."""
    j = i - 1
    if j >= 0 and toks[j][1] == ")":
        while j >= 0 and toks[j][1] != "(":
            j -= 1
        j -= 1
    return j >= 0 and toks[j][1] == "pub"


def use_paths(toks):
    """The paths of a use tree (`a::{b, c::{d, e as f}, *}`), each as a list
    of segments up to the first that is not a name."""
    out = []

    def walk(i, prefix):
        segs = list(prefix)
        while i < len(toks):
            t = toks[i][1]
            if t == "{":
                i += 1
                while i < len(toks) and toks[i][1] != "}":
                    i = walk(i, segs)
                    if i < len(toks) and toks[i][1] == ",":
                        i += 1
                return i + 1
            if t in (",", "}"):
                break
            if t == "::":
                i += 1
                continue
            if t == "as":
                i += 2
                continue
            if t == "*" or toks[i][0] == "ident":
                if t != "*":
                    segs.append(t)
                i += 1
                continue
            i += 1
        if segs:
            out.append(segs)
        return i

    if toks and toks[0][1] == "::":
        return []
    walk(0, [])
    return out


def cycles(crate):
    """The strongly connected components of more than one file (Tarjan)."""
    graph = {}
    for (a, b) in crate.edges:
        graph.setdefault(a, set()).add(b)
    index, low, on, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(crate.modules):
        if v not in index:
            visit(v)
    return found


def module_name(crate, file):
    path = crate.modules[file]
    return "::".join((crate.name,) + path) if path else crate.name + " (root)"


def main():
    workspace = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--no-deps", "--format-version", "1"], cwd=workspace))
    members = set(meta["workspace_members"])
    failed = False
    checked = 0
    for package in meta["packages"]:
        if package["id"] not in members:
            continue
        for target in package["targets"]:
            if not set(target["kind"]) & {"lib", "bin", "proc-macro", "rlib"}:
                continue
            crate = Crate(target["name"].replace("-", "_"), target["src_path"])
            crate.resolve_all()
            checked += 1
            for comp in cycles(crate):
                failed = True
                names = ", ".join(module_name(crate, f) for f in comp)
                print(f"cycle in {target['name']}: {names}")
                members_ = set(comp)
                for (a, b), lines in sorted(crate.edges.items()):
                    if a in members_ and b in members_:
                        where = os.path.relpath(a, workspace)
                        shown = ", ".join(str(n) for n in sorted(set(lines))[:5])
                        print(f"  {module_name(crate, a)} -> {module_name(crate, b)}"
                              f"  ({where}:{shown})")
    if failed:
        print("module cycles found: move what both sides need where both may depend on it")
        return 1
    print(f"no module cycle in {checked} targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
