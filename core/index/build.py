"""Building and updating an index: generator jobs that yield Progress and return a BuildSummary.

This module is the one part of the index package that needs the engine (the build's last step searches
edited copies of the index's own references to fit the calibration, :mod:`copylens.core.selfcal`), so the
package's ``__init__`` does not import it: ``from copylens.core.index.build import build_index``.

A build scans the reference folder, extracts features in a thread pool (decoding, SIFT and JPEG encoding
release the GIL, so threads use all cores without pickling anything between processes), commits
references to SQLite in small transactions, then writes the FAISS index and fits the calibration. Killed at
any moment, a build loses nothing already committed: rerunning it skips every file already in the database
and redoes only the final steps. Files with the same content (sha256) are stored once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..errors import CopyLensError, ImageLoadError
from ..features import FeatureConfig, extract, rootsift
from ..globaldesc import GlobalDescriptor, check_fingerprint, create_descriptor, validate_name
from ..globalsearch import signal_name
from ..imageio import encode_jpeg, load_image_bytes, read_image_file, scan_images
from ..progress import Job, Progress, bounded_map, run_job
from ..selfcal import calibrate_index
from .globalfiles import GlobalPostConfig, load_normalizer, load_whitening, write_global_index
from .globalindex import GlobalIndex
from .layout import (
    DATABASE,
    FORMAT_NAME,
    FORMAT_VERSION,
    LOCAL_FAISS,
    MANIFEST,
    global_file_name,
    read_manifest,
    write_manifest,
)
from .local import LocalIndex, choose_kind
from .lock import writer_lock
from .store import GlobalVector, ReferenceStore, StoredReference

BATCH = 16  # references per SQLite transaction
TRAIN_SAMPLE = 100_000  # descriptors sampled to train the IVF cells (about 50 per cell at the dev size)
# Global descriptors of a new index (dual retrieval). PDQ raised dev-benchmark μAP overall and on graphics;
# CopyLens's own "copylens-sscd18" raises dev-benchmark v2 μAP from 0.910 to 0.931, most on the graphics it
# was never trained on (wallpapers 0.774 -> 0.870, icons 0.800 -> 0.852, unseen lineart 0.848 -> 0.878),
# for 47 ms more query p50 and half the build speed (README, "Accuracy by content kind"). Its graphics
# fine-tune "copylens-sscd18g" (same network and cost) alone lifts dev v2 μAP 0.536 -> 0.614, every kind
# up, the unseen lineart and the untrained wallpapers included; in the fusion +0.001-0.002 on every
# calibration seed (README, "The own descriptor fine-tuned for graphics"). Indexes keep the descriptor
# they were built with, so both models ship.
DEFAULT_GLOBAL = ("pdq", "copylens-sscd18g")
TOMBSTONE_REBUILD = 0.2  # rebuild an approximate FAISS index once removed rows exceed this share of the rest


@dataclass(frozen=True, slots=True)
class BuildSummary:
    added: int
    skipped: int  # already in the index (resumed build) or a duplicate of one
    duplicates: int  # files whose content equals a reference already stored
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    total_references: int = 0
    seconds: float = 0.0
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (path, id with extension): shared stems
    notes: list[str] = field(default_factory=list)  # worth a line to the user (a stale lock taken over...)


def extract_reference_vectors(descs: list[GlobalDescriptor], pixels: np.ndarray) -> dict[str, GlobalVector]:
    out = {}
    for d in descs:
        b = d.extract([pixels])
        if len(b):
            out[d.name] = GlobalVector(np.asarray(b.vectors[0]), float(b.quality[0]), bool(b.low_quality[0]))
    return out


METADATA_ID_COLUMNS = ("reference_id", "id", "file", "path", "filename")


def import_metadata(store: ReferenceStore, csv_path: str | Path) -> list[str]:
    """Read a metadata CSV with a header: one id column (``reference_id``, or a file name / relative path,
    matched with or without its extension) and any other columns (title, artist, inventory_number,
    source_url, licence, ...). Returns the ids that match no reference."""
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return []
    cols = {c.strip().lower(): c for c in rows[0]}
    id_col = next((cols[c] for c in METADATA_ID_COLUMNS if c in cols), None)
    if id_col is None:
        raise CopyLensError(f"{csv_path}: needs a column named one of {', '.join(METADATA_ID_COLUMNS)}")
    known = store.known_ids()
    out, unmatched = [], []
    for r in rows:
        raw = (r.get(id_col) or "").strip().replace("\\", "/")
        rid = raw if raw in known else str(Path(raw).with_suffix("")) if raw else ""
        if rid not in known:
            unmatched.append(raw)
            continue
        out += [(rid, k.strip(), v.strip()) for k, v in r.items() if k != id_col and k and (v or "").strip()]
    store.set_metadata(out)
    return unmatched


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def reference_id_for(path: Path, root: Path | None) -> str:
    """Path relative to ``root`` without extension, '/'-separated (the file stem when outside ``root``)."""
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).with_suffix("").as_posix()
        except ValueError:
            pass
    return path.stem


def assign_reference_ids(files: Sequence[Path], root: Path, taken: dict[str, str]
                         ) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """Reference ids for a scan: the relative path without extension (the CLI contract), except where two
    files would share it (``a.jpg`` and ``a.png``) or the index already gives it to another file: then the
    relative path with its extension, which no two files share. ``taken`` maps ids in the index to their
    paths. Returns (file, id) pairs in scan order and the (path, id) pairs that kept their extension."""
    plain = [reference_id_for(p, root) for p in files]
    count = Counter(plain)
    out, renamed = [], []
    for p, rid in zip(files, plain, strict=True):
        owner = taken.get(rid)
        if count[rid] > 1 or (owner is not None and owner != str(p.resolve())):
            try:
                rid = p.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                rid = p.name
            renamed.append((str(p), rid))
        out.append((p, rid))
    return out, renamed


def _batchable(d: GlobalDescriptor) -> bool:
    """Neural descriptors run several times faster on a batch of images than one at a time (ResNet-18 at
    112 px on 2 cores: 36 ms per image alone, 10 ms in batches of 16): the build batches them."""
    return bool(getattr(d, "batchable", False))


def _extract_unbatched(path: Path, reference_id: str, cfg: FeatureConfig, descs: Sequence[GlobalDescriptor]
                       ) -> tuple[StoredReference, np.ndarray]:
    """Read, hash, decode and describe one reference file (runs in a worker thread): everything but its
    batchable global vectors (added by batches at commit time); also returns the decoded pixels."""
    data = read_image_file(path)  # regular files only, size-capped before reading
    image = load_image_bytes(data, str(path), max_side=cfg.max_side)
    feats = extract(image, cfg)
    vectors = extract_reference_vectors([d for d in descs if not _batchable(d)], image.pixels)
    ref = StoredReference(reference_id, str(path.resolve()), hashlib.sha256(data).hexdigest(), len(data), feats,
                          encode_jpeg(image.pixels), vectors)
    return ref, image.pixels


def _add_batched_vectors(descs: Sequence[GlobalDescriptor], refs: list[StoredReference],
                         pixels: list[np.ndarray]) -> None:
    for d in descs:
        if not _batchable(d) or not refs:
            continue
        b = d.extract(pixels)
        for i, ref in enumerate(refs):
            ref.globals[d.name] = GlobalVector(np.asarray(b.vectors[i]), float(b.quality[i]), bool(b.low_quality[i]))


def _failure(path: Path, exc: Exception) -> tuple[str, str]:
    """A file's failure as the build reports it: the loader's reason, or the unexpected error's type."""
    if isinstance(exc, CopyLensError):
        return str(path), exc.reason if isinstance(exc, ImageLoadError) else str(exc)
    return str(path), f"{type(exc).__name__}: {exc}"


