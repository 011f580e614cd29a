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


# picture formats a folder may hold that CopyLens does not decode: said, never silently skipped
UNSUPPORTED_SUFFIXES = {
    ".svg": "a vector drawing (SVG): export it to PNG to index or query it",
    ".svgz": "a vector drawing (SVG): export it to PNG to index or query it",
    ".eps": "a vector drawing (EPS): export it to PNG to index or query it",
    ".pdf": "a document (PDF): export its pages to PNG to index or query them",
    ".psd": "a Photoshop document: export it to PNG to index or query it",
    ".xcf": "a GIMP document: export it to PNG to index or query it",
    ".jxl": "JPEG XL, which this build cannot decode: convert it to PNG or JPEG",
    **{s: "a camera raw file: convert it to JPEG or PNG to index or query it"
       for s in (".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf")},
}


def scan_images(root: Path, unsupported: list[tuple[str, str]] | None = None) -> list[Path]:
    """Image files below ``root`` (recursive, sorted, hidden files and folders skipped): the one folder
    listing that index builds, queries, benchmarks and the window all use. Pictures in formats CopyLens
    cannot decode (SVG, RAW...) are appended to ``unsupported`` as (path, reason) when it is given."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            path = Path(dirpath) / f
            if is_image_path(path):
                out.append(path)
            elif unsupported is not None and not f.startswith(".") and path.suffix.lower() in UNSUPPORTED_SUFFIXES:
                unsupported.append((str(path), "skipped: " + UNSUPPORTED_SUFFIXES[path.suffix.lower()]))
    return out


_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _box_shrink(img: Image.Image, k: int) -> Image.Image:
    """A k-times smaller float image (box mean) of a 16-bit or 32-bit one, converted in strips of rows so
    that no full-size copy is ever made (Pillow's array export alone would take 4 bytes per pixel)."""
    w, h = img.width // k, img.height // k
    out = np.empty((h, w), np.float32)
    step = max(1, (1 << 22) // max(1, img.width * k))  # output rows per strip: about 4 M input pixels
    for y in range(0, h, step):
        rows = min(step, h - y)
        strip = np.asarray(img.crop((0, y * k, w * k, (y + rows) * k)))
        out[y: y + rows] = strip.reshape(rows, k, w, k).mean(axis=(1, 3), dtype=np.float32)
    return Image.fromarray(out)  # float32: mode "F"


def _flatten(img: Image.Image) -> Image.Image:
    """Normalise any Pillow mode to RGB; transparency is composited on white."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in _WIDE_MODES:
        arr = np.array(img, dtype=np.float32)  # one float32 copy, scaled in place
        lo, hi = float(arr.min()), float(arr.max())
        if hi > lo:
            arr -= lo
            arr *= 255.0 / (hi - lo)
            np.rint(arr, out=arr)
        else:
            arr[...] = 0
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
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
            # Pillow warns from 89 megapixels; CopyLens's own limit (checked just below) decides instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
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
            if max_side is not None and img.mode in _WIDE_MODES and max(img.size) >= 2 * max_side:
                # 16-bit and float images are wide: shrink them in their own mode (a box filter) before
                # converting, so an 81-megapixel 16-bit PNG never becomes a float copy of 81 M pixels
                img = _box_shrink(img, max(img.size) // max_side)
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
