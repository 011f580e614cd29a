"""``copylens gui`` and ``copylens demo``: subcommands registered through the "copylens.commands" entry
point group (``register(subparsers)``), also reachable as ``python -m copylens.app``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers) -> None:
    g = subparsers.add_parser("gui", help="open the CopyLens window",
                              description="Open the CopyLens window, optionally on INDEX with queries queued.")
    g.add_argument("index", nargs="?", help="index folder to open")
    g.add_argument("--query", action="append", default=[], metavar="PATH",
                   help="queue an image (or a folder of images); repeatable")
    _common(g)
    g.set_defaults(func=run_gui)
    d = subparsers.add_parser("demo", help="build the demo index (once) and open the window on it",
                              description="Build a demo index from scikit-image's sample images (cached in "
                                          "the user data folder) and open the window with edited queries.")
    _common(d)
    d.set_defaults(func=run_demo)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="render offscreen once the queries are done, save the window to OUT.png and exit "
                        "(default settings and layout; the user's are neither read nor changed)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="with --screenshot: give up after this many seconds (default 600)")
    p.add_argument("--data-dir", help="app data folder (review log, demo index); default: the user's")


def make_app(offscreen: bool = False):
    """The QApplication (created once), high-DPI aware, following the system palette."""
    if offscreen:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, Qt
    from PySide6.QtGui import QGuiApplication, QIcon
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        QCoreApplication.setOrganizationName("CopyLens")
        QCoreApplication.setApplicationName("CopyLens")
        app = QApplication(sys.argv[:1])
        app.setStyle("Fusion")  # Fusion draws with the palette, so it follows the system light/dark scheme
        app.setDesktopFileName("copylens")
        icon = Path(__file__).resolve().parent.parent / "resources" / "copylens.png"
        try:
            from importlib.resources import files

            icon = Path(str(files("copylens.resources") / "copylens.png"))
        except (ImportError, ModuleNotFoundError):
            pass
        if icon.exists():
            app.setWindowIcon(QIcon(str(icon)))
    return app


def _window(args):
    from .main_window import MainWindow

    data_dir = Path(args.data_dir) if args.data_dir else None
    if not args.screenshot:
        win = MainWindow(data_dir=data_dir)
    else:
        # a rendering run (the demo's picture, tests) starts from the default layout and settings and leaves
        # the user's alone: its offscreen window's size, saved on close, became the next real window's
        import tempfile

        from PySide6.QtCore import QSettings

        scratch = tempfile.TemporaryDirectory(prefix="copylens-screenshot-")
        win = MainWindow(store=QSettings(str(Path(scratch.name) / "settings.ini"), QSettings.Format.IniFormat),
                         data_dir=data_dir)
        win.scratch_settings = scratch  # removed with the window
    win.show()
    return win


def _screenshot_when_done(app, win, out: str, timeout: float) -> None:
    """Once the queue is idle, select the first finished query's best match, wait for the inspector,
    grab the window and quit (exit code 1 on timeout)."""
    from PySide6.QtCore import QTimer

    state = {"saved": False}

    def save(code: int = 0) -> None:
        if state["saved"]:
            return
        state["saved"] = True
        app.processEvents()
        ok = win.grab().save(out)
        print(f"screenshot {'saved to' if ok else 'FAILED:'} {out}", file=sys.stderr)
        app.exit(code if ok else 1)

    def on_idle() -> None:
        if win.queue.busy:
            return
        rows = [i for i, it in enumerate(win.queue.items) if it.state == "done" and it.outcome.result.matches]
        if not rows:
            QTimer.singleShot(300, save)
            return
        win.inspector_ready.connect(lambda: QTimer.singleShot(400, save))
        win.queue_panel.select(rows[0])
        win.show_query(rows[0], force=True)  # renders the results and inspects the best match, if any
        if win.results.current() < 0:  # no match above the threshold: nothing to inspect
            QTimer.singleShot(300, save)

    win.queue.idle.connect(on_idle)
    QTimer.singleShot(int(timeout * 1000), lambda: save(1))


def _exec(app, win) -> int:
    """Run the event loop, then tear the window down while Python is still fully alive (deleting Qt
    objects during interpreter finalisation is fragile in any binding), and return the exit code."""
    import gc

    code = app.exec()
    win.pool.shutdown()  # the event loop is over: nothing left to keep responsive
    win.close()
    win.deleteLater()
    app.processEvents()
    del win
    gc.collect()
    return code


def run_gui(args) -> int:
    app = make_app(offscreen=bool(args.screenshot))
    win = _window(args)
    if args.index:
        win.open_index(args.index)
    if not args.screenshot:
        win.restore_session()  # the last session's queue and index (an index given here wins)
    if args.query:
        win.add_paths(args.query)
    if args.screenshot:
        if not args.index:
            from PySide6.QtCore import QTimer

            QTimer.singleShot(500, lambda: (win.grab().save(args.screenshot), app.exit(0)))
        else:
            _screenshot_when_done(app, win, args.screenshot, args.timeout)
    return _exec(app, win)


def run_demo(args) -> int:
    from . import demo
    from .workers import JobWorker, call_job

    app = make_app(offscreen=bool(args.screenshot))
    win = _window(args)
    data_dir = win.data_dir
    if args.screenshot:
        _screenshot_when_done(app, win, args.screenshot, args.timeout)

    def files_ready(paths) -> None:
        def built(index_dir: str) -> None:
            demo.mark_built(data_dir)
            win.add_paths([str(p) for p in demo.query_files(data_dir)])

        if demo.is_built(data_dir):
            win.open_index(str(paths["index"]))
            win.add_paths([str(p) for p in demo.query_files(data_dir)])
        else:
            dlg = win.build_index_dialog(str(paths["references"]), str(paths["index"]), autostart=True)
            dlg.index_ready.connect(built)
            dlg.index_ready.connect(lambda _p: dlg.hide())
        win.statusBar().showMessage("Demo ready: C copy · N not this one · X no copy · S unsure · Ctrl+Z undo · "
                                 "↑/↓ candidates · ←/→ queries · 1/2/3 views")

    win.statusBar().showMessage("Preparing the demo images…")
    w = JobWorker(lambda: call_job(lambda: demo.prepare_demo_files(data_dir)), name="demo files")
    w.signals.result.connect(files_ready)
    w.signals.error.connect(lambda exc: win.notifications.notify("demo", str(exc)))
    win.pool.start(w)
    return _exec(app, win)


def main(argv: list[str] | None = None) -> int:
    """``python -m copylens.app [gui] [INDEX] ...`` or ``python -m copylens.app demo``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("gui", "demo", "-h", "--help"):
        argv = ["gui", *argv]
    parser = argparse.ArgumentParser(prog="copylens")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)
