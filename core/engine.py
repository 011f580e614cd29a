"""The query engine: an opened index answering queries.

``Engine.open(index_dir)`` loads the manifest, the reference database and the FAISS index. A query is a
generator job (yields :class:`~copylens.core.progress.Progress`, returns a
:class:`~copylens.core.results.QueryResult`) that runs in the caller's thread; several threads may query
one engine at once.

Pipeline of one query: decode -> RootSIFT (direct, mirrored, inverted) -> FAISS k-NN votes -> top candidates ->
matching + MAGSAC homography per candidate -> calibrated probability -> ranked matches.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .agreement import compare, distinct_edges, likeness, query_edges, warp_reference
from .calibrate import FRAME, AnyCalibrator, calibrator_from_dict, default_calibrator, signal_names
from .denoise import remove_impulses
from .errors import CopyLensError, IndexFormatError
from .features import VARIANTS, FeatureConfig, LocalFeatures, extract, rootsift
from .fileio import file_sha256
from .globalsearch import GlobalBranch, signal_name
from .hashmatch import HashListMatcher
from .imageio import DecodedImage, decode_jpeg, load_image
from .index.local import LocalIndex
from .index.open import open_index
from .index.shards import ShardedGlobalIndex, is_sharded, open_sharded
from .index.store import ReferenceStore
from .placement import insets
from .prior import check_share, shift_scores
from .progress import Job, Progress
from .query_input import QueryInput, QuerySource, read_query
from .recall import RecallConfig, vote
from .regions import ProposalConfig, frame_size, propose_regions, region_pixels, to_query
from .releases import calibrated_with, changed
from .resize import to_longest
from .results import Evidence, Match, QueryResult, ReferenceInfo, Region
from .verify import VerifyConfig, verify


@dataclass(frozen=True, slots=True)
class QueryConfig:
    """Query-time settings (the feature settings themselves come from the index manifest)."""

    query_max_keypoints: int = 1000  # queries keep more keypoints than references: a copy may be a small part
    query_max_side: int = 800  # queries are resized so the longer side is at most this before SIFT
    # smaller queries are upscaled to this longer side before SIFT (None: the index's ``min_side``, 512 by
    # default). SIFT doubles its input once more, so a 200-px query upscaled to 512 costs as much as a 1024-px
    # one; 384 took 6% less time with the same recall@1 on the dev benchmark v2's edited copies
    # (bench/latency_ab.py), but an unedited copy of a 400-500 px reference then no longer gets its
    # reference's keypoints, and a near-identical sibling can outrank it (tests/test_index.py's resume
    # test found one): the index's value stays the default
    query_min_side: int | None = None
    variants: tuple[str, ...] = ("direct", "mirror", "invert", "invert_mirror")  # query variants searched
    variants_verified: int = 2  # per candidate, the variants with the most votes are verified ...
    # ... the second only with at least this share of the first's votes: a copy's own variant collects far
    # more votes than the others, and each variant verified costs a [query x reference] similarity matrix
    variant_vote_share: float = 0.5
    # these of ``variants`` are searched (and verified) for the whole query only, and only when the others
    # found no plausible match with at least ``late_variants_below`` inliers: a colour-inverted copy is rare,
    # and searching its variants doubles the local search (bench/latency_ab.py)
    late_variants: tuple[str, ...] = ("invert", "invert_mirror")
    late_variants_below: int = 20
    late_candidates: int = 4  # references the late variants' search passes to verification at most
    regions: int = 2  # proposed regions (overlay detection) searched besides the whole query; 0 disables
    region_min_score: float = 0.2  # proposals scoring below this are not searched
    region_skip_inliers: int = 40  # a plausible whole-image match with this many inliers makes regions unnecessary ...
    # ... except the best proposal when it scores at least this and the match's inliers avoid it: a picture
    # clearly pasted over a background that is itself a known image (a meme template, a near-duplicate
    # photo); 1.01 disables
    region_strong_score: float = 0.45
    region_candidates: int = 6  # candidates verified per region
    region_min_side: int = 480  # small regions are upscaled to this longer side before SIFT
    # a query with more isolated black/white pixels than this share, and no conclusive match, is searched
    # again with them removed (core/denoise.py: salt-and-pepper noise hides a flat graphic); 0 disables
    impulse_share: float = 0.003
    # proposal methods (core/regions REGISTRY), best proposals of all of them searched
    region_methods: tuple[str, ...] = ProposalConfig().methods
    # candidates with at least this many inliers get the dense edge agreement signals (about 1 ms each)
    agreement_min_inliers: int = 4
    # each of them is also compared with its most alike rival among this many best-verified candidates
    # (core/agreement.distinct_edges): a copy shows what tells its reference from an indexed sibling
    sibling_rivals: int = 8
    # the mean share of each other's edges (above chance) at which two references count as siblings:
    # chosen on the seen kinds' calibration over three calibration seeds (bench/contrast_experiment.py
    # --sibling-likeness, README); 0.3 and 0.65-0.8 were about as good or slightly worse
    sibling_likeness: float = 0.5
    global_neighbours: int = 5  # nearest references looked up per global query variant
    global_candidates: int = 3  # references recalled by each global descriptor join the verified candidates
    # a global neighbour joins the candidates only at or above this rescaled similarity, per metric: PDQ
    # ("hamming") 0.5; a neural ("ip") signal is background-normalised and runs lower: at 0.5 only 46% of
    # copylens-sscd18's right top-1s passed on the dev benchmark, at 0.3 63% with 1.2% of distractor top-1s
    # (bench/global_alone.py); verification decides after recall either way
    global_recall_floor: tuple[tuple[str, float], ...] = (("hamming", 0.5), ("ip", 0.3))
    # below that floor, a branch's nearest reference still joins when it stands out: at or above this
    # similarity and ``global_recall_ratio`` times the next reference's (Lowe's ratio test, on the global
    # ranking). A rotated or recombined smooth wallpaper, with few keypoints, has its reference first at
    # 0.27-0.30 and the next at 0.10; near-identical references fail the ratio, as they should. On the
    # dev v2 wide benchmarks 5.8% (seed 7) and 6.2% (seed 2022) of queries gained a candidate this way, a
    # quarter of them not the query's reference (bench/global_floor.py); a plain floor of 0.2 instead adds
    # 0.13-0.14 per query for one copy more. Metrics not listed (PDQ) have no such rule
    global_recall_distinct: tuple[tuple[str, float], ...] = (("ip", 0.2),)
    global_recall_ratio: float = 2.0
    # the best-verified candidates (at most this many, by inliers) get ``frame_similarity`` (calibrate.FRAME):
    # the best global descriptor's similarity of the query warped back into their reference's frame by their
    # homography. A picture pasted into another keeps the whole query's global similarity near 0; its frame
    # is the picture again. Only indexes whose calibration reads it pay for it; 0 disables
    evidence_frames: int = 2
    evidence_frame_inside: float = 0.9  # the least share of the reference's outline inside the query
    evidence_frame_side: int = 320  # longer side of the warped frame, in pixels
    # the share of copies among the queries of this queue (core/prior.py); None: the share the index's
    # confidence was calibrated for (Engine.calibrated_share, two in three). Scores move by Bayes' rule,
    # rankings never change
    copy_share: float | None = None
    recall: RecallConfig = RecallConfig()
    verify: VerifyConfig = VerifyConfig()


@dataclass(frozen=True, slots=True)
class IndexInfo:
    name: str
    path: str
    num_references: int
    size_bytes: int
    format_version: int
    descriptors: list[str]
    created: str
    calibration: str
    copy_share: float | None = None  # the share of copies the confidence is calibrated for (None: unknown)
    # libraries whose release differs from the one the calibration was fitted with ("name old -> new")
    releases_changed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LocalRecall:
    """Local recall of one query (or region): candidate rows, best-voted first, and what verification needs."""

    rows: list[int]
    variants: list[str]  # query variant names, in the order of ``descriptors``
    descriptors: list[np.ndarray]  # per variant, RootSIFT ``[N x 128]`` float32
    by_row: dict[int, tuple[int, np.ndarray]]  # row -> (votes, votes per variant)


@dataclass(frozen=True, slots=True)
class GlobalRecall:
    """Global recall: rows recalled by any global descriptor, and each descriptor's query vectors."""

    rows: list[int]
    queries: list  # one query vector set per global branch, for the similarities of verified candidates


