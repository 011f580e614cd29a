"""Does the evidence frame's expert help? The same calibration pairs and candidates, fitted as builds fit
them (``selfcal.fit_calibration``) without ``frame_similarity`` (A) and with it (B, its gated expert).

Candidates and pairs must be collected by an engine that makes frames (an index whose calibration reads
them, or one opened pending calibration, as ``calib_experiment.py pairs`` does)::

    python bench/calib_experiment.py collect /tmp/copylens-dev2 INDEX --out /tmp/cands.jsonl
    python bench/calib_experiment.py pairs INDEX --n 480 --strategy stratified --seed 0 --out /tmp/p0.json
    python bench/frames_experiment.py /tmp/copylens-dev2 /tmp/cands.jsonl /tmp/p0.json [/tmp/p1.json ...]

Per pair file: μAP / ECE per content kind and for the edits frames are for, the top-1s right and wrong at
the window's thresholds, and each kind's and edit's top-1 Brier score and log loss (proper scores: less noisy than a
10-bin ECE over a kind's 70-90 queries), then the largest top-1 moves (``--moves N``). ``--frame-lead``
replays B with each frame's similarity replaced by its lead over the query's best other framed candidate.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calib_experiment import load_replay  # noqa: E402

from copylens.core.bench.metrics import Prediction, calibration, evaluate, top1  # noqa: E402
from copylens.core.calibrate import FRAME, calibrator_from_dict, unframed  # noqa: E402
from copylens.core.selfcal import fit_calibration  # noqa: E402

EDITS = ("paste", "combo", "screenshot", "crop", "color", "invert")


def _strip(s: dict) -> dict:
    return {k: v for k, v in s.items() if k != FRAME}


def replay(data: dict, records: list[dict], framed: bool) -> list[Prediction]:
    """The benchmark's stored candidates scored by the model fitted on ``data``'s pairs."""
    names = unframed(data["names"])
    if framed:
        names.insert(next((i for i, n in enumerate(names) if n.startswith("global:")), len(names)), FRAME)
    signals = data["signals"] if framed else [_strip(s) for s in data["signals"]]
    cal = calibrator_from_dict(fit_calibration(signals, data["labels"], names, data["queries"], data["absent"],
                                               insets=[tuple(p) for p in data["insets"]]))
    preds = []
    for rec in records:
        cands = rec["candidates"]
        if not cands:
            continue
        p = cal.predict_query([c[2] if framed else _strip(c[2]) for c in cands], [tuple(x) for x in rec["insets"]])
        best: dict[str, float] = {}
        for (rid, _, _), v in zip(cands, p, strict=True):
            best[rid] = max(best.get(rid, 0.0), float(v))
        preds += [Prediction(rec["query_id"], r, v) for r, v in sorted(best.items(), key=lambda kv: -kv[1])[:10]]
    return preds


def frame_leads(signals: list[dict]) -> list[dict]:
    """One query's candidates with ``frame_similarity`` replaced by its lead over the query's best other
    framed candidate (the similarity itself when it is the only one framed): ``--frame-lead``, a replay of
    an expert that weighs a frame against a sibling's."""
    frames = [s.get(FRAME) for s in signals]
    out = []
    for i, s in enumerate(signals):
        others = [f for j, f in enumerate(frames) if j != i and f is not None]
        out.append(s if FRAME not in s else {**s, FRAME: s[FRAME] - (max(others) if others else 0.0)})
    return out


def with_frame_leads(data: dict, records: list[dict]) -> tuple[dict, list[dict]]:
    """``data``'s pairs and the stored ``records`` with :func:`frame_leads` applied per query."""
    by_query: dict[int, list[int]] = {}
    for i, q in enumerate(data["queries"]):
        by_query.setdefault(q, []).append(i)
    signals = list(data["signals"])
    for idx in by_query.values():
        for i, s in zip(idx, frame_leads([signals[i] for i in idx]), strict=True):
            signals[i] = s
    recs = [dict(r, candidates=[(a, b, s) for (a, b, _), s in
                                zip(r["candidates"], frame_leads([c[2] for c in r["candidates"]]), strict=True)])
            for r in records]
    return dict(data, signals=signals), recs


