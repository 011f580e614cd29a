"""The query queue: requests run one at a time in the background; the GUI only watches its signals."""

from __future__ import annotations

import itertools
from collections import Counter, deque
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from copylens.core.errors import ImageLoadError

from .jobs import QueryOutcome, QueryRequest, query_job
from .workers import JobWorker, WorkerPool

STATES = ("waiting", "running", "done", "error", "cancelled")


@dataclass
class QueueItem:
    request: QueryRequest
    state: str = "waiting"
    thumb: QImage | None = None
    outcome: QueryOutcome | None = None
    error: str = ""
    fraction: float = 0.0  # progress of this item while running
    review: str = ""  # the reviewer's verdict on the query: "copy", "no copy", "unsure" or "" (unreviewed)
    thumb_shown: bool = False  # the panel has drawn ``thumb`` (icons are built once, not on every change)


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(file or subject, human reason) for the notification area: never a traceback."""
    if isinstance(exc, ImageLoadError):
        return exc.path, exc.reason
    return type(exc).__name__, str(exc) or "unexpected error"


class QueryQueue(QObject):
    item_added = Signal(int)
    item_changed = Signal(int)
    item_finished = Signal(int)  # a query settled: its results arrived, it failed or was cancelled
    cleared = Signal()  # every item was removed
    progress = Signal(float)  # overall fraction of the queue done, in [0, 1]
    idle = Signal()  # nothing left to run
    failed = Signal(str, str)  # (subject, reason) for the notification area

    def __init__(self, pool: WorkerPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = pool
        self.items: list[QueueItem] = []
        self.counts: Counter[str] = Counter()  # items per state, kept in step with every state change
        self.reviews: Counter[str] = Counter()  # items per review verdict ("" not counted)
        self._waiting: deque[int] = deque()  # rows in the order they will run
        self._generation = 0  # bumped by clear()
        self.engine = None
        self.top_k = 10
        self._current: tuple[int, JobWorker] | None = None
        self._ids = itertools.count(1)
        self._pastes = itertools.count(1)

    # ---- adding -------------------------------------------------------------------------------------
    def next_id(self) -> str:
        return f"q{next(self._ids)}"

    def next_paste_label(self) -> str:
        return f"<clipboard {next(self._pastes)}>"

    def add(self, request: QueryRequest) -> int:
        self.items.append(QueueItem(request))
        row = len(self.items) - 1
        self.counts["waiting"] += 1
        self._waiting.append(row)
        self.item_added.emit(row)
        self._emit_progress()
        self._pump()
        return row

    def restore(self, saved) -> None:
        """Re-add queries of an earlier session (:class:`~.session.SavedQuery`): finished ones with their
        results (no thumbnails yet), the rest in their state (waiting ones run again)."""
        for q in saved:
            req = QueryRequest(q.query_id, q.label, path=q.path)
            item = QueueItem(req, q.state, error=q.error,
                             outcome=QueryOutcome(req, q.result, {}) if q.result is not None else None)
            if item.state == "done" and item.outcome is None:
                item.state = "waiting"
            self.items.append(item)
            row = len(self.items) - 1
            self.counts[item.state] += 1
            if item.state == "waiting":
                self._waiting.append(row)
            self.item_added.emit(row)
            if item.state == "done":
                self.item_finished.emit(row)
        n = max([int(q.query_id[1:]) for q in saved if q.query_id[1:].isdigit()] + [0])
        self._ids = itertools.count(n + 1)
        self._emit_progress()
        self._pump()

    def clear(self) -> None:
        """Cancel what runs and forget every query."""
        self.cancel()
        self.items.clear()
        self.counts.clear()
        self.reviews.clear()
        self._waiting.clear()
        self._generation += 1
        self.cleared.emit()
        self._emit_progress()

    def set_engine(self, engine, top_k: int | None = None) -> None:
        """Use ``engine`` for queries still waiting (and rerun nothing already done)."""
        self.engine = engine
        if top_k is not None:
            self.top_k = top_k
        self._pump()

    # ---- running ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._current is not None

    @property
    def busy(self) -> bool:
        """A query runs or waits."""
        return self._current is not None or self.counts["waiting"] > 0

    def _set_state(self, row: int, state: str) -> None:
        """The one place an item's state changes, so ``counts`` never drifts (O(1) per change: a queue of
        thousands of queries must not make every signal walk the whole list on the GUI thread)."""
        it = self.items[row]
        self.counts[it.state] -= 1
        self.counts[state] += 1
        it.state = state
        if state == "waiting":
            self._waiting.append(row)

    def set_review(self, row: int, review: str) -> None:
        it = self.items[row]
        if it.review == review:
            return
        if it.review:
            self.reviews[it.review] -= 1
        if review:
            self.reviews[review] += 1
        it.review = review
        self.item_changed.emit(row)

    def _pump(self) -> None:
        if self._current is not None or self.engine is None:
            return
        while self._waiting and self.items[self._waiting[0]].state != "waiting":
            self._waiting.popleft()  # cancelled (or retried twice) since it was queued
        if not self._waiting:
            self._emit_progress()
            self.idle.emit()
            return
        row = self._waiting.popleft()
        item = self.items[row]
        self._set_state(row, "running")
        engine, req, top_k = self.engine, item.request, self.top_k
        worker = JobWorker(lambda: query_job(engine, req, top_k, on_decoded=sig.emit), name=req.label,
                           uses=engine)
        sig = _ThumbSignal(worker.signals)
        gen = self._generation  # after clear(), a late signal of this worker must not touch a new row

        def live(fn):
            return lambda *a: fn(*a) if gen == self._generation else None

        sig.thumb.connect(live(lambda img, r=row: self._on_thumb(r, img)))
        worker.signals.progress.connect(live(lambda p, r=row: self._on_progress(r, p)))
        worker.signals.result.connect(live(lambda out, r=row: self._on_result(r, out)))
        worker.signals.error.connect(live(lambda exc, r=row: self._on_error(r, exc)))
        worker.signals.cancelled.connect(live(lambda r=row: self._on_cancelled(r)))
        worker.signals.finished.connect(self._on_finished)
        self._current = (row, worker)
        self.item_changed.emit(row)
        self.pool.start(worker)

    def cancel(self) -> None:
        """Stop the running query and drop every waiting one."""
        while self._waiting:
            i = self._waiting.popleft()
            if self.items[i].state == "waiting":
                self._set_state(i, "cancelled")
                self.item_changed.emit(i)
                self.item_finished.emit(i)
        if self._current is not None and self._current[0] < len(self.items):
            self._current[1].cancel()
        self._emit_progress()

    def retry_all(self) -> int:
        """Queue again every failed or cancelled query; returns how many."""
        rows = [i for i, it in enumerate(self.items) if it.state in ("error", "cancelled")]
        for i in rows:
            self.retry(i)
        return len(rows)

    def retry(self, row: int) -> None:
        it = self.items[row]
        if it.state in ("error", "cancelled"):
            self._set_state(row, "waiting")
            it.error, it.fraction = "", 0.0
            self.item_changed.emit(row)
            self._pump()

    # ---- worker callbacks (GUI thread) --------------------------------------------------------------
    def _on_thumb(self, row: int, img: QImage) -> None:
        self.items[row].thumb = img
        self.item_changed.emit(row)

    def _on_progress(self, row: int, p) -> None:
        stage_weight = {"decode": (0.0, 0.1), "thumbnails": (0.9, 0.1)}.get(p.stage, (0.1, 0.8))
        self.items[row].fraction = stage_weight[0] + stage_weight[1] * p.fraction
        self._emit_progress()

    def _on_result(self, row: int, outcome: QueryOutcome) -> None:
        it = self.items[row]
        self._set_state(row, "done")
        it.outcome, it.fraction = outcome, 1.0
        self.item_changed.emit(row)
        self.item_finished.emit(row)

    def _on_error(self, row: int, exc: BaseException) -> None:
        it = self.items[row]
        subject, reason = describe_error(exc)
        self._set_state(row, "error")
        it.error = reason
        self.item_changed.emit(row)
        self.item_finished.emit(row)
        self.failed.emit(it.request.label if subject == it.request.path else subject, reason)

    def _on_cancelled(self, row: int) -> None:
        self._set_state(row, "cancelled")
        self.item_changed.emit(row)
        self.item_finished.emit(row)

    def _on_finished(self) -> None:
        self._current = None
        self._emit_progress()
        self._pump()

    @property
    def num_active(self) -> int:
        """Queries not cancelled."""
        return len(self.items) - self.counts["cancelled"]

    @property
    def num_finished(self) -> int:
        return self.counts["done"] + self.counts["error"]

    def _emit_progress(self) -> None:
        n = self.num_active
        if n == 0:
            self.progress.emit(1.0)
            return
        cur = self._current[0] if self._current is not None else -1
        running = self.items[cur].fraction if 0 <= cur < len(self.items) else 0.0
        self.progress.emit((self.num_finished + running) / n)


class _ThumbSignal(QObject):
    """Carries the query thumbnail out of the worker as soon as it is decoded."""

    thumb = Signal(object)

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)

    def emit(self, img: QImage) -> None:
        self.thumb.emit(img)
