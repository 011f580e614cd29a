"""How much of a content kind's calibration error is its share of copies: ECE per kind as the run gave it,
and again with every confidence moved from the calibration's prior to the kind's own share of copies.

An index calibrates itself on edited copies of its own references, each searched once as a copy and once,
without its original, as a query whose original is not indexed (weight ``CONTRAST_DISTRACTOR_WEIGHT``):
its confidences assume that share of copies among queries. A benchmark kind with fewer distractors (dev
v2: wallpapers 9%, lineart 13%, photos 45%) then reads under-confident even when the evidence is judged
right. The adjustment is Bayes' rule on the odds (Saerens et al., 2002, "Adjusting the outputs of a
classifier to new a priori probabilities"): logit += log(kind's copy odds) - log(calibration's copy odds).
It uses the benchmark's labels to get each kind's share, so it is a diagnosis, not a model to ship.

    python bench/prior_shift.py /tmp/copylens-dev2 /tmp/dev2-h-run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from copylens.core.bench.metrics import Prediction, calibration, read_ground_truth, read_predictions
from copylens.core.selfcal import CONTRAST_DISTRACTOR_WEIGHT


def shifted(score: float, shift: float) -> float:
    p = min(max(score, 1e-12), 1 - 1e-12)
    return float(1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + shift))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path, help="benchmark folder made by 'copylens bench make'")
    ap.add_argument("run", type=Path, help="run folder of 'copylens bench run' (its predictions.csv)")
    a = ap.parse_args()
    gt = read_ground_truth(a.bench / "ground_truth.csv")
    unseen = set(json.loads((a.bench / "benchmark.json").read_text()).get("unseen_content", []))
    preds = read_predictions(a.run / "predictions.csv")
    positives = {(g.query_id, g.reference_id) for g in gt if g.reference_id}
    cal_odds = 1.0 / CONTRAST_DISTRACTOR_WEIGHT  # one copy view per distractor view of that weight
    print(f"calibration's share of copies {cal_odds / (1 + cal_odds):.2f}")
    print(f"{'kind':<20} {'queries':>7} {'copies':>6} {'ECE':>6} {'ECE at the kind share':>22}")
    for kind in sorted({g.content for g in gt if g.content}):
        queries = {g.query_id for g in gt if g.content == kind}
        share = float(np.mean([bool(g.reference_id) for g in gt if g.query_id in queries]))
        mine = [p for p in preds if p.query_id in queries]
        shift = float(np.log(share / (1 - share)) - np.log(cal_odds)) if 0 < share < 1 else 0.0
        moved = [Prediction(p.query_id, p.reference_id, shifted(p.score, shift)) for p in mine]
        name = kind + (" (unseen)" if kind in unseen else "")
        print(f"{name:<20} {len(queries):>7} {share:>6.2f} {calibration(mine, positives).ece:>6.3f} "
              f"{calibration(moved, positives).ece:>15.3f} ({shift:+.2f})")


if __name__ == "__main__":
    main()
