"""How much of a content kind's calibration error is its share of copies, and does estimating a queue's share
from its own scores (``copylens query --copy-share auto``) fix it?

An index calibrates itself on edited copies of its own references, each searched once as a copy and once,
without its original, as a query whose original is not indexed (weight ``CONTRAST_DISTRACTOR_WEIGHT``):
its confidences assume that share of copies among queries (``Engine.calibrated_share``, about two in
three). A benchmark kind with fewer distractors (dev v2: wallpapers 9%, lineart 13%, photos 45%) then reads
under-confident even when the evidence is judged right. core/prior.py moves confidences to another share by
Bayes' rule on the odds (Saerens et al., 2002). Per kind, this prints ECE:

- as run;
- at the kind's true share (from the benchmark's labels: a diagnosis, not something a user has);
- at the share estimated from the kind's own unlabelled top scores (EM; what ``--copy-share auto`` does
  when a batch holds one kind).

``--simulate`` also draws queues with 5-90% copies from the whole benchmark (copies or distractors dropped
at random, 20 draws each) and reports the median estimate, ECE, and how often a "copy" verdict (top score
at or above the window's 0.8) is right, as run and after the estimate.

    python bench/prior_shift.py /tmp/copylens-dev2 /tmp/dev2-h-run --simulate
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from copylens.core.bench.metrics import Prediction, calibration, read_ground_truth, read_predictions, top1
from copylens.core.calibrate import calibrator_from_dict
from copylens.core.prior import estimate_share, shift_scores


def calibrated_share(run: Path) -> float:
    """The share of copies the run's index was calibrated for (its manifest's record)."""
    index_dir = Path(json.loads((run / "report.json").read_text())["index_dir"])
    cal = calibrator_from_dict(json.loads((index_dir / "manifest.json").read_text())["calibration"])
    share = getattr(cal, "copy_share", None)
    if share is None:
        raise SystemExit(f"{index_dir}: its calibration records no share of copies (built before 2026-12-05)")
    return float(share)


def moved(preds: list[Prediction], calibrated: float, share: float) -> list[Prediction]:
    scores = shift_scores([p.score for p in preds], calibrated, share)
    return [Prediction(p.query_id, p.reference_id, float(s)) for p, s in zip(preds, scores, strict=True)]


def top_scores(preds: list[Prediction], queries: set[str]) -> list[float]:
    """Each query's best score, 0 for a query without any prediction."""
    top = top1(preds)
    return [top[q].score if q in top else 0.0 for q in queries]


COPY = 0.8  # the window's default "copy" verdict threshold (app/settings.py)


def copy_verdicts(preds: list[Prediction], positives: set[tuple[str, str]], copies: int) -> tuple[float, float]:
    """(how often a "copy" verdict, a top match scoring at least COPY, is right; the share of the ``copies``
    copy queries it finds); nan when nothing is flagged."""
    flagged = [(p.query_id, p.reference_id) in positives for p in top1(preds).values() if p.score >= COPY]
    return (float(np.mean(flagged)) if flagged else float("nan")), sum(flagged) / max(copies, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path, help="benchmark folder made by 'copylens bench make'")
    ap.add_argument("run", type=Path, help="run folder of 'copylens bench run' (its predictions.csv, report.json)")
    ap.add_argument("--simulate", action="store_true", help="also queues of 5-90%% copies drawn from the benchmark")
    a = ap.parse_args()
    gt = read_ground_truth(a.bench / "ground_truth.csv")
    unseen = set(json.loads((a.bench / "benchmark.json").read_text()).get("unseen_content", []))
    preds = read_predictions(a.run / "predictions.csv")
    positives = {(g.query_id, g.reference_id) for g in gt if g.reference_id}
    cal = calibrated_share(a.run)
    print(f"the index's calibrated share of copies {cal:.3f}")
    print(f"{'kind':<20} {'queries':>7} {'copies':>6} {'ECE':>6} {'at its share':>12} {'EM share':>8} "
          f"{'ECE at EM':>9}")
    for kind in sorted({g.content for g in gt if g.content}) + ["overall"]:
        queries = {g.query_id for g in gt if kind == "overall" or g.content == kind}
        share = float(np.mean([bool(g.reference_id) for g in gt if g.query_id in queries]))
        mine = [p for p in preds if p.query_id in queries]
        est = estimate_share(top_scores(mine, queries), cal).share
        name = kind + (" (unseen)" if kind in unseen else "")
        print(f"{name:<20} {len(queries):>7} {share:>6.2f} {calibration(mine, positives).ece:>6.3f} "
              f"{calibration(moved(mine, cal, share), positives).ece:>12.3f} {est:>8.2f} "
              f"{calibration(moved(mine, cal, est), positives).ece:>9.3f}")
    if not a.simulate:
        return
    rng = np.random.default_rng(0)
    copies = sorted(g.query_id for g in gt if g.reference_id)
    others = sorted(g.query_id for g in gt if not g.reference_id)
    by_query: dict[str, list[Prediction]] = {}
    for p in preds:
        by_query.setdefault(p.query_id, []).append(p)
    print(f"\n{'queue share':>11} {'queries':>7} {'EM median':>9} {'ECE as run':>10} {'ECE at EM':>9} "
          f"{'COPY right / found':>18} {'at EM':>16}  (medians of 20 draws; COPY: top score >= {COPY})")
    for target in (0.05, 0.1, 0.25, 0.5, 0.75, 0.9):
        n_copies = min(len(copies), round(target * len(others) / (1 - target)))
        n_others = min(len(others), round(n_copies * (1 - target) / target))
        rows = []
        for _ in range(20):
            queries = set(rng.choice(copies, n_copies, replace=False)) | set(rng.choice(others, n_others,
                                                                                        replace=False))
            mine = [p for q in queries for p in by_query.get(q, [])]
            est = estimate_share(top_scores(mine, queries), cal).share
            after = moved(mine, cal, est)
            rows.append((est, calibration(mine, positives).ece, calibration(after, positives).ece,
                         *copy_verdicts(mine, positives, n_copies), *copy_verdicts(after, positives, n_copies)))
        med = np.nanmedian(np.array(rows), axis=0)
        print(f"{target:>11.2f} {n_copies + n_others:>7} {med[0]:>9.3f} {med[1]:>10.3f} {med[2]:>9.3f} "
              f"{med[3]:>8.3f} / {med[4]:.3f} {med[5]:>8.3f} / {med[6]:.3f}")


if __name__ == "__main__":
    main()
