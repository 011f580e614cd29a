"""Does a global descriptor find colour-inverted copies? Per query variant (the image, 0; its negative, 8), the
rank and similarity of each inverted copy's reference among the branch's nearest references, and how near
the negative of every other query comes to any reference (the risk of searching it: false candidates).

    .venv/bin/python bench/inverted_global.py BENCH INDEX [--descriptor copylens-sscd18g] [--others 400]

BENCH is a benchmark made by ``copylens bench make`` (its ground truth names each query's edit), INDEX an
index of its references. Similarities are as the engine's global recall sees them: whitened, background-
normalised and rescaled (its recall floor for neural descriptors is 0.3).
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

import numpy as np

from copylens.core.bench.make import read_benchmark_query
from copylens.core.bench.metrics import read_ground_truth
from copylens.core.engine import Engine

VARIANTS = {0: "image", 8: "negative"}


def variant_hits(branch, pixels: np.ndarray, k: int = 20) -> dict[int, list[tuple[int, float]]]:
    """Each variant's nearest references, best first: variant -> [(row, similarity)]."""
    batch = branch.descriptor.extract_query(np.ascontiguousarray(pixels))
    out = {}
    for i, v in enumerate(batch.variant.tolist()):
        if v in VARIANTS and not batch.low_quality[i]:
            hits = branch.search(branch.query_vectors(batch.vectors[i:i + 1]), k)
            out[v] = sorted(hits.items(), key=lambda kv: -kv[1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path)
    ap.add_argument("index", type=Path)
    ap.add_argument("--descriptor", default="copylens-sscd18g")
    ap.add_argument("--others", type=int, default=400, help="queries of other edits sampled for the risk")
    a = ap.parse_args()
    gt = read_ground_truth(a.bench / "ground_truth.csv")
    with Engine.open(a.index) as eng:
        branch = next((b for b in eng.globals if b.name == a.descriptor), None)
        if branch is None:
            raise SystemExit(f"{a.index} has no global descriptor {a.descriptor!r}")
        if set(VARIANTS) - set(branch.descriptor.extract_query(np.zeros((32, 32, 3), np.uint8)).variant.tolist()):
            raise SystemExit("this code's descriptor does not describe the negative (query_variants)")
        row_of = dict(eng.store.rows_by_id())

        def pixels(query_id: str) -> np.ndarray:
            """The engine's own pixels (decoded at its query_max_side), as global_alone.py reads them."""
            return read_benchmark_query(a.bench, query_id, eng.config.query_max_side).pixels
        found = {v: [] for v in VARIANTS}  # (rank or None, similarity) of the inverted copies' references
        for g in gt:
            if g.edit != "invert" or not g.reference_id:
                continue
            hits = variant_hits(branch, pixels(g.query_id))
            for v in VARIANTS:
                ranked = [r for r, _ in hits.get(v, [])]
                row = row_of[g.reference_id]
                rank = ranked.index(row) if row in ranked else None
                found[v].append((rank, hits[v][rank][1] if rank is not None else 0.0))
        n = len(found[0])
        print(f"{n} inverted copies ({a.descriptor}):")
        for v, name in VARIANTS.items():
            sims = [s for _, s in found[v]]
            print(f"  {name:8}: reference nearest in {sum(1 for r, _ in found[v] if r == 0)}, among the 20 nearest "
                  f"in {sum(1 for r, _ in found[v] if r is not None)}; its similarity median {statistics.median(sims):.3f}, "
                  f"range {min(sims):.3f}-{max(sims):.3f}")
        others = [g for g in gt if g.edit != "invert"]
        random.Random(0).shuffle(others)
        tops, distractors_over = [], 0
        n_dis = 0
        for g in others[:a.others]:
            hits = variant_hits(branch, pixels(g.query_id)).get(8)
            if not hits:
                continue
            tops.append(hits[0][1])
            if not g.reference_id:
                n_dis += 1
                distractors_over += hits[0][1] >= 0.3
        p50, p90, p99 = np.percentile(tops, [50, 90, 99])
        print(f"  the negative of {len(tops)} queries of other edits: nearest reference's similarity p50 {p50:.3f}, "
              f"p90 {p90:.3f}, p99 {p99:.3f}; {distractors_over} of {n_dis} distractors' at 0.3 or more")


if __name__ == "__main__":
    main()
