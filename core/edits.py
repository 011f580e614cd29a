"""Image edits for copy-detection benchmarks, modelled on the DISC21 / AugLy transformations.

Every edit is a function ``fn(pixels, rng, background) -> Edited`` registered in :data:`EDITS` under its
edit name. ``pixels`` is ``[H x W x 3]`` uint8 RGB; ``rng`` a :class:`numpy.random.Generator`, the only
source of randomness (an edit is deterministic given the generator's state); ``background`` an optional
RGB image used by ``paste`` (a synthetic texture is drawn when it is ``None``). Outputs are uint8 RGB with
the longer side at most :data:`MAX_SIDE`. ``Edited.box`` locates the copied content in the edited image
for edits that keep it axis-aligned (pad, meme, screenshot, paste) and bounds it for ``perspective``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from copylens.core.errors import UnknownBackendError
from copylens.core.resize import fit_longest

MAX_SIDE = 1024  # longer side of every edited image (inputs are shrunk to it first, outputs after)
WORDS = ("copy", "original", "LOL", "wow", "share", "sale", "new", "when you", "me irl", "2021", "NOPE",
         "best ever", "follow", "#art", "look at this", "breaking", "free", "so true", "nice", "repost")

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Edited:
    """An edited image: ``pixels`` [H x W x 3] uint8 RGB, the edit's name ``edit``, and ``box``
    ``(x0, y0, x1, y1)`` of the copied content in ``pixels`` (exclusive end) where it is known."""

    pixels: np.ndarray
    edit: str
    box: Box | None = None


# ---------------------------------------------------------------- helpers

def _pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(a, dtype=np.uint8), "RGB")


def _arr(img: Image.Image) -> np.ndarray:
    return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy


def _shrink(a: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """Return ``a`` with its longer side at most ``max_side`` and the scale applied."""
    return fit_longest(a, max_side, cv2.INTER_AREA)


def _finish(a: np.ndarray, edit: str, box: Box | None = None) -> Edited:
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    a, s = _shrink(np.clip(a, 0, 255).astype(np.uint8)[:, :, :3])
    if box is not None:
        h, w = a.shape[:2]
        x0, y0, x1, y1 = (round(v * s) for v in box)
        box = (max(0, x0), max(0, y0), min(w, max(x1, x0 + 1)), min(h, max(y1, y0 + 1)))
    return Edited(np.ascontiguousarray(a), edit, box)


def _resize(a: np.ndarray, w: int, h: int) -> np.ndarray:
    w, h = max(1, int(w)), max(1, int(h))
    interp = cv2.INTER_AREA if w * h < a.shape[0] * a.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(a, (w, h), interpolation=interp)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(6, int(size)))


def _jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    _pil(a).save(buf, "JPEG", quality=int(quality))
    return _arr(Image.open(io.BytesIO(buf.getvalue())))


def _texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A smooth random colour field with a few blobs: a stand-in background photo."""
    small = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
    a = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img = _pil(a)
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(4, max(5, min(w, h) // 3)))
        d.ellipse((x - r, y - r, x + r, y + r), fill=_colour(rng))
    return _arr(img.filter(ImageFilter.GaussianBlur(2)))


def _text_lines(d: ImageDraw.ImageDraw, rng, x0: int, y0: int, width: int, n: int, h: int, fill) -> None:
    """Grey bars standing for lines of text."""
    for i in range(n):
        ln = int(width * rng.uniform(0.4, 1.0))
        y = y0 + i * 2 * h
        d.rounded_rectangle((x0, y, x0 + max(2, ln), y + h), radius=h // 2, fill=fill)


# ---------------------------------------------------------------- edits

def crop(a, rng, bg=None) -> Edited:
    h, w = a.shape[:2]
    area = rng.uniform(0.3, 0.6) if rng.random() < 0.5 else rng.uniform(0.6, 0.95)
    ratio = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    cw = int(np.clip(round(np.sqrt(area * w * h * ratio)), 1, w))
    ch = int(np.clip(round(area * w * h / max(cw, 1)), 1, h))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return _finish(a[y:y + ch, x:x + cw], "crop")


def rotate(a, rng, bg=None) -> Edited:
    if rng.random() < 0.5:
        return _finish(np.rot90(a, int(rng.integers(1, 4))), "rotate")
    angle = float(rng.uniform(4, 35)) * (1 if rng.random() < 0.5 else -1)
    fill = _colour(rng) if rng.random() < 0.5 else (0, 0, 0)
    out = _pil(a).rotate(angle, Image.Resampling.BILINEAR, expand=True, fillcolor=fill)
    return _finish(_arr(out), "rotate")


def mirror_jpeg(a, rng, bg=None) -> Edited:
    return _finish(_jpeg(a[:, ::-1], int(rng.integers(20, 75))), "mirror_jpeg")


def color(a, rng, bg=None) -> Edited:
    img = _pil(a)
    ops = [op for op in range(4) if rng.random() < 0.6] or [int(rng.integers(0, 4))]
    for op in ops:
        if op == 0:
            img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.45, 1.7))
        elif op == 1:
            img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.4, 1.8))
        elif op == 2:
            img = ImageEnhance.Color(img).enhance(rng.uniform(0.0, 2.5))
        else:
            hsv = np.asarray(img.convert("HSV")).copy()
            hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int16) + int(rng.integers(20, 236))) % 256
            img = Image.fromarray(hsv, "HSV").convert("RGB")
    return _finish(_arr(img), "color")


