"""Does a candidate's lead over the query's other candidates tell copies from near-identical siblings?

A distractor that is a sibling of indexed graphics (the same cloud with rain instead of snow) matches
several of them about equally, while a copy matches its own reference better than any sibling. The build's
first-stage probability judges each candidate alone; ``calibrate.fit_contrast`` fits a second stage on the
same calibration pairs, over the candidate's logit and its lead (its logit minus the best other candidate's
of the same query). This scores the benchmark's stored candidates with the first stage alone and with the
second stage at several weights of the simulated distractor queries, per content kind.

    python bench/calib_experiment.py collect /tmp/copylens-dev2 INDEX --out /tmp/cands.jsonl
    python bench/calib_experiment.py pairs INDEX --n 160 --out /tmp/pairs160.json
    python bench/calib_experiment.py pairs INDEX --n 160 --strategy stratified --out /tmp/pairs160s.json
    python bench/contrast_experiment.py /tmp/copylens-dev2 /tmp/cands.jsonl /tmp/pairs160.json /tmp/pairs160s.json

``--signals`` fits the first stage on the listed signals instead of the index's model's, so a signal the
index's model predates (collected with the new code) is compared with the same model without it:

    python bench/contrast_experiment.py /tmp/copylens-dev2 /tmp/cands.jsonl /tmp/pairs.json --weights 0.5 \
        --signals votes,inliers,...,edge_precision,global:pdq,global:copylens-sscd18,distinct_edges

``--sibling-likeness T`` replays a stricter sibling threshold on candidates and pairs collected with a
lower one (``calib_experiment.py collect|pairs --sibling-likeness 0.3``): a candidate whose recorded rival
is less alike than T gets its ``edge_recall`` as ``distinct_edges``, as the engine would give it. The
default 0.5 was chosen this way (0.3, 0.5, 0.65, 0.8 over calibration seeds 0-2; README).

``--top1`` adds each second stage recalibrated on the calibration queries' top candidates only
(``calibrate.fit_top1``, what builds fit since 2026-12-05).

``--context`` adds variants whose second stage also sees the candidate's reference keypoints (R) or the
query's keypoints (Q) as context (either sign) and as a factor of the lead: R = [z, lead, r, r*lead],
Q = [z, lead, q, q*lead], QZ = [z, lead, q*z] (r, q: log keypoints, scaled). None was adopted (README).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from calib_experiment import _report, copy_queries_only, load_replay

from copylens.core.calibrate import (
    LEAD_CLIP,
    LOGIT_CLIP,
    _logits,
    contrast_rows,
    fit_contrast,
    fit_top1,
    leads,
    weighted_logistic,
)
from copylens.core.selfcal import fit_first_stage


def _context_features(signals: list[dict], z: np.ndarray, variant: str) -> np.ndarray:
    lead = leads(np.clip(z, -LEAD_CLIP, LEAD_CLIP))
    r = np.log1p([s.get("reference_keypoints", 0.0) for s in signals]) / np.log1p(500) - 0.7
    q = np.log1p([s.get("query_keypoints", 0.0) for s in signals]) / np.log1p(1000) - 0.7
    cols = {"R": [z, lead, r, r * lead], "Q": [z, lead, q, q * lead], "QZ": [z, lead, q * z]}[variant]
    return np.stack(cols, 1)


class _Context:
    def __init__(self, stage1, beta: np.ndarray, variant: str) -> None:
        self.stage1, self.beta, self.variant = stage1, beta, variant

    def predict_query(self, signals: list[dict]) -> np.ndarray:
        x = _context_features(signals, _logits(self.stage1.predict(signals), LOGIT_CLIP), self.variant)
        return 1 / (1 + np.exp(-(x @ self.beta[:-1] + self.beta[-1])))


def context_variant(stage1, data: dict, queries: list[int], variant: str, dw: float) -> _Context:
    """The second stage with context columns (either sign; z and the lead stay non-negative)."""
    x, y, w, _ = contrast_rows(stage1.predict(data["signals"]), data["labels"], queries, dw,
                               lambda idx, z: _context_features([data["signals"][i] for i in idx], z, variant))
    return _Context(stage1, weighted_logistic(x, y, w, non_negative=(0, 1)), variant)


def replay_sibling_threshold(signals: dict, threshold: float) -> None:
    """What Engine._edge_agreement gives a candidate at ``threshold`` (its signals collected at a lower one)."""
    if signals.get("sibling_likeness", 0.0) < threshold and "edge_recall" in signals:
        signals["distinct_edges"] = signals["edge_recall"]
        signals.pop("sibling_likeness", None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path)
    ap.add_argument("cands", type=Path)
    ap.add_argument("pairs", type=Path, nargs="+")
    ap.add_argument("--weights", default="0.5,1,2", help="weights of the simulated distractor queries")
    ap.add_argument("--context", default="", help="comma-separated context variants (R, Q, QZ) to add")
    ap.add_argument("--signals", default="", help="comma-separated signals to fit the first stage on instead "
                    "of the index's model's (to compare a new signal with the model without it)")
    ap.add_argument("--top1", action="store_true",
                    help="also report each second stage recalibrated on the calibration queries' top candidates")
    ap.add_argument("--sibling-likeness", type=float, default=None,
                    help="replay this (stricter) sibling threshold on the stored signals")
    ap.add_argument("--copy-removed-views", action="store_true",
                    help="ignore the pair file's distractor queries: each copy query seen again without its "
                    "copy (the calibration before 2026-12-05)")
    ap.add_argument("--first-stage-absent", action="store_true",
                    help="fit the first stage on the distractor queries' candidates too")
    ap.add_argument("--insets", action="store_true",
                    help="also report the second stage in which an inset's lead skips the candidate around it "
                    "(placement.insets; candidates and pairs collected since 2026-12-06 record them)")
    a = ap.parse_args()
    gt, kinds, positives, records = load_replay(a.bench, a.cands)
    if a.sibling_likeness is not None:
        for rec in records:
            for c in rec["candidates"]:
                replay_sibling_threshold(c[2], a.sibling_likeness)
    for pf in a.pairs:
        data = json.loads(pf.read_text())
        if a.sibling_likeness is not None:
            for sig in data["signals"]:
                replay_sibling_threshold(sig, a.sibling_likeness)
        names = a.signals.split(",") if a.signals else list(data["names"])
        if a.copy_removed_views:
            data = copy_queries_only(data)
        absent = data.get("absent") or None
        queries = data.get("queries", data["sources"])  # older pair files: one query per source reference
        stage1 = fit_first_stage(data["signals"], data["labels"], names, queries, absent, a.first_stage_absent)
        _report(f"{pf.stem}: first stage (build's)", stage1, records, gt, positives, kinds)
        for dw in (float(v) for v in a.weights.split(",")):
            cal = fit_contrast(stage1, data["signals"], data["labels"], queries, distractor_weight=dw,
                               absent=absent)
            print(f"   weights {np.round(cal.weights, 3).tolist()} bias {cal.bias:.3f}")
            _report(f"{pf.stem}: + lead, distractors x{dw:g}", cal, records, gt, positives, kinds)
            if a.top1:
                top = fit_top1(cal, data["signals"], data["labels"], queries, distractor_weight=dw, absent=absent)
                print(f"   top-1 recalibration {np.round(top.top1, 3).tolist()}")
                _report(f"{pf.stem}: + lead + top-1, x{dw:g}", top, records, gt, positives, kinds)
            if a.insets and "insets" in data:
                insets = [tuple(p) for p in data["insets"]]
                cal = fit_contrast(stage1, data["signals"], data["labels"], queries, distractor_weight=dw,
                                   absent=absent, insets=insets)
                print(f"   insets: weights {np.round(cal.weights, 3).tolist()} bias {cal.bias:.3f}")
                _report(f"{pf.stem}: + lead, insets, x{dw:g}", cal, records, gt, positives, kinds)
                if a.top1:
                    top = fit_top1(cal, data["signals"], data["labels"], queries, distractor_weight=dw,
                                   absent=absent, insets=insets)
                    print(f"   top-1 recalibration {np.round(top.top1, 3).tolist()}")
                    _report(f"{pf.stem}: + lead, insets + top-1, x{dw:g}", top, records, gt, positives, kinds)
            for v in filter(None, a.context.split(",")):
                _report(f"{pf.stem}: + lead, {v}, x{dw:g}", context_variant(stage1, data, queries, v, dw), records,
                        gt, positives, kinds)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
