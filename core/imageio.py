"""Image decoding: the one function every image path in CopyLens goes through.

Whatever arrives (JPEG with an EXIF rotation, palette PNG with transparency, CMYK, 16-bit, grayscale,
an animated GIF, a file with quotes or unicode in its name) leaves as an RGB ``uint8`` array ``[H x W x 3]``
with the orientation a person would see. Anything that cannot be decoded raises
:class:`~copylens.core.errors.ImageLoadError` with the path and a human reason.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageLoadError
from .resize import scaled_size

MAX_PIXELS = 120_000_000  # decompression-bomb guard: refuse images with more pixels than this (w * h)
MAX_FILE_BYTES = 512 * 2**20  # files larger than this are refused before reading (no real photo is near it)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".jfif",
                            ".heic", ".heif", ".avif"})

# HEIC/HEIF (phone photos) through pillow-heif's Pillow plugin; AVIF is built into Pillow >= 11.
pillow_heif.register_heif_opener()

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never half an image


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """Decoded pixels plus the size of the image as stored (after EXIF orientation).

    ``pixels`` may be smaller than ``original_size`` when the caller asked for a bounded side; multiply
    pixel coordinates by :attr:`scale_to_original` to get back to the original image.
    """

    pixels: np.ndarray  # [H x W x 3] uint8 RGB
    original_size: tuple[int, int]  # (width, height)
    source: str

    @property
    def scale_to_original(self) -> float:
        return self.original_size[0] / self.pixels.shape[1]


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def scan_images(root: Path) -> list[Path]:
    """Image files below ``root`` (recursive, sorted, hidden files and folders skipped): the one folder
    listing that index builds, queries, benchmarks and the window all use."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if is_image_path(Path(f)))
    return out


def _flatten(img: Image.Image) -> Image.Image:
    """Normalise any Pillow mode to RGB; transparency is composited on white."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.round().astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def _decode(fp, source: str, max_side: int | None, max_pixels: int) -> DecodedImage:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            w, h = img.size
            if w <= 0 or h <= 0:
                raise ImageLoadError(source, "the image has no pixels")
            if w * h > max_pixels:
                raise ImageLoadError(
                    source, f"the image is too large ({w}x{h} = {w * h / 1e6:.0f} megapixels; "
                            f"the limit is {max_pixels / 1e6:.0f})")
            if getattr(img, "is_animated", False):
                img.seek(0)
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
            if max_side is not None and img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK"):
                # decode at a reduced scale directly: several times faster for big photos
                img.draft("RGB", (max_side, max_side))
            img.load()
            img = ImageOps.exif_transpose(img) if orientation != 1 else img
            ow, oh = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
            img = _flatten(img)
            if max_side is not None and max(img.size) > max_side:
                img = img.resize(scaled_size(img.width, img.height, max_side)[0],
                                 Image.Resampling.BILINEAR, reducing_gap=2.0)
            pixels = np.asarray(img, dtype=np.uint8)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(source, "not an image file (or a format CopyLens cannot read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(source, f"the image is too large (refused as a possible decompression bomb; "
                                     f"the limit is {max_pixels / 1e6:.0f} megapixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower():
            msg = "the file is truncated (incomplete download or copy?)"
        raise ImageLoadError(source, f"cannot decode the image: {msg}") from None
    except MemoryError:
        raise ImageLoadError(source, "not enough memory to decode the image") from None
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ImageLoadError(source, f"unexpected pixel layout {pixels.shape}")
    return DecodedImage(np.ascontiguousarray(pixels), (ow, oh), source)


def load_image(path: str | Path, max_side: int | None = None, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode the image at ``path`` to RGB, optionally bounding its longer side to ``max_side``."""
    return _decode(io.BytesIO(read_image_file(path)), str(path), max_side, max_pixels)


def read_image_file(path: str | Path) -> bytes:
    """The bytes of an image file, or :class:`ImageLoadError` saying why they cannot be had."""
    path = Path(path)
    try:
        st = path.stat()  # follows symlinks: what matters is what would be read
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read the file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageLoadError(path, "is a folder, not an image")
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block forever, /dev/zero would never end
        raise ImageLoadError(path, "not a regular file (a device, pipe or socket); refused")
    if st.st_size == 0:
        raise ImageLoadError(path, "the file is empty (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageLoadError(path, f"the file is too large ({st.st_size / 2**20:.0f} MB; the limit is "
                                   f"{MAX_FILE_BYTES / 2**20:.0f} MB)")
    try:
        with open(path, "rb") as fp:
            data = fp.read(MAX_FILE_BYTES + 1)  # bounded even if the file grows while it is read
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ImageLoadError(path, f"the file grew past {MAX_FILE_BYTES / 2**20:.0f} MB while being read")
    return data


def load_image_bytes(data: bytes, source: str = "<memory>", max_side: int | None = None,
                     max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode an encoded image held in memory (clipboard, network upload)."""
    if not data:
        raise ImageLoadError(source, "the image data is empty (0 bytes)")
    return _decode(io.BytesIO(data), source, max_side, max_pixels)


def from_array(pixels: np.ndarray, source: str = "<array>", max_side: int | None = None) -> DecodedImage:
    """Wrap an RGB (or grayscale) array as a :class:`DecodedImage`, resizing like :func:`load_image`."""
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.size == 0:
        raise ImageLoadError(source, f"unexpected pixel array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ImageLoadError(source, f"expected uint8 pixels, got {arr.dtype}")
    img = _flatten(Image.fromarray(arr))
    size = img.size
    if max_side is not None and max(img.size) > max_side:
        img = img.resize(scaled_size(img.width, img.height, max_side)[0], Image.Resampling.BILINEAR)
    return DecodedImage(np.ascontiguousarray(np.asarray(img)), size, source)


def encode_jpeg(pixels: np.ndarray, max_side: int = 320, quality: int = 85) -> bytes:
    """A small JPEG of an RGB array (thumbnails stored in the index)."""
    img = Image.fromarray(pixels)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode a thumbnail made by :func:`encode_jpeg`."""
    return load_image_bytes(data, "<thumbnail>").pixels
