"""What every region proposal method shares: the settings, the working image, boxes and their overlap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..results import Region


@dataclass(frozen=True)
class ProposalConfig:
    """Settings of :func:`propose_regions`; the defaults are the tuned values."""

    methods: tuple[str, ...] = ("border", "edges", "quad", "fixed")  # names in regions.REGISTRY, run in this order
    max_regions: int = 5  # most regions returned, best first (fixed fallback crops included)
    work_side: int = 512  # longer side of the downscaled working copy (never upscaled)
    min_side: int = 24  # images whose shorter side is below this (input pixels) get no proposals
    min_area: float = 0.03  # smallest proposal, as a fraction of the image area
    max_area: float = 0.92  # largest proposal: anything bigger is the whole image in all but name
    min_box_side: float = 0.12  # smallest proposal side, as a fraction of the matching image side
    nms_iou: float = 0.6  # a proposal overlapping a better one by more IoU than this is dropped
    # "border" / "caption"
    bg_tolerance: int = 20  # max per-channel difference from a border colour still counted as background
    bg_side_purity: float = 0.85  # an image side whose line is this uniform gives a background colour
    bg_min_fraction: float = 0.02  # less border-connected background than this (of the image): no proposal
    # "edges"
    edge_threshold: int = 24  # centred difference (max over RGB, 0-255) that makes an edge pixel
    edge_lines: int = 18  # candidate rows (and columns) kept, longest straight edge runs first
    edge_window: float = 0.08  # window along a line that seeds it as a candidate, fraction of the longer side
    edge_min_line: float = 0.3  # least line strength (coverage minus neighbours) in that window for a candidate
    edge_per_method: int = 3  # best rectangles kept from the edge method
    # "quad"
    quad_per_method: int = 3  # best quadrilaterals kept
    # "fixed"
    fixed_scales: tuple[float, ...] = (0.6,)  # centre crops, side as a fraction of the image side
    fixed_score: float = 0.05  # their score: a fallback, never mistaken for a detection


@dataclass(frozen=True, slots=True)
class WorkImage:
    """The downscaled working copy handed to each method, ``pixels`` ``[h x w x 3]`` uint8 RGB."""

    pixels: np.ndarray
    scale: float  # working pixels per input pixel (<= 1)


Box = tuple[float, float, float, float]
Method = Callable[[WorkImage, ProposalConfig], list[Region]]  # regions in working-copy pixels


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when either is empty)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def non_max_suppression(regions: list[Region], iou: float) -> list[Region]:
    """Regions sorted by score (stable), dropping any that overlap a kept one by more than ``iou``."""
    kept: list[Region] = []
    for r in sorted(regions, key=lambda r: -r.score):
        if all(box_iou(r.box, k.box) <= iou for k in kept):
            kept.append(r)
    return kept
