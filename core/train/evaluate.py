"""Score a global descriptor *alone* on a benchmark folder (``copylens bench make`` output): every query's
nearest references by descriptor similarity are the predictions, scored with the ISC2021 metrics overall
and by content. No index is built and no local features are used, so checkpoints can be compared quickly.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..bench.metrics import Metrics, Prediction, evaluate, read_ground_truth
from ..errors import ImageLoadError
from ..globaldesc.base import GlobalDescriptor, pairwise_similarity
from ..imageio import load_image, scan_images
from ..progress import Progress

LOAD_SIDE = 512  # images are shrunk to this longer side before extraction (networks take far less)


def descriptor_from_run(run_dir: str | Path, name: str = "copylens-run", device: str | None = None
                        ) -> GlobalDescriptor:
    """A run's latest checkpoint as a descriptor, through the same export and loader as a shipped model."""
    from ..globaldesc.neural import load_copylens
    from .model import export
    from .trainer import load_trained

    model, cfg, _ = load_trained(run_dir)
    with tempfile.TemporaryDirectory(prefix="copylens-eval-") as tmp:
        export(model, tmp, "run", cfg.data.input_size, half=False)
        kw = {"device": device} if device else {}
        return load_copylens(name, "run", Path(tmp), batch_size=64, **kw)


def _extract(desc: GlobalDescriptor, paths: Sequence[Path], label: str
             ) -> Generator[Progress, None, tuple[np.ndarray, list[int]]]:
    """Descriptors of the readable images among ``paths`` and their positions."""
    vecs, kept = [], []
    chunk = 64
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(paths), chunk):
            part = list(range(start, min(len(paths), start + chunk)))

            def one(i: int):
                try:
                    return load_image(paths[i], max_side=LOAD_SIDE).pixels
                except ImageLoadError:
                    return None

            pixels = list(pool.map(one, part))
            good = [(i, p) for i, p in zip(part, pixels, strict=True) if p is not None]
            if good:
                b = desc.extract([p for _, p in good])
                vecs.append(b.vectors)
                kept += [i for i, _ in good]
            yield Progress(f"{label}: {desc.name}", part[-1] + 1, len(paths))
    return (np.concatenate(vecs) if vecs else np.zeros((0, 1), np.float32)), kept


def evaluate_descriptor(desc: GlobalDescriptor, bench_dir: str | Path, top_k: int = 10
                        ) -> Generator[Progress, None, Metrics]:
    bench = Path(bench_dir)
    ref_root = bench / "references"
    ref_paths = scan_images(ref_root)
    ref_ids = [p.relative_to(ref_root).with_suffix("").as_posix() for p in ref_paths]
    with open(bench / "ground_truth.csv", newline="", encoding="utf-8") as f:
        qids = [r["query_id"] for r in csv.DictReader(f)]
    by_stem = {p.stem: p for p in scan_images(bench / "queries")}
    q_paths = [by_stem[q] for q in qids if q in by_stem]
    refs, ref_kept = yield from _extract(desc, ref_paths, "references")
    queries, q_kept = yield from _extract(desc, q_paths, "queries")
    preds: list[Prediction] = []
    for start in range(0, len(queries), 256):
        sims = pairwise_similarity(queries[start:start + 256], refs, desc.metric)
        k = min(top_k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for row, cols in enumerate(top):
            qid = q_paths[q_kept[start + row]].stem
            for c in cols:
                preds.append(Prediction(qid, ref_ids[ref_kept[c]], float(sims[row, c])))
    return evaluate(read_ground_truth(bench / "ground_truth.csv"), preds)
