"""Longest-side resizing: one place for the arithmetic every stage shares.

Each stage keeps its own interpolation (area for shrinking features and hashes, cubic for
upscaling small graphics, bilinear for display), but the target size of "make the longer side
``side``" is computed here, so the whole pipeline agrees on it to the pixel.
"""
from __future__ import annotations

import cv2
import numpy as np


def scaled_size(width: int, height: int, side: int) -> tuple[tuple[int, int], float]:
    """``((w, h), s)``: the size with the longer side scaled to ``side`` (each side at least 1 pixel).

    ``s`` is the factor applied (``side / max(width, height)``); callers that map coordinates back
    to the original use it.
    """
    s = side / max(width, height)
    return (max(1, round(width * s)), max(1, round(height * s))), s


def fit_longest(pixels: np.ndarray, max_side: int, interpolation: int = cv2.INTER_AREA) -> tuple[np.ndarray, float]:
    """``pixels`` shrunk (never enlarged) so that the longer side is at most ``max_side``.

    Returns ``(array, s)`` with ``s`` the factor applied (1.0 when the input already fits; then
    the input itself is returned, not a copy).
    """
    h, w = pixels.shape[:2]
    if max(h, w) <= max_side:
        return pixels, 1.0
    size, s = scaled_size(w, h, max_side)
    return cv2.resize(pixels, size, interpolation=interpolation), s


def to_longest(pixels: np.ndarray, side: int, interpolation: int) -> tuple[np.ndarray, float]:
    """``pixels`` resized (up or down) so that the longer side is ``side``; returns ``(array, s)``."""
    h, w = pixels.shape[:2]
    size, s = scaled_size(w, h, side)
    return cv2.resize(pixels, size, interpolation=interpolation), s
