"""Geometric verification: descriptor matching + USAC-MAGSAC homography between a query and a reference.

Inputs are NumPy arrays (keypoints in original pixels, RootSIFT vectors); the result is an
:class:`~copylens.core.results.Evidence` plus the statistics the calibration uses. The query is matched
in several variants (direct, mirrored, colour-inverted: see :data:`~copylens.core.features.VARIANTS`);
the variant whose geometric model has the most inliers wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .features import is_mirror_variant
from .results import Evidence, Region


@dataclass(frozen=True, slots=True)
class VerifyConfig:
    ratio: float = 0.85  # Lowe's ratio test on descriptor distances (nearest / second nearest)
    ransac_threshold: float = 0.015  # reprojection threshold as a fraction of the query's longer side
    max_iters: int = 1000  # RANSAC iterations at most
    confidence: float = 0.995  # RANSAC confidence
    min_matches: int = 5  # fewer tentative matches than this: no geometric model is tried


@dataclass(frozen=True, slots=True)
class Verification:
    """Evidence for one (query, reference) pair plus the raw statistics of how it was found."""

    evidence: Evidence
    stats: dict[str, float]  # "matches" counts the tentative matches that passed the ratio test

    @property
    def num_inliers(self) -> int:
        return self.evidence.num_inliers


def _ratio_matches(q: np.ndarray, r: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (query, reference) and similarities of ratio-test matches; q, r are RootSIFT rows."""
    if q.shape[0] == 0 or r.shape[0] < 2:
        e = np.zeros(0, np.int64)
        return e, e.copy(), np.zeros(0, np.float32)
    sims = q @ r.T  # cosine similarity of unit vectors; squared distance = 2 - 2 sim
    # the two most similar per row: argmax, then the max once the best is masked (several times faster
    # than argpartition over the whole matrix, which dominated verification's cost)
    rows = np.arange(sims.shape[0])
    best = sims.argmax(axis=1)
    s_best = sims[rows, best]
    sims[rows, best] = -np.inf
    s_second = sims.max(axis=1)
    d1 = np.sqrt(np.maximum(2 - 2 * s_best, 0))
    d2 = np.sqrt(np.maximum(2 - 2 * s_second, 0))
    keep = d1 < ratio * d2
    # one reference keypoint may be claimed by several query keypoints: keep the most similar claim
    qi = np.nonzero(keep)[0]
    ri = best[keep]
    si = s_best[keep]
    if qi.size:
        o = np.lexsort((-si, ri))
        first = np.ones(o.size, bool)
        first[1:] = ri[o][1:] != ri[o][:-1]
        o = o[first]
        qi, ri, si = qi[o], ri[o], si[o]
    return qi, ri, si.astype(np.float32)


def _hull_fraction(points: np.ndarray, size: tuple[int, int]) -> float:
    if points.shape[0] < 3:
        return 0.0
    hull = cv2.convexHull(points.astype(np.float32))
    return float(cv2.contourArea(hull)) / max(1.0, float(size[0] * size[1]))


def _outline(h: np.ndarray, ref_size: tuple[int, int]) -> np.ndarray:
    w, hh = ref_size
    corners = np.array([[0, 0], [w, 0], [w, hh], [0, hh]], np.float32).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(corners, h).reshape(4, 2)


def _plausible(outline: np.ndarray, query_size: tuple[int, int]) -> bool:
    """A copy projects to a convex, non-degenerate quadrilateral that overlaps the query."""
    if not np.all(np.isfinite(outline)):
        return False
    poly = outline.astype(np.float32)
    if not cv2.isContourConvex(poly.reshape(-1, 1, 2)):  # orientation-agnostic: a mirrored outline is fine
        return False
    area = abs(cv2.contourArea(poly))
    qa = float(query_size[0] * query_size[1])
    return 0.002 * qa < area < 400 * qa


