"""Where a reference's build time goes: CPU per image of each extraction step, one thread, one image at a time.

    OMP_NUM_THREADS=1 .venv/bin/python bench/profile_extract.py FOLDER [FOLDER ...] [--n 150]

Per folder, ``n`` images spread over it: read, decode (to the 640-px working size), SIFT (with the
few-keypoint retry), thumbnail JPEG, PDQ, file SHA-256, and copylens-sscd18 in batches of 16 as the build
runs it. Prints milliseconds per image and each step's share. The build runs these in 2 worker threads
(the neural batches on the committing thread), then trains and fills FAISS and self-calibrates.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import cv2
import numpy as np

from copylens.core.features import FeatureConfig, extract
from copylens.core.imageio import encode_jpeg, load_image_bytes, read_image_file, scan_images
from copylens.core.index.build import DEFAULT_GLOBAL, _descriptors


def profile(folder: Path, n: int) -> dict:
    files = scan_images(folder)
    files = files[:: max(1, len(files) // n)][:n]
    cfg = FeatureConfig()
    pdq, neural = _descriptors(DEFAULT_GLOBAL)
    t = dict.fromkeys(("read", "decode", "sift", "thumbnail", "pdq", "sha256", "sscd18"), 0.0)
    pixels, keypoints = [], []
    for f in files:
        a = time.process_time()
        data = read_image_file(f)
        b = time.process_time()
        image = load_image_bytes(data, str(f), max_side=cfg.max_side)
        c = time.process_time()
        keypoints.append(len(extract(image, cfg)))
        d = time.process_time()
        encode_jpeg(image.pixels)
        e = time.process_time()
        pdq.extract([image.pixels])
        g = time.process_time()
        hashlib.sha256(data).hexdigest()
        h = time.process_time()
        for k, (x, y) in zip(t, ((a, b), (b, c), (c, d), (d, e), (e, g), (g, h)), strict=False):
            t[k] += y - x
        pixels.append(image.pixels)
    a = time.process_time()
    for i in range(0, len(pixels), 16):
        neural.extract(pixels[i:i + 16])
    t["sscd18"] = time.process_time() - a
    ms = {k: v / len(files) * 1000 for k, v in t.items()}
    return {"folder": str(folder), "images": len(files), "median_keypoints": float(np.median(keypoints)),
            "ms_per_image": ms, "total_ms": sum(ms.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--n", type=int, default=150)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    for folder in args.folders:
        r = profile(Path(folder), args.n)
        total = r["total_ms"]
        parts = ", ".join(f"{k} {v:.1f} ({v / total:.0%})" for k, v in r["ms_per_image"].items())
        print(f"{r['folder']}: {r['images']} images, median {r['median_keypoints']:.0f} keypoints, "
              f"{total:.0f} ms CPU per image: {parts}")


if __name__ == "__main__":
    main()
