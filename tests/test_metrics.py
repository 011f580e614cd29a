"""ISC2021 metrics against answers computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import json
import math

import pytest

from copylens.core.bench.metrics import (
    DuplicatePredictionError,
    GroundTruth,
    Prediction,
    evaluate,
    format_table,
    read_ground_truth,
    read_predictions,
    write_predictions,
)
from copylens.core.cli import main as _cli  # the real `copylens` entry point

# q1..q3 are copies of r1..r3, q4 is a distractor.
GT = [
    GroundTruth("q1", "r1", "crop", "photo"),
    GroundTruth("q2", "r2", "crop", "photo"),
    GroundTruth("q3", "r3", "blur", "graphics"),
    GroundTruth("q4", None, "blur", "graphics"),
]
PRED = [
    Prediction("q1", "r1", 0.9),  # TP
    Prediction("q4", "r9", 0.8),  # FP (a distractor's prediction is always false)
    Prediction("q2", "r2", 0.7),  # TP, tied with the next one ...
    Prediction("q2", "r5", 0.7),  # ... FP: among ties the negative ranks first
    Prediction("q3", "r7", 0.5),  # FP
    Prediction("q3", "r3", 0.4),  # TP
]


def test_micro_ap_with_ties_and_distractors():
    # pooled ranking: TP(.9) FP(.8) FP(.7 q2r5) TP(.7 q2r2) FP(.5) TP(.4)
    # precision at each TP: 1/1, 2/4, 3/6 -> μAP = (1 + 0.5 + 0.5) / 3 = 2/3
    m = evaluate(GT, PRED)
    assert m.micro_ap == pytest.approx(2 / 3)
    # prefix precisions 1, .5, .333, .5, .4, .5: only the first reaches 0.9 -> recall 1/3 at score 0.9
    assert m.recall_at_p90 == pytest.approx(1 / 3)
    assert m.threshold_at_p90 == pytest.approx(0.9)
    # top-1 per query: q1 -> r1 (right), q2 -> r5 (tie, negative first: wrong), q3 -> r7 (wrong)
    assert m.recall_at_1 == pytest.approx(1 / 3)
    # every true reference is within its query's top 2
    assert m.recall_at_10 == pytest.approx(1.0) and m.top_k_accuracy[5] == pytest.approx(1.0)
    assert (m.num_queries, m.num_positive_queries, m.num_distractor_queries) == (4, 3, 1)
    assert (m.num_gt_pairs, m.num_predictions) == (3, 6)


def test_decision_metrics_without_threshold():
    m = evaluate(GT, PRED)
    # all four queries have a top answer, only q1's is right -> precision@1 = 1/4
    assert m.precision_at_1 == pytest.approx(0.25)
    # q1 right; q2, q3 wrong; q4 (distractor) answered -> wrong: 1/4
    assert m.accuracy_at_1 == pytest.approx(0.25)
    # AP@5: q1 [T] = 1; q2 [F,T] = (1/2)/1; q3 [F,T] = 1/2; q4 has predictions = 0 -> mean 2/4
    assert m.map_at_5 == pytest.approx(0.5)


def test_decision_metrics_with_threshold():
    # score >= 0.75 keeps q1->r1 and q4->r9
    m = evaluate(GT, PRED, threshold=0.75)
    assert m.precision_at_1 == pytest.approx(1 / 2)  # q1 right, q4 wrong
    assert m.accuracy_at_1 == pytest.approx(1 / 4)  # q1 only (q4 still answers)
    assert m.map_at_5 == pytest.approx(1 / 4)  # 1 + 0 + 0 + 0
    # score >= 0.85 keeps q1->r1 alone: the distractor is now silent, which is right
    m = evaluate(GT, PRED, threshold=0.85)
    assert m.precision_at_1 == pytest.approx(1.0)
    assert m.accuracy_at_1 == pytest.approx(2 / 4)  # q1 and q4
    assert m.map_at_5 == pytest.approx(2 / 4)  # 1 + 0 + 0 + 1
    # the threshold never changes the ranking metrics
    assert m.micro_ap == pytest.approx(2 / 3) and m.recall_at_1 == pytest.approx(1 / 3)


def test_unpredicted_pairs_count_in_the_denominator():
    gt = [*GT, GroundTruth("q5", "r5", "crop", "photo")]
    # same ranking, 4 ground-truth pairs: μAP = (1 + 0.5 + 0.5) / 4
    m = evaluate(gt, PRED)
    assert m.micro_ap == pytest.approx(0.5)
    assert m.recall_at_1 == pytest.approx(1 / 4)


def test_constant_scores_get_the_worst_order():
    gt = [GroundTruth("a", "ra"), GroundTruth("b", "rb")]
    preds = [Prediction("a", "ra", 0.5), Prediction("a", "x", 0.5), Prediction("b", "y", 0.5),
             Prediction("b", "rb", 0.5)]
    # ranking: F F T T -> precisions 1/3, 2/4 -> μAP = (1/3 + 1/2) / 2 = 5/12
    m = evaluate(gt, preds)
    assert m.micro_ap == pytest.approx(5 / 12)
    assert m.recall_at_1 == 0.0 and math.isnan(m.recall_at_p90) and m.threshold_at_p90 is None


def test_perfect_and_empty_predictions():
    perfect = [Prediction("q1", "r1", 0.9), Prediction("q2", "r2", 0.8), Prediction("q3", "r3", 0.7)]
    m = evaluate(GT, perfect, threshold=0.5)
    assert m.micro_ap == 1.0 and m.recall_at_p90 == 1.0 and m.threshold_at_p90 == pytest.approx(0.7)
    assert m.accuracy_at_1 == 1.0 and m.map_at_5 == 1.0 and m.precision_at_1 == 1.0
    m = evaluate(GT, [])
    assert m.micro_ap == 0.0 and m.recall_at_1 == 0.0 and math.isnan(m.precision_at_1)
    assert m.accuracy_at_1 == pytest.approx(1 / 4)  # only the distractor is right to say nothing


def test_map_at_5_with_several_references():
    gt = [GroundTruth("q", "a"), GroundTruth("q", "b")]
    preds = [Prediction("q", "a", 0.9), Prediction("q", "x", 0.8), Prediction("q", "b", 0.7)]
    # AP@5 = (1/1 + 2/3) / min(2, 5) = 5/6; μAP is the same with one query
    m = evaluate(gt, preds)
    assert m.map_at_5 == pytest.approx(5 / 6) and m.micro_ap == pytest.approx(5 / 6)


def test_breakdowns_by_edit_and_content():
    m = evaluate(GT, PRED)
    crop = m.per_edit["crop"]
    # crop: q1, q2; ranking TP(.9) FP(.7) TP(.7) -> (1 + 2/3) / 2 = 5/6; recall@1: q1 yes, q2 no
    assert (crop.num_queries, crop.num_positive_queries) == (2, 2)
    assert crop.micro_ap == pytest.approx(5 / 6) and crop.recall_at_1 == pytest.approx(0.5)
    blur = m.per_edit["blur"]
    # blur: q3 + distractor q4; ranking FP(.8, q4) FP(.5) TP(.4) -> (1/3) / 1
    assert (blur.num_queries, blur.num_positive_queries) == (2, 1)
    assert blur.micro_ap == pytest.approx(1 / 3) and blur.recall_at_1 == 0.0
    # content follows the same split here
    assert m.per_content["photo"].micro_ap == pytest.approx(5 / 6)
    assert m.per_content["graphics"].micro_ap == pytest.approx(1 / 3)
    assert set(m.per_edit) == {"crop", "blur"}


def test_duplicate_predictions_are_rejected():
    with pytest.raises(DuplicatePredictionError, match="q1.*r1"):
        evaluate(GT, [*PRED, Prediction("q1", "r1", 0.1)])


def test_csv_round_trip_with_awkward_names(tmp_path):
    preds = [Prediction("q00001", "dir/carpenter's kit, big", 0.75), Prediction("q00002", "é/ü \"x\"", 0.5)]
    path = tmp_path / "pred.csv"
    write_predictions(path, preds)
    assert read_predictions(path) == preds
    bare = tmp_path / "bare.csv"  # no header
    bare.write_text("q1,r1,0.9\nq4,r9,0.8\n", encoding="utf-8")
    assert read_predictions(bare) == [Prediction("q1", "r1", 0.9), Prediction("q4", "r9", 0.8)]
    bad = tmp_path / "bad.csv"
    bad.write_text("q1,r1,high\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a number"):
        read_predictions(bad)


def test_ground_truth_reader(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("query_id,reference_id,edit,content,x0,y0,x1,y1\n"
                    "q1,a/b's,paste,photo,10,20,110,220\n"
                    "q2,,crop,graphics,,,,\n", encoding="utf-8")
    gt = read_ground_truth(path)
    assert gt == [GroundTruth("q1", "a/b's", "paste", "photo", (10, 20, 110, 220)),
                  GroundTruth("q2", None, "crop", "graphics", None)]
    minimal = tmp_path / "min.csv"
    minimal.write_text("q1,r1\nq2,\n", encoding="utf-8")
    assert read_ground_truth(minimal) == [GroundTruth("q1", "r1"), GroundTruth("q2", None)]
    reordered = tmp_path / "re.csv"
    reordered.write_text("reference_id,query_id\nr1,q1\n", encoding="utf-8")
    assert read_ground_truth(reordered) == [GroundTruth("q1", "r1")]


def test_table_and_json():
    m = evaluate(GT, PRED)
    text = format_table(m)
    assert "μAP" in text and "0.6667" in text and "graphics" in text
    d = json.loads(json.dumps(m.to_dict()))
    assert d["micro_ap"] == pytest.approx(2 / 3) and d["per_edit"]["crop"]["recall_at_1"] == 0.5




def test_eval_command(tmp_path, capsys):
    gt, pred = tmp_path / "gt.csv", tmp_path / "pred.csv"
    gt.write_text("query_id,reference_id,edit,content\nq1,r1,crop,photo\nq2,r2,crop,photo\n"
                  "q3,r3,blur,graphics\nq4,,blur,graphics\n", encoding="utf-8")
    write_predictions(pred, PRED)
    assert _cli(["eval", "--gt", str(gt), "--pred", str(pred)]) == 0
    assert "0.6667" in capsys.readouterr().out
    assert _cli(["eval", "--gt", str(gt), "--pred", str(pred), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro_ap"] == pytest.approx(2 / 3)
    # a failure is one line on stderr and exit code 1
    assert _cli(["eval", "--gt", str(tmp_path / "missing.csv"), "--pred", str(pred)]) == 1
    err = capsys.readouterr().err.strip()
    assert "missing.csv" in err and len(err.splitlines()) == 1
    pred.write_text("q1,r1,0.9\nq1,r1,0.8\n", encoding="utf-8")
    assert _cli(["eval", "--gt", str(gt), "--pred", str(pred)]) == 1
    assert "duplicate" in capsys.readouterr().err
    # usage errors exit with 2 (argparse)
    with pytest.raises(SystemExit) as exc:
        _cli(["eval", "--gt", str(gt)])
    assert exc.value.code == 2


def test_calibration_known_answer():
    """Top-1 per query: q1 right at 0.9, q2 wrong at 0.85 (a distractor), q3 right at 0.15, q4 wrong at
    0.05; the 0.3 of q1 is not its top-1. Bins of 0.5: [0, 0.5) holds 0.15 (right) and 0.05 (wrong):
    conf 0.10, acc 0.5; [0.5, 1] holds 0.9 (right) and 0.85 (wrong): conf 0.875, acc 0.5.
    ECE = 0.5 * |0.5 - 0.1| + 0.5 * |0.5 - 0.875| = 0.3875."""
    from copylens.core.bench.metrics import calibration

    preds = [Prediction("q1", "r1", 0.9), Prediction("q1", "r7", 0.3), Prediction("q2", "r2", 0.85),
             Prediction("q3", "r3", 0.15), Prediction("q4", "r9", 0.05)]
    positives = {("q1", "r1"), ("q3", "r3"), ("q4", "r4")}
    cal = calibration(preds, positives, bins=2)
    assert cal.num_predictions == 4
    assert [b.count for b in cal.bins] == [2, 2]
    assert cal.bins[0].mean_score == pytest.approx(0.10) and cal.bins[0].accuracy == 0.5
    assert cal.bins[1].mean_score == pytest.approx(0.875) and cal.bins[1].accuracy == 0.5
    assert cal.ece == pytest.approx(0.3875)
    perfect = calibration([Prediction("a", "x", 1.0), Prediction("b", "y", 0.0)], {("a", "x")}, bins=10)
    assert perfect.ece == 0.0 and perfect.bins[-1].count == 1 and perfect.bins[0].count == 1


def test_evaluate_reports_ece_per_content():
    gt = [GroundTruth("q1", "r1", "crop", "icons"), GroundTruth("q2", None, "crop", "icons"),
          GroundTruth("q3", "r3", "crop", "photo")]
    preds = [Prediction("q1", "r1", 1.0), Prediction("q2", "r5", 0.5), Prediction("q3", "r3", 1.0)]
    m = evaluate(gt, preds)
    assert m.per_content["photo"].ece == 0.0
    assert m.per_content["icons"].ece == pytest.approx(0.25)  # the distractor's 0.5 is wrong: |0 - 0.5| / 2
    assert m.ece == pytest.approx(0.5 / 3)


def test_reliability_diagram_png(tmp_path):
    from PIL import Image

    from copylens.core.bench.metrics import calibration
    from copylens.core.bench.plots import reliability_diagrams

    cal = calibration([Prediction("a", "x", 0.95), Prediction("b", "y", 0.2)], {("a", "x")})
    paths = reliability_diagrams({"overall": cal, "lineart": cal}, tmp_path, unseen=["lineart"])
    assert [p.name for p in paths] == ["reliability_overall.png", "reliability_lineart.png"]
    img = Image.open(paths[1]).convert("RGB")
    assert img.size == (448, 448)
    # the 0.9-1.0 bin is a full-height bar (accuracy 1)
    assert img.getpixel((44 + 0.95 * 360, 44 + 60)) == (70, 130, 200)
    assert img.getpixel((44 + 0.23 * 360, 44 + 60)) == (255, 255, 255)  # the 0.2 bin: accuracy 0, no bar


def test_ground_truth_reads_the_old_attack_column(tmp_path):
    """Benchmarks written before the edit library had one name call the column "attack"."""
    old = tmp_path / "old.csv"
    old.write_text("query_id,reference_id,attack,content,x0,y0,x1,y1\nq1,r1,crop,photo,,,,\n")
    new = tmp_path / "new.csv"
    new.write_text("query_id,reference_id,edit,content,x0,y0,x1,y1\nq1,r1,crop,photo,1,2,3,4\n")
    assert read_ground_truth(old)[0].edit == "crop" and read_ground_truth(old)[0].box is None
    assert read_ground_truth(new)[0].edit == "crop" and read_ground_truth(new)[0].box == (1, 2, 3, 4)
