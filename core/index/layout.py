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

Every FAISS file goes through :mod:`.faissio`; the manifest is written by :func:`write_manifest` and read
by :func:`read_manifest`, which checks its shape before anyone trusts it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import IndexFormatError
from ..fileio import write_json_atomic

FORMAT_NAME = "copylens-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "references.sqlite"
LOCAL_FAISS = "local.faiss"
REQUIRED = ("features", "local_index", "counts")  # manifest keys a reader cannot do without


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


def write_manifest(index_dir: Path, manifest: dict) -> None:
    """The manifest is the commit record of an index: written last, atomically."""
    write_json_atomic(Path(index_dir) / MANIFEST, manifest)


def read_manifest(index_dir: Path) -> dict:
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise IndexFormatError(f"{index_dir}: no such index directory")
    path = index_dir / MANIFEST
    if not path.exists():
        if (index_dir / DATABASE).exists():
            raise IndexFormatError(f"{index_dir}: the index build did not finish; run "
                                   f"'copylens index build REF_DIR --out {index_dir}' again to resume it")
        raise IndexFormatError(f"{index_dir}: not a CopyLens index (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{path}: not a CopyLens index manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(f"{path}: index format version {manifest.get('format_version')} "
                               f"but this CopyLens reads version {FORMAT_VERSION}; rebuild the index")
    missing = [k for k in REQUIRED if not isinstance(manifest.get(k), dict)]
    if missing:
        raise IndexFormatError(f"{path}: the manifest lacks {', '.join(missing)}; it was damaged: rebuild the "
                               "index (copylens index build REF_DIR --out INDEX)")
    return manifest
