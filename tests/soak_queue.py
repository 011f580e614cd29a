"""Soak: push N queries' worth of signals through the real window and queue, report survival and memory.

Run as a script (``python tests/soak_queue.py N``) so that an interpreter abort, such as PySide6 6.12.0's
``bool_dealloc`` after some thousands of emits, fails the calling test instead of killing pytest. Only the
engine is a stand-in (answering instantly with three matches and a realistic stream of progress
reports); the queue, the workers, the window's panels and every signal between them are the real ones.
Prints one JSON line: queries finished, signals seen, the change in ``True``'s reference count, and the
resident memory at a quarter and at the end of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6.QtCore import QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from copylens.app.jobs import QueryRequest  # noqa: E402
from copylens.app.main_window import MainWindow  # noqa: E402
from copylens.core.progress import Progress  # noqa: E402
from copylens.core.query_input import read_query  # noqa: E402
from copylens.core.results import Evidence, Match, QueryResult, ReferenceInfo  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class InstantEngine:
    """Answers every query at once: 8 search progress reports, then three matches with evidence."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        pts = rng.uniform(0, 60, (30, 2)).astype(np.float32)
        ev = Evidence(pts, pts + 1, np.linspace(0, 1, 30, dtype=np.float32), np.eye(3), None)
        self.matches = [Match(f"ref{i}", 0.9 - 0.3 * i, ev, {"inliers": 30.0}) for i in range(3)]
        self.thumb = np.full((40, 40, 3), 128, np.uint8)

    def search(self, source, query_id: str = "query", top_k: int = 10, on_read=None):
        read = read_query(source, 800)  # the real reading and decoding
        if on_read is not None:
            on_read(read)
        for i in range(8):
            yield Progress("search", i + 1, 8)
        h, w = read.image.pixels.shape[:2]
        return QueryResult(query_id, source.label, (w, h), list(self.matches[:top_k]), query_sha256=read.sha256)

    def thumbnail(self, reference_id: str) -> np.ndarray:
        return self.thumb

    def reference(self, reference_id: str) -> ReferenceInfo:
        return ReferenceInfo(reference_id, f"/refs/{reference_id}.png", "0" * 64, 40, 40, 100)

    def metadata(self, reference_id: str) -> dict[str, str]:
        return {"title": f"title of {reference_id}"}


def main(n: int) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp(prefix="copylens-soak-"))
    store = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(store=store, data_dir=tmp / "data")
    win.show()
    q = win.queue
    seen = {"signals": 0}
    for sig in (q.item_added, q.item_changed, q.progress, q.idle, q.failed):
        sig.connect(lambda *a: seen.__setitem__("signals", seen["signals"] + 1))
    marks: dict[str, int] = {}

    def on_changed(_row: int) -> None:
        if "quarter" not in marks and q.num_finished >= n // 4:
            marks["quarter"] = rss_bytes()

    q.item_changed.connect(on_changed)
    q.idle.connect(lambda: q.num_finished == n and QTimer.singleShot(0, app.quit))
    true_refs = sys.getrefcount(True)
    rng = np.random.default_rng(1)
    for i in range(n):
        pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        q.add(QueryRequest(q.next_id(), f"soak {i}", pixels=pixels))
    q.set_engine(InstantEngine(), top_k=10)
    QTimer.singleShot(600_000, app.quit)
    app.exec()
    out = {"queries": n, "finished": q.num_finished, "errors": q.counts["error"], "signals": seen["signals"],
           "true_refcount_delta": sys.getrefcount(True) - true_refs,
           "rss_quarter_mb": marks.get("quarter", 0) / 2**20, "rss_end_mb": rss_bytes() / 2**20}
    win.close()
    shutil.rmtree(tmp, ignore_errors=True)  # the settings and session files of this run only
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