def extract_chunk(items: Sequence[tuple[str, str]], cfg: FeatureConfig, descs: Sequence[GlobalDescriptor]
                  ) -> list[StoredReference | tuple[str, str]]:
    """Extract a few references in this process, batchable vectors included: the unit of work of a remote
    extraction worker (:mod:`copylens.core.cluster`). Returns, in order, a stored reference or a
    (path, reason) failure per item."""
    out: list[StoredReference | tuple[str, str]] = []
    refs, pixels = [], []
    for path, rid in items:
        try:
            ref, px = _extract_unbatched(Path(path), rid, cfg, descs)
        except Exception as exc:  # an unexpected decoder failure must not stop the build
            out.append(_failure(Path(path), exc))
            continue
        out.append(ref)
        refs.append(ref)
        pixels.append(px)
    _add_batched_vectors(descs, refs, pixels)
    return out


ExtractFn = Callable[[ReferenceStore, list[tuple[Path, str]], FeatureConfig, int, Sequence[GlobalDescriptor]],
                     Job[tuple[int, int, list[tuple[str, str]]]]]


def _extract_all(store: ReferenceStore, items: list[tuple[Path, str]], cfg: FeatureConfig,
                 workers: int, descs: Sequence[GlobalDescriptor] = ()) -> Job[tuple[int, int, list[tuple[str, str]]]]:
    """Extract and commit ``items`` (path, reference id); yields progress, returns (added, dups, failures)."""
    added = dups = 0
    failures: list[tuple[str, str]] = []
    pending_refs: list[StoredReference] = []
    pending_pixels: list[np.ndarray] = []  # for the batchable global descriptors, run at flush time
    pending_fail: list[tuple[str, str]] = []
    total = len(items)
    done = 0

    def flush() -> None:
        nonlocal added, dups
        _add_batched_vectors(descs, pending_refs, pending_pixels)
        pending_pixels.clear()
        rows, d = store.insert_batch(pending_refs, pending_fail)
        added += len(rows)
        dups += d
        pending_refs.clear()
        pending_fail.clear()

    it = enumerate(items)
    ready: dict[int, tuple[StoredReference, np.ndarray] | tuple[str, str]] = {}  # finished, awaiting their turn
    next_seq = 0  # results are committed in scan order, so a rerun gives the same ids to the same duplicates
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="copylens-extract") as pool:
        tasks = (((seq, path), (lambda p=path, r=rid: _extract_unbatched(p, r, cfg, descs)))
                 for seq, (path, rid) in it)
        try:
            for batch in bounded_map(pool, tasks, workers * 4):
                for (seq, path), fut in batch:
                    try:
                        ready[seq] = fut.result()
                    except Exception as exc:  # an unexpected decoder failure must not stop the build
                        ready[seq] = _failure(path, exc)
                    done += 1
                while next_seq in ready:
                    item = ready.pop(next_seq)
                    next_seq += 1
                    if isinstance(item[0], StoredReference):
                        pending_refs.append(item[0])
                        pending_pixels.append(item[1])
                    else:
                        pending_fail.append(item)
                        failures.append(item)
                if len(pending_refs) + len(pending_fail) >= BATCH:
                    flush()
                yield Progress("extract", done, total, path.name)
        finally:
            # on cancellation (GeneratorExit) or error: keep what is finished in order, drop the rest
            # (bounded_map cancels what still runs)
            if pending_refs or pending_fail:
                flush()
    return added, dups, failures


