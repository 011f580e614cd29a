"""Region proposals from straight edges: the outline of a picture pasted onto another one.

A paste leaves a step edge along each side of an axis-aligned rectangle: at one exact row (or column)
nearly every pixel along the side changes sharply, while a few rows away the same span is ordinary
texture. Natural edges are rarely that straight and that long.

1. Edge pixels: centred differences (max over RGB) above a threshold, split into horizontal-line pixels
   (vertical change dominates) and vertical-line pixels.
2. Candidate lines: the rows (columns) holding the longest runs of line pixels, after closing small gaps.
3. Every rectangle on candidate lines (or the image border) is scored: each inner side's *line strength*
   is its edge coverage minus the mean coverage of parallel lines a few pixels away; a rectangle's
   evidence mixes the mean and the weakest of its inner sides. At least two sides must be inner lines.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..results import Region
from .common import ProposalConfig, WorkImage, box_iou

NEIGHBOUR_OFFSETS = (-7, -4, 4, 7)  # parallel lines compared with a side (working pixels)
TOP_RECTANGLES = 60  # best rectangles by side evidence that are checked for overshooting sides
OVERSHOOT_WEIGHT = 0.8  # evidence lost when every side's edge runs on past both corners
FLAT_INSIDE = 0.05  # edge-pixel density inside a box below which it counts as flat (scaled down)
# colour spread (0-255) of a box's inside seen as a SPREAD_GRID x SPREAD_GRID mosaic, above which it counts
# as a picture however few edges it has: a smooth wallpaper pasted onto a photo is a gradient, not flat.
# Low enough that a faint gradient's own box is full content: a box reaching past it into a busier
# background gains spread, and must not outscore the exact box (a padded blue wallpaper: 27 inside; 40
# preferred the box running on into the pad, bench/regions_on_benchmark.py --iou 0.9)
SPREAD_GRID = 8
SPREAD_FULL = 20.0
INNER_SIDES_FACTOR = {2: 0.75, 3: 0.9, 4: 1.0}  # evidence kept when only that many sides are inner lines


def _max_channel_absdiff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = cv2.absdiff(a, b)
    c0, c1, c2 = cv2.split(d)
    return cv2.max(cv2.max(c0, c1), c2)


def _line_maps(px: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal-line and vertical-line edge maps ``[h+1 x w]`` / ``[h x w+1]`` in pixel-edge coordinates.

    ``horiz[y, x]`` is true when the step between pixel rows ``y - 1`` and ``y`` is strong at column x.
    ``px`` is ``[h x w x 3]`` uint8.
    """
    h, w = px.shape[:2]
    dy = np.zeros((h, w), np.uint8)
    dx = np.zeros((h, w), np.uint8)
    dy[1:-1] = _max_channel_absdiff(px[2:], px[:-2])
    dx[:, 1:-1] = _max_channel_absdiff(px[:, 2:], px[:, :-2])
    eh = (dy >= threshold) & (dy >= dx)
    ev = (dx >= threshold) & (dx >= dy)
    # a step between rows y-1 and y shows at centred rows y-1 and y: line y is their union
    horiz = np.zeros((h + 1, w), bool)
    horiz[1:] |= eh
    horiz[:-1] |= eh
    vert = np.zeros((h, w + 1), bool)
    vert[:, 1:] |= ev
    vert[:, :-1] |= ev
    return horiz, vert


def _candidate_lines(csum: np.ndarray, window: int, k: int, min_strength: float) -> np.ndarray:
    """Up to ``k`` line indices (rows of the line map whose :func:`_cumsum` is ``csum``) holding the
    strongest straight edge windows.

    A window of ``window`` pixels along a line scores its coverage (best of the line and its two
    neighbours) minus the mean coverage of the parallel lines at :data:`NEIGHBOUR_OFFSETS`; a line scores
    its best window. Lines closer than 3 to a chosen one, or to the image border, are skipped.
    """
    n, length = csum.shape[0], csum.shape[1] - 1
    window = min(window, length)
    win = (csum[:, window:] - csum[:, :-window]) / window  # [n x (length - window + 1)]

    pad = max(abs(o) for o in NEIGHBOUR_OFFSETS) + 1
    padded = np.pad(win, ((pad, pad), (0, 0)), mode="edge")

    def shifted(o: int) -> np.ndarray:
        return padded[pad + o:pad + o + n]

    cov = np.maximum(np.maximum(shifted(-1), win), shifted(1))
    nbr = sum(shifted(o) for o in NEIGHBOUR_OFFSETS) * (1.0 / len(NEIGHBOUR_OFFSETS))
    best = _ridge(cov, nbr).max(axis=1)
    chosen: list[int] = []
    for i in np.argsort(-best, kind="stable"):
        if best[i] < min_strength or len(chosen) >= k:
            break
        if 2 < i < n - 3 and all(abs(int(i) - c) > 2 for c in chosen):
            chosen.append(int(i))
    return np.array(sorted(chosen), np.int64)


