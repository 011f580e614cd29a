"""Building a sharded index (layout and query side: :mod:`.shards`).

``build_sharded`` scans the folder once and decides every reference id over the whole folder (as an
unsharded build does), sends each file to the shard its id hashes to, and builds each shard as an ordinary
index directory with its own row range. Extraction runs in this process's thread pool, or, given
``extract`` (:func:`copylens.core.cluster.ray_extract`), as Ray tasks across a cluster; either way this
process alone writes the databases and FAISS files.

Then what the shards must share is made once for all of them: each neural descriptor's whitening and
score-normalisation background, fitted on a sample of every shard's vectors (at most ``POST_FIT_SAMPLE``,
so the fit does not grow with the collection) and copied into each shard, whose global FAISS file is
rewritten with it; the near-identical pairs across shards (PDQ); the metadata sidecar; and last the
calibration, fitted through the sharded engine itself and kept in ``shards.json``.

Like an unsharded build, a killed sharded build loses nothing committed and a rerun resumes it (the same
``--shards``); a rerun over a folder with new files adds them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace as _replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..errors import CopyLensError
from ..fileio import write_atomic
from ..globaldesc import validate_name
from ..imageio import scan_images
from ..progress import Job, Progress, run_job
from ..selfcal import calibrate_index
from .build import (
    DEFAULT_GLOBAL,
    NEAR_IDENTICAL_BITS,
    BuildSummary,
    ExtractFn,
    _add_to_index,
    _build_index,
    _remove_from_index,
    assign_reference_ids,
    default_workers,
    import_metadata,
    plan_additions,
)
from .globalfiles import GlobalPostConfig, write_global_index
from .globalindex import GlobalIndex
from .layout import DATABASE, MANIFEST, read_manifest, write_manifest
from .lock import writer_lock
from .shards import (
    SHARDS_FILE,
    first_row,
    read_shards_manifest,
    shard_dir_name,
    shard_of_id,
    write_shards_manifest,
)
from .store import ReferenceStore

POST_FIT_SAMPLE = 50_000  # reference vectors a shared whitening / background is fitted on, at most
MAX_SHARDS = 4096


def build_sharded(ref_dir: str | Path, out_dir: str | Path, shards: int, workers: int | None = None,
                  config=None, calibrate: bool = True, seed: int = 0, calibration_queries: int | None = None,
                  global_descriptors: Sequence[str] = DEFAULT_GLOBAL, global_post: GlobalPostConfig | None = None,
                  metadata: str | Path | None = None, extract: ExtractFn | None = None) -> Job[BuildSummary]:
    """Build (or resume) the sharded index ``out_dir`` of the images below ``ref_dir`` in ``shards`` parts;
    the other arguments mean what they mean for :func:`.build.build_index`."""
    ref_dir, out_dir = Path(ref_dir), Path(out_dir)
    if not 1 <= int(shards) <= MAX_SHARDS:
        raise CopyLensError(f"--shards must be between 1 and {MAX_SHARDS}, not {shards}")
    if not ref_dir.is_dir():
        raise CopyLensError(f"{ref_dir}: no such folder")
    if (out_dir / MANIFEST).exists() or (out_dir / DATABASE).exists():
        raise CopyLensError(f"{out_dir}: holds an index that is not sharded; choose another --out folder")
    if (out_dir / SHARDS_FILE).exists():
        held = len(read_shards_manifest(out_dir)["shards"])
        if held != shards:
            raise CopyLensError(f"{out_dir}: was built with --shards {held}, not {shards}; rerun with --shards {held} "
                                "or build into another folder")
    for name in global_descriptors:
        validate_name(name)  # a bad name fails here, before any folder is made
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CopyLensError(f"{out_dir}: cannot create the index folder ({exc.strerror or exc})") from None
    with writer_lock(out_dir, f"copylens index build --shards {shards}") as note:
        summary = yield from _build_sharded(ref_dir, out_dir, int(shards), workers, config, calibrate, seed,
                                            calibration_queries, global_descriptors, global_post, metadata, extract)
    if note:
        summary.notes.append(note)
    return summary


def _relabel(job: Job, label: str) -> Job:
    """Run a sub-job, its progress messages prefixed with ``label``; closing this job closes it."""
    try:
        while True:
            p = next(job)
            yield Progress(p.stage, p.done, p.total, f"{label}: {p.message}" if p.message else label)
    except StopIteration as stop:
        return stop.value
    finally:
        job.close()


def _build_sharded(ref_dir: Path, out_dir: Path, k: int, workers: int | None, config, calibrate: bool, seed: int,
                   calibration_queries: int | None, global_descriptors: Sequence[str],
                   global_post: GlobalPostConfig | None, metadata: str | Path | None,
                   extract: ExtractFn | None) -> Job[BuildSummary]:
    t0 = time.monotonic()
    previous = read_shards_manifest(out_dir) if (out_dir / SHARDS_FILE).exists() else None
    dirs = [out_dir / shard_dir_name(i) for i in range(k)]
    yield Progress("scan", 0, 0, str(ref_dir))
    unsupported: list[tuple[str, str]] = []
    files = scan_images(ref_dir, unsupported)
    taken: dict[str, str] = {}
    for d in dirs:
        if (d / DATABASE).exists():
            store = ReferenceStore(d)
            try:
                taken.update(store.id_paths())
            finally:
                store.close()
    ids, renamed = assign_reference_ids(files, ref_dir, taken)
    parts: list[list[tuple[Path, str]]] = [[] for _ in range(k)]
    for path, rid in ids:
        parts[shard_of_id(rid, k)].append((path, rid))
    added = skipped = dups = 0
    failures = list(unsupported)
    notes: list[str] = []
    for i, d in enumerate(dirs):
        s = yield from _relabel(_build_index(ref_dir, d, workers, config, False, seed, None, global_descriptors,
                                             global_post, None, items=parts[i], first_row=first_row(i),
                                             extract=extract, elsewhere=_contents(dirs, i)),
                                f"shard {i + 1}/{k}")
        added, skipped, dups = added + s.added, skipped + s.skipped, dups + s.duplicates
        failures += s.failed
        notes += s.notes
    manifests = [read_manifest(d) for d in dirs]
    entries = yield from _share_global_post(dirs, manifests, seed)
    yield from _near_identical_across(dirs, entries[0])
    if metadata is not None:
        yield Progress("metadata", 0, 1, str(metadata))
        unmatched = None
        for d in dirs:
            store = ReferenceStore(d, writer=True)
            try:
                missing = set(import_metadata(store, metadata))
            finally:
                store.close()
            unmatched = missing if unmatched is None else unmatched & missing
        failures += [(str(metadata), f"metadata row for unknown reference {rid!r}") for rid in sorted(unmatched)[:20]]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for d, m, e in zip(dirs, manifests, entries, strict=True):
        write_manifest(d, {**m, "global": e, "updated": now})
    manifests = [read_manifest(d) for d in dirs]
    total = sum(int(m["counts"]["references"]) for m in manifests)
    top = {"name": out_dir.resolve().name, "created": (previous or {}).get("created", now), "updated": now,
           "reference_root": str(ref_dir.resolve()), "shards": [d.name for d in dirs],
           "counts": {"references": total, "per_shard": [int(m["counts"]["references"]) for m in manifests]},
           "calibration": None}
    calibration = None
    if calibrate:
        write_shards_manifest(out_dir, {**top, "calibration_pending": True})
        w = workers or default_workers()
        n = calibration_queries
        calibration = yield from (calibrate_index(out_dir, seed=seed, workers=w) if n is None else
                                  calibrate_index(out_dir, seed=seed, max_queries=n, min_queries=n, workers=w))
    write_shards_manifest(out_dir, {**top, "calibration": calibration})
    return BuildSummary(added, skipped, dups, failures, total, time.monotonic() - t0, renamed, notes)


def _contents(dirs: list[Path], but: int) -> dict[str, str]:
    """sha256 -> reference id of what every shard but ``but`` holds: content stored once in the whole index."""
    out: dict[str, str] = {}
    for j, d in enumerate(dirs):
        if j != but and (d / DATABASE).exists():
            store = ReferenceStore(d)
            try:
                out.update(store.contents())
            finally:
                store.close()
    return out


def _share_global_post(dirs: list[Path], manifests: list[dict], seed: int) -> Job[list[list[dict]]]:
    """Fit each neural descriptor's whitening and background once, on a sample of all shards' vectors; copy
    them into every shard and rewrite its global FAISS file with them. Returns each shard's new entries."""
    entries = [list(m.get("global", [])) for m in manifests]
    for pos, entry in enumerate(entries[0]):
        if entry["metric"] != "ip":
            continue
        yield Progress("global", pos, len(entries[0]), f"{entry['name']}: whitening shared by {len(dirs)} shards")
        per_shard = []
        for d in dirs:
            store = ReferenceStore(d)
            try:
                per_shard.append(store.global_vectors(entry["name"]))
            finally:
                store.close()
        rows = [r for rs, _ in per_shard for r in rs]
        vecs = [v for _, vs in per_shard for v in vs]
        rng = np.random.default_rng(seed)
        pick = (np.arange(len(rows)) if len(rows) <= POST_FIT_SAMPLE
                else np.sort(rng.choice(len(rows), POST_FIT_SAMPLE, replace=False)))
        post = GlobalPostConfig.from_dict(_stored_post(dirs[0]))
        # fitted in shard 0's folder (its FAISS file is rewritten below with its own rows only)
        fitted = write_global_index(dirs[0], pos, entry, [rows[j] for j in pick], [vecs[j] for j in pick], post)
        for spec in ("whitening", "normalization"):
            src = fitted.get(spec, {})
            if "file" in src:
                data = (dirs[0] / src["file"]).read_bytes()
                for d in dirs[1:]:
                    write_atomic(d / src["file"], data)
        for i, d in enumerate(dirs):
            entries[i][pos] = write_global_index(d, pos, fitted, *per_shard[i], None)
    return entries


