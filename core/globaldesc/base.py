"""Types shared by every global descriptor backend.

A global descriptor turns a whole image into one vector (or a few, for query-time variants). Two metrics
exist: ``"ip"`` — float32 rows, L2-normalised, compared by inner product — and ``"hamming"`` — bits packed
into uint8 rows, compared by Hamming distance. Higher score always means more similar; see
:mod:`copylens.core.index.globalindex` for how distances become scores.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import CopyLensError, IndexFormatError

METRICS = ("ip", "hamming")

# The 8 dihedral variants, numbered as pdqhash.compute_dihedral returns them (checked against pdqhash 0.2.8:
# variant k of an image hashes like pixels DIHEDRAL[k](image)). Every backend uses this numbering for
# DescriptorBatch.variant in extract_query, so a match on variant 5 means "the query is a left-right mirror".
DIHEDRAL: tuple[Callable[[np.ndarray], np.ndarray], ...] = (
    lambda a: a,                                    # 0 original
    lambda a: np.rot90(a, 1),                       # 1 rotated 90 degrees counter-clockwise
    lambda a: np.rot90(a, 2),                       # 2 rotated 180 degrees
    lambda a: np.rot90(a, 3),                       # 3 rotated 90 degrees clockwise
    lambda a: a[::-1],                              # 4 flipped top-bottom (pdq "FlipX")
    lambda a: a[:, ::-1],                           # 5 mirrored left-right (pdq "FlipY")
    lambda a: a.transpose(1, 0, 2),                 # 6 transposed (pdq "FlipPlus1")
    lambda a: np.rot90(a, 2).transpose(1, 0, 2),    # 7 anti-transposed (pdq "FlipMinus1")
)
MIRRORED_VARIANTS = frozenset({4, 5, 6, 7, 12, 13, 14, 15})  # variants that involve a reflection
# Variants 8..15 are variants 0..7 of the inverted image (255 - pixels): a negative is a common edit that
# turns every PDQ bit over and defeats neural descriptors too. See variant_pixels.
INVERTED = 8
NUM_VARIANTS = 16


def variant_pixels(image: np.ndarray, variant: int) -> np.ndarray:
    """The pixels of query variant ``variant`` (0..15) of an RGB image, C-contiguous."""
    if not 0 <= variant < NUM_VARIANTS:
        raise ValueError(f"query variant {variant} is not in 0..{NUM_VARIANTS - 1}")
    out = DIHEDRAL[variant % INVERTED](image)
    return np.ascontiguousarray(255 - out if variant >= INVERTED else out)


@dataclass(frozen=True)
class DescriptorBatch:
    """Descriptors of several images (``extract``) or of one query's variants (``extract_query``).

    ``vectors``: ``[N x D]`` float32 L2-normalised rows (metric ``"ip"``) or ``[N x D/8]`` uint8 packed bits
    (metric ``"hamming"``). ``quality``: ``[N]`` float32 in [0, 1] (1 for neural backends).
    ``variant``: ``[N]`` int64 — the input image index for ``extract``, the query variant for
    ``extract_query`` (:data:`DIHEDRAL` number 0..7, plus :data:`INVERTED` for the negative's variants). ``low_quality``: ``[N]`` bool, rows the backend considers unreliable (PDQ flags
    quality below its threshold); all false when not given.
    """

    vectors: np.ndarray
    quality: np.ndarray
    variant: np.ndarray
    low_quality: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = len(self.vectors)
        if self.low_quality is None:
            object.__setattr__(self, "low_quality", np.zeros(n, dtype=bool))
        if not (len(self.quality) == len(self.variant) == len(self.low_quality) == n):
            raise ValueError(f"DescriptorBatch rows disagree: vectors {n}, quality {len(self.quality)}, "
                             f"variant {len(self.variant)}, low_quality {len(self.low_quality)}")

    def __len__(self) -> int:
        return len(self.vectors)

    @staticmethod
    def empty(width: int, metric: str) -> DescriptorBatch:
        dtype = np.uint8 if metric == "hamming" else np.float32
        return DescriptorBatch(np.zeros((0, width), dtype=dtype), np.zeros(0, np.float32),
                               np.zeros(0, np.int64))


@runtime_checkable
class GlobalDescriptor(Protocol):
    name: str    # registry name, e.g. "pdq" or "timm:resnet50:/models/r50.safetensors"
    dim: int     # descriptor length: floats for "ip", bits for "hamming"
    metric: str  # "ip" or "hamming"

    def fingerprint(self) -> str:
        """sha256 (hex) of weights and configuration; an index stores it and refuses a mismatch."""
        ...

    def extract(self, images: Sequence[np.ndarray]) -> DescriptorBatch:
        """One row per image (RGB uint8 ``[H x W x 3]``); ``variant`` is the image's position."""
        ...

    def extract_query(self, image: np.ndarray) -> DescriptorBatch:
        """The query-time variants of one image; ``variant`` holds their numbers (see variant_pixels)."""
        ...


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an RGB uint8 ``[H x W x 3]`` array and return it C-contiguous."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected an RGB uint8 [H x W x 3] array, got shape {shape} dtype {dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"the image has no pixels (shape {image.shape})")
    return np.ascontiguousarray(image)


def config_digest(config: dict, *parts: bytes) -> str:
    """sha256 of a JSON-able configuration plus raw byte strings (weights)."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for part in parts:
        h.update(part)
    return h.hexdigest()


def check_fingerprint(stored: str, descriptor: GlobalDescriptor, where: str = "the index") -> None:
    """Raise :class:`IndexFormatError` when ``descriptor`` is not the one ``where`` was built with."""
    actual = descriptor.fingerprint()
    if stored != actual:
        raise IndexFormatError(
            f"{where} was built with global descriptor fingerprint {stored[:16]}..., but {descriptor.name!r} "
            f"now has fingerprint {actual[:16]}... (other weights or settings); rebuild the index or use "
            f"the descriptor it was built with")


class NoDescriptor:
    """The ``none`` backend: global descriptors switched off. Every extraction returns zero rows."""

    name = "none"
    dim = 0
    metric = "ip"

    def fingerprint(self) -> str:
        return config_digest({"kind": "none"})

    def extract(self, images: Sequence[np.ndarray]) -> DescriptorBatch:
        return DescriptorBatch.empty(0, self.metric)

    def extract_query(self, image: np.ndarray) -> DescriptorBatch:
        return DescriptorBatch.empty(0, self.metric)


class ModelLoadError(CopyLensError):
    """A descriptor model file is missing, unreadable or does not fit its architecture."""


def pairwise_similarity(queries: np.ndarray, references: np.ndarray, metric: str) -> np.ndarray:
    """``[N x M]`` float32 similarities, the convention of GlobalIndex.search: inner product for ``"ip"``,
    ``1 - hamming / bits`` (in [0, 1]) for ``"hamming"``."""
    if metric == "ip":
        return (np.asarray(queries, np.float32) @ np.asarray(references, np.float32).T).astype(np.float32)
    if metric == "hamming":
        a = np.unpackbits(np.asarray(queries, np.uint8), axis=1).astype(np.float32)
        b = np.unpackbits(np.asarray(references, np.uint8), axis=1).astype(np.float32)
        dist = a.sum(1, keepdims=True) + b.sum(1)[None, :] - 2.0 * (a @ b.T)
        return (1.0 - dist / max(1, a.shape[1])).astype(np.float32)
    raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
