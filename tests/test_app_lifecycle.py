"""Object lifetimes in the window: folders listed off the GUI thread, replaced engines released, a close
that never waits on the GUI thread."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading  # noqa: E402
import time  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from copylens.app import main_window as mw  # noqa: E402
from copylens.app.workers import JobWorker  # noqa: E402
from copylens.core.progress import Progress  # noqa: E402

pytestmark = [pytest.mark.gui]


class FakeEngine:
    def __init__(self, name: str) -> None:
        self.info = SimpleNamespace(name=name, num_references=3, descriptors=["local:rootsift"], path=name,
                                    size_bytes=0)
        self.closed = 0
        self.config = SimpleNamespace(copy_share=None)
        self.calibrated_share = None  # an uncalibrated index: no share of copies to move scores from

    def set_copy_share(self, share) -> None:
        self.config.copy_share = share

    @property
    def score_share(self):
        return self.config.copy_share if self.config.copy_share is not None else self.calibrated_share

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def window(qtbot, tmp_path):
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = mw.MainWindow(store=store, data_dir=tmp_path / "data")
    qtbot.addWidget(win)
    yield win
    win.pool.shutdown()


def _slow_job(steps: int, seen: list):
    for i in range(steps):
        seen.append(i)
        time.sleep(0.02)
        yield Progress("slow", i + 1, steps)
    return "done"


def test_dropped_folder_is_listed_in_a_worker(qtbot, window, tmp_path, monkeypatch):
    folder = tmp_path / "drop"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "a.jpg", "sub/c.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    listed_on = []
    real = mw.scan_images
    monkeypatch.setattr(mw, "scan_images", lambda p: listed_on.append(threading.get_ident()) or real(p))
    with qtbot.waitSignals([window.queue.item_added] * 3, timeout=5000):
        assert window.add_paths([folder]) == 0  # nothing queued synchronously: the listing is in a worker
    assert listed_on and listed_on[0] != threading.get_ident()
    assert [it.request.label for it in window.queue.items] == ["a.jpg", "b.png", "c.png"]


def test_empty_folder_is_reported(qtbot, window, tmp_path):
    (tmp_path / "empty").mkdir()
    window.add_paths([tmp_path / "empty"])
    qtbot.waitUntil(lambda: len(window.notifications.messages) > 0, timeout=5000)
    assert window.notifications.messages[-1][2] == "the folder holds no images"


def test_replaced_engine_is_closed_once_its_workers_stop(qtbot, window):
    first, second = FakeEngine("first"), FakeEngine("second")
    window._on_engine("first", first)
    seen: list[int] = []
    w = window.pool.start(JobWorker(lambda: _slow_job(15, seen), name="busy", uses=first))
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=5000)
    window._on_engine("second", second)
    assert first.closed == 0 and window._retired == [first]  # still in use by the running worker
    with qtbot.waitSignal(w.signals.finished, timeout=5000):
        pass
    qtbot.waitUntil(lambda: first.closed == 1, timeout=5000)
    assert window._retired == [] and second.closed == 0 and window.engine is second


def test_close_does_not_wait_for_workers(qtbot, window):
    eng = FakeEngine("idx")
    window._on_engine("idx", eng)
    window.show()
    seen: list[int] = []
    window.pool.start(JobWorker(lambda: _slow_job(500, seen), name="endless", uses=eng))
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=5000)
    window.close()  # returns at once: the worker is asked to stop, the window hides
    assert not window.isVisible() and eng.closed == 0
    with qtbot.waitSignal(window.pool.drained, timeout=5000):
        pass
    qtbot.waitUntil(lambda: eng.closed == 1, timeout=5000)
    assert len(seen) < 500  # cancelled at a progress report, not run to the end


def test_cancelled_queries_show_as_cancelled_and_retry_all_reruns_them(qtbot, window):
    from copylens.app.jobs import QueryRequest

    from soak_queue import InstantEngine

    q = window.queue
    pixels = np.full((40, 50, 3), 90, np.uint8)
    for i in range(4):
        q.add(QueryRequest(q.next_id(), f"q{i}", pixels=pixels))
    q.cancel()  # no engine yet: all four were waiting
    assert [it.state for it in q.items] == ["cancelled"] * 4
    window.queue_panel._refresh(0)
    assert "cancelled" in window.queue_panel._items[0].text()
    window.queue_panel.filter.setCurrentText("Failed or cancelled")
    assert window.queue_panel.visible_rows() == [0, 1, 2, 3]
    q.set_engine(InstantEngine())
    with qtbot.waitSignal(q.idle, timeout=10000):
        assert q.retry_all() == 4
    assert [it.state for it in q.items] == ["done"] * 4 and q.num_finished == 4
    assert window.queue_panel.visible_rows() == []  # none failed or cancelled any more
