"""Training images and the two edited views of each one.

Images are decoded once, shrunk to :attr:`DataConfig.load_side`, and kept in memory as uint8 arrays. A
batch for step ``s`` is drawn from ``numpy.random.default_rng([seed, s])`` alone, so a resumed run sees
exactly the batches it would have seen without the interruption, and no generator state is saved.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..edits import apply_edit
from ..errors import CopyLensError, ImageLoadError
from ..imageio import load_image, scan_images
from ..progress import Progress

# Training's edit mix: the dev benchmark draws every edit uniformly; training leans on the geometric
# edits (crops, pastes, screenshots, perspective) that a global descriptor finds hardest, and on overlays.
TRAIN_FAMILIES: dict[str, float] = {
    "crop": 3.0, "paste": 2.5, "screenshot": 1.5, "meme": 1.5, "perspective": 1.5, "rotate": 1.5,
    "pad": 1.0, "aspect": 1.0, "text": 1.0, "emoji": 1.0, "mirror_jpeg": 1.0, "combo": 1.5, "color": 1.0,
    "grayscale": 0.5, "invert": 0.5, "blur": 0.5, "noise": 0.5, "pixelate": 0.5,
}
# A second, lighter edit on top of the first (with probability DataConfig.second_edit): SSCD's strong
# augmentation chains; the benchmark never stacks edits except in "combo".
SECOND_FAMILIES = ("crop", "text", "emoji", "color", "blur", "noise", "mirror_jpeg", "aspect", "pad")


class TrainingDataError(CopyLensError):
    """No usable training images, or an unreadable exclusion list."""


@dataclass(frozen=True)
class DataConfig:
    load_side: int = 256        # longer side images are kept at in memory
    input_size: int = 112       # square side fed to the network (the descriptor's input_size)
    light_identity: float = 0.5  # probability that the first view is the plain image (as references are)
    second_edit: float = 0.3    # probability of a second edit on the strong view
    sampling: str = "sqrt"      # per top-level folder: "sqrt" (weight ~ sqrt(count)) or "uniform" (per image)
    val_images: int = 128       # held out from training, used for validation
    # share of a batch's images that are the nearest look-alike of another image in it (see look_alikes):
    # near-identical siblings (an icon with another label, a clip-art stamp in another colour) as hard
    # negatives, which a random batch almost never holds
    hard_negatives: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.hard_negatives <= 1.0:
            raise ValueError(f"hard_negatives is a share of the batch, from 0 to 1 (got {self.hard_negatives})")


@dataclass(frozen=True)
class TrainingImage:
    key: str        # path relative to its data folder, without suffix (the benchmark's reference id)
    group: str      # top-level folder (the content source) the image belongs to
    pixels: np.ndarray = field(repr=False)


def read_excluded_ids(ground_truth: str | Path) -> set[str]:
    """Reference ids named in a benchmark's ``ground_truth.csv`` (the references that queries copy)."""
    try:
        with open(ground_truth, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"{ground_truth}: cannot read the exclusion list ({exc})") from exc
    if rows and "reference_id" not in rows[0]:
        raise TrainingDataError(f"{ground_truth}: no reference_id column (is it a ground_truth.csv?)")
    return {r["reference_id"] for r in rows if r.get("reference_id")}


def unseen_keys(bench: str | Path, data_dirs: Sequence[str | Path]) -> set[str]:
    """Keys of the images below ``data_dirs`` that belong to a benchmark's unseen content kinds.

    ``bench``: a ``copylens bench make`` folder (or its ``benchmark.json``). A data folder that is an unseen
    source itself is refused; inside a benchmark's ``references`` folder, the unseen sources' subfolders
    (named as in ``benchmark.json``) are left out, so nothing of the unseen kind is trained on."""
    path = Path(bench)
    path = path / "benchmark.json" if path.is_dir() else path
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        unseen = set(meta.get("unseen_content", []))
        sources = [s for s in meta.get("sources", []) if s.get("content") in unseen]
    except (OSError, ValueError, AttributeError) as exc:
        raise TrainingDataError(f"{path}: cannot read the benchmark's description ({exc})") from exc
    keys: set[str] = set()
    for d in map(Path, data_dirs):
        for s in sources:
            if Path(s.get("path", "\0")).resolve() == d.resolve() or d.name == s.get("name"):
                raise TrainingDataError(f"{d} is the benchmark's unseen source {s.get('name')!r} "
                                        f"({s.get('content')}): it must stay out of training")
            sub = d / str(s.get("name", ""))
            if s.get("name") and sub.is_dir():
                keys |= {p.relative_to(d).with_suffix("").as_posix() for p in scan_images(sub)}
    return keys


