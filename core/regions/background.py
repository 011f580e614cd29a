"""Region proposals from uniform background: padding, screenshot frames and caption bands.

Each image side whose outermost line is nearly one colour gives a background colour. Pixels close to a
background colour *and connected to the image border* form the background; every large foreground blob
inside it is a candidate picture. A pasted picture is a solid rectangle: the blob fills its bounding box and
the lines just inside the box are foreground from end to end, while clip art or a product shot on a
plain backdrop has an irregular outline. Padding and caption bands are also flat (JPEG noise aside),
unlike sky or a studio wall, and the score asks for that too.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..results import Region
from .common import ProposalConfig, WorkImage

FLAT_LINE = 6.0  # largest mean deviation (0-255) of a side line from its median colour that is still padding
PEEL_FRACTION = 0.6  # a box side whose line is at least this much background is peeled off


def _background_colours(px: np.ndarray, tol: int, purity: float) -> list[np.ndarray]:
    """Median colours of the image sides that look like padding.

    A side qualifies when its outermost line and the line two pixels in are both at least ``purity``
    within ``tol`` of the median, and the outer line is flat (mean deviation <= ``FLAT_LINE``).
    """
    colours: list[np.ndarray] = []
    for line, inner in ((px[0], px[2]), (px[-1], px[-3]), (px[:, 0], px[:, 2]), (px[:, -1], px[:, -3])):
        c = np.median(line, axis=0)
        dev = np.abs(line - c).max(axis=1)
        if np.mean(dev <= tol) < purity or np.mean(np.abs(inner - c).max(axis=1) <= tol) < purity:
            continue
        if dev[dev <= tol].mean() > FLAT_LINE:
            continue
        if all(np.abs(c - k).max() > tol / 2 for k in colours):
            colours.append(c)
    return colours


def _border_connected(mask: np.ndarray) -> np.ndarray:
    """The part of ``mask`` ([h x w] bool) connected (4-neighbours) to the image border."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    ring = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    lut = np.zeros(n, bool)
    lut[ring] = True
    lut[0] = False
    return lut[labels]


def _inner_side_fill(fg: np.ndarray, box: tuple[int, int, int, int], h: int, w: int) -> float:
    """Lowest foreground fraction along the box sides that lie inside the image (1.0 if none do).

    Each side is read one line inside the box (the outermost line is often a resampling blend).
    """
    x0, y0, x1, y1 = box
    fills = []
    if y0 > 1:
        fills.append(fg[min(y0 + 1, y1 - 1), x0:x1].mean())
    if y1 < h - 1:
        fills.append(fg[max(y1 - 2, y0), x0:x1].mean())
    if x0 > 1:
        fills.append(fg[y0:y1, min(x0 + 1, x1 - 1)].mean())
    if x1 < w - 1:
        fills.append(fg[y0:y1, max(x1 - 2, x0)].mean())
    return float(min(fills)) if fills else 1.0


def _peel(bg: np.ndarray) -> tuple[int, int, int, int]:
    """Shrink the image box while one of its sides is a line at least ``PEEL_FRACTION`` background.

    The side with the most background goes first, so padding leaves before caption text does.
    Returns ``(x0, y0, x1, y1)``; an all-background image collapses to an empty box.
    """
    h, w = bg.shape
    rows = np.zeros((h, w + 1), np.int32)
    np.cumsum(bg, axis=1, out=rows[:, 1:])
    cols = np.zeros((w, h + 1), np.int32)
    np.cumsum(bg.T, axis=1, out=cols[:, 1:])
    x0, y0, x1, y1 = 0, 0, w, h
    while x1 - x0 > 2 and y1 - y0 > 2:
        bw, bh = x1 - x0, y1 - y0
        fr = ((rows[y0, x1] - rows[y0, x0]) / bw, (rows[y1 - 1, x1] - rows[y1 - 1, x0]) / bw,
              (cols[x0, y1] - cols[x0, y0]) / bh, (cols[x1 - 1, y1] - cols[x1 - 1, y0]) / bh)
        k = int(np.argmax(fr))
        if fr[k] < PEEL_FRACTION:
            break
        if k == 0:
            y0 += 1
        elif k == 1:
            y1 -= 1
        elif k == 2:
            x0 += 1
        else:
            x1 -= 1
    return x0, y0, x1, y1


def propose_background(work: WorkImage, config: ProposalConfig) -> list[Region]:
    """``"border"`` and ``"caption"`` regions of ``work`` (a :class:`~.regions.WorkImage`)."""
    px = work.pixels.astype(np.int16)
    h, w = px.shape[:2]
    tol = config.bg_tolerance
    colours = _background_colours(px, tol, config.bg_side_purity)
    if not colours:
        return []
    dist = np.min([np.abs(px - c.astype(np.int16)).max(axis=2) for c in colours], axis=0)
    bg = _border_connected(dist <= tol)
    bg_frac = float(bg.mean())
    if bg_frac < config.bg_min_fraction or bg_frac > 0.97:
        return []
    # padding is flat colour: mean deviation near 0-3 after JPEG; sky and walls drift more
    flatness = float(np.clip(1.0 - (dist[bg].mean() - 2.0) / 6.0, 0.0, 1.0))
    fg = ~bg
    fg_total = float(fg.sum())
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    boxes: list[tuple[tuple[int, int, int, int], float]] = []  # (box, solidity)
    min_px = config.min_area * h * w
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if bw * bh >= min_px:
            boxes.append(((x, y, x + bw, y + bh), area / float(bw * bh)))
    x0, y0, x1, y1 = _peel(bg)
    if (x1 - x0) * (y1 - y0) >= min_px:
        boxes.append(((x0, y0, x1, y1), float(fg[y0:y1, x0:x1].mean())))
    out: list[Region] = []
    for box, solidity in boxes:
        x0, y0, x1, y1 = box
        if (x1 - x0) * (y1 - y0) > 0.97 * h * w:
            continue
        side_fill = _inner_side_fill(fg, box, h, w)
        # other foreground outside the box (caption text, screenshot icons) names the kind
        others = (fg_total - fg[y0:y1, x0:x1].sum()) / float(h * w)
        kind = "caption" if others > 0.002 else "border"
        rect = min(solidity, side_fill)
        score = flatness * float(np.clip((rect - 0.6) / 0.35, 0.0, 1.0))
        out.append(Region((float(x0), float(y0), float(x1), float(y1)), score, kind))
    return out
