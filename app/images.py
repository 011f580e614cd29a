"""NumPy <-> Qt image conversion and small image helpers (safe to call from worker threads).

``QImage`` may be built in any thread; ``QPixmap`` only in the GUI thread, so workers hand over
``QImage`` objects and widgets turn them into pixmaps.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage

from copylens.core.fileio import write_atomic
from copylens.core.resize import scaled_size

THUMB_SIDE = 96  # longer side of queue/result thumbnails, in pixels
DISPLAY_SIDE = 2048  # longer side of images shown in the inspector (bounded to keep memory and GPU low)


def rgb_to_qimage(pixels: np.ndarray) -> QImage:
    """A deep-copied ``QImage`` (RGB888) of an ``[H x W x 3]`` uint8 array."""
    arr = np.ascontiguousarray(pixels, dtype=np.uint8)
    if arr.ndim == 2:
        arr = np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    h, w = arr.shape[:2]
    img = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return img.copy()  # own the buffer: ``arr`` may be freed


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """An ``[H x W x 3]`` uint8 RGB copy of any ``QImage`` (clipboard images arrive in many formats)."""
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=stride * h).reshape(h, stride)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


def bounded(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``pixels`` resized so that the longer side is at most ``max_side``; returns (array, shrink factor).

    The factor is ``original / returned`` (1.0 when nothing changed), like ``DecodedImage.scale_to_original``.
    """
    h, w = pixels.shape[:2]
    if max(h, w) <= max_side:
        return pixels, 1.0
    size, _ = scaled_size(w, h, max_side)
    out = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
    return out, w / size[0]


def thumbnail(pixels: np.ndarray, side: int = THUMB_SIDE) -> QImage:
    """A small ``QImage`` thumbnail of an RGB array."""
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return rgb_to_qimage(np.asarray(img))


def save_pasted(content: bytes | np.ndarray, ext: str, folder: Path) -> Path:
    """Write a pasted image (encoded bytes as they came, or RGB pixels as PNG) to ``folder`` under a name
    made from its content hash, and return the path (the same paste twice is one file)."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(content, np.ndarray):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(content, dtype=np.uint8)).save(buf, format="PNG")
        content, ext = buf.getvalue(), "png"
    ext = {"jpeg": "jpg", "tiff": "tif"}.get(ext, ext)
    path = folder / f"paste-{hashlib.sha256(content).hexdigest()[:16]}.{ext}"
    if not path.exists():
        write_atomic(path, content)
    return path
