"""Measure how each global descriptor backend *alone* separates edited copies from non-copies.

Data (from /work/shared/datasets; this script is a measurement, never a unit test): per content kind
(photo = clothing-small + imagenet-sample-dev, graphics = graphics-tuxpaint) ``--refs`` references and
``--others`` non-member images, disjoint. Every reference gets one edited copy and every non-member one
edit, both from ``core/bench/edits.py random_edit`` (the dev benchmark's edit mix; ``paste`` backgrounds are
other non-member photos).

Per backend it reports, per content kind and overall:
- recall@1: the copy's best reference (max over query variants) is its source; with all query variants
  (PDQ: 8 dihedral + their 8 complements for negatives; neural: the query, its mirror, its negative) and
  with the query as it is (variant 0);
- non-member top-1 scores (median / 95th percentile), and the copies' correct top-1 scores (median);
- rec@npP95: the fraction of copies ranked right *and* scoring above the 95th percentile of non-member top-1
  scores (a crude operating point with ~5 % false alarms);
then recall@1 per edit, and extraction speed (images/s over the references, decoded beforehand) on 1
thread, with 2 torch intra-op threads, and with 2 Python worker threads of 1 torch thread each (PDQ: a pool
of 1 or 2 threads; its Cython binding holds the GIL, so expect no gain there).

Only PDQ and random-init tiny timm networks can be measured: no pretrained weights exist offline. A
random-init CNN is *not* a trained descriptor; its numbers are a floor and a speed check, nothing more.

Command (from the repository root; about 2-4 minutes on the 2-core build machine):
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/measure_global.py --refs 200 --others 100 --seed 0
"""

from __future__ import annotations

import argparse
import glob
import statistics
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from copylens.core.edits import random_edit
from copylens.core.globaldesc import create_descriptor
from copylens.core.globaldesc.base import pairwise_similarity
from copylens.core.globaldesc.whitening import Whitening
from copylens.core.imageio import load_image

DATASETS = Path("/work/shared/datasets")
BACKENDS = ("pdq", "timm:test_resnet", "timm:test_efficientnet")
NEURAL_VARIANTS = (0, 5, 8)  # the query, its mirror and its negative (PDQ always gets all 16)


def _lists() -> dict[str, list[str]]:
    photos = sorted(glob.glob(str(DATASETS / "clothing-small/*/*/*.jpg")))
    photos += sorted(glob.glob(str(DATASETS / "imagenet-sample-dev/*.JPEG")))
    graphics = sorted(glob.glob(str(DATASETS / "graphics-tuxpaint/*.png")))
    return {"photo": photos, "graphics": graphics}


def _data(n_refs: int, n_others: int, seed: int):
    """references, copies (with their source index and edit) and edited non-members per kind."""
    rng = np.random.default_rng(seed)
    out = {}
    lists = _lists()
    backgrounds = [load_image(p, max_side=512).pixels
                   for p in rng.choice(lists["photo"], 20, replace=False)]
    for kind, paths in lists.items():
        chosen = rng.choice(len(paths), n_refs + n_others, replace=False)
        images = [load_image(paths[i], max_side=512).pixels for i in chosen]
        refs, others = images[:n_refs], images[n_refs:]
        copies, edits = [], []
        for img in refs:
            e = random_edit(img, rng, backgrounds[int(rng.integers(len(backgrounds)))])
            copies.append(e.pixels)
            edits.append(e.edit)
        distractors = [random_edit(img, rng, backgrounds[int(rng.integers(len(backgrounds)))]).pixels
                       for img in others]
        out[kind] = (refs, copies, edits, distractors)
    return out


def _top1(desc, queries, ref_vectors):
    """Per query image, (best reference index, best score) twice: max over all query variants, and over
    variant 0 (the query as it is) only."""
    out = {True: ([], []), False: ([], [])}
    for q in queries:
        b = desc.extract_query(q)
        sims = pairwise_similarity(b.vectors, ref_vectors, desc.metric)
        for all_variants, rows in ((True, sims), (False, sims[b.variant == 0])):
            best = rows.max(axis=0)
            out[all_variants][0].append(int(np.argmax(best)))
            out[all_variants][1].append(float(best.max()))
    return {k: (np.array(i), np.array(sc)) for k, (i, sc) in out.items()}


