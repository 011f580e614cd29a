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

from copylens.core.bench.metrics import Prediction, evaluate, read_ground_truth
from copylens.core.engine import Engine
from copylens.core.imageio import load_image


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
        q = next(bench.joinpath("queries").glob(r["query_id"] + ".*"))
        img = load_image(q, max_side=eng.config.query_max_side)
        hits = branch.search(branch.query(img.pixels), args.top_k)
        ids = eng.store.ids_of_rows(list(hits))
        best = sorted(((s, ids[row]) for row, s in hits.items() if row in ids), reverse=True)[: args.top_k]
        preds += [Prediction(r["query_id"], rid, float(s)) for s, rid in best]
    m = evaluate(read_ground_truth(bench / "ground_truth.csv"), preds)
    print(f"{args.descriptor} alone: μAP {m.micro_ap:.3f}  recall@1 {m.recall_at_1:.3f}")
    for name, c in m.per_content.items():
        print(f"  {name:>9}: μAP {c.micro_ap:.3f}  recall@1 {c.recall_at_1:.3f}")


if __name__ == "__main__":
    main()
