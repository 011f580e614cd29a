"""The global branch of dual retrieval: whole-image descriptors of an index and their search.

For each global descriptor an index was built with (``pdq``, ``timm:...``, see globaldesc/registry.py), the
reference vectors live in the SQLite table ``globals`` and in a FAISS index ``global_<n>.faiss``. At query
time every descriptor's query variants (dihedral, inverted) are searched; the references found add to the
candidates of local recall, and every candidate gets one similarity signal per descriptor, rescaled so
that 0 means "no better than an unrelated image" and 1 "identical", which the calibration weighs with the
geometric evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .globaldesc import create_descriptor
from .globaldesc.base import GlobalDescriptor, check_fingerprint, pairwise_similarity
from .globaldesc.faissindex import GlobalIndex

# similarity an unrelated image typically reaches, per metric: the signal is (sim - floor) / (1 - floor)
CHANCE_SIMILARITY = {"hamming": 0.5, "ip": 0.0}
RECALL_MIN_SIGNAL = 0.5  # a global neighbour joins the candidates only above this rescaled similarity


@dataclass(frozen=True, slots=True)
class GlobalVector:
    """One reference's vector for one descriptor: ``vector`` ``[D]`` (float32 or packed uint8 bits)."""

    vector: np.ndarray
    quality: float
    low_quality: bool


def signal_name(name: str) -> str:
    return f"global:{name}"


def file_name(position: int) -> str:
    return f"global_{position}.faiss"


def extract_reference_vectors(descs: list[GlobalDescriptor], pixels: np.ndarray) -> dict[str, GlobalVector]:
    out = {}
    for d in descs:
        b = d.extract([pixels])
        if len(b):
            out[d.name] = GlobalVector(np.asarray(b.vectors[0]), float(b.quality[0]), bool(b.low_quality[0]))
    return out


def rescale(similarity: np.ndarray | float, metric: str) -> np.ndarray | float:
    floor = CHANCE_SIMILARITY[metric]
    return np.clip((np.asarray(similarity, np.float64) - floor) / (1.0 - floor), 0.0, 1.0)


class GlobalBranch:
    """One global descriptor of an opened index."""

    def __init__(self, descriptor: GlobalDescriptor, index: GlobalIndex) -> None:
        self.descriptor = descriptor
        self.index = index
        self.name = descriptor.name

    @staticmethod
    def open(index_dir: Path, entry: dict, device: str | None = None) -> GlobalBranch:
        neural = entry["metric"] == "ip" and entry["name"] != "none"
        kw = {"device": device} if neural and device not in (None, "auto") else {}
        desc = create_descriptor(entry["name"], **kw)
        check_fingerprint(entry["fingerprint"], desc, str(index_dir))
        return GlobalBranch(desc, GlobalIndex.load(index_dir / entry["file"]))

    def query(self, pixels: np.ndarray) -> np.ndarray:
        """The query's variant vectors ``[V x D]`` (dihedral, inverted), low-quality rows dropped."""
        b = self.descriptor.extract_query(np.ascontiguousarray(pixels))
        return b.vectors[~b.low_quality]

    def query_empty(self) -> np.ndarray:
        width = self.descriptor.dim // 8 if self.descriptor.metric == "hamming" else self.descriptor.dim
        return np.zeros((0, width), np.uint8 if self.descriptor.metric == "hamming" else np.float32)

    def search(self, qvecs: np.ndarray, k: int) -> dict[int, float]:
        """Best rescaled similarity per reference row among the ``k`` nearest of every query variant."""
        if len(qvecs) == 0 or len(self.index) == 0:
            return {}
        scores, ids = self.index.search(qvecs, k)
        best: dict[int, float] = {}
        for s, i in zip(scores.ravel(), ids.ravel(), strict=True):
            if i >= 0:
                v = float(rescale(s, self.descriptor.metric))
                if v > best.get(int(i), -1.0):
                    best[int(i)] = v
        return best

    def similarity(self, qvecs: np.ndarray, ref: GlobalVector | None) -> float:
        """Rescaled similarity of the best query variant to one reference (0 when either is unreliable)."""
        if ref is None or ref.low_quality or len(qvecs) == 0:
            return 0.0
        sims = pairwise_similarity(qvecs, ref.vector[None], self.descriptor.metric)
        return float(rescale(sims.max(), self.descriptor.metric))


def build_global_index(name: str, rows: list[int], vectors: list[np.ndarray], metric_dim: tuple[str, int],
                       path: Path) -> GlobalIndex:
    metric, dim = metric_dim
    index = GlobalIndex(dim, metric)
    if rows:
        index.add(np.asarray(rows, np.int64), np.stack(vectors))
    index.save(path)
    return index
