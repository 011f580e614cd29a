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

import numpy as np

from .results import Region

NEIGHBOUR_OFFSETS = (-7, -4, 4, 7)  # parallel lines compared with a side (working pixels)
INNER_SIDES_FACTOR = {2: 0.75, 3: 0.9, 4: 1.0}  # evidence kept when only that many sides are inner lines


def _line_maps(px: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal-line and vertical-line edge maps ``[h+1 x w]`` / ``[h x w+1]`` in pixel-edge coordinates.

    ``horiz[y, x]`` is true when the step between pixel rows ``y - 1`` and ``y`` is strong at column x.
    """
    h, w = px.shape[:2]
    dy = np.zeros((h, w), np.int16)
    dx = np.zeros((h, w), np.int16)
    dy[1:-1] = np.abs(px[2:] - px[:-2]).max(axis=2)
    dx[:, 1:-1] = np.abs(px[:, 2:] - px[:, :-2]).max(axis=2)
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


def _candidate_lines(lines: np.ndarray, window: int, k: int, min_strength: float) -> np.ndarray:
    """Up to ``k`` line indices (rows of ``lines``) holding the strongest straight edge windows.

    A window of ``window`` pixels along a line scores its coverage (best of the line and its two
    neighbours) minus the mean coverage of the parallel lines at :data:`NEIGHBOUR_OFFSETS`; a line scores
    its best window. Lines closer than 3 to a chosen one, or to the image border, are skipped.
    """
    n, length = lines.shape
    window = min(window, length)
    csum = np.zeros((n, length + 1), np.float32)
    np.cumsum(lines, axis=1, out=csum[:, 1:])
    win = (csum[:, window:] - csum[:, :-window]) / window  # [n x (length - window + 1)]

    def shifted(o: int) -> np.ndarray:
        return win[np.clip(np.arange(n) + o, 0, n - 1)]

    cov = np.maximum(np.maximum(shifted(-1), win), shifted(1))
    nbr = np.mean([shifted(o) for o in NEIGHBOUR_OFFSETS], axis=0)
    best = (cov - nbr).max(axis=1)
    chosen: list[int] = []
    for i in np.argsort(-best, kind="stable"):
        if best[i] < min_strength or len(chosen) >= k:
            break
        if 2 < i < n - 3 and all(abs(int(i) - c) > 2 for c in chosen):
            chosen.append(int(i))
    return np.array(sorted(chosen), np.int64)


def _side_strength(lines: np.ndarray, at: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Line strength ``[len(at) x len(span) x len(span)]`` of line ``at[i]`` from ``span[a]`` to ``span[b]``.

    Coverage is the best of the line and its two neighbours; strength subtracts the mean coverage of the
    lines at :data:`NEIGHBOUR_OFFSETS`. Lines on the image border get NaN (no evidence either way).
    """
    n = lines.shape[0]
    csum = np.zeros((n, lines.shape[1] + 1), np.float32)
    np.cumsum(lines, axis=1, out=csum[:, 1:])
    width = np.maximum(1, span[None, :] - span[:, None]).astype(np.float32)

    def coverage(offset: int) -> np.ndarray:
        c = csum[np.clip(at + offset, 0, n - 1)][:, span]  # [len(at) x len(span)]
        return (c[:, None, :] - c[:, :, None]) / width

    cov = np.maximum(np.maximum(coverage(-1), coverage(0)), coverage(1))
    nbr = np.mean([coverage(o) for o in NEIGHBOUR_OFFSETS], axis=0)
    strength = np.clip(cov - nbr, 0.0, 1.0)
    strength[(at <= 0) | (at >= n - 1)] = np.nan
    return strength


def _rectangles(hs: np.ndarray, vs: np.ndarray) -> np.ndarray:
    """Evidence ``[nY x nY x nX x nX]`` of the rectangle (ys[i], ys[j], xs[a], xs[b]); -1 where invalid."""
    ny, nx = hs.shape[0], vs.shape[0]
    top = hs[:, None, :, :]  # [i, 1, a, b]
    bottom = hs[None, :, :, :]  # [1, j, a, b]
    left = np.transpose(vs, (1, 2, 0))[:, :, :, None]  # vs[a, i, j] -> [i, j, a, 1]
    right = np.transpose(vs, (1, 2, 0))[:, :, None, :]  # vs[b, i, j] -> [i, j, 1, b]
    sides = np.broadcast_arrays(top, bottom, left, right)
    stack = np.stack(sides)  # [4, i, j, a, b]
    inner = np.isfinite(stack)
    count = inner.sum(axis=0)
    filled = np.where(inner, stack, 0.0)
    mean = filled.sum(axis=0) / np.maximum(count, 1)
    weakest = np.where(inner, stack, np.inf).min(axis=0)
    factor = np.zeros(5, np.float32)
    for c, f in INNER_SIDES_FACTOR.items():
        factor[c] = f
    evidence = (0.5 * mean + 0.5 * np.where(np.isfinite(weakest), weakest, 0.0)) * factor[count]
    order_y = np.arange(ny)[:, None] < np.arange(ny)[None, :]
    order_x = np.arange(nx)[:, None] < np.arange(nx)[None, :]
    valid = order_y[:, :, None, None] & order_x[None, None, :, :]
    return np.where(valid, evidence, -1.0)


def propose_edges(work, config) -> list[Region]:
    """``"edges"`` regions of ``work`` (a :class:`~.regions.WorkImage`), in working pixels."""
    px = work.pixels.astype(np.int16)
    h, w = px.shape[:2]
    if min(h, w) < 16:
        return []
    horiz, vert = _line_maps(px, config.edge_threshold)
    window = max(8, int(config.edge_window * max(h, w)))
    rows = _candidate_lines(horiz, window, config.edge_lines, config.edge_min_line)
    cols = _candidate_lines(vert.T, window, config.edge_lines, config.edge_min_line)
    if len(rows) + len(cols) < 2:
        return []
    ys = np.unique(np.concatenate([[0], rows, [h]]))
    xs = np.unique(np.concatenate([[0], cols, [w]]))
    hs = _side_strength(horiz, ys, xs)
    vs = _side_strength(vert.T, xs, ys)
    ev = _rectangles(hs, vs)
    # geometric limits: size, and never the whole image
    bh = (ys[None, :] - ys[:, None]).astype(np.float32)[:, :, None, None]
    bw = (xs[None, :] - xs[:, None]).astype(np.float32)[None, None, :, :]
    frac = np.clip(bh, 0, None) * np.clip(bw, 0, None) / float(h * w)
    ok = (frac >= config.min_area) & (frac <= config.max_area)
    ok &= (bh >= config.min_box_side * h) & (bw >= config.min_box_side * w)
    ev = np.where(ok, ev, -1.0)
    flat = np.argsort(-ev, axis=None, kind="stable")
    out: list[Region] = []
    from .regions import box_iou

    for idx in flat[:400]:
        e = float(ev.flat[idx])
        if e <= 0 or len(out) >= config.edge_per_method:
            break
        i, j, a, b = np.unravel_index(idx, ev.shape)
        box = (float(xs[a]), float(ys[i]), float(xs[b]), float(ys[j]))
        if any(box_iou(box, r.box) > 0.5 for r in out):
            continue
        score = float(np.clip((e - 0.2) / 0.5, 0.0, 1.0))
        out.append(Region(box, score, "edges"))
    return out
