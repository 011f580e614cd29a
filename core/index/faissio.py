"""The one way CopyLens writes and reads FAISS files (local and global indexes alike).

Python does the file I/O (FAISS's reader and writer are driven through callbacks, so a large index is
streamed, never copied whole into memory), so non-ASCII paths work everywhere; writes are atomic with a
unique temporary name (:func:`~copylens.core.fileio.atomic_writer`); a missing, empty,
truncated, foreign or damaged file raises :class:`~copylens.core.errors.IndexFormatError` naming the file
and the remedy, never FAISS's own exception. FAISS objects never leave :mod:`.local` / :mod:`.globalindex`.
"""

from __future__ import annotations

import re
from pathlib import Path

import faiss

from ..errors import IndexFormatError
from ..fileio import atomic_writer

REBUILD = "rebuild the index (copylens index build REF_DIR --out INDEX resumes and rewrites it)"


def save_index(index, path: str | Path) -> None:
    """Stream ``index`` (float or binary) to ``path`` atomically: FAISS's writer is driven through a
    callback, so no second in-memory copy of a large index is made."""
    with atomic_writer(path) as fh:
        writer = faiss.PyCallbackIOWriter(fh.write)
        if isinstance(index, faiss.IndexBinary):
            faiss.write_index_binary(index, writer)
        else:
            faiss.write_index(index, writer)
        del writer  # flushes its buffer into fh


def load_index(path: str | Path, allowed: tuple[type, ...], what: str):
    """Read a FAISS index of one of the ``allowed`` types, streamed from the file; ``what`` names it in
    messages."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(8)
            if len(magic) < 8:
                raise IndexFormatError(f"{path}: the {what} is empty or truncated; {REBUILD}")
            fh.seek(0)
            reader = faiss.PyCallbackIOReader(fh.read)
            try:
                # the object read has its concrete type and owns its memory
                index = (faiss.read_index_binary(reader) if magic[:2] == b"IB" else faiss.read_index(reader))
            except (RuntimeError, MemoryError, ValueError) as exc:
                text = str(exc).strip()
                m = re.search(r" at \S+:\d+: (?:Error: )?(.*)", text, re.DOTALL)
                reason = ((m.group(1) if m else text).strip() or type(exc).__name__)[:120]
                raise IndexFormatError(f"{path}: the {what} is damaged or not a FAISS file ({reason}); "
                                       f"{REBUILD}") from None
            finally:
                del reader
    except FileNotFoundError:
        raise IndexFormatError(f"{path}: the {what} is missing; {REBUILD}") from None
    except OSError as exc:
        raise IndexFormatError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if not isinstance(index, allowed):
        raise IndexFormatError(f"{path}: unexpected FAISS index type {type(index).__name__} for the {what}; "
                               f"{REBUILD}")
    return index
