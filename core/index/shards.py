"""Sharded indexes: one index split into K self-contained parts and searched as one.

Layout of a sharded index directory::

    shards.json      format name and version, the shard folders, counts, feature settings, the global
                     descriptors and the one calibration all shards share (written last, atomically)
    shard-000/ ...   an ordinary index directory each (:mod:`.layout`: manifest, database, local.faiss,
                     global_<n>.*), whose reference rows are numbered from ``shard * SHARD_ROWS + 1``
    index.lock       while a writer works (:mod:`.lock`)

Which shard holds a reference follows from its id alone (:func:`shard_of_id`, a stable hash), so a rerun
of the build with more files puts every old reference where it was. Rows are disjoint across shards, so a
row (and a local FAISS id, ``row * KP_SLOTS + keypoint``) names its shard: :func:`shard_of_row`.

What the shards share, so a score means the same whichever shard a reference lives in: the feature
settings; each neural descriptor's PCA whitening and score-normalisation background, fitted once on the
vectors of all shards and copied into each (:func:`share_global_post`); and the calibration, fitted once by
self-calibration through the sharded engine and kept in ``shards.json``.

A query runs the one engine pipeline (:class:`copylens.core.engine.Engine`) over merged views:
:class:`ShardedLocal` asks every shard for the ``k`` nearest local descriptors and keeps the ``k`` nearest
of their union, which is what one index over the same descriptors returns (up to each shard's approximate
search); :class:`ShardedGlobalIndex` does the same for a global descriptor; :class:`ShardedStore` sends
each read to the shard that holds the row or id. The shards themselves sit behind a :class:`ShardSet`: in
this process (:class:`LocalShards`, the default) or in Ray actors (:mod:`copylens.core.cluster`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import IndexFormatError
from ..features import LocalFeatures
from ..fileio import write_json_atomic
from ..results import ReferenceInfo
from .globalindex import GlobalIndex
from .layout import SHARDS_FILE, read_format_file, read_manifest
from .local import Neighbours
from .lock import IndexBusyError, busy_message, current_writer
from .open import open_index
from .store import GlobalVector

SHARDED_FORMAT = "copylens-sharded-index"
SHARDED_VERSION = 1
SHARD_ROWS = 1 << 32  # rows per shard: shard i holds rows i * SHARD_ROWS + 1 ...; FAISS ids stay below 2^63
REBUILD = "rebuild it with 'copylens index build REF_DIR --out INDEX --shards K'"

# the database reads a shard serves (the ShardSet refuses anything else: an actor is no general RPC)
STORE_READS = frozenset({"features", "ids_of_rows", "global_vector", "thumbnail_of_row", "info", "infos",
                         "thumbnail", "near_identical_rows", "metadata", "keypoint_counts", "tombstones", "rows",
                         "count", "count_descriptors", "known_ids", "rows_by_id",
                         "features_of", "global_vectors_of", "thumbnails_of"})


def shard_dir_name(shard: int) -> str:
    return f"shard-{shard:03d}"


def first_row(shard: int) -> int:
    """The row after which shard ``shard`` numbers its references."""
    return int(shard) * SHARD_ROWS


def shard_of_row(row: int) -> int:
    return int(row) // SHARD_ROWS


def shard_of_id(reference_id: str, shards: int) -> int:
    """The shard that holds ``reference_id``: a stable hash of the id (the same on every machine and run)."""
    digest = hashlib.sha256(reference_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % int(shards)


def is_sharded(index_dir: str | Path) -> bool:
    return (Path(index_dir) / SHARDS_FILE).is_file()


def read_shards_manifest(index_dir: str | Path) -> dict:
    """``shards.json``, shape-checked: every shard folder it names must exist."""
    path = Path(index_dir) / SHARDS_FILE
    m = read_format_file(path, SHARDED_FORMAT, SHARDED_VERSION, "sharded index", REBUILD)
    shards = m.get("shards")
    if (not isinstance(shards, list) or not shards
            or [s for s in shards if not isinstance(s, str)] or shards != [shard_dir_name(i) for i in range(len(shards))]):
        raise IndexFormatError(f"{path}: its list of shards is damaged; {REBUILD}")
    if not isinstance(m.get("calibration"), dict | None) or not isinstance(m.get("counts"), dict):
        raise IndexFormatError(f"{path}: damaged; {REBUILD}")
    for s in shards:
        if not (Path(index_dir) / s).is_dir():
            raise IndexFormatError(f"{Path(index_dir) / s}: missing (shards.json names it); restore it or {REBUILD}")
    return m


def write_shards_manifest(index_dir: str | Path, manifest: dict) -> None:
    write_json_atomic(Path(index_dir) / SHARDS_FILE, {"format": SHARDED_FORMAT, "format_version": SHARDED_VERSION,
                                                      **manifest})


# --- one shard ---------------------------------------------------------------------------------------------
class Shard:
    """One shard opened in this process: its database, local FAISS index and global FAISS indexes. What a
    shard answers is plain NumPy arrays, numbers, strings and dataclasses of them (it may be a Ray actor)."""

    def __init__(self, shard_dir: str | Path) -> None:
        opened = open_index(shard_dir, allow_pending=True)  # the sharded index's own lock covers its shards
        self.shard_dir = opened.index_dir
        self.manifest = opened.manifest
        self.store = opened.store
        self.local = opened.local
        try:
            self.globals = [GlobalIndex.load(self.shard_dir / e["file"]) for e in self.manifest.get("global", [])]
        except BaseException:
            self.store.close()
            raise

    def ready(self) -> int:
        """The number of references held (a cheap call that says the shard is up)."""
        return int(self.manifest["counts"]["references"])

    def local_search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.local.search(vectors, k)
        return n.rows, n.keypoints, n.sq_dists

    def global_search(self, position: int, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.globals[position].search(vectors, k)

    def global_count(self, position: int) -> int:
        return len(self.globals[position])

    def read(self, method: str, *args):
        if method not in STORE_READS:
            raise ValueError(f"not a shard read: {method!r}")
        return getattr(self.store, method)(*args)

    def close(self) -> None:
        self.store.close()


class ShardSet(Protocol):
    """The shards of one index, wherever they run: ``each`` calls a :class:`Shard` method on every shard
    (all at once where they run in parallel) and returns the answers in shard order; ``one`` calls it on
    one shard. A shard that cannot answer raises (never a silently partial answer)."""

    def __len__(self) -> int: ...
    def each(self, method: str, *args) -> list: ...
    def one(self, shard: int, method: str, *args): ...
    def close(self) -> None: ...


class LocalShards:
    """Every shard opened in this process (the default)."""

    def __init__(self, shard_dirs: Sequence[Path]) -> None:
        self.shards: list[Shard] = []
        try:
            for d in shard_dirs:
                self.shards.append(Shard(d))
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.shards)

    def each(self, method: str, *args) -> list:
        return [getattr(s, method)(*args) for s in self.shards]

    def one(self, shard: int, method: str, *args):
        return getattr(self.shards[shard], method)(*args)

    def close(self) -> None:
        for s in self.shards:
            s.close()


# --- merged views the engine queries -----------------------------------------------------------------------
def _merge_top(scores: list[np.ndarray], ids: list[np.ndarray], k: int, smallest: bool,
               extra: list[np.ndarray] | None = None):
    """Per query row, the ``k`` best of the shards' answers (concatenated columns), best first; ties keep
    shard order (a stable sort), so the merge is deterministic."""
    s = np.concatenate(scores, axis=1)
    i = np.concatenate(ids, axis=1)
    order = np.argsort(s if smallest else -s, axis=1, kind="stable")[:, :k]
    out = [np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)]
    if extra is not None:
        out.append(np.take_along_axis(np.concatenate(extra, axis=1), order, axis=1))
    return out


class ShardedLocal:
    """The local FAISS indexes of all shards as one (the interface of :class:`.local.LocalIndex` a query uses)."""

    kind = "sharded"

    def __init__(self, shards: ShardSet, ntotal: int) -> None:
        self.shards = shards
        self.ntotal = ntotal

    def search(self, vectors: np.ndarray, k: int) -> Neighbours:
        parts = self.shards.each("local_search", np.ascontiguousarray(vectors, np.float32), k)
        d, rows, kps = _merge_top([p[2] for p in parts], [p[0] for p in parts], k, smallest=True,
                                  extra=[p[1] for p in parts])
        return Neighbours(rows.astype(np.int64), kps.astype(np.int64), d.astype(np.float32))


class ShardedGlobalIndex:
    """One global descriptor's FAISS indexes of all shards as one (what :class:`GlobalBranch` searches)."""

    def __init__(self, shards: ShardSet, position: int, dim: int, total: int) -> None:
        self.shards = shards
        self.position = position
        self.dim = dim
        self.total = total

    def __len__(self) -> int:
        return self.total

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        parts = self.shards.each("global_search", self.position, vectors, k)
        if not parts:
            return np.zeros((len(vectors), 0), np.float32), np.zeros((len(vectors), 0), np.int64)
        s, i = _merge_top([p[0] for p in parts], [p[1] for p in parts], k, smallest=False)
        return s.astype(np.float32), i.astype(np.int64)


