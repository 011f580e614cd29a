"""App tests without an index: workers, review log, settings, inspector drawing, build cancel, CLI."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PySide6.QtCore import QPointF, QSettings  # noqa: E402

from copylens.app.images import qimage_to_rgb, rgb_to_qimage  # noqa: E402
from copylens.app.index_dialog import BuildIndexDialog  # noqa: E402
from copylens.app.inspector import Inspector  # noqa: E402
from copylens.app.jobs import InspectData, QueryOutcome, QueryRequest, display_homography  # noqa: E402
from copylens.app.review_log import ReviewLog, export_log  # noqa: E402
from copylens.app.settings import AppSettings, load_settings, recent_indexes, remember_index, save_settings  # noqa: E402
from copylens.app.workers import JobWorker, WorkerPool  # noqa: E402
from copylens.core.errors import ImageLoadError  # noqa: E402
from copylens.core.progress import Progress  # noqa: E402
from copylens.core.results import Evidence, Match, QueryResult, Region  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def pool(qtbot):
    p = WorkerPool(4)
    yield p
    p.shutdown()


# ---- workers -------------------------------------------------------------------------------------------
def test_worker_runs_off_gui_thread_and_reports_progress(qtbot, pool):
    seen = {}

    def job():
        seen["thread"] = threading.get_ident()
        for i in range(3):
            yield Progress("step", i + 1, 3)
        return "answer"

    w = JobWorker(job)
    progress = []
    w.signals.progress.connect(lambda p: progress.append((p.done, threading.get_ident())))
    with qtbot.waitSignal(w.signals.result, timeout=5000) as blocker:
        pool.start(w)
    assert blocker.args == ["answer"]
    assert seen["thread"] != threading.get_ident()
    assert w.thread_ident == seen["thread"]
    assert [d for d, _ in progress] == [1, 2, 3]
    assert all(t == threading.get_ident() for _, t in progress)  # delivered on the GUI thread


def test_worker_cancel_stops_between_yields(qtbot, pool):
    steps = []

    def endless():
        while True:
            steps.append(1)
            time.sleep(0.005)
            yield Progress("spin", len(steps), 0)

    w = JobWorker(endless)
    results = []
    w.signals.result.connect(results.append)
    w.signals.progress.connect(lambda p: w.cancel() if p.done >= 3 else None)
    with qtbot.waitSignals([w.signals.cancelled, w.signals.finished], timeout=5000, order="strict"):
        pool.start(w)
    n = len(steps)
    time.sleep(0.05)
    assert results == [] and len(steps) == n  # the generator was closed, nothing runs any more


def test_worker_error_is_a_signal_not_an_exception(qtbot, pool):
    def bad():
        yield Progress("decode", 0, 1)
        raise ImageLoadError("/x/broken.jpg", "the file is truncated")

    w = JobWorker(bad)
    with qtbot.waitSignal(w.signals.error, timeout=5000) as blocker:
        pool.start(w)
    assert isinstance(blocker.args[0], ImageLoadError) and blocker.args[0].reason == "the file is truncated"


# ---- settings and review log ---------------------------------------------------------------------------
def test_settings_roundtrip_in_isolated_store(tmp_path):
    store = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    assert load_settings(store) == AppSettings()
    s = AppSettings(top_k=5, copy_threshold=0.9, possible_threshold=0.4, device="cpu", workers=3)
    save_settings(store, s)
    assert load_settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)) == s
    assert (s.verdict(0.95), s.verdict(0.5), s.verdict(0.1)) == ("copy", "possible", "no match")
    remember_index(store, "/a")
    remember_index(store, "/b")
    remember_index(store, "/a")
    assert recent_indexes(store) == ["/a", "/b"]


def test_review_log_records_and_exports(tmp_path):
    log = ReviewLog.in_dir(tmp_path)
    log.record("/q/a.jpg", "ab" * 32, "ref/1", 0.91, "copy")
    log.record("/q/a.jpg", "ab" * 32, "ref/1", 0.91, "not a copy", copy_share=0.05)
    assert log.latest("ab" * 32, "ref/1") == "not a copy"
    assert [d.copy_share for d in log.all()] == [None, 0.05]  # the share of copies the shown score was for
    with pytest.raises(ValueError, match="valid: copy, not a copy"):
        log.record("/q/a.jpg", "ab" * 32, "ref/1", 0.91, "maybe")
    rows = json.loads(export_log(log, tmp_path / "log.json").read_text())
    assert [r["decision"] for r in rows] == ["copy", "not a copy"] and rows[0]["reference_id"] == "ref/1"
    csv_text = export_log(log, tmp_path / "log.csv").read_text()
    assert csv_text.splitlines()[0] == "time,query_path,query_sha256,reference_id,score,decision,copy_share"
    log.close()


def test_review_log_from_before_the_share_column_opens_and_gains_it(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)  # the schema of logs written before 2026-12-05
    db.execute("CREATE TABLE decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, query_path TEXT "
               "NOT NULL, query_sha256 TEXT NOT NULL, reference_id TEXT NOT NULL, score REAL NOT NULL, decision "
               "TEXT NOT NULL)")
    db.execute("INSERT INTO decisions (time, query_path, query_sha256, reference_id, score, decision) VALUES "
               "('2026-12-01T10:00:00+0000', '/q/old.jpg', 'cd', 'ref/2', 0.7, 'copy')")
    db.commit()
    db.close()
    log = ReviewLog(path)
    log.record("/q/new.jpg", "ef", "ref/3", 0.4, "copy", copy_share=0.1)
    assert [(d.query_path, d.decision, d.copy_share) for d in log.all()] == [("/q/old.jpg", "copy", None),
                                                                              ("/q/new.jpg", "copy", 0.1)]
    log.close()
    assert len(ReviewLog(path).all()) == 2  # opened again: nothing added or lost


# ---- images and inspector ------------------------------------------------------------------------------
def test_qimage_roundtrip_keeps_pixels():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (13, 7, 3), dtype=np.uint8)  # odd width: padded QImage rows
    assert np.array_equal(qimage_to_rgb(rgb_to_qimage(a)), a)


def _hand_made_pair(n: int = 7) -> InspectData:
    """A 200x100 query that is the 100x50 reference scaled by 2 (display scale 1 on both sides)."""
    rng = np.random.default_rng(1)
    ref_pts = rng.uniform([5, 5], [95, 45], (n, 2)).astype(np.float32)
    h = np.diag([2.0, 2.0, 1.0])
    ev = Evidence(ref_pts * 2, ref_pts, np.linspace(0, 1, n).astype(np.float32), h,
                  np.array([[0, 0], [200, 0], [200, 100], [0, 100]], np.float32),
                  region=Region((0, 0, 200, 100), 1.0, "full"))
    match = Match("ref/one", 0.93, ev)
    result = QueryResult("q1", "q.png", (200, 100), [match], [Region((0, 0, 200, 100), 1.0, "full"),
                                                              Region((10, 10, 90, 60), 0.7, "caption")])
    q = rgb_to_qimage(np.full((100, 200, 3), 90, np.uint8))
    outcome = QueryOutcome(QueryRequest("q1", "q.png", path="q.png"), result, {})
    ref = rgb_to_qimage(np.full((50, 100, 3), 160, np.uint8))
    warped = rgb_to_qimage(np.full((100, 200, 3), 160, np.uint8))
    return InspectData(outcome, match, q, 1.0, ref, 1.0, warped)


def test_inspector_draws_the_strongest_lines(qtbot):
    insp = Inspector()
    qtbot.addWidget(insp)
    insp.resize(900, 500)
    insp.show()
    qtbot.waitExposed(insp)
    data = _hand_made_pair(7)
    insp.show_data(data)
    qtbot.wait(50)
    insp.canvas.grab()  # paints the overlay
    assert insp.canvas.overlay.drawn == 7
    insp.canvas.max_lines = 3  # only the strongest are drawn when there are more
    insp.canvas.grab()
    assert insp.canvas.overlay.drawn == 3
    insp.canvas.max_lines = 50
    kinds = sorted(k for k, _ in insp.canvas._annotations)
    assert kinds == ["outline", "region", "region"]  # caption box + its label, and the outline
    tags = [it for k, it in insp.canvas._annotations if k == "region" and hasattr(it, "text")]
    assert [t.text() for t in tags] == ["in a caption frame 70%"]  # in words, not "caption 0.70"
    assert [t.toolTip() for t in tags] == ["picture inside a meme or caption frame (70%)"]
    insp.boxes["matches"].setChecked(False)
    insp.canvas.grab()
    assert insp.canvas.overlay.drawn == 0
    insp.mode.setCurrentIndex(1)  # blend: the warped reference is shown over the query
    assert insp.canvas._warp_item.isVisible() and not insp.canvas.ref_view.isVisible()
    png = insp.annotated_image()
    assert png.width() > 0 and png.height() > insp.canvas.height()


def test_display_homography_maps_display_pixels():
    h = np.array([[1.5, 0, 10], [0, 1.5, 20], [0, 0, 1]], np.float64)
    hd = display_homography(h, query_scale=2.0, reference_scale=4.0)
    r_disp = np.array([10.0, 5.0, 1.0])  # reference display pixel -> original (40, 20)
    q_orig = h @ np.array([40.0, 20.0, 1.0])
    assert np.allclose(hd @ r_disp, q_orig / np.array([2.0, 2.0, 1.0]))


# ---- build dialog --------------------------------------------------------------------------------------
def test_cancel_stops_a_running_build(qtbot, pool, tmp_path):
    ticks = []

    def slow_build(ref, out, workers):
        for i in range(1000):
            ticks.append(i)
            time.sleep(0.01)
            yield Progress("extract", i, 1000, f"img{i}.png")
        return "finished"

    (tmp_path / "refs").mkdir()
    dlg = BuildIndexDialog(pool, 1, str(tmp_path / "refs"), str(tmp_path / "idx"), build_fn=slow_build)
    qtbot.addWidget(dlg)
    dlg.start()
    qtbot.waitUntil(lambda: len(ticks) >= 5, timeout=5000)
    assert dlg.state == "running" and dlg.cancel_button.isEnabled()
    dlg.cancel()
    qtbot.waitUntil(lambda: dlg.state == "cancelled", timeout=5000)
    qtbot.waitUntil(lambda: dlg.worker is None, timeout=5000)
    n = len(ticks)
    time.sleep(0.1)
    assert len(ticks) == n < 1000 and dlg.summary is None
    assert "Resume" in dlg.result_label.text() and dlg.start_button.isEnabled()


# ---- CLI -----------------------------------------------------------------------------------------------
def test_cli_registers_gui_and_demo():
    from copylens.app.cli import register, run_demo, run_gui

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args(["gui", "idx", "--query", "a.jpg", "--query", "b", "--screenshot", "o.png"])
    assert (a.func, a.index, a.query, a.screenshot) == (run_gui, "idx", ["a.jpg", "b"], "o.png")
    assert parser.parse_args(["demo"]).func is run_demo


def test_review_log_latest_all_and_undo(tmp_path):
    from copylens.app.review_log import ReviewLog

    log = ReviewLog(tmp_path / "log.sqlite")
    log.record("a.jpg", "sha-a", "ref1", 0.9, "copy")
    log.record("a.jpg", "sha-a", "ref1", 0.9, "not a copy")  # changed mind
    log.record("b.jpg", "sha-b", "", 0.1, "no copy")
    log.record("b.jpg", "sha-b", "", 0.0, "undone")  # undo: the query is unreviewed again
    log.record("c.jpg", "sha-c", "ref2", 0.5, "copy")
    assert log.latest_all() == {("sha-a", "ref1"): "not a copy", ("sha-c", "ref2"): "copy"}
    assert log.latest("sha-b", "") is None and log.latest("sha-a", "ref1") == "not a copy"
    assert len(log.all()) == 5  # append-only: undo is recorded, nothing deleted
    with pytest.raises(ValueError):
        log.record("a.jpg", "sha-a", "ref1", 0.9, "maybe")
    log.close()


def test_build_dialog_says_resume_for_a_partial_index_after_typing_pauses(qtbot, pool, tmp_path):
    from copylens.core.index import DATABASE

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / DATABASE).write_bytes(b"")  # what a killed build leaves
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("a folder with files is not an index")
    dlg = BuildIndexDialog(pool, 1, str(tmp_path), str(tmp_path / "new"))
    qtbot.addWidget(dlg)
    assert dlg.start_button.text() == "Build"
    dlg.out_edit.setText(str(partial))
    assert dlg.start_button.text() == "Build"  # not yet: checked once typing pauses
    qtbot.waitUntil(lambda: dlg.start_button.text() == "Resume", timeout=2000)
    dlg.out_edit.setText(str(tmp_path / "other"))
    qtbot.waitUntil(lambda: dlg.start_button.text() == "Build", timeout=2000)


def _inspector_with_regions(qtbot, *regions: Region) -> tuple[Inspector, InspectData]:
    """An inspector, shown at 900 x 500, on the hand-made pair whose result also searched ``regions``."""
    data = _hand_made_pair(5)
    result = dataclasses.replace(data.outcome.result, regions=[data.outcome.result.regions[0], *regions])
    data = dataclasses.replace(data, outcome=dataclasses.replace(data.outcome, result=result))
    insp = Inspector()
    qtbot.addWidget(insp)
    insp.resize(900, 500)
    insp.show()
    qtbot.waitExposed(insp)
    insp.show_data(data)
    return insp, data


def test_region_tags_stay_inside_the_picture_at_any_zoom_on_a_dark_plate(qtbot):
    right = Region((100.0, 30.0, 130.0, 90.0), 0.8, "quad", (100.0, 30.0, 130.0, 30.0, 130.0, 90.0, 100.0, 90.0))
    left = Region((0.0, 30.0, 80.0, 90.0), 0.6, "caption")
    insp, _ = _inspector_with_regions(qtbot, right, left)
    view = insp.canvas.query_view
    tags = {it.text(): it for k, it in insp.canvas._annotations if k == "region" and hasattr(it, "text")}
    assert set(tags) == {"seen at an angle 80%", "in a caption frame 60%"}

    def on_screen(tag):
        return tag.deviceTransform(view.viewportTransform()).mapRect(tag.boundingRect())

    def inside(tag) -> bool:
        picture = view.mapFromScene(view.sceneRect()).boundingRect()
        r = on_screen(tag)
        return picture.left() - 1 <= r.left() and r.right() <= picture.right() + 1

    for text, tag in tags.items():
        assert inside(tag), text
        plate = tag.childItems()[0]
        assert plate.brush().color().value() < 60 and plate.brush().color().alpha() > 120  # dark, opaque
    # the right-hand region's tag ends at its right edge, the left one's starts at its left edge
    assert abs(on_screen(tags["seen at an angle 80%"]).right() - view.mapFromScene(QPointF(130.0, 0)).x()) <= 4
    assert abs(on_screen(tags["in a caption frame 60%"]).left() - view.mapFromScene(QPointF(0.0, 0)).x()) <= 4
    # zoomed out until the picture is barely wider than a tag, the tags still start and end inside it,
    # though the right-hand one, hung from its region's right edge (at 65% of the width), would not
    tag = tags["seen at an angle 80%"]
    while view.mapFromScene(view.sceneRect()).boundingRect().width() > 1.25 * on_screen(tag).width():
        insp.zoom(0.9)
    assert view.mapFromScene(view.sceneRect()).boundingRect().width() > on_screen(tag).width()
    assert view.mapFromScene(QPointF(130.0, 0)).x() - on_screen(tag).width() < view.mapFromScene(QPointF(0, 0)).x()
    assert all(inside(t) for t in tags.values())
    # the same when the zoom comes from the wheel over the reference (the query view follows it)
    insp.canvas.fit()
    while view.mapFromScene(view.sceneRect()).boundingRect().width() > 1.25 * on_screen(tag).width():
        insp.canvas.ref_view.scale(0.9, 0.9)
        insp.canvas.ref_view.zoomed.emit(0.9, QPointF())
    assert view.mapFromScene(view.sceneRect()).boundingRect().width() > on_screen(tag).width()
    assert all(inside(t) for t in tags.values())


def test_a_picture_seen_at_an_angle_is_drawn_as_its_quad_and_sessions_keep_it(qtbot):
    from PySide6.QtWidgets import QGraphicsPolygonItem

    from copylens.app.session import decode_result, encode_result

    quad = (20.0, 10.0, 150.0, 20.0, 140.0, 90.0, 30.0, 80.0)
    region = Region((20.0, 10.0, 150.0, 90.0), 0.8, "quad", quad)
    insp, data = _inspector_with_regions(qtbot, region)
    result = data.outcome.result
    drawn = [it for k, it in insp.canvas._annotations if k == "region" and isinstance(it, QGraphicsPolygonItem)]
    assert len(drawn) == 1
    corners = [(p.x(), p.y()) for p in drawn[0].polygon()]
    assert np.allclose(corners, np.reshape(quad, (4, 2)))  # its corners, not its bounding box
    labels = [it.toolTip() for k, it in insp.canvas._annotations if k == "region" and hasattr(it, "text")]
    assert labels == ["picture seen at an angle (searched upright) (80%)"]
    again = decode_result(*encode_result(result))
    assert again.regions[1] == region and again.regions[0].quad is None


@pytest.mark.parametrize("scores, says", [
    ((0.97, 0.6, 0.1), ": 1 copy and 1 possible match of 3 ranked"),
    ((0.95, 0.9, 0.1), ": 2 copies of 3 ranked"),
    ((0.7, 0.5, 0.1), ": 2 possible matches of 3 ranked"),
    ((0.2, 0.1), ": <b>no match</b> (nothing reaches 30%; the best candidate scores 20%)"),
])
def test_results_title_counts_matches_by_verdict(qtbot, scores, says):
    from copylens.app.results_panel import ResultsPanel

    panel = ResultsPanel()
    qtbot.addWidget(panel)
    matches = [Match(f"ref/{i}", s, Evidence.empty()) for i, s in enumerate(scores)]
    outcome = QueryOutcome(QueryRequest("q1", "q.png", path="q.png"), QueryResult("q1", "q.png", (200, 100), matches),
                           {})
    settings = AppSettings(copy_threshold=0.8, possible_threshold=0.3)
    panel.show_outcome(outcome, settings)
    assert says in panel.title.text()
    assert panel.num_above() == sum(s >= 0.3 for s in scores)
