"""The SQLite part of an index: references, their features and thumbnails, duplicates, failures,
tombstones and global vectors (see :mod:`.layout` for the whole directory).

Feature arrays are stored as raw little-endian bytes with their shapes implied (keypoints ``[N x 4]``
float32, descriptors ``[N x 128]`` uint8): nothing is ever unpickled.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CopyLensError, IndexFormatError
from ..features import LocalFeatures
from ..results import ReferenceInfo
from .layout import DATABASE

_NEAR_TABLE = "CREATE TABLE IF NOT EXISTS near_identical (row INTEGER NOT NULL, other INTEGER NOT NULL, PRIMARY KEY (row, other))"
_METADATA_TABLE = ("CREATE TABLE IF NOT EXISTS metadata (reference_id TEXT NOT NULL, key TEXT NOT NULL, "
                   "value TEXT NOT NULL, PRIMARY KEY (reference_id, key))")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS refs (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    reference_id TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    size_bytes INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    num_keypoints INTEGER NOT NULL,
    keypoints BLOB NOT NULL,
    descriptors BLOB NOT NULL,
    thumbnail BLOB NOT NULL,
    added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE TABLE IF NOT EXISTS duplicates (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    reference_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    path TEXT PRIMARY KEY,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS globals (
    name TEXT NOT NULL,
    row INTEGER NOT NULL,
    vector BLOB NOT NULL,
    dtype TEXT NOT NULL,
    quality REAL NOT NULL,
    low_quality INTEGER NOT NULL,
    PRIMARY KEY (name, row)
);
CREATE TABLE IF NOT EXISTS tombstones (
    row INTEGER PRIMARY KEY,
    num_keypoints INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS metadata (
    reference_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (reference_id, key)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class GlobalVector:
    """One reference's vector for one descriptor: ``vector`` ``[D]`` (float32 or packed uint8 bits)."""

    vector: np.ndarray
    quality: float
    low_quality: bool


@dataclass(frozen=True, slots=True)
class StoredReference:
    """What the extraction worker produces for one reference file."""

    reference_id: str
    path: str
    sha256: str
    size_bytes: int
    features: LocalFeatures
    thumbnail: bytes
    globals: dict[str, GlobalVector] = field(default_factory=dict)  # descriptor name -> vector


def _chunks(rows: list[int], size: int = 500) -> list[list[int]]:
    """Rows in groups small enough for one SQL ``IN (...)``."""
    rows = [int(r) for r in rows]
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _decode_features(width: int, height: int, n: int, keypoints: bytes, descriptors: bytes) -> LocalFeatures:
    """Stored blobs back to arrays: keypoints ``[n x 4]`` float32, descriptors ``[n x 128]`` uint8."""
    return LocalFeatures(np.frombuffer(keypoints, dtype="<f4").reshape(n, 4).astype(np.float32),
                         np.frombuffer(descriptors, dtype=np.uint8).reshape(n, 128), (int(width), int(height)))


