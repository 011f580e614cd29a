"""CI check of core/'s layering: nothing under core/ imports Qt (PySide6, PyQt, shiboken, pytestqt,
copylens.app), and no module of core/ takes part in an import cycle.

Reads the source with ``ast`` so that a lazy import inside a function is caught too (a lazy import that
closes a cycle hides it, it does not remove it). Exit status 1 lists every offence.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FORBIDDEN = ("PySide6", "PySide2", "PyQt5", "PyQt6", "shiboken6", "pytestqt", "qtpy", "copylens.app")


def offences(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against the package
                    names = ["copylens.app"] if (node.module or "").startswith("app") and node.level > 1 else []
                else:
                    names = [node.module or ""]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                    "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                names = [str(node.args[0].value)]
            for name in names:
                if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                    found.append(f"{path}:{node.lineno}: imports {name}")
    return found


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports inside ``if TYPE_CHECKING:`` blocks (they never run)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                for n in ast.walk(sub):
                    if isinstance(n, ast.Import | ast.ImportFrom):
                        lines.add(n.lineno)
    return lines


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> modules of the same package it imports, at module level or lazily inside functions
    (a lazy import that closes a cycle is still a cycle); ``from .x import name`` counts as importing
    ``.x.name`` when that is a module, else ``.x``."""
    mods = {_module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skip = _type_checking_only(tree)
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in mods else stem for a in node.names]
            own = {mod.rsplit(".", k)[0] for k in range(1, mod.count(".") + 1)}  # the importer's packages
            for t in targets:
                while t and t not in mods:  # "pkg.mod.attr" -> "pkg.mod"
                    t = t.rpartition(".")[0]
                # importing pkg.sub.mod also runs pkg/sub/__init__.py (unless it is the importer's own)
                chain = [t.rsplit(".", k)[0] for k in range(0, t.count(".") + 1)] if t else []
                for m in chain:
                    if m in mods and m != mod and m not in own and m.startswith(package):
                        graph[mod].add(m)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def check(root: Path, package: str = "copylens.core") -> list[str]:
    """Every problem under ``root``: Qt imports, then import cycles."""
    bad = offences(root)
    for comp in cycles(import_graph(root, package)):
        bad.append(f"import cycle: {' <-> '.join(comp)}")
    return bad


def main() -> int:
    root = Path(__file__).resolve().parent.parent / "core"
    bad = check(root)
    for line in bad:
        print(line, file=sys.stderr)
    print(f"layering: {len(bad)} problem(s) under core/ (Qt imports, import cycles)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
