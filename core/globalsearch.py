"""The global branch of dual retrieval: whole-image descriptors of an index and their search.

For each global descriptor an index was built with (``pdq``, ``timm:...``, see globaldesc/registry.py), the
reference vectors live in the SQLite table ``globals`` and in a FAISS index ``global_<n>.faiss``. At query
time every descriptor's query variants (dihedral, inverted) are searched; the references found add to the
candidates of local recall, and every candidate gets one similarity signal per descriptor, rescaled so
that 0 means "no better than an unrelated image" and 1 "identical", which the calibration weighs with the
geometric evidence.

Neural descriptors (metric ``"ip"``) get two more steps, fitted when the index is built
(:func:`~copylens.core.index.globalfiles.write_global_index`, settings
:class:`~copylens.core.index.globalfiles.GlobalPostConfig`) and named in the descriptor's manifest entry:

* **PCA whitening** (:class:`~copylens.core.globaldesc.whitening.Whitening`), fitted on the reference
  descriptors and saved as ``global_<n>.whitening.npz``; the FAISS index holds whitened vectors. The
  database keeps the raw network vectors: a rebuild (rerunning ``copylens index build`` on the index)
  refits from them, while ``index add`` / ``index remove`` rebuild the FAISS index by applying the stored
  whitening unchanged (never refitting silently: the calibration was fitted on its scores). Fitted only
  from ``whiten_min_per_dim`` references per dimension (default 4): a covariance estimated from fewer
  rows has its smallest eigenvalues far too small, and whitening would blow up noise along them.
* **Background score normalisation** (SSCD / ISC2021 style,
  :class:`~copylens.core.globaldesc.whitening.BackgroundNormalizer`): every similarity of a query
  variant becomes ``sim - beta * mean(its similarities to background neighbours skip+1 .. skip+k)``. The
  background is a seeded random sample of (whitened) reference descriptors, ``global_<n>.background.npz``;
  ``skip=1`` keeps a true copy whose own reference was sampled from being penalised for matching it (see
  BackgroundNormalizer). A generic query that resembles everything loses more than a true copy, so one
  threshold fits all queries. The result is clipped into [0, 1] like any signal: 0 = no more similar than
  the query's typical unrelated neighbours. Like the whitening, the background is fixed between builds:
  ``index add`` / ``remove`` leave it as it is (it is a statistical sample of "unrelated content", not a
  list of references; a removed reference's whitened vector stays in it until the next build).

Both files are plain ``.npz`` arrays (read with ``allow_pickle=False``) whose sha256 the manifest records;
a missing or altered file refuses to open. The manifest's ``fingerprint`` is that of the network alone
(without whitening), so it stays comparable with the descriptor ``create_descriptor(name)`` builds. A
neural entry reads::

    {"name": "timm:...", "fingerprint": "<network>", "file": "global_0.faiss", "metric": "ip", "dim": 512,
     "whitening": {"file": "global_0.whitening.npz", "sha256": "...", "input_dim": 512, "dim": 512,
                   "references": 9000}  -- or {"skipped": "<why>"},
     "normalization": {"file": "global_0.background.npz", "sha256": "...", "size": 4096, "k": 10,
                       "beta": 1.0, "skip": 1}  -- or {"skipped": "<why>"}}

Entries without these keys (indexes built before they existed) open as before: raw vectors, no
normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import IndexFormatError
from .globaldesc import create_descriptor
from .globaldesc.base import GlobalDescriptor, check_fingerprint, pairwise_similarity
from .globaldesc.whitening import BackgroundNormalizer, Whitening
from .index.globalfiles import load_normalizer, load_whitening
from .index.globalindex import GlobalIndex
from .index.store import GlobalVector

# similarity an unrelated image typically reaches, per metric: the signal is (sim - floor) / (1 - floor)
CHANCE_SIMILARITY = {"hamming": 0.5, "ip": 0.0}



@dataclass(frozen=True)
class GlobalQuery:
    """One query's vectors for one branch: ``vectors`` ``[V x D]`` (variants, whitened when the index
    whitens) and ``offsets`` ``[V]``, the background level subtracted from each variant's similarities."""

    vectors: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.vectors)


def signal_name(name: str) -> str:
    return f"global:{name}"


def rescale(similarity: np.ndarray | float, metric: str) -> np.ndarray | float:
    floor = CHANCE_SIMILARITY[metric]
    return np.clip((np.asarray(similarity, np.float64) - floor) / (1.0 - floor), 0.0, 1.0)


