"""Two benchmark runs of the same benchmark compared (their ``predictions.csv``): μAP / recall@1 / ECE and
the top-1 Brier score and log loss per content kind, ECE per edit, top-1s right and wrong at the window's
thresholds, and the largest top-1 moves.

    .venv/bin/python bench/compare_runs.py /tmp/copylens-dev2 /tmp/dev2-p-run /tmp/dev2-f-run --moves 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from frames_experiment import proper_scores  # noqa: E402

from copylens.core.bench.metrics import calibration, evaluate, read_ground_truth, read_predictions, top1  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", type=Path)
    ap.add_argument("before", type=Path, help="run folder")
    ap.add_argument("after", type=Path, help="run folder")
    ap.add_argument("--moves", type=int, default=20)
    a = ap.parse_args()
    gt = read_ground_truth(a.bench / "ground_truth.csv")
    positives = {(g.query_id, g.reference_id) for g in gt if g.reference_id}
    kind = {g.query_id: g.content for g in gt}
    edit = {g.query_id: g.edit for g in gt}
    kinds = sorted(set(kind.values()))
    runs = {"before": read_predictions(a.before / "predictions.csv"),
            "after": read_predictions(a.after / "predictions.csv")}
    best = {label: top1(preds) for label, preds in runs.items()}
    for label, preds in runs.items():
        e = evaluate(gt, preds)
        brier = proper_scores(best[label], list(kind), positives)
        print(f"{label}: all {e.micro_ap:.3f} / {e.recall_at_1:.3f} / {calibration(preds, positives).ece:.3f}, "
              f"Brier / log loss {brier[0]:.4f} / {brier[1]:.4f}")
        for k in kinds:
            ece = calibration([p for p in preds if kind[p.query_id] == k], positives).ece
            brier = proper_scores(best[label], [q for q in kind if kind[q] == k], positives)
            print(f"  {k:11} {e.per_content[k].micro_ap:.3f} / {e.per_content[k].recall_at_1:.3f} / {ece:.3f}, "
                  f"Brier / log loss {brier[0]:.4f} / {brier[1]:.4f}")
        print("  ECE by edit: " + " ".join(
            f"{x} {calibration([p for p in preds if edit[p.query_id] == x], positives).ece:.3f}"
            for x in sorted(set(edit.values()))))
        for thr in (0.5, 0.8):
            right = sum(1 for q, p in best[label].items() if p.score >= thr and (q, p.reference_id) in positives)
            shown = sum(1 for p in best[label].values() if p.score >= thr)
            print(f"  top-1s at >= {thr}: {right} right, {shown - right} wrong")
    ta, tb = best["before"], best["after"]
    moved = sorted((q for q in ta if q in tb), key=lambda q: -abs(tb[q].score - ta[q].score))
    print(f"top-1s moved by more than 0.05: {sum(abs(tb[q].score - ta[q].score) > 0.05 for q in moved)}")
    for q in moved[:a.moves]:
        ok = ["right" if (q, t[q].reference_id) in positives else "wrong" for t in (ta, tb)]
        print(f"  {q} {kind[q]:10} {edit[q]:12} {ta[q].score:.3f} ({ok[0]}) -> {tb[q].score:.3f} ({ok[1]})")


if __name__ == "__main__":
    main()