class ShardedStore:
    """The shards' databases as one (the read interface of :class:`.store.ReferenceStore` the engine, the
    self-calibration and the window use). Reads by row go to the row's shard, reads by id to the id's."""

    def __init__(self, shards: ShardSet) -> None:
        self.shards = shards
        self.k = len(shards)

    def _by_id(self, reference_id: str, method: str, *args):
        return self.shards.one(shard_of_id(reference_id, self.k), "read", method, reference_id, *args)

    def _by_row(self, row: int, method: str, *args):
        shard = shard_of_row(row)
        if not 0 <= shard < self.k:
            raise KeyError(row)
        return self.shards.one(shard, "read", method, int(row), *args)

    def count(self) -> int:
        return sum(self.shards.each("read", "count"))

    def count_descriptors(self) -> int:
        return sum(self.shards.each("read", "count_descriptors"))

    def rows(self) -> list[int]:
        return [r for part in self.shards.each("read", "rows") for r in part]

    def known_ids(self) -> set[str]:
        return set().union(*self.shards.each("read", "known_ids"))

    def rows_by_id(self) -> list[tuple[str, int]]:
        return sorted(p for part in self.shards.each("read", "rows_by_id") for p in part)

    def keypoint_counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for part in self.shards.each("read", "keypoint_counts"):
            out.update(part)
        return out

    def tombstones(self) -> frozenset[int]:
        return frozenset().union(*self.shards.each("read", "tombstones"))

    def _by_rows(self, method: str, rows: list[int], *first) -> dict:
        """A by-rows read (``method(*first, rows)``), one call per shard that holds any of ``rows``."""
        by_shard: dict[int, list[int]] = {}
        for r in rows:
            by_shard.setdefault(shard_of_row(r), []).append(int(r))
        out: dict = {}
        for shard, part in by_shard.items():
            if 0 <= shard < self.k:
                out.update(self.shards.one(shard, "read", method, *first, part))
        return out

    def ids_of_rows(self, rows: list[int]) -> dict[int, str]:
        return self._by_rows("ids_of_rows", rows)

    def features_of(self, rows: list[int]) -> dict[int, LocalFeatures]:
        return self._by_rows("features_of", rows)

    def global_vectors_of(self, name: str, rows: list[int]) -> dict[int, GlobalVector]:
        return self._by_rows("global_vectors_of", rows, name)

    def thumbnails_of(self, rows: list[int]) -> dict[int, tuple[bytes, int]]:
        return self._by_rows("thumbnails_of", rows)

    def features(self, row: int) -> LocalFeatures:
        return self._by_row(row, "features")

    def global_vector(self, name: str, row: int) -> GlobalVector | None:
        shard = shard_of_row(row)
        if not 0 <= shard < self.k:
            return None
        return self.shards.one(shard, "read", "global_vector", name, int(row))

    def thumbnail_of_row(self, row: int) -> tuple[bytes, int]:
        return self._by_row(row, "thumbnail_of_row")

    def info(self, reference_id: str) -> ReferenceInfo:
        return self._by_id(reference_id, "info")

    def infos(self) -> list[ReferenceInfo]:
        return sorted((i for part in self.shards.each("read", "infos") for i in part), key=lambda i: i.reference_id)

    def thumbnail(self, reference_id: str) -> bytes:
        return self._by_id(reference_id, "thumbnail")

    def metadata(self, reference_id: str) -> dict[str, str]:
        return self._by_id(reference_id, "metadata")

    def near_identical(self, reference_id: str) -> list[str]:
        rows = self._by_id(reference_id, "near_identical_rows")
        return sorted(self.ids_of_rows(rows).values())

    def close(self) -> None:
        self.shards.close()


