"""Score one global descriptor of a built index alone (no local features, no verification).

For each benchmark query, the descriptor's query variants are searched and the top references are
predicted with the rescaled similarity as score; the predictions are evaluated with the ISC2021 metrics
(overall and by content), so the global branch can be compared with SIFT-only and dual retrieval.

    .venv/bin/python bench/global_alone.py /tmp/copylens-dev /tmp/dev-dual [--descriptor pdq]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from copylens.core.bench.make import read_benchmark_query
from copylens.core.bench.metrics import Prediction, evaluate, read_ground_truth
from copylens.core.engine import Engine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("index")
    ap.add_argument("--descriptor", default="pdq")
    ap.add_argument("--top-k", type=int, default=10)
    args = ap.parse_args()
    bench = Path(args.bench)
    eng = Engine.open(args.index)
    branch = next(g for g in eng.globals if g.name == args.descriptor)
    preds = []
    rows = list(csv.DictReader(open(bench / "ground_truth.csv", encoding="utf-8")))
    for r in rows:
        img = read_benchmark_query(bench, r["query_id"], eng.config.query_max_side)  # the engine's own pixels
        hits = branch.search(branch.query(img.pixels), args.top_k)
        ids = eng.store.ids_of_rows(list(hits))
        best = sorted(((s, ids[row]) for row, s in hits.items() if row in ids), reverse=True)[: args.top_k]
        preds += [Prediction(r["query_id"], rid, float(s)) for s, rid in best]
    gt = read_ground_truth(bench / "ground_truth.csv")
    m = evaluate(gt, preds)
    print(f"{args.descriptor} alone: μAP {m.micro_ap:.3f}  recall@1 {m.recall_at_1:.3f}")
    for name, c in m.per_content.items():
        print(f"  {name:>9}: μAP {c.micro_ap:.3f}  recall@1 {c.recall_at_1:.3f}")
    # how the engine's recall floor (QueryConfig.global_recall_floor: a global neighbour joins the
    # candidates at or above it) splits right top-1 matches of copies from the top-1 of distractors
    floor = dict(eng.config.global_recall_floor)[branch.descriptor.metric]
    truth = {g.query_id: g.reference_id for g in gt}
    top1: dict[str, Prediction] = {}
    for p in preds:
        if p.query_id not in top1 or p.score > top1[p.query_id].score:
            top1[p.query_id] = p
    right = [p.score for q, p in top1.items() if truth.get(q) and p.reference_id == truth[q]]
    distract = [p.score for q, p in top1.items() if not truth.get(q)]
    for t in sorted({0.2, 0.3, 0.4, 0.5, 0.6, floor}):
        print(f"  signal >= {t:.1f}{' (the floor)' if t == floor else ''}: right top-1 of copies {np.mean(np.array(right) >= t):.3f}, "
              f"top-1 of distractors {np.mean(np.array(distract) >= t):.3f}")


if __name__ == "__main__":
    main()
