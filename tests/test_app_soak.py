"""Soak test: 2,000 queries' worth of signals through the real window and queue (tests/soak_queue.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def test_window_survives_2000_queries_with_bounded_memory():
    script = Path(__file__).with_name("soak_queue.py")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, str(script), "2000"], capture_output=True, text=True, timeout=600,
                          env=env)
    assert proc.returncode == 0, f"the window process died:\n{proc.stderr[-3000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["finished"] == 2000 and out["errors"] == 0, out
    assert out["signals"] >= 2000 * 15, out  # the queue alone emits ~19 signals per query
    # a leaking binding drops a reference to True on every emit (about -38,000 here); stored flags add some
    assert out["true_refcount_delta"] > -100, out
    # memory from a quarter of the run to its end: results are kept (small thumbnails, evidence), but
    # nothing may grow with the number of signals; 1,500 queries may add at most 100 KB each
    grown_kb = (out["rss_end_mb"] - out["rss_quarter_mb"]) * 1024
    assert grown_kb < 1500 * 100, out


def test_demo_builds_in_the_window_and_exits_cleanly(tmp_path):
    """``copylens demo`` builds its index in a worker, renders, and leaves through normal interpreter
    shutdown (no ``os._exit``): exit status 0 and no fatal error on the way out."""
    out = tmp_path / "demo.png"
    config = tmp_path / "config"  # where the user's settings would be (QSettings follows XDG_CONFIG_HOME)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(config)}
    proc = subprocess.run([sys.executable, "-m", "copylens.app", "demo", "--data-dir", str(tmp_path / "data"),
                           "--screenshot", str(out), "--timeout", "300"],
                          capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Fatal" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert out.stat().st_size > 10_000
    # a rendering run leaves the user's settings alone: its offscreen window's layout and the demo index
    # in "recent" once reached them, and the next real window opened at the offscreen size
    assert not list(config.rglob("*")), sorted(config.rglob("*"))