def _stored_post(shard_dir: Path) -> dict:
    store = ReferenceStore(shard_dir)
    try:
        raw = store.get_meta("global_post")
    finally:
        store.close()
    return json.loads(raw) if raw else GlobalPostConfig().to_dict()


def _near_identical_across(dirs: list[Path], entries: list[dict]) -> Job[int]:
    """Near-identical pairs (PDQ within NEAR_IDENTICAL_BITS) over all shards, each shard keeping the pairs
    of its own references (the other one may live in any shard). Returns the number of pairs."""
    pos = next((i for i, e in enumerate(entries) if e["name"] == "pdq"), None)
    if pos is None:
        return 0
    yield Progress("near-identical", 0, len(dirs))
    indexes = [GlobalIndex.load(d / entries[pos]["file"]) for d in dirs]
    floor = 1.0 - NEAR_IDENTICAL_BITS / 256
    total = 0
    for i, d in enumerate(dirs):
        store = ReferenceStore(d, writer=True)
        try:
            rows, vecs = store.global_vectors("pdq")
            pairs: set[tuple[int, int]] = set()
            if rows:
                q = np.stack(vecs)
                for index in indexes:
                    scores, found = index.search(q, 5)
                    for row, srow, frow in zip(rows, scores, found, strict=True):
                        pairs |= {(int(row), int(o)) for s, o in zip(srow, frow, strict=True)
                                  if o >= 0 and int(o) != int(row) and s >= floor}
            store.set_near_identical(sorted(pairs))
            total += len(pairs)
        finally:
            store.close()
        yield Progress("near-identical", i + 1, len(dirs))
    return total // 2


