"""The README's window screenshots, taken from the real window (run it under Xvfb):

    xvfb-run -a -s "-screen 0 1600x900x24" .venv/bin/python packaging/screenshots.py DATA_DIR OUT_DIR

DATA_DIR is a data folder where `copylens demo --data-dir DATA_DIR` has built the demo index. Writes
``review.png`` (a review in progress: decisions made from the keyboard, verdict colours and counts) and
``no_match.png`` (a query without a match: the collapsed "no match" group and an empty inspector).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer

from copylens.app.cli import make_app
from copylens.app.main_window import MainWindow


def main(data_dir: str, out_dir: str) -> int:
    app = make_app()
    demo = Path(data_dir) / "demo"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(store=store, data_dir=Path(tempfile.mkdtemp()))
    win.resize(1600, 900)
    win.show()
    win.open_index(str(demo / "demo-index"))
    win.add_paths(sorted(str(p) for p in (demo / "queries").iterdir()))
    rows = {it.request.label: i for i, it in enumerate(win.queue.items)}
    steps = []

    def shot(name: str) -> None:
        app.processEvents()
        win.grab().save(str(out / name))
        print("saved", out / name, file=sys.stderr)

    def review() -> None:
        # a moderator's first decisions: C on two copies, X on the unrelated photo, then on to the next
        for label, key in (("astronaut_crop.jpg", "copy"), ("rocket_mirror.jpg", "copy"), ("unrelated.jpg", "x")):
            win.queue_panel.select(rows[label])
            win.show_query(rows[label], force=True)
            if key == "copy":
                win.reviewer.decide_pair("copy")
            else:
                win.reviewer.decide_query("no copy")
        win.queue_panel.select(rows["chelsea_paste.jpg"])
        win.show_query(rows["chelsea_paste.jpg"], force=True)
        win.inspector_ready.connect(lambda: QTimer.singleShot(500, after_review))

    def after_review() -> None:
        if "review" in steps:
            return
        steps.append("review")
        shot("review.png")
        win.queue_panel.select(rows["unrelated.jpg"])
        win.show_query(rows["unrelated.jpg"], force=True)
        QTimer.singleShot(500, lambda: (shot("no_match.png"), app.quit()))

    win.queue.idle.connect(lambda: not win.queue.busy and win.queue.num_finished == len(rows)
                           and "started" not in steps and (steps.append("started") or QTimer.singleShot(300, review)))
    QTimer.singleShot(120_000, app.quit)
    app.exec()
    win.close()
    return 0 if "review" in steps else 1  # both screenshots taken


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
