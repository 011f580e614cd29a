"""``copylens train run|export|eval``: registered through the ``copylens.commands`` entry point.

Exit codes: 0 success (``run``: also when the time budget ended the session; run again to continue), 1
failure, 2 usage error, 130 interrupted (the last checkpoint is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from copylens.core.errors import CopyLensError
from copylens.core.progress import ConsoleProgress, run_job

RUN_FLAGS = {  # option -> (TrainConfig path, type, help)
    "arch": ("model.architecture", str, "timm architecture (default resnet18)"),
    "dim": ("model.dim", int, "descriptor length (default 256)"),
    "input_size": ("data.input_size", int, "square input side in pixels (default 112)"),
    "pairs": ("pairs", int, "images per batch, two views each (default 64)"),
    "steps": ("steps", int, "optimiser steps (default 1500)"),
    "lr": ("lr", float, "AdamW peak learning rate (default 1e-3)"),
    "temperature": ("temperature", float, "InfoNCE temperature (default 0.05)"),
    "entropy_weight": ("entropy_weight", float, "KoLeo weight (default 30)"),
    "sampling": ("data.sampling", str, "per-folder sampling: sqrt (default) or uniform"),
    "seed": ("seed", int, "random seed (default 0)"),
    "eval_every": ("eval_every", int, "validate every N steps (default 100)"),
    "hard_negatives": ("data.hard_negatives", float, "share of each batch drawn as look-alikes of other "
                       "images in it (near-identical siblings as hard negatives; default 0)"),
    "init": ("init", str, "start from these weights: copylens-NAME or a .safetensors path (fine-tuning)"),
}


def _config(args):
    from dataclasses import replace

    from copylens.core.train.trainer import TrainConfig

    cfg = TrainConfig()
    given = {k: getattr(args, k) for k in RUN_FLAGS if getattr(args, k) is not None}
    for key, value in given.items():
        path = RUN_FLAGS[key][0].split(".")
        if len(path) == 2:
            cfg = replace(cfg, **{path[0]: replace(getattr(cfg, path[0]), **{path[1]: value})})
        else:
            cfg = replace(cfg, **{path[0]: value})
    return cfg, bool(given)


def _command(args) -> str:
    """The command line that reproduces this run (recorded in the run and its model card)."""
    words = ["copylens", "train", "run", *args.data, "--out", args.out]
    for gt in args.exclude_queried or []:
        words += ["--exclude-queried", gt]
    for bench in args.exclude_unseen or []:
        words += ["--exclude-unseen", bench]
    for key in RUN_FLAGS:
        if getattr(args, key) is not None:
            words += ["--" + key.replace("_", "-"), str(getattr(args, key))]
    if args.minutes is not None:
        words += ["--minutes", str(args.minutes)]
    return " ".join(shlex.quote(str(w)) for w in words)


def cmd_run(args) -> int:
    import cv2
    import torch

    from copylens.core.train.checkpoint import read_run
    from copylens.core.train.data import read_excluded_ids, unseen_keys
    from copylens.core.train.trainer import train

    if args.threads:
        torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)  # the view-making thread should not compete with the network's threads
    # Weights and gradients drift towards subnormal floats as training goes on; on x86 CPUs every operation
    # on them is many times slower (a first run here fell from 65 to 47 images/s over 800 steps).
    torch.set_flush_denormal(True)
    cfg, changed = _config(args)
    resuming = read_run(Path(args.out)) is not None
    if not resuming and not args.data:
        print("copylens train run: error: give DATA folders for a new run", file=sys.stderr)
        return 2
    exclude = set()
    for gt in args.exclude_queried or []:
        exclude |= read_excluded_ids(gt)
    for bench in args.exclude_unseen or []:
        exclude |= unseen_keys(bench, args.data)
    command = _command(args)
    bar = ConsoleProgress()
    result = run_job(train(args.out, args.data, cfg if (changed or not resuming) else None, exclude,
                           minutes=args.minutes, device=None if args.device == "auto" else args.device,
                           command=command), bar)
    bar.close()
    state = "finished" if result.finished else "paused (run the same command to continue)"
    val = result.validation or {}
    print(f"{result.run_dir}: step {result.step}/{result.steps}, {state}; {result.seconds / 60:.1f} min of "
          f"training" + (f"; validation recall@1 {val['val_recall1']:.3f}" if val else ""), file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from copylens.core.globaldesc.models import models_dir
    from copylens.core.train.card import model_card
    from copylens.core.train.model import export
    from copylens.core.train.trainer import load_trained

    model, cfg, state = load_trained(args.run)
    target = Path(args.models_dir) if args.models_dir else models_dir()
    paths = export(model, target, args.name, cfg.data.input_size, half=True if args.half else None,
                   card="")
    paths["card"] = target / f"{args.name}.md"
    paths["card"].write_text(model_card(args.name, Path(args.run), cfg, state, paths["weights"]), encoding="utf-8")
    for kind, p in paths.items():
        print(f"{kind}: {p} ({os.path.getsize(p) / 1e6:.1f} MB)")
    print(f"use it as global descriptor 'copylens-{args.name}'", file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    from copylens.core.globaldesc import create_descriptor
    from copylens.core.train.evaluate import descriptor_from_run, evaluate_descriptor

    if bool(args.run) == bool(args.descriptor):
        print("copylens train eval: error: give exactly one of --run or --descriptor", file=sys.stderr)
        return 2
    desc = descriptor_from_run(args.run) if args.run else create_descriptor(args.descriptor)
    bar = ConsoleProgress()
    m = run_job(evaluate_descriptor(desc, args.bench, args.top_k), bar)
    bar.close()
    out = {"descriptor": args.descriptor or f"run {args.run}", "micro_ap": m.micro_ap, "recall_at_1": m.recall_at_1,
           "per_content": {k: {"micro_ap": c.micro_ap, "recall_at_1": c.recall_at_1}
                           for k, c in m.per_content.items()}}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['descriptor']} alone: μAP {m.micro_ap:.3f}  recall@1 {m.recall_at_1:.3f}")
        for name, c in m.per_content.items():
            print(f"  {name:>9}: μAP {c.micro_ap:.3f}  recall@1 {c.recall_at_1:.3f}")
    return 0


def _guard(fn):
    def run(args) -> int:
        try:
            return fn(args)
        except (CopyLensError, OSError, ValueError, FloatingPointError) as exc:
            print(f"copylens train {args.train_command}: error: {exc}", file=sys.stderr)
            return 1
    return run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train CopyLens's own global descriptor (SSCD-style, resumable)",
                       description="Self-supervised copy-detection training: two edited views of an image "
                                   "are positives (InfoNCE + KoLeo, as in SSCD).")
    tsub = p.add_subparsers(dest="train_command", required=True)

    r = tsub.add_parser("run", help="train, or resume the run in --out",
                        description="Train a descriptor on the images below DATA folders. Rerunning the same "
                                    "command resumes from the last checkpoint.")
    r.add_argument("data", nargs="*", metavar="DATA", help="folders of training images (new runs)")
    r.add_argument("--out", required=True, help="run folder: settings, checkpoints, history")
    r.add_argument("--exclude-queried", action="append", metavar="GT_CSV",
                   help="leave out the references a benchmark's ground_truth.csv names (ids are paths "
                        "relative to DATA without suffix); repeatable")
    r.add_argument("--exclude-unseen", action="append", metavar="BENCH",
                   help="leave out the images of a benchmark's unseen content kinds (its benchmark.json "
                        "names them; the unseen sources' folders below DATA); repeatable")
    for key, (_, typ, help_) in RUN_FLAGS.items():
        r.add_argument("--" + key.replace("_", "-"), type=typ, default=None, help=help_)
    r.add_argument("--minutes", type=float, help="stop after this many minutes of this session (resumable)")
    r.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    r.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    r.set_defaults(func=_guard(cmd_run))

    e = tsub.add_parser("export", help="write a run's weights as resources/models/NAME.{safetensors,json,md}")
    e.add_argument("run")
    e.add_argument("--name", required=True, help="model name; the descriptor is then 'copylens-NAME'")
    e.add_argument("--models-dir", help="target folder (default: the package's resources/models)")
    e.add_argument("--half", action="store_true", help="store float16 (default: only when over 25 MB)")
    e.set_defaults(func=_guard(cmd_export))

    v = tsub.add_parser("eval", help="score a descriptor alone on a benchmark folder (no index)")
    v.add_argument("bench", help="a 'copylens bench make' folder")
    v.add_argument("--run", help="a training run folder (its latest checkpoint)")
    v.add_argument("--descriptor", help="a registry name: copylens-NAME, pdq, timm:..., torchscript:...")
    v.add_argument("--top-k", type=int, default=10)
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_guard(cmd_eval))
