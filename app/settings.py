"""User settings (QSettings) and the verdict rule.

Tests and embedders pass their own ``QSettings`` (an ini file in a temporary folder); the app otherwise uses
the platform's native store under organisation/application "CopyLens".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

MAX_RECENT = 8  # recent indexes remembered in the File menu


@dataclass(frozen=True, slots=True)
class AppSettings:
    top_k: int = 10  # ranked references shown per query
    copy_threshold: float = 0.8  # calibrated score at or above which the verdict is "copy"
    possible_threshold: float = 0.3  # ... at or above which it is "possible" (below: "no match")
    device: str = "auto"  # "auto", "cpu" or "cuda": where the engine runs its networks
    workers: int = 2  # threads for index builds; queries run one at a time beside inspector work
    reviewer: str = ""  # name written into reports and exports ("" = the operating-system user)
    # the share of copies among the queries reviewed (core/prior.py): scores are moved to it by Bayes' rule;
    # 0 = the share the open index's confidence was calibrated for
    copy_share: float = 0.0

    @property
    def reviewer_name(self) -> str:
        import getpass

        try:
            return self.reviewer or getpass.getuser()
        except (KeyError, OSError):
            return "unknown"

    def verdict(self, score: float) -> str:
        """"copy", "possible" or "no match" for a calibrated score in [0, 1]."""
        if score >= self.copy_threshold:
            return "copy"
        if score >= self.possible_threshold:
            return "possible"
        return "no match"


DEVICES = ("auto", "cpu", "cuda")
VERDICTS = ("copy", "possible", "no match")


def load_settings(store: QSettings) -> AppSettings:
    defaults = AppSettings()
    values = {}
    for f in fields(AppSettings):
        default = getattr(defaults, f.name)
        raw = store.value(f"search/{f.name}", default)
        try:
            values[f.name] = type(default)(raw)
        except (TypeError, ValueError):
            values[f.name] = default
    s = AppSettings(**values)
    if s.device not in DEVICES:
        s = AppSettings(**{**asdict(s), "device": "auto"})
    if not 0.01 <= s.copy_share <= 0.99:
        s = AppSettings(**{**asdict(s), "copy_share": 0.0})
    return s


def save_settings(store: QSettings, s: AppSettings) -> None:
    for name, value in asdict(s).items():
        store.setValue(f"search/{name}", value)
    store.sync()


def recent_indexes(store: QSettings) -> list[str]:
    raw = store.value("recent/indexes", [])
    if isinstance(raw, str):  # QSettings returns a lone string for a one-item list in ini files
        raw = [raw]
    return [str(p) for p in (raw or [])]


def remember_index(store: QSettings, path: str) -> list[str]:
    items = [path] + [p for p in recent_indexes(store) if p != path]
    items = items[:MAX_RECENT]
    store.setValue("recent/indexes", items)
    store.sync()
    return items


def default_store() -> QSettings:
    return QSettings("CopyLens", "CopyLens")


def default_data_dir() -> Path:
    """The per-user app data folder (review log, demo index)."""
    loc = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    path = Path(loc) if loc else Path.home() / ".local" / "share" / "CopyLens"
    path.mkdir(parents=True, exist_ok=True)
    return path
