"""End-to-end window tests on a real tiny index built from scikit-image's bundled images."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import dataclasses  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import skimage.data  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QMimeData, QPointF, QSettings, QStandardPaths, Qt, QTimer, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent, QGuiApplication  # noqa: E402

from copylens.app.main_window import RESULTS_MIN_WIDTH, MainWindow  # noqa: E402
from copylens.core.index.build import build_index  # noqa: E402
from copylens.core.progress import run_job  # noqa: E402

from conftest import write_references  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.slow]
REFS = ("astronaut", "coffee", "chelsea", "rocket", "camera")


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("index")
    refs = write_references(root / "refs", REFS)
    run_job(build_index(refs, root / "idx", workers=1, calibrate=False))
    return root / "idx"


@pytest.fixture
def queries(tmp_path) -> dict[str, Path]:
    astro = Image.fromarray(skimage.data.astronaut())
    crop = astro.crop((60, 40, 420, 400)).rotate(8, expand=True, fillcolor=(255, 255, 255)).resize((300, 300))
    out = {"astro": tmp_path / "astro_edit.jpg", "coffee": tmp_path / "coffee.jpg",
           "corrupt": tmp_path / "corrupt.jpg"}
    crop.save(out["astro"], quality=85)
    Image.fromarray(skimage.data.coffee()).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(out["coffee"])
    good = out["astro"].read_bytes()
    out["corrupt"].write_bytes(good[: len(good) // 3])  # truncated JPEG
    return out


def _open_window(qtbot, tmp_path, index: Path) -> MainWindow:
    """A shown window with its own settings and data folder, ``index`` opened."""
    QStandardPaths.setTestModeEnabled(True)
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(store=store, data_dir=tmp_path / "data")
    qtbot.addWidget(win)
    win.resize(1400, 850)
    win.show()
    with qtbot.waitSignal(win.engine_opened, timeout=20000):
        win.open_index(str(index))
    return win


@pytest.fixture
def window(qtbot, tmp_path, tiny_index):
    win = _open_window(qtbot, tmp_path, tiny_index)
    yield win
    win.close()


def _wait_idle(qtbot, win, timeout=30000):
    qtbot.waitUntil(lambda: bool(win.queue.items) and not win.queue.running
                    and all(it.state not in ("waiting", "running") for it in win.queue.items), timeout=timeout)


def _drop(win, paths) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(300, 300), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    win.dropEvent(event)


def test_header_and_recent_index(window, tiny_index):
    assert "5 references" in window.header.text() and "rootsift" in window.header.text()
    assert str(tiny_index) in [a.text() for a in window.recent_menu.actions()]


def test_dropped_file_gives_ranked_results_and_inspector_lines(qtbot, window, queries):
    with qtbot.waitSignal(window.inspector_ready, timeout=30000):
        _drop(window, [queries["astro"]])
        _wait_idle(qtbot, window)
    item = window.queue.items[0]
    assert item.state == "done" and item.thumb is not None
    matches = item.outcome.result.matches
    assert matches[0].reference_id == "astronaut" and matches[0].num_inliers > 20
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    table = window.results.table
    n_above = sum(m.score >= window.settings.possible_threshold for m in matches)
    assert n_above >= 1 and table.item(0, 0).text() == "astronaut"
    # the candidates below the threshold sit under one collapsed "no match" header row
    assert table.rowCount() == len(matches) + (n_above < len(matches))
    if n_above < len(matches):
        assert table.item(n_above, 0).text().startswith("▸ No match:")
        assert all(table.isRowHidden(r) for r in range(n_above + 1, table.rowCount()))
    assert table.item(0, 1).text() == f"{matches[0].score:.0%}"
    assert table.item(0, 2).text() == window.settings.verdict(matches[0].score).upper()
    canvas = window.inspector.canvas
    canvas.grab()
    assert canvas.data.match.reference_id == "astronaut"
    assert canvas.overlay.drawn == min(matches[0].num_inliers, 50)  # the 50 strongest lines at most
    assert "inliers" in window.inspector.caption.text()
    assert "local features agree" in table.item(0, 1).toolTip()  # the confidence explains itself
    png = window.export_view(str(Path(window.data_dir) / "view.png"))
    assert png is not None and Image.open(png).size[0] > 100


def test_corrupt_file_is_reported_and_queue_continues(qtbot, window, queries):
    window.add_paths([queries["corrupt"], queries["coffee"]])
    _wait_idle(qtbot, window)
    bad, good = window.queue.items
    assert bad.state == "error" and "truncated" in bad.error
    assert good.state == "done" and good.outcome.result.matches[0].reference_id == "coffee"
    assert good.outcome.result.matches[0].evidence.mirrored
    levels_subjects = [(lv, s) for lv, s, _ in window.notifications.messages]
    assert ("error", "corrupt.jpg") in levels_subjects
    assert window.notifications.list.count() >= 1 and "corrupt.jpg" in window.notifications.list.item(0).text()


def test_missing_index_is_a_notification(qtbot, window, tmp_path):
    window.open_index(str(tmp_path / "nowhere"))
    qtbot.waitUntil(lambda: window._open_worker is None, timeout=10000)
    assert any("nowhere" in s or "nowhere" in r for _, s, r in window.notifications.messages)
    assert "5 references" in window.header.text()  # the open index stays open


def test_review_from_the_keyboard(qtbot, window, queries, tmp_path):
    """C settles a query and jumps to the next unreviewed one, X says "no copy", S skips, Ctrl+Z undoes;
    the queue shows each verdict and the counts; a query without a match opens nothing in the inspector."""
    moon = tmp_path / "moon.png"
    Image.fromarray(skimage.data.moon()).save(moon)
    window.add_paths([queries["astro"], moon, queries["coffee"]])
    _wait_idle(qtbot, window)
    astro, unrelated, coffee = window.queue.items
    assert [it.state for it in window.queue.items] == ["done"] * 3
    window.queue_panel.select(0)
    qtbot.waitUntil(lambda: window.results.outcome is astro.outcome)
    assert window.results.current() == 0
    # the title counts by verdict: the astronaut's copy is announced as a copy, not a "possible match"
    assert astro.outcome.result.matches[0].score >= window.settings.copy_threshold
    assert ": 1 copy of " in window.results.title.text()
    window.activateWindow()
    window.setFocus()
    qtbot.keyClick(window, Qt.Key.Key_C)  # astronaut is a copy: on to the next unreviewed query
    assert astro.review == "copy" and window.queue_panel.current_row() == 1
    # the unrelated query: "no match" header, nothing selected, the inspector opens nothing
    assert window.results.num_above() == 0 and window.results.current() == -1
    assert "no match" in window.results.title.text() and window.inspector.canvas.data is None
    qtbot.keyClick(window, Qt.Key.Key_X)  # no copy in this query
    assert unrelated.review == "no copy" and window.queue_panel.current_row() == 2
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the "no copy"
    assert unrelated.review == "" and window.queue_panel.current_row() == 1
    qtbot.keyClick(window, Qt.Key.Key_S)  # unsure
    assert unrelated.review == "unsure" and window.queue_panel.current_row() == 2
    qtbot.waitUntil(lambda: window.results.outcome is coffee.outcome)
    qtbot.keyClick(window, Qt.Key.Key_N)  # the mirrored coffee is rejected: no candidate left above
    assert coffee.review == "no copy"
    assert "reviewed 3/3 · copy 1 · no copy 1 · unsure 1" == window.queue_panel.counts.text()
    log = [(r.reference_id, r.decision) for r in window.review_log.all()]
    assert log == [("astronaut", "copy"), ("", "no copy"), ("", "undone"), ("", "unsure"),
                   (coffee.outcome.result.matches[0].reference_id, "not a copy")]
    rows = window.review_log.all()
    assert rows[0].query_path == str(queries["astro"]) and len(rows[0].query_sha256) == 64
    assert Path(window.review_log.path).parent == Path(window.data_dir)
    # filtering: only the unsure query; sorting by best confidence puts the astronaut copy first
    window.queue_panel.filter.setCurrentText("Unsure")
    assert window.queue_panel.visible_rows() == [1]
    window.queue_panel.filter.setCurrentText("All")
    window.queue_panel.sort.setCurrentText("Best confidence")
    best = [it.outcome.result.best.score for it in window.queue.items]
    assert window.queue_panel.visible_rows() == sorted(range(3), key=lambda r: -best[r])
    assert window.queue_panel.visible_rows()[-1] == 1  # the unrelated query scores lowest
    out = window.export_results(str(Path(window.data_dir) / "results.json"))
    rows = json.loads(out.read_text())
    assert rows[0]["reference_id"] == "astronaut" and rows[0]["rank"] == 1


def test_below_threshold_candidate_is_shown_without_evidence(qtbot, window, queries):
    with qtbot.waitSignal(window.inspector_ready, timeout=30000):
        window.add_paths([queries["astro"]])
        _wait_idle(qtbot, window)
    res = window.results
    n_above = res.num_above()
    assert 0 < n_above < len(res.outcome.result.matches)
    with qtbot.waitSignal(window.inspector_ready, timeout=10000):
        res.select(n_above)  # the best rejected candidate: the group opens
    assert res.expanded and not res.table.isRowHidden(res.row_of(n_above))
    canvas = window.inspector.canvas
    canvas.grab()
    assert canvas.data.match is res.outcome.result.matches[n_above] and not canvas.evidence
    assert canvas.overlay.drawn == 0 and not any(k == "outline" for k, _ in canvas._annotations)
    assert "not a match" in window.inspector.caption.text()


def test_gui_stays_responsive_while_a_query_runs(qtbot, window, queries):
    gaps, last = [], [time.monotonic()]

    def tick():
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(tick)
    timer.start()
    window.add_paths([queries["astro"], queries["coffee"]])
    worker = window.queue._current[1]
    _wait_idle(qtbot, window)
    timer.stop()
    assert worker.thread_ident is not None and worker.thread_ident != threading.get_ident()
    assert len(gaps) > 5
    assert max(gaps) < 0.5, f"GUI thread blocked for {max(gaps):.2f} s"


def test_paste_image_from_clipboard(qtbot, window):
    from copylens.app.images import rgb_to_qimage

    pixels = np.ascontiguousarray(skimage.data.rocket()[50:400, 100:600])
    QGuiApplication.clipboard().setImage(rgb_to_qimage(pixels))
    window.paste()
    _wait_idle(qtbot, window)
    item = window.queue.items[0]
    assert item.request.label.startswith("<clipboard")
    assert item.state == "done" and item.outcome.result.matches[0].reference_id == "rocket"
    # the paste is a real file under the data folder, which the review log points at
    saved = Path(item.request.path)
    assert saved.parent == Path(window.data_dir) / "pasted" and saved.suffix == ".png"
    assert np.array_equal(np.asarray(Image.open(saved).convert("RGB")), pixels)
    window.queue_panel.select(0)
    qtbot.waitUntil(lambda: window.results.outcome is item.outcome)
    window.reviewer.decide_pair("copy")
    assert window.review_log.all()[-1].query_path == str(saved)



def test_session_report_with_evidence(qtbot, window, queries, tmp_path):
    window.settings = dataclasses.replace(window.settings, reviewer="Ada")
    window.add_paths([queries["astro"], queries["coffee"]])
    _wait_idle(qtbot, window)
    window.queue_panel.select(0)
    qtbot.waitUntil(lambda: window.results.outcome is window.queue.items[0].outcome)
    window.reviewer.decide_pair("copy")
    worker = window.export_report(str(tmp_path / "report"))
    qtbot.waitUntil(lambda: not window.pool.in_use(window.engine), timeout=60000)
    assert worker.is_cancelled is False
    html_path = tmp_path / "report" / "report.html"
    assert "Report written to" in window.statusBar().currentMessage(), list(window.notifications.messages)
    data = json.loads((html_path.parent / "report.json").read_text())
    assert data["reviewer"] == "Ada" and data["index"] == "idx" and len(data["index_fingerprint"]) == 16
    astro = [r for r in data["rows"] if r["query"] == str(queries["astro"])]
    assert astro[0]["reference_id"] == "astronaut" and astro[0]["decision"] == "copy"
    assert "local features agree" in astro[0]["explanation"]
    coffee = [r for r in data["rows"] if r["query"] == str(queries["coffee"])]
    assert coffee[0]["reference_id"] == "coffee" and coffee[0]["decision"] == ""  # not reviewed
    png = Image.open(html_path.parent / astro[0]["evidence"])
    assert png.height == 420 + 46 and png.width > 500
    arr = np.asarray(png.convert("RGB"))
    assert (np.abs(arr[:420].astype(int) - [0, 170, 230]).sum(axis=2) < 30).sum() > 100  # the outline is drawn
    text = html_path.read_text()
    assert "Ada" in text and astro[0]["evidence"] in text and "not reviewed" in text
    assert (html_path.parent / "report.csv").read_text().count("\n") == len(data["rows"]) + 1


def test_settings_dialog_speaks_percent(qtbot):
    from copylens.app.settings import AppSettings
    from copylens.app.settings_dialog import SettingsDialog

    dlg = SettingsDialog(AppSettings(copy_threshold=0.8, possible_threshold=0.3))
    qtbot.addWidget(dlg)
    assert dlg.copy_t.text() == "80 %" and dlg.possible_t.value() == 30
    dlg.possible_t.setValue(95)  # above "copy": clamped to it
    v = dlg.value()
    assert v.copy_threshold == 0.8 and v.possible_threshold == 0.8


def test_queue_results_and_decisions_survive_a_restart(qtbot, tmp_path, tiny_index, queries):
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    first = MainWindow(store=store, data_dir=tmp_path / "data")
    qtbot.addWidget(first)
    with qtbot.waitSignal(first.engine_opened, timeout=20000):
        first.open_index(str(tiny_index))
    first.add_paths([queries["astro"], queries["corrupt"], queries["coffee"]])
    _wait_idle(qtbot, first)
    first.queue_panel.select(0)
    qtbot.waitUntil(lambda: first.results.outcome is first.queue.items[0].outcome)
    first.reviewer.decide_pair("copy")
    before = [(it.state, it.error, it.review) for it in first.queue.items]
    scores = [m.score for m in first.queue.items[0].outcome.result.matches]
    points = first.queue.items[0].outcome.result.matches[0].evidence.query_points
    first.close()

    second = MainWindow(store=store, data_dir=tmp_path / "data")
    qtbot.addWidget(second)
    with qtbot.waitSignal(second.engine_opened, timeout=20000):
        assert second.restore_session() == 3  # and the last index reopens
    assert [(it.state, it.error, it.review) for it in second.queue.items] == before
    astro = second.queue.items[0]
    assert [m.score for m in astro.outcome.result.matches] == scores
    np.testing.assert_array_equal(astro.outcome.result.matches[0].evidence.query_points, points)
    assert astro.outcome.sha256 == first.queue.items[0].outcome.sha256
    qtbot.waitUntil(lambda: bool(second.queue.items[0].outcome.reference_thumbs), timeout=20000)
    assert second.queue.items[0].thumb is not None
    assert second.queue.next_id() == "q4"  # new queries do not reuse restored ids
    second.clear_queue(confirm=False)
    assert second.queue.items == [] and second.session.load() == []
    second.close()


def test_references_are_things_with_a_file(qtbot, window, queries, tiny_index, monkeypatch):
    opened = []
    monkeypatch.setattr("copylens.app.main_window.QDesktopServices.openUrl", lambda url: opened.append(url) or True)
    with qtbot.waitSignal(window.inspector_ready, timeout=30000):
        window.add_paths([queries["astro"]])
        _wait_idle(qtbot, window)
    tip = window.results.table.item(0, 0).toolTip()
    assert tip.startswith("astronaut\n") and "size: 512x512 px" in tip and "astronaut.png" in tip
    folder = window.open_reference(folder=True)
    assert folder == tiny_index.parent / "refs" and opened[-1].toLocalFile() == str(folder)
    assert window.open_reference().name == "astronaut.png"


def test_bulk_mark_as_copy_at_or_above_a_confidence(qtbot, window, queries, tmp_path):
    moon = tmp_path / "moon.png"
    Image.fromarray(skimage.data.moon()).save(moon)
    window.add_paths([queries["astro"], moon, queries["coffee"]])
    _wait_idle(qtbot, window)
    astro, unrelated, coffee = window.queue.items
    window.queue_panel.select(2)
    qtbot.waitUntil(lambda: window.results.outcome is coffee.outcome)
    window.reviewer.decide_query("unsure")  # already reviewed: bulk marking leaves it alone
    assert window.bulk_copy(0.5, confirm=False) == 1
    assert (astro.review, unrelated.review, coffee.review) == ("copy", "", "unsure")
    assert window.review_log.latest(astro.outcome.sha256, astro.outcome.result.best.reference_id) == "copy"
    window.reviewer.undo()
    assert astro.review == ""


def test_a_hash_list_match_is_its_own_kind_of_result(qtbot, tmp_path, tiny_index):
    """A listed picture (no image in the index, only its PDQ hash) shows as a hash-list match: list, entry,
    tags, distance and a hash-only confidence; the inspector says there is no SIFT evidence to draw."""
    import shutil

    import pdqhash

    from copylens.core.index.hashlists import add_hash_list

    idx = tmp_path / "idx"
    shutil.copytree(tiny_index, idx)
    horse = (np.asarray(skimage.data.horse(), np.uint8) * 255)[..., None].repeat(3, axis=2)
    bits, _ = pdqhash.compute(np.ascontiguousarray(horse))
    listed = np.packbits(np.asarray(bits, np.uint8)).tobytes().hex()
    (tmp_path / "list.csv").write_text(f"{listed},horse-001,terror,logo\n{'0' * 63}x,broken\n")
    assert add_hash_list(idx, tmp_path / "list.csv", "partner").added == 1
    query = tmp_path / "horse_mirrored.png"
    Image.fromarray(np.ascontiguousarray(horse[:, ::-1])).save(query)

    win = _open_window(qtbot, tmp_path, idx)
    assert "1 hash list (1 entries)" in win.header.text()
    _drop(win, [query])
    _wait_idle(qtbot, win)
    result = win.queue.items[0].outcome.result
    assert [(h.list_name, h.entry_id, h.transform) for h in result.hash_matches] == [
        ("partner", "horse-001", "mirrored left to right")]
    table = win.results.table
    qtbot.waitUntil(lambda: table.rowCount() > 0 and table.item(0, 2) is not None)
    assert table.item(0, 0).text() == "partner: horse-001\nterror, logo"
    assert table.item(0, 2).text() == "HASH LIST"
    assert table.item(0, 3).text() == f"{result.hash_matches[0].distance} bits (PDQ)"
    assert table.item(0, 1).text() == f"{result.hash_matches[0].confidence:.0%}"
    assert "1 hash-list match" in win.results.title.text()
    qtbot.waitUntil(lambda: "no SIFT lines" in win.inspector.placeholder.text())
    text = win.inspector.placeholder.text()
    assert "partner · entry horse-001 · tags: terror, logo" in text and "mirrored left to right" in text
    assert "· 1 hash-list match" in win.queue_panel.list.item(0).text()
    win.close()


def test_a_sharded_index_opens_and_answers_like_any_other(qtbot, tmp_path, queries):
    """Issue 12: a sharded index (3 parts) opens in the window, says so in the header, and a dropped query
    gets its ranked match with evidence from the shard that holds the reference."""
    from copylens.core.index.shardbuild import build_sharded

    refs = write_references(tmp_path / "refs", REFS)
    run_job(build_sharded(refs, tmp_path / "sharded", 3, workers=1, calibrate=False))
    win = _open_window(qtbot, tmp_path, tmp_path / "sharded")
    try:
        assert "5 references" in win.header.text() and "3 shards" in win.header.text()
        with qtbot.waitSignal(win.inspector_ready, timeout=30000):
            _drop(win, [queries["astro"]])
            _wait_idle(qtbot, win)
        top = win.queue.items[0].outcome.result.matches[0]
        assert top.reference_id == "astronaut" and top.num_inliers > 20
        assert win.inspector.canvas.data.match.reference_id == "astronaut"
        assert win.results.table.item(0, 0).text() == "astronaut"
    finally:
        win.close()


def test_share_of_copies_moves_every_shown_score_and_survives_a_restart(qtbot, tmp_path, small_index, queries):
    """Settings' share of copies: finished results move to it (ranking kept), new queries score for it, the
    results title says so, and a restart with the setting cleared moves restored results back."""
    from copylens.app.settings import AppSettings
    from copylens.core.prior import shift_scores

    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(store=store, data_dir=tmp_path / "data")
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.engine_opened, timeout=20000):
        win.open_index(str(small_index))
    calibrated = win.engine.calibrated_share
    assert calibrated is not None and win.target_share() == calibrated
    win.add_paths([queries["astro"]])
    _wait_idle(qtbot, win)
    first = win.queue.items[0].outcome.result
    assert first.best.reference_id == "astronaut" and first.copy_share == calibrated
    plain = [m.score for m in first.matches]
    win.queue_panel.select(0)
    qtbot.waitUntil(lambda: win.results.outcome is win.queue.items[0].outcome)

    win.apply_settings(AppSettings(copy_share=0.1))
    moved = win.queue.items[0].outcome.result
    assert moved.copy_share == 0.1 and [m.reference_id for m in moved.matches] == [m.reference_id for m in first.matches]
    assert np.allclose([m.score for m in moved.matches], shift_scores(plain, calibrated, 0.1))
    assert win.results.outcome is win.queue.items[0].outcome  # re-rendered with the moved scores
    assert "queue with 10% copies" in win.results.title.text()
    win.reviewer.decide_pair("copy")
    assert win.review_log.all()[-1].copy_share == 0.1  # the audit trail says what the shown score was for
    win.add_paths([queries["astro"]])  # the same query again: scored for the new share by the engine
    _wait_idle(qtbot, win)
    again = win.queue.items[1].outcome.result
    assert again.copy_share == 0.1 and again.best.score == pytest.approx(moved.best.score, abs=1e-9)
    with pytest.raises(ValueError, match="too few"):  # two finished queries cannot tell a share
        win.estimate_queue_share()
    rows = json.loads(win.export_results(str(tmp_path / "results.json")).read_text())
    assert rows and all(r["copy_share"] == 0.1 for r in rows)  # an export says which share its scores are for
    win.close()

    store.setValue("search/copy_share", 0.0)  # back to the index's own share before the next start
    second = MainWindow(store=store, data_dir=tmp_path / "data")
    qtbot.addWidget(second)
    with qtbot.waitSignal(second.engine_opened, timeout=20000):
        assert second.restore_session() == 2
    for it in second.queue.items:
        assert it.outcome.result.copy_share == pytest.approx(calibrated)
        assert np.allclose([m.score for m in it.outcome.result.matches], plain)
    second.close()


def test_share_of_copies_on_an_index_that_records_none_warns_and_keeps_scores(qtbot, window, tiny_index, queries):
    from copylens.app.settings import AppSettings

    with qtbot.waitSignal(window.inspector_ready, timeout=30000):
        window.add_paths([queries["astro"]])
        _wait_idle(qtbot, window)
    before = [m.score for m in window.queue.items[0].outcome.result.matches]
    window.apply_settings(AppSettings(copy_share=0.1))
    assert any(lv == "warning" and s == "share of copies" and "rebuild the index" in r
               for lv, s, r in window.notifications.messages)
    assert [m.score for m in window.queue.items[0].outcome.result.matches] == before
    assert window.engine.config.copy_share is None


def test_settings_dialog_share_of_copies(qtbot):
    from copylens.app.settings import AppSettings
    from copylens.app.settings_dialog import SettingsDialog

    dlg = SettingsDialog(AppSettings())
    qtbot.addWidget(dlg)
    assert dlg.copy_share.text() == "as the index was calibrated" and dlg.value().copy_share == 0.0
    assert dlg.estimate_button.isHidden()  # no index open: nothing to estimate from
    dlg.copy_share.setValue(25)
    assert dlg.value().copy_share == 0.25

    from copylens.core.prior import ShareEstimate, estimate_share

    top = [0.999] * 6 + [0.002] * 34  # six clear copies among 40 queries: 15%
    dlg = SettingsDialog(AppSettings(), estimate=lambda: estimate_share(top, 2 / 3), calibrated_share=2 / 3)
    qtbot.addWidget(dlg)
    assert dlg.copy_share.text() == "as the index was calibrated (67%)"
    qtbot.mouseClick(dlg.estimate_button, Qt.MouseButton.LeftButton)
    assert 14 <= dlg.copy_share.value() <= 16 and "40 finished queries" in dlg.estimate_note.text()
    assert 0.14 <= dlg.value().copy_share <= 0.16

    def too_few() -> ShareEstimate:
        raise ValueError("3 queries are too few to estimate their share of copies (at least 20)")

    dlg = SettingsDialog(AppSettings(copy_share=0.3), estimate=too_few)
    qtbot.addWidget(dlg)
    dlg.estimate_button.click()
    assert "too few" in dlg.estimate_note.text() and dlg.value().copy_share == 0.3


def test_a_narrow_window_keeps_the_ranked_matches_readable(qtbot, tmp_path):
    """Shrinking the window, or restoring a layout saved in a narrow one, squeezed the results column to a
    70-px strip (names and confidences cut off); it now stops at RESULTS_MIN_WIDTH and the window's
    minimum grows instead."""
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(store=store, data_dir=tmp_path / "data")
    qtbot.addWidget(win)
    win.show()
    win.main_split.setSizes([272, 480, 860])
    win.resize(850, 770)
    QGuiApplication.processEvents()
    assert win.results.width() >= RESULTS_MIN_WIDTH
    assert win.inspector.width() > 0 and win.queue_panel.width() > 0
    win.main_split.setSizes([272, 0, 1200])  # dragged shut: it does not collapse
    QGuiApplication.processEvents()
    assert win.results.width() >= RESULTS_MIN_WIDTH
    win.close()
