"""The one notification area: every error (corrupt file, missing index, failed build) lands here as
"<file or subject>: <reason>", newest first; never a traceback dialog."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

LEVEL_COLOUR = {"error": QColor(200, 40, 40), "warning": QColor(200, 120, 0)}
MAX_MESSAGES = 200  # older messages are dropped


class NotificationArea(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("<b>Notifications</b>")
        self.list = QListWidget()
        self.list.setWordWrap(True)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        clear = QPushButton("Clear")
        clear.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        clear.clicked.connect(self.clear)
        head = QHBoxLayout()
        head.addWidget(self.title)
        head.addStretch(1)
        head.addWidget(clear)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(head)
        lay.addWidget(self.list, 1)
        self.messages: deque[tuple[str, str, str]] = deque(maxlen=MAX_MESSAGES)  # (level, subject, reason)
        self.errors = 0  # errors since the last clear (the list keeps only the newest MAX_MESSAGES)

    def notify(self, subject: str, reason: str, level: str = "error") -> None:
        name = Path(subject).name if ("/" in subject or "\\" in subject) else subject
        self.messages.append((level, name, reason))
        item = QListWidgetItem(f"{time.strftime('%H:%M:%S')}  {name}: {reason}")
        item.setToolTip(f"{subject}: {reason}")
        if level in LEVEL_COLOUR:
            item.setForeground(LEVEL_COLOUR[level])
        self.list.insertItem(0, item)
        while self.list.count() > MAX_MESSAGES:
            self.list.takeItem(self.list.count() - 1)
        self.errors += level == "error"
        errors = self.errors
        self.title.setText(f"<b>Notifications</b> ({errors} error{'s' if errors != 1 else ''})" if errors
                           else "<b>Notifications</b>")

    def info(self, subject: str, text: str) -> None:
        self.notify(subject, text, level="info")

    def clear(self) -> None:
        self.messages.clear()
        self.errors = 0
        self.list.clear()
        self.title.setText("<b>Notifications</b>")
