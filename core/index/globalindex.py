"""A FAISS index of global descriptors: int64 ids, add / remove / search / atomic save and load.

FAISS objects never leave this module: callers pass and receive numpy arrays only.

Scores follow the project convention (higher = more similar): the inner product for ``"ip"`` (cosine on
L2-normalised rows) and ``1 - hamming / bits`` in [0, 1] for ``"hamming"`` (the same numbers as
:func:`~copylens.core.globaldesc.base.pairwise_similarity`).

Exact below a size threshold, approximate (IVF) above. The thresholds come from a measurement on this
project's 2-core build machine, one thread, 8 query rows (PDQ's dihedral variants): IndexFlatIP takes
~6 ms at 10k x 512-d, ~55 ms at 50k x 512-d (or 100k x 256-d) and ~270 ms at 200k x 512-d; an IVF with
sqrt(n) lists and nprobe 32 answers 100k x 256-d in ~4 ms. IndexBinaryFlat over 256-bit PDQ hashes takes
only ~2 ms at 100k and ~16 ms at 1M, so the binary index stays exact much longer (binary IVF also loses
recall on the near-threshold PDQ matches that matter most).
"""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np

from ..errors import IndexFormatError
from ..globaldesc.base import METRICS
from .faissio import load_index, save_index

EXACT_MAX = {"ip": 50_000, "hamming": 1_000_000}  # largest exact index; beyond it an IVF is built (see above)
DEFAULT_NPROBE = 32  # IVF lists visited per query: ~10% of sqrt(100k) lists, ~4 ms for 8 rows at 100k


