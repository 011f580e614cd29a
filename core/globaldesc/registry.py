"""Global descriptor backends by name: ``create_descriptor("pdq")``, ``create_descriptor("timm:...")``, ...

A neural name may end in ``@grey`` (:data:`GREY_SUFFIX`): the same network describing the picture's luma
only (:attr:`~.neural.NeuralConfig.grey`), a branch of its own beside the colour one.

Torch is imported only when a neural backend is asked for, so PDQ-only use stays light;
``validate_name`` checks a name without building anything.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import UnknownBackendError
from .base import GlobalDescriptor, ModelLoadError, NoDescriptor
from .models import copylens_model_files


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
    "timm": "timm:<model-name>[:<weights.safetensors>][@grey]",
    "torchscript": "torchscript:<path>[@grey]",
    "copylens": "copylens-<name>[@grey]",
    "none": "none",
}
GREY_SUFFIX = "@grey"
NEURAL = ("timm", "torchscript", "copylens")


def split_view(name: str) -> tuple[str, bool]:
    """``"copylens-sscd18g@grey"`` -> ``("copylens-sscd18g", True)``; a name without the suffix -> False.
    Only neural kinds take the suffix (UnknownBackendError otherwise)."""
    if not name.endswith(GREY_SUFFIX):
        return name, False
    base = name[:-len(GREY_SUFFIX)]
    if split_name(base)[0] not in NEURAL:
        raise UnknownBackendError("global descriptor", name, list(SYNTAX.values()))
    return base, True


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
    name = name.strip()
    base, grey = split_view(name)
    kind, rest = split_name(base)
    factory = REGISTRY.get(kind)
    if factory is None:
        raise UnknownBackendError("global descriptor", name, list(SYNTAX.values()))
    if grey:
        kw["grey"] = True
    return factory(name, rest, **kw)


def validate_name(name: str, directory: Path | None = None) -> str:
    """Check a global descriptor name without building it: no torch import, no model load.

    Checks that the kind exists, that the name has that kind's form (:data:`SYNTAX`) and that the files it
    names exist (``timm:`` weights, the ``torchscript:`` archive, ``copylens-<name>``'s weights and card in
    ``directory``, default :func:`models_dir`).
    Whether a timm architecture exists and whether the files load is only known when the descriptor is
    built. Returns the name stripped; raises UnknownBackendError or ModelLoadError like create_descriptor.
    """
    name = name.strip()
    kind, rest = split_name(split_view(name)[0])
    takes_rest = kind in NEURAL  # "pdq" and "none" are complete names; the neural kinds need more
    if kind not in REGISTRY or takes_rest != bool(rest):
        raise UnknownBackendError("global descriptor", name, list(SYNTAX.values()))
    if kind == "timm":
        architecture, _, weights = rest.partition(":")
        if not architecture:
            raise UnknownBackendError("global descriptor", name, list(SYNTAX.values()))
        if weights and not Path(weights).is_file():
            raise ModelLoadError(f"{weights}: weights file not found")
    elif kind == "torchscript" and not Path(rest).is_file():
        raise ModelLoadError(f"{rest}: TorchScript file not found")
    elif kind == "copylens":
        copylens_model_files(rest, directory)
    return name


def parse_names(text: str | None) -> list[str] | None:
    """A ``--global`` option: ``"pdq, copylens-sscd18"`` -> ``["pdq", "copylens-sscd18"]``; ``None`` (the
    option not given) stays ``None`` so the caller's default applies."""
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]
