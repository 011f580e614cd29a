"""The network CopyLens trains: a timm backbone, GeM pooling, a linear projection, L2 normalisation.

Exported weights use the layout :func:`copylens.core.globaldesc.neural.load_copylens` reads
(``backbone.*``, ``projection.weight``, ``projection.bias``), so a trained model is used through the same
code as any shipped ``copylens-<name>`` descriptor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..globaldesc.neural import IMAGENET_MEAN, IMAGENET_STD, _timm_backbone, gem

MAX_SHIPPED_BYTES = 25 * 1024 * 1024  # weights stored in resources/models stay within this


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "resnet18"  # any timm model name
    dim: int = 256                  # descriptor length
    gem_p: float = 3.0


class CopyNet(nn.Module):
    def __init__(self, config: ModelConfig, input_size: int = 112):
        super().__init__()
        self.config = config
        self.backbone = _timm_backbone(config.architecture)
        with torch.no_grad():
            self.backbone.eval()
            channels = int(self.backbone(torch.zeros(1, 3, input_size, input_size)).shape[1])
            self.backbone.train()
        self.projection = nn.Linear(channels, config.dim)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B x S x S x 3]`` RGB -> L2-normalised ``[B x dim]`` (the descriptor's preprocessing)."""
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self.mean) / self.std
        return F.normalize(self.projection(gem(self.backbone(x), self.config.gem_p)), dim=1)


def export(model: CopyNet, directory: str | Path, name: str, input_size: int, card: str = "",
           half: bool | None = None, extra: dict | None = None) -> dict[str, Path]:
    """Write ``<name>.safetensors`` + ``<name>.json`` (+ ``<name>.md`` when ``card`` is given).

    ``half``: store float16 (default: only when float32 would exceed :data:`MAX_SHIPPED_BYTES`); the loader
    casts back to float32 on the CPU."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    floats = sum(v.numel() * v.element_size() for v in state.values() if v.is_floating_point())
    if half is None:
        half = floats > MAX_SHIPPED_BYTES
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    paths = {"weights": d / f"{name}.safetensors", "config": d / f"{name}.json"}
    save_file(state, str(paths["weights"]))
    meta = {"architecture": model.config.architecture, "input_size": input_size, "dim": model.config.dim,
            "gem_p": model.config.gem_p, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "resize": "square", **(extra or {})}
    paths["config"].write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if card:
        paths["card"] = d / f"{name}.md"
        paths["card"].write_text(card, encoding="utf-8")
    return paths
