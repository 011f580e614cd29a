"""Matching queries against the PDQ hash lists an index holds (no images behind them, so no SIFT).

The query's PDQ hash is taken in its 8 dihedral variants and their complements (an inverted copy flips
every bit), for the whole image and for each region the engine proposed (a listed picture pasted into a
screenshot or meme); each is searched in ``hashlists.faiss``. A hit is reported when the Hamming distance
is at most ``max_distance`` and the query's PDQ quality at least ``min_quality``: Meta's published
guidance for PDQ is 31 and 50.

Confidence. Only the distance is evidence, so the confidence is ``sigmoid(a - b * distance)``, measured
by ``bench/pdq_hash_calibration.py`` on the dev benchmark v2 (unseen kind excluded from the fit): copies
found at 0-7 bits were right 99.5% of the time, at 24-31 bits 96.6%, at 40-47 bits 80% (distractors
weighted as half of all queries). The false-alarm rate grows with the number of hashes searched, so the
odds are divided by ``entries / measured_entries`` for lists larger than the measured collection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .globaldesc.pdq import PdqDescriptor
from .imageio import DecodedImage
from .index.globalindex import GlobalIndex
from .index.hashlists import PDQ_BITS, entries_of_rows
from .index.layout import HASHLISTS_FAISS
from .index.store import ReferenceStore
from .regions import region_pixels
from .results import HashMatch, Region

# query variant k (pdqhash.compute_dihedral's order) matches a listed hash when the query is the listed
# picture transformed as said here (checked in tests/test_hashlists.py)
TRANSFORMS = ("as listed", "rotated 90° clockwise", "rotated 180°", "rotated 90° counter-clockwise",
              "flipped top to bottom", "mirrored left to right", "transposed", "anti-transposed")


@dataclass(frozen=True)
class HashMatchConfig:
    max_distance: int = 31  # Meta's guidance for PDQ: distance <= 31 ...
    min_quality: int = 50  # ... between hashes of quality >= 50
    per_variant: int = 5  # nearest entries looked at per query hash
    # P(copy | distance) = sigmoid(a - b * d), measured by bench/pdq_hash_calibration.py on 3,316 references
    a: float = 5.630
    b: float = 0.0908
    measured_entries: int = 3316

    def confidence(self, distance: int, entries: int) -> float:
        z = self.a - self.b * distance - math.log(max(1.0, entries / self.measured_entries))
        return 1.0 / (1.0 + math.exp(-z))


def transform_name(variant: int) -> str:
    base = TRANSFORMS[variant % 8]
    if variant >= 8:
        return "inverted" if base == "as listed" else f"inverted, {base}"
    return base


class HashListMatcher:
    """The hash lists of one open index."""

    def __init__(self, index: GlobalIndex, store: ReferenceStore, config: HashMatchConfig | None = None) -> None:
        self.index = index
        self.store = store
        self.config = config or HashMatchConfig()
        self.pdq = PdqDescriptor()

    @classmethod
    def open(cls, index_dir: Path, manifest: dict, store: ReferenceStore,
             config: HashMatchConfig | None = None) -> HashListMatcher | None:
        """The matcher of an index that holds hash lists, else None."""
        if not manifest.get("hash_lists_file"):
            return None
        return cls(GlobalIndex.load(Path(index_dir) / HASHLISTS_FAISS), store, config)

    def __len__(self) -> int:
        return len(self.index)

    def match(self, image: DecodedImage, regions: list[Region]) -> list[HashMatch]:
        """Hash-list entries within the threshold of the whole query or of one of its regions, best first
        (one per entry: its smallest distance)."""
        cfg = self.config
        best: dict[int, tuple[int, int, float, tuple[float, float, float, float] | None]] = {}
        s = image.scale_to_original
        for region in regions or [None]:
            pixels, box = image.pixels, None
            if region is not None and region.kind != "full":
                pixels = region_pixels(image.pixels, region, 1.0 / s)  # a quadrilateral upright
                box = region.box
                if min(pixels.shape[:2]) < 32:
                    continue
            batch = self.pdq.extract_query(np.ascontiguousarray(pixels))
            quality = int(round(float(batch.quality[0]) * 100)) if len(batch) else 0
            if quality < cfg.min_quality:
                continue
            scores, ids = self.index.search(batch.vectors, cfg.per_variant)
            for v in range(ids.shape[0]):
                for score, row in zip(scores[v], ids[v], strict=True):
                    if row < 0:
                        continue
                    d = int(round((1.0 - float(score)) * PDQ_BITS))
                    if d <= cfg.max_distance and (row not in best or d < best[row][0]):
                        best[int(row)] = (d, int(batch.variant[v]), quality, box)
        if not best:
            return []
        entries = entries_of_rows(self.store, sorted(best))
        n = len(self.index)
        out = [HashMatch(e.list_name, e.entry_id, e.tags, d, q, e.quality, cfg.confidence(d, n),
                         transform_name(v), box)
               for row, (d, v, q, box) in best.items() if (e := entries.get(row)) is not None]
        out.sort(key=lambda m: (m.distance, m.list_name, m.entry_id))
        return out