def _speed(desc, images, threads: int, workers: int = 1) -> float:
    """images/s: ``threads`` torch intra-op threads, ``workers`` Python threads each extracting one slice
    (torch and OpenCV release the GIL; pdqhash does not)."""
    torch.set_num_threads(threads)
    desc.extract(images[:4])  # warm-up: thread pools start, first-call allocations
    start = time.perf_counter()
    if desc.metric == "hamming":  # one image per call, as an index build would do
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda im: desc.extract([im]), images))
    else:
        step = -(-len(images) // workers)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(desc.extract, [images[i:i + step] for i in range(0, len(images), step)]))
    return len(images) / (time.perf_counter() - start)


def _report(label: str, rows: dict[str, dict], edits: dict[str, list[bool]]) -> None:
    print(f"\n== {label}")
    print(f"{'content':<9} {'recall@1':>8} {'rec@npP95':>9} {'copy med':>8} {'non med':>8} {'non P95':>8}")
    for kind, r in rows.items():
        print(f"{kind:<9} {r['r1']:8.3f} {r['rp']:9.3f} {r['cmed']:8.3f} {r['nmed']:8.3f} {r['np95']:8.3f}")
    print("recall@1 by edit: " + ", ".join(f"{f} {np.mean(v):.2f}" for f, v in sorted(edits.items())))


def _evaluate(desc, data):
    """{all_variants: (rows, edits)} for all query variants (True) and variant 0 only (False)."""
    per = {True: ({}, defaultdict(list), [], [], []), False: ({}, defaultdict(list), [], [], [])}
    for kind, (refs, copies, fams, distractors) in data.items():
        ref_vectors = desc.extract(refs).vectors
        copy_top, non_top = _top1(desc, copies, ref_vectors), _top1(desc, distractors, ref_vectors)
        for key, (rows, edits, all_ok, all_score, all_non) in per.items():
            (idx, score), (_, non) = copy_top[key], non_top[key]
            ok = idx == np.arange(len(copies))
            rows[kind] = _row(ok, score, non)
            for f, o in zip(fams, ok, strict=True):
                edits[f].append(bool(o))
            all_ok.append(ok)
            all_score.append(score)
            all_non.append(non)
    result = {}
    for key, (rows, edits, all_ok, all_score, all_non) in per.items():
        rows["all"] = _row(np.concatenate(all_ok), np.concatenate(all_score), np.concatenate(all_non))
        result[key] = (rows, edits)
    return result


def _row(ok: np.ndarray, score: np.ndarray, non: np.ndarray) -> dict:
    p95 = float(np.percentile(non, 95))
    return dict(r1=ok.mean(), rp=np.mean(ok & (score > p95)),
                cmed=statistics.median(score[ok]) if ok.any() else float("nan"),
                nmed=statistics.median(non), np95=p95)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refs", type=int, default=200, help="references per content kind")
    ap.add_argument("--others", type=int, default=100, help="non-member queries per content kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backends", nargs="*", default=list(BACKENDS))
    args = ap.parse_args()
    cv2.setNumThreads(1)
    t0 = time.perf_counter()
    data = _data(args.refs, args.others, args.seed)
    print(f"data: {args.refs} refs + {args.refs} copies + {args.others} edited non-members per kind "
          f"({time.perf_counter() - t0:.0f} s)")
    for name in args.backends:
        torch.set_num_threads(1)
        kw = {} if name == "pdq" else {"device": "cpu", "query_variants": NEURAL_VARIANTS}
        desc = create_descriptor(name, **kw)
        variants = "16 variants" if name == "pdq" else f"variants {NEURAL_VARIANTS}"
        result = _evaluate(desc, data)
        _report(f"{name} (dim {desc.dim}, {desc.metric}), query {variants}", *result[True])
        _report(f"{name}, query variant 0 only", *result[False])
        if name != "pdq":
            refs = [im for kind in data.values() for im in kind[0]]
            w = Whitening.fit(desc.extract(refs).vectors, dim=min(64, desc.dim))
            white = create_descriptor(name, whitening=w, **kw)
            _report(f"{name} + PCA whitening to {white.dim}-d fitted on the references, query {variants}",
                    *_evaluate(white, data)[True])
        speed_set = [im for kind in data.values() for im in kind[0]][:200]
        s1, s2, w2 = _speed(desc, speed_set, 1), _speed(desc, speed_set, 2), _speed(desc, speed_set, 1, 2)
        print(f"speed ({len(speed_set)} decoded images, longer side <= 512): {s1:.0f} images/s on 1 thread; "
              f"{s2:.0f} with 2 torch threads; {w2:.0f} with 2 worker threads x 1 torch thread")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