def _write_local_index(store: ReferenceStore, index_dir: Path, seed: int = 1234) -> Job[LocalIndex]:
    """Build the FAISS index over every stored descriptor and save it atomically."""
    total = store.count_descriptors()
    nrefs = store.count()
    kind = choose_kind(total)
    training = np.zeros((0, 128), np.float32)
    if kind != "flat":
        rng = np.random.default_rng(seed)
        keep = min(1.0, TRAIN_SAMPLE / max(total, 1))
        parts = []
        for i, (_, f) in enumerate(store.iter_features()):
            if len(f):
                sel = rng.random(len(f)) < keep
                parts.append(rootsift(f.descriptors[sel]))
            if i % 200 == 0:
                yield Progress("train", i, nrefs, "sampling descriptors")
        training = np.vstack(parts) if parts else training
        yield Progress("train", nrefs, nrefs, f"k-means on {len(training)} descriptors")
    local = LocalIndex.create(training, total, seed)
    rows, kps, vecs = [], [], []
    n = 0
    for i, (row, f) in enumerate(store.iter_features()):
        if len(f):
            rows.append(np.full(len(f), row, np.int64))
            kps.append(np.arange(len(f), dtype=np.int64))
            vecs.append(rootsift(f.descriptors))
            n += len(f)
        if n >= 100_000 or i == nrefs - 1:
            if vecs:
                local.add_many(np.concatenate(rows), np.concatenate(kps), np.vstack(vecs))
            rows, kps, vecs, n = [], [], [], 0
            yield Progress("faiss", i + 1, nrefs)
    if vecs:
        local.add_many(np.concatenate(rows), np.concatenate(kps), np.vstack(vecs))
    local.save(index_dir / LOCAL_FAISS)
    store.clear_tombstones()  # the new FAISS index holds exactly the stored rows
    return local


