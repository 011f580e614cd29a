"""Global (whole-image) descriptors: PDQ hashes and neural embeddings, and their FAISS index.

``create_descriptor(name)`` picks a backend by name (see :mod:`.registry`); :class:`copylens.core.index.globalindex.GlobalIndex`
stores and searches the vectors. Importing this package does not import torch or faiss.
"""

from .base import DIHEDRAL, DescriptorBatch, GlobalDescriptor, ModelLoadError, check_fingerprint
from .registry import REGISTRY, create_descriptor, validate_name

__all__ = ["DIHEDRAL", "DescriptorBatch", "GlobalDescriptor", "ModelLoadError", "REGISTRY",
           "check_fingerprint", "create_descriptor", "validate_name"]