@dataclass(frozen=True, slots=True)
class Candidate:
    """A verified candidate before scoring: its row, the evidence and the raw signals."""

    row: int
    evidence: Evidence
    signals: dict[str, float]
    sibling: int = -1  # row of the near-identical verified rival its distinct_edges compared it with


def best_plausible(cands: list[Candidate]) -> Candidate | None:
    """The candidate with the most inliers among those whose geometry is plausible (None when none is)."""
    return max((c for c in cands if c.signals["plausible"]), key=lambda c: c.signals["inliers"], default=None)


def strongest_plausible(cands: list[Candidate]) -> float:
    """The most inliers among candidates whose geometry is plausible (0 when none is)."""
    best = best_plausible(cands)
    return 0.0 if best is None else best.signals["inliers"]


def recalled_rows(hits: dict[int, float], metric: str, cfg: QueryConfig) -> list[int]:
    """The rows one global branch recalls from its search ``hits`` (row -> rescaled similarity): its best
    ``global_candidates`` at or above the metric's recall floor, or else its nearest one when it stands out
    (``global_recall_distinct``, ``global_recall_ratio``)."""
    ranked = sorted(((s, r) for r, s in hits.items()), reverse=True)
    floor = dict(cfg.global_recall_floor)[metric]
    rows = [r for s, r in ranked if s >= floor][: cfg.global_candidates]
    distinct = dict(cfg.global_recall_distinct).get(metric)
    if not rows and ranked and distinct is not None:
        first, second = ranked[0][0], ranked[1][0] if len(ranked) > 1 else 0.0
        if first >= distinct and first >= cfg.global_recall_ratio * second:
            rows = [ranked[0][1]]
    return rows


