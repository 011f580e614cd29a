"""The window's session on disk: the queue with its results, so closing (or a crash) loses nothing.

``<data dir>/session.sqlite`` holds one row per queued query: the request (path or label), its state, and
for a finished query its result: ranks, scores, signals and regions as JSON, the evidence arrays as one
``.npz`` blob read with ``allow_pickle=False``. A row is written when its query finishes (one small
transaction on the GUI thread); the whole table is rewritten only when the queue is cleared. Pasted
images are saved as files first (see ``MainWindow._queue_paste``), so every row can run again.
"""

from __future__ import annotations

import io
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from copylens.core.results import Evidence, Match, QueryResult, Region

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    seq INTEGER PRIMARY KEY,       -- queue row
    query_id TEXT NOT NULL,
    label TEXT NOT NULL,
    path TEXT,                     -- NULL only for a query given as pixels (not restorable)
    state TEXT NOT NULL,           -- waiting / done / error / cancelled (running is saved as waiting)
    error TEXT NOT NULL DEFAULT '',
    result TEXT,                   -- JSON of the QueryResult without evidence arrays
    evidence BLOB                  -- npz of the evidence arrays, keys "<match>_<name>"
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

ARRAYS = ("query_points", "reference_points", "inlier_scores", "homography", "outline")


@dataclass(frozen=True)
class SavedQuery:
    seq: int
    query_id: str
    label: str
    path: str | None
    state: str
    error: str
    result: QueryResult | None


def _region(r: Region | None) -> list | None:
    if r is None:
        return None
    return [list(r.box), r.score, r.kind] + ([list(r.quad)] if r.quad is not None else [])


def _unregion(v) -> Region | None:
    if v is None:
        return None
    quad = tuple(float(c) for c in v[3]) if len(v) > 3 and v[3] is not None else None  # sessions before 2026-12-05: none
    return Region(tuple(v[0]), float(v[1]), str(v[2]), quad)


def encode_result(result: QueryResult) -> tuple[str, bytes]:
    arrays = {}
    matches = []
    for i, m in enumerate(result.matches):
        ev = m.evidence
        for name in ARRAYS:
            value = getattr(ev, name)
            if value is not None:
                arrays[f"{i}_{name}"] = np.asarray(value)
        matches.append({"reference_id": m.reference_id, "score": m.score, "signals": m.signals,
                        "mirrored": ev.mirrored, "variant": ev.variant, "region": _region(ev.region),
                        "sibling": m.sibling})
    meta = {"query_id": result.query_id, "source": result.source, "image_size": list(result.image_size),
            "regions": [_region(r) for r in result.regions], "timings_ms": result.timings_ms,
            "query_sha256": result.query_sha256, "matches": matches, "copy_share": result.copy_share}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return json.dumps(meta), buf.getvalue()


def decode_result(meta_json: str, blob: bytes) -> QueryResult:
    meta = json.loads(meta_json)
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    matches = []
    for i, m in enumerate(meta["matches"]):
        z2 = np.zeros((0, 2), np.float32)
        ev = Evidence(arrays.get(f"{i}_query_points", z2), arrays.get(f"{i}_reference_points", z2),
                      arrays.get(f"{i}_inlier_scores", np.zeros(0, np.float32)), arrays.get(f"{i}_homography"),
                      arrays.get(f"{i}_outline"), bool(m["mirrored"]), _unregion(m["region"]), str(m["variant"]))
        matches.append(Match(m["reference_id"], float(m["score"]), ev, {k: float(v) for k, v in m["signals"].items()},
                             str(m.get("sibling", ""))))  # sessions saved before 2026-12-04 have none
    return QueryResult(meta["query_id"], meta["source"], tuple(meta["image_size"]), matches,
                       [_unregion(r) for r in meta["regions"]], dict(meta["timings_ms"]), meta["query_sha256"],
                       copy_share=_share(meta.get("copy_share")))  # sessions saved before 2026-12-05 have none


def _share(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and 0 < v < 1 else None


class SessionStore:
    """The queue of one window, kept in SQLite (GUI thread only)."""

    FILENAME = "session.sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path))
        self._db.execute("PRAGMA journal_mode=WAL")  # one cheap commit per settled query
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    @classmethod
    def in_dir(cls, data_dir: str | Path) -> SessionStore:
        return cls(Path(data_dir) / cls.FILENAME)

    def save(self, seq: int, item) -> None:
        """Record queue row ``seq`` as it is now (a running query is saved as waiting)."""
        req = item.request
        result = item.outcome.result if item.outcome is not None else None
        meta, blob = encode_result(result) if result is not None else (None, None)
        state = "waiting" if item.state == "running" else item.state
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO queries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (seq, req.query_id, req.label, req.path, state, item.error, meta, blob))

    def set_meta(self, key: str, value: str) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def load(self) -> list[SavedQuery]:
        """Every restorable row in queue order (a damaged row is skipped, never fatal)."""
        out = []
        for seq, qid, label, path, state, error, meta, blob in self._db.execute(
                "SELECT seq, query_id, label, path, state, error, result, evidence FROM queries ORDER BY seq"):
            if path is None:
                continue
            result = None
            if state == "done":
                try:
                    result = decode_result(meta, blob)
                except (ValueError, KeyError, TypeError, OSError):
                    state, error = "waiting", ""  # run it again
            out.append(SavedQuery(seq, qid, label, path, state, error, result))
        return out

    def clear(self) -> None:
        with self._db:
            self._db.execute("DELETE FROM queries")

    def close(self) -> None:
        self._db.close()