class GlobalIndex:
    """Vectors ``[N x dim]`` float32 (``"ip"``) or ``[N x dim/8]`` uint8 (``"hamming"``) under int64 ids.

    Safe to share between threads: every operation holds one lock. ``use_gpu`` (default: when FAISS sees a
    GPU) searches float indexes on all GPUs; binary indexes always search on the CPU, which is fast enough.
    """

    def __init__(self, dim: int, metric: str, *, exact_max: int | None = None, nprobe: int = DEFAULT_NPROBE,
                 use_gpu: bool | None = None) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
        if dim <= 0 or (metric == "hamming" and dim % 8):
            raise ValueError(f"bad dimension {dim} for metric {metric!r}")
        self.dim, self.metric, self.nprobe = int(dim), metric, int(nprobe)
        self.exact_max = EXACT_MAX[metric] if exact_max is None else int(exact_max)
        self.use_gpu = (faiss.get_num_gpus() > 0) if use_gpu is None else use_gpu
        self._lock = threading.RLock()
        self._gpu = None  # lazily made copy of _index on the GPUs; dropped on every change
        self._index = self._flat()

    # -- construction ------------------------------------------------------------------------------------
    def _flat(self):
        if self.metric == "hamming":
            return faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(self.dim))
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _ivf(self, vectors: np.ndarray):
        nlist = max(1, min(int(np.sqrt(len(vectors))), len(vectors) // 39, 65536))  # >= 39 rows per list
        if self.metric == "hamming":
            index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(self.dim), self.dim, nlist)
        else:
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.max_points_per_centroid = 64  # train on at most 64 * nlist rows: seconds, not minutes
        index.train(vectors)
        index.nprobe = self.nprobe
        return index

    @property
    def exact(self) -> bool:
        return not isinstance(self._index, faiss.IndexIVF | faiss.IndexBinaryIVF)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    # -- contents ----------------------------------------------------------------------------------------
    def _contents(self, vectors: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """All (ids [N], vectors or None) currently stored, in storage order."""
        n = len(self)
        width = self.dim // 8 if self.metric == "hamming" else self.dim
        dtype = np.uint8 if self.metric == "hamming" else np.float32
        if self.exact:
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            if not vectors:
                return ids, None
            inner = self._index.index
            vecs = inner.reconstruct_n(0, n) if n else np.zeros((0, width), dtype)
            return ids, np.asarray(vecs, dtype).reshape(n, width)
        lists = self._index.invlists
        all_ids, all_vecs = [], []
        for lst in range(lists.nlist):
            size = lists.list_size(lst)
            if size:
                all_ids.append(faiss.rev_swig_ptr(lists.get_ids(lst), size).copy())
                if not vectors:
                    continue
                codes = faiss.rev_swig_ptr(lists.get_codes(lst), size * lists.code_size).copy()
                all_vecs.append(codes.view(dtype).reshape(size, width))
        if not all_ids:
            return np.zeros(0, np.int64), np.zeros((0, width), dtype)
        return np.concatenate(all_ids).astype(np.int64), np.concatenate(all_vecs) if vectors else None

    def ids(self) -> np.ndarray:
        """``[N]`` int64, every id in the index (unordered)."""
        with self._lock:
            return self._contents(vectors=False)[0]

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        if self.metric == "hamming":
            v = np.ascontiguousarray(vectors, dtype=np.uint8)
            width = self.dim // 8
        else:
            v = np.ascontiguousarray(vectors, dtype=np.float32)
            width = self.dim
        if v.ndim != 2 or v.shape[1] != width:
            raise ValueError(f"expected vectors [N x {width}] for a {self.dim}-d {self.metric} index, "
                             f"got shape {np.shape(vectors)}")
        return v

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows under new ids (an id already present, or repeated, raises ValueError)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        v = self._check(vectors)
        if len(ids) != len(v):
            raise ValueError(f"{len(ids)} ids for {len(v)} vectors")
        if len(ids) == 0:
            return
        with self._lock:
            present = self._contents(vectors=False)[0]
            clash = np.unique(ids[np.isin(ids, present)]).tolist()
            if clash or len(np.unique(ids)) != len(ids):
                raise ValueError(f"ids already in the index or repeated: {clash[:5] or 'repeated in the call'}")
            self._gpu = None
            self._index.add_with_ids(v, ids)
            n = len(self)
            nlist = 0 if self.exact else self._index.nlist
            if (self.exact and n > self.exact_max) or (not self.exact and n > 4 * nlist * nlist):
                self._rebuild()  # too big for exact search, or grown 4x past what the IVF was trained for

    def _rebuild(self) -> None:
        ids, vecs = self._contents()
        index = self._ivf(vecs)
        index.add_with_ids(vecs, ids)
        self._index = index

    def remove(self, ids: np.ndarray) -> int:
        """Remove these ids (absent ones are ignored); returns how many rows went."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) == 0:
            return 0
        with self._lock:
            self._gpu = None
            return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    # -- search ------------------------------------------------------------------------------------------
    def _searcher(self):
        if not self.use_gpu or self.metric != "ip" or faiss.get_num_gpus() == 0:
            return self._index
        if self._gpu is None:
            try:
                self._gpu = faiss.index_cpu_to_all_gpus(self._index)
            except (RuntimeError, AttributeError):  # a CPU-only FAISS build, or a type the GPU lacks
                self.use_gpu = False
                return self._index
        return self._gpu

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` per query row: ``(scores [N x k'], ids [N x k'])``, ``k' = min(k, len(self))``, best
        first. An approximate index may fill a row's tail with id -1 and score -inf. Empty index: k' = 0."""
        q = self._check(vectors)
        with self._lock:
            kk = min(int(k), len(self))
            if kk <= 0 or len(q) == 0:
                return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
            if not self.exact:
                self._index.nprobe = self.nprobe
            dist, found = self._searcher().search(q, kk)
        found = np.asarray(found, np.int64)
        if self.metric == "hamming":
            scores = 1.0 - np.asarray(dist, np.float32) / self.dim
        else:
            scores = np.asarray(dist, np.float32)
        scores[found < 0] = -np.inf
        return scores.astype(np.float32), found

    # -- persistence -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically (see :mod:`.faissio`)."""
        with self._lock:
            save_index(self._index, path)

    @classmethod
    def load(cls, path: str | Path, *, nprobe: int = DEFAULT_NPROBE, exact_max: int | None = None,
             use_gpu: bool | None = None) -> GlobalIndex:
        """Read an index written by :meth:`save`; a missing, damaged or foreign file raises IndexFormatError."""
        index = load_index(path, (faiss.IndexBinaryIDMap2, faiss.IndexBinaryIVF, faiss.IndexIDMap2,
                                  faiss.IndexIVFFlat), "global descriptor index")
        binary = isinstance(index, faiss.IndexBinary)
        self = cls(index.d, "hamming" if binary else "ip", exact_max=exact_max, nprobe=nprobe, use_gpu=use_gpu)
        if not binary and index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise IndexFormatError(f"{path}: the FAISS index does not use inner products")
        self._index = index
        return self
