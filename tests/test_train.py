"""``copylens train``: the SSCD loss, training views and batches, resumable runs, export through the shipped
model loader, descriptor-alone evaluation, and the CLI. Tiny timm network, scikit-image pictures."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from copylens.core.bench.make import make_benchmark
from copylens.core.cli import main as cli
from copylens.core.errors import Cancelled
from copylens.core.globaldesc import create_descriptor
from copylens.core.progress import run_job
from copylens.core.train import checkpoint
from copylens.core.train.checkpoint import CheckpointError
from copylens.core.train.data import (
    TRAIN_FAMILIES,
    DataConfig,
    TrainingDataError,
    TrainingImage,
    files_digest,
    list_training_files,
    look_alikes,
    make_batch,
    read_excluded_ids,
    sampling_weights,
    split_validation,
    square,
    unseen_keys,
)
from copylens.core.train.evaluate import descriptor_from_run, evaluate_descriptor
from copylens.core.train.loss import info_nce, koleo
from copylens.core.train.model import CopyNet, ModelConfig, export
from copylens.core.train.trainer import TrainConfig, embed, init_weights, learning_rate, load_trained, train

from conftest import REFERENCE_NAMES, skimage_rgb

ARCH = "test_resnet"  # timm's 0.37 M-parameter test network
SIZE = 48


def tiny_config(**kw) -> TrainConfig:
    return TrainConfig(model=ModelConfig(ARCH, dim=16), data=DataConfig(load_side=96, input_size=SIZE, val_images=4),
                       pairs=4, warmup=2, eval_every=3, log_every=1, **kw)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """16 pictures in two content folders, as a benchmark's references/ folder looks."""
    root = tmp_path_factory.mktemp("train") / "references"
    for i, name in enumerate(REFERENCE_NAMES):
        folder = root / ("photos" if i % 4 else "graphics")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(skimage_rgb(name)).resize((120, 90)).save(folder / f"{name}.png")
    return root


# ------------------------------------------------------------------ loss

def test_info_nce_known_answers():
    e = torch.eye(4)
    aligned = torch.cat([e, e])  # every row's positive is identical, the negatives orthogonal
    t = 0.5
    # row 0: logits 1/t for its positive, 0 for the 6 orthogonal others, -inf for itself
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 6))
    assert info_nce(aligned, t).item() == pytest.approx(expected, rel=1e-5)
    swapped = torch.cat([e, e[[1, 0, 3, 2]]])  # positives orthogonal, some negatives identical
    assert info_nce(swapped, t).item() > info_nce(aligned, t).item() + 1.0
    with pytest.raises(ValueError):
        info_nce(torch.eye(3), t)


def test_koleo_ignores_self_and_positive():
    e = torch.eye(3)
    z = torch.cat([e[:2], e[:2]])  # rows 0 and 2 are a pair (identical), rows 1 and 3 too
    # nearest non-positive of every row is orthogonal: distance sqrt(2)
    assert koleo(z).item() == pytest.approx(-math.log(math.sqrt(2)), rel=1e-5)
    close = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1, 0], [1.0, -0.1, 0], [1, 0.1, 0], [1, -0.1, 0]]), dim=1)
    assert koleo(close).item() > koleo(z).item()  # crowded descriptors cost more


def test_learning_rate_warms_up_then_decays_to_zero():
    cfg = tiny_config(steps=20, lr=1.0)
    rates = [learning_rate(cfg, s) for s in range(20)]
    assert rates[0] == pytest.approx(0.5) and rates[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[1:], rates[2:], strict=False))
    assert learning_rate(cfg, 20) == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------ data

def test_training_files_exclusions_groups_and_digest(data_dir, tmp_path):
    files = list_training_files([data_dir])
    assert len(files) == 16 and {g for _, _, g in files} == {"photos", "graphics"}
    gt = tmp_path / "ground_truth.csv"
    gt.write_text("query_id,reference_id\nq1,photos/chelsea\nq2,\nq3,graphics/astronaut\n", encoding="utf-8")
    excluded = read_excluded_ids(gt)
    assert excluded == {"photos/chelsea", "graphics/astronaut"}
    kept = list_training_files([data_dir], excluded)
    assert len(kept) == 14 and "photos/chelsea" not in {k for _, k, _ in kept}
    assert files_digest(kept) != files_digest(files) and files_digest(kept) == files_digest(list(reversed(kept))[::-1])


