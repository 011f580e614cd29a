"""Does a sharded index answer as one index over the same references? (issue 12)

Compares two ``predictions.csv`` files of ``copylens bench run`` on the same queries (one index, and the
same references built with ``--shards K``) and prints how often their top-1 agrees: the decided top-1 (the
best match if its score is at or above the decision threshold, else "no match": what a moderator is shown)
and the raw top-1 (the best candidate whatever its score), for all queries and for copies / distractors
(from the benchmark's ground truth)::

    copylens index build /tmp/copylens-dev2/references --out /tmp/dev2-cur
    copylens index build /tmp/copylens-dev2/references --out /tmp/dev2-shard4 --shards 4
    copylens bench run /tmp/copylens-dev2 --index /tmp/dev2-cur --no-build --out /tmp/run-dev2-cur
    copylens bench run /tmp/copylens-dev2 --index /tmp/dev2-shard4 --no-build --out /tmp/run-dev2-shard4
    .venv/bin/python bench/shard_equivalence.py /tmp/copylens-dev2 /tmp/run-dev2-cur /tmp/run-dev2-shard4
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

THRESHOLD = 0.5


def top1(run_dir: Path) -> dict[str, tuple[str, float]]:
    best: dict[str, tuple[str, float]] = {}
    with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            s = float(r["score"])
            if r["query_id"] not in best or s > best[r["query_id"]][1]:
                best[r["query_id"]] = (r["reference_id"], s)
    return best


def main(argv: list[str]) -> None:
    bench, a_dir, b_dir = map(Path, argv[:3])
    with open(bench / "ground_truth.csv", newline="", encoding="utf-8") as fh:
        gt = {r["query_id"]: r for r in csv.DictReader(fh)}
    a, b = top1(a_dir), top1(b_dir)
    out = {}
    for label, keep in (("all", lambda q: True), ("copies", lambda q: bool(gt[q]["reference_id"])),
                        ("distractors", lambda q: not gt[q]["reference_id"])):
        qs = [q for q in gt if keep(q)]

        def decided(p, q):
            ref, score = p.get(q, ("", 0.0))
            return ref if score >= THRESHOLD else None

        same_decided = sum(decided(a, q) == decided(b, q) for q in qs)
        same_raw = sum(a.get(q, ("",))[0] == b.get(q, ("",))[0] for q in qs)
        out[label] = {"queries": len(qs), "decided_top1_identical": same_decided / max(1, len(qs)),
                      "raw_top1_identical": same_raw / max(1, len(qs))}
    for name, d in (("a", a_dir), ("b", b_dir)):
        rep = json.loads((d / "report.json").read_text())
        out[name] = {"index": rep["index_dir"], "micro_ap": rep["metrics"]["micro_ap"],
                     "recall_at_1": rep["metrics"]["recall_at_1"], "p50_ms": rep["latency_p50_ms"],
                     "by_content": {k: round(v["micro_ap"], 3) for k, v in rep["metrics"]["per_content"].items()}}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