def list_training_files(data_dirs: Sequence[str | Path], exclude: set[str] = frozenset()
                        ) -> list[tuple[Path, str, str]]:
    """``(path, key, group)`` for every image below the folders, minus keys in ``exclude``, sorted by key."""
    out = []
    for d in data_dirs:
        root = Path(d)
        if not root.is_dir():
            raise TrainingDataError(f"{root}: not a folder")
        for p in scan_images(root):
            rel = p.relative_to(root)
            key = rel.with_suffix("").as_posix()
            if key in exclude:
                continue
            group = rel.parts[0] if len(rel.parts) > 1 else root.name
            out.append((p, key, group))
    out.sort(key=lambda t: (t[1], str(t[0])))
    if not out:
        raise TrainingDataError("no training images found" + (" after the exclusions" if exclude else ""))
    return out


def files_digest(files: Sequence[tuple[Path, str, str]]) -> str:
    """sha256 over the sorted training keys: identifies the training set in checkpoints and model cards."""
    h = hashlib.sha256()
    for _, key, _ in files:
        h.update(key.encode() + b"\n")
    return h.hexdigest()


def load_images(files: Sequence[tuple[Path, str, str]], load_side: int, workers: int = 2
                ) -> Iterator[Progress | list[TrainingImage]]:
    """Decode the files (threads); yields :class:`Progress`, then the list of images as the last item.
    Unreadable files are skipped (reported in the progress message)."""
    images: list[TrainingImage | None] = [None] * len(files)
    failed = 0

    def one(i: int):
        path, key, group = files[i]
        try:
            return i, TrainingImage(key, group, load_image(path, max_side=load_side).pixels)
        except ImageLoadError:
            return i, None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for n, (i, img) in enumerate(pool.map(one, range(len(files))), 1):
            images[i] = img
            failed += img is None
            if n % 64 == 0 or n == len(files):
                yield Progress("loading training images", n, len(files),
                               f"{failed} unreadable" if failed else "")
    good = [im for im in images if im is not None]
    if not good:
        raise TrainingDataError("none of the training images could be decoded")
    yield good


