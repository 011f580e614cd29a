"""Small file utilities every writer shares: atomic writes with unique temporary names, file hashes."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path


def temp_name(path: Path) -> Path:
    """A temporary name beside ``path``, unique per process and thread: concurrent writers never share one."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` so that a reader sees the old file or the new one, never half of either: a temporary
    file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | Path, data: object) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (fine for GB-size files)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