class GlobalBranch:
    """One global descriptor of an opened index, with its whitening and score normalisation when it has
    them (neural descriptors, see the module documentation)."""

    def __init__(self, descriptor: GlobalDescriptor, index: GlobalIndex, whitening: Whitening | None = None,
                 normalizer: BackgroundNormalizer | None = None) -> None:
        self.descriptor = descriptor
        self.index = index
        self.name = descriptor.name
        self.whitening = whitening
        self.normalizer = normalizer

    @staticmethod
    def open(index_dir: Path, entry: dict, device: str | None = None, index=None) -> GlobalBranch:
        """``index``: search this instead of the entry's FAISS file (a sharded index's merged view,
        :class:`~copylens.core.index.shards.ShardedGlobalIndex`); ``index_dir`` then holds the shared
        whitening and background."""
        index_dir = Path(index_dir)
        neural = entry["metric"] == "ip" and entry["name"] != "none"
        kw = {"device": device} if neural and device not in (None, "auto") else {}
        desc = create_descriptor(entry["name"], **kw)
        # the network alone: the fitted whitening is the index's, checked by its own digest below
        check_fingerprint(entry["fingerprint"], desc, str(index_dir))
        whitening = load_whitening(index_dir, entry) if neural else None
        normalizer = load_normalizer(index_dir, entry) if neural else None
        index = GlobalIndex.load(index_dir / entry["file"]) if index is None else index
        width = whitening.dim if whitening is not None else desc.dim
        if index.dim != width:
            raise IndexFormatError(f"{index_dir / entry['file']}: holds {index.dim}-d vectors but "
                                   f"{entry['name']!r} gives {width}-d ones; rebuild the index")
        if normalizer is not None and normalizer.background.shape[1:] != (width,):
            raise IndexFormatError(f"{index_dir / entry['normalization']['file']}: background vectors of shape "
                                   f"{normalizer.background.shape} do not fit {width}-d descriptors; rebuild "
                                   "the index")
        return GlobalBranch(desc, index, whitening, normalizer)

    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        """Raw descriptor rows (as extracted and stored) -> the rows the FAISS index compares: whitened."""
        return vectors if self.whitening is None else self.whitening.apply(vectors)

    def query_vectors(self, vectors: np.ndarray, absent: np.ndarray | None = None) -> GlobalQuery:
        """The query of raw descriptor rows (as the descriptor extracts them): whitened when the index
        whitens, with each row's background offset (0 without normalisation). ``absent``: raw descriptors
        of references to treat as not indexed, left out of the background (BackgroundNormalizer.offsets)."""
        x = self.prepare(vectors)
        if self.normalizer is None or not len(x):
            return GlobalQuery(x, np.zeros(len(x), np.float32))
        gone = None if absent is None or not len(absent) else self.prepare(np.asarray(absent))
        return GlobalQuery(x, self.normalizer.offsets(x, gone))

    def query(self, pixels: np.ndarray, absent: np.ndarray | None = None) -> GlobalQuery:
        """The query's variant vectors (dihedral, inverted), low-quality rows dropped, see query_vectors."""
        b = self.descriptor.extract_query(np.ascontiguousarray(pixels))
        return self.query_vectors(b.vectors[~b.low_quality], absent)

    def query_empty(self) -> GlobalQuery:
        d = self.descriptor
        if d.metric == "hamming":
            return self.query_vectors(np.zeros((0, d.dim // 8), np.uint8))
        return self.query_vectors(np.zeros((0, d.dim), np.float32))

    def search(self, query: GlobalQuery, k: int) -> dict[int, float]:
        """Best rescaled (and background-normalised) similarity per reference row among the ``k`` nearest of
        every query variant."""
        if len(query) == 0 or len(self.index) == 0:
            return {}
        scores, ids = self.index.search(query.vectors, k)
        scores = scores - query.offsets[:, None]
        best: dict[int, float] = {}
        for s, i in zip(scores.ravel(), ids.ravel(), strict=True):
            if i >= 0:
                v = float(rescale(s, self.descriptor.metric))
                if v > best.get(int(i), -1.0):
                    best[int(i)] = v
        return best

    def similarity(self, query: GlobalQuery, ref: GlobalVector | None) -> float:
        """Rescaled (and background-normalised) similarity of the best query variant to one reference, whose
        vector is the raw one from the database (0 when either is unreliable)."""
        if ref is None or ref.low_quality or len(query) == 0:
            return 0.0
        sims = pairwise_similarity(query.vectors, self.prepare(ref.vector[None]), self.descriptor.metric)[:, 0]
        return float(rescale((sims - query.offsets).max(), self.descriptor.metric))


