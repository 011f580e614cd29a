"""Image decoding: every odd, broken or hostile input gives RGB pixels or one typed, readable error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from copylens.core.errors import ImageLoadError
from copylens.core.imageio import from_array, load_image, load_image_bytes

from conftest import skimage_rgb


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((40, 100, 3), np.uint8)
    a[:, :50] = (255, 0, 0)  # left half red
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    p = _save(img, tmp_path / "rot.jpg", exif=exif, quality=95)
    d = load_image(p)
    assert d.pixels.shape == (100, 40, 3)
    assert d.original_size == (40, 100)
    assert d.pixels[5, 20, 0] > 200 and d.pixels[95, 20, 0] < 60  # red now on top


def test_palette_with_transparency_composited_on_white(tmp_path):
    img = Image.new("P", (20, 10))
    img.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    img.info["transparency"] = 0
    p = _save(img, tmp_path / "pal.png", transparency=0)
    d = load_image(p)
    assert d.pixels.shape == (10, 20, 3) and d.pixels.dtype == np.uint8
    assert (d.pixels == 255).all()


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "LA", "1", "I;16"])
def test_modes_become_rgb(tmp_path, mode):
    base = Image.fromarray(skimage_rgb("astronaut")[:64, :48])
    if mode == "I;16":
        arr = (np.asarray(base.convert("L"), np.uint16) * 257)
        img = Image.fromarray(arr)
        assert img.mode.startswith("I;16")
        suffix = ".png"
    else:
        img = base.convert(mode)
        suffix = ".jpg" if mode == "CMYK" else ".png"
    d = load_image(_save(img, tmp_path / f"m{suffix}"))
    assert d.pixels.shape == (64, 48, 3) and d.pixels.dtype == np.uint8
    assert d.pixels.std() > 5  # content survived, not a blank frame


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    d = load_image(p)
    assert tuple(d.pixels[8, 8]) == (255, 0, 0) or d.pixels[8, 8, 0] > 200


def test_max_side_bounds_and_scale(tmp_path):
    p = _save(Image.fromarray(skimage_rgb("astronaut")), tmp_path / "a.jpg", quality=90)
    d = load_image(p, max_side=128)
    assert max(d.pixels.shape[:2]) <= 128
    assert d.original_size == (512, 512)
    assert d.scale_to_original == pytest.approx(512 / d.pixels.shape[1])


@pytest.mark.parametrize("name", ["with space.png", "quote's \"double\".png", "ünïcødé 画像.png"])
def test_any_legal_file_name(tmp_path, name):
    p = _save(Image.new("RGB", (8, 8), (1, 2, 3)), tmp_path / name)
    assert load_image(p).pixels.shape == (8, 8, 3)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty") as e:
        load_image(p)
    assert e.value.path == str(p)


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(skimage_rgb("chelsea")).save(buf, format="JPEG", quality=90)
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="truncated|decode"):
        load_image(p)


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.png")


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels (a decompression bomb's header) with a tiny body."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(60_000, 60_000))
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(p)


def test_between_pillows_limit_and_ours_is_decoded_not_called_a_bomb():
    """Pillow warns from 89 megapixels; CopyLens's limit is 120: a 100-megapixel image is not refused as
    too large (this one then fails as truncated, its body being empty)."""
    with pytest.raises(ImageLoadError) as info:
        load_image_bytes(_png_header_only(10_000, 10_000), "big.png")
    assert "too large" not in info.value.reason and "megapixels" not in info.value.reason
    with pytest.raises(ImageLoadError, match="too large .*121 megapixels; the limit is 120"):
        load_image_bytes(_png_header_only(11_000, 11_000), "bigger.png")


def test_a_big_16_bit_image_is_shrunk_before_any_float_copy():
    """A 16-bit PNG queried at a bounded side never gets a full-size float copy (an 81-megapixel one took
    1.8 GB): the numpy memory peak stays under 3 bytes per pixel, and the picture is right."""
    import tracemalloc

    ramp = (np.indices((3000, 4000)).sum(0) * 13 % 65536).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    tracemalloc.start()
    img = load_image_bytes(buf.getvalue(), "deep.png", max_side=1000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert img.pixels.shape == (750, 1000, 3) and img.original_size == (4000, 3000)
    assert peak < 3 * ramp.size, f"{peak / ramp.size:.1f} bytes per pixel"
    full = load_image_bytes(buf.getvalue(), "deep.png")  # the full-size path still scales 16 bits to 8
    assert full.pixels.shape == (3000, 4000, 3) and full.pixels.max() == 255 and full.pixels.min() == 0


def test_bytes_and_array_entry_points():
    buf = io.BytesIO()
    Image.new("RGB", (10, 6), (9, 9, 9)).save(buf, format="PNG")
    assert load_image_bytes(buf.getvalue(), "<clipboard>").pixels.shape == (6, 10, 3)
    with pytest.raises(ImageLoadError, match="<clipboard>"):
        load_image_bytes(b"", "<clipboard>")
    assert from_array(np.zeros((5, 7), np.uint8)).pixels.shape == (5, 7, 3)
    with pytest.raises(ImageLoadError):
        from_array(np.zeros((5, 7, 3), np.float32))


@pytest.mark.parametrize("fmt,suffix", [("HEIF", ".heic"), ("AVIF", ".avif")])
def test_heic_and_avif_decode_and_are_listed(tmp_path, fmt, suffix):
    """Phone photos (HEIC) and AVIF open like any other image and folder scans include them."""
    from copylens.core.imageio import scan_images

    rng = np.random.default_rng(3)
    pixels = np.kron(rng.integers(0, 255, (6, 8, 3)), np.ones((16, 16, 1))).astype(np.uint8)  # 96x128 blocks
    path = tmp_path / f"phone{suffix}"
    Image.fromarray(pixels).save(path, format=fmt, quality=95)
    img = load_image(path)
    assert img.pixels.shape == (96, 128, 3) and img.original_size == (128, 96)
    assert np.abs(img.pixels.astype(int) - pixels).mean() < 6  # lossy, but the same picture
    assert scan_images(tmp_path) == [path]
