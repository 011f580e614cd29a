"""The queue panel: one row per query (thumbnail, name, state, review verdict by colour), review counts,
sort and filter, an overall progress bar and Cancel.

List rows are not queue rows once the list is sorted or filtered: every list item carries its queue row
(``ROW_ROLE``), and the panel speaks queue rows to everyone else.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
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
REVIEW_COLOUR = {"copy": QColor(198, 40, 40, 70), "no copy": QColor(67, 160, 71, 60),
                 "unsure": QColor(230, 140, 0, 70)}
REVIEW_TEXT = {"copy": "✔ copy", "no copy": "✘ no copy", "unsure": "? unsure", "": "unreviewed"}
SORTS = ("Queue order", "Best confidence", "Review state")
FILTERS = ("All", "Unreviewed", "Reviewed", "Copy", "No copy", "Unsure", "Failed or cancelled")
ROW_ROLE = Qt.ItemDataRole.UserRole + 1


def _placeholder() -> QIcon:
    pm = QPixmap(THUMB_SIDE, THUMB_SIDE)
    pm.fill(QColor(128, 128, 128, 60))
    return QIcon(pm)


class _Item(QListWidgetItem):
    """A list item that sorts by the panel's current key."""

    def __init__(self, icon: QIcon, panel: QueuePanel, row: int) -> None:
        super().__init__(icon, "")
        self.panel, self.row = panel, row
        self.setData(ROW_ROLE, row)

    def __lt__(self, other: QListWidgetItem) -> bool:
        return self.panel.sort_key(self.row) < self.panel.sort_key(other.row)


