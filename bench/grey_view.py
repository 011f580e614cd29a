"""The colour view of a neural global descriptor against its grey view (``NAME@grey``), per content kind.

Every reference and query of a benchmark (made by ``copylens bench make``) is described by both views, raw
(no whitening, no background normalisation, no index: the network's own cosine similarity), each query as
the engine describes it (its query variants, the best counts). Per kind and view: the share of copies whose
reference is the nearest of all references, the share at similarity >= 0.3, and the best similarity of
distractor queries (p50, p90), for the colour view, the grey view and the better of the two; then each
copy of ``--kind`` that either view misses.

    OMP_NUM_THREADS=2 .venv/bin/python bench/grey_view.py /tmp/copylens-dev2w-s7 [--descriptor copylens-sscd18g]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from copylens.core.bench.make import read_benchmark_query
from copylens.core.bench.metrics import read_ground_truth
from copylens.core.engine import QueryConfig
from copylens.core.globaldesc import create_descriptor
from copylens.core.imageio import load_image, scan_images

LOAD_SIDE = 512  # references are decoded at most this large (the network sees 112-224 px)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bench", type=Path)
    ap.add_argument("--descriptor", default="copylens-sscd18g")
    ap.add_argument("--kind", default="wallpapers", help="list this kind's copies that a view misses")
    args = ap.parse_args()
    colour, grey = create_descriptor(args.descriptor), create_descriptor(args.descriptor + "@grey")
    root = args.bench / "references"
    paths = scan_images(root)
    ids = {str(p.relative_to(root).with_suffix("")): i for i, p in enumerate(paths)}
    refs = [load_image(p, max_side=LOAD_SIDE).pixels for p in paths]
    rc, rg = colour.extract(refs).vectors, grey.extract(refs).vectors  # batched by the descriptor
    del refs
    gt = read_ground_truth(args.bench / "ground_truth.csv")
    side = QueryConfig().query_max_side
    sc, sg = [], []
    for row in gt:
        px = read_benchmark_query(args.bench, row.query_id, side).pixels
        sc.append((colour.extract_query(px).vectors @ rc.T).max(0))
        sg.append((grey.extract_query(px).vectors @ rg.T).max(0))
    views = {"colour": np.stack(sc), "grey": np.stack(sg)}
    views["better"] = np.maximum(views["colour"], views["grey"])
    print(f"{len(paths)} references, {len(gt)} queries; {args.descriptor}, raw cosine similarity")
    print(f"{'view':8s} {'kind':11s} {'copies':>6s} {'nearest':>8s} {'>=0.3':>6s}  distractors' best p50 / p90")
    for name, s in views.items():
        per: dict[str, list] = defaultdict(lambda: [[], [], []])
        for i, row in enumerate(gt):
            acc = per[row.content]
            if row.reference_id:
                t = ids[row.reference_id]
                acc[0].append(s[i].argmax() == t)
                acc[1].append(s[i, t] >= 0.3)
            else:
                acc[2].append(s[i].max())
        for kind, (near, floor, dis) in sorted(per.items()):
            d = np.array(dis) if dis else np.zeros(1)
            print(f"{name:8s} {kind:11s} {len(near):6d} {np.mean(near):8.3f} {np.mean(floor):6.3f}  "
                  f"{np.median(d):.2f} / {np.quantile(d, 0.9):.2f}")
    print(f"\n{args.kind} copies a view misses (similarity to the reference; 1 = nearest):")
    for i, row in enumerate(gt):
        if row.content != args.kind or not row.reference_id:
            continue
        t = ids[row.reference_id]
        c, g = views["colour"][i], views["grey"][i]
        if c.argmax() != t or g.argmax() != t:
            print(f"  {row.query_id} {row.edit:12s} {row.reference_id.split('/')[-1]:40s} colour "
                  f"{c[t]:.2f} {int(c.argmax() == t)}  grey {g[t]:.2f} {int(g.argmax() == t)}")


if __name__ == "__main__":
    main()
