"""FAISS index over local (RootSIFT) descriptors, for candidate recall by voting.

FAISS objects stay inside this module; callers pass and get NumPy arrays. Every descriptor's FAISS id
packs its reference row and keypoint number: ``id = row * KP_SLOTS + keypoint``, so the reference owning
a neighbour is ``id // KP_SLOTS`` and removing a reference is one id range.

Index kinds (chosen by :func:`choose_kind`):
- ``flat``: exact L2 search; used while the index holds at most ``FLAT_MAX_DESCRIPTORS`` descriptors.
- ``ivf-pq`` (the approximate kind of new indexes): inverted file over ``nlist`` k-means cells (HNSW coarse
  quantizer) and 4-bit fast-scan PQ codes (32 bytes per descriptor, about 19 KB per reference in RAM).
  Measured on the dev benchmark v2 (issue 12) against ``ivf-pq-refine``, the same index plus an in-RAM
  re-ranking with 8-bit scalar-quantised vectors (128 more bytes per descriptor, 68 KB per reference):
  μAP 0.934 vs 0.931, recall@1 0.971 both, every content kind within 0.005 (lineart 0.875 vs 0.878),
  local search median 66 vs 79 ms. Votes need the right reference among the neighbours, not exact
  distances, and verification re-checks every candidate with the stored descriptors anyway.
- ``ivf-pq-refine``: the kind of indexes built before 2026-11-30; still read and searched. Measured with
  bench/measure_localindex.py on the dev benchmark v1 (1.55M descriptors, 20 queries x 4 variants, 2
  threads, nprobe 16): 63 ms per query with the exact nearest neighbour found for 90% of query descriptors, against 193 ms (88%) for IVF-SQ8 alone and 377 ms (89%)
  for IVF-Flat; exact search takes 22 s.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from ..errors import IndexFormatError
from .faissio import REBUILD, load_index, save_index

KP_SLOTS = 4096  # keypoints per reference the id packing allows (the feature cap must stay below)
# exact search up to here (about 8 references), approximate beyond: a query's ~2,400 vectors (4 variants)
# against 5k real RootSIFT descriptors take 70 ms exact but 31 ms IVF (exact neighbour found for 98.6%);
# at 60k, 726 ms against 40 ms (99.3%) - measured on this 2-core machine, dev-benchmark descriptors
FLAT_MAX_DESCRIPTORS = 4_000
# IVF cells visited per query descriptor: 16 answered 300 dev-benchmark-v2 queries with the same recall@1
# as 24 in about half the local search time saved by 24 -> 12 (bench/latency_ab.py, 2026-12-04); at 100k
# references 12 kept recall@1 on 96 copies too (README, "Scale")
NPROBE = 16
REFINE_FACTOR = 3.0  # the PQ scan keeps k * this many neighbours for re-ranking with the SQ8 vectors


@dataclass(frozen=True, slots=True)
class Neighbours:
    """``k`` nearest reference descriptors of each query descriptor.

    ``rows`` ``[N x k]`` int64 reference rows (-1 where fewer than ``k`` exist), ``keypoints`` ``[N x k]``
    keypoint numbers, ``sq_dists`` ``[N x k]`` squared L2 distances between RootSIFT vectors (0..2).
    """

    rows: np.ndarray
    keypoints: np.ndarray
    sq_dists: np.ndarray


def choose_kind(num_descriptors: int) -> str:
    return "flat" if num_descriptors <= FLAT_MAX_DESCRIPTORS else "ivf-pq"


FACTORIES = {"ivf-pq": "IVF{nlist}_HNSW32,PQ64x4fs", "ivf-pq-refine": "IVF{nlist}_HNSW32,PQ64x4fs,Refine(SQ8)"}


def _nlist(num_descriptors: int) -> int:
    """About 1.6 sqrt(N) cells, a power of two (2048 for the dev benchmark's 1.55M), >= 40 points per cell."""
    target = min(1.6 * np.sqrt(num_descriptors), num_descriptors / 40)
    return int(2 ** np.clip(round(np.log2(max(target, 1))), 6, 14))


def _set_search_params(index: faiss.Index) -> None:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    faiss.extract_index_ivf(inner).nprobe = NPROBE
    if isinstance(inner, faiss.IndexRefine):
        inner.k_factor = REFINE_FACTOR


def _native_ids(index: faiss.Index) -> np.ndarray | None:
    """For an ``IndexIDMap``/``IndexIDMap2`` over a plain IVF index (how indexes were saved before
    2026-12-04): the IVF index alone, serialised, its inverted lists rewritten to hold our ids; read back
    once the wrapper is freed, it gives the same answers with about half the RAM (the wrapper's id array
    and hash map are gone). None for anything else (used as it is).

    The IVF index is handed over by serialising it and reading it back, so every FAISS object keeps the
    ownership FAISS gave it: taking the inner index over from the wrapper in place (``own_fields = False``
    and ``this.own(True)``) broke SWIG's type table, and the next index read in the process came back as
    a bare ``SwigPyObject`` (seen on a 26M-descriptor index). The price is a transient copy of the codes
    while a legacy index opens."""
    if not isinstance(index, faiss.IndexIDMap):  # IndexIDMap2 is a subclass
        return None
    inner = faiss.downcast_index(index.index)
    if not isinstance(inner, faiss.IndexIVF):  # flat, or refined (looks its vectors up by position)
        return None
    id_map = faiss.vector_to_array(index.id_map)
    lists = inner.invlists
    for cell in range(inner.nlist):
        n = lists.list_size(cell)
        if n:
            ptr = lists.get_ids(cell)
            ids = faiss.rev_swig_ptr(ptr, n)  # a writable view of the list's ids
            ids[:] = id_map[ids]
            lists.release_ids(cell, ptr)
    del id_map, lists
    data = faiss.serialize_index(inner)
    del inner
    return data


def _read_serialised(data: np.ndarray) -> faiss.Index:
    """A FAISS index from :func:`faiss.serialize_index`'s bytes, read in slices (no second copy)."""
    view = memoryview(data)
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        chunk = view[pos:pos + n].tobytes()
        pos += len(chunk)
        return chunk

    reader = faiss.PyCallbackIOReader(read)
    try:
        return faiss.read_index(reader)
    finally:
        del reader


def _give_back_freed_memory() -> None:
    """glibc keeps freed small blocks (a hash map's nodes) in its heap: ``malloc_trim`` returns them, so the
    process's RSS shows what it holds. A no-op elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # musl or another libc
            pass


class LocalIndex:
    """A FAISS index of RootSIFT descriptors keyed by (reference row, keypoint)."""

    def __init__(self, index: faiss.Index, kind: str) -> None:
        self._index = index  # the CPU index: always the one added to, removed from and saved
        self.kind = kind
        self._search_index = None  # GPU clone used for search when a GPU is present (made lazily)

    @staticmethod
    def create(training_vectors: np.ndarray, expected_total: int, seed: int = 1234) -> LocalIndex:
        """A new empty index for about ``expected_total`` descriptors; IVF cells are trained on the sample."""
        kind = choose_kind(expected_total)
        if kind == "flat":
            return LocalIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(128)), kind)
        nlist = _nlist(expected_total)
        inner = faiss.index_factory(128, FACTORIES[kind].format(nlist=nlist))
        ivf = faiss.extract_index_ivf(inner)
        ivf.cp.seed = seed
        ivf.cp.max_points_per_centroid = 64  # bound training time: at most 64 * nlist training points
        inner.train(np.ascontiguousarray(training_vectors, dtype=np.float32))
        # The IVF's inverted lists store our ids (row, keypoint) directly. An IndexIDMap2 on top (as indexes
        # built before 2026-12-04 have) keeps a second id array and a hash map from id to position: 70
        # instead of 38 bytes of RAM per descriptor (bench/measure_idmap.py). Only the refined kind needs
        # positions (its SQ8 vectors are looked up by them).
        index = faiss.IndexIDMap2(inner) if isinstance(inner, faiss.IndexRefine) else inner
        _set_search_params(index)
        return LocalIndex(index, kind)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def add(self, row: int, vectors: np.ndarray) -> None:
        """Add the RootSIFT ``vectors`` ``[N x 128]`` of the reference stored at ``row``."""
        n = vectors.shape[0]
        if n > KP_SLOTS:
            raise ValueError(f"{n} descriptors for one reference; at most {KP_SLOTS}")
        self.add_many(np.full(n, row, np.int64), np.arange(n, dtype=np.int64), vectors)

    def add_many(self, rows: np.ndarray, keypoints: np.ndarray, vectors: np.ndarray) -> None:
        if vectors.shape[0]:
            ids = rows.astype(np.int64) * KP_SLOTS + keypoints.astype(np.int64)
            self._search_index = None
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def _searcher(self) -> faiss.Index:
        if self._search_index is None:
            self._search_index = self._index
            if faiss.get_num_gpus() > 0:  # pragma: no cover - no GPU on CI
                try:
                    self._search_index = faiss.index_cpu_to_all_gpus(self._index)
                except RuntimeError:  # an index kind without a GPU version: stay on the CPU
                    self._search_index = self._index
        return self._search_index

    def remove_rows(self, rows: list[int]) -> int:
        """Remove the rows' descriptors where the index kind allows it (``flat``); the approximate kind cannot
        remove vectors, so its removed rows are left as tombstones (see :mod:`.store`) until the next rebuild."""
        if self.kind != "flat":
            return 0
        removed = 0
        self._search_index = None
        for row in rows:
            sel = faiss.IDSelectorRange(int(row) * KP_SLOTS, (int(row) + 1) * KP_SLOTS)
            removed += int(self._index.remove_ids(sel))
        return removed

    def search(self, vectors: np.ndarray, k: int) -> Neighbours:
        """The ``k`` nearest indexed descriptors of each RootSIFT vector in ``vectors`` ``[N x 128]``."""
        n = vectors.shape[0]
        if n == 0 or self.ntotal == 0:
            e = np.zeros((n, 0), np.int64)
            return Neighbours(e, e.copy(), np.zeros((n, 0), np.float32))
        k = min(k, self.ntotal)
        dists, ids = self._searcher().search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        valid = ids >= 0
        rows = np.where(valid, ids // KP_SLOTS, -1)
        kps = np.where(valid, ids % KP_SLOTS, -1)
        return Neighbours(rows, kps, np.where(valid, dists, np.inf).astype(np.float32))

    def save(self, path: Path) -> None:
        """Write atomically (see :mod:`.faissio`): a reader never sees half a file."""
        save_index(self._index, path)

    @staticmethod
    def load(path: Path, kind: str) -> LocalIndex:
        index = load_index(path, (faiss.Index,), "local descriptor index")
        unwrapped = _native_ids(index)
        if unwrapped is not None:
            del index  # frees the wrapper, its id array and hash map ...
            _give_back_freed_memory()  # ... and hands their pages back to the system
            index = _read_serialised(unwrapped)
            del unwrapped
            _give_back_freed_memory()
        if kind != "flat":
            try:
                _set_search_params(index)
            except RuntimeError:
                raise IndexFormatError(f"{path}: the manifest says {kind!r} but the file holds another kind of "
                                       f"FAISS index; {REBUILD}") from None
        return LocalIndex(index, kind)
