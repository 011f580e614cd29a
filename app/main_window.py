"""The CopyLens main window: assembles the panels and routes worker signals to them.

Nothing slow runs here: opening an index, decoding, searching and preparing the inspector all happen in
``JobWorker``s; the window only starts them, cancels stale ones and renders what they deliver.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QMimeData, QSettings, Qt, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from copylens.core.imageio import IMAGE_SUFFIXES, scan_images
from copylens.core.releases import RELEASES_ADVICE

from . import settings as st
from .images import save_pasted
from .index_dialog import BuildIndexDialog
from .inspector import Inspector
from .jobs import QueryRequest, inspect_job, open_engine
from .notifications import NotificationArea
from .query_queue import QueryQueue, describe_error
from .queue_panel import QueuePanel
from .results_panel import HASH_ROW, ResultsPanel
from .review import Reviewer
from .review_log import ReviewLog
from .session import SessionStore
from .window_actions import ExportsAndSession
from .workers import JobWorker, WorkerPool, call_job

log = logging.getLogger(__name__)
IMAGE_MIME = ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif", "image/tiff", "image/heic",
              "image/avif")


RESULTS_MIN_WIDTH = 240  # pixels: a thumbnail, a reference's name and its confidence


class MainWindow(ExportsAndSession, QMainWindow):
    engine_opened = Signal(object)  # the Engine
    inspector_ready = Signal()  # the inspector shows a new pair

    def __init__(self, store: QSettings | None = None, data_dir: Path | None = None) -> None:
        super().__init__()
        self.setWindowTitle("CopyLens")
        self.resize(1600, 900)
        self.setAcceptDrops(True)
        self.store = store if store is not None else st.default_store()
        self.settings = st.load_settings(self.store)
        self.data_dir = Path(data_dir) if data_dir is not None else st.default_data_dir()
        self.review_log = ReviewLog.in_dir(self.data_dir)
        self.session = SessionStore.in_dir(self.data_dir)
        self.pool = WorkerPool(max_threads=self.settings.workers + 2, parent=self)
        self.engine = None
        self._retired: list = []  # engines replaced by another index, closed once no worker uses them
        self._closing = False
        self._inspect_worker: JobWorker | None = None
        self._open_worker: JobWorker | None = None
        self._header_text = "No index open. File ▸ Open index… or Build index…"
        self.pool.worker_done.connect(lambda: self._retired and self._release_retired())
        self.queue = QueryQueue(self.pool, self)
        self.reviewer = Reviewer(self)
        self._inspect_evidence = True  # False: a below-threshold candidate, drawn without lines or outline
        self.queue.top_k = self.settings.top_k
        # ---- widgets
        self.header = QLabel(self._header_text)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.queue_panel = QueuePanel(self.queue)
        self.results = ResultsPanel()
        self.inspector = Inspector()
        self.notifications = NotificationArea()
        self.left_split = left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.queue_panel)
        left.addWidget(self.notifications)
        left.setSizes([600, 200])
        self.main_split = main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(self.results)
        main.addWidget(self.inspector)
        main.setStretchFactor(2, 1)
        main.setSizes([260, 480, 860])
        # a narrow window (or a layout saved in one) squeezed the ranked matches to a 70-px strip, names
        # and confidences cut off: the splitter now stops at a width that still reads
        self.results.setMinimumWidth(RESULTS_MIN_WIDTH)
        main.setCollapsible(1, False)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.addWidget(self.header)
        lay.addWidget(main, 1)
        self.setCentralWidget(central)
        for view in (self.inspector.canvas.query_view, self.inspector.canvas.ref_view):
            view.setAcceptDrops(False)
            view.viewport().setAcceptDrops(False)
        # ---- wiring
        self.queue.failed.connect(self.notifications.notify)
        self.queue.item_finished.connect(self.reviewer.refresh)
        self.queue.item_finished.connect(self._save_item)
        self.queue.item_added.connect(self._save_item)
        self.queue.cleared.connect(self.session.clear)
        self.queue_panel.selected.connect(self.show_query)
        self.results.selected.connect(self.inspect)
        self._build_menus()
        self.statusBar().showMessage("Drop images or folders here, or paste one with Ctrl+V.")
        self._restore_layout()

    # ---- menus and shortcuts ----------------------------------------------------------------------------
    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        act.triggered.connect(lambda _=False: slot())
        menu.addAction(act)
        self.addAction(act)  # shortcuts work even with the menu bar hidden
        return act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        f = bar.addMenu("&File")
        self._action(f, "Open &index…", self.choose_index, QKeySequence.StandardKey.Open)
        self.recent_menu = f.addMenu("Recent indexes")
        self._refresh_recent()
        self._action(f, "&Build index from folder…", self.build_index_dialog, "Ctrl+B")
        f.addSeparator()
        self._action(f, "Add &query images…", self.choose_queries, "Ctrl+Shift+O")
        self._action(f, "Add query &folder…", self.choose_query_folder, "Ctrl+Shift+D")
        self._action(f, "&Paste image as query", self.paste, QKeySequence.StandardKey.Paste)
        f.addSeparator()
        self._action(f, "Export &results (CSV/JSON)…", self.export_results)
        self._action(f, "Export review &log (CSV/JSON)…", self.export_review_log)
        self._action(f, "Export re&port (HTML, CSV, JSON, evidence)…", self.export_report, "Ctrl+Shift+E")
        self._action(f, "Export inspector view as &PNG…", self.export_view, "Ctrl+E")
        f.addSeparator()
        self._action(f, "Se&ttings…", self.edit_settings, QKeySequence.StandardKey.Preferences)
        self._action(f, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        r = bar.addMenu("&Review")
        rv = self.reviewer
        self._action(r, "Mark pair as &copy", lambda: rv.decide_pair("copy"), "C")
        self._action(r, "Mark pair as &not a copy", lambda: rv.decide_pair("not a copy"), "N")
        self._action(r, "No copy in this &query", lambda: rv.decide_query("no copy"), "X")
        self._action(r, "&Skip query (unsure)", lambda: rv.decide_query("unsure"), "S")
        self._action(r, "&Undo last decision", rv.undo, QKeySequence.StandardKey.Undo)
        self._action(r, "Mark all at or above a confidence as copy…", self.bulk_copy)
        r.addSeparator()
        self._action(r, "Ne&xt candidate", lambda: rv.step_candidate(1), [QKeySequence("Down"), QKeySequence("J")])
        self._action(r, "Pre&vious candidate", lambda: rv.step_candidate(-1), [QKeySequence("Up"), QKeySequence("K")])
        self._action(r, "Next &unreviewed query", rv.next_unreviewed, [QKeySequence("PgDown"), QKeySequence("Right")])
        self._action(r, "Previous unreviewed query", lambda: rv.next_unreviewed(-1),
                     [QKeySequence("PgUp"), QKeySequence("Left")])
        self._action(r, "Show candidates below the threshold", lambda: self.results.set_expanded(
            not self.results.expanded), "B")
        self._action(r, "Open reference &file", lambda: self.open_reference(folder=False), "Ctrl+Shift+F")
        self._action(r, "Open reference f&older", lambda: self.open_reference(folder=True))
        v = bar.addMenu("&View")
        ins = self.inspector
        for i, name in enumerate(("Side by side", "Blend", "Flicker")):
            self._action(v, name, lambda i=i: ins.set_mode(i), str(i + 1))
        v.addSeparator()
        self._action(v, "Zoom &in", lambda: ins.zoom(1.25), [QKeySequence("+"), QKeySequence("=")])
        self._action(v, "Zoom &out", lambda: ins.zoom(0.8), "-")
        self._action(v, "&Fit", ins.canvas.fit, "F")
        self._action(v, "Match &lines", lambda: ins.toggle("matches"), "L")
        self._action(v, "&Outline", lambda: ins.toggle("outline"), "O")
        self._action(v, "&Regions", lambda: ins.toggle("regions"), "R")
        q = bar.addMenu("&Queue")
        self._action(q, "&Cancel queue", self.queue.cancel, "Ctrl+.")
        self._action(q, "&Retry selected query", lambda: self.queue.retry(self.queue_panel.current_row()))
        self._action(q, "Retry &all failed or cancelled", self.queue.retry_all, "Ctrl+Shift+R")
        self._action(q, "C&lear queue…", self.clear_queue)

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for path in st.recent_indexes(self.store):
            act = self.recent_menu.addAction(path)
            act.triggered.connect(lambda _=False, p=path: self.open_index(p))
        self.recent_menu.setEnabled(bool(self.recent_menu.actions()))

    # ---- index ------------------------------------------------------------------------------------------
    def choose_index(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a CopyLens index")
        if path:
            self.open_index(path)

    def open_index(self, path: str) -> None:
        """Open ``path`` in a worker; errors (missing or invalid index) go to the notification area."""
        path = str(path)
        if self._open_worker is None:
            self._header_text = self.header.text()
        self.header.setText(f"Opening {path}…")
        device = self.settings.device
        w = JobWorker(lambda: call_job(lambda: open_engine(path, device)), name=f"open {path}")
        w.signals.result.connect(lambda eng, p=path: self._on_engine(p, eng))
        w.signals.error.connect(lambda exc, p=path: self._on_open_error(p, exc))
        self._open_worker = self.pool.start(w)

    def _on_engine(self, path: str, engine) -> None:
        self._open_worker = None
        if self.engine is not None:
            self._retired.append(self.engine)
        self.engine = engine
        self._release_retired()
        info = engine.info
        size = f" · {info.size_bytes / 1e6:.1f} MB" if getattr(info, "size_bytes", 0) else ""
        lists = getattr(engine, "manifest", {}).get("hash_lists") or []
        if shards := getattr(engine, "manifest", {}).get("shards"):
            size += f" · {shards} shards"
        if lists:
            size += (f" · {len(lists)} hash list{'s' if len(lists) != 1 else ''} "
                     f"({sum(int(x.get('entries', 0)) for x in lists)} entries)")
        self.header.setText(f"<b>{info.name}</b> · {info.num_references} references{size} · descriptors: "
                            f"{', '.join(info.descriptors) or '—'} · <span style='color:gray'>{info.path}</span>")
        self.setWindowTitle(f"CopyLens: {info.name}")
        if changed := getattr(info, "releases_changed", ()):
            self.notifications.notify(path, f"calibrated with other library releases ({'; '.join(changed)}): "
                                            f"{RELEASES_ADVICE}", level="warning")
        st.remember_index(self.store, path)
        self._refresh_recent()
        self.apply_copy_share()  # before queries run on it
        self.queue.set_engine(engine, self.settings.top_k)
        self.session.set_meta("index", str(Path(path).resolve()))
        self._fill_thumbnails(engine)
        self.engine_opened.emit(engine)

    def _on_open_error(self, path: str, exc: BaseException) -> None:
        self._open_worker = None
        subject, reason = describe_error(exc)
        self.notifications.notify(path, reason if subject == type(exc).__name__ else f"{subject}: {reason}")
        self.header.setText(self._header_text)

    def build_index_dialog(self, ref_dir: str = "", out_dir: str = "", autostart: bool = False,
                           build_fn=None) -> BuildIndexDialog:
        dlg = BuildIndexDialog(self.pool, self.settings.workers, ref_dir, out_dir, build_fn, self)
        dlg.index_ready.connect(self.open_index)
        dlg.failed.connect(self.notifications.notify)
        dlg.setModal(False)
        dlg.show()
        if autostart:
            dlg.start()
        return dlg

    # ---- queries ----------------------------------------------------------------------------------------
    def choose_queries(self) -> None:
        pattern = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        paths, _ = QFileDialog.getOpenFileNames(self, "Add query images", "", f"Images ({pattern})")
        self.add_paths(paths)

    def choose_query_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of query images")
        if folder:
            self.add_paths([folder])

    def add_paths(self, paths) -> int:
        """Queue files at once, in the order given; folders are listed (recursively) in a worker and their
        images queued when the listing arrives, so a dropped folder of 100,000 files never blocks the GUI.
        Returns how many files were queued now."""
        n = 0
        for p in map(Path, paths):
            if p.is_dir():
                self._scan_folder(p)
            else:
                self._queue_files([p])
                n += 1
        return n

    def _queue_files(self, files: list[Path]) -> None:
        for f in files:
            self.queue.add(QueryRequest(self.queue.next_id(), f.name, path=str(f)))
        if files and self.engine is None and self._open_worker is None:
            self.notifications.notify("queue", "open an index to run the queued queries", level="warning")

    def _scan_folder(self, folder: Path) -> None:
        def listed(files: list[Path]) -> None:
            if not files:
                self.notifications.notify(str(folder), "the folder holds no images", level="warning")
            self._queue_files(files)
            self.statusBar().showMessage(f"Queued {len(files)} images from {folder}.", 5000)

        self.statusBar().showMessage(f"Listing {folder}…")
        w = JobWorker(lambda: call_job(lambda: scan_images(folder)), name=f"list {folder}")
        w.signals.result.connect(listed)
        w.signals.error.connect(lambda exc: self.notifications.notify(str(folder), describe_error(exc)[1]))
        self.pool.start(w)

    def add_mime(self, mime: QMimeData) -> int:
        """Files/folders (urls), encoded image bytes or a bitmap: the drop and paste handler."""
        urls = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []
        if urls:
            return self.add_paths(urls)
        for fmt in IMAGE_MIME:
            if mime.hasFormat(fmt):
                self._queue_paste(bytes(mime.data(fmt)), fmt.split("/")[1])
                return 1
        if mime.hasImage():
            from .images import qimage_to_rgb

            self._queue_paste(qimage_to_rgb(mime.imageData()), "png")
            return 1
        self.notifications.notify("clipboard", "holds no image or image file", level="warning")
        return 0

    def _queue_paste(self, content, ext: str) -> None:
        """Save a pasted image under ``<data dir>/pasted/`` (in a worker) and queue that file, so the review
        log and reports point at a real file."""
        label = self.queue.next_paste_label()
        folder = self.data_dir / "pasted"
        w = JobWorker(lambda: call_job(lambda: save_pasted(content, ext, folder)), name=f"save {label}")
        w.signals.result.connect(lambda p: self.queue.add(QueryRequest(self.queue.next_id(), label, path=str(p))))
        w.signals.error.connect(lambda exc: self.notifications.notify(label, describe_error(exc)[1]))
        self.pool.start(w)

    def paste(self) -> None:
        self.add_mime(QGuiApplication.clipboard().mimeData())

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage() or any(mime.hasFormat(f) for f in IMAGE_MIME):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        if self.add_mime(event.mimeData()):
            event.acceptProposedAction()

    # ---- results and inspector --------------------------------------------------------------------------
    def bulk_copy(self, threshold: float | None = None, confirm: bool = True) -> int:
        """Ask for a confidence, say how many unreviewed queries it would mark, and mark them on Yes."""
        if threshold is None:
            pct, ok = QInputDialog.getInt(self, "Mark as copies", "Mark every unreviewed query whose best match "
                                          "is at or above this confidence (%) as a copy:",
                                          round(100 * self.settings.copy_threshold), 1, 100)
            if not ok:
                return 0
            threshold = pct / 100
        n = sum(1 for it in self.queue.items if it.state == "done" and not it.review and it.outcome.result.best
                and it.outcome.result.best.score >= threshold)
        if confirm and QMessageBox.question(
                self, "Mark as copies", f"Mark {n} unreviewed queries as copies of their best match "
                f"(confidence at or above {threshold:.0%})? Each can be undone.") != QMessageBox.StandardButton.Yes:
            return 0
        return self.reviewer.bulk_copy(threshold)

    def current_item(self):
        row = self.queue_panel.current_row()
        return self.queue.items[row] if 0 <= row < len(self.queue.items) else None

    def show_query(self, row: int, force: bool = False) -> None:
        item = self.queue.items[row] if 0 <= row < len(self.queue.items) else None
        if force:
            self.results.outcome = None
        if item is None or item.state != "done":
            msg = {"waiting": "waiting in the queue", "running": "searching…", "cancelled": "cancelled",
                   "error": f"failed: {item.error}" if item else ""}.get(item.state if item else "", "")
            if self.results.outcome is not None or item is not None:
                self.results.show_outcome(None, self.settings, message=msg)
            return
        if self.results.outcome is item.outcome:
            return
        decisions = {m.reference_id: d for m in item.outcome.result.matches
                     if (d := self.review_log.latest(item.outcome.sha256, m.reference_id))}
        self.results.show_outcome(item.outcome, self.settings, decisions)

    def inspect(self, match_row: int) -> None:
        """Show the selected pair; cancel the previous pair's preparation (stale work)."""
        if self._inspect_worker is not None:
            self._inspect_worker.cancel()
            self._inspect_worker = None
        outcome = self.results.outcome
        h = self.results.current_hash() if outcome is not None and match_row <= HASH_ROW else None
        if h is not None:
            box = "" if h.box is None else " in the region outlined at ({:.0f}, {:.0f})-({:.0f}, {:.0f})".format(*h.box)
            tags = f" · tags: {', '.join(h.tags)}" if h.tags else ""
            self.inspector.show_data(None, (
                f"Hash-list match: {h.list_name} · entry {h.entry_id}{tags}\n"
                f"PDQ distance {h.distance} of 256 bits (match threshold 31) · query hash quality {h.quality}"
                f"{'' if h.entry_quality is None else f' · listed quality {h.entry_quality}'} · "
                f"the query is the listed picture {h.transform}{box}\n"
                f"Confidence {h.confidence:.0%}, calibrated for PDQ evidence alone.\n\n"
                "The list holds hashes, not images: there are no SIFT lines or overlays to show."))
            return
        if outcome is None or not 0 <= match_row < len(outcome.result.matches) or self.engine is None:
            no_match = outcome is not None and self.results.num_above() == 0
            self.inspector.show_data(None, "No match: no candidate reaches the threshold, so there is no "
                                           "evidence to show (B lists the candidates)." if no_match else "")
            return
        match, engine = outcome.result.matches[match_row], self.engine
        self._inspect_evidence = match.score >= self.settings.possible_threshold
        w = JobWorker(lambda: inspect_job(engine, outcome, match), name=f"inspect {match.reference_id}",
                      uses=engine)
        w.signals.result.connect(lambda data, wk=w: self._on_inspect(wk, data))
        w.signals.error.connect(lambda exc: self.notifications.notify(*describe_error(exc)))
        self._inspect_worker = self.pool.start(w)

    def _on_inspect(self, worker: JobWorker, data) -> None:
        if worker is not self._inspect_worker:  # a newer selection replaced it
            return
        self._inspect_worker = None
        self.inspector.show_data(data, evidence=self._inspect_evidence)
        self.inspector_ready.emit()

    def edit_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        dlg = SettingsDialog(self.settings, self, estimate=self.estimate_queue_share if self.engine else None,
                             calibrated_share=self.engine.calibrated_share if self.engine else None)
        if dlg.exec():
            self.apply_settings(dlg.value())

    def apply_settings(self, new: st.AppSettings) -> None:
        self.settings = new
        st.save_settings(self.store, new)
        self.queue.top_k = new.top_k
        self.pool.pool.setMaxThreadCount(max(2, new.workers + 2))
        self.apply_copy_share()
        item = self.current_item()
        if item is not None and item.outcome is not None:
            self.results.outcome = None  # force a re-render with the new thresholds
            self.show_query(self.queue_panel.current_row())

    def open_reference(self, folder: bool = False) -> Path | None:
        """Open the selected reference's original file (or its folder) with the desktop's default app."""
        outcome, i = self.results.outcome, self.results.current()
        if outcome is None or i < 0:
            self.statusBar().showMessage("Select a result first.", 3000)
            return None
        path = Path(outcome.references.get(outcome.result.matches[i].reference_id, {}).get("path", ""))
        target = path.parent if folder else path
        if not path.name or not target.exists():
            self.notifications.notify(str(path), "the reference's original file is not there any more "
                                                 "(the index shows its stored thumbnail)", level="warning")
            return None
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(target)))
        return target

    def _release_retired(self) -> None:
        """Close engines replaced by another index as soon as no worker uses them any more (an open
        index holds its FAISS structures in memory: keeping old ones until exit would add up)."""
        keep = []
        for eng in self._retired:
            if self.pool.in_use(eng):
                keep.append(eng)
            elif hasattr(eng, "close"):
                eng.close()
        self._retired = keep

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Cancel everything and hide at once; the engines close when the last worker has stopped (a
        worker stops at its next progress report), so closing never waits on the GUI thread."""
        self.queue.cancel()
        self.pool.cancel_all()
        if self.pool.active and not self._closing:
            self._closing = True
            event.ignore()
            self.hide()
            self.pool.drained.connect(self.close)
            return
        if self.engine is not None:
            self._retired.append(self.engine)
            self.engine = None
        self._release_retired()
        self._save_layout()
        for row, it in enumerate(self.queue.items):
            if it.state in ("waiting", "running"):
                self.session.save(row, it)
        self.review_log.close()
        self.session.close()
        super().closeEvent(event)
