"""Meta's PDQ perceptual hash (via the ``pdqhash`` package) as a global descriptor.

256 bits per image, packed into 32 uint8 (most significant bit first, as ``np.packbits`` does), compared by
Hamming distance. PDQ is robust to resizing, recompression, mild colour and blur edits and, through its 8
dihedral query variants, to 90-degree rotations and mirroring; it is not robust to crops, pastes or heavy
overlays — that is what local features are for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import pdqhash

from ..resize import fit_longest
from .base import DescriptorBatch, check_image, config_digest


@dataclass(frozen=True)
class PdqConfig:
    # Meta's PDQ documentation calls hashes with quality below 50 (of 100) too featureless to trust (flat,
    # blank or nearly uniform images); such rows are flagged low_quality. 0.5 on our [0, 1] scale.
    min_quality: float = 0.5
    # Images are shrunk (INTER_AREA) so that their longer side is at most this before hashing: PDQ reduces
    # every image to 64x64 anyway and Meta's hasher does the same pre-resize for speed. 0 disables it.
    max_side: int = 512
    # extract_query also returns the complements of the 8 dihedral hashes as variants 8..15: inverting an
    # image turns every PDQ bit over (exactly: the DCT signs flip around their median), so a negative copy
    # is found at no hashing cost; without them inverted copies land ~256 bits away.
    query_inverted: bool = True


DEFAULT_PDQ = PdqConfig()


class PdqDescriptor:
    """``pdq``: 256-bit PDQ hashes, metric ``"hamming"``; quality 0-100 mapped to [0, 1]."""

    name = "pdq"
    dim = 256
    metric = "hamming"

    def __init__(self, config: PdqConfig = DEFAULT_PDQ) -> None:
        self.config = config

    def fingerprint(self) -> str:
        cfg = asdict(self.config)
        cfg.pop("query_inverted")  # it does not change reference hashes
        return config_digest({"kind": "pdq", "pdqhash": pdqhash.__version__, **cfg})

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        image = check_image(image)
        if self.config.max_side:
            image, _ = fit_longest(image, self.config.max_side, cv2.INTER_AREA)
        return image

    def _batch(self, bits: list[np.ndarray], quality: list[float], variant: Sequence[int]) -> DescriptorBatch:
        if not bits:
            return DescriptorBatch.empty(self.dim // 8, self.metric)
        packed = np.packbits(np.asarray(bits, dtype=np.uint8), axis=1)
        q = np.clip(np.asarray(quality, dtype=np.float32) / 100.0, 0.0, 1.0)
        return DescriptorBatch(packed, q, np.asarray(variant, dtype=np.int64), q < self.config.min_quality)

    def extract(self, images: Sequence[np.ndarray]) -> DescriptorBatch:
        bits, quality = [], []
        for image in images:
            h, q = pdqhash.compute(self._prepare(image))
            bits.append(h)
            quality.append(q)
        return self._batch(bits, quality, range(len(bits)))

    def extract_query(self, image: np.ndarray) -> DescriptorBatch:
        hashes, q = pdqhash.compute_dihedral(self._prepare(image))
        hashes = list(hashes)
        if self.config.query_inverted:
            hashes += [1 - h for h in hashes]  # variants INVERTED + k: hashes of the negative
        return self._batch(hashes, [q] * len(hashes), range(len(hashes)))