def test_batches_are_deterministic_per_step_and_pair_views():
    rng = np.random.default_rng(0)
    images = [TrainingImage(f"g{i % 2}/im{i}", f"g{i % 2}", rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
              for i in range(10)]
    w = sampling_weights(images, "sqrt")
    assert w.sum() == pytest.approx(1.0)
    cfg = DataConfig(input_size=32)
    a, b = make_batch(images, w, 3, 0, 5, cfg), make_batch(images, w, 3, 0, 5, cfg)
    assert a.shape == (6, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, make_batch(images, w, 3, 0, 6, cfg))
    plain = replace(cfg, light_identity=1.0)
    batch = make_batch(images, w, 3, 0, 5, plain)
    # with light_identity 1 the first view of each pair is the plain picture: it is one of the images
    squares = [square(im.pixels, 32) for im in images]
    assert all(any(np.array_equal(v, s) for s in squares) for v in batch[:3])


def _sibling_family(rng: np.random.Generator) -> list[TrainingImage]:
    """Three families of two near-identical graphics (one shape, then a small mark added), plus noise."""
    images = []
    for f, colour in enumerate(((200, 30, 30), (30, 160, 40), (40, 60, 210))):
        base = np.full((64, 64, 3), 255, np.uint8)
        base[8 + 6 * f:40 + 4 * f, 10:30 + 8 * f] = colour
        marked = base.copy()
        marked[50:56, 50:56] = 0
        images += [TrainingImage(f"g/f{f}a", "g", base), TrainingImage(f"g/f{f}b", "g", marked)]
    images += [TrainingImage(f"p/n{i}", "p", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for i in range(6)]
    return images


def test_look_alikes_pair_near_identical_siblings():
    images = _sibling_family(np.random.default_rng(1))
    alikes = look_alikes(images)
    assert [images[int(a)].key for a in alikes[:6]] == ["g/f0b", "g/f0a", "g/f1b", "g/f1a", "g/f2b", "g/f2a"]
    assert all(int(a) != i for i, a in enumerate(alikes))


def test_hard_negative_batches_hold_siblings_together():
    images = _sibling_family(np.random.default_rng(1))
    w = np.zeros(len(images))
    w[[0, 2, 4, 6, 7, 8]] = 1 / 6  # only the first of each family and some noise are ever drawn at random
    cfg = DataConfig(input_size=32, light_identity=1.0, hard_negatives=1.0)
    alikes = look_alikes(images)
    squares = [square(im.pixels, 32) for im in images]

    def drawn(batch: np.ndarray, pairs: int) -> set[int]:
        return {next(i for i, s in enumerate(squares) if np.array_equal(v, s)) for v in batch[:pairs]}

    seen_marked = 0
    for step in range(8):
        batch = make_batch(images, w, 4, 0, step, cfg, alikes)
        pairs = len(batch) // 2
        got = drawn(batch, pairs)
        # half of the 4 images are drawn at random, the other half are their look-alikes
        assert pairs <= 4 and got <= set(range(len(images)))
        seen_marked += len(got & {1, 3, 5})
        assert np.array_equal(batch, make_batch(images, w, 4, 0, step, cfg, alikes))  # resumable
    assert seen_marked >= 4  # the marked siblings are only ever drawn as look-alikes
    plain = make_batch(images, w, 4, 0, 0, replace(cfg, hard_negatives=0.0), alikes)
    assert not drawn(plain, 4) & {1, 3, 5}
    with pytest.raises(ValueError, match="from 0 to 1"):
        DataConfig(hard_negatives=1.5)


def test_unseen_kinds_are_kept_out_of_training(tmp_path):
    refs = tmp_path / "bench" / "references"
    for folder in ("photos", "lineart"):
        (refs / folder).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(refs / folder / f"{i}.png")
    meta = {"unseen_content": ["lineart"], "sources": [
        {"path": str(tmp_path / "src" / "photos"), "name": "photos", "content": "photo"},
        {"path": str(tmp_path / "src" / "lineart"), "name": "lineart", "content": "lineart"}]}
    (tmp_path / "bench" / "benchmark.json").write_text(json.dumps(meta), encoding="utf-8")
    keys = unseen_keys(tmp_path / "bench", [refs])
    assert keys == {"lineart/0", "lineart/1", "lineart/2"}
    assert {k for _, k, _ in list_training_files([refs], keys)} == {"photos/0", "photos/1", "photos/2"}
    with pytest.raises(TrainingDataError, match="unseen source 'lineart'"):
        unseen_keys(tmp_path / "bench" / "benchmark.json", [refs / "lineart"])


def test_fine_tuning_starts_from_exported_weights(data_dir, tmp_path):
    torch.manual_seed(3)
    start = CopyNet(ModelConfig(ARCH, dim=16), SIZE)
    paths = export(start, tmp_path, "start", SIZE)
    fresh = CopyNet(ModelConfig(ARCH, dim=16), SIZE)
    init_weights(fresh, str(paths["weights"]))
    for k, v in start.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, msg=k)
    with pytest.raises(CheckpointError, match="do not fit"):
        init_weights(CopyNet(ModelConfig(ARCH, dim=8), SIZE), str(paths["weights"]))
    # a run started from them: its first step moves away from the exported weights, not from a random init
    cfg = replace(tiny_config(steps=1, init=str(paths["weights"])), lr=1e-6, warmup=0)
    run_job(train(tmp_path / "run", [data_dir], cfg))
    tuned, _, _ = load_trained(tmp_path / "run")
    w = "projection.weight"
    assert torch.allclose(tuned.state_dict()[w], start.state_dict()[w], atol=1e-4)


def test_sqrt_sampling_favours_small_folders():
    images = [TrainingImage(f"big/{i}", "big", np.zeros((4, 4, 3), np.uint8)) for i in range(90)]
    images += [TrainingImage(f"small/{i}", "small", np.zeros((4, 4, 3), np.uint8)) for i in range(10)]
    w = sampling_weights(images, "sqrt")
    assert w[90:].sum() == pytest.approx(math.sqrt(10) / (math.sqrt(10) + math.sqrt(90)))
    assert sampling_weights(images, "uniform")[90:].sum() == pytest.approx(0.1)
    with pytest.raises(ValueError):
        sampling_weights(images, "nope")


def test_validation_split_is_disjoint_and_stable():
    images = [TrainingImage(f"x/{i}", "x", np.zeros((4, 4, 3), np.uint8)) for i in range(40)]
    tr, val = split_validation(images, 8)
    assert len(val) == 8 and len(tr) == 32 and not {i.key for i in tr} & {i.key for i in val}
    assert {i.key for i in split_validation(list(reversed(images)), 8)[1]} == {i.key for i in val}
    assert len(split_validation(images[:12], 8)[1]) == 3  # at most a quarter is held out


def test_training_edits_exist_in_the_edit_library():
    from copylens.core.edits import EDITS
    from copylens.core.train.data import SECOND_FAMILIES

    assert set(TRAIN_FAMILIES) == set(EDITS)
    assert set(SECOND_FAMILIES) <= set(EDITS)


# ------------------------------------------------------------------ training runs

def _weights(run: Path) -> dict[str, torch.Tensor]:
    model, _, _ = load_trained(run)
    return model.state_dict()


def test_interrupted_run_resumes_to_the_same_weights(data_dir, tmp_path):
    cfg = tiny_config(steps=6)
    straight = run_job(train(tmp_path / "straight", [data_dir], cfg))
    assert straight.finished and straight.step == 6

    # cancel after 3 steps (between yields): a checkpoint is written, then the same call resumes
    seen = []
    with pytest.raises(Cancelled):
        run_job(train(tmp_path / "resumed", [data_dir], cfg), on_progress=seen.append,
                should_stop=lambda: sum(p.stage == "training" for p in seen) >= 3)
    state = json.loads((tmp_path / "resumed" / checkpoint.STATE_FILE).read_text())
    assert state["step"] == 3
    resumed = run_job(train(tmp_path / "resumed"))  # no data or settings: everything comes from the run
    assert resumed.finished and resumed.step == 6
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert len(list((tmp_path / "resumed").glob("checkpoint-*.safetensors"))) == 1  # old tensors deleted
    hist = json.loads((tmp_path / "resumed" / checkpoint.STATE_FILE).read_text())["history"]
    assert [h["step"] for h in hist if "val_recall1" in h] == [3, 6]


def test_time_budget_pauses_and_other_settings_are_refused(data_dir, tmp_path):
    cfg = tiny_config(steps=50)
    r = run_job(train(tmp_path / "run", [data_dir], cfg, minutes=0.0))
    assert not r.finished and r.step == 1
    with pytest.raises(CheckpointError, match="other settings"):
        run_job(train(tmp_path / "run", [data_dir], replace(cfg, lr=0.5)))
    with pytest.raises(CheckpointError, match="holds no run"):
        run_job(train(tmp_path / "empty"))


def test_damaged_checkpoint_is_reported(data_dir, tmp_path):
    run_job(train(tmp_path / "run", [data_dir], tiny_config(steps=1)))
    tensors = next((tmp_path / "run").glob("checkpoint-*.safetensors"))
    raw = bytearray(tensors.read_bytes())
    raw[-10] ^= 0xFF
    tensors.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged"):
        load_trained(tmp_path / "run")


def test_export_loads_through_the_registry_with_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = CopyNet(ModelConfig(ARCH, dim=16), SIZE).eval()
    export(model, tmp_path, "tiny", SIZE)
    export(model, tmp_path, "tiny16", SIZE, half=True)
    desc = create_descriptor("copylens-tiny", models_dir=tmp_path, device="cpu")
    pictures = [skimage_rgb(n) for n in ("astronaut", "coffee", "camera")]
    ours = embed(model, np.stack([square(p, SIZE) for p in pictures]), torch.device("cpu"))
    np.testing.assert_allclose(desc.extract(pictures).vectors, ours, atol=1e-5)
    half = create_descriptor("copylens-tiny16", models_dir=tmp_path, device="cpu")
    assert (tmp_path / "tiny16.safetensors").stat().st_size < (tmp_path / "tiny.safetensors").stat().st_size * 0.6
    np.testing.assert_allclose(half.extract(pictures).vectors, ours, atol=2e-2)
    assert json.loads((tmp_path / "tiny.json").read_text())["input_size"] == SIZE


# ------------------------------------------------------------------ evaluation and CLI

@pytest.fixture(scope="module")
def mini_bench(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("bench") / "bench"
    run_job(make_benchmark([data_dir / "photos"], out, references=9, queries=6, distractors=3, seed=3,
                           edits=["crop", "color", "mirror_jpeg", "text"]))
    return out


def test_descriptor_alone_on_a_benchmark(mini_bench):
    m = run_job(evaluate_descriptor(create_descriptor("pdq"), mini_bench))
    # PDQ sees through colour changes, mirrors and overlaid text: most copies rank first
    assert m.recall_at_1 >= 0.5
    assert 0.0 <= m.micro_ap <= 1.0


def test_cli_trains_exports_and_evaluates(data_dir, mini_bench, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "run", str(data_dir), "--out", str(run), "--arch", ARCH, "--input-size", str(SIZE),
            "--dim", "16", "--pairs", "4", "--steps", "2", "--eval-every", "2", "--hard-negatives", "0.5",
            "--exclude-unseen", str(mini_bench)]
    assert cli(args) == 0
    assert "step 2/2, finished" in capsys.readouterr().err
    assert cli(["train", "run", "--out", str(run), "--lr", "0.5"]) == 1
    assert "other settings" in capsys.readouterr().err
    assert cli(["train", "export", str(run), "--name", "cli", "--models-dir", str(tmp_path / "m")]) == 0
    assert "copylens-cli" in capsys.readouterr().err
    card = (tmp_path / "m" / "cli.md").read_text()
    assert "test_resnet" in card and "| 2 |" in card and "--steps 2" in card
    assert "50% of each batch are the look-alikes" in card and "--exclude-unseen" in card
    assert cli(["train", "run", str(data_dir), "--out", str(tmp_path / "bad"), "--hard-negatives", "2"]) == 1
    assert "from 0 to 1" in capsys.readouterr().err
    assert cli(["train", "eval", str(mini_bench), "--run", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0.0 <= out["micro_ap"] <= 1.0 and "photo" in out["per_content"]
    d = descriptor_from_run(run)
    assert d.dim == 16
    assert cli(["train", "eval", str(mini_bench)]) == 2
