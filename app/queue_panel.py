"""The queue panel: one row per query (thumbnail, name, state), an overall progress bar and Cancel."""

from __future__ import annotations

from PySide6.QtCore import QSize, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .images import THUMB_SIDE
from .query_queue import QueryQueue

STATE_TEXT = {"waiting": "waiting", "running": "running…", "done": "done", "error": "error",
              "cancelled": "cancelled"}


def _placeholder() -> QIcon:
    pm = QPixmap(THUMB_SIDE, THUMB_SIDE)
    pm.fill(QColor(128, 128, 128, 60))
    return QIcon(pm)


class QueuePanel(QWidget):
    selected = Signal(int)  # row of the query whose results should show (-1: none)

    def __init__(self, queue: QueryQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.queue = queue
        title = QLabel("<b>Queries</b>")
        self.list = QListWidget()
        self.list.setIconSize(QSize(56, 56))
        self.list.setUniformItemSizes(True)
        self.list.setAlternatingRowColors(True)
        self.list.currentRowChanged.connect(self.selected.emit)
        self.list.setToolTip("Drop images or folders anywhere on the window, or paste one with Ctrl+V")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(queue.cancel)
        bottom = QHBoxLayout()
        bottom.addWidget(self.progress, 1)
        bottom.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(title)
        lay.addWidget(self.list, 1)
        lay.addLayout(bottom)
        self._placeholder = _placeholder()
        queue.item_added.connect(self._on_added)
        queue.item_changed.connect(self._refresh)
        queue.progress.connect(self._on_progress)

    def _on_added(self, row: int) -> None:
        self.list.addItem(QListWidgetItem(self._placeholder, ""))
        self._refresh(row)
        if self.list.currentRow() < 0:
            self.list.setCurrentRow(row)

    def _refresh(self, row: int) -> None:
        it, item = self.queue.items[row], self.list.item(row)
        if item is None:
            return
        text = f"{it.request.label}\n{STATE_TEXT[it.state]}"
        if it.state == "done" and it.outcome is not None:
            best = it.outcome.result.best
            text += f" · {len(it.outcome.result.matches)} results" + (
                f" · best {best.score:.0%}" if best is not None else "")
        elif it.state == "error":
            text += f": {it.error}"
        item.setText(text)
        item.setToolTip(it.request.path or it.request.label)
        if it.thumb is not None:
            item.setIcon(QIcon(QPixmap.fromImage(it.thumb)))
        if it.state == "error":
            item.setForeground(QColor(200, 40, 40))
        if row == self.list.currentRow():
            self.selected.emit(row)

    def _on_progress(self, fraction: float) -> None:
        busy = self.queue.busy
        self.progress.setValue(round(1000 * fraction))
        self.progress.setFormat(f"{self.queue.num_finished}/{self.queue.num_active} queries"
                                + (" · %p%" if busy else ""))
        self.cancel_button.setEnabled(busy)

    def select(self, row: int) -> None:
        self.list.setCurrentRow(row)
