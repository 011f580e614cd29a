"""The global branch of dual retrieval: whole-image descriptors of an index and their search.

For each global descriptor an index was built with (``pdq``, ``timm:...``, see globaldesc/registry.py), the
reference vectors live in the SQLite table ``globals`` and in a FAISS index ``global_<n>.faiss``. At query
time every descriptor's query variants (dihedral, inverted) are searched; the references found add to the
candidates of local recall, and every candidate gets one similarity signal per descriptor, rescaled so
that 0 means "no better than an unrelated image" and 1 "identical", which the calibration weighs with the
geometric evidence.

Neural descriptors (metric ``"ip"``) get two more steps, fitted when the index is built
(:func:`write_global_index`, settings :class:`GlobalPostConfig`) and named in the descriptor's manifest entry:

* **PCA whitening** (:class:`~copylens.core.globaldesc.whitening.Whitening`), fitted on the reference
  descriptors and saved as ``global_<n>.whitening.npz``; the FAISS index holds whitened vectors. The
  database keeps the raw network vectors: a rebuild (rerunning ``copylens index build`` on the index)
  refits from them, while ``index add`` / ``index remove`` rebuild the FAISS index by applying the stored
  whitening unchanged (never refitting silently: the calibration was fitted on its scores). Fitted only
  from ``whiten_min_per_dim`` references per dimension (default 4): a covariance estimated from fewer
  rows has its smallest eigenvalues far too small, and whitening would blow up noise along them.
* **Background score normalisation** (SSCD / ISC2021 style,
  :class:`~copylens.core.globaldesc.whitening.BackgroundNormalizer`): every similarity of a query
  variant becomes ``sim - beta * mean(its similarities to background neighbours skip+1 .. skip+k)``. The
  background is a seeded random sample of (whitened) reference descriptors, ``global_<n>.background.npz``;
  ``skip=1`` keeps a true copy whose own reference was sampled from being penalised for matching it (see
  BackgroundNormalizer). A generic query that resembles everything loses more than a true copy, so one
  threshold fits all queries. The result is clipped into [0, 1] like any signal: 0 = no more similar than
  the query's typical unrelated neighbours. Like the whitening, the background is fixed between builds:
  ``index add`` / ``remove`` leave it as it is (it is a statistical sample of "unrelated content", not a
  list of references; a removed reference's whitened vector stays in it until the next build).

Both files are plain ``.npz`` arrays (read with ``allow_pickle=False``) whose sha256 the manifest records;
a missing or altered file refuses to open. The manifest's ``fingerprint`` is that of the network alone
(without whitening), so it stays comparable with the descriptor ``create_descriptor(name)`` builds. A
neural entry reads::

    {"name": "timm:...", "fingerprint": "<network>", "file": "global_0.faiss", "metric": "ip", "dim": 512,
     "whitening": {"file": "global_0.whitening.npz", "sha256": "...", "input_dim": 512, "dim": 512,
                   "references": 9000}  -- or {"skipped": "<why>"},
     "normalization": {"file": "global_0.background.npz", "sha256": "...", "size": 4096, "k": 10,
                       "beta": 1.0, "skip": 1}  -- or {"skipped": "<why>"}}

Entries without these keys (indexes built before they existed) open as before: raw vectors, no
normalisation.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .errors import IndexFormatError
from .globaldesc import create_descriptor
from .globaldesc.base import GlobalDescriptor, check_fingerprint, pairwise_similarity
from .globaldesc.faissindex import GlobalIndex
from .globaldesc.whitening import BackgroundNormalizer, Whitening, load_arrays, save_arrays

# similarity an unrelated image typically reaches, per metric: the signal is (sim - floor) / (1 - floor)
CHANCE_SIMILARITY = {"hamming": 0.5, "ip": 0.0}



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


@dataclass(frozen=True)
class GlobalQuery:
    """One query's vectors for one branch: ``vectors`` ``[V x D]`` (variants, whitened when the index
    whitens) and ``offsets`` ``[V]``, the background level subtracted from each variant's similarities."""

    vectors: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.vectors)


@dataclass(frozen=True, slots=True)
class GlobalVector:
    """One reference's vector for one descriptor: ``vector`` ``[D]`` (float32 or packed uint8 bits)."""

    vector: np.ndarray
    quality: float
    low_quality: bool


def signal_name(name: str) -> str:
    return f"global:{name}"


def file_name(position: int) -> str:
    return f"global_{position}.faiss"


def whitening_file_name(position: int) -> str:
    return f"global_{position}.whitening.npz"