def grayscale(a, rng, bg=None) -> Edited:
    return _finish(_arr(_pil(a).convert("L")), "grayscale")


def invert(a, rng, bg=None) -> Edited:
    return _finish(255 - a, "invert")


def blur(a, rng, bg=None) -> Edited:
    radius = rng.uniform(1.0, 4.0) * max(1.0, max(a.shape[:2]) / 512)
    return _finish(_arr(_pil(a).filter(ImageFilter.GaussianBlur(radius))), "blur")


def noise(a, rng, bg=None) -> Edited:
    if rng.random() < 0.7:
        out = a.astype(np.float32) + rng.normal(0, rng.uniform(6, 30), a.shape)
    else:
        out = a.astype(np.float32)
        m = rng.random(a.shape[:2])
        p = rng.uniform(0.01, 0.06)
        out[m < p / 2] = 0
        out[m > 1 - p / 2] = 255
    return _finish(np.clip(out, 0, 255).astype(np.uint8), "noise")


def pixelate(a, rng, bg=None) -> Edited:
    h, w = a.shape[:2]
    block = max(2, round(max(h, w) / rng.uniform(40, 120)))
    small = _resize(a, max(1, w // block), max(1, h // block))
    return _finish(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST), "pixelate")


def pad(a, rng, bg=None) -> Edited:
    h, w = a.shape[:2]
    left, right = (int(w * rng.uniform(0.0, 0.4)) for _ in range(2))
    top, bottom = (int(h * rng.uniform(0.0, 0.4)) for _ in range(2))
    if left + right + top + bottom == 0:
        left = right = max(1, w // 8)
    if rng.random() < 0.7:
        canvas = np.empty((h + top + bottom, w + left + right, 3), np.uint8)
        canvas[:] = _colour(rng)
    else:
        canvas = _texture(rng, w + left + right, h + top + bottom)
    canvas[top:top + h, left:left + w] = a
    return _finish(canvas, "pad", (left, top, left + w, top + h))


def aspect(a, rng, bg=None) -> Edited:
    h, w = a.shape[:2]
    f = float(np.exp(rng.uniform(np.log(1.3), np.log(2.2)))) * (1 if rng.random() < 0.5 else -1)
    nw, nh = (w * f, h) if f > 0 else (w, h * -f)
    return _finish(_resize(a, round(nw), round(nh)), "aspect")


def _draw_text(img: Image.Image, rng, n: int) -> None:
    d = ImageDraw.Draw(img)
    w, h = img.size
    for _ in range(n):
        size = max(8, int(min(w, h) * rng.uniform(0.07, 0.22)))
        word = " ".join(rng.choice(WORDS, int(rng.integers(1, 3))))
        font = _font(size)
        tw = d.textlength(word, font=font)
        x = int(rng.integers(-size, max(1 - size + 1, int(w - tw * 0.7))))
        y = int(rng.integers(-size // 2, max(1, h - size // 2)))
        stroke = int(rng.integers(0, max(1, size // 10) + 1))
        d.text((x, y), word, font=font, fill=_colour(rng), stroke_width=stroke, stroke_fill=_colour(rng))


def text(a, rng, bg=None) -> Edited:
    img = _pil(a)
    _draw_text(img, rng, int(rng.integers(1, 4)))
    return _finish(_arr(img), "text")


def _emoji(d: ImageDraw.ImageDraw, rng, cx: int, cy: int, r: int) -> None:
    kind = int(rng.integers(0, 4))
    if kind == 0:  # smiley
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 204, 0), outline=(120, 80, 0), width=max(1, r // 12))
        e = max(1, r // 6)
        for ex in (cx - r // 3, cx + r // 3):
            d.ellipse((ex - e, cy - r // 3 - e, ex + e, cy - r // 3 + e), fill=(60, 40, 20))
        d.arc((cx - r // 2, cy - r // 4, cx + r // 2, cy + r // 2), 20, 160, fill=(60, 40, 20), width=max(1, r // 8))
    elif kind == 1:  # heart
        c = (int(rng.integers(180, 256)), 20, int(rng.integers(40, 120)))
        d.ellipse((cx - r, cy - r // 2, cx, cy + r // 2), fill=c)
        d.ellipse((cx, cy - r // 2, cx + r, cy + r // 2), fill=c)
        d.polygon([(cx - r + r // 12, cy + r // 8), (cx + r - r // 12, cy + r // 8), (cx, cy + r)], fill=c)
    elif kind == 2:  # star
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * 0.45
            t = -np.pi / 2 + i * np.pi / 5
            pts.append((cx + rad * np.cos(t), cy + rad * np.sin(t)))
        d.polygon(pts, fill=_colour(rng), outline=(0, 0, 0))
    else:  # a glyph in a bubble
        d.rounded_rectangle((cx - r, cy - r, cx + r, cy + r), radius=max(1, r // 3), fill=_colour(rng))
        glyph = str(rng.choice(list("!?$#@&%*+")))
        font = _font(int(r * 1.5))
        d.text((cx, cy), glyph, font=font, fill=(255, 255, 255), anchor="mm", stroke_width=1, stroke_fill=(0, 0, 0))


def emoji(a, rng, bg=None) -> Edited:
    img = _pil(a)
    d = ImageDraw.Draw(img)
    w, h = img.size
    for _ in range(int(rng.integers(1, 5))):
        r = max(3, int(min(w, h) * rng.uniform(0.06, 0.2)))
        _emoji(d, rng, int(rng.integers(0, w)), int(rng.integers(0, h)), r)
    return _finish(_arr(img), "emoji")


def meme(a, rng, bg=None) -> Edited:
    a, _ = _shrink(a, 900)
    h, w = a.shape[:2]
    band = max(12, int(max(h, w * 0.3) * rng.uniform(0.12, 0.25)))
    where = int(rng.integers(0, 3))  # 0 top, 1 bottom, 2 both
    top = band if where in (0, 2) else 0
    bottom = band if where in (1, 2) else 0
    canvas = Image.new("RGB", (w, h + top + bottom), (255, 255, 255))
    canvas.paste(_pil(a), (0, top))
    d = ImageDraw.Draw(canvas)
    for y0, on in ((0, top), (top + h, bottom)):
        if not on:
            continue
        words = " ".join(rng.choice(WORDS, int(rng.integers(1, 4)))).upper()
        size = max(7, int(band * 0.6))
        font = _font(size)
        while size > 7 and d.textlength(words, font=font) > w * 0.95:
            size = int(size * 0.85)
            font = _font(size)
        d.text((w // 2, y0 + band // 2), words, font=font, fill=(0, 0, 0), anchor="mm")
    return _finish(_arr(canvas), "meme", (0, top, w, top + h))


def screenshot(a, rng, bg=None) -> Edited:
    h, w = a.shape[:2]
    cw = int(rng.integers(320, 720))
    ch = max(1, round(h * cw / w))
    if ch > 900:
        cw, ch = max(1, round(cw * 900 / ch)), 900
    content = _resize(a, cw, ch)
    margin = int(rng.integers(0, 25))
    width = max(cw + 2 * margin, 320)
    status, header, footer = int(rng.integers(20, 40)), int(rng.integers(50, 80)), int(rng.integers(70, 150))
    dark = rng.random() < 0.3
    paper, ink, grey = ((24, 24, 28), (235, 235, 235), (90, 90, 96)) if dark else \
        ((255, 255, 255), (20, 20, 20), (200, 200, 205))
    canvas = Image.new("RGB", (width, status + header + ch + footer), paper)
    d = ImageDraw.Draw(canvas)
    d.rectangle((0, 0, width, status), fill=(0, 0, 0) if dark else (240, 240, 240))
    d.text((8, status // 2), "9:41", font=_font(status * 0.6), fill=ink, anchor="lm")
    for i in range(3):  # battery / signal icons
        d.rectangle((width - 20 - i * 18, 5, width - 8 - i * 18, status - 5), fill=ink)
    ar = header // 2 - 6
    d.ellipse((10, status + header // 2 - ar, 10 + 2 * ar, status + header // 2 + ar), fill=_colour(rng))
    d.text((20 + 2 * ar, status + header // 2 - 4), str(rng.choice(WORDS)), font=_font(header * 0.28),
           fill=ink, anchor="ld")
    _text_lines(d, rng, 20 + 2 * ar, status + header // 2 + 4, width // 3, 1, max(3, header // 10), grey)
    x0 = (width - cw) // 2
    y0 = status + header
    canvas.paste(_pil(content), (x0, y0))
    fy = y0 + ch + 10
    for i in range(4):  # like / comment / share / save icons
        d.ellipse((12 + i * 34, fy, 34 + i * 34, fy + 22), outline=ink, width=2)
    _text_lines(d, rng, 12, fy + 34, width - 24, max(1, (footer - 44) // 16), 7, grey)
    return _finish(_arr(canvas), "screenshot", (x0, y0, x0 + cw, y0 + ch))


def paste(a, rng, bg=None) -> Edited:
    if bg is None:
        bw, bh = int(rng.integers(480, 1024)), int(rng.integers(400, 900))
        back = _texture(rng, bw, bh)
    else:
        back = np.asarray(bg, np.uint8)[:, :, :3]
        bh, bw = back.shape[:2]
        s = rng.uniform(480, MAX_SIDE) / max(bh, bw)
        back = _resize(back, max(16, round(bw * s)), max(16, round(bh * s)))
    back = back.copy()
    bh, bw = back.shape[:2]
    h, w = a.shape[:2]
    frac = rng.uniform(0.2, 0.6)
    s = frac * min(bw / w, bh / h)
    fw, fh = max(1, min(bw, round(w * s))), max(1, min(bh, round(h * s)))
    fg = _resize(a, fw, fh)
    x, y = int(rng.integers(0, bw - fw + 1)), int(rng.integers(0, bh - fh + 1))
    back[y:y + fh, x:x + fw] = fg
    return _finish(back, "paste", (x, y, x + fw, y + fh))


def perspective(a, rng, bg=None) -> Edited:
    a, _ = _shrink(a, 800)
    h, w = a.shape[:2]
    frame = max(1, int(min(h, w) * rng.uniform(0.0, 0.06)))
    art = cv2.copyMakeBorder(a, frame, frame, frame, frame, cv2.BORDER_CONSTANT, value=_colour(rng))
    ah, aw = art.shape[:2]
    mx, my = max(8, int(aw * rng.uniform(0.1, 0.3))), max(8, int(ah * rng.uniform(0.1, 0.3)))
    W, H = aw + 2 * mx, ah + 2 * my
    wall = _texture(rng, W, H)
    src = np.float32([[0, 0], [aw, 0], [aw, ah], [0, ah]])
    jit = rng.uniform(-0.12, 0.12, (4, 2)) * np.float32([aw, ah])
    dst = (src + np.float32([mx, my]) + jit).astype(np.float32)
    dst[:, 0] = np.clip(dst[:, 0], 0, W - 1)
    dst[:, 1] = np.clip(dst[:, 1], 0, H - 1)
    M = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(art, M, (W, H), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full((ah, aw), 255, np.uint8), M, (W, H), flags=cv2.INTER_LINEAR)
    m = (mask.astype(np.float32) / 255.0)[:, :, None]
    out = wall.astype(np.float32) * (1 - m) + warped.astype(np.float32) * m
    gx, gy = rng.uniform(0, W), rng.uniform(0, H)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    sig = max(W, H) * rng.uniform(0.1, 0.35)
    glare = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * sig * sig))[:, :, None] * rng.uniform(0.25, 0.7)
    out = out * (1 - glare) + 255 * glare
    out = out * rng.uniform(0.8, 1.1)
    x0, y0 = dst.min(axis=0)
    x1, y1 = dst.max(axis=0)
    return _finish(np.clip(out, 0, 255).astype(np.uint8), "perspective",
                   (int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))))


def combo(a, rng, bg=None) -> Edited:
    names = [n for n in EDITS if n != "combo"]
    chosen = rng.choice(names, int(rng.integers(2, 4)), replace=False)
    for name in chosen:
        a = EDITS[str(name)](a, rng, bg).pixels
    return _finish(a, "combo")


EDITS: dict[str, Callable[[np.ndarray, np.random.Generator, np.ndarray | None], Edited]] = {
    "crop": crop, "rotate": rotate, "mirror_jpeg": mirror_jpeg, "color": color, "grayscale": grayscale,
    "invert": invert, "blur": blur, "noise": noise, "pixelate": pixelate, "pad": pad, "aspect": aspect,
    "text": text, "emoji": emoji, "meme": meme, "screenshot": screenshot, "paste": paste,
    "perspective": perspective, "combo": combo,
}


def _check(pixels) -> np.ndarray:
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] < 3 or a.dtype != np.uint8 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected [H x W x 3] uint8 RGB pixels, got {a.dtype} {a.shape}")
    return _shrink(np.ascontiguousarray(a[:, :, :3]))[0]


def apply_edit(name: str, pixels, rng: np.random.Generator, background=None) -> Edited:
    """Apply the edit ``name`` (a key of :data:`EDITS`)."""
    fn = EDITS.get(name)
    if fn is None:
        raise UnknownBackendError("edit", name, list(EDITS))
    bg = None if background is None else _check(background)
    return fn(_check(pixels), rng, bg)


def random_edit(pixels, rng: np.random.Generator, background=None,
                edits: Sequence[str] | None = None) -> Edited:
    """Apply one edit chosen uniformly from ``edits`` (default: every edit, combo included)."""
    names = list(edits) if edits is not None else list(EDITS)
    for n in names:
        if n not in EDITS:
            raise UnknownBackendError("edit", n, list(EDITS))
    if not names:
        raise ValueError("edits is empty")
    return apply_edit(names[int(rng.integers(0, len(names)))], pixels, rng, background)
