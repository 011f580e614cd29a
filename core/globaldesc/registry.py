"""Global descriptor backends by name: ``create_descriptor("pdq")``, ``create_descriptor("timm:...")``, ...

Torch is imported only when a neural backend is asked for, so PDQ-only use stays light.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UnknownBackendError
from .base import GlobalDescriptor, NoDescriptor


def _pdq(name: str, rest: str, **kw) -> GlobalDescriptor:
    from .pdq import PdqConfig, PdqDescriptor

    if rest:
        raise UnknownBackendError("global descriptor", name, list(SYNTAX.values()))
    return PdqDescriptor(PdqConfig(**kw))


def _none(name: str, rest: str, **kw) -> GlobalDescriptor:
    if rest or kw:
        raise UnknownBackendError("global descriptor", name, list(SYNTAX.values()))
    return NoDescriptor()


def _timm(name: str, rest: str, **kw) -> GlobalDescriptor:
    from .neural import load_timm

    architecture, _, weights = rest.partition(":")
    if not architecture:
        raise UnknownBackendError("global descriptor", name, list(SYNTAX.values()))
    return load_timm(name, architecture, weights or None, **kw)


def _torchscript(name: str, rest: str, **kw) -> GlobalDescriptor:
    from .neural import load_torchscript

    if not rest:
        raise UnknownBackendError("global descriptor", name, list(SYNTAX.values()))
    return load_torchscript(name, rest, **kw)


def _copylens(name: str, rest: str, **kw) -> GlobalDescriptor:
    from .neural import load_copylens

    if not rest:
        raise UnknownBackendError("global descriptor", name, list(SYNTAX.values()))
    return load_copylens(name, rest, kw.pop("models_dir", None), **kw)


# kind -> (factory(name, rest_of_name, **kw), how the name is written)
REGISTRY: dict[str, Callable[..., GlobalDescriptor]] = {
    "pdq": _pdq,
    "timm": _timm,
    "torchscript": _torchscript,
    "copylens": _copylens,
    "none": _none,
}
SYNTAX = {
    "pdq": "pdq",
    "timm": "timm:<model-name>[:<weights.safetensors>]",
    "torchscript": "torchscript:<path>",
    "copylens": "copylens-<name>",
    "none": "none",
}


def split_name(name: str) -> tuple[str, str]:
    """``"timm:resnet50:/w.safetensors"`` -> ``("timm", "resnet50:/w.safetensors")``;
    ``"copylens-sscd"`` -> ``("copylens", "sscd")``."""
    if name.startswith("copylens-"):
        return "copylens", name[len("copylens-"):]
    kind, _, rest = name.partition(":")
    return kind, rest


def create_descriptor(name: str, **kw) -> GlobalDescriptor:
    """Build the global descriptor called ``name``.

    Keyword arguments go to the backend: for ``pdq`` the :class:`~.pdq.PdqConfig` fields; for neural kinds
    the :class:`~.neural.NeuralConfig` fields (``input_size``, ``resize``, ``gem_p``, ``batch_size``,
    ``query_variants``, ...) plus ``device`` ("cpu", "cuda", ...; default CUDA when available),
    ``half`` (default: on CUDA), ``whitening`` (a fitted :class:`~.whitening.Whitening`) and, for
    ``copylens-<name>``, ``models_dir``. Unknown names raise
    :class:`~copylens.core.errors.UnknownBackendError` listing the valid forms.
    """
    kind, rest = split_name(name.strip())
    factory = REGISTRY.get(kind)
    if factory is None:
        raise UnknownBackendError("global descriptor", name, list(SYNTAX.values()))
    return factory(name.strip(), rest, **kw)
