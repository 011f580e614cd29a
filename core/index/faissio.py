"""The one way CopyLens writes and reads FAISS files (local and global indexes alike).

Python does the file I/O (FAISS serialises to bytes), so non-ASCII paths work everywhere; writes are
atomic with a unique temporary name (:func:`~copylens.core.fileio.write_atomic`); a missing, empty,
truncated, foreign or damaged file raises :class:`~copylens.core.errors.IndexFormatError` naming the file
and the remedy, never FAISS's own exception. FAISS objects never leave :mod:`.local` / :mod:`.globalindex`.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from ..errors import IndexFormatError
from ..fileio import write_atomic

REBUILD = "rebuild the index (copylens index build REF_DIR --out INDEX resumes and rewrites it)"


def save_index(index, path: str | Path) -> None:
    binary = isinstance(index, faiss.IndexBinary)
    data = faiss.serialize_index_binary(index) if binary else faiss.serialize_index(index)
    write_atomic(path, np.asarray(data, np.uint8).tobytes())


def load_index(path: str | Path, allowed: tuple[type, ...], what: str):
    """Read a FAISS index of one of the ``allowed`` types; ``what`` names it in messages."""
    path = Path(path)
    try:
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except FileNotFoundError:
        raise IndexFormatError(f"{path}: the {what} is missing; {REBUILD}") from None
    except OSError as exc:
        raise IndexFormatError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if data.size < 8:
        raise IndexFormatError(f"{path}: the {what} is empty or truncated; {REBUILD}")
    binary = data[:2].tobytes() == b"IB"
    try:
        # the deserialised object already has its concrete type and owns its memory
        index = faiss.deserialize_index_binary(data) if binary else faiss.deserialize_index(data)
    except (RuntimeError, MemoryError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IndexFormatError(f"{path}: the {what} is damaged or not a FAISS file ({reason[:120]}); "
                               f"{REBUILD}") from None
    if not isinstance(index, allowed):
        raise IndexFormatError(f"{path}: unexpected FAISS index type {type(index).__name__} for the {what}; "
                               f"{REBUILD}")
    return index