def _global_entries(descs: Sequence[GlobalDescriptor]) -> list[dict]:
    """Manifest entries of freshly built descriptors; write_global_index adds their post-processing."""
    return [{"name": d.name, "fingerprint": d.fingerprint(), "file": global_file_name(i), "metric": d.metric, "dim": d.dim}
            for i, d in enumerate(descs)]


def _write_global_indexes(store: ReferenceStore, index_dir: Path, entries: Sequence[dict],
                          post: GlobalPostConfig | None = None) -> Job[list[dict]]:
    """(Re)build every global descriptor's FAISS index from the database (small: one vector per reference)
    and return the updated manifest entries. ``post`` (a build) refits neural descriptors' whitening and
    score-normalisation background; without it (add, remove) the stored ones are applied."""
    out = []
    for i, e in enumerate(entries):
        yield Progress("global", i, len(entries), e["name"])
        rows, vecs = store.global_vectors(e["name"])
        out.append(write_global_index(index_dir, i, e, rows, vecs, post))
    yield Progress("global", len(entries), len(entries))
    return out


NEAR_IDENTICAL_BITS = 16  # PDQ hashes at most this many bits apart (of 256) mark near-identical references


def _find_near_identical(store: ReferenceStore, index_dir: Path, entries: Sequence[dict]) -> Job[int]:
    """Record which references are near-identical to each other (PDQ within NEAR_IDENTICAL_BITS, about
    the variants of one drawing or one wallpaper in two colours), so the window can say so beside a
    match. Uses the PDQ index when the index has one; returns how many pairs were found."""
    entry = next(((i, e) for i, e in enumerate(entries) if e["name"] == "pdq"), None)
    if entry is None:
        return 0
    yield Progress("near-identical", 0, 1)
    rows, vecs = store.global_vectors("pdq")
    pairs: list[tuple[int, int]] = []
    if len(rows) > 1:
        index = GlobalIndex.load(index_dir / entry[1]["file"])
        scores, found = index.search(np.stack(vecs), 5)
        floor = 1.0 - NEAR_IDENTICAL_BITS / 256
        for row, srow, frow in zip(rows, scores, found, strict=True):
            pairs += [(int(row), int(o)) for s, o in zip(srow, frow, strict=True)
                      if o >= 0 and int(o) != int(row) and s >= floor]
        pairs += [(b, a) for a, b in pairs]
    store.set_near_identical(pairs)
    yield Progress("near-identical", 1, 1)
    return len(pairs) // 2


