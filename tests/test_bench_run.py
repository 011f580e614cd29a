"""End to end: a miniature benchmark from scikit-image's bundled photos, indexed, queried and scored."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from copylens.core.bench.make import make_benchmark
from copylens.core.bench.run import RunReport, format_report, run_benchmark
from copylens.core.cli import main as _cli  # the real `copylens` entry point
from copylens.core.progress import run_job

from conftest import skimage_rgb

IMAGES = ["astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "hubble_deep_field",
          "coins", "page", "text"]
EASY = ["crop", "color", "mirror_jpeg", "text", "paste"]  # edits a working engine must see through


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    src = root / "src"
    src.mkdir()
    for name in IMAGES:
        Image.fromarray(skimage_rgb(name)).save(src / f"{name}'s photo.png")
    run_job(make_benchmark([src], root / "bench", references=7, queries=5, distractors=3, seed=1, edits=EASY))
    return root / "bench"


@pytest.fixture(scope="module")
def first_run(bench) -> RunReport:
    return run_job(run_benchmark(bench, run_dir=bench / "run1", calibrate=False))




def test_run_writes_predictions_and_scores_them(bench, first_run):
    r = first_run
    assert not r.index_reused and r.build_seconds is not None and r.build_images_per_s > 0
    assert r.num_references == 7 and r.num_queries == 8 and not r.failed_queries
    with open(bench / "run1" / "predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["query_id", "reference_id", "score"] and len(rows) - 1 == r.metrics.num_predictions > 0
    query_ids = {p.stem for p in (bench / "queries").iterdir()}
    assert {row[0] for row in rows[1:]} <= query_ids
    ref_ids = {p.relative_to(bench / "references").with_suffix("").as_posix()
               for p in (bench / "references").rglob("*.png")}
    assert {row[1] for row in rows[1:]} <= ref_ids
    m = r.metrics
    assert (m.num_positive_queries, m.num_distractor_queries) == (5, 3)
    # easy edits of distinct photos: a working engine finds most of them first
    assert m.recall_at_1 >= 0.6 and m.micro_ap >= 0.5
    assert set(m.per_edit) <= set(EASY) and "photo" in m.per_content
    assert r.latency_p95_ms >= r.latency_p50_ms > 0 and r.peak_rss_mb > 0
    assert r.index_bytes > 0 and r.bytes_per_reference == pytest.approx(r.index_bytes / 7)
    saved = json.loads((bench / "run1" / "report.json").read_text(encoding="utf-8"))
    assert saved["metrics"]["micro_ap"] == pytest.approx(m.micro_ap)
    assert "μAP" in format_report(r)
    # the releases it ran with, since they move the figures
    import cv2
    import numpy
    assert saved["environment"]["numpy"] == numpy.__version__ and saved["environment"]["python"].startswith("3.")
    assert saved["environment"]["opencv-contrib-python-headless"].startswith(cv2.__version__.split("-")[0])
    assert f"numpy {numpy.__version__}" in format_report(r)


def test_second_run_reuses_the_index_through_the_cli(bench, first_run, capsys):
    code = _cli(["bench", "run", str(bench), "--out", str(bench / "run2"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["index_reused"] and out["build_seconds"] is None
    assert out["metrics"]["micro_ap"] == pytest.approx(first_run.metrics.micro_ap)
    # scoring the saved predictions again gives the same answer
    code = _cli(["eval", "--gt", str(bench / "ground_truth.csv"), "--pred", str(bench / "run2" / "predictions.csv"),
                 "--threshold", "0.5", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["recall_at_1"] == pytest.approx(first_run.metrics.recall_at_1)


def test_run_on_a_folder_that_is_not_a_benchmark_fails_cleanly(tmp_path, capsys):
    assert _cli(["bench", "run", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "not a benchmark folder" in err and len(err.splitlines()) == 1


def test_run_builds_its_index_with_the_global_descriptors_asked_for(bench, tmp_path, capsys):
    index = tmp_path / "sift-only"
    code = _cli(["bench", "run", str(bench), "--index", str(index), "--out", str(tmp_path / "run"),
                 "--global", "none", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and not out["index_reused"]
    manifest = json.loads((index / "manifest.json").read_text(encoding="utf-8"))
    assert [g["name"] for g in manifest["global"]] == []  # SIFT only: no global descriptor
    # the report's μAP is the one its own predictions file scores against the ground truth
    from copylens.core.bench.metrics import evaluate, read_ground_truth, read_predictions

    again = evaluate(read_ground_truth(bench / "ground_truth.csv"), read_predictions(Path(out["run_dir"]) /
                                                                                       "predictions.csv"))
    assert out["metrics"]["micro_ap"] == pytest.approx(again.micro_ap) and again.micro_ap >= 0.5


def test_no_build_queries_an_index_holding_more_than_the_benchmark(bench, tmp_path, capsys):
    """An index of the benchmark's references plus extra distractor references (the scale benchmark) is
    queried as it is, never rebuilt to match DIR/references."""
    from copylens.core.index.build import build_index

    refs = tmp_path / "refs"
    for p in (bench / "references").rglob("*.png"):  # the benchmark's references, copied, plus two more
        dest = refs / p.relative_to(bench / "references")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
    (refs / "extra").mkdir()
    for name in ("moon", "horse"):
        Image.fromarray(skimage_rgb(name)).save(refs / "extra" / f"{name}.png")
    run_job(build_index(refs, tmp_path / "index", calibrate=False, global_descriptors=("pdq",)))
    code = _cli(["bench", "run", str(bench), "--index", str(tmp_path / "index"), "--no-build",
                 "--out", str(tmp_path / "run"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["index_reused"] and out["num_references"] == 9
    assert out["metrics"]["num_queries"] == 8
    assert out["metrics"]["recall_at_1"] >= 0.6  # the references keep the ids the ground truth names
    assert _cli(["bench", "run", str(bench), "--index", str(tmp_path / "missing"), "--no-build"]) == 1
