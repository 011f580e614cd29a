"""Post-processing of float descriptors, in plain numpy: PCA whitening and background score normalisation.

* :class:`Whitening` — fitted on reference descriptors, it centres, rotates onto the principal axes and
  scales each axis to unit variance (optionally keeping fewer dimensions), then L2-normalises. Copy detection
  descriptors (SSCD, the ISC2021 winners) gain several points of precision from it.
* :class:`BackgroundNormalizer` — ISC2021 descriptor-track style: a query that resembles *everything*
  (a blank or generic image) gets high raw scores; subtracting ``beta`` times the mean of its top-k
  similarities to a background set of unrelated images makes scores comparable across queries.

Both save as ``.npz`` archives of plain arrays (loaded with ``allow_pickle=False``), written atomically.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .base import pairwise_similarity


def _save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:  # a file object keeps numpy from appending ".npz" to the temp name
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _load_npz(path: str | Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"{path}: not a saved array set (missing {', '.join(missing)})")
        return {n: data[n] for n in names}


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
    def fit(cls, vectors: np.ndarray, dim: int | None = None, eps: float = 1e-9) -> Whitening:
        """Fit on ``[N x D]`` reference descriptors; keep the ``dim`` strongest axes (default: every axis
        with variance above ``eps`` times the largest, at most ``N - 1``)."""
        x = np.asarray(vectors, np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"whitening needs at least 2 descriptors as [N x D], got shape {x.shape}")
        mean = x.mean(axis=0)
        cov = np.cov(x - mean, rowvar=False)
        eigval, eigvec = np.linalg.eigh(np.atleast_2d(cov))
        order = np.argsort(eigval)[::-1]
        eigval, eigvec = eigval[order], eigvec[:, order]
        usable = int(np.sum(eigval > eps * max(eigval[0], 1e-30)))
        keep = min(usable, len(x) - 1, dim if dim is not None else x.shape[1])
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
        _save_npz(path, mean=self.mean, projection=self.projection)

    @classmethod
    def load(cls, path: str | Path) -> Whitening:
        a = _load_npz(path, ("mean", "projection"))
        return cls(a["mean"], a["projection"])


class BackgroundNormalizer:
    """Subtract ``beta * mean(top-k similarities of the query to a background set)`` from its scores.

    ``background``: ``[M x D]`` float32 (metric "ip") or packed uint8 (metric "hamming") descriptors of
    images known to be no reference's copy. Similarities follow GlobalIndex.search's convention.
    """

    def __init__(self, background: np.ndarray, metric: str, k: int = 10, beta: float = 1.0) -> None:
        self.background = np.asarray(background)
        self.metric, self.k, self.beta = metric, int(k), float(beta)

    def offsets(self, queries: np.ndarray) -> np.ndarray:
        """``[N]`` the amount subtracted from each query's scores (0 with an empty background)."""
        q = np.asarray(queries)
        if len(self.background) == 0 or len(q) == 0 or self.k < 1:
            return np.zeros(len(q), np.float32)
        k = min(self.k, len(self.background))
        sims = pairwise_similarity(q, self.background, self.metric)
        top = -np.partition(-sims, k - 1, axis=1)[:, :k]
        return (self.beta * top.mean(axis=1)).astype(np.float32)

    def normalize(self, queries: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """``scores`` ``[N x K]`` of queries ``[N x D]`` against references, background-adjusted."""
        return (np.asarray(scores, np.float32) - self.offsets(queries)[:, None]).astype(np.float32)

    def save(self, path: str | Path) -> None:
        _save_npz(path, background=self.background, metric=np.array(self.metric),
                  k=np.array(self.k), beta=np.array(self.beta))

    @classmethod
    def load(cls, path: str | Path) -> BackgroundNormalizer:
        a = _load_npz(path, ("background", "metric", "k", "beta"))
        return cls(a["background"], str(a["metric"]), int(a["k"]), float(a["beta"]))