def _descriptors(names: Sequence[str]) -> list[GlobalDescriptor]:
    return [create_descriptor(n) for n in names if n != "none"]


def _check_post_files(index_dir: Path, entries: Sequence[dict]) -> None:
    """Refuse (IndexFormatError) a missing or altered whitening / background file before an update
    changes anything: the FAISS rebuild that ends every update needs them."""
    for e in entries:
        load_whitening(index_dir, e)
        load_normalizer(index_dir, e)


def _entry_descriptors(index_dir: Path, entries: Sequence[dict]) -> list[GlobalDescriptor]:
    """The descriptors an index was built with, refused when their fingerprint no longer matches."""
    descs = _descriptors([e["name"] for e in entries])
    for d, e in zip(descs, entries, strict=True):
        check_fingerprint(e["fingerprint"], d, str(index_dir))
    return descs


def _manifest(index_dir: Path, store: ReferenceStore, cfg: FeatureConfig, local: LocalIndex,
              calibration: dict | None, root: Path | None, previous: dict | None,
              entries: Sequence[dict] = ()) -> dict:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": index_dir.resolve().name,
        "created": (previous or {}).get("created", now),
        "updated": now,
        "reference_root": str(root.resolve()) if root else (previous or {}).get("reference_root"),
        "features": {"kind": "rootsift", **cfg.to_dict()},
        "descriptors": ["local:rootsift"] + [signal_name(e["name"]) for e in entries],
        "local_index": {"kind": local.kind, "descriptors": local.ntotal},
        "global": list(entries),
        "counts": {"references": store.count(), "descriptors": store.count_descriptors(),
                   "duplicates": store.num_duplicates(), "failures": len(store.failures())},
        "calibration": calibration,
    }


def build_index(ref_dir: str | Path, out_dir: str | Path, workers: int | None = None,
                config: FeatureConfig | None = None, calibrate: bool = True, seed: int = 0,
                calibration_queries: int | None = None,
                global_descriptors: Sequence[str] = DEFAULT_GLOBAL,
                global_post: GlobalPostConfig | None = None,
                metadata: str | Path | None = None) -> Job[BuildSummary]:
    """Build (or resume building) the index ``out_dir`` from the images below ``ref_dir``.

    ``metadata`` is an optional CSV sidecar (see :func:`import_metadata`) of titles, artists, inventory
    numbers, source URLs, licences... shown beside each reference in the window.

    ``global_descriptors`` names the global branches of dual retrieval (registry names such as ``pdq``;
    empty or ``("none",)`` for SIFT only); ``global_post`` sets the whitening and score normalisation of
    neural ones (default :class:`~copylens.core.globalsearch.GlobalPostConfig`), fitted anew by every build
    run. A resumed build keeps the settings it started with.
    ``calibration_queries`` bounds the synthetic queries the confidence model is fitted on (default: see
    selfcal.py); ``calibrate=False`` keeps the conservative default model.
    """

    ref_dir, out_dir = Path(ref_dir), Path(out_dir)
    if not ref_dir.is_dir():
        raise CopyLensError(f"{ref_dir}: no such folder")
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CopyLensError(f"{out_dir}: cannot create the index folder ({exc.strerror or exc})") from None
    try:
        with writer_lock(out_dir, "copylens index build") as note:
            summary = yield from _build_index(ref_dir, out_dir, workers, config, calibrate, seed,
                                              calibration_queries, global_descriptors, global_post, metadata)
    finally:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # nothing was written (a bad descriptor name, cancelled at once): leave nothing
    if note:
        summary.notes.append(note)
    return summary


