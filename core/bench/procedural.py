"""Drawing for the scale distractors (:mod:`.distractors`): procedural images and recolourings.

Every function takes a :class:`numpy.random.Generator` (its only source of randomness) and returns an RGB
``uint8`` array ``[H x W x 3]``; the same generator state gives the same pixels on the same library
versions (Pillow's rasteriser and fonts, OpenCV's resize). Procedural kinds imitate the content kinds of
the dev benchmark without copying anything:

- ``shapes``: flat-colour polygons, ellipses, rectangles, arcs on a flat or two-colour background
  (clip art, icons);
- ``strokes``: pen strokes, loops and hatching on paper-like light backgrounds (line art);
- ``gradient``: smooth colour fields of random sinusoids and blobs through a random palette, with soft
  shapes (wallpapers);
- ``texture``: fractal noise through random palettes with hard-edged regions of other noise (photo-like
  texture, many keypoints);
- ``text``: lines of random pseudo-words in the DejaVu fonts (Pillow's own font where they are missing)
  at random sizes and colours, with coloured bars (documents, slides).

Drawing sizes are chosen by the caller; one image of 400-800 px takes 5-25 ms on one core.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")  # DejaVu (not Pillow's default, the font the edits use)
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Italic.ttf",
              "DejaVuSansMono.ttf", "DejaVuSansCondensed-Oblique.ttf", "DejaVuSerif-Bold.ttf")
# letters drawn by English frequency, so pseudo-words read like words without being common ones
LETTERS = "eeeeeeeeeeeettttttttaaaaaaaooooooiiiiiinnnnnnsssssshhhhhrrrrrdddlllcccuummwwffggyyppbbvkjxqz"


def _rgb(hsv: np.ndarray) -> np.ndarray:
    """``[N x 3]`` HSV in [0, 1] -> ``[N x 3]`` uint8 RGB."""
    hsv8 = np.clip(hsv * [180, 255, 255], 0, 255).astype(np.uint8)[None]
    return cv2.cvtColor(hsv8, cv2.COLOR_HSV2RGB)[0]


def palette(rng: np.random.Generator, k: int) -> np.ndarray:
    """``k`` colours ``[k x 3]`` uint8 around a random base hue (a scheme, as designers pick them)."""
    base = rng.random()
    hue = (base + rng.normal(0, 0.18, k)) % 1.0
    hsv = np.stack([hue, rng.uniform(0.15, 1.0, k), rng.uniform(0.2, 1.0, k)], axis=1)
    return _rgb(hsv)


def _lut(colours: np.ndarray) -> np.ndarray:
    """A 256-entry colour map ``[256 x 3]`` uint8 through ``colours`` in order."""
    xs = np.linspace(0, 255, len(colours))
    return np.stack([np.interp(np.arange(256), xs, colours[:, c]) for c in range(3)], axis=1).astype(np.uint8)


def _normalise(field: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(field, [1, 99])
    return np.clip((field - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)


def _linear_gradient(rng: np.random.Generator, w: int, h: int, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx * np.cos(angle) / w + yy * np.sin(angle) / h
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return (c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]).astype(np.uint8)


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A flat colour or a two-colour linear gradient."""
    pal = palette(rng, 2)
    return np.full((h, w, 3), pal[0], np.uint8) if rng.random() < 0.5 else _linear_gradient(rng, w, h, *pal)


def _polygon(rng: np.random.Generator, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    n = int(rng.integers(3, 9))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * rng.uniform(0.35, 1.0, n)
    return [(float(cx + a * np.cos(t)), float(cy + a * np.sin(t))) for t, a in zip(ang, rad, strict=True)]


def _fill(pal: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in pal[int(rng.integers(0, len(pal)))])


def draw_shapes(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    img = Image.fromarray(background(rng, w, h))
    d = ImageDraw.Draw(img)
    pal = palette(rng, int(rng.integers(3, 8)))
    side = min(w, h)
    for _ in range(int(rng.integers(5, 36))):
        r = side * float(np.exp(rng.uniform(np.log(0.04), np.log(0.45))))
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        fill = _fill(pal, rng)
        outline = _fill(pal, rng) if rng.random() < 0.4 else None
        width = int(rng.integers(1, 7))
        box = [cx - r, cy - r * rng.uniform(0.4, 1.0), cx + r, cy + r * rng.uniform(0.4, 1.0)]
        shape = int(rng.integers(0, 5))
        if shape == 0:
            d.polygon(_polygon(rng, cx, cy, r), fill=fill, outline=outline, width=width)
        elif shape == 1:
            d.ellipse(box, fill=fill, outline=outline, width=width)
        elif shape == 2:
            d.rounded_rectangle(box, radius=float(rng.uniform(0, r / 2)), fill=fill, outline=outline, width=width)
        elif shape == 3:
            a0 = float(rng.uniform(0, 360))
            d.pieslice(box, a0, a0 + float(rng.uniform(40, 300)), fill=fill, outline=outline, width=width)
        else:
            a0 = float(rng.uniform(0, 360))
            d.arc(box, a0, a0 + float(rng.uniform(60, 330)), fill=fill, width=int(rng.integers(2, 14)))
    return np.asarray(img)


def _stroke(rng: np.random.Generator, w: int, h: int) -> list[tuple[float, float]]:
    """A smooth random pen path: a walk whose heading drifts."""
    n = int(rng.integers(4, 40))
    step = min(w, h) * rng.uniform(0.01, 0.06)
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, rng.uniform(0.05, 0.5), n))
    xs = rng.uniform(0, w) + np.cumsum(step * np.cos(heading))
    ys = rng.uniform(0, h) + np.cumsum(step * np.sin(heading))
    return [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]


