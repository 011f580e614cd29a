"""Settings dialog: top-k, verdict thresholds, the queue's share of copies, device, worker count."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from copylens.core.prior import ShareEstimate

from .settings import DEVICES, AppSettings


class SettingsDialog(QDialog):
    """``estimate``: estimates the open queue's share of copies from its scores (ValueError with a reason
    when it cannot); without it the dialog offers no estimate. ``calibrated_share``: the open index's."""

    def __init__(self, current: AppSettings, parent: QWidget | None = None,
                 estimate: Callable[[], ShareEstimate] | None = None, calibrated_share: float | None = None) -> None:
        super().__init__(parent)
        self._estimate = estimate
        self.setWindowTitle("CopyLens settings")
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 100)
        self.top_k.setValue(current.top_k)
        self.copy_t = QSpinBox()  # percentages, as the results table shows them
        self.possible_t = QSpinBox()
        for box, value in ((self.copy_t, current.copy_threshold), (self.possible_t, current.possible_threshold)):
            box.setRange(0, 100)
            box.setSingleStep(5)
            box.setSuffix(" %")
            box.setValue(round(100 * value))
        self.reviewer = QLineEdit(current.reviewer)
        self.reviewer.setPlaceholderText(current.reviewer_name)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(current.device)
        self.copy_share = QSpinBox()
        self.copy_share.setRange(0, 99)
        self.copy_share.setSuffix(" %")
        self.copy_share.setSpecialValueText(  # shown at 0
            "as the index was calibrated" + (f" ({calibrated_share:.0%})" if calibrated_share is not None else ""))
        self.copy_share.setValue(round(100 * current.copy_share))
        self.copy_share.setToolTip(
            "How many of the queries you review are copies of indexed images. Confidence depends on it: "
            "in a queue where copies are rare, the same evidence is less often a copy. Scores move by "
            "Bayes' rule, rankings never change. 'copylens query --copy-share auto' estimates it from a batch.")
        self.workers = QSpinBox()
        self.workers.setRange(1, 64)
        self.workers.setValue(current.workers)
        form = QFormLayout(self)
        form.addRow("Results per query (top-k)", self.top_k)
        form.addRow("“Copy” at confidence ≥", self.copy_t)
        form.addRow("“Possible” at confidence ≥", self.possible_t)
        share_row = QHBoxLayout()
        share_row.addWidget(self.copy_share, 1)
        self.estimate_button = QPushButton("Estimate from this queue")
        self.estimate_button.setToolTip("From the finished queries' best scores, assuming that only the share "
                                        "of copies differs from the index's calibration (20 queries or more)")
        self.estimate_button.clicked.connect(self.estimate_share)
        self.estimate_button.setVisible(estimate is not None)
        share_row.addWidget(self.estimate_button)
        self.estimate_note = QLabel("")
        self.estimate_note.setWordWrap(True)
        form.addRow("Share of copies in your queue", share_row)
        form.addRow("", self.estimate_note)
        form.addRow("Device (takes effect on next open)", self.device)
        form.addRow("Worker threads (index builds)", self.workers)
        form.addRow("Reviewer name (reports)", self.reviewer)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def estimate_share(self) -> None:
        """Fill in the share estimated from the open queue, or say why there is none."""
        if self._estimate is None:
            return
        try:
            est = self._estimate()
        except ValueError as exc:
            self.estimate_note.setText(str(exc))
            return
        self.copy_share.setValue(max(1, round(100 * est.share)))
        self.estimate_note.setText(f"Estimated from the best scores of {est.queries} finished queries.")

    def value(self) -> AppSettings:
        copy_t = self.copy_t.value() / 100
        return AppSettings(top_k=self.top_k.value(), copy_threshold=copy_t,
                           possible_threshold=min(self.possible_t.value() / 100, copy_t),
                           device=self.device.currentText(), workers=self.workers.value(),
                           reviewer=self.reviewer.text().strip(), copy_share=self.copy_share.value() / 100)