def split_validation(images: Sequence[TrainingImage], n_val: int) -> tuple[list[TrainingImage], list[TrainingImage]]:
    """Hold out ``n_val`` images chosen by a hash of their key (stable under additions), at most a quarter."""
    n_val = min(n_val, len(images) // 4)
    ranked = sorted(images, key=lambda im: hashlib.sha256(im.key.encode()).digest())
    val = {im.key for im in ranked[:n_val]}
    return [im for im in images if im.key not in val], [im for im in images if im.key in val]


def sampling_weights(images: Sequence[TrainingImage], mode: str) -> np.ndarray:
    """Per-image sampling probabilities: ``uniform``, or ``sqrt`` (each folder's share ~ sqrt(its size),
    so a small folder of graphics is seen more often than its share of files)."""
    if mode == "uniform":
        return np.full(len(images), 1.0 / len(images))
    if mode != "sqrt":
        raise ValueError(f"unknown sampling {mode!r}; valid: sqrt, uniform")
    counts: dict[str, int] = {}
    for im in images:
        counts[im.group] = counts.get(im.group, 0) + 1
    w = np.array([math.sqrt(counts[im.group]) / counts[im.group] for im in images])
    return w / w.sum()


def square(pixels: np.ndarray, size: int) -> np.ndarray:
    """The whole image squashed to ``size x size`` (the descriptor's "square" resize mode)."""
    h, w = pixels.shape[:2]
    interp = cv2.INTER_AREA if size * size < h * w else cv2.INTER_LINEAR
    return cv2.resize(pixels, (size, size), interpolation=interp)


def strong_view(pixels: np.ndarray, rng: np.random.Generator, background: np.ndarray | None,
                cfg: DataConfig) -> np.ndarray:
    names = list(TRAIN_FAMILIES)
    p = np.array([TRAIN_FAMILIES[n] for n in names])
    out = apply_edit(names[int(rng.choice(len(names), p=p / p.sum()))], pixels, rng, background).pixels
    if rng.random() < cfg.second_edit:
        out = apply_edit(SECOND_FAMILIES[int(rng.integers(len(SECOND_FAMILIES)))], out, rng, background).pixels
    return square(out, cfg.input_size)


def light_view(pixels: np.ndarray, rng: np.random.Generator, background: np.ndarray | None,
               cfg: DataConfig) -> np.ndarray:
    if rng.random() < cfg.light_identity:
        return square(pixels, cfg.input_size)
    return strong_view(pixels, rng, background, cfg)


LOOK_ALIKE_SIDE = 16  # thumbnail side of the look-alike signature


def look_alikes(images: Sequence[TrainingImage]) -> np.ndarray:
    """Per image, the index of the most similar other image by a tiny colour thumbnail (``LOOK_ALIKE_SIDE``
    pixels square, centred and L2-normalised; cosine similarity): near-identical siblings find each other,
    and the choice depends only on the images, so a resumed run finds the same ones."""
    if len(images) < 2:
        return np.zeros(len(images), np.int64)
    sig = np.stack([cv2.resize(im.pixels, (LOOK_ALIKE_SIDE, LOOK_ALIKE_SIDE), interpolation=cv2.INTER_AREA)
                    .astype(np.float32).reshape(-1) for im in images])
    sig -= sig.mean(axis=1, keepdims=True)
    sig /= np.maximum(np.linalg.norm(sig, axis=1, keepdims=True), 1e-6)
    out = np.empty(len(images), np.int64)
    for start in range(0, len(images), 1024):
        sim = sig[start:start + 1024] @ sig.T
        sim[np.arange(sim.shape[0]), np.arange(start, start + sim.shape[0])] = -np.inf
        out[start:start + sim.shape[0]] = np.argmax(sim, axis=1)
    return out


def make_batch(images: Sequence[TrainingImage], weights: np.ndarray, pairs: int, seed: int, step: int,
               cfg: DataConfig, alikes: np.ndarray | None = None) -> np.ndarray:
    """``[2 * pairs, S, S, 3]`` uint8: rows ``i`` and ``i + pairs`` are two views of one image.

    With ``cfg.hard_negatives`` and ``alikes`` (:func:`look_alikes`), that share of the images are the
    look-alikes of others drawn at random (fewer when a look-alike is already in the batch)."""
    rng = np.random.default_rng([seed, step])
    n = len(images)
    k_hard = int(round(min(pairs, n) * cfg.hard_negatives / 2)) if alikes is not None else 0
    idx = rng.choice(n, size=min(pairs, n) - k_hard, replace=False, p=weights)
    if k_hard:
        chosen = set(idx.tolist())
        extra = []
        for a in idx[:k_hard]:
            b = int(alikes[a])
            if b not in chosen:
                chosen.add(b)
                extra.append(b)
        idx = np.concatenate([idx, np.array(extra, dtype=idx.dtype)])
    first, second = [], []
    for i in idx:
        bg = images[int(rng.integers(n))].pixels  # paste/screenshot background: another training image
        first.append(light_view(images[i].pixels, rng, bg, cfg))
        second.append(strong_view(images[i].pixels, rng, bg, cfg))
    return np.stack(first + second)


def validation_views(images: Sequence[TrainingImage], cfg: DataConfig, seed: int = 7
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Fixed validation data: the plain images and one strong edit of each (same order)."""
    rng = np.random.default_rng(seed)
    refs = np.stack([square(im.pixels, cfg.input_size) for im in images])
    queries = np.stack([strong_view(im.pixels, rng, images[(k + 1) % len(images)].pixels, cfg)
                        for k, im in enumerate(images)])
    return refs, queries
