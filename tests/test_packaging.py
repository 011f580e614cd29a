"""The PyInstaller one-folder bundle builds, starts offscreen, builds the demo index and renders it.

Runs only where PyInstaller is installed (``pip install -e '.[packaging]'``): the build takes about a
minute and writes 1.7 GB, too much for every CI run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PyInstaller")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_bundle_builds_and_shows_the_demo(tmp_path):
    dist, work = tmp_path / "dist", tmp_path / "build"
    build = subprocess.run([sys.executable, "-m", "PyInstaller", str(ROOT / "packaging" / "copylens.spec"),
                            "--noconfirm", "--distpath", str(dist), "--workpath", str(work)],
                           capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert build.returncode == 0, build.stderr[-3000:]
    app = dist / "CopyLens" / "CopyLens"
    for n in ("copylens.desktop", "copylens.png", "copylens.svg"):
        assert (dist / "CopyLens" / n).is_file()
    shot = tmp_path / "shot.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    run = subprocess.run([str(app), "demo", "--data-dir", str(tmp_path / "data"), "--screenshot", str(shot),
                          "--timeout", "300"], capture_output=True, text=True, timeout=400,
                         env={**env, "QT_QPA_PLATFORM": "offscreen"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert shot.stat().st_size > 10_000
    assert (tmp_path / "data" / "demo" / "demo-index" / "manifest.json").is_file()
