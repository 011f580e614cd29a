"""Local features: RootSIFT keypoints and descriptors (OpenCV SIFT), wrapped at the edge.

No ``cv2.KeyPoint`` leaves this module: keypoints are ``[N x 4]`` float32 arrays ``(x, y, size, angle)``
in pixels of the original image, descriptors ``[N x 128]`` uint8 (OpenCV's SIFT values, which are integers
in 0..255). :func:`rootsift` turns them into L2-normalised float32 RootSIFT vectors for matching.

Mirrored and colour-inverted queries need no second extraction: a horizontal flip maps a SIFT
descriptor to a fixed permutation of itself (spatial rows reversed in the keypoint frame, orientation bins
negated), and so does inversion (gradients turn by 180°, so does the keypoint frame: spatial bins rotate
by 180°, orientation bins stay). Both are checked against real re-extraction in the tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from .imageio import DecodedImage
from .resize import to_longest


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Local-feature settings; stored in the index manifest, and a query must use the index's values."""

    max_side: int = 640  # images are resized so the longer side is at most this before SIFT
    max_keypoints: int = 500  # keep the strongest keypoints (by detector response) up to this number
    contrast_threshold: float = 0.03  # SIFT's DoG contrast threshold (OpenCV default 0.04); lower finds more on flat graphics
    edge_threshold: float = 10.0  # SIFT's edge-response threshold (OpenCV default)
    # Small and flat images (icons, clip art, smooth wallpapers) get few keypoints: a median of 24 for
    # 128-px icons and 46 for wallpapers on the dev data (bench/measure_keypoints.py), so local recall
    # cannot find what it never described. Two levers, both no-ops for ordinary photos:
    min_side: int = 512  # images whose longer side is below this are upscaled (bicubic) to it first
    few_keypoints: int = 150  # fewer keypoints than this: detect again at ``retry_contrast`` ...
    retry_contrast: float = 0.01  # ... and keep whichever pass found more (0 disables the retry)

    # indexes written before these fields existed were built without them: they must keep querying so
    LEGACY: ClassVar[dict] = {"min_side": 0, "few_keypoints": 0, "retry_contrast": 0.0}

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @staticmethod
    def from_dict(d: dict) -> FeatureConfig:
        """The config an index manifest records (fields it lacks take their pre-existing behaviour)."""
        names = [f.name for f in dataclasses.fields(FeatureConfig)]
        values = {k: d.get(k, FeatureConfig.LEGACY.get(k)) for k in names if k in d or k in FeatureConfig.LEGACY}
        for k, v in values.items():  # a damaged manifest must fail here, not deep inside OpenCV at query time
            want = type(getattr(_DEFAULT_FEATURES, k))
            ok = (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1 << 20 if want is int
                  else isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1e6)
            if not ok:
                raise ValueError(f"feature setting {k}={v!r} is not a valid {want.__name__}")
        if values.get("max_side", 640) < 16:
            raise ValueError(f"feature setting max_side={values['max_side']!r} is too small")
        return FeatureConfig(**values)


_DEFAULT_FEATURES = FeatureConfig()


@dataclass(frozen=True, slots=True)
class LocalFeatures:
    """Keypoints ``[N x 4]`` float32 ``(x, y, size, angle_deg)`` in original pixels; descriptors ``[N x 128]`` uint8."""

    keypoints: np.ndarray
    descriptors: np.ndarray
    image_size: tuple[int, int]  # (width, height) of the original image

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @staticmethod
    def empty(image_size: tuple[int, int] = (0, 0)) -> LocalFeatures:
        return LocalFeatures(np.zeros((0, 4), np.float32), np.zeros((0, 128), np.uint8), image_size)



_SIFT_CACHE: dict[tuple, cv2.SIFT] = {}


def _sift(cfg: FeatureConfig) -> cv2.SIFT:
    key = (cfg.max_keypoints, cfg.contrast_threshold, cfg.edge_threshold)
    sift = _SIFT_CACHE.get(key)
    if sift is None:
        sift = cv2.SIFT_create(nfeatures=cfg.max_keypoints, contrastThreshold=cfg.contrast_threshold,
                               edgeThreshold=cfg.edge_threshold)
        _SIFT_CACHE[key] = sift
    return sift


