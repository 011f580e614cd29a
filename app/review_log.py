"""The local review log: one SQLite row per decision a reviewer makes (no Qt here)."""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from dataclasses import asdict, astuple, dataclass
from pathlib import Path

PAIR_DECISIONS = ("copy", "not a copy")  # about one (query, reference) pair
QUERY_DECISIONS = ("no copy", "unsure")  # about a whole query (stored with reference_id "")
UNDONE = "undone"  # appended by undo when the pair had no earlier decision
DECISIONS = (*PAIR_DECISIONS, *QUERY_DECISIONS, UNDONE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,            -- ISO 8601, local time with offset
    query_path TEXT NOT NULL,      -- file path, or a label such as <clipboard 1>
    query_sha256 TEXT NOT NULL,
    reference_id TEXT NOT NULL,
    score REAL NOT NULL,           -- calibrated score shown to the reviewer
    decision TEXT NOT NULL,        -- "copy", "not a copy" (a pair); "no copy", "unsure" (a query,
                                   -- reference_id ""); "undone" (an undo retracted the decision)
    copy_share REAL                -- the share of copies the score was for (NULL: unknown, or a log
                                   -- written before 2026-12-05)
)
"""
_COLUMNS = "time, query_path, query_sha256, reference_id, score, decision, copy_share"


@dataclass(frozen=True, slots=True)
class Decision:
    time: str
    query_path: str
    query_sha256: str
    reference_id: str
    score: float
    decision: str
    copy_share: float | None = None  # the share of copies the score was for (core/prior.py)


class ReviewLog:
    """Append-only decisions in ``<data dir>/review_log.sqlite``; the latest decision for a pair wins.
    Undo appends too (the earlier decision again, or "undone"), so the log stays a full audit trail."""

    FILENAME = "review_log.sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path))
        self._db.execute(_SCHEMA)
        if "copy_share" not in {r[1] for r in self._db.execute("PRAGMA table_info(decisions)")}:
            self._db.execute("ALTER TABLE decisions ADD COLUMN copy_share REAL")  # a log from before the column
        self._db.commit()

    @classmethod
    def in_dir(cls, data_dir: str | Path) -> ReviewLog:
        return cls(Path(data_dir) / cls.FILENAME)

    def record(self, query_path: str, query_sha256: str, reference_id: str, score: float,
               decision: str, copy_share: float | None = None) -> Decision:
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}; valid: {', '.join(DECISIONS)}")
        d = Decision(time.strftime("%Y-%m-%dT%H:%M:%S%z"), query_path, query_sha256, reference_id,
                     float(score), decision, None if copy_share is None else float(copy_share))
        self._db.execute(f"INSERT INTO decisions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", astuple(d))
        self._db.commit()
        return d

    def all(self) -> list[Decision]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM decisions ORDER BY id").fetchall()
        return [Decision(*r) for r in rows]

    def latest(self, query_sha256: str, reference_id: str) -> str | None:
        row = self._db.execute("SELECT decision FROM decisions WHERE query_sha256 = ? AND reference_id = ? "
                               "ORDER BY id DESC LIMIT 1", (query_sha256, reference_id)).fetchone()
        return row[0] if row and row[0] != UNDONE else None

    def latest_all(self) -> dict[tuple[str, str], str]:
        """The latest decision of every (query sha256, reference id) pair, in one query: a snapshot that a
        worker thread can read (the SQLite connection belongs to the GUI thread)."""
        rows = self._db.execute("SELECT query_sha256, reference_id, decision FROM decisions d WHERE id = "
                                "(SELECT MAX(id) FROM decisions e WHERE e.query_sha256 = d.query_sha256 "
                                "AND e.reference_id = d.reference_id)").fetchall()
        return {(sha, ref): dec for sha, ref, dec in rows if dec != UNDONE}

    def close(self) -> None:
        self._db.close()


def write_rows(path: str | Path, rows: list[dict]) -> Path:
    """Write dict rows as CSV or JSON, chosen by the file suffix (``.csv`` / ``.json``)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    elif path.suffix.lower() == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as fp:
            names = list(rows[0]) if rows else []
            writer = csv.DictWriter(fp, fieldnames=names)
            writer.writeheader()
            writer.writerows(rows)
    else:
        raise ValueError(f"unknown export format {path.suffix!r}; valid: .csv, .json")
    return path


def export_log(log: ReviewLog, path: str | Path) -> Path:
    return write_rows(path, [asdict(d) for d in log.all()])
