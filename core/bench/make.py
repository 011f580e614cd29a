"""Build an ISC2021-style benchmark folder from folders of images.

Layout of the result (``DIR``)::

    DIR/references/<source>/<relative path>   copies of the reference files (names kept as they are)
    DIR/queries/q00042.jpg                    edited copies of some references + edited distractors
    DIR/ground_truth.csv                      query_id,reference_id,edit,content,x0,y0,x1,y1
    DIR/benchmark.json                        how it was made (seed, sources, counts)

``reference_id`` is the reference's path relative to ``DIR/references`` without its extension, with ``/``
separators (the id the index gives it); it is empty for a distractor query. Copies and distractors go
through the same random edit mix, and query names are shuffled, so neither style nor name gives the
answer away. Paste backgrounds come from images that are not references. Everything follows from the seed.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
import tomllib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from copylens.core.bench.metrics import GT_COLUMNS
from copylens.core.edits import EDITS, Edited, apply_edit
from copylens.core.errors import ImageLoadError, UnknownBackendError
from copylens.core.fileio import write_atomic
from copylens.core.imageio import DecodedImage, is_image_path, load_image
from copylens.core.progress import Job, Progress, run_job
from copylens.core.query_input import QuerySource, read_query

JPEG_QUALITY = 90  # quality of the query JPEGs
SOURCE_MAX_SIDE = 1024  # images are decoded at most this large before editing
BACKGROUND_EDITS = ("paste", "combo")  # edits that may need a background image
# a source with few images may ask for up to this many edited queries of each reference, and of each image
# it keeps out of the index as a distractor (each gets its own edit): so a small kind can have enough
# queries for its figures, and about as many distractors as a large one (bench/dev_v2w.toml)
MAX_EDITS_PER_IMAGE = 6


@dataclass(frozen=True)
class Source:
    """A folder of images (searched recursively) and what it holds.

    ``references`` / ``queries`` / ``distractors`` are this source's shares of the benchmark's totals
    (weights; ``None`` means "in proportion to the number of images in the folder").
    """

    path: Path
    content: str = "photo"  # the content kind ("photo", "tuxpaint", "icons", ...): ground truth's content column
    references: int | None = None
    queries: int | None = None
    distractors: int | None = None
    unseen: bool = False  # kept out of all tuning and training: reported as "unseen"


@dataclass(frozen=True)
class BenchConfig:
    sources: list[Source]
    references: int
    queries: int
    distractors: int
    seed: int = 0


@dataclass(frozen=True)
class BenchmarkSummary:
    out_dir: str
    references: int
    copies: int
    distractors: int
    per_content: dict[str, dict[str, int]]  # content -> {"references", "copies", "distractors"}
    per_edit: dict[str, int]
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of images that could not be used
    seconds: float = 0.0


def load_config(path: str | Path) -> BenchConfig:
    """Read a benchmark definition (see bench/dev.toml); relative source paths are resolved against the
    config folder joined with ``[benchmark] root``."""
    path = Path(path)
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    bench = data.get("benchmark", {})
    root = (path.parent / bench.get("root", ".")).resolve()
    sources = []
    for s in data.get("sources", []):
        if "path" not in s:
            raise ValueError(f"{path}: every [[sources]] entry needs a path")
        sources.append(Source((root / s["path"]).resolve(), s.get("content", "photo"), s.get("references"),
                              s.get("queries"), s.get("distractors"), bool(s.get("unseen", False))))
    if not sources:
        raise ValueError(f"{path}: no [[sources]] defined")

    def total(key: str) -> int:
        if key in bench:
            return int(bench[key])
        return sum(getattr(s, key) or 0 for s in sources)

    return BenchConfig(sources, total("references"), total("queries"), total("distractors"),
                       int(bench.get("seed", 0)))


def query_file(bench_dir: str | Path, query_id: str) -> Path:
    """The image of query ``query_id`` in a benchmark folder (``DIR/queries/<id>.jpg`` as made here, any
    extension found)."""
    found = sorted((Path(bench_dir) / "queries").glob(f"{query_id}.*"))
    if not found:
        raise FileNotFoundError(f"{bench_dir}: no image for query {query_id!r} in queries/")
    return found[0]


def read_benchmark_query(bench_dir: str | Path, query_id: str, max_side: int) -> DecodedImage:
    """Query ``query_id``'s pixels as the engine decodes them (``read_query`` at ``max_side``, the engine's
    ``QueryConfig.query_max_side``), for scripts that call one stage at a time."""
    return read_query(QuerySource.of(query_file(bench_dir, query_id)), max_side).image


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted; of several files with the same path up to the
    extension only the first is kept, so reference ids stay unique."""
    if not folder.is_dir():
        raise FileNotFoundError(f"source folder not found: {folder}")
    out, seen = [], set()
    for p in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file() or not is_image_path(p):
            continue
        key = rel.with_suffix("").as_posix()
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _allocate(total: int, weights: list[float], caps: list[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder), each part at most its cap; what a
    capped part cannot take goes to the others."""
    parts = [0] * len(weights)
    while total > sum(parts):
        open_ = [i for i in range(len(weights)) if parts[i] < caps[i] and weights[i] > 0]
        if not open_:
            break
        left, wsum = total - sum(parts), sum(weights[i] for i in open_)
        raw = {i: left * weights[i] / wsum for i in open_}
        add = {i: int(r) for i, r in raw.items()}
        for i in sorted(open_, key=lambda i: add[i] - raw[i])[: left - sum(add.values())]:
            add[i] += 1
        for i in open_:
            parts[i] = min(caps[i], parts[i] + add[i])
    return parts


def _unique_names(sources: Sequence[Source]) -> list[str]:
    names, used = [], Counter()
    for s in sources:
        base = Path(s.path).resolve().name or "source"
        used[base] += 1
        names.append(base if used[base] == 1 else f"{base}-{used[base]}")
    return names


def _save_jpeg(pixels: np.ndarray, path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=JPEG_QUALITY)
    write_atomic(path, buf.getvalue())


@dataclass(frozen=True)
class SourceSplit:
    """How :func:`make_benchmark` uses one source's images (paths in the source folder)."""

    name: str  # the source's folder under DIR/references
    references: list[Path]  # copied into DIR/references/<name>/
    distractors: list[Path]  # edited into distractor queries (each several times when queries > len)
    pool: list[Path]  # every non-reference image (the distractors first): background candidates
    distractor_queries: int = 0  # how many distractor queries they make


@dataclass(frozen=True)
class BenchSplit:
    """Everything :func:`make_benchmark` selects before it edits: computed without writing a file."""

    splits: list[SourceSplit]  # one per source, in order
    copies_per_source: list[int]  # edited copies asked of each source
    jobs: list[tuple[int, Path, str]]  # the query jobs in query order: (source index, image, reference id or "")
    backgrounds: list[Path]  # paste/combo background candidates (non-reference photos, else any)


def _split(srcs: Sequence[Source], references: int, queries: int, distractors: int, seed: int) -> Job[BenchSplit]:
    images = []
    for i, s in enumerate(srcs):
        yield Progress("scan", i, len(srcs), str(s.path))
        files = list_images(Path(s.path))
        np.random.default_rng([seed, 1, i]).shuffle(files)
        images.append(files)
    sizes = [len(f) for f in images]
    n_ref = _allocate(references, [s.references if s.references is not None else n for s, n in zip(srcs, sizes, strict=True)],
                      sizes)
    # a small source may ask for several edited copies per reference (each gets its own edit)
    n_copy = _allocate(queries, [s.queries if s.queries is not None else n for s, n in zip(srcs, n_ref, strict=True)],
                       [r * MAX_EDITS_PER_IMAGE for r in n_ref])
    n_dis = _allocate(distractors, [s.distractors if s.distractors is not None else n - r
                                    for s, n, r in zip(srcs, sizes, n_ref, strict=True)],
                      [(n - r) * MAX_EDITS_PER_IMAGE for n, r in zip(sizes, n_ref, strict=True)])
    names = _unique_names(srcs)
    splits, jobs = [], []  # jobs: (source index, path, reference id or "")
    photo_pool, any_pool = [], []
    for i, (s, files) in enumerate(zip(srcs, images, strict=True)):
        refs, pool = files[: n_ref[i]], files[n_ref[i]:]
        ids = [(Path(names[i]) / p.relative_to(s.path)).with_suffix("").as_posix() for p in refs]
        perm = np.random.default_rng([seed, 2, i]).permutation(len(refs))
        pick = np.concatenate([perm] * MAX_EDITS_PER_IMAGE)[: n_copy[i]] if len(refs) else perm
        jobs += [(i, refs[k], ids[k]) for k in sorted(pick)]
        # the pool's first images, each once; then again when the source asks for more distractors than that
        jobs += [(i, pool[k % len(pool)], "") for k in range(n_dis[i])]
        (photo_pool if s.content == "photo" else any_pool).extend(pool)
        splits.append(SourceSplit(names[i], refs, pool[: n_dis[i]], pool, n_dis[i]))
    order = np.random.default_rng([seed, 3]).permutation(len(jobs))
    return BenchSplit(splits, n_copy, [jobs[k] for k in order], photo_pool or any_pool)


def split_benchmark(sources: Sequence[Source | str | Path], references: int, queries: int, distractors: int,
                    seed: int = 0) -> BenchSplit:
    """What :func:`make_benchmark` with these arguments selects (same code path), without writing files."""
    srcs = [s if isinstance(s, Source) else Source(Path(s)) for s in sources]
    return run_job(_split(srcs, references, queries, distractors, seed))


def planned_backgrounds(split: BenchSplit, seed: int, edits: Sequence[str] | None = None) -> list[Path | None]:
    """The background image each query job of ``split`` takes (``None``: its edit takes none), replaying
    :func:`make_benchmark`'s draws. Exact when every image decoded (the benchmark's ``failed`` list is
    empty): a background that fails to decode makes make_benchmark draw the next one."""
    fams = list(edits) if edits is not None else list(EDITS)
    out: list[Path | None] = []
    for k, (_, path, _) in enumerate(split.jobs):
        rng = np.random.default_rng([seed, 4, k])
        edit = _pick_edit(rng, fams)
        bg = None
        if edit in BACKGROUND_EDITS and split.backgrounds:
            bg = next(_background_draws(split.backgrounds, rng, path), None)
        out.append(bg)
    return out


def make_benchmark(sources: Sequence[Source | str | Path], out_dir: str | Path, references: int,
                   queries: int, distractors: int, seed: int = 0,
                   edits: Sequence[str] | None = None) -> Job[BenchmarkSummary]:
    """Generator job writing a benchmark into ``out_dir`` (which must be empty or absent).

    ``references`` images become the reference set; ``queries`` edited copies of references and
    ``distractors`` edited non-reference images form the query set. ``edits`` restricts the edit mix
    (default: every edit of :data:`~copylens.core.edits.EDITS`, chosen uniformly).
    """
    t0 = time.monotonic()
    srcs = [s if isinstance(s, Source) else Source(Path(s)) for s in sources]
    fams = list(edits) if edits is not None else list(EDITS)
    for f in fams:
        if f not in EDITS:
            raise UnknownBackendError("edit", f, list(EDITS))
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output folder is not empty: {out}")
    if not srcs:
        raise ValueError("no source folders given")

    # ---- split every source into references and a non-reference pool, reproducibly
    split = yield from _split(srcs, references, queries, distractors, seed)
    n_ref = [len(ss.references) for ss in split.splits]
    n_copy = split.copies_per_source
    n_dis = [ss.distractor_queries for ss in split.splits]
    names = [ss.name for ss in split.splits]

    ref_dir, q_dir = out / "references", out / "queries"
    ref_dir.mkdir(parents=True, exist_ok=True)
    q_dir.mkdir(parents=True, exist_ok=True)
    n_total_refs, done = sum(n_ref), 0
    for s, ss in zip(srcs, split.splits, strict=True):
        for p in ss.references:
            rel = Path(ss.name) / p.relative_to(s.path)
            dest = ref_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
            done += 1
            if done % 25 == 0 or done == n_total_refs:
                yield Progress("references", done, n_total_refs, rel.as_posix())
    jobs, backgrounds = split.jobs, split.backgrounds

    # ---- edit and write the queries
    width = max(5, len(str(len(jobs))))
    rows, failed, edits = [], [], Counter()
    counts = {s.content: Counter() for s in srcs}
    for i, s in enumerate(srcs):
        counts[s.content]["references"] += n_ref[i]
    n = 0
    for k, (si, path, ref_id) in enumerate(jobs):
        yield Progress("queries", k, len(jobs), path.name)
        rng = np.random.default_rng([seed, 4, k])
        edit = _pick_edit(rng, fams)
        try:
            pixels = load_image(path, max_side=SOURCE_MAX_SIDE).pixels
            bg = None
            if edit in BACKGROUND_EDITS and backgrounds:
                bg = _load_background(backgrounds, rng, path, failed)
            edited: Edited = apply_edit(edit, pixels, rng, bg)
        except ImageLoadError as exc:
            failed.append((exc.path, exc.reason))
            continue
        qid = f"q{n:0{width}d}"
        n += 1
        _save_jpeg(edited.pixels, q_dir / f"{qid}.jpg")
        box = list(edited.box) if (edited.box is not None and ref_id) else ["", "", "", ""]
        rows.append([qid, ref_id, edited.edit, srcs[si].content, *box])
        edits[edited.edit] += 1
        counts[srcs[si].content]["copies" if ref_id else "distractors"] += 1
    yield Progress("queries", len(jobs), len(jobs), "")

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(GT_COLUMNS)
    w.writerows(rows)
    write_atomic(out / "ground_truth.csv", buf.getvalue().encode("utf-8"))
    summary = BenchmarkSummary(
        str(out), sum(n_ref), sum(1 for r in rows if r[1]), sum(1 for r in rows if not r[1]),
        {c: dict(v) for c, v in counts.items()}, dict(sorted(edits.items())), failed, time.monotonic() - t0)
    meta = {"seed": seed, "edits": fams, "jpeg_quality": JPEG_QUALITY,
            "unseen_content": sorted({s.content for s in srcs if s.unseen}),
            "sources": [{"path": str(s.path), "name": nm, "content": s.content, "references": r, "copies": c,
                         "distractors": d} for s, nm, r, c, d in zip(srcs, names, n_ref, n_copy, n_dis, strict=True)],
            "summary": asdict(summary)}
    (out / "benchmark.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return summary


def _pick_edit(rng: np.random.Generator, fams: Sequence[str]) -> str:
    """A query's edit: the first draw of its generator."""
    return fams[int(rng.integers(0, len(fams)))]


def _background_draws(pool: list[Path], rng: np.random.Generator, avoid: Path) -> Iterator[Path]:
    """Up to three random non-reference images, never the query's own source image (drawn lazily)."""
    for _ in range(3):
        p = pool[int(rng.integers(0, len(pool)))]
        if p != avoid:
            yield p


def _load_background(pool: list[Path], rng: np.random.Generator, avoid: Path,
                     failed: list[tuple[str, str]]) -> np.ndarray | None:
    """The first of :func:`_background_draws` that decodes; ``None`` if none does."""
    for p in _background_draws(pool, rng, avoid):
        try:
            return load_image(p, max_side=SOURCE_MAX_SIDE).pixels
        except ImageLoadError as exc:
            failed.append((exc.path, exc.reason))
    return None