def _shard_dirs(index_dir: Path) -> tuple[dict, list[Path]]:
    top = read_shards_manifest(index_dir)
    return top, [index_dir / name for name in top["shards"]]


def _settle(index_dir: Path, top: dict, dirs: list[Path]) -> Job[None]:
    """After an update of some shards: near-identical pairs across shards again (each shard's own update
    found only its own), every shard's manifest rewritten (its database changed), counts in shards.json."""
    yield from _near_identical_across(dirs, read_manifest(dirs[0]).get("global", []))
    manifests = []
    for d in dirs:
        write_manifest(d, read_manifest(d))
        manifests.append(read_manifest(d))
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    counts = {"references": sum(int(m["counts"]["references"]) for m in manifests),
              "per_shard": [int(m["counts"]["references"]) for m in manifests]}
    write_shards_manifest(index_dir, {**{k: v for k, v in top.items() if k not in ("format", "format_version")},
                                      "counts": counts, "updated": now})


def add_to_sharded(index_dir: str | Path, paths, workers: int | None = None) -> Job[BuildSummary]:
    """``copylens index add`` on a sharded index: ids decided over all shards (as for one index), each new
    file added to the shard its id hashes to; the calibration and the shared whitening stay as they are
    (as ``index add`` keeps them for one index)."""
    index_dir = Path(index_dir)
    _shard_dirs(index_dir)  # not a sharded index: say so before taking a lock
    with writer_lock(index_dir, "copylens index add") as note:
        t0 = time.monotonic()
        top, dirs = _shard_dirs(index_dir)
        known: set[str] = set()
        known_ids: set[str] = set()
        for d in dirs:
            store = ReferenceStore(d)
            try:
                known |= store.known_paths()
                known_ids |= store.known_ids()
            finally:
                store.close()
        root = Path(top["reference_root"]) if top.get("reference_root") else None
        plan = plan_additions(paths, root, known, known_ids)
        parts: list[list[tuple[Path, str]]] = [[] for _ in dirs]
        for path, rid in plan.todo:
            parts[shard_of_id(rid, len(dirs))].append((path, rid))
        added = dups = 0
        failures = list(plan.failures)
        notes: list[str] = []
        for i, d in enumerate(dirs):
            if parts[i]:
                part = _replace(plan, todo=parts[i], failures=[], skipped=0, renamed=[])
                s = yield from _relabel(_add_to_index(d, (), workers, part, _contents(dirs, i)),
                                        f"shard {i + 1}/{len(dirs)}")
                added, dups = added + s.added, dups + s.duplicates
                failures += s.failed
                notes += s.notes
        yield from _settle(index_dir, top, dirs)
        total = read_shards_manifest(index_dir)["counts"]["references"]
    summary = BuildSummary(added, plan.skipped, dups, failures, total, time.monotonic() - t0, plan.renamed, notes)
    if note:
        summary.notes.append(note)
    return summary


def remove_from_sharded(index_dir: str | Path, reference_ids) -> int:
    """``copylens index remove`` on a sharded index: each id removed from the shard it hashes to."""
    index_dir = Path(index_dir)
    _shard_dirs(index_dir)
    with writer_lock(index_dir, "copylens index remove"):
        top, dirs = _shard_dirs(index_dir)
        parts: list[list[str]] = [[] for _ in dirs]
        for rid in dict.fromkeys(reference_ids):
            parts[shard_of_id(rid, len(dirs))].append(rid)
        removed = sum(_remove_from_index(d, ids) for d, ids in zip(dirs, parts, strict=True) if ids)
        if removed:
            run_job(_settle(index_dir, top, dirs))
        return removed