def draw_strokes(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    paper = _rgb(np.array([[rng.random(), rng.uniform(0, 0.15), rng.uniform(0.85, 1.0)]]))[0]
    img = Image.new("RGB", (w, h), tuple(int(v) for v in paper))
    d = ImageDraw.Draw(img)
    ink = palette(rng, 3) // 2 if rng.random() < 0.6 else palette(rng, 4)  # mostly dark inks
    for _ in range(int(rng.integers(4, 30))):
        d.line(_stroke(rng, w, h), fill=_fill(ink, rng), width=int(rng.integers(1, 10)), joint="curve")
    for _ in range(int(rng.integers(0, 6))):  # loops
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), min(w, h) * rng.uniform(0.03, 0.3)
        d.ellipse([cx - r, cy - r * rng.uniform(0.3, 1), cx + r, cy + r], outline=_fill(ink, rng),
                  width=int(rng.integers(1, 6)))
    if rng.random() < 0.5:  # a patch of hatching
        x0, y0 = rng.uniform(0, w * 0.7), rng.uniform(0, h * 0.7)
        size, gap, ang = min(w, h) * rng.uniform(0.1, 0.4), rng.uniform(4, 14), rng.uniform(0, np.pi)
        c, s = np.cos(ang), np.sin(ang)
        for t in np.arange(0, size, gap):
            d.line([(x0 + t * s, y0 - t * c), (x0 + t * s + size * c, y0 - t * c + size * s)],
                   fill=_fill(ink, rng), width=1)
    return np.asarray(img)


