"""The index directory on disk: its one description. A format change is a change here.

Layout of an index directory::

    manifest.json       format name and version, feature settings, counts, calibration (written last, atomically)
    references.sqlite   references (id, path, sha256, size, thumbnail, keypoints, descriptors), duplicates,
                        failures, tombstones (rows removed since the FAISS index was last rebuilt; row
                        numbers are never reused): every write is a transaction, so a killed build loses
                        nothing committed (:mod:`.store`)
    local.faiss         FAISS index over the references' RootSIFT descriptors (:mod:`.local`)
    global_<n>.faiss    FAISS index of global descriptor n; the database keeps the raw vectors (:mod:`.globalindex`)
    global_<n>.whitening.npz, global_<n>.background.npz
                        a neural descriptor's PCA whitening and score-normalisation background: plain arrays,
                        their sha256 in the manifest (:mod:`.globalfiles`)

    hashlists.faiss     FAISS binary index of the imported PDQ hash lists' entries, when any (:mod:`.hashlists`)
    index.lock          present while a writer works: who, since when (:mod:`.lock`)

Every FAISS file goes through :mod:`.faissio`; the manifest is written by :func:`write_manifest` and read
by :func:`read_manifest`, which checks its shape before anyone trusts it. The manifest's ``files`` records
each data file's size and sha256 as the writer left it: opening compares sizes (one ``stat`` each),
``copylens index verify`` recomputes the hashes (:mod:`.verify`).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from ..errors import IndexFormatError
from ..fileio import file_sha256, write_json_atomic

FORMAT_NAME = "copylens-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "references.sqlite"
LOCAL_FAISS = "local.faiss"
REQUIRED = ("features", "local_index", "counts")  # manifest keys a reader cannot do without
HASHLISTS_FAISS = "hashlists.faiss"
SHARDS_FILE = "shards.json"  # the top of a sharded index (:mod:`.shards`), whose shards are index directories
_DATA_FILE = re.compile(r"^(references\.sqlite|local\.faiss|hashlists\.faiss|"
                        r"global_\d+\.(faiss|whitening\.npz|background\.npz))$")


def global_file_name(position: int) -> str:
    return f"global_{position}.faiss"


def whitening_file_name(position: int) -> str:
    return f"global_{position}.whitening.npz"


def background_file_name(position: int) -> str:
    return f"global_{position}.background.npz"


def is_partial_index(index_dir: str | Path) -> bool:
    """Whether ``index_dir`` holds (part of) an index a build would resume: one stat, cheap enough for a
    dialog to call on every keystroke."""
    return (Path(index_dir) / DATABASE).is_file()


def data_files(index_dir: Path) -> list[Path]:
    """The index's data files (what the manifest's ``files`` records), by name."""
    return sorted(p for p in Path(index_dir).iterdir() if _DATA_FILE.match(p.name) and p.is_file())


def _settle_database(index_dir: Path) -> None:
    """Fold a write-ahead log (indexes made before the database used a rollback journal) into the
    database file, so that the size and hash recorded are what readers will find."""
    if not (Path(index_dir) / (DATABASE + "-wal")).exists():
        return
    conn = sqlite3.connect(Path(index_dir) / DATABASE, timeout=30.0)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError:
        pass  # a reader holds it open: sizes may then differ until it closes; verify says so
    finally:
        conn.close()


def record_files(index_dir: Path) -> dict[str, dict]:
    """``{name: {"size": bytes, "sha256": hex}}`` of every data file (streamed: GB files hash at disk speed)."""
    _settle_database(index_dir)
    return {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in data_files(index_dir)}


def check_file_sizes(index_dir: Path, manifest: dict) -> None:
    """Each recorded data file exists with the recorded size (a ``stat`` each; hashes are for verify)."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        return  # an index written before files were recorded
    for name, rec in files.items():
        path = Path(index_dir) / str(name)
        size = rec.get("size") if isinstance(rec, dict) else None
        if not _DATA_FILE.match(str(name)) or not isinstance(size, int):
            raise IndexFormatError(f"{Path(index_dir) / MANIFEST}: its file record for {name!r} is damaged; "
                                   "rebuild the index (copylens index build REF_DIR --out INDEX)")
        try:
            actual = path.stat().st_size
        except OSError:
            raise IndexFormatError(f"{path}: missing (the manifest records it); restore it from a backup or "
                                   "rebuild the index (copylens index build REF_DIR --out INDEX)") from None
        if actual != size:
            raise IndexFormatError(f"{path}: {actual} bytes but the manifest recorded {size}: the file was changed "
                                   "or damaged after the index was written; restore it from a backup or rebuild "
                                   "the index (copylens index build REF_DIR --out INDEX)")


