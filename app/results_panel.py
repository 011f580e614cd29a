"""Ranked references for the selected query: thumbnail, confidence, verdict badge, inliers, review."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .jobs import QueryOutcome
from .settings import AppSettings

# badge colours readable on light and dark palettes (white text on a saturated fill)
BADGE = {"copy": QColor(198, 40, 40), "possible": QColor(230, 140, 0), "no match": QColor(96, 125, 139)}
COLUMNS = ("Reference", "Confidence", "Verdict", "Inliers", "Review")


class ResultsPanel(QWidget):
    selected = Signal(int)  # index into the outcome's matches (-1: none)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("<b>Results</b>")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setIconSize(QSize(48, 48))
        self.table.verticalHeader().setDefaultSectionSize(54)
        self.table.verticalHeader().setVisible(True)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(COLUMNS)):
            hh.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.currentCellChanged.connect(lambda row, *_: self.selected.emit(row))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.table, 1)
        self.outcome: QueryOutcome | None = None

    def show_outcome(self, outcome: QueryOutcome | None, settings: AppSettings,
                     decisions: dict[str, str] | None = None, message: str = "") -> None:
        """Render ``outcome`` (``None``: clear, showing ``message``); keeps the selected row if possible."""
        keep = self.table.currentRow() if outcome is self.outcome else 0
        self.outcome = outcome
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        if outcome is None:
            self.title.setText(f"<b>Results</b> {message}")
            self.table.blockSignals(False)
            self.selected.emit(-1)
            return
        matches = outcome.result.matches
        ms = sum(outcome.result.timings_ms.values()) if outcome.result.timings_ms else 0.0
        self.title.setText(f"<b>Results</b> for {outcome.request.label}: {len(matches)} ranked"
                           + (f" in {ms:.0f} ms" if ms else "") + ("" if matches else " (no match found)"))
        self.table.setRowCount(len(matches))
        decisions = decisions or {}
        for row, m in enumerate(matches):
            thumb = outcome.reference_thumbs.get(m.reference_id)
            ref = QTableWidgetItem(m.reference_id)
            if thumb is not None:
                ref.setIcon(QIcon(QPixmap.fromImage(thumb)))
            ref.setToolTip(m.reference_id)
            self.table.setItem(row, 0, ref)
            conf = QTableWidgetItem(f"{m.score:.0%}")
            conf.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            self.table.setItem(row, 1, conf)
            verdict = settings.verdict(m.score)
            badge = QTableWidgetItem(verdict.upper())
            badge.setBackground(QBrush(BADGE[verdict]))
            badge.setForeground(QBrush(QColor("white")))
            badge.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            self.table.setItem(row, 2, badge)
            inl = QTableWidgetItem(str(m.num_inliers) + (" (mirrored)" if m.evidence.mirrored else ""))
            inl.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            self.table.setItem(row, 3, inl)
            decision = decisions.get(m.reference_id, "")
            self.table.setItem(row, 4, QTableWidgetItem({"copy": "✔ copy", "not a copy": "✘ not a copy"}
                                                         .get(decision, "")))
        self.table.blockSignals(False)
        if matches:
            self.table.setCurrentCell(min(max(keep, 0), len(matches) - 1), 0)
            self.selected.emit(self.table.currentRow())
        else:
            self.selected.emit(-1)

    def set_decision(self, row: int, decision: str) -> None:
        item = self.table.item(row, 4)
        if item is not None:
            item.setText({"copy": "✔ copy", "not a copy": "✘ not a copy"}.get(decision, decision))

    def current(self) -> int:
        return self.table.currentRow()

    def select(self, row: int) -> None:
        self.table.setCurrentCell(row, 0)
