"""What a query arrives as, and the one way it is read: a path, encoded bytes or an RGB array.

Every front end (the CLI, the benchmark, the window) hands the engine a :class:`QuerySource`, and
:func:`read_query` turns it into the pixels the engine searches: the file is read once, its bytes hashed
(the review log and reports identify a query by this sha256) and decoded at the engine's
``query_max_side``. So PDQ, SIFT and the region proposals see the same pixels whichever front end asked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .imageio import DecodedImage, from_array, load_image_bytes, read_image_file


@dataclass(frozen=True)
class QuerySource:
    """Exactly one of ``path`` / ``data`` (an encoded image) / ``pixels`` (``[H x W x 3]`` uint8 RGB)."""

    label: str  # how the query is named in messages: the file name, or "<clipboard 1>"
    path: str | None = None
    data: bytes | None = field(default=None, repr=False)
    pixels: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.path, self.data, self.pixels)) != 1:
            raise ValueError("a query source needs exactly one of path, data or pixels")

    @staticmethod
    def of(value: QuerySource | str | Path | bytes | np.ndarray, label: str | None = None) -> QuerySource:
        """A source from whatever the caller holds (a path, encoded bytes or an array)."""
        if isinstance(value, QuerySource):
            return value
        if isinstance(value, str | Path):
            return QuerySource(label or str(value), path=str(value))
        if isinstance(value, bytes | bytearray | memoryview):
            return QuerySource(label or "<bytes>", data=bytes(value))
        if isinstance(value, np.ndarray):
            return QuerySource(label or "<array>", pixels=value)
        raise TypeError(f"cannot query a {type(value).__name__}: give a path, encoded bytes or an RGB array")


@dataclass(frozen=True)
class QueryInput:
    """A read query: the pixels the engine searches, the content hash, and the encoded bytes (if any),
    from which a front end may decode a second, larger copy for display without reading the file again."""

    image: DecodedImage  # longer side <= the engine's query_max_side
    sha256: str  # of the file bytes, the encoded data, or the array's bytes
    data: bytes | None = field(default=None, repr=False)


def read_query(source: QuerySource, max_side: int) -> QueryInput:
    """Read and decode ``source``; raises :class:`~copylens.core.errors.ImageLoadError` with the reason."""
    if source.pixels is not None:
        arr = np.ascontiguousarray(source.pixels)
        return QueryInput(from_array(arr, source.label, max_side=max_side), hashlib.sha256(arr.tobytes()).hexdigest())
    data = read_image_file(source.path) if source.path is not None else source.data
    name = source.path if source.path is not None else source.label
    image = load_image_bytes(data, name, max_side=max_side)
    return QueryInput(image, hashlib.sha256(data).hexdigest(), data)
