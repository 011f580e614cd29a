"""PDQ hash lists held by an index: imported, removed, exported, and searched like image references.

A hash list (ThreatExchange, GIFCT, NCMEC...) comes without images. Its entries live in two tables of
the index's database (``hash_lists``, ``hash_entries``) and in ``hashlists.faiss``, a FAISS binary index
of the same kind as the PDQ branch's, searched with the same 8 dihedral (and inverted) query hashes.
Every change is made under the writer lock and ends with a new manifest, like any other index write.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CopyLensError
from ..fileio import write_atomic
from ..hashlist_io import format_hash_list, parse_hash_list
from .globalindex import GlobalIndex
from .layout import HASHLISTS_FAISS, read_manifest, write_manifest
from .lock import writer_lock
from .open import open_index
from .store import ReferenceStore

PDQ_BITS = 256
PDQ_DESCRIPTOR = "pdq"  # the global descriptor whose stored vectors are the references' PDQ hashes
_SCHEMA = """
CREATE TABLE IF NOT EXISTS hash_lists (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    imported TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hash_entries (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    list TEXT NOT NULL REFERENCES hash_lists(name),
    entry_id TEXT NOT NULL,
    bits BLOB NOT NULL,
    quality INTEGER,
    tags TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS hash_entries_list ON hash_entries(list);
"""


@dataclass(frozen=True, slots=True)
class HashListInfo:
    name: str
    entries: int
    source: str
    format: str
    imported: str


@dataclass
class ImportSummary:
    name: str
    format: str
    added: int
    problems: list[tuple[int, str]] = field(default_factory=list)
    total_entries: int = 0  # in all the index's lists


@dataclass(frozen=True, slots=True)
class StoredEntry:
    list_name: str
    entry_id: str
    bits: bytes
    quality: int | None
    tags: tuple[str, ...]


def _has_tables(store: ReferenceStore) -> bool:
    return store.connection().execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='hash_entries'").fetchone() is not None


def hash_lists(store: ReferenceStore) -> list[HashListInfo]:
    if not _has_tables(store):
        return []
    rows = store.connection().execute(
        "SELECT l.name, COUNT(e.row), l.source, l.format, l.imported FROM hash_lists l "
        "LEFT JOIN hash_entries e ON e.list = l.name GROUP BY l.name ORDER BY l.name").fetchall()
    return [HashListInfo(str(a), int(b), str(c), str(d), str(e)) for a, b, c, d, e in rows]


def entries_of_rows(store: ReferenceStore, rows: list[int]) -> dict[int, StoredEntry]:
    if not rows or not _has_tables(store):
        return {}
    q = f"SELECT row, list, entry_id, bits, quality, tags FROM hash_entries WHERE row IN ({','.join('?' * len(rows))})"
    return {int(r): StoredEntry(str(lst), str(eid), bytes(bits), None if qu is None else int(qu),
                                tuple(json.loads(tags)))
            for r, lst, eid, bits, qu, tags in store.connection().execute(q, [int(r) for r in rows])}


def _rewrite_faiss(store: ReferenceStore, index_dir: Path) -> int:
    """Write ``hashlists.faiss`` from the database (or remove it when no entry is left); returns the count."""
    rows, vecs = [], []
    for row, bits in store.connection().execute("SELECT row, bits FROM hash_entries ORDER BY row"):
        rows.append(int(row))
        vecs.append(np.frombuffer(bits, np.uint8))
    path = index_dir / HASHLISTS_FAISS
    if not rows:
        path.unlink(missing_ok=True)
        return 0
    gi = GlobalIndex(PDQ_BITS, "hamming")
    gi.add(np.asarray(rows, np.int64), np.stack(vecs))
    gi.save(path)
    return len(rows)


def _commit(store: ReferenceStore, index_dir: Path) -> int:
    n = _rewrite_faiss(store, index_dir)
    manifest = read_manifest(index_dir)
    manifest["hash_lists"] = [{"name": h.name, "entries": h.entries, "format": h.format}
                              for h in hash_lists(store)]
    if n:
        manifest["hash_lists_file"] = HASHLISTS_FAISS
    else:
        manifest.pop("hash_lists_file", None)
    write_manifest(index_dir, manifest)  # records the files anew
    return n


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 80 or any(not ch.isprintable() for ch in name):
        raise CopyLensError(f"hash list name {name!r}: use 1-80 printable characters")
    return name


def add_hash_list(index_dir: str | Path, list_path: str | Path, name: str) -> ImportSummary:
    """Import the hash list at ``list_path`` under ``name``; bad lines are reported, not fatal."""
    index_dir, name = Path(index_dir), _check_name(name)
    read_manifest(index_dir)
    parsed = parse_hash_list(list_path)  # a bad file fails here, before the lock and any change
    if not parsed.entries:
        raise CopyLensError(f"{list_path}: no valid PDQ hash in the list ({len(parsed.problems)} bad "
                            "line(s)); nothing was imported")
    with writer_lock(index_dir, "copylens index add-hashes"):
        store = ReferenceStore(index_dir, writer=True)
        try:
            if any(h.name == name for h in hash_lists(store)):
                raise CopyLensError(f"{index_dir}: a hash list named {name!r} is already held; remove it first "
                                    f"(copylens index remove-list {index_dir} {name!r}) or choose another name")
            # every refusal comes before the first write: the database must stay as the manifest records it
            conn = store.connection()
            with conn:
                conn.executescript(_SCHEMA)
            with conn:
                conn.execute("INSERT INTO hash_lists(name, source, format, imported) VALUES (?, ?, ?, ?)",
                             (name, str(Path(list_path).resolve()), parsed.format,
                              time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
                conn.executemany("INSERT INTO hash_entries(list, entry_id, bits, quality, tags) VALUES (?, ?, ?, ?, ?)",
                                 [(name, e.entry_id, e.bits, e.quality, json.dumps(list(e.tags)))
                                  for e in parsed.entries])
            total = _commit(store, index_dir)
        finally:
            store.close()
    return ImportSummary(name, parsed.format, len(parsed.entries), parsed.problems, total)


def remove_hash_list(index_dir: str | Path, name: str) -> int:
    """Remove the list ``name``; returns how many entries went with it."""
    index_dir = Path(index_dir)
    read_manifest(index_dir)
    with writer_lock(index_dir, "copylens index remove-list"):
        store = ReferenceStore(index_dir, writer=True)
        try:
            held = {h.name: h.entries for h in hash_lists(store)}
            if name not in held:
                shown = ", ".join(repr(n) for n in held) or "none"
                raise CopyLensError(f"{index_dir}: no hash list named {name!r} (held: {shown})")
            conn = store.connection()
            with conn:
                conn.execute("DELETE FROM hash_entries WHERE list = ?", (name,))
                conn.execute("DELETE FROM hash_lists WHERE name = ?", (name,))
            _commit(store, index_dir)
        finally:
            store.close()
    return held[name]


def reference_hashes(store: ReferenceStore) -> list[tuple[bytes, str, int | None]]:
    """(PDQ bits, reference id, quality 0-100) of every reference, from the PDQ branch's stored vectors."""
    rows = store.connection().execute(
        "SELECT g.vector, r.reference_id, g.quality FROM globals g JOIN refs r ON r.row = g.row "
        "WHERE g.name = ? ORDER BY r.reference_id", (PDQ_DESCRIPTOR,)).fetchall()
    return [(bytes(v), str(rid), int(round(float(q) * 100))) for v, rid, q in rows]


def export_hashes(index_dir: str | Path, out: str | Path, fmt: str = "csv") -> int:
    """Write the references' PDQ hashes to ``out`` as a hash list (see :func:`format_hash_list`)."""
    opened = open_index(index_dir)
    try:
        rows = reference_hashes(opened.store)
    finally:
        opened.store.close()
    if not rows:
        raise CopyLensError(f"{index_dir}: the index holds no PDQ hashes (built with --global none?); build it "
                            "with the default --global pdq to export them")
    write_atomic(out, format_hash_list(rows, fmt).encode("utf-8"))
    return len(rows)