def proper_scores(best: dict, queries: list[str], positives: set) -> tuple[float, float]:
    """Mean Brier score and log loss of the top-1 scores (a query without candidates makes no claim)."""
    brier = loss = 0.0
    n = 0
    for q in queries:
        if q not in best:
            continue
        p = min(max(best[q].score, 1e-4), 1 - 1e-4)
        y = (q, best[q].reference_id) in positives
        brier += (p - y) ** 2
        loss -= math.log(p if y else 1 - p)
        n += 1
    return brier / max(n, 1), loss / max(n, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path)
    ap.add_argument("candidates", type=Path)
    ap.add_argument("pairs", type=Path, nargs="+")
    ap.add_argument("--moves", type=int, default=15)
    ap.add_argument("--frame-lead", action="store_true",
                    help="B's frame signal is its lead over the query's best other framed candidate")
    a = ap.parse_args()
    gt, kinds, positives, records = load_replay(a.bench, a.candidates)
    edit = {g.query_id: g.edit for g in gt}
    kind = {g.query_id: g.content for g in gt}
    frame_of = {(r["query_id"], rid): s[FRAME] for r in records for rid, _, s in r["candidates"] if FRAME in s}
    for path in a.pairs:
        data = json.loads(path.read_text())
        print(f"== {path.name}: {sum(FRAME in s for s in data['signals'])} of {len(data['signals'])} calibration "
              f"candidates have a frame")
        runs = {"A": replay(data, records, False),
                "B": replay(*with_frame_leads(data, records), True) if a.frame_lead else replay(data, records, True)}
        for label, preds in runs.items():
            e = evaluate(gt, preds)
            cells = " | ".join(f"{k} {e.per_content[k].micro_ap:.3f}/"
                               f"{calibration([p for p in preds if kind[p.query_id] == k], positives).ece:.3f}"
                               for k in kinds)
            eds = " ".join(f"{x} {calibration([p for p in preds if edit[p.query_id] == x], positives).ece:.3f}"
                           for x in EDITS)
            print(f"{label} all {e.micro_ap:.3f}/{e.recall_at_1:.3f}/{calibration(preds, positives).ece:.3f} | {cells}")
            print(f"  ECE by edit: {eds}")
        ta, tb = top1(runs["A"]), top1(runs["B"])
        for thr in (0.5, 0.8):
            cells = []
            for label, t in (("A", ta), ("B", tb)):
                right = sum(1 for q, p in t.items() if p.score >= thr and (q, p.reference_id) in positives)
                cells.append(f"{label} {right} right / {sum(1 for p in t.values() if p.score >= thr) - right} wrong")
            print(f"  top-1s at >= {thr}: " + ", ".join(cells))
        queries = [g.query_id for g in gt]
        for k in [*kinds, "all"]:
            qs = [q for q in queries if k == "all" or kind[q] == k]
            (ba, la), (bb, lb) = proper_scores(ta, qs, positives), proper_scores(tb, qs, positives)
            print(f"  top-1 Brier / log loss {k:11} A {ba:.4f} / {la:.4f}   B {bb:.4f} / {lb:.4f}")
        for x in EDITS:
            qs = [q for q in queries if edit[q] == x]
            (ba, la), (bb, lb) = proper_scores(ta, qs, positives), proper_scores(tb, qs, positives)
            print(f"  top-1 Brier / log loss {x:11} A {ba:.4f} / {la:.4f}   B {bb:.4f} / {lb:.4f}")
        moved = sorted((q for q in ta if q in tb), key=lambda q: -abs(tb[q].score - ta[q].score))
        for q in moved[:a.moves]:
            f = frame_of.get((q, tb[q].reference_id))
            print(f"   {q} {kind[q]:10} {edit[q]:12} {ta[q].score:.3f} ({'right' if (q, ta[q].reference_id) in positives else 'wrong'}) "
                  f"-> {tb[q].score:.3f} ({'right' if (q, tb[q].reference_id) in positives else 'wrong'}), "
                  f"frame {'none' if f is None else f'{f:.3f}'}")


if __name__ == "__main__":
    main()