def map_evidence(ev: Evidence, to_query: np.ndarray) -> Evidence:
    """Evidence found in a query region, moved into whole-query pixels by the region's ``[3 x 3]`` map."""
    if ev.num_inliers == 0:
        return dataclasses.replace(ev)

    def move(p: np.ndarray | None) -> np.ndarray | None:
        if p is None or len(p) == 0:
            return p
        moved = cv2.perspectiveTransform(np.asarray(p, np.float64).reshape(-1, 1, 2), to_query)
        return moved.reshape(-1, 2).astype(np.float32)

    return dataclasses.replace(ev, query_points=move(ev.query_points),
                               homography=None if ev.homography is None else to_query @ ev.homography,
                               outline=move(ev.outline))


def _hides(cands: list[Candidate], region: Region, scale: float) -> bool:
    """Whether ``region`` (working pixels) hides the whole query's best plausible match: at most 2% of its
    inliers fall inside it, as under a picture pasted over that match's image. A region of the matched
    picture itself holds its share of the inliers, and searching it would only add weaker rivals."""
    best = best_plausible(cands)
    if best is None:
        return True
    pts = best.evidence.query_points / scale
    x0, y0, x1, y1 = region.box
    inside = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
    return int(inside.sum()) <= 0.02 * len(pts)


def candidate_insets(cands: list[Candidate]) -> list[tuple[int, int]]:
    """Pairs ``(inset, around)`` of ``cands``: the evidence of the first is an inset of the second's, such as
    a picture pasted onto another (placement.insets); the confidence does not weigh it against the second."""
    return insets([c.evidence.query_points for c in cands])


def warp_to_reference(image: DecodedImage, ev: Evidence, side: int) -> np.ndarray | None:
    """The query's pixels where ``ev``'s homography puts its reference, warped back into the reference's
    frame (its aspect, the longer side ``side``): the copied picture upright, whatever was around it
    (None when the outline does not map back to a usable frame)."""
    h = np.asarray(ev.homography, np.float64)
    try:
        corners = cv2.perspectiveTransform(np.asarray(ev.outline, np.float64).reshape(-1, 1, 2), np.linalg.inv(h))
    except np.linalg.LinAlgError:
        return None
    w, hh = corners.reshape(4, 2).max(axis=0)
    if not (np.isfinite(w) and np.isfinite(hh)) or min(w, hh) < 1:
        return None
    k = side / max(w, hh)
    size = (max(16, round(w * k)), max(16, round(hh * k)))
    to_working = np.diag([1.0 / image.scale_to_original, 1.0 / image.scale_to_original, 1.0])
    m = to_working @ h @ np.diag([1.0 / k, 1.0 / k, 1.0])  # frame pixels -> working query pixels
    return cv2.warpPerspective(image.pixels, m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT)


