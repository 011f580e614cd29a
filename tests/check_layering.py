"""CI check: nothing under core/ imports Qt (PySide6, PyQt, shiboken, pytestqt, copylens.app).

Reads the source with ``ast`` so that a lazy import inside a function is caught too. Exit status 1 lists
every offending line.
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


def main() -> int:
    root = Path(__file__).resolve().parent.parent / "core"
    bad = offences(root)
    for line in bad:
        print(line, file=sys.stderr)
    print(f"layering: {len(bad)} Qt import(s) under core/")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
