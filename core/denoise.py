"""Impulse ("salt and pepper") noise removal before a query is described.

Scattered black and white pixels are a cheap way to make a copy evade matching: on a flat graphic they
become keypoints of their own and bury the few the graphic has, and they move a global descriptor. Only
*isolated* impulses are touched: a pixel that differs from every one of its 8 neighbours by more than
:data:`IMPULSE_STEP` (grey levels). A one-pixel line, a letter or a corner has neighbours like itself and
is never one, so line art and text are left alone. When such pixels make up more than a share
``min_share`` of the image, each of them is replaced by the median of its 3 x 3 neighbourhood; every
other pixel keeps its value. A clean image is returned unchanged (the same object).
"""

from __future__ import annotations

import cv2
import numpy as np

IMPULSE_STEP = 80  # grey-level difference to every neighbour that makes a pixel an isolated impulse
MIN_SHARE = 0.003  # isolated impulses (share of pixels) from which an image is cleaned


def isolated_impulses(pixels: np.ndarray) -> np.ndarray:
    """``[H x W]`` bool: pixels of ``pixels`` (``[H x W x 3]`` uint8) that differ from all 8 neighbours by
    more than :data:`IMPULSE_STEP` in grey level (image borders never count)."""
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).astype(np.int16)
    h, w = gray.shape
    out = np.zeros((h, w), bool)
    if h < 3 or w < 3:
        return out
    centre = gray[1:-1, 1:-1]
    alone = np.ones_like(centre, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                alone &= np.abs(centre - gray[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx]) > IMPULSE_STEP
    out[1:-1, 1:-1] = alone
    return out


def remove_impulses(pixels: np.ndarray, min_share: float = MIN_SHARE) -> np.ndarray:
    """``pixels`` with its isolated impulses replaced by their 3 x 3 median when they make up more than
    ``min_share`` of it; otherwise ``pixels`` itself."""
    if pixels.ndim != 3 or min(pixels.shape[:2]) < 3 or min_share <= 0:
        return pixels
    mask = isolated_impulses(pixels)
    if mask.mean() <= min_share:
        return pixels
    out = pixels.copy()
    out[mask] = cv2.medianBlur(np.ascontiguousarray(pixels), 3)[mask]
    return out
