"""Where CopyLens's own descriptor models live and how they are found (torch-free: the registry checks
names with it without importing torch, and the neural backends load the files it names)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .base import ModelLoadError


def models_dir() -> Path:
    """Where ``copylens-<name>`` models live: the package's ``resources/models``."""
    return Path(str(resources.files("copylens.resources"))) / "models"


def available_models(directory: Path | None = None) -> list[str]:
    """Names ``<name>`` with both ``<name>.safetensors`` and ``<name>.json`` in the models directory."""
    d = directory or models_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.safetensors") if p.with_suffix(".json").is_file())


def copylens_model_files(model: str, directory: Path | None = None) -> tuple[Path, Path]:
    """``(<model>.safetensors, <model>.json)`` of ``copylens-<model>``; ModelLoadError naming what exists
    when either is missing."""
    d = Path(directory) if directory is not None else models_dir()
    weights, card = d / f"{model}.safetensors", d / f"{model}.json"
    if not weights.is_file() or not card.is_file():
        have = available_models(d)
        missing = weights if not weights.is_file() else card
        raise ModelLoadError(
            f"CopyLens model {model!r} not found: {missing} is missing; available in {d}: "
            + (", ".join(f"copylens-{n}" for n in have) if have else
               "none (use 'pdq' or 'timm:<model>:<weights.safetensors>')"))
    return weights, card
