"""An index records the library releases its calibration was fitted with, and says when they changed."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy
import pytest

from copylens.core.releases import changed, releases

OPENCV = "opencv-contrib-python-headless"


def test_releases_name_this_process():
    now = releases()
    assert now["numpy"] == numpy.__version__ and now["python"].startswith("3.")
    assert now[OPENCV].startswith(cv2.__version__.split("-")[0])


def test_only_libraries_that_move_scores_count_as_changed():
    now = {"numpy": "2.0.0", OPENCV: "5.1.0", "scikit-image": "0.26", "python": "3.11.7"}
    recorded = {"numpy": "2.0.0", OPENCV: "4.10.0", "scikit-image": "0.22", "python": "3.11.2", "torch": "1.0"}
    assert changed(recorded, now) == [f"{OPENCV} 4.10.0 -> 5.1.0"]  # torch: not installed now, not compared
    assert changed(None, now) == [] and changed({}, now) == []
    assert changed(releases()) == []


def _with_calibration_releases(src, dst, edit) -> None:
    shutil.copytree(src, dst)
    path = dst / "manifest.json"
    m = json.loads(path.read_text(encoding="utf-8"))
    edit(m["calibration"])
    path.write_text(json.dumps(m), encoding="utf-8")


def test_a_calibrated_index_records_its_releases_and_warns_when_they_change(small_index, tmp_path, capsys):
    from copylens.core.cli import main
    from copylens.core.engine import Engine

    with Engine.open(small_index) as eng:
        assert eng.calibrated_with == releases() and eng.info.releases_changed == ()
    older = tmp_path / "older"
    _with_calibration_releases(small_index, older, lambda c: c["releases"].update({OPENCV: "4.0.0"}))
    with Engine.open(older) as eng:
        assert eng.info.releases_changed == (f"{OPENCV} 4.0.0 -> {releases()[OPENCV]}",)
    capsys.readouterr()
    assert main(["index", "info", str(older), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["releases_changed"] == [f"{OPENCV} 4.0.0 -> {releases()[OPENCV]}"]
    assert "calibrated with other library releases" in out.err and "build the index anew" in out.err
    # an index calibrated before releases were recorded says nothing: there is nothing to compare
    unknown = tmp_path / "unknown"
    _with_calibration_releases(small_index, unknown, lambda c: c.pop("releases"))
    with Engine.open(unknown) as eng:
        assert eng.calibrated_with is None and eng.info.releases_changed == ()


@pytest.mark.gui
def test_the_window_warns_about_an_index_calibrated_with_other_releases(qtbot, small_index, tmp_path):
    from PySide6.QtCore import QSettings

    from copylens.app.main_window import MainWindow

    older = tmp_path / "older"
    _with_calibration_releases(small_index, older, lambda c: c["releases"].update({"numpy": "1.0.0"}))
    win = MainWindow(store=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), data_dir=tmp_path / "d")
    qtbot.addWidget(win)
    try:
        with qtbot.waitSignal(win.engine_opened, timeout=20000):
            win.open_index(str(older))
        warnings = [r for lv, s, r in win.notifications.messages if lv == "warning" and s == older.name]
        assert warnings and f"numpy 1.0.0 -> {numpy.__version__}" in warnings[0]
        assert "build the index anew" in warnings[0]
        win.open_index(str(small_index))  # the index's own releases: no word
        qtbot.waitUntil(lambda: win.engine is not None and win.engine.index_dir == small_index, timeout=20000)
        assert sum("library releases" in r for _, _, r in win.notifications.messages) == 1  # still the one above
    finally:
        win.pool.shutdown()
        win.close()


def test_the_demo_is_built_again_after_a_library_upgrade(small_index, tmp_path):
    from copylens.app import demo

    p = demo.demo_paths(tmp_path)
    p["index"].parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(small_index, p["index"])
    assert not demo.is_built(tmp_path)  # no completion mark yet
    demo.mark_built(tmp_path)
    assert demo.is_built(tmp_path)  # calibrated with these releases
    manifest = p["index"] / "manifest.json"
    good = json.loads(manifest.read_text(encoding="utf-8"))
    for calibration, built in ((None, True),  # uncalibrated: nothing to compare
                               ({"source": "fitted", "releases": releases()}, True),
                               ({"source": "fitted"}, True),  # calibrated before releases were recorded
                               ({"source": "fitted", "releases": {**releases(), OPENCV: "4.0.0"}}, False)):
        manifest.write_text(json.dumps({**good, "calibration": calibration}), encoding="utf-8")
        assert demo.is_built(tmp_path) is built, calibration
    manifest.write_text(json.dumps({"calibration": good["calibration"]}), encoding="utf-8")
    assert not demo.is_built(tmp_path)  # not a manifest this release reads
    manifest.write_text("{not json", encoding="utf-8")
    assert not demo.is_built(tmp_path)
    manifest.unlink()
    assert not demo.is_built(tmp_path)  # no manifest: not an index
