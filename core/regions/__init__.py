"""Overlay detection: propose query regions that may hold a copied picture.

The hardest edits put the copy inside something else (pasted onto another photo, framed in a social-media
screenshot, under a meme caption, surrounded by padding). A descriptor of the whole query then mostly
describes the background, so the query pipeline also searches the regions proposed here.

Methods need no training (the ISC2021 winners' ideas) and are chosen by name from :data:`REGISTRY`:

- ``"border"`` / ``"caption"`` (:mod:`.background`): near-constant colour connected to the image
  border (padding, screenshot frames, caption bands) is background; a large, nearly rectangular
  foreground blob inside it is the picture. ``"caption"`` when the background also carries text or marks.
- ``"edges"`` (:mod:`.edges`): long straight horizontal and vertical step edges that stand out
  from their neighbourhood and close an axis-aligned rectangle (a paste onto another photo).
- ``"quad"`` (:mod:`.quads`): a convex quadrilateral with a colour step all around it (a picture seen at
  an angle); it carries its corners, and the pipeline searches it rectified.
- ``"fixed"``: centre crops at a few scales with a low score, as a fallback.

All work runs on a copy whose longer side is :attr:`ProposalConfig.work_side`; boxes map back to input
pixels. Scores are in [0, 1] and comparable across images: a plain photo should not get a region scoring
0.5 or more. The whole image is never returned (the pipeline searches it anyway, as kind ``"full"``).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import UnknownBackendError
from ..resize import fit_longest
from ..results import Region
from .background import propose_background
from .common import Box, Method, ProposalConfig, WorkImage, box_iou, non_max_suppression
from .edges import propose_edges
from .quads import frame_size, propose_quads, rectify, region_pixels, to_query

__all__ = ["REGISTRY", "ProposalConfig", "box_iou", "frame_size", "non_max_suppression", "propose_regions",
           "rectify", "region_pixels", "to_query"]


def _fixed(work: WorkImage, config: ProposalConfig) -> list[Region]:
    h, w = work.pixels.shape[:2]
    out = []
    for s in config.fixed_scales:
        dx, dy = w * (1 - s) / 2, h * (1 - s) / 2
        out.append(Region((dx, dy, w - dx, h - dy), config.fixed_score, "fixed"))
    return out


DEFAULT_CONFIG = ProposalConfig()  # the tuned values

# method name -> proposer (regions in working-copy pixels)
REGISTRY: dict[str, Method] = {"border": propose_background, "edges": propose_edges, "quad": propose_quads,
                               "fixed": _fixed}


def _valid(box: Box, w: int, h: int, config: ProposalConfig) -> bool:
    bw, bh = box[2] - box[0], box[3] - box[1]
    if bw < config.min_box_side * w or bh < config.min_box_side * h:
        return False
    frac = bw * bh / float(w * h)
    return config.min_area <= frac <= config.max_area


def _downscale(pixels: np.ndarray, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A contiguous copy with longer side <= ``side``, and the (width, height) of input it covers.

    An integer-factor box filter does most of the reduction (fast in OpenCV); the input is cropped by
    fewer than that factor pixels at the right and bottom so the factor divides its size.
    """
    h0, w0 = pixels.shape[:2]
    k = max(h0, w0) // side
    wc, hc = w0, h0
    if k >= 2:
        wc, hc = (w0 // k) * k, (h0 // k) * k
        pixels = cv2.resize(pixels[:hc, :wc], (wc // k, hc // k), interpolation=cv2.INTER_AREA)
    pixels, _ = fit_longest(pixels, side, cv2.INTER_LINEAR)
    return np.ascontiguousarray(pixels, dtype=np.uint8), (wc, hc)


def propose_regions(pixels: np.ndarray, config: ProposalConfig = DEFAULT_CONFIG) -> list[Region]:
    """Regions of ``pixels`` (``[H x W x 3]`` uint8 RGB) that may hold a pasted or framed picture.

    Returns at most ``config.max_regions`` regions, best first, boxes ``(x0, y0, x1, y1)`` in input pixels,
    never the whole image. An image too small to hold an overlay gets ``[]``.
    """
    for name in config.methods:
        if name not in REGISTRY:
            raise UnknownBackendError("region proposal method", name, list(REGISTRY))
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an [H x W x 3] RGB array, got shape {pixels.shape}")
    h0, w0 = pixels.shape[:2]
    if min(h0, w0) < config.min_side or config.max_regions <= 0:
        return []
    small, (wc, hc) = _downscale(pixels, config.work_side)
    h, w = small.shape[:2]
    sx, sy = wc / w, hc / h
    scale = w / wc
    work = WorkImage(small, scale)
    found: list[Region] = []
    for name in config.methods:
        for r in REGISTRY[name](work, config):
            if r.kind == "fixed" or _valid(r.box, w, h, config):
                found.append(r)
    out = []
    for r in non_max_suppression(found, config.nms_iou)[:config.max_regions]:
        x0, y0, x1, y1 = r.box
        # a side on the working copy's border stays on the input's border (the downscale may crop a few pixels)
        box = (max(0.0, x0 * sx), max(0.0, y0 * sy), float(w0) if x1 >= w else min(float(w0), x1 * sx),
               float(h0) if y1 >= h else min(float(h0), y1 * sy))
        quad = None if r.quad is None else tuple(float(v * (sx if i % 2 == 0 else sy)) for i, v in enumerate(r.quad))
        out.append(Region(box, float(np.clip(r.score, 0.0, 1.0)), r.kind, quad))
    return out
