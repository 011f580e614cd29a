"""A global descriptor's files in an index: its FAISS index, and for neural descriptors the PCA whitening
and score-normalisation background fitted at build time (plain ``.npz`` arrays whose sha256 the manifest
records and every reader checks)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import IndexFormatError
from ..fileio import file_sha256
from ..globaldesc.whitening import BackgroundNormalizer, Whitening, load_arrays, save_arrays
from .globalindex import GlobalIndex
from .layout import background_file_name, whitening_file_name


@dataclass(frozen=True)
class GlobalPostConfig:
    """How a build post-processes neural global descriptors. Kept in the database, so a resumed build reuses
    it; what it produced (whitening size, background k / beta / skip) is in each neural manifest entry,
    which is all a query reads."""

    whiten: bool = True
    # fit the whitening only with at least this many references per descriptor dimension (4 x 512 = 2048
    # references for a 512-d descriptor); below, it is skipped and the manifest says why
    whiten_min_per_dim: float = 4.0
    whiten_dim: int | None = None  # whitened length (None: every axis with variance, as SSCD's PCAW<D>)
    normalize: bool = True
    # SSCD (Pizzi et al. 2022, eq. 8) subtracts beta times the mean similarity to the nearest background
    # neighbours; its evaluation default (sscd/disc_eval.py, "1.0[0,2]") is beta 1.0 over neighbours 0..2 of
    # a background disjoint from the references, and the ISC2021 baseline's score normalisation averages
    # n = 10 neighbours. Ours is drawn from the references, so the nearest one is skipped (it may be the
    # query's own match) and the next 10 are averaged: a reference set may hold several near-duplicates of
    # one image, and a wide window keeps them from dominating the offset of a copy of that image.
    background_k: int = 10
    background_beta: float = 1.0
    background_skip: int = 1
    background_size: int = 4096  # references sampled as the background (all when fewer); 0.6 ms/query at 512-d
    seed: int = 0  # of the background sample

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GlobalPostConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# --- the post-processing files of a manifest entry ---------------------------------------------------------
def _checked_file(index_dir: Path, entry: dict, what: str) -> Path:
    """The file of ``entry[what]``, after checking it exists and has the sha256 the manifest recorded."""
    spec = entry[what]
    path = Path(index_dir) / str(spec.get("file", ""))
    label = {"whitening": "PCA whitening", "normalization": "score-normalisation background"}[what]
    rebuild = (f"rebuild the index ('copylens index build REF_DIR --out {index_dir}' refits it) or restore "
               f"the file")
    if not spec.get("file") or not path.is_file():
        raise IndexFormatError(f"{path}: the {label} of global descriptor {entry['name']!r} is missing; {rebuild}")
    actual = file_sha256(path)
    if actual != spec.get("sha256"):
        raise IndexFormatError(
            f"{path}: the {label} of global descriptor {entry['name']!r} was altered: its sha256 is "
            f"{actual[:16]}..., the manifest recorded {str(spec.get('sha256'))[:16]}...; {rebuild}")
    return path


def load_whitening(index_dir: Path, entry: dict) -> Whitening | None:
    """The whitening a manifest entry names (checked against its digest), or None when it has none."""
    if "file" not in (entry.get("whitening") or {}):
        return None
    path = _checked_file(index_dir, entry, "whitening")
    try:
        w = Whitening.load(path)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path}: unreadable whitening ({exc})") from None
    if w.input_dim != int(entry["dim"]):
        raise IndexFormatError(f"{path}: the whitening takes {w.input_dim}-d input but global descriptor "
                               f"{entry['name']!r} gives {entry['dim']}-d vectors; rebuild the index")
    return w


def load_normalizer(index_dir: Path, entry: dict) -> BackgroundNormalizer | None:
    """The score normalisation a manifest entry names (checked against its digest), or None."""
    spec = entry.get("normalization") or {}
    if "file" not in spec:
        return None
    path = _checked_file(index_dir, entry, "normalization")
    try:
        background = load_arrays(path, ("background",))["background"]
        return BackgroundNormalizer(np.asarray(background, np.float32), entry["metric"], int(spec["k"]),
                                    float(spec["beta"]), int(spec["skip"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexFormatError(f"{path}: unreadable score-normalisation background ({exc!r})") from None


def _fit_whitening(index_dir: Path, position: int, raw: np.ndarray, post: GlobalPostConfig
                   ) -> tuple[dict, Whitening | None]:
    n, dim = raw.shape
    path = Path(index_dir) / whitening_file_name(position)
    need = max(2, math.ceil(post.whiten_min_per_dim * dim))
    whitening = None
    if not post.whiten:
        reason = "switched off"
    elif n < need:
        reason = (f"{n} reference vectors; fitting {dim}-d whitening needs at least {need} "
                  f"({post.whiten_min_per_dim:g} per dimension)")
    else:
        try:
            whitening = Whitening.fit(raw, post.whiten_dim)
        except ValueError as exc:
            reason = str(exc)
    if whitening is None:
        path.unlink(missing_ok=True)  # a file from an earlier build must not outlive its entry
        return {"skipped": reason}, None
    whitening.save(path)
    return ({"file": path.name, "sha256": file_sha256(path), "input_dim": whitening.input_dim,
             "dim": whitening.dim, "references": n}, whitening)


def _fit_background(index_dir: Path, position: int, rows: list[int], vectors: np.ndarray,
                    post: GlobalPostConfig) -> dict:
    path = Path(index_dir) / background_file_name(position)
    need = post.background_skip + post.background_k
    reason = None
    if not post.normalize:
        reason = "switched off"
    elif len(vectors) < need:
        reason = (f"{len(vectors)} reference vectors; the background needs at least {need} "
                  f"({post.background_k} neighbours after skipping {post.background_skip})")
    if reason is not None:
        path.unlink(missing_ok=True)
        return {"skipped": reason}
    rng = np.random.default_rng(post.seed)
    pick = np.sort(rng.choice(len(vectors), size=min(len(vectors), post.background_size), replace=False))
    save_arrays(path, background=np.ascontiguousarray(vectors[pick], np.float32),
                rows=np.asarray(rows, np.int64)[pick])
    return {"file": path.name, "sha256": file_sha256(path), "size": int(len(pick)), "k": post.background_k,
            "beta": post.background_beta, "skip": post.background_skip}


def write_global_index(index_dir: Path, position: int, entry: dict, rows: list[int], vectors: list[np.ndarray],
                       post: GlobalPostConfig | None = None) -> dict:
    """Write descriptor ``position``'s FAISS index over the references' raw vectors and return its manifest
    entry (``entry`` updated).

    With ``post`` (a build), a neural descriptor's whitening and background are fitted anew on these vectors
    and saved (or recorded as skipped); without it (``index add``, ``index remove``) the ones ``entry`` names
    are applied unchanged, so scores keep the meaning the calibration was fitted on.
    """
    index_dir = Path(index_dir)
    entry = dict(entry)
    metric, dim = entry["metric"], int(entry["dim"])
    if metric == "hamming":
        raw = np.stack(vectors) if vectors else np.zeros((0, dim // 8), np.uint8)
    else:
        raw = np.stack(vectors).astype(np.float32, copy=False) if vectors else np.zeros((0, dim), np.float32)
    x = raw
    if metric == "ip":
        if post is not None:
            entry["whitening"], whitening = _fit_whitening(index_dir, position, raw, post)
        else:
            whitening = load_whitening(index_dir, entry)
        if whitening is not None:
            x = whitening.apply(raw)
        if post is not None:
            entry["normalization"] = _fit_background(index_dir, position, rows, x, post)
    index = GlobalIndex(dim if metric == "hamming" else x.shape[1], metric)  # hamming: dim counts bits
    if rows:
        index.add(np.asarray(rows, np.int64), x)
    index.save(index_dir / entry["file"])
    return entry