def _build_index(ref_dir: Path, out_dir: Path, workers: int | None, config: FeatureConfig | None,
                 calibrate: bool, seed: int, calibration_queries: int | None,
                 global_descriptors: Sequence[str], global_post: GlobalPostConfig | None,
                 metadata: str | Path | None, items: Sequence[tuple[Path, str]] | None = None,
                 first_row: int = 0, extract: ExtractFn | None = None,
                 elsewhere: dict[str, str] | None = None) -> Job[BuildSummary]:
    """One index directory's build. A shard of a sharded build (:mod:`.shards`) passes its share of the
    folder as ``items`` (path, reference id: ids are decided over the whole folder), the first row of its
    row range, optionally ``extract``, another way to run :func:`_extract_all` (Ray tasks), and the content
    the other shards hold (``elsewhere``: sha256 -> id), which is then recorded as a duplicate here."""
    t0 = time.monotonic()
    previous = None
    cfg = config or FeatureConfig()
    post = global_post or GlobalPostConfig()
    names = [validate_name(n) for n in global_descriptors]  # a bad name fails here, without loading a model
    if (out_dir / MANIFEST).exists():
        previous = read_manifest(out_dir)
        cfg = FeatureConfig.from_dict(previous["features"])
    store = ReferenceStore(out_dir, create=True, first_row=first_row) if (out_dir / DATABASE).exists() else None
    stored_globals = store.get_meta("globals") if store is not None else None
    if stored_globals is not None:
        names = json.loads(stored_globals)
    descs = _descriptors(names)  # the only construction; for a new index a failure leaves nothing on disk
    if store is None:
        store = ReferenceStore(out_dir, create=True, first_row=first_row)
    store.elsewhere = dict(elsewhere or {})
    if stored_globals is None:
        store.set_meta("globals", json.dumps([d.name for d in descs]))
    stored_cfg = store.get_meta("features")
    if stored_cfg is not None:
        cfg = FeatureConfig.from_dict(json.loads(stored_cfg))
    else:
        store.set_meta("features", json.dumps(cfg.to_dict()))
    stored_post = store.get_meta("global_post")
    if stored_post is not None:
        post = GlobalPostConfig.from_dict(json.loads(stored_post))
    else:
        store.set_meta("global_post", json.dumps(post.to_dict()))
    unsupported: list[tuple[str, str]] = []
    known = store.known_paths()
    if items is None:
        yield Progress("scan", 0, 0, str(ref_dir))
        files = scan_images(ref_dir, unsupported)
        ids, renamed = assign_reference_ids(files, ref_dir, store.id_paths())
    else:
        ids, renamed = list(items), []
    todo = [(p, rid) for p, rid in ids if str(p.resolve()) not in known]
    skipped = len(ids) - len(todo)
    before = set(store.rows())
    added, dups, failures = yield from (extract or _extract_all)(store, todo, cfg, workers or default_workers(),
                                                                  descs)
    failures = unsupported + failures
    notes = _featureless_notes(store, sorted(set(store.rows()) - before), [d.name for d in descs])
    local = yield from _write_local_index(store, out_dir)
    entries = yield from _write_global_indexes(store, out_dir, _global_entries(descs), post)
    yield from _find_near_identical(store, out_dir, entries)
    if metadata is not None:
        yield Progress("metadata", 0, 1, str(metadata))
        unmatched = import_metadata(store, metadata)
        failures += [(str(metadata), f"metadata row for unknown reference {rid!r}") for rid in unmatched[:20]]
    calibration = None
    if calibrate:
        # self-calibration opens the index through the engine, so a manifest must exist; it says the
        # calibration is pending, and every other reader refuses it until the build finishes (a build
        # killed here never yields an index that opens with the default calibration without a word)
        write_manifest(out_dir, {**_manifest(out_dir, store, cfg, local, None, ref_dir, previous, entries),
                                 "calibration_pending": True})
        n = calibration_queries
        w = workers or default_workers()
        calibration = yield from (calibrate_index(out_dir, seed=seed, workers=w) if n is None else
                                  calibrate_index(out_dir, seed=seed, max_queries=n, min_queries=n, workers=w))
    write_manifest(out_dir, _manifest(out_dir, store, cfg, local, calibration, ref_dir, previous,
                                                    entries))
    return BuildSummary(added, skipped, dups, failures, store.count(), time.monotonic() - t0, renamed, notes)


