"""How much of a content kind's ECE is sampling noise? A benchmark run's ECE per kind, a bootstrap interval
over its queries, and the ECE a perfectly calibrated model would show with the same top-1 scores (labels
drawn as Bernoulli(score)): a kind with few queries cannot show an ECE far below that floor however well
calibrated it is.

    .venv/bin/python bench/ece_noise.py BENCH_DIR RUN_DIR [--draws 500] [--seed 0]

RUN_DIR is a ``copylens bench run`` folder (its predictions.csv); BENCH_DIR holds ground_truth.csv with
each query's content kind.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from copylens.core.bench.metrics import Prediction, calibration, read_ground_truth, read_predictions, top1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("run")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    bench, run = Path(args.bench), Path(args.run)
    gt = read_ground_truth(bench / "ground_truth.csv")
    content = {r["query_id"]: r["content"] for r in csv.DictReader(open(bench / "ground_truth.csv", encoding="utf-8"))}
    positives = {(g.query_id, g.reference_id) for g in gt if g.reference_id}
    top = top1(read_predictions(run / "predictions.csv"))
    kinds: dict[str, list[Prediction]] = defaultdict(list)
    for q, kind in content.items():
        kinds[kind].append(top.get(q, Prediction(q, "", 0.0)))
    rng = np.random.default_rng(args.seed)
    print(f"{'kind':>11} {'queries':>7} {'ECE':>6} {'bootstrap 90%':>15} {'perfect: median':>16} {'p95':>6}")
    for kind, preds in sorted(kinds.items()):
        ece = calibration(preds, positives).ece
        boots = []
        for _ in range(args.draws):
            # resampled queries get distinct ids so that calibration() sees each draw as its own query
            pick = rng.integers(0, len(preds), len(preds))
            sample = [Prediction(f"{i}:{preds[j].query_id}", preds[j].reference_id, preds[j].score)
                      for i, j in enumerate(pick)]
            pos = {(s.query_id, s.reference_id) for s, j in zip(sample, pick, strict=True)
                   if (preds[j].query_id, preds[j].reference_id) in positives}
            boots.append(calibration(sample, pos).ece)
        perfect = []
        for _ in range(args.draws):
            right = rng.random(len(preds)) < np.array([p.score for p in preds])
            perfect.append(calibration(preds, {(p.query_id, p.reference_id) for p, r in zip(preds, right, strict=True)
                                               if r}).ece)
        print(f"{kind:>11} {len(preds):>7} {ece:>6.3f}   [{np.percentile(boots, 5):.3f}, {np.percentile(boots, 95):.3f}]"
              f" {np.median(perfect):>16.3f} {np.percentile(perfect, 95):>6.3f}")


if __name__ == "__main__":
    main()
