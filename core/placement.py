"""Where in the query each candidate's evidence lies, and which candidates therefore do not compete.

The confidence's second stage (calibrate.ContrastCalibrator) judges each candidate by its lead over the
query's other candidates: a sibling that matches two indexed graphics equally well is not a copy of
either. But a picture pasted onto another picture is a copy of its own reference whatever the
background matches: a horse pasted onto an indexed photo of a cat verified with 23 inliers and a
first-stage probability of 0.80, and scored 0.00 because the cat led it by 365 inliers. A candidate's
evidence is an *inset* of another's when its inliers' bounding box lies inside the other's and the other
has almost none of its own inliers there (the inset covers that part of it). The inset is then not
weighed against the picture around it. The reverse still holds: the picture around has something else
in its middle, so at most part of the query is a copy of it (a screenshot of an unindexed wallpaper,
matched around a logo that several indexed wallpapers share, stays as doubtful as before). Evidence side
by side, or in the same place, stays in competition.

Only NumPy arrays of inlier positions come in; pairs of candidate indices go out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class PlacementConfig:
    min_inliers: int = 8  # fewer inliers locate nothing: such a candidate competes with every other one
    inside: float = 0.9  # this share of the inset's box must lie inside the other's box
    # the other's inliers in the inset's box, as a share of what its inliers' density would put there
    # (their count times the boxes' area ratio): at most this for the inset to cover it
    covered: float = 0.25


def _box(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float64)


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 1.0) * max(box[3] - box[1], 1.0))


def _inset(small: np.ndarray, big: np.ndarray, big_points: np.ndarray, cfg: PlacementConfig) -> bool:
    """Whether the evidence with box ``small`` is an inset of the evidence ``big_points`` (box ``big``)."""
    w = min(small[2], big[2]) - max(small[0], big[0])
    h = min(small[3], big[3]) - max(small[1], big[1])
    if w <= 0 or h <= 0 or w * h < cfg.inside * _area(small):
        return False
    x, y = big_points[:, 0], big_points[:, 1]
    there = int(((x >= small[0]) & (x <= small[2]) & (y >= small[1]) & (y <= small[3])).sum())
    return there <= cfg.covered * len(big_points) * _area(small) / _area(big)


def insets(points: Sequence[np.ndarray | None], cfg: PlacementConfig = PlacementConfig()
           ) -> list[tuple[int, int]]:
    """Pairs ``(inset, around)`` of candidate indices: the evidence of ``inset`` is an inset of that of
    ``around`` (see the module documentation).

    ``points[i]``: candidate i's inlier positions in the query, ``[K x 2]`` (any one frame for all)."""
    pts = {i: np.asarray(p, np.float64) for i, p in enumerate(points) if p is not None and len(p) >= cfg.min_inliers}
    located = list(pts)
    boxes = {i: _box(p) for i, p in pts.items()}
    out = []
    for a, i in enumerate(located):
        for j in located[a + 1:]:
            small, big = (i, j) if _area(boxes[i]) <= _area(boxes[j]) else (j, i)
            if _inset(boxes[small], boxes[big], pts[big], cfg):
                out.append((small, big))
    return out


def rival_matrix(n: int, pairs: Sequence[Sequence[int]] = ()) -> np.ndarray:
    """``[n x n]``, True where candidate j competes with candidate i: every other one, except the
    candidate around an inset (``pairs`` of :func:`insets`), for the inset."""
    out = ~np.eye(n, dtype=bool)
    for inset, around in pairs:
        out[inset, around] = False
    return out