class ReferenceStore:
    """The SQLite part of an index. One connection per thread; writes are transactions."""

    def __init__(self, index_dir: Path, create: bool = False, writer: bool | None = None,
                 first_row: int = 0) -> None:
        """``writer`` (default: ``create``): this store will write. Writers use a rollback journal, so
        every commit lands in the database file itself and the size and hash the manifest records stay
        true; readers never change the file (no journal-mode switch, no log to fold in).

        ``first_row`` (a new database only): its reference rows are numbered after this one, so the shards
        of a sharded index (:mod:`.shards`) hold disjoint rows and their FAISS ids never collide."""
        self.index_dir = Path(index_dir)
        self._writer = create if writer is None else writer
        self.path = self.index_dir / DATABASE
        if not create and not self.path.exists():
            raise IndexFormatError(f"{self.index_dir}: no {DATABASE}")
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []  # every thread's connection, so close() closes them all
        # content (sha256 -> reference id) stored in the other shards of a sharded index: a file with that
        # content is recorded as a duplicate here, as it would be in one index (see :mod:`.shards`)
        self.elsewhere: dict[str, str] = {}
        self._lock = threading.Lock()
        if create:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            with self._conn() as c:
                c.executescript(_SCHEMA)
                if first_row:
                    c.execute("INSERT INTO sqlite_sequence(name, seq) SELECT 'refs', ? WHERE NOT EXISTS "
                              "(SELECT 1 FROM sqlite_sequence WHERE name = 'refs')", (int(first_row),))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so close() can close it from another thread; each thread
            # still uses its own connection
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            if self._writer:
                conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, for the modules that own tables of their own (:mod:`.hashlists`)."""
        return self._conn()

    def close(self) -> None:
        """Close the connections of every thread that used this store (worker threads included)."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()  # a later use opens a fresh connection

    # --- writes -------------------------------------------------------------------------------------
    def insert_batch(self, refs: list[StoredReference], failures: list[tuple[str, str]]) -> tuple[list[int], int]:
        """Insert references in one transaction. Returns (new rows, duplicates recorded)."""
        rows, dups = [], 0
        conn = self._conn()
        with conn:
            for path, reason in failures:
                conn.execute("INSERT OR REPLACE INTO failures(path, reason) VALUES (?, ?)", (path, reason))
            for ref in refs:
                existing = conn.execute("SELECT reference_id FROM refs WHERE sha256 = ?", (ref.sha256,)).fetchone()
                if existing is None and ref.sha256 in self.elsewhere:
                    existing = (self.elsewhere[ref.sha256],)
                if existing is not None:
                    conn.execute("INSERT OR REPLACE INTO duplicates(path, sha256, reference_id) VALUES (?, ?, ?)",
                                 (ref.path, ref.sha256, existing[0]))
                    dups += 1
                    continue
                f = ref.features
                cur = conn.execute(
                    "INSERT INTO refs(reference_id, path, sha256, size_bytes, width, height, num_keypoints,"
                    " keypoints, descriptors, thumbnail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (ref.reference_id, ref.path, ref.sha256, ref.size_bytes, f.image_size[0], f.image_size[1],
                     len(f), f.keypoints.astype("<f4").tobytes(), f.descriptors.astype(np.uint8).tobytes(),
                     ref.thumbnail))
                row = int(cur.lastrowid)
                rows.append(row)
                for name, g in ref.globals.items():
                    v = np.ascontiguousarray(g.vector)
                    conn.execute("INSERT INTO globals(name, row, vector, dtype, quality, low_quality) VALUES "
                                 "(?, ?, ?, ?, ?, ?)", (name, row, v.tobytes(), v.dtype.str, g.quality,
                                                         int(g.low_quality)))
                conn.execute("DELETE FROM failures WHERE path = ?", (ref.path,))
        return rows, dups

    def delete(self, reference_ids: list[str]) -> list[int]:
        """Delete references (and their duplicate records); returns the rows removed."""
        conn = self._conn()
        rows = []
        with conn:
            for rid in reference_ids:
                r = conn.execute("SELECT row, num_keypoints FROM refs WHERE reference_id = ?", (rid,)).fetchone()
                if r is None:
                    continue
                rows.append(int(r[0]))
                conn.execute("DELETE FROM refs WHERE row = ?", (r[0],))
                conn.execute("DELETE FROM globals WHERE row = ?", (r[0],))
                conn.execute("INSERT OR IGNORE INTO tombstones(row, num_keypoints) VALUES (?, ?)", r)
                conn.execute("DELETE FROM duplicates WHERE reference_id = ?", (rid,))
        return rows

    def tombstones(self) -> frozenset[int]:
        """Rows deleted since the FAISS index was last rebuilt (their vectors may still be in it)."""
        return frozenset(int(r[0]) for r in self._conn().execute("SELECT row FROM tombstones"))

    def tombstoned_descriptors(self) -> int:
        return int(self._conn().execute("SELECT COALESCE(SUM(num_keypoints), 0) FROM tombstones").fetchone()[0])

    def clear_tombstones(self) -> None:
        with self._conn() as c:
            c.execute("DELETE FROM tombstones")

    def set_meta(self, key: str, value: str) -> None:
        with self._conn() as c:
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        r = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if r is None else r[0]

    # --- reads --------------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM refs").fetchone()[0])

    def count_descriptors(self) -> int:
        return int(self._conn().execute("SELECT COALESCE(SUM(num_keypoints), 0) FROM refs").fetchone()[0])

    def known_paths(self) -> set[str]:
        c = self._conn()
        paths = {r[0] for r in c.execute("SELECT path FROM refs")}
        paths |= {r[0] for r in c.execute("SELECT path FROM duplicates")}
        return paths

    def id_paths(self) -> dict[str, str]:
        """Reference id -> the path it was indexed from."""
        return dict(self._conn().execute("SELECT reference_id, path FROM refs").fetchall())

    def known_ids(self) -> set[str]:
        return {r[0] for r in self._conn().execute("SELECT reference_id FROM refs")}

    def failures(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._conn().execute("SELECT path, reason FROM failures ORDER BY path")]

    def num_duplicates(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM duplicates").fetchone()[0])

    def set_near_identical(self, pairs: list[tuple[int, int]]) -> None:
        """Replace the groups of near-identical references: (row, other row) pairs, both directions."""
        conn = self._conn()
        with conn:
            conn.execute(_NEAR_TABLE)
            conn.execute("DELETE FROM near_identical")
            conn.executemany("INSERT OR IGNORE INTO near_identical VALUES (?, ?)", pairs)

    def near_identical(self, reference_id: str) -> list[str]:
        """Ids of the references that are near-identical to this one (empty when the index does not know)."""
        try:
            rows = self._conn().execute(
                "SELECT o.reference_id FROM refs r JOIN near_identical n ON n.row = r.row "
                "JOIN refs o ON o.row = n.other WHERE r.reference_id = ? ORDER BY o.reference_id",
                (reference_id,)).fetchall()
        except sqlite3.OperationalError:  # an index from before the table
            return []
        return [r[0] for r in rows]

    def near_identical_rows(self, reference_id: str) -> list[int]:
        """Rows near-identical to this reference, in this database or another shard's (see :mod:`.shards`)."""
        try:
            rows = self._conn().execute(
                "SELECT n.other FROM refs r JOIN near_identical n ON n.row = r.row WHERE r.reference_id = ? "
                "ORDER BY n.other", (reference_id,)).fetchall()
        except sqlite3.OperationalError:  # an index from before the table
            return []
        return [int(r[0]) for r in rows]

    def set_metadata(self, rows: list[tuple[str, str, str]]) -> None:
        """(reference id, key, value) rows from a metadata sidecar (title, artist, licence, ...)."""
        conn = self._conn()
        with conn:
            conn.execute(_METADATA_TABLE)
            conn.executemany("INSERT OR REPLACE INTO metadata VALUES (?, ?, ?)", rows)

    def metadata(self, reference_id: str) -> dict[str, str]:
        """A reference's metadata (empty for an index built without a sidecar, or before they existed)."""
        try:
            rows = self._conn().execute("SELECT key, value FROM metadata WHERE reference_id = ? ORDER BY key",
                                        (reference_id,)).fetchall()
        except sqlite3.OperationalError:  # an index from before the metadata table
            return {}
        return dict(rows)

    def keypoint_counts(self) -> dict[int, int]:
        """Row -> number of keypoints stored, for every reference."""
        return dict(self._conn().execute("SELECT row, num_keypoints FROM refs").fetchall())

    def contents(self) -> dict[str, str]:
        """sha256 -> reference id of every stored reference."""
        return dict(self._conn().execute("SELECT sha256, reference_id FROM refs").fetchall())

    def rows_by_id(self) -> list[tuple[str, int]]:
        """(reference id, row) of every reference, by id: an order that does not depend on how the
        references were inserted or sharded."""
        return [(r[0], int(r[1])) for r in self._conn().execute("SELECT reference_id, row FROM refs ORDER BY "
                                                                 "reference_id")]

    def rows(self) -> list[int]:
        return [int(r[0]) for r in self._conn().execute("SELECT row FROM refs ORDER BY row")]

    def ids_of_rows(self, rows: list[int]) -> dict[int, str]:
        if not rows:
            return {}
        q = f"SELECT row, reference_id FROM refs WHERE row IN ({','.join('?' * len(rows))})"
        return {int(a): b for a, b in self._conn().execute(q, [int(r) for r in rows])}

    def features(self, row: int) -> LocalFeatures:
        r = self._conn().execute("SELECT width, height, num_keypoints, keypoints, descriptors FROM refs "
                                 "WHERE row = ?", (row,)).fetchone()
        if r is None:
            raise KeyError(row)
        return _decode_features(*r)

    def features_of(self, rows: list[int]) -> dict[int, LocalFeatures]:
        """Features of several rows in one read (rows no longer stored are absent)."""
        out: dict[int, LocalFeatures] = {}
        for part in _chunks(rows):
            q = (f"SELECT row, width, height, num_keypoints, keypoints, descriptors FROM refs WHERE row IN "
                 f"({','.join('?' * len(part))})")
            out.update((int(r[0]), _decode_features(*r[1:])) for r in self._conn().execute(q, part))
        return out

    def global_vectors_of(self, name: str, rows: list[int]) -> dict[int, GlobalVector]:
        """One descriptor's vectors of several rows in one read (rows without one are absent)."""
        out: dict[int, GlobalVector] = {}
        for part in _chunks(rows):
            q = (f"SELECT row, vector, dtype, quality, low_quality FROM globals WHERE name = ? AND row IN "
                 f"({','.join('?' * len(part))})")
            out.update((int(r[0]), GlobalVector(np.frombuffer(r[1], dtype=np.dtype(r[2])), float(r[3]), bool(r[4])))
                       for r in self._conn().execute(q, [name, *part]))
        return out

    def thumbnails_of(self, rows: list[int]) -> dict[int, tuple[bytes, int]]:
        """Stored thumbnails (JPEG bytes) and original widths of several rows in one read."""
        out: dict[int, tuple[bytes, int]] = {}
        for part in _chunks(rows):
            q = f"SELECT row, thumbnail, width FROM refs WHERE row IN ({','.join('?' * len(part))})"
            out.update((int(r[0]), (bytes(r[1]), int(r[2]))) for r in self._conn().execute(q, part))
        return out

    def iter_features(self, batch: int = 256) -> Iterator[tuple[int, LocalFeatures]]:
        """Every reference's features, in row order (a fresh cursor, safe for big indexes)."""
        conn = sqlite3.connect(self.path, timeout=30.0)
        try:
            cur = conn.execute("SELECT row, width, height, num_keypoints, keypoints, descriptors FROM refs "
                               "ORDER BY row")
            while True:
                chunk = cur.fetchmany(batch)
                if not chunk:
                    break
                for row, *fields in chunk:
                    yield int(row), _decode_features(*fields)
        finally:
            conn.close()

    def global_vector(self, name: str, row: int) -> GlobalVector | None:
        r = self._conn().execute("SELECT vector, dtype, quality, low_quality FROM globals WHERE name = ? AND row = ?",
                                 (name, row)).fetchone()
        if r is None:
            return None
        return GlobalVector(np.frombuffer(r[0], dtype=np.dtype(r[1])), float(r[2]), bool(r[3]))

    def global_vectors(self, name: str) -> tuple[list[int], list[np.ndarray]]:
        """Rows and vectors of every reliable (not low-quality) reference vector of one descriptor."""
        rows, vecs = [], []
        for row, blob, dtype in self._conn().execute(
                "SELECT row, vector, dtype FROM globals WHERE name = ? AND low_quality = 0 ORDER BY row", (name,)):
            rows.append(int(row))
            vecs.append(np.frombuffer(blob, dtype=np.dtype(dtype)))
        return rows, vecs

    def info(self, reference_id: str) -> ReferenceInfo:
        r = self._conn().execute("SELECT reference_id, path, sha256, width, height, num_keypoints FROM refs "
                                 "WHERE reference_id = ?", (reference_id,)).fetchone()
        if r is None:
            raise KeyError(reference_id)
        return ReferenceInfo(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]))

    def infos(self) -> list[ReferenceInfo]:
        return [ReferenceInfo(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5])) for r in self._conn().execute(
            "SELECT reference_id, path, sha256, width, height, num_keypoints FROM refs ORDER BY reference_id")]

    def thumbnail_of_row(self, row: int) -> tuple[bytes, int]:
        """The stored thumbnail (JPEG bytes) of a reference row and the reference's original width."""
        r = self._conn().execute("SELECT thumbnail, width FROM refs WHERE row = ?", (int(row),)).fetchone()
        if r is None:
            raise KeyError(row)
        return bytes(r[0]), int(r[1])

    def thumbnail(self, reference_id: str) -> bytes:
        r = self._conn().execute("SELECT thumbnail FROM refs WHERE reference_id = ?", (reference_id,)).fetchone()
        if r is None:
            raise KeyError(reference_id)
        return bytes(r[0])


def _damaged(store: ReferenceStore, exc: sqlite3.DatabaseError) -> Exception:
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return CopyLensError(f"{store.path}: the reference database stayed busy for 30 s (another program "
                             f"holds it); try again")
    return IndexFormatError(f"{store.path}: the reference database is damaged ({exc}); run 'copylens index "
                            f"verify {store.index_dir}', then rebuild the index (copylens index build REF_DIR "
                            "--out INDEX)")


def _guarded(fn):
    """A store method whose SQLite failures (a damaged page met at query time, say) become one clear
    CopyLens error naming the file; constraint violations are the caller's business and pass through."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(self, *args, **kwargs):
            try:
                return (yield from fn(self, *args, **kwargs))
            except sqlite3.IntegrityError:
                raise
            except sqlite3.DatabaseError as exc:
                raise _damaged(self, exc) from None
        return gen

    @functools.wraps(fn)
    def call(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise _damaged(self, exc) from None
    return call


for _name, _fn in list(vars(ReferenceStore).items()):
    if inspect.isfunction(_fn) and _name not in ("__init__", "_conn", "close"):
        setattr(ReferenceStore, _name, _guarded(_fn))