def _featureless_notes(store: ReferenceStore, rows: list[int], global_names: Sequence[str]) -> list[str]:
    """Lines for the user about new references no query can find by local features (blank, solid colour,
    tiny or fully transparent images): those with a reliable global descriptor are indexed, but only an
    almost exact copy can match them; those without one (one flat colour: PDQ and the networks call it
    unreliable) cannot be matched at all."""
    counts = store.keypoint_counts()
    empty = [r for r in rows if counts.get(r, 0) == 0]
    if not empty:
        return []
    vectors = {n: store.global_vectors_of(n, empty) for n in global_names}
    matchless = [r for r in empty if not any(r in v and not v[r].low_quality for v in vectors.values())]
    notes = []
    for group, what in ((sorted(set(empty) - set(matchless)), "have no local features (blank, solid colour, tiny or "
                         "transparent?): only an almost exact copy can match them"),
                        (matchless, "have no local features and no reliable global descriptor (blank, one flat "
                         "colour or fully transparent?): no query can match them")):
        if group:
            ids = sorted(store.ids_of_rows(group).values())
            shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
            notes.append(f"{len(ids)} reference(s) {what}: {shown}")
    return notes


def _expand(paths: Iterable[str | Path], unsupported: list[tuple[str, str]]) -> list[tuple[Path, Path | None]]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend((f, p.parent) for f in scan_images(p, unsupported))
        else:
            out.append((p, None))
    return out


def add_to_index(index_dir: str | Path, paths: Iterable[str | Path], workers: int | None = None) -> Job[BuildSummary]:
    """Add files (or folders of files) to an existing index. Reference ids are relative to the index's
    reference root when the file lies below it, else to the added folder's parent, else the file stem."""
    index_dir = Path(index_dir)
    read_manifest(index_dir)  # not an index: say so before taking a lock
    with writer_lock(index_dir, "copylens index add") as note:
        summary = yield from _add_to_index(index_dir, paths, workers)
    if note:
        summary.notes.append(note)
    return summary


@dataclass
class AdditionPlan:
    """What ``index add`` will extract: (file, reference id) pairs, and what it will not."""

    todo: list[tuple[Path, str]]
    failures: list[tuple[str, str]]  # (path, reason), unsupported files included
    skipped: int  # already indexed
    renamed: list[tuple[str, str]]


def plan_additions(paths: Iterable[str | Path], root: Path | None, known: set[str], known_ids: set[str]
                   ) -> AdditionPlan:
    """Reference ids for added files: relative to the index's reference root when the file lies below it,
    else to the added folder's parent, else the file stem; ids decided before any file is decoded."""
    todo, failures, skipped, renamed = [], [], 0, []
    wanted = []
    unsupported: list[tuple[str, str]] = []
    for f, base in _expand(paths, unsupported):
        if str(f.resolve()) in known:
            skipped += 1
            continue
        known.add(str(f.resolve()))  # the same file twice in one command: the second is a skip
        rid = reference_id_for(f, root)
        if root is None or rid == f.stem and base is not None:
            rid = reference_id_for(f, base) if base is not None else rid
        wanted.append((f, rid))
    # as in a build: files sharing an id (a.jpg and a.png, or a new a.png beside an indexed a.jpg) keep
    # their extension, decided before any is decoded, so a broken a.jpg cannot take the id of a good a.png
    shared = Counter(rid for _, rid in wanted)
    for f, rid in wanted:
        if shared[rid] > 1 or rid in known_ids:
            rid = rid + f.suffix
            renamed.append((str(f), rid))
        if rid in known_ids:
            failures.append((str(f), f"reference id {rid!r} is already in the index"))
            continue
        known_ids.add(rid)
        todo.append((f, rid))
    return AdditionPlan(todo, unsupported + failures, skipped, renamed)


