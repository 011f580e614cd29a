"""The training job: ``train(...)`` is a generator that yields :class:`~copylens.core.progress.Progress`
after every optimiser step and returns a :class:`TrainResult`. Closing it between yields (cancel) saves a
checkpoint first; so does reaching the time budget. Running it again on the same run folder resumes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from ..globaldesc.models import copylens_model_files
from ..globaldesc.neural import _load_safetensors, auto_device
from ..progress import Progress
from . import checkpoint
from .checkpoint import CheckpointError, TrainState
from .data import (
    DataConfig,
    TrainingImage,
    files_digest,
    list_training_files,
    load_images,
    look_alikes,
    make_batch,
    sampling_weights,
    split_validation,
    validation_views,
)
from .loss import sscd_loss
from .model import CopyNet, ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pairs: int = 64                 # images per batch; the batch holds two views of each
    steps: int = 1500               # optimiser steps (the cosine schedule spans them)
    lr: float = 1e-3                # AdamW peak learning rate
    weight_decay: float = 0.01
    warmup: int = 100               # linear warm-up steps
    temperature: float = 0.05       # InfoNCE temperature (SSCD)
    entropy_weight: float = 30.0    # KoLeo weight (SSCD)
    seed: int = 0
    eval_every: int = 100           # validation every so many steps (and at the end)
    log_every: int = 10             # history entry every so many steps
    checkpoint_minutes: float = 5.0  # save at least this often
    # start from an exported descriptor's weights (fine-tuning): "copylens-NAME" or a .safetensors path of
    # the same architecture; "" starts from random initialisation
    init: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> TrainConfig:
        names = {f.name for f in fields(TrainConfig)}
        unknown = set(d) - names
        if unknown:
            raise CheckpointError(f"unknown training settings {sorted(unknown)}")
        rest = {k: v for k, v in d.items() if k not in ("model", "data")}
        return TrainConfig(ModelConfig(**d.get("model", {})), DataConfig(**d.get("data", {})), **rest)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    steps: int
    finished: bool                  # all steps done (False: stopped by the time budget or cancelled)
    seconds: float                  # training time over all sessions
    validation: dict | None         # the last validation result


def learning_rate(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


@torch.inference_mode()
def embed(model: CopyNet, arrays: np.ndarray, device: torch.device, batch: int = 128) -> np.ndarray:
    was = model.training
    model.eval()
    out = [model(torch.from_numpy(arrays[i:i + batch]).to(device)).float().cpu().numpy()
           for i in range(0, len(arrays), batch)]
    model.train(was)
    return np.concatenate(out)


def validate(model: CopyNet, refs: np.ndarray, queries: np.ndarray, device: torch.device) -> dict:
    """recall@1 of each edited validation image among the plain ones, and the median margin between its
    true match's similarity and the best wrong one's."""
    r, q = embed(model, refs, device), embed(model, queries, device)
    sims = q @ r.T
    n = len(sims)
    pos = sims[np.arange(n), np.arange(n)]
    neg = np.where(np.eye(n, dtype=bool), -np.inf, sims).max(axis=1)
    return {"val_recall1": float((sims.argmax(axis=1) == np.arange(n)).mean()),
            "val_margin": float(np.median(pos - neg)), "val_images": n}


def init_weights(model: CopyNet, init: str) -> None:
    """Load an exported descriptor's weights (``copylens-NAME`` or a .safetensors path) into ``model``."""
    if init.startswith("copylens-"):
        weights, meta_path = copylens_model_files(init.removeprefix("copylens-"))
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("architecture") != model.config.architecture or int(meta.get("dim", -1)) != model.config.dim:
            raise CheckpointError(f"{init} is a {meta.get('architecture')} with {meta.get('dim')} dimensions; "
                                  f"this run trains a {model.config.architecture} with {model.config.dim}")
    else:
        weights = Path(init)
    state = {k: v.float() for k, v in _load_safetensors(weights).items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{init}: its weights do not fit this run's network ({exc})") from exc


def _load(files, load_side: int) -> Generator[Progress, None, list[TrainingImage]]:
    images: list[TrainingImage] = []
    for item in load_images(files, load_side):
        if isinstance(item, Progress):
            yield item
        else:
            images = item
    return images


def train(run_dir: str | Path, data_dirs: Sequence[str | Path] = (), config: TrainConfig | None = None,
          exclude: set[str] = frozenset(), minutes: float | None = None, device: str | None = None,
          command: str = "") -> Generator[Progress, None, TrainResult]:
    """Train (or resume) the run in ``run_dir``.

    A new run needs ``data_dirs`` and ``config``; a run folder that already has ``run.json`` resumes with its
    stored settings (``data_dirs``/``config``, when given, must equal them: a changed setting would silently
    train another model). ``exclude``: image keys (path without suffix, relative to its data folder) left
    out, e.g. the references a benchmark's queries copy. ``minutes``: stop (after a checkpoint) once this
    session has trained that long; run again to continue.
    """
    run = Path(run_dir)
    stored = checkpoint.read_run(run)
    if stored is not None:
        cfg = TrainConfig.from_dict(stored["config"])
        if config is not None and config != cfg:
            a, b = cfg.to_dict(), config.to_dict()
            diff = [k for k in a if a[k] != b[k]]
            raise CheckpointError(f"{run} holds a run with other settings ({', '.join(diff)} differ); "
                                  f"resume it without changing them, or train into a new folder")
        dirs = [Path(d) for d in stored["data_dirs"]]
        if data_dirs and sorted(str(Path(d).resolve()) for d in data_dirs) != sorted(map(str, dirs)):
            raise CheckpointError(f"{run} was trained on {', '.join(map(str, dirs))}; resume it without "
                                  f"other data folders, or train into a new folder")
        exclude = set(stored.get("exclude", []))
    else:
        if config is None or not data_dirs:
            raise CheckpointError(f"{run} holds no run yet: give the training data folders and settings")
        cfg = config
        dirs = [Path(d).resolve() for d in data_dirs]
    files = list_training_files(dirs, exclude)
    digest = files_digest(files)
    if stored is not None and stored["data_sha256"] != digest:
        raise CheckpointError(f"the training images below {', '.join(map(str, dirs))} changed since {run} "
                              f"started ({len(files)} images now, {stored['num_images']} then)")
    groups: dict[str, int] = {}
    for _, _, g in files:
        groups[g] = groups.get(g, 0) + 1
    if stored is None:
        checkpoint.write_run(run, {
            "config": cfg.to_dict(), "data_dirs": [str(d) for d in dirs], "exclude": sorted(exclude),
            "num_images": len(files), "groups": groups, "data_sha256": digest, "command": command,
            "torch": torch.__version__, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    images = yield from _load(files, cfg.data.load_side)
    train_images, val_images = split_validation(images, cfg.data.val_images)
    weights = sampling_weights(train_images, cfg.data.sampling)
    dev = auto_device(device)
    cuda = dev.type == "cuda"

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = CopyNet(cfg.model, cfg.data.input_size)
    if cfg.init:  # a checkpoint, when there is one, replaces these weights below
        init_weights(model, cfg.init)
    model = model.to(dev).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = checkpoint.load(run, model, opt)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    val_refs, val_queries = validation_views(val_images, cfg.data) if val_images else (None, None)
    last_val = next((h for h in reversed(state.history) if "val_recall1" in h), None)

    alikes = look_alikes(train_images) if cfg.data.hard_negatives > 0 else None

    def batch_for(step: int) -> np.ndarray:
        return make_batch(train_images, weights, cfg.pairs, cfg.seed, step, cfg.data, alikes)

    session_start = time.perf_counter()
    last_save = session_start
    trained = state.elapsed
    window: list[float] = []
    pool = ThreadPoolExecutor(1, thread_name_prefix="copylens-views")  # next batch's views while this trains
    pending = pool.submit(batch_for, state.step) if state.step < cfg.steps else None
    try:
        while state.step < cfg.steps:
            t0 = time.perf_counter()
            batch = pending.result()
            step = state.step
            pending = pool.submit(batch_for, step + 1) if step + 1 < cfg.steps else None
            for g in opt.param_groups:
                g["lr"] = learning_rate(cfg, step)
            x = torch.from_numpy(batch).to(dev, non_blocking=True)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=cuda):
                z = model(x)
            loss, parts = sscd_loss(z.float(), cfg.temperature, cfg.entropy_weight)
            if not math.isfinite(parts["loss"]):
                raise FloatingPointError(f"the loss became {parts['loss']} at step {step}; lower --lr")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            state.step = step + 1
            dt = time.perf_counter() - t0
            trained += dt
            state.elapsed = trained
            window = (window + [len(batch) / dt])[-20:]
            entry = None
            if state.step % cfg.log_every == 0 or state.step == cfg.steps:
                entry = {"step": state.step, "lr": opt.param_groups[0]["lr"], "seconds": round(trained, 1),
                         **{k: round(v, 4) for k, v in parts.items()}}
            if val_refs is not None and (state.step % cfg.eval_every == 0 or state.step == cfg.steps):
                last_val = {"step": state.step, **validate(model, val_refs, val_queries, dev)}
                entry = {**(entry or {"step": state.step}), **last_val}
            if entry:
                state.history.append(entry)
            now = time.perf_counter()
            out_of_time = minutes is not None and now - session_start >= minutes * 60
            if now - last_save >= cfg.checkpoint_minutes * 60 or state.step == cfg.steps or out_of_time:
                checkpoint.save(run, model, opt, state)
                last_save = now
            msg = f"loss {parts['loss']:.3f} (InfoNCE {parts['infonce']:.3f}, KoLeo {parts['koleo']:.3f}), " \
                  f"{float(np.median(window)):.0f} img/s"
            if last_val:
                msg += f", val recall@1 {last_val['val_recall1']:.3f}"
            yield Progress("training", state.step, cfg.steps, msg)
            if out_of_time:
                break
    except GeneratorExit:  # cancelled between steps: the state is consistent, keep it
        checkpoint.save(run, model, opt, state)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return TrainResult(run, state.step, cfg.steps, state.step >= cfg.steps, trained, last_val)


def load_trained(run_dir: str | Path) -> tuple[CopyNet, TrainConfig, TrainState]:
    """The network of a run's latest checkpoint (CPU, eval mode), its settings and state."""
    stored = checkpoint.read_run(Path(run_dir))
    if stored is None:
        raise CheckpointError(f"{run_dir}: not a training run folder (no {checkpoint.RUN_FILE})")
    cfg = TrainConfig.from_dict(stored["config"])
    model = CopyNet(cfg.model, cfg.data.input_size)
    state = checkpoint.load(Path(run_dir), model)
    if state.step == 0:
        raise CheckpointError(f"{run_dir}: no checkpoint yet")
    return model.eval(), cfg, state
