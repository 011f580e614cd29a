"""Region proposals on a benchmark's own queries: does the best proposal find the pasted box?

For every query of a benchmark folder (made by ``copylens bench make``) whose ground truth carries a box
(paste, screenshot, meme, pad), run ``propose_regions`` the way the engine does (on the query decoded with
the engine's ``query_max_side``) and report, per edit and content, the share whose best-IoU proposal has
IoU >= ``--iou`` (default 0.7) with the true box: among all proposals returned, among those the engine
searches (score >= region_min_score, at most ``regions``), and for the top-scored proposal alone. 0.9 asks
for the exact box, which the region's descriptors need.

    .venv/bin/python bench/regions_on_benchmark.py /tmp/copylens-dev [--iou 0.9]
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from copylens.core.bench.make import query_file
from copylens.core.engine import QueryConfig
from copylens.core.imageio import load_image
from copylens.core.regions import box_iou, propose_regions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("--iou", type=float, default=0.7, help="least IoU with the true box that counts as found")
    args = ap.parse_args()
    bench = Path(args.bench)
    side = QueryConfig().query_max_side
    cfg = QueryConfig()
    hit: dict[str, list[int]] = defaultdict(list)
    used: dict[str, list[int]] = defaultdict(list)
    top: dict[str, list[int]] = defaultdict(list)
    for r in ({"edit": r.get("attack", ""), **r} for r in csv.DictReader(open(bench / "ground_truth.csv", encoding="utf-8"))):
        if not r.get("x0") or r["edit"] not in ("paste", "screenshot", "meme", "pad"):
            continue
        q = query_file(bench, r["query_id"])
        img = load_image(q, max_side=side)
        s = img.scale_to_original
        truth = tuple(float(r[k]) for k in ("x0", "y0", "x1", "y1"))
        props = propose_regions(img.pixels)
        ious = [box_iou(tuple(v * s for v in p.box), truth) for p in props]
        searched = [i for i, p in zip(ious, props, strict=True) if p.score >= cfg.region_min_score][: cfg.regions]
        for key in (r["edit"], f"{r['edit']}/{r['content']}", "ALL"):
            hit[key].append(int(bool(ious) and max(ious) >= args.iou))
            used[key].append(int(bool(searched) and max(searched) >= args.iou))
            top[key].append(int(bool(ious) and ious[0] >= args.iou))
    print(f"{'edit':>22} {'n':>5} {'best of all':>12} {'best searched':>14} {'top-1':>7}   (share with IoU >= {args.iou})")
    for k in sorted(hit):
        print(f"{k:>22} {len(hit[k]):5d} {np.mean(hit[k]):12.3f} {np.mean(used[k]):14.3f} {np.mean(top[k]):7.3f}")


if __name__ == "__main__":
    main()
