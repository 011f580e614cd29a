"""``copylens index verify``: check everything an index's manifest recorded, bit for bit.

Opening an index checks what is cheap (the manifest's shape, file sizes, counts, the FAISS file's
vector count). Verification also recomputes every data file's sha256 (streamed, with progress, so a
GB-size index is checked at disk speed and can be cancelled), runs SQLite's own integrity check, and
loads every FAISS file. Each problem is one line naming the file and the remedy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IndexFormatError
from ..progress import Job, Progress
from .faissio import REBUILD, load_index
from .layout import DATABASE, SHARDS_FILE, data_files, read_manifest
from .lock import busy_message, current_writer
from .open import open_index
from .shards import is_sharded, read_shards_manifest

BLOCK = 1 << 20
REPORT_EVERY = 64  # blocks between progress reports


@dataclass(frozen=True)
class Check:
    subject: str  # a file name, or "manifest.json", "index"
    status: str  # "ok", "damaged" or "unchecked"
    message: str = ""


@dataclass
class VerifyReport:
    index_dir: Path
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != "damaged" for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == "damaged"]


def _hash(path: Path, done: int, total: int) -> Job[str]:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for i, block in enumerate(iter(lambda: fh.read(BLOCK), b"")):
            h.update(block)
            done += len(block)
            if i % REPORT_EVERY == 0:
                yield Progress("verify", done, total, path.name)
    return h.hexdigest()


def _sqlite_check(path: Path) -> str:
    """SQLite's own page-level integrity check, read-only ("ok" when sound)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = conn.execute("PRAGMA integrity_check(20)").fetchall()
        return "; ".join(str(r[0]) for r in rows)
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()


def verify_index(index_dir: str | Path) -> Job[VerifyReport]:
    index_dir = Path(index_dir)
    if is_sharded(index_dir):
        return (yield from _verify_sharded(index_dir))
    report = VerifyReport(index_dir)
    try:
        manifest = read_manifest(index_dir)
    except IndexFormatError as exc:
        report.checks.append(Check("manifest.json", "damaged", str(exc)))
        return report
    writer = current_writer(index_dir)
    if writer is not None:
        report.checks.append(Check("index", "unchecked", busy_message(index_dir, writer)))
        return report
    report.checks.append(Check("manifest.json", "ok"))
    files = manifest.get("files")
    recorded: dict = files if isinstance(files, dict) else {}
    if not recorded:
        report.checks.append(Check("manifest.json", "unchecked", "no checksums recorded (an index written by an "
                                   "older CopyLens): sizes and hashes cannot be checked; rerun the build command "
                                   "on it to record them"))
    total = sum(int(r.get("size", 0)) for r in recorded.values() if isinstance(r, dict))
    done = 0
    for name, rec in sorted(recorded.items()):
        path = index_dir / name
        if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str):
            report.checks.append(Check(name, "damaged", f"{index_dir / 'manifest.json'}: its record of {name} is "
                                       f"damaged; {REBUILD}"))
            continue
        if not path.is_file():
            report.checks.append(Check(name, "damaged", f"{path}: missing; restore it from a backup or {REBUILD}"))
            continue
        size = path.stat().st_size
        if size != rec.get("size"):
            report.checks.append(Check(name, "damaged", f"{path}: {size} bytes, the manifest recorded "
                                       f"{rec.get('size')}; restore it from a backup or {REBUILD}"))
            done += int(rec.get("size") or 0)
            continue
        digest = yield from _hash(path, done, total)
        done += size
        if digest != rec["sha256"]:
            report.checks.append(Check(name, "damaged", f"{path}: its content changed since the index was written "
                                       f"(sha256 differs: damaged disk, a bad copy or an edit); restore it from "
                                       f"a backup or {REBUILD}"))
        else:
            report.checks.append(Check(name, "ok", f"{size} bytes, sha256 matches"))
    for path in data_files(index_dir):
        if recorded and path.name not in recorded:
            report.checks.append(Check(path.name, "unchecked", "not recorded in the manifest (left by an "
                                       "interrupted writer?); it is not used"))
    yield Progress("verify", total, total, "database")
    db = index_dir / DATABASE
    if db.is_file():
        result = _sqlite_check(db)
        report.checks.append(Check(f"{DATABASE} (SQLite integrity)", "ok" if result == "ok" else "damaged",
                                   "" if result == "ok" else f"{db}: {result}; {REBUILD}"))
    for path in data_files(index_dir):
        if path.name.startswith("global_") and path.suffix == ".faiss":
            try:
                load_index(path, (object,), "global index")
            except IndexFormatError as exc:
                report.checks.append(Check(path.name + " (FAISS)", "damaged", str(exc)))
    try:
        opened = open_index(index_dir)
        opened.store.close()
        report.checks.append(Check("index", "ok", f"opens: {manifest['counts'].get('references')} references"))
    except IndexFormatError as exc:
        report.checks.append(Check("index", "damaged", str(exc)))
    return report


def _verify_sharded(index_dir: Path) -> Job[VerifyReport]:
    """A sharded index: shards.json, then every shard as an index of its own (subjects named by shard)."""
    report = VerifyReport(index_dir)
    try:
        top = read_shards_manifest(index_dir)
    except IndexFormatError as exc:
        report.checks.append(Check(SHARDS_FILE, "damaged", str(exc)))
        return report
    writer = current_writer(index_dir)
    if writer is not None:
        report.checks.append(Check("index", "unchecked", busy_message(index_dir, writer)))
        return report
    report.checks.append(Check(SHARDS_FILE, "ok"))
    for name in top["shards"]:
        part = yield from verify_index(index_dir / name)
        report.checks += [dataclasses.replace(c, subject=f"{name}/{c.subject}") for c in part.checks]
    return report
