"""Import cycles in a package, as Python runs imports: importing `a.b.c` runs `a` and `a.b` first, so a module
that imports a sibling also imports their package's `__init__` (a package whose `__init__` imports its own
modules then forms a cycle with each of them). import-linter's acyclic_siblings contract sees siblings only.
Prints each cycle; exits 1 when there is one. Usage: python scripts/import_cycles.py [PACKAGE]"""

import sys

import grimp


def cycles(package: str) -> list[list[str]]:
    graph = grimp.build_graph(package, cache_dir=None)
    edges: dict[str, set[str]] = {}
    for m in graph.modules:
        targets = set()
        for imported in graph.find_modules_directly_imported_by(m):
            parts = imported.split(".")
            targets |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}  # the packages it runs on the way
        edges[m] = (targets - {m}) & set(graph.modules)
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == "open":
                found.append(stack[stack.index(n) :] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return found


if __name__ == "__main__":
    found = cycles(sys.argv[1] if len(sys.argv) > 1 else "mtx")
    for c in found:
        print("import cycle: " + " -> ".join(c))
    print(f"{len(found)} import cycles")
    sys.exit(1 if found else 0)
