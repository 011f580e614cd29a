"""Region proposals from quadrilaterals: a picture seen at an angle (a photo of a print or a screen, a
painting photographed off-axis, a graphic pasted in perspective).

Such a copy is neither axis-aligned nor undistorted: a box around it holds background, and the picture
inside is a projective warp of the reference, which flat graphics' few keypoints and the global
descriptors do not survive well. A convex four-sided outline with a colour step all around it is proposed
with its corners (``Region.quad``), and the query pipeline searches it *rectified*: warped back to a
rectangle (:func:`rectify`), with the matches mapped back into the query (:func:`to_query`).

1. Edge maps (Canny at two sensitivities, slightly dilated) of the working copy; the outer outline of
   every contour is simplified to a polygon (Douglas-Peucker, 3% of its perimeter).
2. Convex quadrilaterals of a plausible size, with no corner sharper than :data:`MIN_CORNER_DEGREES`,
   are kept.
3. Score: each side's *step*, the median colour difference between thin strips just inside and just
   outside it, relative to :data:`FULL_STEP`; a quadrilateral's score is its weakest side's, so one
   strong edge of a textured photo does not make a region.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..results import Region
from .common import ProposalConfig, WorkImage

MIN_CORNER_DEGREES = 35.0  # a sharper corner is a sliver, not a picture seen at an angle
FULL_STEP = 60.0  # colour step (max over RGB, 0-255) across a side that counts as a full-strength edge
STRIP_OFFSET = 3.0  # strips sampled this many working pixels either side of a side
CANNY = ((30, 90), (60, 180))  # (low, high) thresholds: a soft and a clean pass


def order_corners(pts: np.ndarray) -> np.ndarray:
    """Four points as top-left, top-right, bottom-right, bottom-left (``[4 x 2]`` float64)."""
    pts = np.asarray(pts, np.float64).reshape(4, 2)
    c = pts.mean(0)
    ang = np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0])
    pts = pts[np.argsort(ang)]  # clockwise in image coordinates (y down), starting anywhere
    start = int(np.argmin(pts.sum(1)))  # top-left: smallest x + y
    return np.roll(pts, -start, axis=0)


def _corner_angles(q: np.ndarray) -> np.ndarray:
    out = []
    for i in range(4):
        a, b, c = q[i - 1], q[i], q[(i + 1) % 4]
        u, v = a - b, c - b
        cos = float(u @ v / max(1e-9, np.linalg.norm(u) * np.linalg.norm(v)))
        out.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return np.array(out)


def _side_steps(px: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Median colour step across each side of ``q`` (corners clockwise), sampled away from the corners."""
    h, w = px.shape[:2]
    centre = q.mean(0)
    steps = []
    for i in range(4):
        a, b = q[i], q[(i + 1) % 4]
        n_pts = max(8, int(np.linalg.norm(b - a) / 2))
        t = np.linspace(0.1, 0.9, n_pts)[:, None]
        pts = a + t * (b - a)
        normal = np.array([-(b - a)[1], (b - a)[0]]) / max(1e-9, np.linalg.norm(b - a))
        if normal @ (centre - (a + b) / 2) < 0:
            normal = -normal  # pointing inside
        inner = np.round(pts + STRIP_OFFSET * normal).astype(int)
        outer = np.round(pts - STRIP_OFFSET * normal).astype(int)
        ok = ((inner[:, 0] >= 0) & (inner[:, 0] < w) & (inner[:, 1] >= 0) & (inner[:, 1] < h)
              & (outer[:, 0] >= 0) & (outer[:, 0] < w) & (outer[:, 1] >= 0) & (outer[:, 1] < h))
        if ok.sum() < 0.5 * n_pts:  # a side on the image border: nothing outside it to step from
            steps.append(0.0)
            continue
        a_px = px[inner[ok, 1], inner[ok, 0]].astype(np.int16)
        b_px = px[outer[ok, 1], outer[ok, 0]].astype(np.int16)
        steps.append(float(np.median(np.abs(a_px - b_px).max(1))))
    return np.array(steps)


