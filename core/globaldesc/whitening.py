"""Post-processing of float descriptors, in plain numpy: PCA whitening and background score normalisation.

* :class:`Whitening` — fitted on reference descriptors, it centres, rotates onto the principal axes and
  scales each axis to unit variance (optionally keeping fewer dimensions), then L2-normalises. Copy detection
  descriptors (SSCD, the ISC2021 winners) gain several points of precision from it.
* :class:`BackgroundNormalizer` — ISC2021 descriptor-track / SSCD style: a query that resembles
  *everything* (a blank or generic image) gets high raw scores; subtracting ``beta`` times the mean of its
  top-k similarities to a background set of unrelated images makes scores comparable across queries.

An index applies both to its neural global descriptors (see :mod:`copylens.core.globalsearch`).

Both save as ``.npz`` archives of plain arrays (loaded with ``allow_pickle=False``), written atomically.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from ..fileio import write_atomic
from .base import pairwise_similarity


def save_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    """Write plain arrays as an ``.npz`` archive atomically (temp file in the same folder, then rename)."""
    buf = io.BytesIO()  # a file object keeps numpy from appending ".npz"
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


def load_arrays(path: str | Path, names: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays ``names`` (all required) and those of ``optional`` present in an archive of
    :func:`save_arrays`; never unpickles (object arrays raise ValueError)."""
    with np.load(path, allow_pickle=False) as data:
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"{path}: not a saved array set (missing {', '.join(missing)})")
        return {n: data[n] for n in (*names, *optional) if n in data}


class Whitening:
    """PCA whitening ``y = normalise((x - mean) @ projection.T)``; ``projection`` is ``[dim x input_dim]``."""

    def __init__(self, mean: np.ndarray, projection: np.ndarray) -> None:
        self.mean = np.asarray(mean, np.float32)
        self.projection = np.asarray(projection, np.float32)
        if self.projection.ndim != 2 or self.projection.shape[1] != self.mean.shape[0]:
            raise ValueError(f"projection {self.projection.shape} does not fit mean {self.mean.shape}")

    @property
    def input_dim(self) -> int:
        return int(self.projection.shape[1])

    @property
    def dim(self) -> int:
        return int(self.projection.shape[0])

    @classmethod
    def fit(cls, vectors: np.ndarray, dim: int | None = None, eps: float = 1e-9, chunk: int = 8192) -> Whitening:
        """Fit on ``[N x D]`` reference descriptors; keep the ``dim`` strongest axes (default: every axis
        with variance above ``eps`` times the largest, at most ``N - 1``). The covariance is accumulated in
        float64 over ``chunk`` rows at a time, so a large float32 input is never copied whole."""
        x = np.asarray(vectors)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"whitening needs at least 2 descriptors as [N x D], got shape {x.shape}")
        n, width = x.shape
        mean = np.zeros(width, np.float64)
        for start in range(0, n, chunk):
            mean += x[start:start + chunk].sum(axis=0, dtype=np.float64)
        mean /= n
        scatter = np.zeros((width, width), np.float64)
        for start in range(0, n, chunk):
            c = x[start:start + chunk].astype(np.float64) - mean
            scatter += c.T @ c
        eigval, eigvec = np.linalg.eigh(scatter / (n - 1))
        order = np.argsort(eigval)[::-1]
        eigval, eigvec = eigval[order], eigvec[:, order]
        usable = int(np.sum(eigval > eps * max(eigval[0], 1e-30)))
        keep = min(usable, n - 1, dim if dim is not None else width)
        if keep < 1:
            raise ValueError("the descriptors have no variance to whiten")
        projection = eigvec[:, :keep].T / np.sqrt(eigval[:keep])[:, None]
        return cls(mean, projection)

    def apply(self, vectors: np.ndarray, normalize: bool = True) -> np.ndarray:
        """``[N x input_dim] -> [N x dim]`` float32, L2-normalised unless ``normalize`` is false."""
        y = (np.asarray(vectors, np.float32) - self.mean) @ self.projection.T
        if normalize:
            y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return y.astype(np.float32)

    def digest(self) -> str:
        h = hashlib.sha256(self.mean.tobytes())
        h.update(self.projection.tobytes())
        return h.hexdigest()

    def save(self, path: str | Path) -> None:
        save_arrays(path, mean=self.mean, projection=self.projection)

    @classmethod
    def load(cls, path: str | Path) -> Whitening:
        a = load_arrays(path, ("mean", "projection"))
        return cls(a["mean"], a["projection"])


