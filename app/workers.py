"""Background work: a ``QRunnable`` that drives a core generator job off the GUI thread.

The job is built by a factory *inside* the worker thread, so that even its set-up (decoding, opening an
index) never runs on the GUI thread. Each yielded :class:`~copylens.core.progress.Progress` is emitted as
``progress``; cancellation is checked between yields; exactly one of ``result`` / ``error`` / ``cancelled``
follows, then ``finished``. Signals are queued to the receiver's (GUI) thread by Qt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from copylens.core.errors import Cancelled
from copylens.core.progress import Job, Progress, run_job

log = logging.getLogger(__name__)


def call_job(fn: Callable[[], Any]) -> Job[Any]:
    """Wrap a plain function as a job (no progress reports; still cancellable before it starts)."""
    return fn()
    yield Progress("call", 0, 0)  # noqa: B901 - makes this a generator function


class WorkerSignals(QObject):
    progress = Signal(object)  # Progress
    result = Signal(object)  # the job's return value
    error = Signal(object)  # the exception (never re-raised; rendered in the notification area)
    cancelled = Signal()
    finished = Signal()


class JobWorker(QRunnable):
    """Run ``job_factory()`` (a generator job) to completion in a thread pool thread."""

    def __init__(self, job_factory: Callable[[], Job[Any]], name: str = "job", uses: object = None) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the Python side owns it (see WorkerPool)
        self.signals = WorkerSignals()
        self.name = name
        self.job_factory = job_factory
        self.uses = uses  # a resource the job needs alive (an engine): see WorkerPool.in_use
        self.thread_ident: int | None = None  # which thread ran it (tests check it is not the GUI one)
        self._stop = threading.Event()

    def cancel(self) -> None:
        self._stop.set()

    @property
    def is_cancelled(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        self.thread_ident = threading.get_ident()
        s = self.signals
        try:
            if self._stop.is_set():
                raise Cancelled(f"{self.name} cancelled before it started")
            value = run_job(self.job_factory(), on_progress=s.progress.emit, should_stop=self._stop.is_set)
            if self._stop.is_set():
                raise Cancelled(f"{self.name} cancelled")
        except Cancelled:
            s.cancelled.emit()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a notification, never a crash
            log.debug("%s failed", self.name, exc_info=True)
            s.error.emit(exc)
        else:
            s.result.emit(value)
        finally:
            s.finished.emit()


class WorkerPool(QObject):
    """Starts workers on a ``QThreadPool`` and keeps them alive until they report ``finished``."""

    worker_done = Signal()  # a worker finished (its resources may be released now)
    drained = Signal()  # the last live worker finished

    def __init__(self, max_threads: int = 4, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max(2, max_threads))
        self._live: dict[WorkerSignals, JobWorker] = {}

    def start(self, worker: JobWorker) -> JobWorker:
        self._live[worker.signals] = worker
        # a bound slot (not a lambda): Qt drops the connection if this pool is destroyed first
        worker.signals.finished.connect(self._done)
        self.pool.start(worker)
        return worker

    def _done(self) -> None:
        self._live.pop(self.sender(), None)
        self.worker_done.emit()
        if not self._live:
            self.drained.emit()

    def in_use(self, resource: object) -> bool:
        """Whether a live worker was started with ``uses=resource``."""
        return any(w.uses is resource for w in self._live.values())

    def cancel_all(self) -> None:
        for w in list(self._live.values()):
            w.cancel()

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        self.cancel_all()
        self.pool.waitForDone(timeout_ms)

    @property
    def active(self) -> int:
        return len(self._live)
