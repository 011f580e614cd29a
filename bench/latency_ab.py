"""Query settings compared in one run: each query answered by every setting in turn, so machine drift
(this shared machine's speed varies by 20% between runs) hits all settings alike.

    OMP_NUM_THREADS=2 .venv/bin/python bench/latency_ab.py BENCH_DIR INDEX_DIR --n 300 \\
        --config base --config "np12|nprobe=12" --config "side640|query_max_side=640"

A setting is ``name|field=value|...``: ``nprobe`` (local IVF cells visited per descriptor) or any
:class:`~copylens.core.engine.QueryConfig` field (values as Python literals). The order of the settings
rotates from query to query. Prints, per setting, the p50 / p95 latency, its ratio to the first setting's
(the median of per-query ratios), the stage medians and recall@1 per content kind; ``--json OUT`` writes
them.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from profile_queries import query_args, sample_rows

import copylens.core.index.local as local_index
from copylens.core.bench.make import query_file
from copylens.core.engine import Engine, QueryConfig
from copylens.core.progress import run_job


def parse_setting(text: str) -> tuple[str, int | None, dict]:
    name, *parts = text.split("|")
    nprobe, fields = None, {}
    for p in parts:
        k, v = p.split("=", 1)
        if k == "nprobe":
            nprobe = int(v)
        else:
            fields[k] = ast.literal_eval(v)
    return name, nprobe, fields


def main() -> None:
    ap = argparse.ArgumentParser()
    query_args(ap)
    ap.add_argument("--config", action="append", default=[], help="name|field=value|... (repeatable)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    bench = Path(args.bench)
    rows = sample_rows(bench, args.n, args.seed)
    settings = [parse_setting(c) for c in (args.config or ["base"])]
    engines = []
    default_nprobe = local_index.NPROBE
    for _, nprobe, fields in settings:
        local_index.NPROBE = default_nprobe if nprobe is None else nprobe  # read when the index is opened
        engines.append(Engine.open(args.index, QueryConfig(**fields)))
    local_index.NPROBE = default_nprobe
    names = [s[0] for s in settings]
    totals: dict[str, list[float]] = defaultdict(list)
    with_regions: dict[str, list[bool]] = defaultdict(list)  # regions searched (no strong whole-image match)
    stages: dict[str, dict[str, list[float]]] = {n: defaultdict(list) for n in names}
    hits: dict[str, dict[str, list[int]]] = {n: defaultdict(list) for n in names}
    for e in engines:  # warm-up: model weights, FAISS, SQLite caches
        run_job(e.search(query_file(bench, rows[0]["query_id"]), top_k=5))
    for i, r in enumerate(rows):
        q = query_file(bench, r["query_id"])
        k = i % len(engines)
        for j in list(range(k, len(engines))) + list(range(k)):
            t = time.perf_counter()
            res = run_job(engines[j].search(q, top_k=5))
            totals[names[j]].append((time.perf_counter() - t) * 1000)
            with_regions[names[j]].append(len(res.regions) > 1)
            for s, v in res.timings_ms.items():
                stages[names[j]][s].append(v)
            if r["reference_id"]:
                ok = int(res.best is not None and res.best.reference_id == r["reference_id"])
                hits[names[j]]["ALL"].append(ok)
                hits[names[j]][r["content"]].append(ok)
    base = np.array(totals[names[0]])
    out = {}
    for n in names:
        t = np.array(totals[n])
        reg = np.array(with_regions[n])
        out[n] = {"p50_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95)),
                  "regions_share": float(reg.mean()),
                  "p50_ms_whole_only": float(np.median(t[~reg])) if (~reg).any() else None,
                  "p50_ms_with_regions": float(np.median(t[reg])) if reg.any() else None,
                  "ratio_to_first": float(np.median(t / base)),
                  "stage_ms_median": {s: float(np.median(v)) for s, v in stages[n].items()},
                  "recall_at_1": {c: float(np.mean(v)) for c, v in sorted(hits[n].items())}}
        o = out[n]
        print(f"{n:>12}: p50 {o['p50_ms']:.0f} p95 {o['p95_ms']:.0f} ms  ratio {o['ratio_to_first']:.3f}  "
              + " ".join(f"{s} {v:.0f}" for s, v in o["stage_ms_median"].items()))
        print(" " * 14 + f"regions searched for {o['regions_share']:.0%}: p50 {o['p50_ms_with_regions'] or 0:.0f} ms, "
              f"else {o['p50_ms_whole_only'] or 0:.0f} ms")
        print(" " * 14 + "recall@1 " + " ".join(f"{c} {v:.3f}" for c, v in o["recall_at_1"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"index": args.index, "queries": len(rows), "settings": args.config,
                                               "results": out}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
