"""Build (or resume building) an index from a folder of reference images, in a worker, with progress,
ETA and Cancel. ``build_index`` is resumable: running it again on the same output folder continues."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from copylens.core.index import is_partial_index

from .query_queue import describe_error
from .workers import JobWorker, WorkerPool


def _default_build(ref_dir: str, out_dir: str, workers: int):
    from copylens.core.index.build import build_index

    return build_index(ref_dir, out_dir, workers=workers)


def format_eta(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


class BuildIndexDialog(QDialog):
    index_ready = Signal(str)  # output folder of a finished build
    failed = Signal(str, str)  # (file, reason) for the main notification area

    def __init__(self, pool: WorkerPool, workers: int = 2, ref_dir: str = "", out_dir: str = "",
                 build_fn: Callable | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Build an index")
        self.setMinimumWidth(560)
        self.pool, self.workers, self.build_fn = pool, workers, build_fn or _default_build
        self.worker: JobWorker | None = None
        self.summary = None
        self.state = "idle"  # idle / running / cancelling / cancelled / done / error
        self.ref_edit, self.out_edit = QLineEdit(ref_dir), QLineEdit(out_dir)
        self.ref_edit.setPlaceholderText("folder of reference images (searched recursively)")
        self.out_edit.setPlaceholderText("folder for the index (an existing partial index is resumed)")
        form = QFormLayout()
        for label, edit in (("References", self.ref_edit), ("Index folder", self.out_edit)):
            row = QHBoxLayout()
            row.addWidget(edit, 1)
            browse = QPushButton("Browse…")
            browse.clicked.connect(lambda _=False, e=edit: self._browse(e))
            row.addWidget(browse)
            form.addRow(label, row)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self._update_button)
        self.out_edit.textChanged.connect(lambda _t: self._debounce.start())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.stage = QLabel("")
        self.eta = QLabel("")
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.start_button = QPushButton("Build")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.start_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.progress)
        status = QHBoxLayout()
        status.addWidget(self.stage, 1)
        status.addWidget(self.eta)
        lay.addLayout(status)
        lay.addWidget(self.result_label)
        lay.addLayout(buttons)
        self._stage_name, self._stage_start = "", 0.0
        self._update_button()

    def _browse(self, edit: QLineEdit) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text())
        if path:
            edit.setText(path)

    def _update_button(self) -> None:
        """"Resume" when the folder holds part of an index: one stat of its database file (no folder
        listing), and only after typing pauses (the debounce timer), so a slow network drive cannot make
        typing lag."""
        text = self.out_edit.text().strip()
        self.start_button.setText("Resume" if text and is_partial_index(text) else "Build")

    def start(self) -> None:
        ref, out = self.ref_edit.text().strip(), self.out_edit.text().strip()
        if not ref or not Path(ref).is_dir():
            self.result_label.setText(f"Reference folder not found: {ref or '(none)'}")
            return
        if not out:
            self.result_label.setText("Choose an index folder.")
            return
        self.summary, self.state = None, "running"
        self.progress.setValue(0)
        self.result_label.setText("")
        self._stage_name, self._stage_start = "", time.monotonic()
        fn, workers = self.build_fn, self.workers
        self.worker = JobWorker(lambda: fn(ref, out, workers), name="index build")
        self.worker.signals.progress.connect(self._on_progress)
        self.worker.signals.result.connect(self._on_result)
        self.worker.signals.error.connect(self._on_error)
        self.worker.signals.cancelled.connect(self._on_cancelled)
        self.worker.signals.finished.connect(self._on_finished)
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.stage.setText("starting…")
        self.pool.start(self.worker)

    def cancel(self) -> None:
        if self.worker is not None and self.state == "running":
            self.state = "cancelling"
            self.stage.setText("cancelling after the current image…")
            self.worker.cancel()
            self.cancel_button.setEnabled(False)

    def _on_progress(self, p) -> None:
        now = time.monotonic()
        if p.stage != self._stage_name:
            self._stage_name, self._stage_start = p.stage, now
        self.progress.setValue(round(1000 * p.fraction))
        self.stage.setText(f"{p.stage}: {p.done}/{p.total} {p.message}" if p.total else f"{p.stage} {p.message}")
        elapsed = now - self._stage_start
        if p.total and p.done and elapsed > 0.5:
            self.eta.setText(f"ETA {format_eta((p.total - p.done) * elapsed / p.done)}")
        else:
            self.eta.setText("")

    def _on_result(self, summary) -> None:
        self.summary, self.state = summary, "done"
        self.progress.setValue(1000)
        self.eta.setText("")
        self.stage.setText("done")
        failed = list(getattr(summary, "failed", []) or [])
        self.result_label.setText(
            f"{getattr(summary, 'total_references', '?')} references · {getattr(summary, 'added', '?')} added · "
            f"{getattr(summary, 'skipped', 0)} already indexed · {getattr(summary, 'duplicates', 0)} duplicates · "
            f"{len(failed)} failed · {getattr(summary, 'seconds', 0.0):.1f} s")
        for path, reason in failed:
            self.failed.emit(path, reason)
        self.index_ready.emit(self.out_edit.text().strip())

    def _on_error(self, exc) -> None:
        self.state = "error"
        subject, reason = describe_error(exc)
        self.stage.setText("failed")
        self.result_label.setText(f"{subject}: {reason}")
        self.failed.emit(subject, reason)

    def _on_cancelled(self) -> None:
        self.state = "cancelled"
        self.stage.setText("cancelled")
        self.eta.setText("")
        self.result_label.setText("Cancelled. Press Resume to continue where the build stopped.")

    def _on_finished(self) -> None:
        self.worker = None
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self._update_button()

    def reject(self) -> None:
        self.cancel()
        super().reject()
