"""Dense structural agreement between a query and a reference aligned by the verified homography.

Inliers say that some keypoints agree; they cannot say whether the rest of the picture does. Families of
near-identical graphics (the same clouds with rain or with snow, the same box labelled "lha" or "lhz")
share many keypoints yet differ in parts, and a partial match then scores like a copy. Here the
reference is warped onto the query by the homography and their edges are compared over the overlap:

- ``edge_recall``: the share of the reference's edges that the query shows too (within 2 pixels at the
  comparison scale). Overlays (text, emoji, a meme caption) add edges to the query but hide few of the
  reference's, and colour changes, inversion or grey keep edges; a sibling graphic misses whole parts.
- ``edge_precision``: the share of the query's edges, inside the projected reference, that the reference
  explains (lowered by overlays; reported for the calibration to weigh).
- ``distinct_edges`` (:func:`distinct_edges`): a sibling shares most edges with the reference, so both
  signals above only say "this family". Against the most alike other verified candidate, it asks whether
  the query shows the edges that tell the reference from that rival (a copy does; a third, unindexed
  sibling shows neither side's) rather than those that tell the rival apart, including the parts that
  only one of them covers (siblings that differ in extent, like overlapping sheets of one map).

Edges are taken on grey levels (Canny with thresholds from the upper quartile of the gradient), on both images resized
so that the overlap is compared at about ``side`` pixels, which keeps the cost near 1 ms per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIDE = 192  # comparison scale (longer side of the query, in pixels)
TOLERANCE = 2  # pixels of misalignment tolerated (dilation radius)
MIN_EDGES = 30  # fewer reference edge pixels in the overlap than this: no verdict (NaN)
MIN_DISTINCT = 12  # fewer edge pixels telling two siblings apart than this: no verdict (NaN)


def _gray(pixels: np.ndarray) -> np.ndarray:
    return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


def _edges(gray: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    strong = mag[mag > 1.0]
    if strong.size == 0:
        return np.zeros(gray.shape, bool)
    hi = float(max(20.0, np.percentile(strong, 75)))
    return cv2.Canny(gray, hi * 0.4, hi, L2gradient=True) > 0


_KERNEL = np.ones((2 * TOLERANCE + 1, 2 * TOLERANCE + 1), np.uint8)


def _near(edges: np.ndarray) -> np.ndarray:
    """Pixels within TOLERANCE of an edge."""
    return cv2.dilate(edges.astype(np.uint8), _KERNEL) > 0


@dataclass(frozen=True, slots=True)
class QueryEdges:
    """The query side of the comparison, computed once per query: its grey image at the comparison
    scale, that image's edges, and original query pixels -> comparison pixels."""

    size: tuple[int, int]  # (width, height) of the comparison image
    edges: np.ndarray  # bool [h x w]
    factor: float
    near: np.ndarray  # bool [h x w]: within TOLERANCE of a query edge


def query_edges(query: np.ndarray, query_scale: float) -> QueryEdges:
    """``query`` an RGB or grey array, ``query_scale`` its original pixels per array pixel."""
    qh, qw = query.shape[:2]
    f = SIDE / max(qh, qw)
    qs = cv2.resize(_gray(query), (max(1, round(qw * f)), max(1, round(qh * f))), interpolation=cv2.INTER_AREA)
    edges = _edges(qs)
    return QueryEdges((qs.shape[1], qs.shape[0]), edges, f / query_scale, _near(edges))


@dataclass(frozen=True, slots=True)
class Warped:
    """A reference warped onto the query's comparison frame by its homography."""

    mask: np.ndarray  # bool: where the reference covers the query (border eroded)
    edges: np.ndarray  # bool: the reference's edges inside ``mask``
    near: np.ndarray  # bool: within TOLERANCE of those edges