def background_file_name(position: int) -> str:
    return f"global_{position}.background.npz"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def extract_reference_vectors(descs: list[GlobalDescriptor], pixels: np.ndarray) -> dict[str, GlobalVector]:
    out = {}
    for d in descs:
        b = d.extract([pixels])
        if len(b):
            out[d.name] = GlobalVector(np.asarray(b.vectors[0]), float(b.quality[0]), bool(b.low_quality[0]))
    return out


def rescale(similarity: np.ndarray | float, metric: str) -> np.ndarray | float:
    floor = CHANCE_SIMILARITY[metric]
    return np.clip((np.asarray(similarity, np.float64) - floor) / (1.0 - floor), 0.0, 1.0)


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


class GlobalBranch:
    """One global descriptor of an opened index, with its whitening and score normalisation when it has
    them (neural descriptors, see the module documentation)."""

    def __init__(self, descriptor: GlobalDescriptor, index: GlobalIndex, whitening: Whitening | None = None,
                 normalizer: BackgroundNormalizer | None = None) -> None:
        self.descriptor = descriptor
        self.index = index
        self.name = descriptor.name
        self.whitening = whitening
        self.normalizer = normalizer

    @staticmethod
    def open(index_dir: Path, entry: dict, device: str | None = None) -> GlobalBranch:
        index_dir = Path(index_dir)
        neural = entry["metric"] == "ip" and entry["name"] != "none"
        kw = {"device": device} if neural and device not in (None, "auto") else {}
        desc = create_descriptor(entry["name"], **kw)
        # the network alone: the fitted whitening is the index's, checked by its own digest below
        check_fingerprint(entry["fingerprint"], desc, str(index_dir))
        whitening = load_whitening(index_dir, entry) if neural else None
        normalizer = load_normalizer(index_dir, entry) if neural else None
        index = GlobalIndex.load(index_dir / entry["file"])
        width = whitening.dim if whitening is not None else desc.dim
        if index.dim != width:
            raise IndexFormatError(f"{index_dir / entry['file']}: holds {index.dim}-d vectors but "
                                   f"{entry['name']!r} gives {width}-d ones; rebuild the index")
        if normalizer is not None and normalizer.background.shape[1:] != (width,):
            raise IndexFormatError(f"{index_dir / entry['normalization']['file']}: background vectors of shape "
                                   f"{normalizer.background.shape} do not fit {width}-d descriptors; rebuild "
                                   "the index")
        return GlobalBranch(desc, index, whitening, normalizer)

    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        """Raw descriptor rows (as extracted and stored) -> the rows the FAISS index compares: whitened."""
        return vectors if self.whitening is None else self.whitening.apply(vectors)

    def query_vectors(self, vectors: np.ndarray) -> GlobalQuery:
        """The query of raw descriptor rows (as the descriptor extracts them): whitened when the index
        whitens, with each row's background offset (0 without normalisation)."""
        x = self.prepare(vectors)
        offsets = (self.normalizer.offsets(x) if self.normalizer is not None and len(x)
                   else np.zeros(len(x), np.float32))
        return GlobalQuery(x, offsets)

    def query(self, pixels: np.ndarray) -> GlobalQuery:
        """The query's variant vectors (dihedral, inverted), low-quality rows dropped, see query_vectors."""
        b = self.descriptor.extract_query(np.ascontiguousarray(pixels))
        return self.query_vectors(b.vectors[~b.low_quality])

    def query_empty(self) -> GlobalQuery:
        d = self.descriptor
        if d.metric == "hamming":
            return self.query_vectors(np.zeros((0, d.dim // 8), np.uint8))
        return self.query_vectors(np.zeros((0, d.dim), np.float32))

    def search(self, query: GlobalQuery, k: int) -> dict[int, float]:
        """Best rescaled (and background-normalised) similarity per reference row among the ``k`` nearest of
        every query variant."""
        if len(query) == 0 or len(self.index) == 0:
            return {}
        scores, ids = self.index.search(query.vectors, k)
        scores = scores - query.offsets[:, None]
        best: dict[int, float] = {}
        for s, i in zip(scores.ravel(), ids.ravel(), strict=True):
            if i >= 0:
                v = float(rescale(s, self.descriptor.metric))
                if v > best.get(int(i), -1.0):
                    best[int(i)] = v
        return best

    def similarity(self, query: GlobalQuery, ref: GlobalVector | None) -> float:
        """Rescaled (and background-normalised) similarity of the best query variant to one reference, whose
        vector is the raw one from the database (0 when either is unreliable)."""
        if ref is None or ref.low_quality or len(query) == 0:
            return 0.0
        sims = pairwise_similarity(query.vectors, self.prepare(ref.vector[None]), self.descriptor.metric)[:, 0]
        return float(rescale((sims - query.offsets).max(), self.descriptor.metric))


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
