"""Does global similarity mean less when local matching could have worked and did not?

The fused calibration (core/calibrate.py) adds a global expert to the local one as independent evidence,
``p = 1 - (1 - p_local)(1 - p_global)``, so that a smooth wallpaper's copy, with no keypoints to match,
is found by its global similarity alone. The global expert is fitted on every calibration pair and knows
nothing about the local side. But a query and a reference that both have plenty of keypoints, none of
which verify, are a different case: two icons of one style (an orange diamond and an orange star, the same
blue disc with another symbol) reach a neural similarity of 0.45 and, as the only candidate with any
evidence, a confidence of 0.9. This replays, on a benchmark's stored candidates and the index's own
calibration pairs, a *conditional* global expert: fitted only on the pairs whose local evidence alone does
not show a copy (p_local < 0.5), with how many keypoints both sides have (``matchable``: the smaller
count, log1p, a context weight of either sign) as an input.

    python bench/calib_experiment.py collect BENCH INDEX --out CANDS.jsonl
    python bench/calib_experiment.py pairs INDEX --n 160 --strategy stratified --seed S --out PAIRS-S.json
    python bench/global_context_experiment.py BENCH CANDS.jsonl PAIRS-0.json PAIRS-1.json PAIRS-2.json

Rows per pair file: the build's model, and the conditional global expert (both with the contrast stage and
the top-1 recalibration, as builds fit them). The benchmark's unseen kind is marked with * and is not for
choosing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from calib_experiment import _prior, _report, copy_queries_only, load_replay

from copylens.core import calibrate
from copylens.core.calibrate import FusedCalibrator, calibrator_from_dict, fit, fit_contrast, fit_top1
from copylens.core.selfcal import CONTRAST_DISTRACTOR_WEIGHT, fit_calibration

MATCHABLE = "matchable"


def with_matchable(signals: list[dict]) -> list[dict]:
    """Each candidate's signals plus ``matchable``: the fewer keypoints of the query and the reference."""
    return [{**s, MATCHABLE: min(s.get("query_keypoints", 0.0), s.get("reference_keypoints", 0.0))}
            for s in signals]


def conditional_fused(signals: list[dict], labels: list[int], names: list[str], weak_below: float = 0.5):
    local = [n for n in names if not n.startswith("global:")]
    glob = [n for n in names if n.startswith("global:")]
    p_local = fit(signals, labels, 1.0, _prior(labels), names=local)
    weak = np.flatnonzero(p_local.predict(signals) < weak_below)
    ws, wy = [signals[i] for i in weak], [labels[i] for i in weak]
    p_global = fit(ws, wy, 1.0, _prior(wy), names=glob + [MATCHABLE])
    return FusedCalibrator((p_local, p_global), "conditional", tuple(local + glob + [MATCHABLE])), p_global


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path)
    ap.add_argument("cands", type=Path)
    ap.add_argument("pairs", type=Path, nargs="+")
    a = ap.parse_args()
    calibrate.CONTEXT[MATCHABLE] = "log1p"  # a context input: its weight may take either sign
    calibrate.TRANSFORMS[MATCHABLE] = "log1p"
    gt, kinds, positives, records = load_replay(a.bench, a.cands)
    for rec in records:
        rec["candidates"] = [[c[0], c[1], with_matchable([c[2]])[0]] for c in rec["candidates"]]
    dw = CONTRAST_DISTRACTOR_WEIGHT
    for pf in a.pairs:
        data = copy_queries_only(json.loads(pf.read_text()))  # this experiment predates distractor queries
        queries = data.get("queries", data["sources"])
        names = list(data["names"])
        signals = with_matchable(data["signals"])
        built = calibrator_from_dict(fit_calibration(signals, data["labels"], names, queries))
        _report(f"{pf.stem}: as built", built, records, gt, positives, kinds)
        stage1, glob = conditional_fused(signals, data["labels"], names)
        print("   conditional global expert:", {n: round(w, 2) for n, w in zip(glob.names, glob.weights, strict=True)},
              "bias", round(glob.bias, 2), glob.source)
        cal = fit_top1(fit_contrast(stage1, signals, data["labels"], queries, dw), signals, data["labels"],
                       queries, dw)
        _report(f"{pf.stem}: conditional global", cal, records, gt, positives, kinds)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
