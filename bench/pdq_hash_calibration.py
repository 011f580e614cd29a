"""How much is a PDQ distance worth on its own? The calibration of hash-list matches, measured.

A hash-list match has no image behind it, so its confidence can only come from the Hamming distance
between the query's PDQ hash (best of its dihedral and inverted variants) and the listed hash. This
script measures, on a benchmark and the PDQ hashes of its index, the distance from each edited copy to
its true reference and from every query to the nearest reference it is NOT a copy of, then fits
P(copy | distance) = sigmoid(a - b * distance) with distractor queries weighted as half of all traffic
(as the image calibration does), and prints the fit, a reliability table and figures by content kind.

    python bench/pdq_hash_calibration.py /tmp/copylens-dev2 /tmp/dev2

The printed ``a`` and ``b`` are the defaults of ``core/hashmatch.py`` (HashMatchConfig).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from copylens.core.bench.metrics import read_ground_truth
from copylens.core.engine import Engine
from copylens.core.globaldesc.pdq import PdqDescriptor
from copylens.core.imageio import load_image, scan_images
from copylens.core.index.hashlists import reference_hashes

FIT_BELOW = 64  # matches are reported up to 31 (Meta's guidance) or a configured threshold below this


def _popcount_rows(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x, axis=-1).sum(axis=-1)


def measure(bench: Path, index: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    gt = {g.query_id: g for g in read_ground_truth(bench / "ground_truth.csv")}
    with Engine.open(index) as eng:
        refs = reference_hashes(eng.store)
        max_side = eng.config.query_max_side
    ids = [r[1] for r in refs]
    ref_bits = np.stack([np.frombuffer(r[0], np.uint8) for r in refs])
    pos = {rid: i for i, rid in enumerate(ids)}
    pdq = PdqDescriptor()
    d_true, d_false, kinds = [], [], []
    q_dir = bench / "queries"
    for path in scan_images(q_dir):
        qid = path.relative_to(q_dir).with_suffix("").as_posix()
        g = gt.get(qid)
        if g is None:
            continue
        batch = pdq.extract_query(load_image(path, max_side=max_side).pixels)
        if batch.quality[0] < 0.5:
            continue  # Meta's guidance: quality below 50 is not matched at all
        dist = np.min(_popcount_rows(batch.vectors[:, None, :] ^ ref_bits[None, :, :]), axis=0)  # per reference
        true_i = pos.get(g.reference_id) if g.reference_id else None
        if true_i is not None:
            d_true.append(int(dist[true_i]))
            dist[true_i] = 10_000
        else:
            d_true.append(-1)
        d_false.append(int(dist.min()))
        kinds.append(g.content)
    return np.array(d_true), np.array(d_false), kinds


def fit(d_true: np.ndarray, d_false: np.ndarray) -> tuple[float, float]:
    """Logistic fit of copy vs non-copy on distance; distractor (non-copy) events weigh half of traffic."""
    n_true, n_false = int((d_true >= 0).sum()), len(d_false)
    t, f = d_true[(d_true >= 0) & (d_true < FIT_BELOW)], d_false[d_false < FIT_BELOW]
    x = np.concatenate([t, f]).astype(np.float64)  # only distances where a match could be reported
    y = np.concatenate([np.ones(len(t)), np.zeros(len(f))])
    w = np.where(y == 1, 0.5 / n_true, 0.5 / n_false) * (n_true + n_false)  # weights of the whole sample
    a, b = 0.0, 0.0  # p = sigmoid(a - b * x)
    for _ in range(100):
        z = np.clip(a - b * x, -40, 40)
        p = 1 / (1 + np.exp(-z))
        g = np.array([np.sum(w * (p - y)), np.sum(w * (p - y) * -x)])
        h11 = np.sum(w * p * (1 - p))
        h12 = np.sum(w * p * (1 - p) * -x)
        h22 = np.sum(w * p * (1 - p) * x * x)
        step = np.linalg.solve(np.array([[h11, h12], [h12, h22]]) + 1e-9 * np.eye(2), g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path)
    ap.add_argument("index", type=Path)
    a = ap.parse_args()
    d_true, d_false, kinds = measure(a.bench, a.index)
    unseen = set(json.loads((a.bench / "benchmark.json").read_text()).get("unseen_content", []))
    seen = np.array([k not in unseen for k in kinds])
    ka, kb = fit(d_true[seen], d_false[seen])  # the unseen kind stays out of the fit
    print(f"fitted without the unseen kind(s) {sorted(unseen)}; the table below counts every query")
    print(f"queries with PDQ quality >= 50: {len(kinds)}; copies among them: {(d_true >= 0).sum()}")
    print(f"fit: P(copy | d) = sigmoid({ka:.3f} - {kb:.4f} * d)")
    print(f"{'distance':>10} {'copies':>7} {'non-copies':>10} {'observed':>9} {'fitted':>7}")
    for lo, hi in ((0, 8), (8, 16), (16, 24), (24, 32), (32, 40), (40, 48), (48, 64), (64, 257)):
        t = int(((d_true >= lo) & (d_true < hi)).sum())
        f = int(((d_false >= lo) & (d_false < hi)).sum())
        # events weighted as in the fit: copies and non-copies half of traffic each
        wt, wf = t * 0.5 / max(1, (d_true >= 0).sum()), f * 0.5 / max(1, len(d_false))
        obs = wt / (wt + wf) if (wt + wf) > 0 else float("nan")
        mid = (lo + min(hi, 64)) / 2
        print(f"{lo:>4}-{hi - 1:<5} {t:7d} {f:10d} {obs:9.3f} {1 / (1 + np.exp(-(ka - kb * mid))):7.3f}")
    print("\nby content kind: copies found at distance <= 31 (recall of hash-only matching), non-copies "
          "within 31 (false alarms)")
    for k in sorted(set(kinds)):
        m = np.array([x == k for x in kinds])
        t = d_true[m]
        print(f"  {k:<11} recall {np.mean(t[t >= 0] <= 31) if (t >= 0).any() else float('nan'):.3f} "
              f"({(t >= 0).sum()} copies)   false alarms {np.mean(d_false[m] <= 31):.3f} ({m.sum()} queries)")


if __name__ == "__main__":
    main()
