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

from .explain import explain, reference_tooltip
from .jobs import QueryOutcome
from .settings import AppSettings

# badge colours readable on light and dark palettes (white text on a saturated fill)
BADGE = {"copy": QColor(198, 40, 40), "possible": QColor(230, 140, 0), "no match": QColor(96, 125, 139),
         "hash list": QColor(106, 27, 154)}
COLUMNS = ("Reference", "Confidence", "Verdict", "Inliers", "Review")
NO_MATCH_ROW = -2  # the "no match" header row in ``ResultsPanel.rows``
HASH_ROW = -100  # hash-list match i is ``HASH_ROW - i`` in ``ResultsPanel.rows`` (see hash_index)


def hash_index(code: int) -> int:
    """The hash-list match a row code stands for, or -1 when it is not one."""
    return HASH_ROW - code if code <= HASH_ROW else -1
DECISION_TEXT = {"copy": "✔ copy", "not a copy": "✘ not a copy"}


class ResultsPanel(QWidget):
    """The ranked matches of one query. Candidates below the "possible" threshold are collapsed under one
    "no match" header row (click it, or press Space on it, to show them): a query without a match reads as
    such at a glance, and nothing below the threshold is opened in the inspector by default."""

    selected = Signal(int)  # index into the outcome's matches (-1: none, or the "no match" header)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("<b>Results</b>")
        self.title.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setIconSize(QSize(48, 48))
        self.table.verticalHeader().setDefaultSectionSize(54)
        self.table.verticalHeader().setVisible(False)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(COLUMNS)):
            hh.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.currentCellChanged.connect(lambda row, *_: self.selected.emit(self.match_at(row)))
        self.table.cellClicked.connect(lambda row, _c: self._toggle_if_header(row))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.table, 1)
        self.outcome: QueryOutcome | None = None
        self.settings = AppSettings()
        self.rows: list[int] = []  # table row -> match index (NO_MATCH_ROW for the header)
        self.expanded = False  # below-threshold candidates shown

    # ---- mapping between table rows and matches ---------------------------------------------------------
    def match_at(self, row: int) -> int:
        return self.rows[row] if 0 <= row < len(self.rows) else -1

    def row_of(self, match: int) -> int:
        return self.rows.index(match) if match in self.rows else -1

    @property
    def header_row(self) -> int:
        return self.rows.index(NO_MATCH_ROW) if NO_MATCH_ROW in self.rows else -1

    def num_above(self) -> int:
        """Matches at or above the "possible" threshold (they come first: matches are ranked by score)."""
        if self.outcome is None:
            return 0
        return sum(m.score >= self.settings.possible_threshold for m in self.outcome.result.matches)

    # ---- rendering --------------------------------------------------------------------------------------
    def show_outcome(self, outcome: QueryOutcome | None, settings: AppSettings,
                     decisions: dict[str, str] | None = None, message: str = "") -> None:
        """Render ``outcome`` (``None``: clear, showing ``message``); keeps the selected match if possible."""
        keep = self.match_at(self.table.currentRow()) if outcome is self.outcome else 0
        if outcome is not self.outcome:
            self.expanded = False
        self.outcome, self.settings = outcome, settings
        self.table.blockSignals(True)
        self.table.clearSpans()
        self.table.setRowCount(0)
        self.rows = []
        if outcome is None:
            self.title.setText(f"<b>Results</b> {message}")
            self.table.blockSignals(False)
            self.selected.emit(-1)
            return
        matches = outcome.result.matches
        hashes = outcome.result.hash_matches
        n_above = self.num_above()
        ms = sum(outcome.result.timings_ms.values()) if outcome.result.timings_ms else 0.0
        took = f" in {ms:.0f} ms" if ms else ""
        share = outcome.result.copy_share
        if settings.copy_share and share is not None:  # a share of copies set by the user, not the index's
            took += f" · scores for a queue with {share:.0%} copies"
        listed = (f"<b>{len(hashes)} hash-list match{'es' if len(hashes) != 1 else ''}</b> and "
                  if hashes else "")
        if n_above:
            # by verdict: a 100% copy is not announced as a "possible match"
            copies = sum(settings.verdict(m.score) == "copy" for m in matches[:n_above])
            possible = n_above - copies
            found = ([f"{copies} {'copy' if copies == 1 else 'copies'}"] if copies else []) + (
                [f"{possible} possible match{'es' if possible != 1 else ''}"] if possible else [])
            self.title.setText(f"<b>Results</b> for {outcome.request.label}: {listed}{' and '.join(found)} "
                               f"of {len(matches)} ranked{took}")
        else:
            best = f"; the best candidate scores {matches[0].score:.0%}" if matches else ""
            self.title.setText(f"<b>Results</b> for {outcome.request.label}: {listed}<b>no {'image ' if hashes else ''}match</b> "
                               f"(nothing reaches {settings.possible_threshold:.0%}{best}){took}")
        self.rows = [HASH_ROW - i for i in range(len(hashes))]
        self.rows += list(range(n_above))
        if n_above < len(matches):
            self.rows.append(NO_MATCH_ROW)
            self.rows.extend(range(n_above, len(matches)))
        self.table.setRowCount(len(self.rows))
        decisions = decisions or {}
        for row, mi in enumerate(self.rows):
            if mi == NO_MATCH_ROW:
                self._header(row, len(matches) - n_above)
                continue
            if mi <= HASH_ROW:
                self._hash_row(row, hashes[hash_index(mi)])
                continue
            self._match_row(row, matches[mi], decisions.get(matches[mi].reference_id, ""))
        self._apply_expanded()
        self.table.blockSignals(False)
        if 0 <= hash_index(keep) < len(hashes) or 0 <= keep < len(matches) and (keep < n_above or self.expanded):
            target = keep
        else:  # the best image match (it has evidence to show), else the first hash-list match
            target = 0 if n_above else HASH_ROW if hashes else -1
        if target != -1:
            self.table.setCurrentCell(self.row_of(target), 0)
            self.selected.emit(target)
        else:
            self.table.setCurrentCell(-1, -1)
            self.selected.emit(-1)

    def _header(self, row: int, n_below: int) -> None:
        item = QTableWidgetItem()
        item.setData(Qt.ItemDataRole.UserRole, "no-match-header")
        item.setForeground(QBrush(BADGE["no match"]))
        f = item.font()
        f.setBold(True)
        item.setFont(f)
        item.setToolTip("Candidates the engine checked that do not reach the \"possible\" threshold: click "
                        "to show or hide them. Their evidence is not drawn.")
        self.table.setItem(row, 0, item)
        self.table.setSpan(row, 0, 1, len(COLUMNS))
        self.table.setRowHeight(row, 28)
        self._n_below = n_below
        self._header_text(item)

    def _header_text(self, item: QTableWidgetItem) -> None:
        arrow = "▾" if self.expanded else "▸"
        item.setText(f"{arrow} No match: {self._n_below} candidate{'s' if self._n_below != 1 else ''} below "
                     f"{self.settings.possible_threshold:.0%}" + ("" if self.expanded else " (click to show)"))

    def _match_row(self, row: int, m, decision: str) -> None:
        thumb = self.outcome.reference_thumbs.get(m.reference_id)
        ref = QTableWidgetItem(m.reference_id)
        if thumb is not None:
            ref.setIcon(QIcon(QPixmap.fromImage(thumb)))
        ref.setToolTip(reference_tooltip(m.reference_id, self.outcome.references.get(m.reference_id, {})))
        details = self.outcome.references.get(m.reference_id, {})
        lines = [m.reference_id] + ([details["title"]] if details.get("title") else [])
        if details.get("near_identical"):
            lines.append("≈ near-identical references exist")
        ref.setText("\n".join(lines))
        self.table.setItem(row, 0, ref)
        why = "\n".join(explain(m, self.settings.copy_threshold, self.settings.possible_threshold))
        conf = QTableWidgetItem(f"{m.score:.0%}")
        conf.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        conf.setToolTip(why)
        self.table.setItem(row, 1, conf)
        verdict = self.settings.verdict(m.score)
        badge = QTableWidgetItem(verdict.upper())
        badge.setBackground(QBrush(BADGE[verdict]))
        badge.setForeground(QBrush(QColor("white")))
        badge.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        badge.setToolTip(why)
        self.table.setItem(row, 2, badge)
        inl = QTableWidgetItem(str(m.num_inliers) + (" (mirrored)" if m.evidence.mirrored else ""))
        inl.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        self.table.setItem(row, 3, inl)
        self.table.setItem(row, 4, QTableWidgetItem(DECISION_TEXT.get(decision, decision)))

    def _hash_row(self, row: int, h) -> None:
        ref = QTableWidgetItem("\n".join([f"{h.list_name}: {h.entry_id}"]
                                          + ([", ".join(h.tags)] if h.tags else [])))
        why = (f"Hash-list match: the query's PDQ hash ({h.transform}) is {h.distance} of 256 bits from entry "
               f"{h.entry_id!r} of the list {h.list_name!r}. The list holds no image, so there are no SIFT "
               "lines; the confidence is calibrated for PDQ distance alone.")
        ref.setToolTip(why)
        self.table.setItem(row, 0, ref)
        conf = QTableWidgetItem(f"{h.confidence:.0%}")
        conf.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        conf.setToolTip(why)
        self.table.setItem(row, 1, conf)
        badge = QTableWidgetItem("HASH LIST")
        badge.setBackground(QBrush(BADGE["hash list"]))
        badge.setForeground(QBrush(QColor("white")))
        badge.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        badge.setToolTip(why)
        self.table.setItem(row, 2, badge)
        dist = QTableWidgetItem(f"{h.distance} bits (PDQ)")
        dist.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
        dist.setToolTip("PDQ Hamming distance (0 = identical hash; Meta's match threshold is 31)")
        self.table.setItem(row, 3, dist)
        self.table.setItem(row, 4, QTableWidgetItem(""))

    def current_hash(self):
        """The selected hash-list match, or None."""
        i = hash_index(self.match_at(self.table.currentRow()))
        hashes = self.outcome.result.hash_matches if self.outcome is not None else []
        return hashes[i] if 0 <= i < len(hashes) else None

    def _apply_expanded(self) -> None:
        h = self.header_row
        if h < 0:
            return
        for row in range(h + 1, len(self.rows)):
            self.table.setRowHidden(row, not self.expanded)
        self._header_text(self.table.item(h, 0))

    def _toggle_if_header(self, row: int) -> None:
        if row >= 0 and row == self.header_row:
            self.set_expanded(not self.expanded)

    def set_expanded(self, on: bool) -> None:
        """Show or hide the below-threshold candidates."""
        self.expanded = on
        self._apply_expanded()

    def set_decision(self, match: int, decision: str) -> None:
        item = self.table.item(self.row_of(match), 4)
        if item is not None:
            item.setText(DECISION_TEXT.get(decision, decision))

    def current(self) -> int:
        """The selected match (-1: none, or the "no match" header)."""
        return self.match_at(self.table.currentRow())

    def select(self, match: int) -> None:
        row = self.row_of(match)
        if row >= 0 and self.table.isRowHidden(row):
            self.set_expanded(True)
        self.table.setCurrentCell(row, 0)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.key() == Qt.Key.Key_Space and self.table.currentRow() == self.header_row >= 0:
            self.set_expanded(not self.expanded)
            return
        super().keyPressEvent(event)