def to_gray(pixels: np.ndarray) -> np.ndarray:
    """RGB ``uint8`` to grayscale ``uint8`` (already-gray input passes through)."""
    return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


def extract(image: DecodedImage, cfg: FeatureConfig = FeatureConfig(),
            max_keypoints: int | None = None) -> LocalFeatures:
    """SIFT on ``image`` (resized so its longer side ≤ ``cfg.max_side``), keypoints in original pixels.

    ``max_keypoints`` overrides ``cfg.max_keypoints`` (queries may keep more than references).
    """
    pixels = image.pixels
    h, w = pixels.shape[:2]
    scale = 1.0
    if max(h, w) > cfg.max_side:
        pixels, scale = to_longest(pixels, cfg.max_side, cv2.INTER_AREA)
    elif 0 < max(h, w) < cfg.min_side and min(h, w) >= 8:
        pixels, scale = to_longest(pixels, cfg.min_side, cv2.INTER_CUBIC)
    gray = to_gray(pixels)
    if min(gray.shape) < 16:
        return LocalFeatures.empty(image.original_size)
    if max_keypoints is not None and max_keypoints != cfg.max_keypoints:
        cfg = dataclasses.replace(cfg, max_keypoints=max_keypoints)
    kps, desc = _sift(cfg).detectAndCompute(gray, None)
    if cfg.retry_contrast > 0 and len(kps) < cfg.few_keypoints:
        retry = dataclasses.replace(cfg, contrast_threshold=cfg.retry_contrast)
        kps2, desc2 = _sift(retry).detectAndCompute(gray, None)
        if len(kps2) > len(kps):
            kps, desc = kps2, desc2
    if desc is None or len(kps) == 0:
        return LocalFeatures.empty(image.original_size)
    if len(kps) > cfg.max_keypoints:  # OpenCV keeps ties at the cut; honour the cap exactly
        order = np.argsort([-k.response for k in kps], kind="stable")[: cfg.max_keypoints]
        kps = [kps[i] for i in order]
        desc = desc[order]
    to_orig = image.scale_to_original / scale
    kp = np.array([(k.pt[0], k.pt[1], k.size, k.angle) for k in kps], dtype=np.float32)
    kp[:, :3] *= to_orig
    return LocalFeatures(kp, np.clip(np.rint(desc), 0, 255).astype(np.uint8), image.original_size)


def rootsift(descriptors: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelović & Zisserman 2012): L1-normalise, square-root; the result has unit L2 norm."""
    d = descriptors.astype(np.float32)
    d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(d)


def _mirror_permutation() -> np.ndarray:
    idx = np.arange(128).reshape(4, 4, 8)  # OpenCV layout: [row][col][orientation bin]
    return idx[::-1][:, :, (-np.arange(8)) % 8].reshape(-1)


MIRROR_PERMUTATION = _mirror_permutation()
INVERT_PERMUTATION = np.arange(128).reshape(4, 4, 8)[::-1, ::-1].reshape(-1)

# query variants searched and verified: name -> descriptor permutation; "mirror" in a name means the
# geometric model between query and reference reverses orientation
VARIANTS: dict[str, np.ndarray] = {
    "direct": np.arange(128),
    "mirror": MIRROR_PERMUTATION,
    "invert": INVERT_PERMUTATION,
    "invert_mirror": MIRROR_PERMUTATION[INVERT_PERMUTATION],
}


def is_mirror_variant(name: str) -> bool:
    return "mirror" in name


def mirrored_descriptors(descriptors: np.ndarray) -> np.ndarray:
    """Descriptors the same keypoints would have in the horizontally flipped image.

    Matching these against a reference finds copies that were mirrored; the keypoint locations stay those
    of the unflipped query, so the homography found is simply one with a reflection.
    """
    return descriptors[:, MIRROR_PERMUTATION]
