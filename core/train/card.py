"""The model card written beside exported weights: what the model is, what it was trained on and how.

Benchmark figures are not invented here: the card lists the validation history the run recorded and leaves
a section for dev-benchmark results measured with ``copylens train eval`` / ``copylens bench run``.
"""

from __future__ import annotations

import json
from pathlib import Path

from copylens.core.fileio import file_sha256

from .checkpoint import TrainState, read_run
from .trainer import TrainConfig

_sha256 = file_sha256


def model_card(name: str, run_dir: Path, cfg: TrainConfig, state: TrainState, weights: Path) -> str:
    run = read_run(run_dir) or {}
    vals = [h for h in state.history if "val_recall1" in h]
    groups = ", ".join(f"{g} {n}" for g, n in sorted(run.get("groups", {}).items()))
    lines = [
        f"# copylens-{name}",
        "",
        "CopyLens's own global descriptor for copy detection, trained by `copylens train` (SSCD-style "
        "self-supervised learning; no labels).",
        "",
        "## Model",
        f"- Architecture: timm `{cfg.model.architecture}` "
        + (f"fine-tuned from `{cfg.init}`" if cfg.init else "from random initialisation")
        + f", GeM pooling "
        f"(p = {cfg.model.gem_p}), a linear projection to {cfg.model.dim} dimensions, L2 normalisation.",
        f"- Input: the whole image squashed to {cfg.data.input_size} x {cfg.data.input_size} RGB, ImageNet "
        "mean/std.",
        f"- Weights: `{weights.name}`, {weights.stat().st_size / 1e6:.1f} MB, sha256 `{_sha256(weights)}`.",
        "",
        "## Training",
        f"- Data: {run.get('num_images', '?')} images ({groups}) below {', '.join(run.get('data_dirs', []))}; "
        f"{len(run.get('exclude', []))} image ids excluded; sha256 of the sorted image ids "
        f"`{run.get('data_sha256', '?')}`. {cfg.data.val_images} of them (chosen by a hash of their id) "
        "were held out for validation.",
        f"- Objective: InfoNCE (temperature {cfg.temperature}) over {cfg.pairs} image pairs per batch + "
        f"{cfg.entropy_weight} x KoLeo entropy (SSCD).",
        "- Views: one view is the plain image with probability "
        f"{cfg.data.light_identity} (else an edit), the other always an edit from "
        "`copylens.core.edits` with training's own edit weights (`TRAIN_FAMILIES` in "
        f"`core/train/data.py`), plus a second edit with probability {cfg.data.second_edit}; paste "
        "backgrounds are other training images."
        + (f" {cfg.data.hard_negatives:.0%} of each batch are the look-alikes of other images in it (nearest "
           "by a 16-px colour thumbnail: near-identical siblings as hard negatives)." if cfg.data.hard_negatives
           else ""),
        f"- Optimiser: AdamW, peak learning rate {cfg.lr}, weight decay {cfg.weight_decay}, {cfg.warmup} "
        f"warm-up steps, cosine decay over {cfg.steps} steps; seed {cfg.seed}.",
        f"- Trained {state.step} steps in {state.elapsed / 60:.1f} minutes (torch {run.get('torch', '?')}).",
        f"- Command: `{run.get('command', '?')}`",
        "",
        "## Validation during training (held-out images, one fixed strong edit each, recall@1 among them)",
        "",
        "| step | recall@1 | median margin |",
        "|---|---|---|",
        *[f"| {h['step']} | {h['val_recall1']:.3f} | {h['val_margin']:.3f} |" for h in vals],
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(cfg.to_dict(), indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)