def write_manifest(index_dir: Path, manifest: dict) -> None:
    """The manifest is the commit record of an index: written last, atomically, with the size and sha256
    of every data file as the writer left them."""
    write_json_atomic(Path(index_dir) / MANIFEST, {**manifest, "files": record_files(Path(index_dir))})


def read_format_file(path: Path, format_name: str, version: int, what: str, remedy: str) -> dict:
    """A JSON record that names its format and version (a manifest, ``shards.json``), read and checked."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path}: unreadable manifest ({exc}); {remedy}") from None
    if not isinstance(record, dict) or record.get("format") != format_name:
        raise IndexFormatError(f"{path}: not a CopyLens {what} manifest")
    if record.get("format_version") != version:
        raise IndexFormatError(f"{path}: {what} format version {record.get('format_version')} but this CopyLens "
                               f"reads version {version}; {remedy}")
    return record


def read_manifest(index_dir: Path) -> dict:
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise IndexFormatError(f"{index_dir}: no such index directory")
    path = index_dir / MANIFEST
    if not path.exists():
        if (index_dir / SHARDS_FILE).exists():
            raise IndexFormatError(f"{index_dir}: a sharded index; hash lists work on unsharded indexes only "
                                   "(queries, info, verify, add, remove and the window handle sharded ones)")
        if (index_dir / "shard-000").is_dir():
            raise IndexFormatError(f"{index_dir}: the sharded index build did not finish; run 'copylens index "
                                   f"build REF_DIR --out {index_dir} --shards K' again (the same K) to resume it")
        if (index_dir / DATABASE).exists():
            raise IndexFormatError(f"{index_dir}: the index build did not finish; run "
                                   f"'copylens index build REF_DIR --out {index_dir}' again to resume it")
        raise IndexFormatError(f"{index_dir}: not a CopyLens index (no {MANIFEST})")
    manifest = read_format_file(path, FORMAT_NAME, FORMAT_VERSION, "index", "rebuild the index")
    missing = [k for k in REQUIRED if not isinstance(manifest.get(k), dict)]
    if missing:
        raise IndexFormatError(f"{path}: the manifest lacks {', '.join(missing)}; it was damaged: rebuild the "
                               "index (copylens index build REF_DIR --out INDEX)")
    bad = _badly_typed(manifest)
    if bad:
        raise IndexFormatError(f"{path}: the manifest's {bad} is damaged; rebuild the index "
                               "(copylens index build REF_DIR --out INDEX)")
    return manifest


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _badly_typed(m: dict) -> str | None:
    """The first manifest entry a reader uses whose type is wrong (features are checked by FeatureConfig)."""
    checks = {
        "name": lambda v: isinstance(v, str),
        "created": lambda v: isinstance(v, str),
        "updated": lambda v: isinstance(v, str),
        "reference_root": lambda v: v is None or isinstance(v, str),
        "descriptors": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "global": lambda v: isinstance(v, list) and all(isinstance(x, dict) and isinstance(x.get("name"), str)
                                                        for x in v),
        "calibration": lambda v: v is None or isinstance(v, dict),
        "calibration_pending": lambda v: isinstance(v, bool),
        "files": lambda v: isinstance(v, dict),
        "hash_lists": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
        "hash_lists_file": lambda v: v == HASHLISTS_FAISS,
    }
    for key, ok in checks.items():
        if key in m and not ok(m[key]):
            return key
    if not _count(m["counts"].get("references")):
        return "counts"
    local = m["local_index"]
    if not isinstance(local.get("kind"), str) or not (local.get("descriptors") is None
                                                      or _count(local.get("descriptors"))):
        return "local_index"
    return None
