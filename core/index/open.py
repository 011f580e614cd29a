"""Opening an index for reading: every consistency check a reader relies on, in one place.

The manifest is read and shape-checked (:func:`.layout.read_manifest`), then each data file is checked
against what the manifest recorded: the database's reference count, the local FAISS file's presence and
vector count (a file copied from another index has another count), and each data file's size against
the manifest's record. An index a writer holds (:mod:`.lock`) is refused until it finishes. Every failure is an
:class:`~copylens.core.errors.IndexFormatError` naming the file and the remedy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import IndexFormatError
from ..features import FeatureConfig
from .faissio import REBUILD
from .layout import LOCAL_FAISS, MANIFEST, check_file_sizes, read_manifest
from .local import LocalIndex
from .lock import IndexBusyError, busy_message, current_writer
from .store import ReferenceStore


@dataclass
class OpenedIndex:
    """The parts of an index a query needs (global branches are opened by the engine)."""

    index_dir: Path
    manifest: dict
    store: ReferenceStore
    local: LocalIndex


def open_index(index_dir: str | Path, allow_pending: bool = False) -> OpenedIndex:
    """``allow_pending``: open an index whose build is still calibrating (only self-calibration, inside the
    build that holds the writer lock, does). Anyone else is refused while a writer works."""
    index_dir = Path(index_dir)
    if not allow_pending and (writer := current_writer(index_dir)) is not None:
        raise IndexBusyError(busy_message(index_dir, writer))
    manifest = read_manifest(index_dir)
    try:
        FeatureConfig.from_dict(manifest["features"])
    except ValueError as exc:
        raise IndexFormatError(f"{index_dir / MANIFEST}: the manifest's features are damaged ({exc}); "
                               f"{REBUILD}") from None
    check_file_sizes(index_dir, manifest)
    if manifest.get("calibration_pending") and not allow_pending:
        raise IndexFormatError(f"{index_dir}: the build stopped while calibrating; run 'copylens index build "
                               f"REF_DIR --out {index_dir}' again to finish it")
    store = ReferenceStore(index_dir)
    try:
        count = store.count()  # a damaged database fails here, as an IndexFormatError (see .store)
        expected = manifest["counts"].get("references")
        if count != expected:
            raise IndexFormatError(f"{index_dir}: the database holds {count} references but the manifest says "
                                   f"{expected}; an update was interrupted: rerun the build or add command to "
                                   "repair it")
        faiss_path = index_dir / LOCAL_FAISS
        if not faiss_path.exists():
            raise IndexFormatError(f"{faiss_path}: missing; {REBUILD}")
        kind = manifest["local_index"].get("kind")
        local = LocalIndex.load(faiss_path, kind)
        recorded = manifest["local_index"].get("descriptors")
        if recorded is not None and local.ntotal != recorded:
            raise IndexFormatError(f"{faiss_path}: holds {local.ntotal} descriptors but the manifest recorded "
                                   f"{recorded}: the file belongs to another index or another build; {REBUILD}")
    except BaseException:
        store.close()
        raise
    return OpenedIndex(index_dir, manifest, store, local)
