"""``bench/scale.py check``: are the scale distractors distinct from each other and free of dev content?

1. Distinctness: an index (shipped defaults) of ``--index-n`` random distractors; ``--queries`` random
   distractors searched in it, half of them indexed (they should find themselves and nothing else), half
   not. A match scoring >= 0.5 with a *different* distractor is a pair CopyLens takes for copies.
2. Leaks: every source-derived distractor (crop, mosaic, collage: the only ones holding pixels of real
   images) among the first ``--leak-n``, plus ``--leak-procedural`` random procedural ones, searched in the
   index of the dev benchmark's references. A match >= 0.5 is dev content or a false match: listed with
   the distractor's provenance, to look at.

``--combined-index INDEX`` (the index ``run`` built at some N: the dev references plus the first N
distractors, ids ``scale/...``) does both in one pass without building anything: ``--queries`` random
distractors among the first N are searched against all N (each should find itself and no other
distractor: a far stronger distinctness test than a 2,000-image sample), the same number beyond N against
them (when the set is larger), and the leak queries as above; a match >= 0.5 with a dev reference id is a
leak, with another ``scale/`` id a pair.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from copylens.core.fileio import write_json_atomic
from copylens.core.progress import ConsoleProgress, run_job

THRESHOLD = 0.5


def _search_all(eng, paths: list[Path], label: str) -> list[list[tuple[str, float]]]:
    out = []
    t = time.monotonic()
    for k, p in enumerate(paths, 1):
        r = run_job(eng.search(p, top_k=10))
        out.append([(m.reference_id, float(m.score)) for m in r.matches])
        if k % 100 == 0 or k == len(paths):
            print(f"  {label}: {k}/{len(paths)} queries ({(time.monotonic() - t) / k * 1000:.0f} ms each)", flush=True)
    return out


def _combined(args, items: list[dict], rng: np.random.Generator) -> dict:
    """Both checks against an index holding the dev references and the first N distractors."""
    from scale import DISTRACTOR_DIR

    from copylens.core.engine import Engine

    dis = Path(args.distractors)
    rid = {it["index"]: f"{DISTRACTOR_DIR}/" + it["file"].rsplit(".", 1)[0] for it in items}
    with Engine.open(args.combined_index) as eng:
        indexed = {r for r, _ in eng.store.rows_by_id()}
        n = next((i for i in range(len(items)) if rid[i] not in indexed), len(items))  # run indexes a prefix
        if n == 0:
            raise SystemExit(f"{args.combined_index}: holds no distractor (an index scale.py run built?)")
        inside = rng.choice(n, min(args.queries, n), replace=False).tolist()
        outside = (rng.choice(np.arange(n, len(items)), min(args.queries, len(items) - n), replace=False).tolist()
                   if len(items) > n else [])
        src = [it["index"] for it in items[: min(args.leak_n, n)] if it["cells"]]
        proc_pool = [it["index"] for it in items[: min(args.leak_n, n)] if not it["cells"]]
        proc = rng.choice(proc_pool, min(args.leak_procedural, len(proc_pool)), replace=False).tolist()
        queries = list(dict.fromkeys(inside + outside + src + proc))  # each searched once
        t = time.monotonic()
        res = dict(zip(queries, _search_all(eng, [dis / items[i]["file"] for i in queries], "distractors"),
                       strict=True))
    pairs, leaks = [], []
    for q in queries:
        for r, s in res[q]:
            if r == rid[q] or s < THRESHOLD:
                continue
            row = {"query": rid[q], "query_kind": items[q]["kind"], "match": r, "score": s}
            if r.startswith(DISTRACTOR_DIR + "/"):
                pairs.append({"group": "indexed" if q < n else "not indexed", **row})
            else:
                leaks.append({**row, "sources": [c["source"] for c in items[q]["cells"]]})
    self_found = sum(1 for q in inside if res[q] and res[q][0][0] == rid[q] and res[q][0][1] >= THRESHOLD)
    return {
        "combined_index": str(args.combined_index), "distractors_indexed": n, "search_seconds": time.monotonic() - t,
        "distinctness": {
            "queries_indexed": len(inside), "queries_not_indexed": len(outside),
            "indexed_found_themselves_top1": self_found,
            "queries_matching_another_distractor": len({p["query"] for p in pairs}),
            "of_them_indexed_queries": len({p["query"] for p in pairs if p["group"] == "indexed"}),
            "by_query_kind": dict(Counter(p["query_kind"] for p in pairs)), "pairs": pairs,
            "top_other_scores": sorted((s for q in inside + outside for r, s in res[q]
                                        if r != rid[q] and r.startswith(DISTRACTOR_DIR + "/")), reverse=True)[:10]},
        "leaks": {
            "source_derived_queried": len(src), "procedural_queried": len(proc),
            "distractors_matching_dev": len({x["query"] for x in leaks}),
            "by_kind": dict(Counter(x["query_kind"] for x in leaks)), "matches": leaks,
            "top_scores": sorted((s for q in src + proc for r, s in res[q]
                                  if not r.startswith(DISTRACTOR_DIR + "/")), reverse=True)[:10]},
    }


def check_main(args) -> None:
    from scale import hard_link

    from copylens.core.engine import Engine
    from copylens.core.index.build import build_index

    dis, work = Path(args.distractors), Path(args.work)
    items = json.loads((dis / "provenance.json").read_text(encoding="utf-8"))["items"]
    rng = np.random.default_rng(args.seed)
    rid = {it["index"]: it["file"].rsplit(".", 1)[0] for it in items}
    by_index = {it["index"]: it for it in items}
    findings: dict = {"distractors": str(dis), "made": len(items), "threshold": THRESHOLD}
    if args.combined_index:
        findings.update(_combined(args, items, rng))
        _finish(args, work, findings, f"{args.combined_index} (distractors and dev references)")
        return

    # ---- 1. distinctness
    sample = sorted(rng.choice(len(items), min(args.index_n, len(items)), replace=False).tolist())
    refs = work / "refs"
    for i in sample:
        hard_link(dis / items[i]["file"], refs / items[i]["file"])
    index = work / "index"
    bar = ConsoleProgress()
    t = time.monotonic()
    summary = run_job(build_index(refs, index), bar)
    bar.close()
    findings["index"] = {"references": summary.total_references, "duplicates": summary.duplicates,
                         "failed": len(summary.failed), "build_seconds": time.monotonic() - t}
    inside = rng.choice(sample, args.queries // 2, replace=False).tolist()
    outside_pool = sorted(set(range(len(items))) - set(sample))
    outside = rng.choice(outside_pool, min(args.queries - len(inside), len(outside_pool)), replace=False).tolist()
    with Engine.open(index) as eng:
        res_in = _search_all(eng, [dis / items[i]["file"] for i in inside], "indexed")
        res_out = _search_all(eng, [dis / items[i]["file"] for i in outside], "not indexed")
    pairs = []
    for group, qs, res in (("indexed", inside, res_in), ("not indexed", outside, res_out)):
        for q, matches in zip(qs, res, strict=True):
            for r, s in matches:
                if r != rid[q] and s >= THRESHOLD:
                    pairs.append({"group": group, "query": rid[q], "query_kind": items[q]["kind"], "match": r,
                                  "score": s})
    self_found = sum(1 for q, m in zip(inside, res_in, strict=True) if m and m[0][0] == rid[q] and m[0][1] >= THRESHOLD)
    findings["distinctness"] = {
        "queries_indexed": len(inside), "queries_not_indexed": len(outside),
        "indexed_found_themselves_top1": self_found,
        "queries_matching_another_distractor": len({p["query"] for p in pairs}),
        "of_them_indexed_queries": len({p["query"] for p in pairs if p["group"] == "indexed"}),
        "by_query_kind": dict(Counter(p["query_kind"] for p in pairs)), "pairs": pairs,
        "top_other_scores": sorted((s for q, m in zip(inside + outside, res_in + res_out, strict=True)
                                    for r, s in m if r != rid[q]), reverse=True)[:10]}

    # ---- 2. leaks into the dev references
    src = [it["index"] for it in items[: args.leak_n] if it["cells"]]
    proc_pool = [it["index"] for it in items[: args.leak_n] if not it["cells"]]
    proc = rng.choice(proc_pool, min(args.leak_procedural, len(proc_pool)), replace=False).tolist()
    with Engine.open(args.dev_index) as eng:
        res = _search_all(eng, [dis / items[i]["file"] for i in src + proc], "against dev")
    leaks = []
    for i, matches in zip(src + proc, res, strict=True):
        for r, s in matches:
            if s >= THRESHOLD:
                it = by_index[i]
                leaks.append({"distractor": rid[i], "kind": it["kind"], "dev_reference": r, "score": s,
                              "sources": [c["source"] for c in it["cells"]]})
    findings["leaks"] = {"source_derived_queried": len(src), "procedural_queried": len(proc),
                         "distractors_matching_dev": len({x["distractor"] for x in leaks}),
                         "by_kind": dict(Counter(x["kind"] for x in leaks)), "matches": leaks,
                         "top_scores": sorted((s for m in res for _, s in m), reverse=True)[:10]}
    _finish(args, work, findings, f"{len(sample)} distractors")


def _finish(args, work: Path, findings: dict, against: str) -> None:
    out = Path(args.out) if args.out else work / "check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, findings)
    d, lk = findings["distinctness"], findings["leaks"]
    print(f"distinctness: {d['queries_indexed']} indexed + {d['queries_not_indexed']} other distractors queried "
          f"against {against}; {d['indexed_found_themselves_top1']}/{d['queries_indexed']} found themselves "
          f"at top-1 >= {THRESHOLD}; {d['queries_matching_another_distractor']} matched another distractor >= "
          f"{THRESHOLD} {d['by_query_kind']}")
    print(f"leaks: {lk['source_derived_queried']} source-derived + {lk['procedural_queried']} procedural queried "
          f"against the dev references: {lk['distractors_matching_dev']} matched a dev reference >= {THRESHOLD} "
          f"{lk['by_kind']}")
    print(f"details: {out}")
