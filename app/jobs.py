"""The app's background jobs: frozen requests in, typed outcomes out (run by ``workers.JobWorker``).

Everything slow happens here, in a worker thread: decoding, hashing, searching, fetching thumbnails,
loading the reference, warping it onto the query. Results carry ``QImage`` objects (safe to build off
the GUI thread) so widgets only have to draw them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from PySide6.QtGui import QImage

from copylens.core.errors import ImageLoadError
from copylens.core.imageio import from_array, load_image_bytes, read_image_file
from copylens.core.progress import Job, Progress
from copylens.core.query_input import QueryInput, QuerySource
from copylens.core.results import Match, QueryResult, Region

from .images import DISPLAY_SIDE, bounded, rgb_to_qimage, thumbnail


@dataclass(frozen=True)
class QueryRequest:
    """One query as the user gave it: exactly one of ``path`` / ``data`` (encoded bytes) / ``pixels``."""

    query_id: str
    label: str  # what the queue shows: file name or "<clipboard 1>"
    path: str | None = None
    data: bytes | None = None
    pixels: np.ndarray | None = field(default=None, repr=False)  # [H x W x 3] uint8 RGB

    @property
    def source(self) -> QuerySource:
        return QuerySource(self.label, self.path, self.data, self.pixels)


@dataclass(frozen=True)
class QueryOutcome:
    """A finished query. Holds no full-size pixels: a day's queue of thousands of queries must not keep
    megabytes each; the inspector decodes the query again (see :func:`display_image`)."""

    request: QueryRequest
    result: QueryResult
    reference_thumbs: dict[str, QImage]
    references: dict[str, dict] = field(default_factory=dict)  # id -> {"path": ..., metadata...}

    @property
    def sha256(self) -> str:
        return self.result.query_sha256


@dataclass(frozen=True)
class InspectData:
    """Everything the inspector draws for one (query, reference) pair, in display pixels."""

    outcome: QueryOutcome
    match: Match
    query: QImage  # the query, longer side <= DISPLAY_SIDE
    query_scale: float  # original query pixels per display pixel
    reference: QImage
    reference_scale: float  # original reference pixels per display pixel
    warped: QImage | None  # the reference warped onto the query display (RGBA, alpha = coverage)

    @property
    def regions(self) -> list[Region]:
        return self.outcome.result.regions


class _DisplayCache:
    """The last few decoded display images (stepping through one query's candidates decodes it once);
    shared by worker threads."""

    def __init__(self, size: int = 6) -> None:
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key, make):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


_DISPLAY = _DisplayCache()


def display_image(req: QueryRequest, sha256: str = "") -> tuple[np.ndarray, float]:
    """The query's pixels for display (longer side <= DISPLAY_SIDE) and original pixels per display pixel.

    Decoded from the same source the engine searched (the file, the pasted bytes or the array); the
    engine's own copy is smaller (``query_max_side``), which is right for SIFT but too coarse to inspect.
    """
    def make():
        src = req.source
        if src.pixels is not None:
            img = from_array(src.pixels, src.label, max_side=DISPLAY_SIDE)
        else:
            data = read_image_file(src.path) if src.path is not None else src.data
            img = load_image_bytes(data, src.path or src.label, max_side=DISPLAY_SIDE)
        return img.pixels, img.scale_to_original

    return _DISPLAY.get((req.query_id, sha256), make)


def query_job(engine, req: QueryRequest, top_k: int,
              on_decoded: Callable[[QImage], None] | None = None) -> Job[QueryOutcome]:
    """Search ``engine`` through its one entry point, and gather the thumbnails the results panel shows.
    ``on_decoded`` receives the query's thumbnail as soon as it is read (before the search)."""
    def read(q: QueryInput) -> None:
        if on_decoded is not None:
            on_decoded(thumbnail(q.image.pixels))

    result = yield from engine.search(req.source, query_id=req.query_id, top_k=top_k, on_read=read)
    thumbs, refs = {}, {}
    for i, m in enumerate(result.matches):
        thumbs[m.reference_id] = thumbnail(np.asarray(engine.thumbnail(m.reference_id)))
        refs[m.reference_id] = reference_details(engine, m.reference_id)
        yield Progress("thumbnails", i + 1, len(result.matches))
    return QueryOutcome(req, result, thumbs, refs)


def reference_details(engine, reference_id: str) -> dict:
    """What the window shows about a reference: its source path, size, and the index's metadata."""
    info = engine.reference(reference_id)
    near = engine.near_identical(reference_id) if hasattr(engine, "near_identical") else []
    return {"path": info.path, "size": f"{info.width}x{info.height}", **engine.metadata(reference_id),
            **({"near_identical": ", ".join(near)} if near else {})}


def restored_thumbnails_job(engine, jobs: list[tuple[int, QueryOutcome]]) -> Job[dict]:
    """Thumbnails for results restored from an earlier session: row -> (outcome, reference thumbs,
    reference details, query thumb or None when its file is gone)."""
    out = {}
    for i, (row, outcome) in enumerate(jobs):
        thumbs = {m.reference_id: thumbnail(np.asarray(engine.thumbnail(m.reference_id)))
                  for m in outcome.result.matches}
        refs = {m.reference_id: reference_details(engine, m.reference_id) for m in outcome.result.matches}
        try:
            query_thumb = thumbnail(display_image(outcome.request, outcome.sha256)[0])
        except ImageLoadError:
            query_thumb = None
        out[row] = (outcome, thumbs, refs, query_thumb)
        yield Progress("thumbnails", i + 1, len(jobs))
    return out


def display_homography(h: np.ndarray, query_scale: float, reference_scale: float) -> np.ndarray:
    """``h`` (reference original -> query original pixels) re-expressed between the two display images."""
    to_ref = np.diag([reference_scale, reference_scale, 1.0])
    from_query = np.diag([1.0 / query_scale, 1.0 / query_scale, 1.0])
    return from_query @ np.asarray(h, np.float64) @ to_ref


def warp_onto_query(ref_pixels: np.ndarray, h_display: np.ndarray, query_size: tuple[int, int]) -> np.ndarray:
    """The reference warped into the query display frame, ``[H x W x 4]`` RGBA (alpha 0 outside)."""
    w, h = query_size
    rgba = np.dstack([ref_pixels, np.full(ref_pixels.shape[:2], 255, np.uint8)])
    return cv2.warpPerspective(rgba, h_display, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))


