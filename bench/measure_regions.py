"""Measure region proposals (core/regions.py) on synthetic overlays built from /work/shared/datasets.

Generators here (self-contained): a picture pasted onto a background from another folder at 20-60% of
the background size, constant-colour padding, a meme caption band with text, and a fake social-media
screenshot frame. When core/bench/edits.py exists, its "paste", "screenshot", "meme" and "pad" edits are
measured too (the dev benchmark uses those). Plain, unedited images measure false alarms.

Reports, per edit and per content (photo / graphics):
- recall@0.7: fraction where the best-IoU returned proposal has IoU >= 0.7 with the true picture box;
- top1@0.7: the same for the first (best-scored) proposal only;
- mean number of proposals;
- for plain images, the fraction that get a proposal scoring >= 0.5 (false alarm);
- median time of one call on a 1-megapixel image (OMP_NUM_THREADS=1, cv2.setNumThreads(1)).

Command (from the repository root):
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/measure_regions.py --n 300 --seed 0
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from copylens.core.imageio import load_image
from copylens.core.regions import ProposalConfig, box_iou, propose_regions

DATASETS = Path("/work/shared/datasets")
WORDS = ("when you", "finally", "the code", "works", "me", "nobody:", "my cat", "monday", "LOL", "this is",
         "fine", "everyone", "at 3 am", "so true", "wait for it", "breaking", "news", "#blessed")


def _lists() -> tuple[list[str], list[str]]:
    photos = sorted(glob.glob(str(DATASETS / "clothing-small/*/*/*.jpg")))
    photos += sorted(glob.glob(str(DATASETS / "imagenet-sample-dev/*.JPEG")))
    graphics = sorted(glob.glob(str(DATASETS / "graphics-tuxpaint/*.png")))
    return photos, graphics


def _load(path: str, min_side: int = 320) -> np.ndarray:
    px = load_image(path, max_side=800).pixels
    s = min_side / max(px.shape[:2])
    if s > 1:  # small clip art: blow up so it can hold a paste
        px = cv2.resize(px, (round(px.shape[1] * s), round(px.shape[0] * s)), interpolation=cv2.INTER_LINEAR)
    return px


def _jpeg(px: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.4:
        return px
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, "JPEG", quality=int(rng.integers(60, 96)))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def _text(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def gen_paste(fg: np.ndarray, bg: np.ndarray, rng: np.random.Generator):
    bh, bw = bg.shape[:2]
    s = rng.uniform(0.2, 0.6)
    f = min(s * bw / fg.shape[1], s * bh / fg.shape[0])
    w, h = max(8, round(fg.shape[1] * f)), max(8, round(fg.shape[0] * f))
    small = cv2.resize(fg, (w, h), interpolation=cv2.INTER_AREA)
    x, y = int(rng.integers(0, bw - w + 1)), int(rng.integers(0, bh - h + 1))
    out = bg.copy()
    out[y:y + h, x:x + w] = small
    return out, (x, y, x + w, y + h)


def gen_pad(fg: np.ndarray, rng: np.random.Generator):
    h, w = fg.shape[:2]
    pads = [int(rng.uniform(0, 0.4) * d) if rng.random() < 0.8 else 0 for d in (h, w, h, w)]
    if max(pads) < 0.05 * max(h, w):
        pads[int(rng.integers(4))] = int(0.2 * max(h, w))
    top, left, bottom, right = pads
    colour = [(255, 255, 255), (0, 0, 0), tuple(int(v) for v in rng.integers(0, 256, 3))][int(rng.integers(3))]
    out = np.empty((h + top + bottom, w + left + right, 3), np.uint8)
    out[:] = colour
    out[top:top + h, left:left + w] = fg
    return out, (left, top, left + w, top + h)


def gen_meme(fg: np.ndarray, rng: np.random.Generator):
    h, w = fg.shape[:2]
    dark = rng.random() < 0.2
    paper, ink = ((0, 0, 0), (255, 255, 255)) if dark else ((255, 255, 255), (0, 0, 0))
    top = int(rng.uniform(0.12, 0.3) * h)
    bottom = int(rng.uniform(0.1, 0.25) * h) if rng.random() < 0.3 else 0
    canvas = Image.new("RGB", (w, h + top + bottom), paper)
    canvas.paste(Image.fromarray(fg), (0, top))
    draw = ImageDraw.Draw(canvas)
    for y0, band in ((0, top), (top + h, bottom)):
        if band <= 0:
            continue
        lines = 1 + int(band > 0.15 * h) + int(rng.random() < 0.3)
        size = int(band / (lines + 1))
        for k in range(lines):
            draw.text((int(0.05 * w), y0 + int(size * 0.5) + k * size), _text(rng, 3), fill=ink, font=_font(size))
    return np.asarray(canvas), (0, top, w, top + h)


def gen_screenshot(fg: np.ndarray, rng: np.random.Generator):
    h, w = fg.shape[:2]
    dark = rng.random() < 0.3
    paper = (21, 32, 43) if dark else (255, 255, 255)
    ink, grey = ((230, 230, 230), (120, 130, 140)) if dark else ((15, 20, 25), (101, 119, 134))
    margin = 0 if rng.random() < 0.4 else int(rng.uniform(0.02, 0.06) * w)
    header = int(rng.uniform(0.12, 0.22) * w)
    footer = int(rng.uniform(0.08, 0.18) * w)
    cw, ch = w + 2 * margin, header + h + footer
    canvas = Image.new("RGB", (cw, ch), paper)
    draw = ImageDraw.Draw(canvas)
    r = header // 4
    av = tuple(int(v) for v in rng.integers(0, 256, 3))
    draw.ellipse((margin + 4, header // 2 - r, margin + 4 + 2 * r, header // 2 + r), fill=av)
    draw.text((margin + 2 * r + 12, header // 2 - r), _text(rng, 2), fill=ink, font=_font(r))
    draw.text((margin + 2 * r + 12, header // 2 + 2), "@" + _text(rng, 1).replace(" ", ""), fill=grey,
              font=_font(int(r * 0.8)))
    canvas.paste(Image.fromarray(fg), (margin, header))
    y = header + h + footer // 4
    for k in range(4):
        x = margin + 8 + k * cw // 4
        draw.rectangle((x, y, x + footer // 4, y + footer // 4), outline=grey, width=2)
        draw.text((x + footer // 3, y), str(int(rng.integers(1, 999))), fill=grey, font=_font(footer // 4))
    draw.text((margin + 8, y + footer // 3), _text(rng, 4), fill=ink, font=_font(footer // 5))
    return np.asarray(canvas), (margin, header, margin + w, header + h)


def _samples(n: int, seed: int):
    """Yields (edit, content, pixels, box or None)."""
    rng = np.random.default_rng(seed)
    photos, graphics = _lists()

    def pick(kind: str) -> np.ndarray:
        pool = photos if kind == "photo" else graphics
        return _load(pool[int(rng.integers(len(pool)))])

    def kind() -> str:
        return "graphics" if rng.random() < 0.3 else "photo"

    plan = ["paste"] * (n * 4 // 10) + ["pad", "meme", "screenshot"] * (n // 10) + ["plain"] * (n // 5)
    for edit in plan:
        k = kind()
        fg = pick(k)
        if edit == "paste":
            kb = kind()
            px, box = gen_paste(fg, pick(kb), rng)
            content = "photo" if (k, kb) == ("photo", "photo") else "graphics"
        elif edit == "plain":
            px, box, content = fg, None, k
        else:
            px, box = {"pad": gen_pad, "meme": gen_meme, "screenshot": gen_screenshot}[edit](fg, rng)
            content = k
        yield edit, content, _jpeg(px, rng), box
    yield from _bench_samples(n // 10, seed, photos, graphics)


def _bench_samples(n: int, seed: int, photos: list[str], graphics: list[str]):
    try:
        from copylens.core.edits import apply_edit
    except ImportError:
        print("core/bench/edits.py not importable: skipping its edits", file=sys.stderr)
        return
    rng = np.random.default_rng(seed + 1)
    for name in ("paste", "screenshot", "meme", "pad"):
        for _ in range(n):
            k = "graphics" if rng.random() < 0.3 else "photo"
            pool = photos if k == "photo" else graphics
            fg = _load(pool[int(rng.integers(len(pool)))])
            bg = _load(photos[int(rng.integers(len(photos)))])
            e = apply_edit(name, fg, rng, bg)
            if e.box is not None:
                yield "edits." + name, k, e.pixels, tuple(float(v) for v in e.box)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300, help="synthetic samples (plus n/10 per edits.py edit)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timing", type=int, default=30, help="images timed at 1 megapixel")
    ap.add_argument("--show-misses", action="store_true")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    config = ProposalConfig()
    stats: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    timing_images = []
    for i, (edit, content, px, box) in enumerate(_samples(args.n, args.seed)):
        regions = propose_regions(px, config)
        st = stats[(edit, content)]
        st["count"].append(len(regions))
        if len(timing_images) < args.timing:
            timing_images.append(px)
        if box is None:
            st["alarm"].append(float(any(r.score >= 0.5 for r in regions)))
            st["top_score"].append(max((r.score for r in regions), default=0.0))
            if args.show_misses and regions and regions[0].score >= 0.5:
                path = f"/tmp/regions_alarm_{i}_{content}.png"
                Image.fromarray(px).save(path)
                print(f"alarm {path} shape={px.shape[:2]} best={regions[0]}")
            continue
        ious = [box_iou(r.box, box) for r in regions]
        best = max(ious, default=0.0)
        st["recall"].append(float(best >= 0.7))
        st["top1"].append(float(bool(ious) and ious[0] >= 0.7))
        st["hit_score"].append(max((r.score for r, v in zip(regions, ious, strict=True) if v >= 0.7), default=0))
        if args.show_misses and best < 0.7:
            path = f"/tmp/regions_miss_{i}_{edit}.png"
            Image.fromarray(px).save(path)
            got = [(tuple(round(v) for v in r.box), round(r.score, 2), r.kind) for r in regions]
            print(f"miss {path} box={box} best_iou={best:.2f} regions={got}")
    print(f"{'edit':18s} {'content':9s} {'n':>4s} {'recall@.7':>9s} {'top1@.7':>8s} {'hit_sc':>7s} "
          f"{'alarm':>6s} {'props':>6s}")
    for (edit, content), st in sorted(stats.items()):
        def m(key: str, st=st) -> str:
            return f"{np.mean(st[key]):.2f}" if st[key] else "-"
        print(f"{edit:18s} {content:9s} {len(st['count']):4d} {m('recall'):>9s} {m('top1'):>8s} "
              f"{m('hit_score'):>7s} {m('alarm'):>6s} {m('count'):>6s}")
    edits = [v for (e, _), st in stats.items() if e != "plain" for v in st["recall"]]
    plain = [v for (e, _), st in stats.items() if e == "plain" for v in st["alarm"]]
    print(f"ALL edits recall@0.7 = {np.mean(edits):.3f} (n={len(edits)});  plain alarm(score>=0.5) = "
          f"{np.mean(plain):.3f} (n={len(plain)});  mean proposals = "
          f"{np.mean([c for st in stats.values() for c in st['count']]):.2f}")
    times = []
    for px in timing_images:
        s = (1_000_000 / (px.shape[0] * px.shape[1])) ** 0.5
        big = cv2.resize(px, (round(px.shape[1] * s), round(px.shape[0] * s)), interpolation=cv2.INTER_LINEAR)
        t = time.perf_counter()
        propose_regions(big, config)
        times.append((time.perf_counter() - t) * 1000)
    if times:
        print(f"time per 1-MP image: median {statistics.median(times):.1f} ms, max {max(times):.1f} ms "
              f"(n={len(times)}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