class QueuePanel(QWidget):
    selected = Signal(int)  # queue row of the query whose results should show (-1: none)

    def __init__(self, queue: QueryQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.queue = queue
        title = QLabel("<b>Queries</b>")
        self.counts = QLabel("")
        self.counts.setToolTip("Review progress: C copy, X no copy, S unsure, N not this candidate")
        self.sort = QComboBox()
        self.sort.addItems(SORTS)
        self.filter = QComboBox()
        self.filter.addItems(FILTERS)
        for box in (self.sort, self.filter):
            box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            box.currentIndexChanged.connect(lambda _i: self.reorder())
        self.list = QListWidget()
        self.list.setIconSize(QSize(56, 56))
        self.list.setUniformItemSizes(True)
        self.list.setAlternatingRowColors(True)
        self.list.currentItemChanged.connect(lambda cur, _prev: self.selected.emit(self._row(cur)))
        self.list.setToolTip("Drop images or folders anywhere on the window, or paste one with Ctrl+V")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(queue.cancel)
        head = QHBoxLayout()
        head.addWidget(title)
        head.addStretch(1)
        head.addWidget(self.counts)
        tools = QHBoxLayout()
        tools.addWidget(self.sort, 1)
        tools.addWidget(self.filter, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.progress, 1)
        bottom.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(head)
        lay.addLayout(tools)
        lay.addWidget(self.list, 1)
        lay.addLayout(bottom)
        self._placeholder = _placeholder()
        self._items: list[_Item] = []  # by queue row
        self._resort = QTimer(self)  # re-sorting on every change would cost O(n log n) per signal
        self._resort.setSingleShot(True)
        self._resort.setInterval(250)
        self._resort.timeout.connect(self.reorder)
        queue.item_added.connect(self._on_added)
        queue.cleared.connect(self._on_cleared)
        queue.item_changed.connect(self._refresh)
        queue.progress.connect(self._on_progress)

    # ---- queue rows <-> list ----------------------------------------------------------------------------
    @staticmethod
    def _row(item: QListWidgetItem | None) -> int:
        return int(item.data(ROW_ROLE)) if item is not None else -1

    def current_row(self) -> int:
        """The queue row of the selected query (-1: none)."""
        return self._row(self.list.currentItem())

    def select(self, row: int) -> None:
        if 0 <= row < len(self._items):
            item = self._items[row]
            if item.isHidden():
                self.filter.setCurrentIndex(0)
            self.list.setCurrentItem(item)

    def visible_rows(self) -> list[int]:
        """Queue rows in the order shown, hidden ones left out."""
        return [self._row(self.list.item(i)) for i in range(self.list.count()) if not self.list.item(i).isHidden()]

    # ---- sort and filter --------------------------------------------------------------------------------
    def sort_key(self, row: int) -> tuple:
        it = self.queue.items[row]
        mode = self.sort.currentText()
        if mode == "Best confidence":
            best = it.outcome.result.best if it.outcome is not None else None
            return (-(best.score if best is not None else -1.0), row)
        if mode == "Review state":
            order = {"": 0, "unsure": 1, "copy": 2, "no copy": 3}
            return (order.get(it.review, 0) if it.state == "done" else 4, row)
        return (row,)

    def passes(self, row: int) -> bool:
        it, f = self.queue.items[row], self.filter.currentText()
        if f == "Unreviewed":
            return it.state != "done" or not it.review
        if f == "Reviewed":
            return bool(it.review)
        if f in ("Copy", "No copy", "Unsure"):
            return it.review == f.lower()
        if f == "Failed or cancelled":
            return it.state in ("error", "cancelled")
        return True

    def reorder(self) -> None:
        current = self.current_row()
        self.list.setSortingEnabled(True)
        self.list.sortItems()
        self.list.setSortingEnabled(False)
        for row, item in enumerate(self._items):
            item.setHidden(not self.passes(row))
        if current >= 0 and not self._items[current].isHidden():
            self.list.scrollToItem(self._items[current])

    # ---- rendering --------------------------------------------------------------------------------------
    def _on_cleared(self) -> None:
        self._items.clear()
        self.list.clear()
        self._update_counts()

    def _on_added(self, row: int) -> None:
        item = _Item(self._placeholder, self, row)
        self._items.append(item)
        self.list.addItem(item)
        self._refresh(row)
        if self.list.currentItem() is None:
            self.list.setCurrentItem(item)

    def _refresh(self, row: int) -> None:
        it, item = self.queue.items[row], self._items[row] if row < len(self._items) else None
        if item is None:
            return
        text = f"{it.request.label}\n{STATE_TEXT[it.state]}"
        if it.state == "done" and it.outcome is not None:
            best = it.outcome.result.best
            text += f" · best {best.score:.0%}" if best is not None else " · no candidate"
            if it.outcome.result.hash_matches:
                text += f" · {len(it.outcome.result.hash_matches)} hash-list match"
                text += "es" if len(it.outcome.result.hash_matches) != 1 else ""
            text += f" · {REVIEW_TEXT[it.review]}"
        elif it.state == "error":
            text += f": {it.error}"
        item.setText(text)
        item.setToolTip(it.request.path or it.request.label)
        if it.thumb is not None and not it.thumb_shown:
            item.setIcon(QIcon(QPixmap.fromImage(it.thumb)))
            it.thumb_shown = True
        item.setBackground(QBrush(REVIEW_COLOUR[it.review]) if it.review in REVIEW_COLOUR else QBrush())
        item.setForeground(QColor(200, 40, 40) if it.state == "error" else QBrush())
        item.setHidden(not self.passes(row))
        if self.sort.currentIndex() != 0 or self.filter.currentIndex() != 0:
            self._resort.start()
        self._update_counts()
        if item is self.list.currentItem():
            self.selected.emit(row)

    def _update_counts(self) -> None:
        c = self.queue.reviews
        done = self.queue.counts["done"]
        reviewed = sum(c.values())
        self.counts.setText(f"reviewed {reviewed}/{done} · copy {c['copy']} · no copy {c['no copy']} · "
                            f"unsure {c['unsure']}")

    def _on_progress(self, fraction: float) -> None:
        busy = self.queue.busy
        self.progress.setValue(round(1000 * fraction))
        self.progress.setFormat(f"{self.queue.num_finished}/{self.queue.num_active} queries"
                                + (" · %p%" if busy else ""))
        self.cancel_button.setEnabled(busy)
