"""Typed results that cross stage boundaries (and the core/app boundary).

Only NumPy arrays and plain Python values live here: no ``cv2.KeyPoint``, no FAISS object.
Coordinates are pixels of the *original* image (after EXIF orientation), ``x`` then ``y``.
Scores follow one convention everywhere: higher means more similar.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Region:
    """A rectangle of the query, ``(x0, y0, x1, y1)`` in query pixels, with a proposal score in [0, 1].

    ``quad``: a picture seen at an angle (kind ``"quad"``) also has its four corners, clockwise from the
    top left, as 8 numbers in query pixels; ``box`` is then their bounding box, and the region is searched
    rectified (core/regions/quads.py).
    """

    box: tuple[float, float, float, float]
    score: float
    kind: str = "full"  # "full" (whole image), or the proposal method that made it
    quad: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    """Geometric evidence that a query region is a copy of a reference.

    ``query_points`` and ``reference_points`` are ``[K x 2]`` float32 arrays of matched inlier locations,
    row ``i`` of one corresponding to row ``i`` of the other. ``homography`` ``[3 x 3]`` maps reference
    pixels to query pixels (``None`` when no model was found). ``outline`` ``[4 x 2]`` is the reference's
    border projected into the query: the copied region (``None`` when that projection is not a plausible
quadrilateral, e.g. from a handful of chance inliers). ``inlier_scores`` ``[K]`` in [0, 1] rate each match
    (1 = descriptors nearly identical), for colouring match lines.
    """

    query_points: np.ndarray
    reference_points: np.ndarray
    inlier_scores: np.ndarray
    homography: np.ndarray | None
    outline: np.ndarray | None
    mirrored: bool = False  # the query matched after a horizontal flip
    region: Region | None = None  # the query region whose search produced this evidence
    variant: str = "direct"  # which query variant matched: direct, mirror, invert or invert_mirror

    @property
    def num_inliers(self) -> int:
        return int(self.query_points.shape[0])

    @staticmethod
    def empty() -> Evidence:
        z = np.zeros((0, 2), np.float32)
        return Evidence(z, z.copy(), np.zeros((0,), np.float32), None, None)


@dataclass(frozen=True, slots=True)
class Match:
    """One ranked reference for a query.

    ``score`` is the calibrated probability that the query is a copy of this reference. ``signals`` holds
    the raw statistics the calibration used (votes, inliers, global similarities, ...), for display and
    debugging. ``sibling``: the near-identical indexed reference the query was compared with to tell them
    apart (its ``distinct_edges`` signal), or "".
    """

    reference_id: str
    score: float
    evidence: Evidence
    signals: dict[str, float] = field(default_factory=dict)
    sibling: str = ""

    @property
    def num_inliers(self) -> int:
        return self.evidence.num_inliers


@dataclass(frozen=True, slots=True)
class HashMatch:
    """A match against an imported PDQ hash list: no image, so no SIFT evidence, only a distance."""

    list_name: str
    entry_id: str
    tags: tuple[str, ...]
    distance: int  # Hamming distance in bits (of 256) between the query's best PDQ variant and the entry
    quality: int  # PDQ quality (0-100) of the query hash that matched
    entry_quality: int | None  # as the list gave it, when it did
    confidence: float  # calibrated for hash-only evidence (core/hashmatch.py)
    transform: str  # how the query relates to the listed picture: "as listed", "mirrored left to right"...
    box: tuple[float, float, float, float] | None = None  # the query region that matched; None: the whole image


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Everything one query produced: ranked matches (best first), regions searched, timings in ms."""

    query_id: str
    source: str
    image_size: tuple[int, int]  # (width, height) of the original query image
    matches: list[Match]
    regions: list[Region] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    query_sha256: str = ""  # of the file bytes / encoded data / array bytes (set by Engine.search)
    hash_matches: list[HashMatch] = field(default_factory=list)  # imported hash lists (no image evidence)
    # the share of copies among queries that the matches' scores are for (core/prior.py); None: unknown (an
    # index calibrated before 2026-12-05, or not at all)
    copy_share: float | None = None

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None


@dataclass(frozen=True, slots=True)
class ReferenceInfo:
    """A reference image as the index records it."""

    reference_id: str
    path: str  # original path when indexed (may be offline now)
    sha256: str
    width: int
    height: int
    num_keypoints: int
