"""The window's export and session actions, kept apart from the layout and wiring in main_window.py:
exports (results, review log, report, inspector view) and the session (save each settled query, restore
on start, clear, thumbnails of restored results, window layout). Mixed into :class:`MainWindow`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from copylens.core.errors import CopyLensError
from copylens.core.prior import ShareEstimate, estimate_share, shift_result

from .exports import result_rows
from .jobs import restored_thumbnails_job
from .query_queue import describe_error
from .report import ReportInfo, index_fingerprint, report_job
from .review_log import export_log, write_rows
from .workers import JobWorker


class ExportsAndSession:
    """Methods of MainWindow (uses its queue, panels, pool, engine, stores and notifications)."""

    # ---- export and settings ----------------------------------------------------------------------------
    def _save_name(self, title: str, default: str, filters: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self, title, str(Path.home() / default), filters)
        return path

    def export_results(self, path: str | None = None) -> Path | None:
        path = path or self._save_name("Export results", "copylens_results.csv", "CSV (*.csv);;JSON (*.json)")
        return self._export(path, lambda p: write_rows(p, result_rows(self.queue.items, self.settings)))

    def export_review_log(self, path: str | None = None) -> Path | None:
        path = path or self._save_name("Export review log", "copylens_review.csv", "CSV (*.csv);;JSON (*.json)")
        return self._export(path, lambda p: export_log(self.review_log, p))

    def export_report(self, folder: str | None = None) -> JobWorker | None:
        """Report the queries shown in the queue panel (its filter is the selection) into ``folder``."""
        folder = folder or QFileDialog.getExistingDirectory(self, "Folder for the report")
        if not folder or self.engine is None:
            return None
        items = [self.queue.items[r] for r in self.queue_panel.visible_rows()]
        info = ReportInfo(self.engine.info.name, str(self.engine.info.path),
                          index_fingerprint(self.engine.info.path), self.settings.reviewer_name)
        engine, decisions, settings = self.engine, self.review_log.latest_all(), self.settings
        w = JobWorker(lambda: report_job(items, engine, decisions, settings, info, folder), name="report",
                      uses=engine)
        w.signals.progress.connect(lambda p: self.statusBar().showMessage(f"Report: {p.done}/{p.total} queries"))
        w.signals.result.connect(lambda path: self.statusBar().showMessage(f"Report written to {path}", 8000))
        w.signals.error.connect(lambda exc: self.notifications.notify("report", describe_error(exc)[1]))
        return self.pool.start(w)

    def export_view(self, path: str | None = None) -> Path | None:
        path = path or self._save_name("Export inspector view", "copylens_inspector.png", "PNG (*.png)")
        return self._export(path, lambda p: Path(p) if self.inspector.annotated_image().save(str(p)) else None)

    def _export(self, path: str | None, fn) -> Path | None:
        if not path:
            return None
        try:
            out = fn(path)
        except (OSError, ValueError) as exc:
            self.notifications.notify(path, str(exc))
            return None
        if out is None:
            self.notifications.notify(path, "could not be written")
        else:
            self.statusBar().showMessage(f"Saved {out}", 4000)
        return out

    # ---- the queue's share of copies -------------------------------------------------------------------
    def target_share(self) -> float | None:
        """The share of copies that scores are shown for: the setting's, else the open index's calibrated
        one (None: no index open, or one that records none)."""
        return None if self.engine is None else self.engine.score_share

    def apply_copy_share(self) -> None:
        """Score queries for the settings' share of copies, and move every finished result to it."""
        if self.engine is None:
            return
        try:
            self.engine.set_copy_share(self.settings.copy_share or None)
        except (CopyLensError, ValueError) as exc:
            self.engine.set_copy_share(None)
            self.notifications.notify("share of copies", f"{exc}; scores stay as the index was calibrated",
                                      level="warning")
        for row in range(len(self.queue.items)):
            self._align_scores(row)

    def estimate_queue_share(self) -> ShareEstimate:
        """The queue's share of copies estimated from its finished queries' best scores (core/prior.py);
        ValueError with the reason when there are too few or their scores know no share."""
        target = self.target_share()
        if target is None:
            raise ValueError("the open index's confidence records no share of copies; rebuild it to estimate one")
        results = [it.outcome.result for it in self.queue.items if it.state == "done" and it.outcome is not None]
        results = [r for r in results if r.copy_share is not None and abs(r.copy_share - target) < 1e-9]
        return estimate_share([r.best.score if r.best else 0.0 for r in results], target)

    def _align_scores(self, row: int) -> bool:
        """Move a finished query's scores to :meth:`target_share` when they are for another share (a result
        restored from an earlier session, or one that finished as the setting changed)."""
        item, target = self.queue.items[row], self.target_share()
        result = item.outcome.result if item.outcome is not None else None
        if result is None or result.copy_share is None or target is None or abs(result.copy_share - target) < 1e-9:
            return False
        shown = self.results.outcome is item.outcome
        item.outcome = dataclasses.replace(item.outcome, result=shift_result(result, target))
        self.session.save(row, item)
        self.queue.item_changed.emit(row)  # the queue panel shows the best score
        if shown:
            self.results.outcome = None  # render the moved scores (and the inspector's verdicts) again
            self.show_query(row)
        return True

    # ---- session: nothing is lost on close or crash ----------------------------------------------------
    def _save_item(self, row: int) -> None:
        if not self._align_scores(row):  # (which saves what it moves)
            self.session.save(row, self.queue.items[row])

    def restore_session(self) -> int:
        """Queue the previous session's queries again (finished ones with their results) and reopen the
        last index unless one is already open or opening; returns how many queries came back."""
        saved = self.session.load()
        if saved:
            self.queue.restore(saved)
            self.statusBar().showMessage(f"Restored {len(saved)} queries of the last session.", 6000)
        last = self.session.meta("index")
        if last and self.engine is None and self._open_worker is None and Path(last).is_dir():
            self.open_index(last)
        return len(saved)

    def clear_queue(self, confirm: bool = True) -> None:
        if confirm and self.queue.items:
            answer = QMessageBox.question(self, "Clear queue", f"Remove all {len(self.queue.items)} queries and "
                                          "their results from the queue? Review decisions stay in the log.")
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.queue.clear()
        self.results.show_outcome(None, self.settings)

    def _fill_thumbnails(self, engine) -> None:
        """Restored results have no thumbnails: fetch them (and the queries' own) in a worker."""
        rows = [i for i, it in enumerate(self.queue.items) if it.outcome is not None and not it.outcome.reference_thumbs]
        if not rows:
            return
        jobs = [(r, self.queue.items[r].outcome) for r in rows]
        w = JobWorker(lambda: restored_thumbnails_job(engine, jobs), name="thumbnails", uses=engine)
        w.signals.result.connect(self._on_thumbnails)
        self.pool.start(w)

    def _on_thumbnails(self, found: dict) -> None:
        for row, (outcome, thumbs, refs, query_thumb) in found.items():
            if row < len(self.queue.items) and self.queue.items[row].outcome is outcome:
                item = self.queue.items[row]
                item.outcome = dataclasses.replace(outcome, reference_thumbs=thumbs, references=refs)
                item.thumb, item.thumb_shown = query_thumb, False
                self.queue.item_changed.emit(row)

    def _restore_layout(self) -> None:
        for key, widget in (("geometry", self), ):
            raw = self.store.value(f"layout/{key}")
            if raw is not None:
                widget.restoreGeometry(raw)
        for key, split in (("main", self.main_split), ("left", self.left_split)):
            raw = self.store.value(f"layout/{key}")
            if raw is not None:
                split.restoreState(raw)

    def _save_layout(self) -> None:
        self.store.setValue("layout/geometry", self.saveGeometry())
        self.store.setValue("layout/main", self.main_split.saveState())
        self.store.setValue("layout/left", self.left_split.saveState())
        self.store.sync()