def region_to_query(region: Region) -> np.ndarray:
    """The ``[3 x 3]`` map from a searched region's own frame into whole-query pixels: a shift for a box,
    the rectification's inverse for a quadrilateral."""
    if region.quad is not None:
        return to_query(region.quad)
    return np.array([[1.0, 0.0, region.box[0]], [0.0, 1.0, region.box[1]], [0.0, 0.0, 1.0]])


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _worker_pool() -> ThreadPoolExecutor:
    """Two threads shared by every engine, for work that overlaps the query's own thread (the whole query's
    global descriptors, beside SIFT); both release the GIL."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="copylens-engine")
        return _POOL


def _dir_size(path: Path) -> int:
    """Bytes of an index directory (a sharded one's shard folders included)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _calibrator(manifest: dict, globals_: list[GlobalBranch], what: str) -> AnyCalibrator:
    """The manifest's confidence model for these global branches (the default model when it has none)."""
    names = signal_names([signal_name(g.name) for g in globals_])
    cal = manifest.get("calibration")
    try:
        return calibrator_from_dict(cal, names) if cal else default_calibrator(names)
    except (ValueError, TypeError, KeyError) as exc:
        raise IndexFormatError(f"{what} is damaged ({exc}); rebuild the index") from None


class Engine:
    """An opened CopyLens index."""

    def __init__(self, index_dir: Path, manifest: dict, store: ReferenceStore, local: LocalIndex,
                 calibrator: AnyCalibrator, config: QueryConfig,
                 globals_: list[GlobalBranch] | None = None, hashlists: HashListMatcher | None = None) -> None:
        self.index_dir = index_dir
        self.manifest = manifest
        self.store = store
        self.local = local
        self.calibrator = calibrator
        self.config = config
        self.features = FeatureConfig.from_dict(manifest["features"])
        self.globals = globals_ or []  # global branches of dual retrieval (PDQ, neural descriptors)
        self.tombstones = store.tombstones()  # removed rows whose vectors an approximate index still holds
        self.keypoint_counts = store.keypoint_counts()  # row -> keypoints, for vote normalisation
        self.hashlists = hashlists  # imported PDQ hash lists, when the index holds any
        if config.copy_share is not None:
            try:
                self.set_copy_share(config.copy_share)  # checked now, not at the first query
            except (ValueError, CopyLensError):
                store.close()
                raise

    @classmethod
    def open(cls, index_dir: str | Path, config: QueryConfig | None = None, device: str | None = None,
             allow_pending: bool = False, ray: str | None = None) -> Engine:
        """Open an index (one directory, or a sharded one: :mod:`.index.shards`). ``device`` ("cpu", "cuda",
        ...; None or "auto" = CUDA when present) is where neural global descriptors run; it never changes
        what they compute beyond floating-point noise. ``ray`` ("auto" or a Ray address): a sharded index's
        shards are held by Ray actors (:mod:`.cluster`) instead of this process."""
        if is_sharded(index_dir):
            return cls._open_sharded(Path(index_dir), config, device, allow_pending, ray)
        if ray is not None:
            raise CopyLensError(f"{index_dir}: not a sharded index; Ray serves the shards of one built with "
                                "'copylens index build REF_DIR --out INDEX --shards K'")
        opened = open_index(index_dir, allow_pending)
        index_dir, manifest, store, local = opened.index_dir, opened.manifest, opened.store, opened.local
        try:
            globals_ = [GlobalBranch.open(index_dir, e, device) for e in manifest.get("global", [])]
            calibrator = _calibrator(manifest, globals_, f"{index_dir}: the manifest's calibration")
            hashlists = HashListMatcher.open(index_dir, manifest, store)
        except BaseException:
            store.close()
            raise
        return cls(index_dir, manifest, store, local, calibrator, config or QueryConfig(), globals_, hashlists)

    @classmethod
    def _open_sharded(cls, index_dir: Path, config: QueryConfig | None, device: str | None, allow_pending: bool,
                      ray: str | None) -> Engine:
        """A sharded index (:mod:`.index.shards`): the same pipeline over merged views of the shards, which
        run in this process or, with ``ray`` (``"auto"`` or a cluster address), in Ray actors."""
        if ray is None:
            opened = open_sharded(index_dir, allow_pending)
        else:
            from .cluster import connect  # Ray is an optional extra: imported only when asked for
            from .cluster.shards import RayShards

            connect(ray)
            opened = open_sharded(index_dir, allow_pending, RayShards, device=device)
        manifest, store = opened.manifest, opened.store
        try:
            globals_ = []
            for i, e in enumerate(manifest.get("global", [])):
                white = e.get("whitening") if isinstance(e.get("whitening"), dict) else {}
                merged = ShardedGlobalIndex(store.shards, i, int(white.get("dim", e["dim"])),
                                            sum(store.shards.each("global_count", i)))
                globals_.append(GlobalBranch.open(opened.shard_dirs[0], e, device, index=merged))
            calibrator = _calibrator(manifest, globals_, f"{index_dir}: the calibration in shards.json")
        except BaseException:
            store.close()
            raise
        return cls(index_dir, manifest, store, opened.local, calibrator, config or QueryConfig(), globals_)

    @property
    def calibrated_share(self) -> float | None:
        """The share of copies among queries that the index's confidences are right for (None: an index
        calibrated before 2026-12-05, or not at all, which knows no such share)."""
        return getattr(self.calibrator, "copy_share", None)

    @property
    def score_share(self) -> float | None:
        """The share of copies that this engine's scores are for: the configured one, else the calibrated
        one (None: neither is known)."""
        return self.config.copy_share if self.config.copy_share is not None else self.calibrated_share

    def require_calibrated_share(self) -> float:
        share = self.calibrated_share
        if share is None:
            raise CopyLensError(f"{self.index_dir}: this index's confidence model does not record the share of "
                                "copies it was calibrated for, so it cannot be moved to another share; rebuild "
                                "the index ('copylens index build') to recalibrate it")
        return share

    def set_copy_share(self, share: float | None) -> None:
        """Score later queries for a queue with this share of copies (None: as calibrated). ValueError for
        a share outside 1-99%, CopyLensError when the index's calibration records no share."""
        if share is not None:
            share = check_share(share)
            self.require_calibrated_share()
        self.config = dataclasses.replace(self.config, copy_share=share)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def info(self) -> IndexInfo:
        m = self.manifest
        return IndexInfo(name=m.get("name", self.index_dir.name), path=str(self.index_dir),
                         num_references=int(m["counts"]["references"]), size_bytes=_dir_size(self.index_dir),
                         format_version=int(m["format_version"]), descriptors=list(m.get("descriptors", [])),
                         created=str(m.get("created", "")), calibration=self.calibrator.source,
                         copy_share=self.calibrated_share, releases_changed=tuple(changed(self.calibrated_with)))

    @property
    def calibrated_with(self) -> dict[str, str] | None:
        """The Python and library releases the index's calibration was fitted with (None: not recorded)."""
        return calibrated_with(self.manifest)

    # --- references ------------------------------------------------------------------------------
    def references(self) -> list[ReferenceInfo]:
        return self.store.infos()

    def reference(self, reference_id: str) -> ReferenceInfo:
        return self.store.info(reference_id)

    def thumbnail(self, reference_id: str) -> np.ndarray:
        return decode_jpeg(self.store.thumbnail(reference_id))

    def near_identical(self, reference_id: str) -> list[str]:
        """References the index found near-identical to this one (at build time, by PDQ)."""
        return self.store.near_identical(reference_id)

    def metadata(self, reference_id: str) -> dict[str, str]:
        """What the index's metadata sidecar says about a reference (title, artist, licence, ...)."""
        return self.store.metadata(reference_id)

    def reference_image(self, reference_id: str, max_side: int | None = 1600) -> DecodedImage:
        """The original reference if still present and unchanged, else its stored thumbnail."""
        info = self.reference(reference_id)
        p = Path(info.path)
        try:
            if p.is_file() and file_sha256(p) == info.sha256:
                img = load_image(p, max_side=max_side)
                return DecodedImage(img.pixels, (info.width, info.height), str(p))
        except OSError:
            pass
        return DecodedImage(self.thumbnail(reference_id), (info.width, info.height), f"<thumbnail {reference_id}>")

    # --- queries ---------------------------------------------------------------------------------
    def search(self, source: QuerySource | str | Path | bytes | np.ndarray, query_id: str | None = None,
               top_k: int = 10, on_read: Callable[[QueryInput], None] | None = None) -> Job[QueryResult]:
        """The one query entry point of every front end: read ``source`` (a path, encoded bytes or an RGB
        array) once, decode it at ``query_max_side``, and query it. ``on_read`` sees the read input before
        the search starts (the window builds its thumbnail from it). Raises ``ImageLoadError`` for a bad
        file; the result carries the query's sha256."""
        src = QuerySource.of(source)
        yield Progress("decode", 0, 1, src.label)
        t0 = time.perf_counter()
        read = read_query(src, self.config.query_max_side)
        decode_ms = (time.perf_counter() - t0) * 1000
        if on_read is not None:
            on_read(read)
        yield Progress("decode", 1, 1, src.label)
        qid = query_id if query_id is not None else (Path(src.path).stem if src.path else src.label)
        result = yield from self.query(read.image, query_id=qid, top_k=top_k)
        result.timings_ms["decode"] = decode_ms
        return dataclasses.replace(result, query_sha256=read.sha256)

    def query_features(self, image: DecodedImage) -> LocalFeatures:
        cfg = dataclasses.replace(self.features, max_side=max(self.features.max_side, self.config.query_max_side),
                                  max_keypoints=self.config.query_max_keypoints)
        if self.config.query_min_side is not None:
            cfg = dataclasses.replace(cfg, min_side=self.config.query_min_side)
        return extract(image, cfg)

    def query(self, image: DecodedImage, query_id: str = "query", top_k: int = 10) -> Job[QueryResult]:
        timings: dict[str, float] = {}
        candidates, regions = yield from self.candidates(image, timings=timings)
        t = time.perf_counter()
        scores = self.calibrator.predict_query([c.signals for c in candidates], candidate_insets(candidates))
        if self.config.copy_share is not None:
            scores = shift_scores(scores, self.require_calibrated_share(), self.config.copy_share)
        ids = self.store.ids_of_rows([c.row for c in candidates])
        matches = [Match(ids[c.row], float(s), c.evidence, c.signals, ids.get(c.sibling, ""))
                   for c, s in zip(candidates, scores, strict=True) if c.row in ids]
        matches.sort(key=lambda m: (-m.score, -m.num_inliers, m.reference_id))
        timings["score"] = (time.perf_counter() - t) * 1000
        hash_matches = []
        if self.hashlists is not None:
            t = time.perf_counter()
            hash_matches = self.hashlists.match(image, regions)[:top_k]
            timings["hashlists"] = (time.perf_counter() - t) * 1000
        return QueryResult(query_id, image.source, image.original_size, matches[:top_k], regions, timings,
                           hash_matches=hash_matches, copy_share=self.score_share)

    def candidates(self, image: DecodedImage, exclude_rows: frozenset[int] = frozenset(),
                   timings: dict[str, float] | None = None) -> Job[tuple[list[Candidate], list[Region]]]:
        """Verified candidates for the whole query and, when it is not conclusive, its proposed regions.

        Per reference the candidate with the most inliers is kept (a rule independent of the calibration,
        which is fitted on these very candidates), and it carries, per global descriptor, the highest
        similarity that reference reached in any search (the whole image or a region): a copy pasted into a
        screenshot is found by the global descriptor of its region even when the whole image gave more
        inliers. Returns the candidates and the regions searched (the whole image first).

        ``exclude_rows``: references searched as if they were not indexed (left out of recall, of each
        other candidate's rivals and of the global score normalisation's background); self-calibration
        searches an edited reference this way, as a query whose original is not indexed.
        """
        timings = timings if timings is not None else {}
        cfg = self.config
        yield Progress("features", 0, 1)
        # the whole query's global descriptors run on a worker thread while SIFT runs here (both release
        # the GIL; SIFT alone keeps two cores only partly busy)
        glob_first = _worker_pool().submit(self.global_recall, image.pixels, exclude_rows | self.tombstones,
                                           exclude_rows)
        t = time.perf_counter()
        feats = self.query_features(image)
        timings["features"] = (time.perf_counter() - t) * 1000
        w, h = image.original_size
        full = Region((0.0, 0.0, float(w), float(h)), 1.0, "full")
        best: dict[int, tuple[tuple[float, float], Candidate]] = {}
        global_names = [signal_name(g.name) for g in self.globals]
        best_global: dict[int, dict[str, float]] = {}  # row -> global signal -> highest over all searches

        def merge(cands: list[Candidate]) -> float:
            """Keep each reference's strongest candidate; return the strongest plausible inlier count."""
            for c in cands:
                key = (c.signals["inliers"], c.signals["votes"])
                if c.row not in best or key > best[c.row][0]:
                    best[c.row] = (key, c)
                top = best_global.setdefault(c.row, {})
                for name in global_names:
                    if name in c.signals and c.signals[name] > top.get(name, -np.inf):
                        top[name] = c.signals[name]
            return strongest_plausible(cands)

        first = yield from self.search_and_verify(feats, full, exclude_rows, timings, pixels=image.pixels,
                                                  glob=glob_first)
        top = merge(first)
        searched = [full]
        if cfg.impulse_share > 0 and top < cfg.region_skip_inliers:
            clean = remove_impulses(image.pixels, cfg.impulse_share)
            if clean is not image.pixels:
                t = time.perf_counter()
                cleaned = DecodedImage(clean, image.original_size, image.source)
                cfeats = self.query_features(cleaned)
                timings["denoise"] = (time.perf_counter() - t) * 1000
                region = Region(full.box, 1.0, "denoised")
                searched.append(region)
                top = max(top, merge((yield from self.search_and_verify(cfeats, region, exclude_rows, timings,
                                                                        pixels=clean, late=False))))
        if cfg.regions > 0 and (top < cfg.region_skip_inliers or cfg.region_strong_score <= 1.0):
            t = time.perf_counter()
            scale = image.scale_to_original
            proposals = [r for r in propose_regions(image.pixels, ProposalConfig(methods=cfg.region_methods))
                         if r.score >= cfg.region_min_score][: cfg.regions]
            if top >= cfg.region_skip_inliers:  # a conclusive whole image: only a clearly pasted picture
                proposals = [r for r in proposals[:1]
                             if r.score >= cfg.region_strong_score and _hides(first, r, scale)]
            timings["regions"] = (time.perf_counter() - t) * 1000
            for r in proposals:
                x0, y0, x1, y1 = (int(round(v)) for v in r.box)
                quad = None if r.quad is None else tuple(float(v * scale) for v in r.quad)
                region = Region(tuple(float(v * scale) for v in (x0, y0, x1, y1)), r.score, r.kind, quad)
                crop = region_pixels(image.pixels, region, 1.0 / scale)  # a quadrilateral searched upright
                if min(crop.shape[:2]) < 16:
                    continue
                size = frame_size(quad) if quad is not None else ((x1 - x0) * scale, (y1 - y0) * scale)
                rfeats = self._region_features(crop, size)
                searched.append(region)
                # a region is searched without the late (colour-inverted) variants: an inverted copy pasted
                # into another picture is not worth their cost on every query without a strong match
                merge((yield from self.search_and_verify(rfeats, region, exclude_rows, timings,
                                                         cfg.region_candidates, pixels=crop, late=False)))
        out = [dataclasses.replace(c, signals={**c.signals, **best_global[c.row]}) for _, c in best.values()]
        t = time.perf_counter()
        self._evidence_frames(image, out, exclude_rows)
        timings["frames"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        out = self._edge_agreement(image, out)
        timings["agreement"] = (time.perf_counter() - t) * 1000
        return out, searched

    def _evidence_frames(self, image: DecodedImage, cands: list[Candidate], absent: frozenset[int]) -> None:
        """``frame_similarity`` (calibrate.FRAME) of the best-verified candidates (QueryConfig.evidence_frames)
        whose reference lies inside the query: the highest global similarity of the query warped into the
        reference's frame by the candidate's homography (what the evidence says the copied picture is), in
        place. A cropped copy's outline leaves the query; its frame would be partly empty, so it has none
        (and the frame's expert says nothing about it)."""
        cfg = self.config
        if not self.globals or cfg.evidence_frames <= 0 or FRAME not in self.calibrator.names:
            # a model without the frames' expert (an index calibrated before it, a stored default model) does
            # not read them; an index pending calibration has the default over every signal, so
            # self-calibration's searches make them
            return
        w, h = image.original_size
        whole = np.float32([[0, 0], [w, 0], [w, h], [0, h]])

        def shown(outline: np.ndarray) -> float:
            """The share of the reference's outline inside the query."""
            poly = np.asarray(outline, np.float32)
            area = abs(cv2.contourArea(poly))
            if not area > 0:
                return 0.0
            try:
                inter, _ = cv2.intersectConvexConvex(poly, whole)
            except cv2.error:  # a degenerate outline: no frame rather than a failed query
                return 0.0
            return float(inter) / area

        todo = sorted((c for c in cands if c.evidence.outline is not None and c.evidence.homography is not None),
                      key=lambda c: -c.evidence.num_inliers)[:cfg.evidence_frames]
        todo = [c for c in todo if shown(c.evidence.outline) >= cfg.evidence_frame_inside]
        frames = [(c, warp_to_reference(image, c.evidence, cfg.evidence_frame_side)) for c in todo]
        # a copy found through the colour-inverted query variant is inverted back, as its reference looks
        frames = [(c, 255 - f if c.evidence.variant.startswith("invert") else f) for c, f in frames if f is not None]
        if not frames:
            return
        rows = [c.row for c, _ in frames]
        for g in self.globals:
            vectors = self.store.global_vectors_of(g.name, rows)
            gone = self._absent_vectors(g, absent)
            # the frame is upright already: one vector each, as references are described (no query variants)
            batch = g.descriptor.extract([f for _, f in frames])
            for i, (c, _) in enumerate(frames):
                if batch.low_quality[i]:  # a flat frame: no reliable descriptor (as for a flat query)
                    continue
                sim = g.similarity(g.query_vectors(batch.vectors[i:i + 1], gone), vectors.get(c.row))
                c.signals[FRAME] = max(c.signals.get(FRAME, 0.0), sim)

    def _absent_vectors(self, g: GlobalBranch, absent: frozenset[int]) -> np.ndarray | None:
        """The raw vectors of ``absent`` rows for branch ``g``'s score normalisation (None: none to leave out)."""
        if not absent or g.normalizer is None:
            return None
        vecs = self.store.global_vectors_of(g.name, sorted(absent))
        return np.stack([v.vector for v in vecs.values()]) if vecs else None

    def _edge_agreement(self, image: DecodedImage, cands: list[Candidate]) -> list[Candidate]:
        """Add ``edge_recall`` / ``edge_precision`` (core/agreement.py) to candidates with a homography: the
        reference's stored thumbnail warped onto the query, edges compared over the overlap; and
        ``distinct_edges``: against the most alike of the best-verified other candidates (an indexed
        sibling), whether the query shows what tells them apart; without a sibling among them, the
        reference's edges all tell it apart, so the signal is its ``edge_recall``."""
        cfg = self.config
        todo = [c for c in cands if c.evidence.homography is not None
                and c.evidence.num_inliers >= cfg.agreement_min_inliers]
        if not todo:
            return cands
        thumbs = self.store.thumbnails_of([c.row for c in todo])
        qedges = query_edges(image.pixels, image.scale_to_original)
        warped = []
        for c in todo:
            if c.row not in thumbs:  # removed after the FAISS index was loaded
                continue
            jpeg, width = thumbs[c.row]
            thumb = decode_jpeg(jpeg)
            w = warp_reference(qedges, thumb, width / max(1, thumb.shape[1]), c.evidence.homography)
            recall, precision = compare(qedges, w) if w is not None else (float("nan"), float("nan"))
            if recall == recall:  # NaN: too few edges to judge; the calibration's neutral value stands in
                c.signals["edge_recall"], c.signals["edge_precision"] = recall, precision
                warped.append((c, w))
        rivals = sorted(warped, key=lambda cw: -cw[0].evidence.num_inliers)[:cfg.sibling_rivals]
        siblings: dict[int, int] = {}
        for c, w in warped:
            alike = [(0.5 * (likeness(w, v) + likeness(v, w)), v, d.row) for d, v in rivals if d is not c]
            best, rival, rival_row = max(alike, key=lambda a: a[0], default=(0.0, None, -1))
            if best < cfg.sibling_likeness:
                c.signals["distinct_edges"] = c.signals["edge_recall"]
                continue
            value = distinct_edges(qedges, w, rival)
            c.signals["sibling_likeness"] = best  # shown in the window's explanation
            siblings[id(c)] = rival_row
            if value == value:  # NaN: identical where they overlap, nothing tells them apart
                c.signals["distinct_edges"] = value
        return [dataclasses.replace(c, sibling=siblings[id(c)]) if id(c) in siblings else c for c in cands]

    def _region_features(self, crop: np.ndarray, size: tuple[float, float]) -> LocalFeatures:
        """Features of a query region's pixels, keypoints in the region's own original-pixel frame
        (``size``: its width and height there)."""
        cfg = self.config
        rw, rh = size
        if max(crop.shape[:2]) < cfg.region_min_side:
            crop, _ = to_longest(crop, cfg.region_min_side, cv2.INTER_CUBIC)
        return self.query_features(DecodedImage(np.ascontiguousarray(crop), (round(rw), round(rh)), "<region>"))

    def search_and_verify(self, feats: LocalFeatures, region: Region | None = None,
                          exclude_rows: frozenset[int] = frozenset(),
                          timings: dict[str, float] | None = None,
                          candidates: int | None = None, pixels: np.ndarray | None = None,
                          late: bool = True, glob: Future[GlobalRecall] | None = None) -> Job[list[Candidate]]:
        """Local recall, global recall (of ``pixels`` when given), then verification of the union.

        Rows in ``exclude_rows`` are ignored. Every candidate carries its local statistics and one global
        similarity per global descriptor. The config's ``late_variants`` are searched only when the others
        found no strong plausible match (and never with ``late=False``); a reference may then appear twice
        (once per set of variants).
        """
        timings = timings if timings is not None else {}
        cfg = self.config
        excluded = exclude_rows | self.tombstones
        early = [n for n in cfg.variants if n not in cfg.late_variants]
        more_variants = [n for n in cfg.variants if n in cfg.late_variants]
        if not early:
            early, more_variants = more_variants, []
        t = time.perf_counter()
        local = self.local_recall(feats, excluded, candidates, early)
        timings["search"] = timings.get("search", 0.0) + (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        # ``glob``: the global recall of ``pixels`` already under way (then "global" times the wait)
        glob = self.global_recall(pixels, excluded, exclude_rows) if glob is None else glob.result()
        timings["global"] = timings.get("global", 0.0) + (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        rows = local.rows + [r for r in glob.rows if r not in local.rows]
        out = yield from self.verify_candidates(feats, rows, local, glob, region)
        timings["verify"] = timings.get("verify", 0.0) + (time.perf_counter() - t) * 1000
        if late and more_variants and strongest_plausible(out) < cfg.late_variants_below:
            # the late variants' own recall and verification; a reference verified in both keeps (in
            # Engine.candidates) the candidate with more inliers
            t = time.perf_counter()
            more = self.local_recall(feats, excluded, candidates, more_variants)
            timings["search"] += (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            # a reference the late variants vote for no more than the early ones did is not checked again
            rows = [r for r in more.rows if r not in local.by_row or more.by_row[r][0] > local.by_row[r][0]]
            rows = rows[: cfg.late_candidates]
            out += yield from self.verify_candidates(feats, rows, more, GlobalRecall([], glob.queries), region)
            timings["verify"] += (time.perf_counter() - t) * 1000
        return out

    def local_recall(self, feats: LocalFeatures, excluded: frozenset[int],
                     candidates: int | None = None, variants: list[str] | None = None) -> LocalRecall:
        """RootSIFT of each query variant (``variants``, default all the config's) -> FAISS neighbours ->
        votes -> the best-voted references."""
        cfg = self.config
        names = list(cfg.variants) if variants is None else list(variants)
        descs = [rootsift(feats.descriptors[:, VARIANTS[n]]) for n in names]
        neigh = self.local.search(np.vstack(descs), cfg.recall.neighbours)
        votes = vote(neigh, len(names), cfg.recall, excluded)
        n_cand = cfg.recall.candidates if candidates is None else candidates
        by_row = {int(r): (int(v), bv) for r, v, bv in zip(votes.rows, votes.votes, votes.by_variant, strict=True)}
        rows = [int(r) for r in votes.rows[:n_cand]]
        extra = cfg.recall.normalised_candidates if candidates is None else 0
        if extra and len(votes.rows) > n_cand:
            rest = votes.rows[n_cand:]
            kp = np.array([self.keypoint_counts.get(int(r), 1) for r in rest], np.float64)
            norm = votes.votes[n_cand:] / np.sqrt(np.maximum(kp, 16.0))
            rows += [int(rest[i]) for i in np.argsort(-norm, kind="stable")[:extra] if votes.votes[n_cand + i] >= 2]
        return LocalRecall(rows, names, descs, by_row)

    def global_recall(self, pixels: np.ndarray | None, excluded: frozenset[int],
                      absent: frozenset[int] = frozenset()) -> GlobalRecall:
        """Each global descriptor of ``pixels`` -> its nearest references above the recall floor, ``excluded``
        rows left out. ``absent`` rows are searched as if they were not indexed at all: left out of the
        score normalisation's background too (self-calibration's queries whose original is not indexed)."""
        cfg = self.config
        rows: list[int] = []
        queries = []
        for g in self.globals:
            gone = self._absent_vectors(g, absent)
            qv = (g.query(pixels, gone) if pixels is not None and min(pixels.shape[:2]) >= 16
                  else g.query_empty())
            hits = {r: s for r, s in g.search(qv, cfg.global_neighbours).items() if r not in excluded}
            rows += [r for r in recalled_rows(hits, g.descriptor.metric, cfg) if r not in rows]
            queries.append(qv)
        return GlobalRecall(rows, queries)

    def verify_candidates(self, feats: LocalFeatures, rows: list[int], local: LocalRecall, glob: GlobalRecall,
                          region: Region | None) -> Job[list[Candidate]]:
        """Match and fit a homography per candidate row; attach votes and global similarities."""
        cfg = self.config
        names = local.variants
        out: list[Candidate] = []
        # one read each for all candidates (a sharded index's shards may be other processes: Ray actors)
        stored = self.store.features_of(rows) if rows else {}
        vectors = {g.name: self.store.global_vectors_of(g.name, rows) for g in self.globals} if rows else {}
        for i, row in enumerate(rows):
            yield Progress("verify", i, len(rows))
            ref = stored.get(row)
            if ref is None:  # removed from the database after the FAISS index was loaded
                continue
            nvotes, by_variant = local.by_row.get(row, (0, np.zeros(len(names), np.int64)))
            order = np.argsort(-by_variant, kind="stable")[: cfg.variants_verified]
            floor = cfg.variant_vote_share * by_variant[order[0]]
            tried = [(names[j], local.descriptors[j]) for k, j in enumerate(order)
                     if k == 0 or (by_variant[j] >= floor and (by_variant[j] > 0 or j in (0, 1)))]
            v = verify(feats.keypoints, tried, feats.image_size, ref.keypoints, rootsift(ref.descriptors),
                       ref.image_size, cfg.verify, region)
            signals = dict(v.stats)
            signals["votes"] = float(nvotes)
            signals["inlier_share"] = signals["inliers"] / max(1, len(ref))
            signals["reference_keypoints"] = float(len(ref))  # context, not evidence (see calibrate.CONTEXT)
            signals["query_keypoints"] = float(len(feats))
            for g, qv in zip(self.globals, glob.queries, strict=True):
                signals[signal_name(g.name)] = g.similarity(qv, vectors[g.name].get(row))
            ev = v.evidence
            if region is not None and region.kind != "full":
                ev = map_evidence(ev, region_to_query(region))
            out.append(Candidate(row, ev, signals))
        return out
