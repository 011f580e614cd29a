"""Self-calibration of an index: fit the confidence model on edited copies of the index's own references.

For a sample of references, an edit from the benchmark edit library is applied (with its own seed, so the
calibration never sees the benchmark's exact queries) and the edited image is searched like a query. The
source reference's candidate is a positive; every other candidate is a negative, which is exactly what a
query whose original is *not* in the index (a distractor) meets. Distractors are half of real traffic, so
negatives get twice the weight. The fitted model is stored in the manifest as plain numbers.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .calibrate import default_calibrator, fit
from .edits import random_edit
from .engine import Engine
from .errors import CopyLensError
from .imageio import from_array
from .progress import Job, Progress, bounded_map, run_job

MAX_QUERIES = 160  # edited copies searched at most (about 35 s on 2 cores for a 4k-reference index)
MIN_QUERIES = 60  # small indexes get several edits per reference to reach this many
MIN_POSITIVES = 8  # fewer positives than this: keep the conservative default model
CAL_SEED_OFFSET = 7919  # calibration edits use seed + this, never the benchmark's seed stream


def calibrate_index(index_dir: Path, seed: int = 0, max_queries: int = MAX_QUERIES,
                    min_queries: int = MIN_QUERIES, workers: int = 1) -> Job[dict]:
    engine = Engine.open(index_dir, allow_pending=True)
    try:
        rows = engine.store.rows()
        names = engine.calibrator.names
        if len(rows) < 2:
            return {**default_calibrator(names).to_dict(), "source": "default (index too small to fit)"}
        rng = np.random.default_rng(seed + CAL_SEED_OFFSET)
        per_ref = max(1, min(5, math.ceil(min_queries / len(rows))))
        picks = rng.permutation(rows)[: max(1, max_queries // per_ref)]
        jobs = [int(r) for r in picks for _ in range(per_ref)]
        ids = engine.store.ids_of_rows([int(r) for r in picks])

        def search(query) -> list:
            return run_job(engine.candidates(query))[0]

        results: dict[int, tuple[int, list]] = {}
        done = 0

        def tasks():
            """Edits drawn here, in job order (in the caller's thread), so the calibration is reproducible."""
            nonlocal done
            for i, row in enumerate(jobs):
                try:
                    image = engine.reference_image(ids[row], max_side=1024)
                except (CopyLensError, KeyError):
                    done += 1
                    continue
                edited = random_edit(image.pixels, rng)
                query = from_array(edited.pixels, "<calibration>", max_side=engine.config.query_max_side)
                yield (i, row), (lambda q=query: search(q))

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="copylens-calibrate") as pool:
            for batch in bounded_map(pool, tasks(), 2 * max(1, workers)):
                for (i, row), fut in batch:
                    results[i] = (row, fut.result())
                    done += 1
                yield Progress("calibrate", done, len(jobs), ids.get(row, ""))
        signals, labels = [], []
        for i in sorted(results):
            row, cands = results[i]
            for c in cands:
                signals.append(c.signals)
                labels.append(1 if c.row == row else 0)
        npos = int(sum(labels))
        if npos < MIN_POSITIVES or npos == len(labels):
            return {**default_calibrator(names).to_dict(),
                    "source": f"default ({npos} of {len(labels)} calibration pairs were copies: too few to fit)"}
        share = npos / len(labels)
        cal = fit(signals, labels, l2=1.0, positive_prior=share / (2 - share), names=names)
        return cal.to_dict()
    finally:
        engine.close()
