#!/usr/bin/env python3
"""check_layering.py: the library's dependencies run one way, checked on the compiled objects (nm), not on includes.

    python3 scripts/check_layering.py OBJECT...      (ctest passes $<TARGET_OBJECTS:trinity_objects>)

An object file depends on another where it calls (or reads) a symbol the other defines. Checked:
  1. no cycle between object files (files -> model -> graph -> backend -> API, each file a node);
  2. the public API (host/trinity.c, trinity_* symbols) is called by no other object of the library;
  3. the backends (cpu_fallback/, cuda/) call nothing of graph/backend.c (the factory and the functions the engine
     calls them through): a backend does not call back up.
Prints one line per violation and exits 1, else prints the object count and exits 0. Needs `nm` (binutils)."""
import collections
import os
import subprocess
import sys


def symbols(path):
    out = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDRBVW":
            defined.add(parts[2])
        elif len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
    return defined, undefined


def name_of(path):
    """cpu_fallback/ops.c from .../trinity_objects.dir/cpu_fallback/ops.c.o"""
    marker = ".dir" + os.sep
    rel = path[path.index(marker) + len(marker):] if marker in path else os.path.basename(path)
    return rel[:-2] if rel.endswith(".o") else rel


def strongly_connected(nodes, edges):
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    return out


def main(paths):
    if not paths:
        print("usage: check_layering.py OBJECT...", file=sys.stderr)
        return 2
    paths = [p for arg in paths for p in arg.split(";") if p]  # a CMake list passed as one argument
    defs, undefs = {}, {}
    for p in paths:
        n = name_of(p)
        defs[n], undefs[n] = symbols(p)
    edges = collections.defaultdict(set)
    why = {}
    for a in defs:
        for b in defs:
            common = undefs[a] & defs[b]
            if a != b and common:
                edges[a].add(b)
                why[(a, b)] = sorted(common)[0]
    problems = []
    for comp in strongly_connected(list(defs), edges):
        if len(comp) > 1:
            ring = sorted(comp)
            example = next(f"{a} calls {why[(a, b)]} of {b}" for a in ring for b in ring if (a, b) in why)
            problems.append("cycle between " + ", ".join(ring) + " (e.g. " + example + ")")
    for a in defs:
        for b in edges[a]:
            if b.startswith("host/trinity.c") and a != b:
                problems.append(f"{a} calls the public API ({why[(a, b)]}): only the command may")
            if b.startswith("graph/backend.c") and (a.startswith("cpu_fallback/") or a.startswith("cuda/")):
                problems.append(f"{a} calls back up into graph/backend.c ({why[(a, b)]})")
    for p in problems:
        print("FAIL " + p)
    if problems:
        return 1
    print(f"check_layering: {len(defs)} objects, no cycle, the API and the backend functions called only from above")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