@dataclass
class OpenedShards:
    """A sharded index opened for reading: a manifest shaped like one index's, and the merged views."""

    index_dir: Path
    manifest: dict
    store: ShardedStore
    local: ShardedLocal
    shard_dirs: list[Path]


def combined_manifest(top: dict, first: dict, shard_manifests: Sequence[dict]) -> dict:
    """The manifest a reader of a sharded index sees: the first shard's settings and global entries, the
    top-level name and calibration, counts summed over the shards."""
    counts = {k: sum(int(m["counts"].get(k, 0)) for m in shard_manifests)
              for k in ("references", "descriptors", "duplicates", "failures")}
    return {**first, "name": top.get("name", first.get("name")), "created": top.get("created", first.get("created")),
            "counts": counts, "calibration": top.get("calibration"), "shards": len(shard_manifests),
            "local_index": {"kind": "sharded", "descriptors": sum(int(m["local_index"].get("descriptors") or 0)
                                                                  for m in shard_manifests)}}


def open_sharded(index_dir: str | Path, allow_pending: bool = False,
                 shard_set: type | None = None, **shard_set_kw) -> OpenedShards:
    """Open a sharded index. ``shard_set`` (default :class:`LocalShards`) is built from the shard folders."""
    index_dir = Path(index_dir)
    if not allow_pending and (writer := current_writer(index_dir)) is not None:
        raise IndexBusyError(busy_message(index_dir, writer))
    top = read_shards_manifest(index_dir)
    if top.get("calibration_pending") and not allow_pending:
        raise IndexFormatError(f"{index_dir}: the build stopped while calibrating; run 'copylens index build "
                               f"REF_DIR --out {index_dir} --shards {len(top['shards'])}' again to finish it")
    dirs = [index_dir / s for s in top["shards"]]
    manifests = [read_manifest(d) for d in dirs]
    for d, m in zip(dirs, manifests, strict=True):
        if m.get("features") != manifests[0].get("features") or [e.get("fingerprint") for e in m.get("global", [])] \
                != [e.get("fingerprint") for e in manifests[0].get("global", [])]:
            raise IndexFormatError(f"{d}: its settings differ from {dirs[0].name}'s: the shards come from "
                                   f"different builds; {REBUILD}")
    shards = (shard_set or LocalShards)(dirs, **shard_set_kw)
    try:
        counts = shards.each("ready")
        for d, m, n in zip(dirs, manifests, counts, strict=True):
            if int(m["counts"]["references"]) != int(n):
                raise IndexFormatError(f"{d}: changed while opening; try again")
    except BaseException:
        shards.close()
        raise
    manifest = combined_manifest(top, manifests[0], manifests)
    return OpenedShards(index_dir, manifest, ShardedStore(shards), ShardedLocal(shards, manifest["local_index"]
                                                                              ["descriptors"]), dirs)
