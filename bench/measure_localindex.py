"""Measure FAISS index kinds for local (RootSIFT) descriptors: add time, search time, neighbour recall.

Reads every descriptor of a built index and the descriptors of a few benchmark queries, then compares:
exact search (flat) with FAISS index_factory specs (IVF with flat or HNSW coarse quantizers; SQ8, Flat, PQ
fast-scan codes) at several nprobe values. Recall = share of query descriptors whose exact nearest
neighbour is found at rank 1 / within the 10 returned.

    OMP_NUM_THREADS=2 .venv/bin/python bench/measure_localindex.py INDEX_DIR BENCH_DIR [--queries 20] \
        [--factory IVF4096_HNSW32,SQ8 ...] [--nprobe 8 16 32]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np

from copylens.core.engine import Engine
from copylens.core.features import VARIANTS, rootsift
from copylens.core.imageio import load_image
from copylens.core.index import ReferenceStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("index")
    ap.add_argument("bench")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--factory", nargs="+", default=["IVF4096_HNSW32,SQ8", "IVF4096_HNSW32,Flat",
                                                       "IVF4096_HNSW32,PQ32x4fs", "IVF4096_HNSW32,PQ64x4fs"])
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--k-factor", type=float, default=3.0, help="re-ranking depth for Refine(...) specs")
    args = ap.parse_args()
    store = ReferenceStore(Path(args.index))
    vecs = np.vstack([rootsift(f.descriptors) for _, f in store.iter_features() if len(f)])
    print(f"{len(vecs)} descriptors from {store.count()} references")
    eng = Engine.open(args.index)
    qfiles = sorted(Path(args.bench, "queries").iterdir())[: args.queries]
    qs = []
    for f in qfiles:
        feats = eng.query_features(load_image(f, max_side=eng.config.query_max_side))
        qs.append(np.vstack([rootsift(feats.descriptors[:, VARIANTS[n]]) for n in VARIANTS]))
    print(f"{len(qs)} queries, median {np.median([len(q) for q in qs]):.0f} vectors each (4 variants)")
    sample = vecs[np.random.default_rng(0).choice(len(vecs), 200_000, replace=False)]
    exact = faiss.IndexFlatL2(128)
    exact.add(vecs)
    t = time.perf_counter()
    truth = [exact.search(q, 1)[1][:, 0] for q in qs[:5]]
    print(f"flat exact: {(time.perf_counter() - t) / 5 * 1000:.0f} ms/query")
    for spec in args.factory:
        ivf = faiss.index_factory(128, spec)
        faiss.extract_index_ivf(ivf).cp.max_points_per_centroid = 64
        t = time.perf_counter()
        ivf.train(sample)
        t_train = time.perf_counter() - t
        t = time.perf_counter()
        ivf.add(vecs)
        t_add = time.perf_counter() - t
        for nprobe in args.nprobe:
            faiss.ParameterSpace().set_index_parameter(ivf, "nprobe", nprobe)
            if isinstance(ivf, faiss.IndexRefine):
                ivf.k_factor = args.k_factor
            t = time.perf_counter()
            found = [ivf.search(q, 10)[1] for q in qs]
            t_search = (time.perf_counter() - t) / len(qs) * 1000
            rec = np.mean(np.concatenate([(f[:, :1] == tr[:, None]).any(1)
                                          for f, tr in zip(found, truth, strict=False)]))
            rec10 = np.mean(np.concatenate([(f == tr[:, None]).any(1) for f, tr in zip(found, truth, strict=False)]))
            print(f"{spec:>28} nprobe {nprobe:3d}: train {t_train:5.1f}s add {t_add:5.1f}s "
                  f"search {t_search:6.1f} ms/query  exact-NN at rank 1 {rec:.3f}, in top 10 {rec10:.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
