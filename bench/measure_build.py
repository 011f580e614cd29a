"""Build speed with and without batching the neural global descriptor, measured in one run.

    OMP_NUM_THREADS=2 .venv/bin/python bench/measure_build.py /tmp/copylens-dev2/references --n 600

Builds an index (no calibration) of the first ``n`` images below the folder, spread over its
subfolders, twice in alternating order per repeat: once with the neural descriptor run per image in the
worker threads (as before batching), once batched at commit time (the default). Prints images/s of each
build and the ratio; timings on a shared machine are noisy, so compare ratios from one run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from copylens.core.imageio import scan_images
from copylens.core.index import build as build_module
from copylens.core.index.build import build_index
from copylens.core.progress import run_job


def _sample(folder: Path, n: int, work: Path) -> Path:
    files = scan_images(folder)
    step = max(1, len(files) // n)
    out = work / "refs"
    for i, f in enumerate(files[::step][:n]):
        dest = out / f"{i:05d}{f.suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    return out


def _build(refs: Path, out: Path, batched: bool, globals_: tuple[str, ...]) -> float:
    real = build_module._batchable
    if not batched:
        build_module._batchable = lambda d: False
    try:
        t = time.perf_counter()
        s = run_job(build_index(refs, out, workers=2, calibrate=False, global_descriptors=globals_))
        return s.added / (time.perf_counter() - t)
    finally:
        build_module._batchable = real
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--global", dest="globals_", default="pdq,copylens-sscd18")
    a = ap.parse_args()
    globals_ = tuple(a.globals_.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        refs = _sample(a.folder, a.n, Path(tmp))
        rates: dict[bool, list[float]] = {True: [], False: []}
        for r in range(a.repeats):
            for batched in ((False, True) if r % 2 == 0 else (True, False)):
                rate = _build(refs, Path(tmp) / "idx", batched, globals_)
                rates[batched].append(rate)
                print(f"repeat {r}: {'batched' if batched else 'per image'}: {rate:.1f} images/s", flush=True)
        per, bat = statistics.median(rates[False]), statistics.median(rates[True])
        print(f"median images/s: per image {per:.1f}, batched {bat:.1f}, ratio {bat / per:.2f} "
              f"({a.n} references, globals {','.join(globals_)}, no calibration)")


if __name__ == "__main__":
    main()
