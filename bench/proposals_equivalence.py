"""Region proposals over a sample of a benchmark's queries: their cost, and their exact output as JSON, so a
speed-up of core/regions can be checked to change nothing (run before and after, then compare the files).

    git stash; python bench/proposals_equivalence.py /tmp/copylens-dev2 /tmp/before.json; git stash pop
    python bench/proposals_equivalence.py /tmp/copylens-dev2 /tmp/after.json
    cmp /tmp/before.json /tmp/after.json && echo identical

Timings are medians over the sample, in this process; compare two runs made one after the other.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from copylens.core.imageio import load_image, scan_images
from copylens.core.regions import ProposalConfig, propose_regions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path, help="benchmark folder made by 'copylens bench make'")
    ap.add_argument("out", type=Path, help="JSON file for every query's proposals")
    ap.add_argument("--every", type=int, default=4, help="take every n-th query")
    ap.add_argument("--n", type=int, default=500, help="queries at most")
    ap.add_argument("--max-side", type=int, default=1024, help="decode size (the engine's query_max_side)")
    a = ap.parse_args()
    paths = scan_images(a.bench / "queries")[:: a.every][: a.n]
    out, ms = [], []
    for p in paths:
        pixels = load_image(p, max_side=a.max_side).pixels
        t = time.perf_counter()
        regions = propose_regions(pixels, ProposalConfig())
        ms.append((time.perf_counter() - t) * 1000)
        out.append([[list(r.box), r.score, r.kind, None if r.quad is None else list(r.quad)] for r in regions])
    a.out.write_text(json.dumps(out))
    print(f"{len(paths)} queries: proposals median {np.median(ms):.2f} ms, p90 {np.percentile(ms, 90):.2f} ms")


if __name__ == "__main__":
    main()
