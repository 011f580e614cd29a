"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

A run folder holds ``run.json`` (configuration and training-set identity, written once),
``checkpoint-<step>.safetensors`` (model, optimiser moments, torch RNG) and ``checkpoint.json`` (the step,
the optimiser's parameter groups, the history, and which tensor file is current, with its sha256). The
tensor file is written first and ``checkpoint.json`` replaced atomically after it, so a crash at any moment
leaves the previous checkpoint usable; the superseded tensor file is deleted last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from copylens.core.fileio import file_sha256, write_atomic

from ..errors import CopyLensError

STATE_FILE = "checkpoint.json"
RUN_FILE = "run.json"


class CheckpointError(CopyLensError):
    """A run folder's checkpoint is unreadable, inconsistent, or from another configuration."""


@dataclass
class TrainState:
    step: int = 0                 # optimiser steps done
    elapsed: float = 0.0          # training seconds over all sessions
    history: list[dict] = field(default_factory=list)  # logged losses and validation results


_sha256 = file_sha256


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))


def write_run(run_dir: Path, data: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / RUN_FILE, data)


def read_run(run_dir: Path) -> dict | None:
    p = Path(run_dir) / RUN_FILE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: unreadable run description ({exc})") from exc


def save(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainState) -> Path:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, slots in opt["state"].items():
        for key, value in slots.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"opt.{idx}.{key}"] = t.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    path = run_dir / f"checkpoint-{state.step:07d}.safetensors"
    save_file(tensors, str(path))
    old = current_weights(run_dir)
    _write_json(run_dir / STATE_FILE, {
        "step": state.step, "elapsed": state.elapsed, "history": state.history,
        "tensors": path.name, "sha256": _sha256(path), "param_groups": opt["param_groups"]})
    if old is not None and old != path and old.exists():
        old.unlink()
    return path


def current_weights(run_dir: Path) -> Path | None:
    p = Path(run_dir) / STATE_FILE
    if not p.is_file():
        return None
    try:
        return Path(run_dir) / json.loads(p.read_text(encoding="utf-8"))["tensors"]
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{p}: unreadable checkpoint ({exc})") from exc


def load(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> TrainState:
    """Restore the model (and optimiser, torch RNG) from the run's checkpoint; a fresh state when there is none."""
    from safetensors.torch import load_file

    p = Path(run_dir) / STATE_FILE
    if not p.is_file():
        return TrainState()
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
        path = Path(run_dir) / meta["tensors"]
        if _sha256(path) != meta["sha256"]:
            raise CheckpointError(f"{path}: does not match {p} (sha256 differs); the checkpoint is damaged")
        tensors = load_file(str(path), device="cpu")
    except CheckpointError:
        raise
    except Exception as exc:  # OSError, ValueError, KeyError, safetensors' own errors
        raise CheckpointError(f"{run_dir}: unreadable checkpoint ({exc})") from exc
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not fit the configured network ({exc})") from exc
    if optimizer is not None:
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, idx, key = k.split(".", 2)
                slots.setdefault(int(idx), {})[key] = v
        optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
        if "rng.torch" in tensors:
            torch.set_rng_state(tensors["rng.torch"])
    return TrainState(int(meta["step"]), float(meta.get("elapsed", 0.0)), list(meta.get("history", [])))