def _equal_rows(rows: np.ndarray, others: np.ndarray, tolerance: float = 1e-5) -> np.ndarray:
    """``[len(rows)]`` True where a row equals one of ``others`` (within ``tolerance`` for float rows)."""
    others = others.reshape(-1, rows.shape[1]) if others.ndim == 1 else others
    hit = np.zeros(len(rows), bool)
    for o in others:
        if np.issubdtype(rows.dtype, np.floating):
            hit |= np.abs(rows - o.astype(rows.dtype)).max(axis=1) <= tolerance
        else:
            hit |= (rows == o.astype(rows.dtype)).all(axis=1)
    return hit


class BackgroundNormalizer:
    """Subtract ``beta * mean(similarities of the query to its neighbours skip+1 .. skip+k in a background
    set)`` from its scores (SSCD's score normalisation, written ``beta[skip, skip+k-1]`` there).

    ``background``: ``[M x D]`` float32 (metric "ip") or packed uint8 (metric "hamming") descriptors of
    images that stand for "unrelated content". Similarities follow GlobalIndex.search's convention.

    ``skip`` leaves out the query's ``skip`` nearest background images. With a background disjoint from the
    references (SSCD uses the DISC21 training set) ``skip=0`` is right. When the background is a sample of
    the references themselves, a true copy's own reference (or an exact duplicate) may be in it: it would be
    the query's nearest background image, and averaging that near-1 similarity into the offset would punish
    exactly the copies the index should find, and only those whose reference happened to be sampled.
    ``skip=1`` drops that neighbour for every query alike (for a query whose match is not in the background
    it only shifts the window one rank down), so true copies keep their lead.
    """

    def __init__(self, background: np.ndarray, metric: str, k: int = 10, beta: float = 1.0,
                 skip: int = 0) -> None:
        self.background = np.asarray(background)
        self.metric, self.k, self.beta, self.skip = metric, int(k), float(beta), int(skip)
        if self.skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")

    def offsets(self, queries: np.ndarray, absent: np.ndarray | None = None) -> np.ndarray:
        """``[N]`` the amount subtracted from each query's scores (0 when the background has no neighbour
        past the skipped ones).

        ``absent``: descriptors (rows like the background's) of images to treat as not in the background:
        background rows equal to one of them are left out. Self-calibration searches an edited reference as
        if its original were not indexed; with the original still in the background, ``skip`` would spend
        itself on the original and the window would take in the query's nearest *other* reference, so
        the other references' scores came out lower than a query whose original is really not indexed gets
        (see :func:`copylens.core.selfcal.calibration_pairs`).
        """
        q = np.asarray(queries)
        background = self.background
        if absent is not None and len(absent) and len(background):
            background = background[~_equal_rows(background, np.asarray(absent))]
        k = min(self.k, len(background) - self.skip)
        if k < 1 or len(q) == 0:
            return np.zeros(len(q), np.float32)
        last = self.skip + k  # neighbours [skip, last) in descending order of similarity
        sims = pairwise_similarity(q, background, self.metric)
        top = -np.sort(np.partition(-sims, last - 1, axis=1)[:, :last], axis=1)  # best first
        return (self.beta * top[:, self.skip:].mean(axis=1)).astype(np.float32)

    def normalize(self, queries: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """``scores`` ``[N x K]`` of queries ``[N x D]`` against references, background-adjusted."""
        return (np.asarray(scores, np.float32) - self.offsets(queries)[:, None]).astype(np.float32)

    def save(self, path: str | Path) -> None:
        save_arrays(path, background=self.background, metric=np.array(self.metric),
                    k=np.array(self.k), beta=np.array(self.beta), skip=np.array(self.skip))

    @classmethod
    def load(cls, path: str | Path) -> BackgroundNormalizer:
        a = load_arrays(path, ("background", "metric", "k", "beta"), optional=("skip",))
        return cls(a["background"], str(a["metric"]), int(a["k"]), float(a["beta"]), int(a.get("skip", 0)))