def _smooth_field(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A smooth scalar field ``[h x w]`` float32: random sinusoids and Gaussian blobs, drawn small."""
    sw, sh = max(8, w // 8), max(8, h // 8)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    xx, yy = xx / sw, yy / sh
    f = np.zeros((sh, sw), np.float32)
    for _ in range(int(rng.integers(1, 5))):
        fx, fy = rng.normal(0, 2, 2)
        f += rng.uniform(0.3, 1) * np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
    for _ in range(int(rng.integers(1, 5))):
        cx, cy, s = rng.random(), rng.random(), rng.uniform(0.05, 0.4)
        f += rng.uniform(-2, 2) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    return cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC)


def draw_gradient(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    lut = _lut(palette(rng, int(rng.integers(3, 6))))
    img = Image.fromarray(lut[_normalise(_smooth_field(rng, w, h))])
    layer = Image.new("RGB", (w, h))
    mask = Image.new("L", (w, h), 0)
    dl, dm = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    pal = palette(rng, 3)
    for _ in range(int(rng.integers(1, 6))):  # soft shapes and bands
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), min(w, h) * rng.uniform(0.1, 0.6)
        box = [cx - r, cy - r * rng.uniform(0.2, 1), cx + r, cy + r]
        dl.ellipse(box, fill=_fill(pal, rng))
        dm.ellipse(box, fill=int(rng.integers(60, 200)))
    mask = mask.filter(ImageFilter.GaussianBlur(float(rng.uniform(2, 30))))
    return np.asarray(Image.composite(layer, img, mask))


def _noise(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Fractal (1/f) noise ``[h x w]`` uint8: octaves of random values enlarged bicubically."""
    f = np.zeros((h, w), np.float32)
    beta = rng.uniform(0.5, 1.2)
    for octave in range(int(rng.integers(3, 8))):
        s = 4 * 2 ** octave
        g = rng.random((max(2, s * h // max(w, h)), s), dtype=np.float32)
        f += cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC) * (0.5 ** (octave * beta))
    return _normalise(f)


def draw_texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    sw, sh = (w + 1) // 2, (h + 1) // 2  # drawn at half size, then enlarged (half the time, same look)
    out = _lut(palette(rng, int(rng.integers(2, 6))))[_noise(rng, sw, sh)]
    for _ in range(int(rng.integers(1, 6))):  # hard-edged regions of another texture
        mask = Image.new("L", (sw, sh), 0)
        r = min(sw, sh) * rng.uniform(0.1, 0.5)
        ImageDraw.Draw(mask).polygon(_polygon(rng, rng.uniform(0, sw), rng.uniform(0, sh), r), fill=255)
        m = np.asarray(mask) > 0
        out[m] = _lut(palette(rng, int(rng.integers(2, 5))))[_noise(rng, sw, sh)][m]
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)


@lru_cache(maxsize=256)
def _font(index: int, size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    path = FONT_DIR / FONT_FILES[index % len(FONT_FILES)]
    return ImageFont.truetype(str(path), size) if path.exists() else ImageFont.load_default(size=size)


def pseudo_words(rng: np.random.Generator, n: int) -> str:
    words = ("".join(LETTERS[int(k)] for k in rng.integers(0, len(LETTERS), int(rng.integers(1, 10))))
             for _ in range(n))
    return " ".join(w.capitalize() if rng.random() < 0.15 else w for w in words)


def draw_text(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    dark = rng.random() < 0.3
    bg = _rgb(np.array([[rng.random(), rng.uniform(0, 0.4), rng.uniform(0.05, 0.25) if dark
                         else rng.uniform(0.85, 1.0)]]))[0]
    img = Image.new("RGB", (w, h), tuple(int(v) for v in bg))
    d = ImageDraw.Draw(img)
    pal = palette(rng, 4)
    for _ in range(int(rng.integers(0, 4))):  # coloured bars (headers, highlights)
        y = rng.uniform(0, h)
        d.rectangle([0 if rng.random() < 0.5 else rng.uniform(0, w / 2), y, w, y + rng.uniform(10, h / 4)],
                    fill=_fill(pal, rng))
    ink = (235, 235, 235) if dark else (20, 20, 25)
    y = rng.uniform(0, h * 0.15)
    font_index = int(rng.integers(0, len(FONT_FILES)))
    while y < h:
        size = int(np.clip(rng.lognormal(np.log(22), 0.5), 10, 90))
        if rng.random() < 0.3:
            font_index = int(rng.integers(0, len(FONT_FILES)))
        font = _font(font_index, size)
        colour = ink if rng.random() < 0.7 else _fill(pal, rng)
        d.text((rng.uniform(0, w * 0.2), y), pseudo_words(rng, int(rng.integers(1, 12))), font=font, fill=colour)
        y += size * rng.uniform(1.1, 2.2)
    return np.asarray(img)


PROCEDURAL: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "shapes": draw_shapes, "strokes": draw_strokes, "gradient": draw_gradient, "texture": draw_texture,
    "text": draw_text,
}


def recolour(rng: np.random.Generator, pixels: np.ndarray) -> tuple[np.ndarray, str]:
    """A strong colour change of ``pixels`` ``[H x W x 3]`` uint8 and its name: a hue rotation of 60-300
    degrees, a channel permutation, a duotone between two random colours, or a posterised hue rotation."""
    op = int(rng.integers(0, 4))
    if op == 1:
        perm = [(1, 2, 0), (2, 0, 1), (0, 2, 1), (2, 1, 0), (1, 0, 2)][int(rng.integers(0, 5))]
        return np.ascontiguousarray(pixels[:, :, perm]), f"channels{''.join(map(str, perm))}"
    if op == 2:
        gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        return _lut(palette(rng, 2)[[0, 1]] if rng.random() < 0.5 else palette(rng, 3))[gray], "duotone"
    hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV)
    shift = int(rng.integers(30, 151))  # OpenCV hue is 0..179: 60-300 degrees
    hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int16) + shift) % 180).astype(np.uint8)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1].astype(np.float32) * rng.uniform(0.8, 1.6), 0, 255).astype(np.uint8)
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if op == 3:
        bits = int(rng.integers(2, 4))
        out = (out >> (8 - bits) << (8 - bits)) + (1 << (7 - bits))
        return out.astype(np.uint8), f"hue{shift * 2}+posterise{bits}"
    return out, f"hue{shift * 2}"