def _add_to_index(index_dir: Path, paths: Iterable[str | Path], workers: int | None,
                  plan: AdditionPlan | None = None, elsewhere: dict[str, str] | None = None) -> Job[BuildSummary]:
    """``plan``: what to add, decided by the caller (a sharded index plans over all its shards, and gives
    the content its other shards hold as ``elsewhere``, see :func:`_build_index`)."""
    t0 = time.monotonic()
    manifest = read_manifest(index_dir)
    cfg = FeatureConfig.from_dict(manifest["features"])
    root = Path(manifest["reference_root"]) if manifest.get("reference_root") else None
    store = ReferenceStore(index_dir, writer=True)
    store.elsewhere = dict(elsewhere or {})
    if plan is None:
        plan = plan_additions(paths, root, store.known_paths(), store.known_ids())
    todo, failures, skipped, renamed = plan.todo, plan.failures, plan.skipped, plan.renamed
    local = LocalIndex.load(index_dir / LOCAL_FAISS, manifest["local_index"]["kind"])
    entries = manifest.get("global", [])
    _check_post_files(index_dir, entries)
    descs = _entry_descriptors(index_dir, entries)  # new vectors must come from the network the index has
    before = set(store.rows())
    added, dups, fails = yield from _extract_all(store, todo, cfg, workers or default_workers(), descs)
    new_rows = sorted(set(store.rows()) - before)
    notes = _featureless_notes(store, new_rows, [d.name for d in descs])
    for i, row in enumerate(new_rows):
        local.add(row, rootsift(store.features(row).descriptors))
        if i % 50 == 0:
            yield Progress("faiss", i, len(new_rows))
    dead = store.tombstoned_descriptors() if local.kind != "flat" else 0  # removed, still in an approximate index
    if local.ntotal != store.count_descriptors() + dead:  # an earlier update was interrupted: rebuild
        local = yield from _write_local_index(store, index_dir)
    else:
        local.save(index_dir / LOCAL_FAISS)
    entries = yield from _write_global_indexes(store, index_dir, entries)  # stored whitening, not refitted
    yield from _find_near_identical(store, index_dir, entries)
    write_manifest(index_dir, _manifest(index_dir, store, cfg, local, manifest.get("calibration"),
                                                      None, manifest, entries))
    return BuildSummary(added, skipped, dups, failures + fails, store.count(), time.monotonic() - t0,
                        renamed, notes)


def remove_from_index(index_dir: str | Path, reference_ids: Iterable[str]) -> int:
    """Remove references by id; unknown ids are ignored. Returns how many were removed."""
    index_dir = Path(index_dir)
    read_manifest(index_dir)
    with writer_lock(index_dir, "copylens index remove"):
        return _remove_from_index(index_dir, reference_ids)


def _remove_from_index(index_dir: Path, reference_ids: Iterable[str]) -> int:
    manifest = read_manifest(index_dir)
    _check_post_files(index_dir, manifest.get("global", []))
    store = ReferenceStore(index_dir, writer=True)
    local = LocalIndex.load(index_dir / LOCAL_FAISS, manifest["local_index"]["kind"])
    rows = store.delete(list(reference_ids))
    if rows and local.kind == "flat":
        local.remove_rows(rows)
        local.save(index_dir / LOCAL_FAISS)
    elif len(store.tombstones()) > TOMBSTONE_REBUILD * max(1, store.count()):
        local = run_job(_write_local_index(store, index_dir))  # too many dead vectors: rebuild
    cfg = FeatureConfig.from_dict(manifest["features"])
    entries = manifest.get("global", [])
    if rows:  # no descriptor is needed: the stored vectors (and whitening) are all the FAISS indexes hold
        entries = run_job(_write_global_indexes(store, index_dir, entries))
        run_job(_find_near_identical(store, index_dir, entries))
    write_manifest(index_dir, _manifest(index_dir, store, cfg, local, manifest.get("calibration"),
                                                      None, manifest, entries))
    return len(rows)
