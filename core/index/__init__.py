"""The index on disk, in one package: a format change is a change here.

- :mod:`.layout`: the directory layout, format constants and the manifest (read, checked, written);
- :mod:`.store`: the SQLite database of references, features, thumbnails and global vectors;
- :mod:`.faissio`: the one save/load path of every FAISS file; :mod:`.local` and :mod:`.globalindex` wrap
  FAISS (its objects never leave them);
- :mod:`.globalfiles`: a global descriptor's FAISS file, whitening and background;
- :mod:`.open`: opening an index for reading, with its consistency checks;
- :mod:`.build`: building, adding to and removing from an index (not imported here: it needs the engine,
  for self-calibration, and the engine needs this package).
"""

from .layout import (
           DATABASE,
           FORMAT_NAME,
           FORMAT_VERSION,
           LOCAL_FAISS,
           MANIFEST,
           is_partial_index,
           read_manifest,
)
from .open import OpenedIndex, open_index
from .store import GlobalVector, ReferenceStore, StoredReference

__all__ = ["DATABASE", "FORMAT_NAME", "FORMAT_VERSION", "LOCAL_FAISS", "MANIFEST", "GlobalVector", "OpenedIndex",
           "ReferenceStore", "StoredReference", "is_partial_index", "open_index", "read_manifest"]
