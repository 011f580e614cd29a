"""Self-calibration of an index: fit the confidence model on edited copies of the index's own references.

For a sample of references, an edit from the benchmark edit library is applied (with its own seed, so the
calibration never sees the benchmark's exact queries) and the edited image is searched like a query: the
source reference's candidate is a positive, every other candidate a negative. Half as many more edited
references are searched with their own row excluded (``Engine.candidates``' ``exclude_rows``): left out of
recall, of the other candidates' rivals and of the global score normalisation's background, exactly as if
they had never been indexed. These are the queries whose original is not in the index (distractors, a
third of the queries the later stages are fitted on). Until 2026-12-05 each copy query was reused instead,
its copy's candidate removed; but the original had still taken the background's skipped place and been
every sibling's rival, so the other references looked less like a copy than they do to a real distractor
(README, "Calibration queries whose original is not indexed"). The fitted model is stored in the manifest
as plain numbers.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .calibrate import default_calibrator, fit_contrast, fit_fused, fit_top1, unframed
from .edits import random_edit
from .engine import Engine, candidate_insets
from .errors import CopyLensError
from .imageio import from_array
from .progress import Job, Progress, bounded_map, run_job
from .releases import releases

# edited copies searched at most (about 100 s on 2 cores for a 4k-reference index). 480 rather than 160
# since 2026-12-05: over calibration seeds 0-2 of dev v2 and its seed-7 replicate, icons' and wallpapers'
# ECE fell on most seeds (seed 7: icons .055/.061/.047 -> .037/.051/.047, wallpapers .065/.067/.076 ->
# .042/.059/.072) and ECE overall lower or equal on all six, μAP within 0.002 (README, "Three times the
# calibration queries")
MAX_QUERIES = 480
MIN_QUERIES = 60  # small indexes get several edits per reference to reach this many
MIN_POSITIVES = 8  # fewer positives than this: keep the conservative default model
CAL_SEED_OFFSET = 7919  # calibration edits use seed + this, never the benchmark's seed stream
# which references calibration edits are made of (see pick_rows): half from references with few keypoints,
# so the second stage's lead is fitted on graphics' families too (dev benchmark v2: icons' ECE 0.107 with
# uniform sampling, 0.083 stratified; every kind's μAP up; bench/contrast_experiment.py, README)
SAMPLING = "stratified"
CONTRAST = True  # fit the second stage over each query's candidates (calibrate.ContrastCalibrator)
TOP1 = True  # then recalibrate it on each calibration query's top candidate (calibrate.fit_top1)
# weight of each calibration query seen again as a distractor (its copy removed): 0.5 makes distractors a
# third of the queries the second stage is fitted on; chosen on the seen kinds (ECE lower on each than at 1)
CONTRAST_DISTRACTOR_WEIGHT = 0.5
# queries whose original is not indexed, per copy query: an edited reference searched with it excluded
# (from recall, from the other candidates' rivals and from the global score normalisation's background), at
# weight ABSENT_WEIGHT, so they are a third of the views the later stages are fitted on, as the copy-removed
# views at CONTRAST_DISTRACTOR_WEIGHT were before. Those views kept the original in the background and as
# every other candidate's rival, so the other references scored lower than for a real distractor (small
# hidden-set-sized index: icon distractors' best style-mate without inliers reached copylens-sscd18g >= 0.3
# for 12% of benchmark distractors and 2% of copy-removed views; README, "Calibration queries whose
# original is not indexed")
DISTRACTOR_QUERIES = 0.5
ABSENT_WEIGHT = 1.0
FIRST_STAGE_ABSENT = False  # fit the first stage on the distractor queries' candidates too
# an inset's lead in the second stage skips the candidate around it (placement.insets)
INSETS = True
FEW_KEYPOINTS = 300  # "few keypoints" for stratified sampling (photos: median 500, p10 about 300)


def pick_rows(rows: list[int], keypoints: dict[int, int], n: int, rng: np.random.Generator,
              strategy: str = "uniform") -> list[int]:
    """``n`` reference rows to calibrate on.

    ``uniform``: a random sample. ``stratified``: half from the references with few keypoints (flat
    graphics, small images: below ``FEW_KEYPOINTS``) and half from the rest, when both exist, so the
    confidence is fitted on the evidence graphics give and not only on the photos that dominate most
    collections. The split uses only the keypoint count, never where a reference came from.
    """
    rows = [int(r) for r in rows]
    if strategy == "uniform":
        return [int(r) for r in rng.permutation(rows)[:n]]
    if strategy != "stratified":
        raise ValueError(f"unknown calibration sampling {strategy!r}")
    few = [r for r in rows if keypoints.get(r, 0) < FEW_KEYPOINTS]
    many = [r for r in rows if keypoints.get(r, 0) >= FEW_KEYPOINTS]
    if not few or not many:
        return [int(r) for r in rng.permutation(rows)[:n]]
    k_few = min(len(few), n // 2)
    picked = list(rng.permutation(few)[:k_few]) + list(rng.permutation(many)[: n - k_few])
    return [int(r) for r in rng.permutation(picked)]


@dataclass
class CalibrationPairs:
    """Every candidate of every calibration query: its signals, its label (1 when it is the edited
    reference), the query's source row and the query's number; ``absent``: the numbers of the queries
    searched as if their source were not indexed (all their candidates are non-copies)."""

    signals: list[dict]
    labels: list[int]
    sources: list[int]
    queries: list[int]
    absent: list[int]
    # pairs (inset, around) of candidates (indices into signals) of one query: the evidence of the first is
    # an inset of the second's (placement.insets)
    insets: list[tuple[int, int]] = field(default_factory=list)


def calibration_pairs(engine: Engine, seed: int = 0, max_queries: int = MAX_QUERIES,
                      min_queries: int = MIN_QUERIES, workers: int = 1,
                      strategy: str = SAMPLING, distractor_queries: float = DISTRACTOR_QUERIES,
                      ) -> Job[CalibrationPairs]:
    """Edited copies of sampled references searched through ``engine``, and ``distractor_queries`` as
    many more searched with their source excluded (``Engine.candidates``' ``exclude_rows``), as queries
    whose original is not indexed."""
    rows = [row for _, row in engine.store.rows_by_id()]  # by id: the same sample however rows are numbered
    rng = np.random.default_rng(seed + CAL_SEED_OFFSET)
    per_ref = max(1, min(5, math.ceil(min_queries / max(1, len(rows)))))
    keypoints = engine.store.keypoint_counts()
    picks = pick_rows(rows, keypoints, max(1, max_queries // per_ref), rng, strategy)
    jobs = [(int(r), False) for r in picks for _ in range(per_ref)]
    # the distractor queries draw from their own stream: the copy queries stay those of a seed
    rng_absent = np.random.default_rng((seed + CAL_SEED_OFFSET, 1))
    n_absent = round(len(jobs) * distractor_queries) if len(rows) > 1 else 0
    absent_picks = pick_rows(rows, keypoints, n_absent, rng_absent, strategy) if n_absent else []
    jobs += [(int(absent_picks[i % len(absent_picks)]), True) for i in range(n_absent)]
    ids = engine.store.ids_of_rows(sorted({r for r, _ in jobs}))

    def search(query, exclude: frozenset[int]) -> list:
        return run_job(engine.candidates(query, exclude))[0]

    results: dict[int, tuple[int, list]] = {}
    done = 0

    def tasks():
        """Edits drawn here, in job order (in the caller's thread), so the calibration is reproducible."""
        nonlocal done
        for i, (row, absent) in enumerate(jobs):
            try:
                image = engine.reference_image(ids[row], max_side=1024)
            except (CopyLensError, KeyError):
                done += 1
                continue
            edited = random_edit(image.pixels, rng_absent if absent else rng)
            query = from_array(edited.pixels, "<calibration>", max_side=engine.config.query_max_side)
            exclude = frozenset({row}) if absent else frozenset()
            yield (i, row), (lambda q=query, x=exclude: search(q, x))

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="copylens-calibrate") as pool:
        for batch in bounded_map(pool, tasks(), 2 * max(1, workers)):
            for (i, row), fut in batch:
                results[i] = (row, fut.result())
                done += 1
            yield Progress("calibrate", done, len(jobs), ids.get(row, ""))
    out = CalibrationPairs([], [], [], [], sorted(i for i in results if jobs[i][1]))
    for i in sorted(results):
        row, cands = results[i]
        out.insets += [(len(out.signals) + a, len(out.signals) + b) for a, b in candidate_insets(cands)]
        for c in cands:
            out.signals.append(c.signals)
            out.labels.append(1 if c.row == row else 0)
            out.sources.append(row)
            out.queries.append(i)
    return out


def fit_first_stage(signals: list[dict], labels: list[int], names, queries: list[int] | None = None,
                    absent: list[int] | None = None, first_stage_absent: bool = FIRST_STAGE_ABSENT):
    """The first stage of :func:`fit_calibration` (each candidate judged alone, calibrate.fit_fused): on the
    copy queries' candidates, and on the distractor queries' (``absent``) too when ``first_stage_absent``."""
    keep = list(range(len(labels)))
    if absent and queries is not None and not first_stage_absent:
        gone = set(absent)
        keep = [i for i, q in enumerate(queries) if q not in gone]
    s1, y1 = [signals[i] for i in keep], [labels[i] for i in keep]
    share = sum(y1) / len(y1)
    # the class weighting, as before: non-copies count twice (distractors are about half of real traffic,
    # and a copy query's other candidates are not all a distractor meets)
    return fit_fused(s1, y1, l2=1.0, positive_prior=share / (2 - share), names=names)


def fit_calibration(signals: list[dict], labels: list[int], names, queries: list[int] | None = None,
                    absent: list[int] | None = None, first_stage_absent: bool = FIRST_STAGE_ABSENT,
                    insets: list[tuple[int, int]] | None = None) -> dict:
    """The manifest's calibration record from calibration pairs (the default model when too few copies).
    With ``queries`` (each candidate's calibration query), a second stage judges each candidate against
    its query's other candidates (calibrate.ContrastCalibrator) when CONTRAST is on. ``absent``: the
    queries searched as if their source were not indexed (see calibrate.query_views); the first stage is
    fitted on their candidates too when ``first_stage_absent``."""
    absent = absent or None  # no distractor queries: each copy query is seen again without its copy
    npos = int(sum(labels))
    if npos < MIN_POSITIVES or npos == len(labels):
        return {**default_calibrator(unframed(names)).to_dict(),
                "source": f"default ({npos} of {len(labels)} calibration pairs were copies: too few to fit)"}
    first = fit_first_stage(signals, labels, names, queries, absent, first_stage_absent)
    if CONTRAST and queries is not None:
        dw = CONTRAST_DISTRACTOR_WEIGHT if absent is None else ABSENT_WEIGHT
        insets = insets if INSETS else None
        second = fit_contrast(first, signals, labels, queries, dw, absent=absent, insets=insets)
        if TOP1:
            second = fit_top1(second, signals, labels, queries, dw, absent=absent, insets=insets)
        return second.to_dict()
    return first.to_dict()


def calibrate_index(index_dir: Path, seed: int = 0, max_queries: int = MAX_QUERIES,
                    min_queries: int = MIN_QUERIES, workers: int = 1) -> Job[dict]:
    engine = Engine.open(index_dir, allow_pending=True)
    try:
        names = engine.calibrator.names
        if engine.store.count() < 2:
            return {**default_calibrator(unframed(names)).to_dict(), "source": "default (index too small to fit)"}
        p = yield from calibration_pairs(engine, seed, max_queries, min_queries, workers)
        fitted = fit_calibration(p.signals, p.labels, names, p.queries, p.absent, insets=p.insets)
        if not str(fitted.get("source", "")).startswith("default"):
            fitted["releases"] = releases()  # fitted on these releases' scores (see core/releases.py)
        return fitted
    finally:
        engine.close()