def _ridge(cov, nbr):
    """How far a line's coverage rises above the mean coverage of its parallel neighbours."""
    return cov - nbr


def _cumsum(lines: np.ndarray) -> np.ndarray:
    """Running count of line pixels along each line, ``[n x (length + 1)]`` float32 with a zero column."""
    csum = np.zeros((lines.shape[0], lines.shape[1] + 1), np.float32)
    np.cumsum(lines, axis=1, dtype=np.float32, out=csum[:, 1:])
    return csum


def _line_strength(coverage) -> np.ndarray:
    """Line strength from ``coverage(offset)``, the edge coverage of the line ``offset`` away (any shape):
    the best of the line and its two neighbours minus the mean of the lines at :data:`NEIGHBOUR_OFFSETS`,
    clipped to [0, 1]."""
    cov = np.maximum(np.maximum(coverage(-1), coverage(0)), coverage(1))
    nbr = np.mean([coverage(o) for o in NEIGHBOUR_OFFSETS], axis=0)
    return np.clip(_ridge(cov, nbr), 0.0, 1.0)


def _side_strength(csum: np.ndarray, at: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Line strength ``[len(at) x len(span) x len(span)]`` of line ``at[i]`` from ``span[a]`` to ``span[b]``.

    Coverage is the best of the line and its two neighbours; strength subtracts the mean coverage of the
    lines at :data:`NEIGHBOUR_OFFSETS`. Lines on the image border get NaN (no evidence either way).
    """
    n = csum.shape[0]
    width = np.maximum(1, span[None, :] - span[:, None]).astype(np.float32)

    def coverage(offset: int) -> np.ndarray:
        c = csum[np.clip(at + offset, 0, n - 1)][:, span]  # [len(at) x len(span)]
        return (c[:, None, :] - c[:, :, None]) / width

    strength = _line_strength(coverage)
    strength[(at <= 0) | (at >= n - 1)] = np.nan
    return strength


def _segment_strengths(csum: np.ndarray, line: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`_side_strength` of segments ``[a[k], b[k])`` of lines ``line[k]`` (0 for a segment shorter than 2)."""
    n = csum.shape[0]
    width = (b - a).astype(np.float64)

    def coverage(offset: int) -> np.ndarray:
        r = np.clip(line + offset, 0, n - 1)
        return (csum[r, b] - csum[r, a]).astype(np.float64) / np.maximum(width, 1.0)

    return np.where(width >= 2, _line_strength(coverage), 0.0)


def _overshoot(hcs: np.ndarray, vcs: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per box ``[M x 4]`` (x0, y0, x1, y1), the mean over its inner sides of the line strength just beyond
    the side's two ends (0 for a box without an inner side).

    A pasted picture's outline stops at its corners; the edge of a stripe, a shelf or a letter's stroke
    runs on past the box.
    """
    x0, y0, x1, y1 = (boxes[:, k].astype(np.int64) for k in range(4))
    h, w = vcs.shape[1] - 1, hcs.shape[1] - 1
    ext_x, ext_y = np.maximum(6, (x1 - x0) // 4), np.maximum(6, (y1 - y0) // 4)
    total = np.zeros(len(boxes))
    count = np.zeros(len(boxes))
    # per side: its lines' running counts, the line it lies on (inner when strictly inside the image, of
    # whose side ``limit`` is the far end), its span, and how far beyond the span's ends to look
    for csum, at, limit, lo, hi, ext, end in ((hcs, y0, h, x0, x1, ext_x, w), (hcs, y1, h, x0, x1, ext_x, w),
                                              (vcs, x0, w, y0, y1, ext_y, h), (vcs, x1, w, y0, y1, ext_y, h)):
        inner = (at > 0) & (at < limit)
        side = np.maximum(_segment_strengths(csum, at, np.maximum(0, lo - ext), lo),
                          _segment_strengths(csum, at, hi, np.minimum(end, hi + ext)))
        total = total + np.where(inner, side, 0.0)
        count += inner
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _rectangles(hs: np.ndarray, vs: np.ndarray) -> np.ndarray:
    """Evidence ``[nY x nY x nX x nX]`` of the rectangle (ys[i], ys[j], xs[a], xs[b]); -1 where invalid."""
    ny, nx = hs.shape[0], vs.shape[0]
    vt = np.transpose(vs, (1, 2, 0))  # vs[a, i, j] -> [i, j, a]
    sides = (hs[:, None, :, :], hs[None, :, :, :], vt[:, :, :, None], vt[:, :, None, :])
    total = np.zeros((ny, ny, nx, nx), np.float32)
    count = np.zeros((ny, ny, nx, nx), np.int8)
    weakest = np.full((ny, ny, nx, nx), np.inf, np.float32)
    for side in sides:
        inner = np.isfinite(side)
        total += np.where(inner, side, 0.0)
        count += inner
        np.fmin(weakest, side, out=weakest)  # fmin ignores NaN
    mean = total / np.maximum(count, 1)
    factor = np.zeros(5, np.float32)
    for c, f in INNER_SIDES_FACTOR.items():
        factor[c] = f
    evidence = (0.5 * mean + 0.5 * np.where(np.isfinite(weakest), weakest, 0.0)) * factor[count]
    order_y = np.arange(ny)[:, None] < np.arange(ny)[None, :]
    order_x = np.arange(nx)[:, None] < np.arange(nx)[None, :]
    valid = order_y[:, :, None, None] & order_x[None, None, :, :]
    return np.where(valid, evidence, -1.0)


def _content(busy: np.ndarray, px: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """1 for a box with a picture inside, down to 0 for a flat one (a window, a letter's stroke).

    A picture shows texture (edge pixels; ``busy`` is their integral image) or, smooth as a wallpaper's
    gradient, colour that changes across the box (the spread of its coarse mosaic). The outer 3 pixels of
    the box are left out.
    """
    x0, y0, x1, y1 = box[0] + 3, box[1] + 3, box[2] - 3, box[3] - 3
    if x1 <= x0 or y1 <= y0:
        return 0.0
    n = float(busy[y1, x1] - busy[y0, x1] - busy[y1, x0] + busy[y0, x0])
    texture = n / ((x1 - x0) * (y1 - y0)) / FLAT_INSIDE
    if texture >= 1.0:
        return 1.0
    grid = min(SPREAD_GRID, x1 - x0, y1 - y0)
    mosaic = cv2.resize(px[y0:y1, x0:x1], (grid, grid), interpolation=cv2.INTER_AREA)
    spread = float(mosaic.reshape(-1, mosaic.shape[-1]).std(axis=0).max()) / SPREAD_FULL
    return min(1.0, max(texture, spread))


def propose_edges(work: WorkImage, config: ProposalConfig) -> list[Region]:
    """``"edges"`` regions of ``work`` (a :class:`~.regions.WorkImage`), in working pixels."""
    px = work.pixels
    h, w = px.shape[:2]
    if min(h, w) < 16:
        return []
    horiz, vert = _line_maps(px, config.edge_threshold)
    window = max(8, int(config.edge_window * max(h, w)))
    hcs, vcs = _cumsum(horiz), _cumsum(np.ascontiguousarray(vert.T))  # running counts along each line
    rows = _candidate_lines(hcs, window, config.edge_lines, config.edge_min_line)
    cols = _candidate_lines(vcs, window, config.edge_lines, config.edge_min_line)
    if len(rows) + len(cols) < 2:
        return []
    ys = np.unique(np.concatenate([[0], rows, [h]]))
    xs = np.unique(np.concatenate([[0], cols, [w]]))
    busy = cv2.integral((horiz[:-1] | vert[:, :-1]).astype(np.uint8))  # [h+1 x w+1] edge-pixel counts
    ev = _rectangles(_side_strength(hcs, ys, xs), _side_strength(vcs, xs, ys))
    # geometric limits: size, and never the whole image
    bh = (ys[None, :] - ys[:, None]).astype(np.float32)[:, :, None, None]
    bw = (xs[None, :] - xs[:, None]).astype(np.float32)[None, None, :, :]
    frac = np.clip(bh, 0, None) * np.clip(bw, 0, None) / float(h * w)
    ok = (frac >= config.min_area) & (frac <= config.max_area)
    ok &= (bh >= config.min_box_side * h) & (bw >= config.min_box_side * w)
    ev = np.where(ok, ev, -1.0).ravel()
    top = np.argpartition(-ev, min(TOP_RECTANGLES, ev.size - 1))[:TOP_RECTANGLES]
    top = top[ev[top] > 0]
    i, j, a, b = np.unravel_index(top, (len(ys), len(ys), len(xs), len(xs)))
    boxes = np.stack([xs[a], ys[i], xs[b], ys[j]], 1)
    over = _overshoot(hcs, vcs, boxes)
    scored = []
    for k, idx in enumerate(top):
        box = tuple(int(v) for v in boxes[k])
        e = float(ev[idx]) * (1.0 - OVERSHOOT_WEIGHT * float(over[k])) * _content(busy, px, box)
        scored.append((e, box))
    scored.sort(key=lambda t: -t[0])
    out: list[Region] = []

    for e, box in scored:
        if len(out) >= config.edge_per_method:
            break
        fbox = tuple(float(v) for v in box)
        if any(box_iou(fbox, r.box) > 0.5 for r in out):
            continue
        score = float(np.clip((e - 0.2) / 0.5, 0.0, 1.0))
        out.append(Region(fbox, score, "edges"))
    return out
