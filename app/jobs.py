"""The app's background jobs: frozen requests in, typed outcomes out (run by ``workers.JobWorker``).

Everything slow happens here, in a worker thread: decoding, hashing, searching, fetching thumbnails,
loading the reference, warping it onto the query. Results carry ``QImage`` objects (safe to build off
the GUI thread) so widgets only have to draw them.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtGui import QImage

from copylens.core.imageio import DecodedImage, from_array, load_image, load_image_bytes
from copylens.core.progress import Job, Progress
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


@dataclass(frozen=True)
class QueryOutcome:
    request: QueryRequest
    result: QueryResult
    sha256: str  # of the file bytes (or of the pasted data / pixels)
    display: QImage  # the query, longer side <= DISPLAY_SIDE
    display_scale: float  # original query pixels per display pixel
    reference_thumbs: dict[str, QImage]


@dataclass(frozen=True)
class InspectData:
    """Everything the inspector draws for one (query, reference) pair, in display pixels."""

    outcome: QueryOutcome
    match: Match
    reference: QImage
    reference_scale: float  # original reference pixels per display pixel
    warped: QImage | None  # the reference warped onto the query display (RGBA, alpha = coverage)

    @property
    def query_scale(self) -> float:
        return self.outcome.display_scale

    @property
    def regions(self) -> list[Region]:
        return self.outcome.result.regions


def decode_request(req: QueryRequest) -> tuple[DecodedImage, str]:
    """Decode a request and hash its content; raises ``ImageLoadError`` with the file name and reason."""
    if req.path is not None:
        decoded = load_image(req.path)
        digest = hashlib.sha256(Path(req.path).read_bytes()).hexdigest()
    elif req.data is not None:
        decoded = load_image_bytes(req.data, req.label)
        digest = hashlib.sha256(req.data).hexdigest()
    elif req.pixels is not None:
        decoded = from_array(req.pixels, req.label)
        digest = hashlib.sha256(np.ascontiguousarray(req.pixels).tobytes()).hexdigest()
    else:
        raise ValueError("a query request needs a path, data or pixels")
    return decoded, digest


def query_job(engine, req: QueryRequest, top_k: int,
              on_decoded: Callable[[QImage], None] | None = None) -> Job[QueryOutcome]:
    """Decode ``req``, search ``engine``, and gather the thumbnails the results panel shows."""
    yield Progress("decode", 0, 1, req.label)
    decoded, digest = decode_request(req)
    if on_decoded is not None:
        on_decoded(thumbnail(decoded.pixels))
    disp, shrink = bounded(decoded.pixels, DISPLAY_SIDE)
    display = rgb_to_qimage(disp)
    yield Progress("decode", 1, 1, req.label)
    result = yield from engine.query(decoded, query_id=req.query_id, top_k=top_k)
    thumbs = {}
    for i, m in enumerate(result.matches):
        thumbs[m.reference_id] = thumbnail(np.asarray(engine.thumbnail(m.reference_id)))
        yield Progress("thumbnails", i + 1, len(result.matches))
    return QueryOutcome(req, result, digest, display, decoded.scale_to_original * shrink, thumbs)


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
    """Load the reference (original file or stored thumbnail) and precompute the blend/flicker warp."""
    yield Progress("reference", 0, 2, match.reference_id)
    ref = engine.reference_image(match.reference_id)
    pixels, shrink = bounded(ref.pixels, DISPLAY_SIDE)
    ref_scale = ref.scale_to_original * shrink
    yield Progress("reference", 1, 2, match.reference_id)
    warped = None
    hom = match.evidence.homography
    if hom is not None:
        hd = display_homography(hom, outcome.display_scale, ref_scale)
        size = (outcome.display.width(), outcome.display.height())
        arr = np.ascontiguousarray(warp_onto_query(pixels, hd, size))
        img = QImage(arr.data, size[0], size[1], 4 * size[0], QImage.Format.Format_RGBA8888)
        warped = img.copy()
    yield Progress("reference", 2, 2, match.reference_id)
    return InspectData(outcome, match, rgb_to_qimage(pixels), ref_scale, warped)


def open_engine(path: str, device: str = "auto"):
    """``Engine.open(path)``, passing ``device`` when the engine accepts it."""
    from copylens.core.engine import Engine

    kwargs = {}
    try:
        if "device" in inspect.signature(Engine.open).parameters and device != "auto":
            kwargs["device"] = device
    except (TypeError, ValueError):
        pass
    return Engine.open(path, **kwargs)