def propose_quads(work: WorkImage, config: ProposalConfig) -> list[Region]:
    """Quadrilateral regions of the working copy (boxes and corners in working pixels), best first."""
    px = work.pixels
    h, w = px.shape[:2]
    gray = cv2.GaussianBlur(cv2.cvtColor(px, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    kernel = np.ones((3, 3), np.uint8)
    found: list[Region] = []
    seen: list[np.ndarray] = []
    for lo, hi in CANNY:
        edges = cv2.dilate(cv2.Canny(gray, lo, hi), kernel)
        contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            if cv2.contourArea(c) < config.min_area * w * h:
                continue
            poly = cv2.approxPolyDP(c, 0.03 * cv2.arcLength(c, True), True)
            if len(poly) != 4 or not cv2.isContourConvex(poly):
                continue
            q = order_corners(poly)
            area = cv2.contourArea(q.astype(np.float32)) / float(w * h)
            if not config.min_area <= area <= config.max_area:
                continue
            if _corner_angles(q).min() < MIN_CORNER_DEGREES:
                continue
            if any(np.abs(q - s).max() < 4.0 for s in seen):  # the same outline from the other pass
                continue
            seen.append(q)
            score = float(np.clip(_side_steps(px, q).min() / FULL_STEP, 0.0, 1.0))
            if score <= 0.0:
                continue
            x0, y0 = q.min(0)
            x1, y1 = q.max(0)
            box = (max(0.0, float(x0)), max(0.0, float(y0)), min(float(w), float(x1)), min(float(h), float(y1)))
            found.append(Region(box, score, "quad", tuple(float(v) for v in q.ravel())))
    found.sort(key=lambda r: -r.score)
    return found[: config.quad_per_method]


def frame_size(quad: tuple[float, ...]) -> tuple[float, float]:
    """Width and height of the rectangle ``quad`` (8 numbers: corners clockwise from top-left) rectifies
    to: its longer top/bottom and left/right sides, so no side is shrunk."""
    q = np.asarray(quad, np.float64).reshape(4, 2)
    width = max(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[3]))
    height = max(np.linalg.norm(q[3] - q[0]), np.linalg.norm(q[2] - q[1]))
    return float(max(1.0, width)), float(max(1.0, height))


def to_query(quad: tuple[float, ...]) -> np.ndarray:
    """``[3 x 3]`` homography from the rectified frame (``(0, 0)``-:func:`frame_size`) onto ``quad``."""
    q = np.asarray(quad, np.float64).reshape(4, 2)
    fw, fh = frame_size(quad)
    rect = np.array([[0, 0], [fw, 0], [fw, fh], [0, fh]], np.float64)
    return cv2.getPerspectiveTransform(rect.astype(np.float32), q.astype(np.float32)).astype(np.float64)


def rectify(pixels: np.ndarray, quad: tuple[float, ...], scale: float = 1.0) -> np.ndarray:
    """The picture inside ``quad`` warped to an upright rectangle.

    ``quad`` is in the frame :func:`to_query` maps onto (e.g. original-image pixels); ``pixels`` is that
    image downscaled by ``scale`` (pixels per frame unit, <= 1). The result has :func:`frame_size` times
    ``scale`` pixels, so rectified pixel ``(x, y)`` is frame point ``(x, y) / scale``.
    """
    fw, fh = frame_size(quad)
    s = np.diag([scale, scale, 1.0])
    to_pixels = s @ to_query(quad) @ np.linalg.inv(s)  # rectified pixels -> input pixels
    size = (max(1, round(fw * scale)), max(1, round(fh * scale)))
    return cv2.warpPerspective(pixels, to_pixels, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


def region_pixels(pixels: np.ndarray, region: Region, scale: float = 1.0) -> np.ndarray:
    """What a search describes of ``region`` (its box in the frame ``pixels`` is downscaled from by
    ``scale``, pixels per frame unit): the quadrilateral rectified, else the box cropped."""
    if region.quad is not None:
        return rectify(pixels, region.quad, scale)
    x0, y0, x1, y1 = (int(round(v * scale)) for v in region.box)
    return pixels[max(0, y0): max(0, y1), max(0, x0): max(0, x1)]
