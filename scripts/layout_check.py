#!/usr/bin/env python3
"""The workspace's layout rules, checked: no import cycle between the
source files of a crate or between crates, and no `#[path]` include of
another crate's file.

Import cycles: between the source files of the workspace's crates, and
between the crates themselves. A file imports another when it names a path
into it: `crate::a::b` (a/b.rs, or a.rs / a/mod.rs), `super::x` (the parent
module's file, or its child x), or another workspace crate's module
(`ae_core::idx`). Comments and doc comments do not count. Prints every cycle
(strongly connected group of files) and exits 1 if there is one.

usage: scripts/layout_check.py [WORKSPACE_DIR]"""
import os
import re
import sys
import tomllib

root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
members = tomllib.load(open(os.path.join(root, "Cargo.toml"), "rb"))["workspace"]["members"]
crates = {}  # lib name -> src dir
for m in members:
    pkg = tomllib.load(open(os.path.join(root, m, "Cargo.toml"), "rb"))
    name = pkg.get("lib", {}).get("name") or pkg["package"]["name"].replace("-", "_")
    crates[name] = os.path.join(root, m, "src")


def module_file(src, parts):
    """The file of module path `parts` under `src` (the longest that exists)."""
    for n in range(len(parts), 0, -1):
        base = os.path.join(src, *parts[:n])
        for f in (base + ".rs", os.path.join(base, "mod.rs")):
            if os.path.isfile(f):
                return f
    return None


def is_module(src, parts):
    """Whether exactly `parts` is a module file under `src`."""
    base = os.path.join(src, *parts)
    return os.path.isfile(base + ".rs") or os.path.isfile(os.path.join(base, "mod.rs"))


def module_path(src, f):
    rel = os.path.relpath(f, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def expand(tree):
    """`a::{b, c::{d, e}}` → ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    i = tree.find("{")
    if i < 0:
        return [tree.split(" as ")[0]]
    depth, parts, start = 0, [], i + 1
    for j in range(i, len(tree)):
        if tree[j] == "{":
            depth += 1
        elif tree[j] == "}":
            depth -= 1
            if depth == 0:
                parts.append(tree[start:j])
                break
        elif tree[j] == "," and depth == 1:
            parts.append(tree[start:j])
            start = j + 1
    out = []
    for p in parts:
        if p and p != "self":
            out += expand(tree[:i] + p)
    return out


def code(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


out = []  # problems found
edges = {}
crate_edges = {c: set() for c in crates}
for name, src in crates.items():
    for dirpath, _, files in os.walk(src):
        for fn in files:
            if not fn.endswith(".rs"):
                continue
            f = os.path.join(dirpath, fn)
            if os.path.relpath(f, src).startswith("bin"):
                continue
            raw = open(f).read()
            for m in re.finditer(r'#\[path\s*=\s*"([^"]+)"\]', raw):
                target = os.path.normpath(os.path.join(os.path.dirname(f), m.group(1)))
                if not target.startswith(os.path.dirname(src) + os.sep):
                    out.append([f"#[path] in {os.path.relpath(f, root)}", f"another crate's {os.path.relpath(target, root)}"])
            text = code(raw)
            here = module_path(src, f)
            is_mod = fn in ("mod.rs", "lib.rs", "main.rs")
            deps = set()
            paths = [m.group(0).split("::") for m in re.finditer(
                r"\b(?:crate|super|[a-z_][a-z0-9_]*)(?:::[A-Za-z_][A-Za-z0-9_]*)+", text)]
            for u in re.finditer(r"\buse\s+([^;]+);", text):
                paths += [p.split("::") for p in expand(u.group(1))]
            for parts in paths:
                head, rest = parts[0], parts[1:]
                if not rest:
                    continue
                if head == "crate":
                    target = module_file(src, rest)
                elif head == "super":
                    parent = here[:-1] if not is_mod else here[:-1]
                    target = module_file(src, parent + rest) or module_file(src, parent) or os.path.join(src, "lib.rs")
                elif is_module(src, (here if is_mod else here[:-1]) + [head]):
                    # A relative path into a sibling or child module.
                    base = here if is_mod else here[:-1]
                    target = module_file(src, base + [head] + rest)
                    if target and os.path.relpath(target, src).split(os.sep)[:len(base)] != base:
                        target = None
                elif head in crates and head != name:
                    crate_edges[name].add(head)
                    target = module_file(crates[head], rest)
                else:
                    continue
                if target and target != f:
                    deps.add(target)
            edges[f] = deps

# Tarjan's strongly connected components.
index, low, stack, on = {}, {}, [], set()


def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        group = []
        while True:
            w = stack.pop()
            on.discard(w)
            group.append(w)
            if w == v:
                break
        if len(group) > 1:
            out.append(sorted(os.path.relpath(g, root) for g in group))


sys.setrecursionlimit(10000)
for v in list(edges):
    if v not in index:
        visit(v)
for c, ds in crate_edges.items():
    for d in ds:
        if c in crate_edges.get(d, ()):
            out.append([f"crate {c}", f"crate {d}"])
for g in out:
    print("layout: " + " ↔ ".join(g))
print(f"layout: {len(out)} import cycles or cross-crate includes among {len(edges)} files of {len(crates)} crates")
sys.exit(1 if out else 0)
