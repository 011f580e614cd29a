"""Scale distractors (issue 12): N images that are not copies of each other nor of a benchmark's content,
indexed beside a benchmark's references to measure CopyLens at 10k-100k references.

Two families, chosen per image from :data:`KINDS` by its own seeded draw:

- **Source-derived** (``crop``, ``mosaic``, ``collage``) from *cells*: every source image (files the
  benchmark does not use in any role; the caller chooses them) is cut into a grid of non-overlapping cells
  of about :data:`CELL_SIDE` px (an image under 1.5 cells a side is one cell), nearly flat cells
  (grey-level standard deviation under :data:`MIN_CELL_STD`) are dropped, and **each cell is used by at
  most one distractor**. ``crop``: one cell, recoloured (:func:`.procedural.recolour`), maybe mirrored,
  enlarged to 400-640 px. ``mosaic``: 2 x 2 cells of four different sources, each recoloured, with
  gutters. ``collage``: 2-3 cells of different sources, recoloured, scaled and rotated onto a procedural
  background. Cells are taken in a seeded random order; once they run out (or too few sources remain)
  a source-derived draw falls back to a procedural kind.
- **Procedural** (``shapes``, ``strokes``, ``gradient``, ``texture``, ``text``: :mod:`.procedural`),
  unlimited and different by seed.

Weights (:data:`KINDS`) are fixed, so the composition is the same at every N until the cells run out;
source-derived kinds take 3 % of draws and use 0.066 cells per image (about 6,600 cells per 100k; the dev
benchmark v2 leaves 7,425 cells). The actual counts at each N are in the provenance (:func:`composition`).

Everything follows from the seed and the cell list: image ``i`` depends only on ``(seed, i)`` and on the
cells images ``0..i-1`` took, so the first N images of a set made for M > N are the set made for N
(the prefix property). Files: ``OUT/images/<i // 1000:03d>/d<i:06d>.jpg|png`` (JPEG quality 90 for
photo-like kinds, PNG for flat graphics); ``OUT/cells.json`` (the cells and dropped sources);
``OUT/provenance.json`` (per image: kind, file, size, seed, source files and boxes).
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from copylens.core.bench.procedural import PROCEDURAL, background, draw_gradient, draw_texture, recolour
from copylens.core.errors import ImageLoadError
from copylens.core.fileio import temp_name, write_atomic, write_json_atomic
from copylens.core.imageio import load_image
from copylens.core.progress import Job, Progress

CELL_SIDE = 200  # source cells are about this many pixels a side (clothing photos 400 x 533: 2 x 2 cells)
DECODE_SIDE = 640  # sources are decoded at most this large, for cutting and for drawing
MIN_CELL_STD = 12.0  # cells flatter than this (grey-level std, 0-255) are dropped: blank backgrounds
JPEG_QUALITY = 90
# kind -> (weight, cells it takes, file format); cells 0 = procedural
KINDS: dict[str, tuple[float, int, str]] = {
    "shapes": (0.26, 0, "png"),
    "texture": (0.24, 0, "jpg"),
    "strokes": (0.17, 0, "png"),
    "text": (0.14, 0, "png"),
    "gradient": (0.16, 0, "jpg"),
    "crop": (0.014, 1, "jpg"),
    "mosaic": (0.008, 4, "jpg"),
    "collage": (0.008, 3, "jpg"),  # 2 or 3 cells (the draw decides); up to 3 are reserved
}
ASPECTS = (1.0, 4 / 3, 3 / 2, 16 / 9)  # width / height of landscape images; 30 % are turned portrait


@dataclass(frozen=True)
class Cell:
    source: str  # the source image's path
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in the source's pixels, EXIF-rotated


@dataclass(frozen=True)
class Item:
    index: int
    kind: str
    size: tuple[int, int]  # (width, height) of the canvas
    cells: tuple[int, ...]  # positions in the cell list, each used by no other item
    file: str  # path relative to the output folder


def cut_cells(sources: Sequence[str | Path], cell_side: int = CELL_SIDE,
              min_std: float = MIN_CELL_STD) -> tuple[list[Cell], list[tuple[str, str]]]:
    """Non-overlapping grid cells of every source that decodes, nearly flat ones dropped; returns
    ``(cells, dropped)`` with ``dropped`` the (path, reason) of sources that gave no cell."""
    cells, dropped = [], []
    for src in sources:
        try:
            img = load_image(Path(src), max_side=DECODE_SIDE)
        except ImageLoadError as exc:
            dropped.append((str(src), exc.reason))
            continue
        (w0, h0), (h, w) = img.original_size, img.pixels.shape[:2]
        gray = cv2.cvtColor(img.pixels, cv2.COLOR_RGB2GRAY)
        cols, rows = max(1, round(w / cell_side)), max(1, round(h / cell_side))
        xs = [round(k * w0 / cols) for k in range(cols + 1)]
        ys = [round(k * h0 / rows) for k in range(rows + 1)]
        before = len(cells)
        for r in range(rows):
            for c in range(cols):
                box = (xs[c], ys[r], xs[c + 1], ys[r + 1])
                if float(gray[_scaled(box, w / w0, h / h0)].std()) >= min_std:
                    cells.append(Cell(str(src), box))
        if len(cells) == before:
            dropped.append((str(src), "every cell is nearly flat"))
    return cells, dropped


def _scaled(box: tuple[int, int, int, int], sx: float, sy: float) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    return slice(round(y0 * sy), max(round(y1 * sy), round(y0 * sy) + 1)), \
        slice(round(x0 * sx), max(round(x1 * sx), round(x0 * sx) + 1))


def file_name(index: int, kind: str) -> str:
    return f"images/{index // 1000:03d}/d{index:06d}.{KINDS[kind][2]}"


def plan(cells: Sequence[Cell], n: int, seed: int = 0) -> list[Item]:
    """The first ``n`` distractors: kind, canvas size and cells of each (no pixels drawn)."""
    names = list(KINDS)
    weights = np.array([KINDS[k][0] for k in names])
    cum = np.cumsum(weights / weights.sum())
    procedural = [k for k in names if KINDS[k][1] == 0]
    pcum = np.cumsum([KINDS[k][0] for k in procedural]) / sum(KINDS[k][0] for k in procedural)
    order = np.random.default_rng([seed, 1]).permutation(len(cells)) if len(cells) else np.zeros(0, np.int64)
    used = np.zeros(len(cells), bool)
    start = 0  # every cell before order[start] is used
    items = []
    for i in range(n):
        rng = np.random.default_rng([seed, 0, i])
        kind = names[int(np.searchsorted(cum, rng.random(), side="right").clip(0, len(names) - 1))]
        take: list[int] = []
        if KINDS[kind][1]:
            want = KINDS[kind][1] if kind != "collage" else int(rng.integers(2, 4))
            seen: set[str] = set()
            for pos in range(start, len(order)):
                c = int(order[pos])
                if not used[c] and cells[c].source not in seen:
                    take.append(c)
                    seen.add(cells[c].source)
                    if len(take) == want:
                        break
            if len(take) < want:  # cells ran out: a procedural image instead
                take = []
                kind = procedural[int(np.searchsorted(pcum, rng.random(), side="right").clip(0, len(procedural) - 1))]
            used[take] = True
            while start < len(order) and used[order[start]]:
                start += 1
        long_side = int(rng.integers(400, 801)) if not take or kind != "crop" else int(rng.integers(400, 641))
        aspect = ASPECTS[int(rng.integers(0, len(ASPECTS)))]
        w, h = long_side, max(1, round(long_side / aspect))
        if rng.random() < 0.3:
            w, h = h, w
        items.append(Item(i, kind, (w, h), tuple(take), file_name(i, kind)))
    return items


# ------------------------------------------------------------------------------------------ drawing

def _cell_pixels(cell: Cell) -> np.ndarray:
    img = load_image(Path(cell.source), max_side=DECODE_SIDE)
    h, w = img.pixels.shape[:2]
    w0, h0 = img.original_size
    return np.ascontiguousarray(img.pixels[_scaled(cell.box, w / w0, h / h0)])


def _fit(a: np.ndarray, w: int, h: int) -> np.ndarray:
    """``a`` centre-cropped to the aspect of ``w x h`` and resized to it."""
    ah, aw = a.shape[:2]
    if aw * h > ah * w:
        cw = max(1, round(ah * w / h))
        a = a[:, (aw - cw) // 2:(aw - cw) // 2 + cw]
    else:
        ch = max(1, round(aw * h / w))
        a = a[(ah - ch) // 2:(ah - ch) // 2 + ch]
    interp = cv2.INTER_AREA if w * h < a.shape[0] * a.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(a), (w, h), interpolation=interp)


def draw(item: Item, cells: Sequence[Cell], seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """The pixels ``[H x W x 3]`` of ``item`` and the colour changes applied to its cells."""
    rng = np.random.default_rng([seed, 2, item.index])
    w, h = item.size
    if item.kind in PROCEDURAL:
        return PROCEDURAL[item.kind](rng, w, h), []
    parts, notes = [], []
    for c in item.cells:
        px, note = recolour(rng, _cell_pixels(cells[c]))
        if rng.random() < 0.5:
            px, note = np.ascontiguousarray(px[:, ::-1]), note + "+mirror"
        parts.append(px)
        notes.append(note)
    if item.kind == "crop":
        border = int(rng.integers(0, 3)) * int(rng.integers(4, 16))
        canvas = np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
        canvas[border:h - border, border:w - border] = _fit(parts[0], w - 2 * border, h - 2 * border)
        return canvas, notes
    if item.kind == "mosaic":
        gap = int(rng.integers(0, 13))
        canvas = np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
        cw, ch = (w - 3 * gap) // 2, (h - 3 * gap) // 2
        for k, px in enumerate(parts):
            x, y = gap + (k % 2) * (cw + gap), gap + (k // 2) * (ch + gap)
            canvas[y:y + ch, x:x + cw] = _fit(px, cw, ch)
        return canvas, notes
    bg = (draw_gradient, draw_texture, lambda r, w, h: background(r, w, h))[int(rng.integers(0, 3))](rng, w, h)
    canvas = Image.fromarray(bg)
    for px in parts:  # collage
        s = rng.uniform(0.35, 0.6) * min(w, h) / max(px.shape[:2])
        tile = Image.fromarray(px).resize((max(1, round(px.shape[1] * s)), max(1, round(px.shape[0] * s))),
                                          Image.Resampling.BICUBIC)
        tile = tile.convert("RGBA").rotate(float(rng.uniform(-30, 30)), Image.Resampling.BICUBIC, expand=True)
        x, y = int(rng.integers(0, max(1, w - tile.width // 2))), int(rng.integers(0, max(1, h - tile.height // 2)))
        canvas.paste(tile, (x - tile.width // 4, y - tile.height // 4), tile)
    return np.asarray(canvas.convert("RGB")), notes


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(pixels).save(buf, "PNG", compress_level=3)
    else:
        Image.fromarray(pixels).save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


_WORKER: dict = {}


def _init_worker(cells: list[Cell], seed: int, out: str) -> None:
    cv2.setNumThreads(1)
    _WORKER.update(cells=cells, seed=seed, out=Path(out))


def _render(item: Item) -> tuple[int, list[str], float, str]:
    """Draw and write one item (in a worker); returns (index, colour notes, seconds, error)."""
    t = time.perf_counter()
    try:
        pixels, notes = draw(item, _WORKER["cells"], _WORKER["seed"])
    except ImageLoadError as exc:
        return item.index, [], time.perf_counter() - t, f"{exc.path}: {exc.reason}"
    path = _WORKER["out"] / item.file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)  # renamed into place: an interrupted run leaves no half file (no fsync: redrawable)
    tmp.write_bytes(encode(pixels, KINDS[item.kind][2]))
    os.replace(tmp, path)
    return item.index, notes, time.perf_counter() - t, ""


@dataclass(frozen=True)
class DistractorSummary:
    out_dir: str
    n: int
    written: int  # images drawn by this call (the others existed: a resumed run)
    seconds: float
    composition: dict[str, int]
    failed: list[tuple[int, str]]


def make_distractors(sources: Sequence[str | Path], out_dir: str | Path, n: int, seed: int = 0,
                     workers: int = 2) -> Job[DistractorSummary]:
    """Generator job writing the first ``n`` distractors into ``out_dir``; images already there are kept
    (resumable; a folder made with another seed or other sources is refused)."""
    t0 = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells_path = out / "cells.json"
    srcs = sorted(str(s) for s in sources)
    if cells_path.exists():
        saved = json.loads(cells_path.read_text(encoding="utf-8"))
        if saved["sources"] != srcs or saved["seed"] != seed:
            raise ValueError(f"{out} was made from other sources or another seed; use an empty folder")
        cells = [Cell(c["source"], tuple(c["box"])) for c in saved["cells"]]
    else:
        yield Progress("cells", 0, len(srcs), "")
        cells, dropped = cut_cells(srcs)
        write_json_atomic(cells_path, {"seed": seed, "sources": srcs, "cell_side": CELL_SIDE,
                                       "min_cell_std": MIN_CELL_STD, "cells": [asdict(c) for c in cells],
                                       "dropped_sources": dropped})
    items = plan(cells, n, seed)
    todo = [it for it in items if not (out / it.file).exists()]
    notes: dict[int, list[str]] = {}
    failed: list[tuple[int, str]] = []
    yield Progress("images", n - len(todo), n, "")
    ctx = multiprocessing.get_context("spawn")  # fork after OpenCV/FAISS threads started can deadlock
    with ctx.Pool(max(1, workers), _init_worker, (cells, seed, str(out))) as pool:
        for k, (i, note, _, err) in enumerate(pool.imap_unordered(_render, todo, chunksize=16), 1):
            notes[i] = note
            if err:
                failed.append((i, err))
            if k % 200 == 0 or k == len(todo):
                yield Progress("images", n - len(todo) + k, n, "")
    notes = {**_saved_notes(out), **notes}
    for it in items:  # source-derived images an interrupted earlier run drew: their colour notes again
        if it.cells and it.index not in notes and (out / it.file).exists():
            notes[it.index] = draw(it, cells, seed)[1]
    write_provenance(out, items, cells, seed, notes)
    return DistractorSummary(str(out), n, len(todo), time.monotonic() - t0, composition(items), failed)


def _saved_notes(out: Path) -> dict[int, list[str]]:
    """The colour notes an earlier run's provenance recorded (index -> notes)."""
    path = out / "provenance.json"
    items = json.loads(path.read_text(encoding="utf-8"))["items"] if path.exists() else []
    return {d["index"]: d["recolour"] for d in items if d.get("recolour")}


def write_provenance(out: Path, items: Sequence[Item], cells: Sequence[Cell], seed: int,
                     notes: dict[int, list[str]] | None = None) -> None:
    """``out/provenance.json``: per image its kind, file, size, seed key and the source boxes it took
    with the colour change of each (``notes``: index -> one note per cell)."""
    notes = notes or {}
    rows = []
    for it in items:
        row = {"index": it.index, "file": it.file, "kind": it.kind, "size": list(it.size),
               "seed": [seed, 2, it.index], "cells": [asdict(cells[c]) for c in it.cells]}
        if it.cells:
            row["recolour"] = notes.get(it.index)
        rows.append(row)
    write_atomic(out / "provenance.json", json.dumps({"seed": seed, "n": len(items), "kinds": {k: list(v) for k, v in KINDS.items()},
                                   "items": rows}, separators=(",", ":")).encode("utf-8"))


def composition(items: Sequence[Item]) -> dict[str, int]:
    """Images of each kind among ``items``."""
    c = Counter(it.kind for it in items)
    return {k: c.get(k, 0) for k in KINDS}