def _fit(qpts: np.ndarray, rpts: np.ndarray, thr: float, cfg: VerifyConfig):
    if qpts.shape[0] < max(4, cfg.min_matches):
        return None, np.zeros(qpts.shape[0], bool)
    h, mask = cv2.findHomography(rpts.reshape(-1, 1, 2), qpts.reshape(-1, 1, 2), cv2.USAC_MAGSAC, thr,
                                 maxIters=cfg.max_iters, confidence=cfg.confidence)
    if h is None or mask is None:
        return None, np.zeros(qpts.shape[0], bool)
    return h, mask.ravel().astype(bool)


def verify(query_kp: np.ndarray, variants: list[tuple[str, np.ndarray]], query_size: tuple[int, int],
           ref_kp: np.ndarray, ref_rs: np.ndarray, ref_size: tuple[int, int],
           cfg: VerifyConfig = VerifyConfig(), region: Region | None = None) -> Verification:
    """Match query descriptor variants to one reference and fit a homography reference -> query.

    ``query_kp`` ``[N x 4]`` / ``ref_kp`` ``[M x 4]`` are keypoints (x, y, size, angle) in original pixels;
    ``variants`` are ``(name, [N x 128] RootSIFT)`` pairs of the query (direct, mirrored, inverted, ...: see
    features.VARIANTS), ``ref_rs`` ``[M x 128]`` the reference's RootSIFT. The variant with the most inliers wins.
    """
    thr = cfg.ransac_threshold * max(query_size)
    best = None
    for name, qdesc in variants:
        qi, ri, sims = _ratio_matches(qdesc, ref_rs, cfg.ratio)
        qpts, rpts = query_kp[qi, :2], ref_kp[ri, :2]
        if is_mirror_variant(name):
            # USAC rejects orientation-reversing models: fit in the flipped query, then compose the flip back
            flip = np.array([[-1.0, 0.0, float(query_size[0])], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            h, inl = _fit(np.column_stack([query_size[0] - qpts[:, 0], qpts[:, 1]]), rpts, thr, cfg)
            h = None if h is None else flip @ h
        else:
            h, inl = _fit(qpts, rpts, thr, cfg)
        key = (int(inl.sum()), qi.size)
        if best is None or key > best[0]:
            best = (key, name, qpts, rpts, sims, h, inl)
    if best is None:
        return Verification(Evidence.empty(), _stats(0, 0, 0.0, 0.0, False, 0.0))
    (n_inl, n_match), name, qpts, rpts, sims, h, inl = best
    if h is None or n_inl < 4:
        return Verification(Evidence.empty(), _stats(0, n_match, 0.0, 0.0, False, 0.0))
    outline = _outline(h, ref_size)
    plausible = _plausible(outline, query_size)
    qin, rin, sin = qpts[inl].astype(np.float32), rpts[inl].astype(np.float32), sims[inl]
    scores = np.clip((sin - 0.75) / 0.25, 0.0, 1.0).astype(np.float32)
    # an implausible projection (folded, degenerate, far off) is no copied region: show none rather than
    # draw a misleading box; the homography and inliers stay as the (weak) evidence they are
    ev = Evidence(qin, rin, scores, h.astype(np.float64), outline.astype(np.float32) if plausible else None,
                  mirrored=is_mirror_variant(name), region=region, variant=name)
    stats = _stats(n_inl, n_match, _hull_fraction(qin, query_size), _hull_fraction(rin, ref_size), plausible,
                   float(sin.mean()))
    return Verification(ev, stats)


def _stats(inliers: int, matches: int, q_spread: float, r_spread: float, plausible: bool,
           mean_sim: float) -> dict[str, float]:
    return {
        "inliers": float(inliers),
        "matches": float(matches),
        "inlier_ratio": inliers / matches if matches else 0.0,
        "query_spread": q_spread,
        "reference_spread": r_spread,
        "plausible": 1.0 if plausible else 0.0,
        "mean_similarity": mean_sim,
    }
