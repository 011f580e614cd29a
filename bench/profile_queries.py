"""Profile queries on a built benchmark index: per-stage timings and recall@1 by edit and content.

A quick loop for tuning (a sample of the benchmark's queries; the full evaluation is ``copylens bench run``):

    OMP_NUM_THREADS=2 .venv/bin/python bench/profile_queries.py BENCH_DIR INDEX_DIR --n 300 [--seed 0]

``--nprobe N`` searches the local IVF index visiting N cells per descriptor instead of the default
(:data:`copylens.core.index.local.NPROBE`); ``--json OUT`` appends the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import copylens.core.index.local as local_index
from copylens.core.bench.make import query_file
from copylens.core.engine import Engine, QueryConfig
from copylens.core.progress import run_job


def query_args(ap: argparse.ArgumentParser) -> None:
    """The arguments every query-timing script takes: the benchmark, the index, the sample."""
    ap.add_argument("bench")
    ap.add_argument("index")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)


def sample_rows(bench: Path, n: int, seed: int, edits: str = "") -> list[dict]:
    """``n`` ground-truth rows drawn with ``seed`` (of the comma-separated ``edits`` only, when given)."""
    rows = [{"edit": r.get("attack", ""), **r} for r in csv.DictReader(open(bench / "ground_truth.csv", encoding="utf-8"))]
    if edits:
        rows = [r for r in rows if r["edit"] in edits.split(",")]
    rng = np.random.default_rng(seed)
    return [rows[i] for i in sorted(rng.choice(len(rows), min(n, len(rows)), replace=False))]


def main() -> None:
    ap = argparse.ArgumentParser()
    query_args(ap)
    ap.add_argument("--set", action="append", default=[], help="QueryConfig field=value (ints/floats/tuples)")
    ap.add_argument("--edits", default="", help="comma-separated edits to keep (default: all)")
    ap.add_argument("--nprobe", type=int, default=None, help="local IVF cells visited per descriptor")
    ap.add_argument("--json", default=None, help="append the figures as one JSON line to this file")
    args = ap.parse_args()
    bench = Path(args.bench)
    rows = sample_rows(bench, args.n, args.seed, args.edits)
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        overrides[k] = eval(v, {})  # a developer tool: values like 0, 0.8, ("direct", "mirror")
    if args.nprobe is not None:
        local_index.NPROBE = args.nprobe  # read when the index is opened
    engine = Engine.open(args.index, QueryConfig(**overrides))
    stages: dict[str, list[float]] = defaultdict(list)
    hits: dict[str, list[int]] = defaultdict(list)
    dist_scores, pos_scores, totals = [], [], []
    for r in rows:
        q = query_file(bench, r["query_id"])
        t = time.perf_counter()
        res = run_job(engine.search(q, top_k=5))
        totals.append((time.perf_counter() - t) * 1000)
        for k, v in res.timings_ms.items():
            stages[k].append(v)
        best = res.best
        if r["reference_id"]:
            ok = int(best is not None and best.reference_id == r["reference_id"])
            hits[r["edit"]].append(ok)
            hits["content:" + r["content"]].append(ok)
            hits["ALL"].append(ok)
            pos_scores.append(best.score if ok else 0.0)
        else:
            dist_scores.append(best.score if best else 0.0)
    print(f"queries {len(rows)}  total ms p50 {np.median(totals):.0f} p95 {np.percentile(totals, 95):.0f}")
    for k, v in stages.items():
        print(f"  {k:>10}: median {np.median(v):7.1f} ms  mean {np.mean(v):7.1f}  (run on {len(v)} queries)")
    for k in sorted(hits):
        print(f"  recall@1 {k:>20}: {np.mean(hits[k]):.3f}  (n={len(hits[k])})")
    d = np.array(dist_scores)
    print(f"distractor top score: median {np.median(d):.3f}, >0.5: {np.mean(d > 0.5):.3f}, max {d.max():.3f}")
    p = np.array(pos_scores)
    print(f"copies correct & score>0.5: {np.mean(p > 0.5):.3f}")
    if args.json:
        out = {"index": args.index, "queries": len(rows), "nprobe": local_index.NPROBE, "set": args.set,
               "total_ms_p50": float(np.median(totals)), "total_ms_p95": float(np.percentile(totals, 95)),
               "stage_ms_median": {k: float(np.median(v)) for k, v in stages.items()},
               "recall_at_1": {k: float(np.mean(v)) for k, v in hits.items()},
               "distractor_above_half": float(np.mean(d > 0.5)), "copies_right_above_half": float(np.mean(p > 0.5))}
        with open(args.json, "a", encoding="utf-8") as f:
            f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
