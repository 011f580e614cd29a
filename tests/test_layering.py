"""tests/check_layering.py fails on Qt under core/ and on any import cycle, lazy ones included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import check_layering as layering

ROOT = Path(__file__).resolve().parent.parent


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_lazy_import_cycle_is_found(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "b.py": "def thing():\n    from .c import other\n    return other\n",  # lazy: still a cycle
        "c.py": "from . import a\nother = 1\n",
        "d.py": "from .a import thing\n",  # imports into the cycle, not part of it
    })
    found = layering.check(root, "pkg")
    assert found == ["import cycle: pkg.a <-> pkg.b <-> pkg.c"]


def test_a_package_init_closes_a_cycle_and_type_checking_imports_do_not(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "sub/__init__.py": "from .run import go\n",
        "sub/run.py": "from ..top import x\n",
        "sub/edits.py": "y = 2\n",
        "top.py": "from .sub.edits import y\nx = 1\n",  # runs sub/__init__ -> run -> top
        "typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .top import x\n",
        "user.py": "from .typed import TYPE_CHECKING\n",
    })
    assert layering.check(root, "pkg") == ["import cycle: pkg.sub <-> pkg.sub.run <-> pkg.top"]


def test_qt_under_core_is_found(tmp_path):
    root = _package(tmp_path, {"__init__.py": "", "w.py": "def f():\n    from PySide6 import QtCore\n"})
    assert layering.check(root, "pkg") == [f"{root / 'w.py'}:2: imports PySide6"]


def test_the_real_core_is_clean():
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "check_layering.py")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
