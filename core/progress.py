"""Progress reports and the generator-job convention.

A long core job is a generator: it ``yield``s :class:`Progress` reports and ``return``s its typed result.
Whoever drives it may stop between two yields (``gen.close()``), which is how cancellation works; the job
leaves nothing half-written because every write it makes is atomic.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report: ``done`` of ``total`` units of ``stage`` (``total`` 0 when unknown)."""

    stage: str
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


Job = Generator[Progress, None, T]


def run_job(job: Job[T], on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> T:
    """Drive ``job`` to completion and return its result.

    ``on_progress`` sees every report; ``should_stop`` is polled between reports and, when it answers true,
    the job is closed and :class:`~copylens.core.errors.Cancelled` raised.
    """
    from .errors import Cancelled

    while True:
        try:
            report = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(report)
        if should_stop is not None and should_stop():
            job.close()
            raise Cancelled(f"cancelled during {report.stage}")


class ConsoleProgress:
    """A plain progress bar on stderr with rate and ETA; silent when stderr is not a terminal and quiet."""

    def __init__(self, stream=None, min_interval: float = 0.2) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval = min_interval
        self._stage = None
        self._start = time.monotonic()
        self._last = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if p.stage != self._stage:
            if self._stage is not None:
                self.stream.write("\n" if self._tty else "")
            self._stage, self._start, self._last = p.stage, now, 0.0
        final = p.total > 0 and p.done >= p.total
        if not final and now - self._last < (self.min_interval if self._tty else 5.0):
            return
        self._last = now
        elapsed = now - self._start
        rate = p.done / elapsed if elapsed > 0 else 0.0
        if p.total > 0:
            width = 28
            filled = int(width * p.fraction)
            eta = (p.total - p.done) / rate if rate > 0 else 0.0
            line = (f"{p.stage:<12} [{'#' * filled}{'.' * (width - filled)}] {p.done}/{p.total} "
                    f"{rate:6.1f}/s ETA {eta:5.0f}s {p.message}")
        else:
            line = f"{p.stage:<12} {p.done} {p.message}"
        if self._tty:
            self.stream.write("\r" + line[:150].ljust(150))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tty and self._stage is not None:
            self.stream.write("\n")
            self.stream.flush()


def bounded_map(pool: Executor, tasks: Iterator[tuple[K, Callable[[], V]]], window: int
                ) -> Iterator[list[tuple[K, Future[V]]]]:
    """Run ``tasks`` (``(key, fn)`` pairs, drawn lazily in the caller's thread) on ``pool`` with at most
    ``window`` running, and yield each batch of finished ``(key, future)`` as it completes. Whatever still
    runs when the consumer stops (cancellation, an error) is cancelled. The one bounded submit/wait loop
    of builds, self-calibration and benchmark runs: memory stays flat however many tasks there are."""
    running: dict[Future[V], K] = {}
    try:
        while True:
            while len(running) < max(1, window):
                nxt = next(tasks, None)
                if nxt is None:
                    break
                key, fn = nxt
                running[pool.submit(fn)] = key
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            yield [(running.pop(f), f) for f in finished]
    finally:
        for f in running:
            f.cancel()