def inspect_job(engine, outcome: QueryOutcome, match: Match) -> Job[InspectData]:
    """Decode the query for display, load the reference (original file or stored thumbnail) and
    precompute the blend/flicker warp."""
    yield Progress("reference", 0, 3, match.reference_id)
    qpixels, qscale = display_image(outcome.request, outcome.sha256)
    query = rgb_to_qimage(qpixels)
    yield Progress("reference", 1, 3, match.reference_id)
    ref = engine.reference_image(match.reference_id)
    pixels, shrink = bounded(ref.pixels, DISPLAY_SIDE)
    ref_scale = ref.scale_to_original * shrink
    yield Progress("reference", 2, 3, match.reference_id)
    warped = None
    hom = match.evidence.homography
    if hom is not None:
        hd = display_homography(hom, qscale, ref_scale)
        size = (query.width(), query.height())
        arr = np.ascontiguousarray(warp_onto_query(pixels, hd, size))
        img = QImage(arr.data, size[0], size[1], 4 * size[0], QImage.Format.Format_RGBA8888)
        warped = img.copy()
    yield Progress("reference", 3, 3, match.reference_id)
    return InspectData(outcome, match, query, qscale, rgb_to_qimage(pixels), ref_scale, warped)


def open_engine(path: str, device: str = "auto"):
    """``Engine.open(path)`` on ``device`` ("auto": CUDA when present, else the CPU)."""
    from copylens.core.engine import Engine

    return Engine.open(path, device=None if device == "auto" else device)
