"""Small file utilities every writer shares: atomic writes with unique temporary names, file hashes."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def temp_name(path: Path) -> Path:
    """A temporary name beside ``path``, unique per process and thread: concurrent writers never share one."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to stream into; on a clean exit it replaces ``path`` atomically (a temporary file in
    the same folder, fsync, ``os.replace``), on an error it is discarded and ``path`` is untouched."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` so that a reader sees the old file or the new one, never half of either."""
    with atomic_writer(path) as fh:
        fh.write(data)


def write_json_atomic(path: str | Path, data: object) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (fine for GB-size files)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
