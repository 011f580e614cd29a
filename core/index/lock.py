"""One writer at a time per index: a lock file that every reader and writer can see.

``index.lock`` is created with ``O_EXCL`` (atomic on every local file system) and holds who writes:
process id, host, command and start time, as JSON. A second writer gets :class:`IndexBusyError` naming
them; a reader refuses to open a half-written index with the same message. A lock left by a process
that died (same host, process gone) is stale: the next writer takes it over and says so.

A lock on another host (an index on a shared drive) cannot be checked for liveness; the message says
how to remove it by hand if that process is gone.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import CopyLensError

LOCK = "index.lock"

_held: set[str] = set()  # lock files this process holds (a recycled pid must not look like our own lock)
_held_guard = threading.Lock()


class IndexBusyError(CopyLensError):
    """Another writer holds the index."""


@dataclass(frozen=True)
class LockInfo:
    pid: int
    host: str
    command: str
    started: str

    def describe(self) -> str:
        return f"'{self.command}' (process {self.pid} on {self.host}, since {self.started})"


def _read(path: Path) -> LockInfo | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockInfo(int(data["pid"]), str(data["host"]), str(data["command"]), str(data["started"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # being written this very moment, or damaged: treat as held by an unknown process
        return LockInfo(-1, "?", "unknown writer", "?")


def _alive(info: LockInfo, path: Path) -> bool:
    if info.host != socket.gethostname() or info.pid <= 0:
        return True  # cannot tell: assume it is alive
    if info.pid == os.getpid():
        with _held_guard:
            return str(path) in _held
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def current_writer(index_dir: str | Path) -> LockInfo | None:
    """The live writer of ``index_dir``, or None (no lock, or a stale one)."""
    path = Path(index_dir) / LOCK
    info = _read(path)
    if info is None or not _alive(info, path):
        return None
    return info


def busy_message(index_dir: str | Path, info: LockInfo) -> str:
    return (f"{index_dir}: the index is being written by {info.describe()}; wait for it to finish "
            f"(if that process is gone, delete {Path(index_dir) / LOCK})")


@contextmanager
def writer_lock(index_dir: str | Path, command: str) -> Iterator[str | None]:
    """Hold the writer lock of ``index_dir`` (which must exist) for the ``with`` body.

    Yields a note when a stale lock was taken over (for the caller to report), else None.
    """
    path = Path(index_dir) / LOCK
    note = None
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            info = _read(path)
            if info is not None and _alive(info, path):
                raise IndexBusyError(busy_message(index_dir, info)) from None
            if info is not None:
                note = f"removed a stale lock left by {info.describe()}"
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        break
    else:
        raise IndexBusyError(f"{index_dir}: could not take the writer lock {path}")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f)
        with _held_guard:
            _held.add(str(path))
        yield note
    finally:
        with _held_guard:
            _held.discard(str(path))
        try:
            path.unlink()
        except FileNotFoundError:
            pass