def warp_reference(q: QueryEdges, reference: np.ndarray, reference_scale: float,
                   homography: np.ndarray) -> Warped | None:
    """``reference`` (RGB or grey; ``reference_scale`` original pixels per array pixel) in the query's
    comparison frame; None when it covers too little of the query to compare."""
    # array pixels of the small query <- original query pixels <- original reference <- reference array
    to_small = np.diag([q.factor, q.factor, 1.0])
    from_ref = np.diag([reference_scale, reference_scale, 1.0])
    h = to_small @ homography @ from_ref
    rgray = _gray(reference)
    # the border replicated, not black: a black surround drew the strongest edge of a light graphic around
    # it, the edge threshold (a percentile) rose to it and the graphic's own lines vanished whenever the
    # reference covered only part of the query (a paste, a screenshot, padding)
    warped = cv2.warpPerspective(rgray, h, q.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpPerspective(np.full(rgray.shape, 255, np.uint8), h, q.size, flags=cv2.INTER_NEAREST) > 0
    mask = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # the warped border is no edge
    if np.count_nonzero(mask) < 64:
        return None
    er = _edges(warped) & mask
    return Warped(mask, er, _near(er))


def edge_agreement(query: np.ndarray, query_scale: float, reference: np.ndarray, reference_scale: float,
                   homography: np.ndarray) -> tuple[float, float]:
    """``(edge_recall, edge_precision)`` in [0, 1], NaN when the overlap holds too few edges to judge.

    ``query`` and ``reference`` are RGB or grey arrays; ``*_scale`` are their original pixels per array
    pixel (as ``DecodedImage.scale_to_original``); ``homography`` maps reference original pixels to query
    original pixels. For several references against one query, :func:`query_edges` once, then
    :func:`warp_reference` and :func:`compare` per reference.
    """
    q = query_edges(query, query_scale)
    w = warp_reference(q, reference, reference_scale, homography)
    return (float("nan"), float("nan")) if w is None else compare(q, w)


def compare(q: QueryEdges, w: Warped) -> tuple[float, float]:
    """``(edge_recall, edge_precision)`` of a warped reference (see :func:`edge_agreement`)."""
    eq, er = q.edges & w.mask, w.edges
    nr, nq = np.count_nonzero(er), np.count_nonzero(eq)
    if nr < MIN_EDGES or nq < MIN_EDGES:
        return float("nan"), float("nan")
    return float(np.count_nonzero(er & q.near) / nr), float(np.count_nonzero(eq & w.near) / nq)


def _above_chance(hit: float, chance: float) -> float:
    """``hit``, the share of some edge pixels that land near other edges, rescaled so that 0 is what
    pixels at random places would score (``chance``: the share of the area near those edges) and 1 is
    all of them."""
    return 0.0 if chance >= 0.99 else (hit - chance) / (1.0 - chance)


def likeness(a: Warped, b: Warped) -> float:
    """The share of ``a``'s edges that ``b`` shows too where both cover the query, above chance: near 1
    for near-identical siblings, near 0 for unrelated references. Without the chance correction a
    photo's dense edges leave little of the area far from an edge, and unrelated photos looked alike."""
    both = a.mask & b.mask
    ea = a.edges & both
    n, area = np.count_nonzero(ea), np.count_nonzero(both)
    if n < MIN_EDGES:
        return 0.0
    return float(_above_chance(np.count_nonzero(ea & b.near) / n, np.count_nonzero(b.near & both) / area))


def distinct_edges(q: QueryEdges, a: Warped, b: Warped) -> float:
    """Does the query show what tells ``a`` from its sibling ``b``? The share of ``a``'s edges that ``b``
    lacks which the query shows, minus the share of ``b``'s edges that ``a`` lacks which the query shows,
    each above chance (the share of that side's area near a query edge, so that a busy query, a photo
    pasted around the copy, shows nothing by chance): about [-1, 1], high for a copy of ``a``, near 0
    for a third sibling that differs from both, negative for a copy of ``b``.

    ``b`` lacks an edge of ``a`` where it draws none nearby, and also where it does not reach at all:
    siblings can differ in extent rather than in a redrawn part (overlapping sheets of one map, a
    wallpaper and its wider or taller cut), and a query showing the part that only ``a`` covers shows
    ``a``. A side with fewer than ``MIN_DISTINCT`` distinct edge pixels counts 0; NaN when both have
    (the two are identical wherever the query sees them: no verdict)."""
    only_a = a.edges & ~b.near
    only_b = b.edges & ~a.near
    na, nb = np.count_nonzero(only_a), np.count_nonzero(only_b)
    if na < MIN_DISTINCT and nb < MIN_DISTINCT:
        return float("nan")

    def shown(only: np.ndarray, n: int, mask: np.ndarray) -> float:
        if n < MIN_DISTINCT:
            return 0.0
        chance = np.count_nonzero(q.near & mask) / max(1, np.count_nonzero(mask))
        return _above_chance(np.count_nonzero(only & q.near) / n, chance)

    return float(np.clip(shown(only_a, na, a.mask) - shown(only_b, nb, b.mask), -1.0, 1.0))
