"""Neural backends: GeM, timm + safetensors, TorchScript, the own copylens-<name> kind, whitening, CUDA,
and proof that nothing is unpickled. Models are timm's tiny random-init test networks made in the test."""

from __future__ import annotations

import json
import pickle  # noqa: TID251 -- imported only to make every unpickling entry point fail

import numpy as np
import pytest
import torch
from skimage import data

from copylens.core.globaldesc import ModelLoadError, create_descriptor
from copylens.core.globaldesc.neural import gem, pool
from copylens.core.globaldesc.whitening import Whitening

timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # torch deprecates TorchScript

ARCH = "test_resnet"  # 0.37 M parameters, 160 px default input, 96-d features
SIZE = 160


def _images() -> list[np.ndarray]:
    rgb = np.ascontiguousarray(data.astronaut()[::3, ::3])           # 171 x 171
    cam = np.repeat(data.camera()[::4, ::4, None], 3, axis=2)         # 128 x 128
    coffee = np.ascontiguousarray(data.coffee()[::2, ::2])            # 200 x 300
    return [rgb, np.ascontiguousarray(cam), coffee]


def _backbone(seed: int, arch: str = ARCH, **kw) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):  # seeded without touching other tests' random state
        torch.manual_seed(seed)
        return timm.create_model(arch, pretrained=False, num_classes=0, global_pool="", **kw).eval()


def _reference(model: torch.nn.Module, image: np.ndarray, projection=None) -> np.ndarray:
    """The descriptor computed by hand: an image already input-sized, model's mean/std, GeM p=3, L2."""
    assert image.shape[:2] == (SIZE, SIZE)
    cfg = model.pretrained_cfg
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        f = model(x)
        v = f.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)
        if projection is not None:
            v = projection(v)
    v = v[0].numpy()
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def square() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[100:100 + SIZE, 150:150 + SIZE])


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    model = _backbone(seed=1)
    path = tmp_path_factory.mktemp("w") / "resnet.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(path))
    return model, path


def test_gem_known_answers():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 5, 4, 3, generator=g) + 0.5  # in [0.5, 1.5]: x**60 stays far from float32 underflow
    assert torch.allclose(gem(x, p=1.0), x.mean(dim=(2, 3)), atol=1e-6)
    big = gem(x, p=60.0)
    mx = x.amax(dim=(2, 3))
    # max * (1/12)**(1/60) <= GeM_60 <= max over the 12 positions: within 4.1% of the max
    assert torch.all(big <= mx + 1e-5) and torch.all(big >= 0.95 * mx)
    assert torch.all(gem(x, 3.0) > gem(x, 1.0))
    tokens = torch.randn(2, 7, 5, generator=g)
    assert torch.allclose(pool(tokens, 3.0, prefix_tokens=1), tokens[:, 1:].mean(dim=1))


def test_timm_safetensors_equals_hand_computation(weights, square):
    model, path = weights
    desc = create_descriptor(f"timm:{ARCH}:{path}", device="cpu")
    assert desc.metric == "ip" and desc.dim == model.num_features and desc.device.type == "cpu"
    got = desc.extract([square]).vectors[0]
    assert np.allclose(got, _reference(model, square), atol=1e-5)
    # the same file loaded twice: same fingerprint; random init (no weights): another one
    again = create_descriptor(f"timm:{ARCH}:{path}", device="cpu")
    assert again.fingerprint() == desc.fingerprint()
    assert create_descriptor(f"timm:{ARCH}", device="cpu").fingerprint() != desc.fingerprint()
    assert create_descriptor(f"timm:{ARCH}:{path}", input_size=128).fingerprint() != desc.fingerprint()


def test_batches_sizes_and_shapes_do_not_change_results(weights):
    _, path = weights
    imgs = _images()
    for resize in ("square", "short"):
        one = create_descriptor(f"timm:{ARCH}:{path}", batch_size=1, resize=resize)
        many = create_descriptor(f"timm:{ARCH}:{path}", batch_size=16, resize=resize)
        a = one.extract(imgs)
        b = many.extract(imgs + [imgs[0]])
        assert a.vectors.shape == (3, one.dim) and a.variant.tolist() == [0, 1, 2]
        assert np.allclose(a.vectors, b.vectors[:3], atol=1e-5)
        assert np.allclose(b.vectors[3], b.vectors[0], atol=1e-6)
        assert np.allclose(np.linalg.norm(b.vectors, axis=1), 1.0, atol=1e-5)
        assert (a.quality == 1).all()
    assert create_descriptor(f"timm:{ARCH}:{path}").extract([]).vectors.shape == (0, one.dim)


def test_query_variants_undo_the_mirror_and_the_negative(weights):
    _, path = weights
    desc = create_descriptor(f"timm:{ARCH}:{path}", query_variants=(0, 5, 8))
    img = _images()[2]
    ref = desc.extract([img]).vectors[0]
    q = desc.extract_query(np.ascontiguousarray(img[:, ::-1]))
    assert q.variant.tolist() == [0, 5, 8]
    assert np.allclose(q.vectors[1], ref, atol=1e-5)
    assert not np.allclose(q.vectors[0], ref, atol=1e-3)
    neg = desc.extract_query(255 - img)
    assert np.allclose(neg.vectors[2], ref, atol=1e-5) and not np.allclose(neg.vectors[0], ref, atol=1e-3)
    with pytest.raises(ValueError, match="query variants"):
        create_descriptor(f"timm:{ARCH}:{path}", query_variants=(16,))


def test_wrong_weights_are_refused(tmp_path, weights):
    other = _backbone(seed=0, arch="test_efficientnet")
    path = tmp_path / "eff.safetensors"
    safetensors_torch.save_file(other.state_dict(), str(path))
    with pytest.raises(ModelLoadError, match="do not fit"):
        create_descriptor(f"timm:{ARCH}:{path}")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="safetensors"):
        create_descriptor(f"timm:{ARCH}:{tmp_path / 'junk.safetensors'}")
    with pytest.raises(ModelLoadError, match="no model"):
        create_descriptor("timm:no_such_net_xyz")


def test_classifier_weights_in_the_file_are_ignored(tmp_path, square):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        with_head = timm.create_model(ARCH, pretrained=False, num_classes=7).eval()
    path = tmp_path / "head.safetensors"
    safetensors_torch.save_file(with_head.state_dict(), str(path))
    desc = create_descriptor(f"timm:{ARCH}:{path}")
    features = _backbone(0)
    features.load_state_dict({k: v for k, v in with_head.state_dict().items() if not k.startswith("fc.")})
    assert np.allclose(desc.extract([square]).vectors[0], _reference(features, square), atol=1e-5)


def test_torchscript_matches_timm_backend(tmp_path, weights):
    model, path = weights
    traced = torch.jit.trace(model, torch.zeros(1, 3, SIZE, SIZE))
    ts_path = tmp_path / "net.pt"
    traced.save(str(ts_path))
    cfg = model.pretrained_cfg
    ts = create_descriptor(f"torchscript:{ts_path}", input_size=SIZE, mean=cfg["mean"], std=cfg["std"])
    tm = create_descriptor(f"timm:{ARCH}:{path}")
    imgs = _images()
    assert ts.dim == tm.dim
    assert np.allclose(ts.extract(imgs).vectors, tm.extract(imgs).vectors, atol=1e-5)
    again = create_descriptor(f"torchscript:{ts_path}", input_size=SIZE, mean=cfg["mean"], std=cfg["std"])
    assert again.fingerprint() == ts.fingerprint()
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(ModelLoadError, match="TorchScript"):
        create_descriptor(f"torchscript:{tmp_path / 'bad.pt'}")


def _write_copylens_model(directory, seed=5, dim=24):
    backbone = _backbone(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        projection = torch.nn.Linear(backbone.num_features, dim).eval()
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state.update({"projection.weight": projection.weight.detach(), "projection.bias": projection.bias.detach()})
    safetensors_torch.save_file(state, str(directory / "mini.safetensors"))
    cfg = backbone.pretrained_cfg
    (directory / "mini.json").write_text(json.dumps(
        {"architecture": ARCH, "input_size": SIZE, "dim": dim,
         "mean": list(cfg["mean"]), "std": list(cfg["std"])}))
    (directory / "mini.md").write_text("# mini\nA test model.\n")
    return backbone, projection


def test_copylens_kind_from_a_resources_dir(tmp_path, square):
    backbone, projection = _write_copylens_model(tmp_path)
    desc = create_descriptor("copylens-mini", models_dir=tmp_path)
    assert desc.name == "copylens-mini" and desc.dim == 24
    assert np.allclose(desc.extract([square]).vectors[0], _reference(backbone, square, projection), atol=1e-5)
    with pytest.raises(ModelLoadError, match="copylens-mini"):
        create_descriptor("copylens-other", models_dir=tmp_path)
    card = json.loads((tmp_path / "mini.json").read_text())
    (tmp_path / "mini.json").write_text(json.dumps({**card, "dim": 5}))
    with pytest.raises(ModelLoadError, match="dim 5"):
        create_descriptor("copylens-mini", models_dir=tmp_path)


def test_whitening_known_answer(tmp_path):
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((6, 6)) * np.array([5, 3, 1, 0.5, 0.2, 0.1])
    x = rng.standard_normal((400, 6)) @ mixing + rng.standard_normal(6) * 4
    w = Whitening.fit(x)
    y = w.apply(x, normalize=False)
    assert w.dim == 6 and w.input_dim == 6
    assert np.allclose(y.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(np.cov(y, rowvar=False), np.eye(6), atol=1e-3)
    assert np.allclose(np.linalg.norm(w.apply(x), axis=1), 1, atol=1e-5)
    w3 = Whitening.fit(x, dim=3)
    assert np.allclose(np.cov(w3.apply(x, normalize=False), rowvar=False), np.eye(3), atol=1e-3)
    assert Whitening.fit(x[:4]).dim == 3  # rank of 4 centred points
    w.save(tmp_path / "white.npz")
    back = Whitening.load(tmp_path / "white.npz")
    assert back.digest() == w.digest() and np.array_equal(back.apply(x), w.apply(x))
    with pytest.raises(ValueError, match="at least 2"):
        Whitening.fit(x[:1])


def test_whitening_inside_a_descriptor(weights):
    _, path = weights
    plain = create_descriptor(f"timm:{ARCH}:{path}")
    refs = plain.extract(_images() * 4).vectors  # 12 rows: rank 2 once centred (3 distinct images)
    w = Whitening.fit(refs, dim=2)
    white = create_descriptor(f"timm:{ARCH}:{path}", whitening=w)
    assert white.dim == 2 and white.fingerprint() != plain.fingerprint()
    assert np.allclose(white.extract(_images()).vectors, w.apply(plain.extract(_images()).vectors), atol=1e-4)


def test_nothing_is_unpickled(monkeypatch, tmp_path, weights):
    model, path = weights
    traced = torch.jit.trace(model, torch.zeros(1, 3, SIZE, SIZE))
    traced.save(str(tmp_path / "net.pt"))
    _write_copylens_model(tmp_path)
    Whitening.fit(np.random.default_rng(1).standard_normal((20, 4))).save(tmp_path / "w.npz")

    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    img = _images()[:1]
    assert len(create_descriptor(f"timm:{ARCH}:{path}").extract(img)) == 1
    assert len(create_descriptor(f"torchscript:{tmp_path / 'net.pt'}", input_size=SIZE).extract(img)) == 1
    assert len(create_descriptor("copylens-mini", models_dir=tmp_path).extract(img)) == 1
    assert Whitening.load(tmp_path / "w.npz").dim == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_half_matches_cpu(weights):
    _, path = weights
    gpu = create_descriptor(f"timm:{ARCH}:{path}")  # automatic: CUDA + float16
    cpu = create_descriptor(f"timm:{ARCH}:{path}", device="cpu")
    assert gpu.device.type == "cuda" and gpu.half
    a, b = gpu.extract(_images()).vectors, cpu.extract(_images()).vectors
    assert a.dtype == np.float32 and np.allclose(a, b, atol=2e-2)
    assert gpu.fingerprint() == cpu.fingerprint()


def test_a_flat_image_has_no_reliable_descriptor(weights):
    """One flat colour (even JPEG-compressed) is flagged unreliable, as PDQ flags featureless hashes; a white
    page with one thin grey line, a photo and every query variant of them are not."""
    import io

    from PIL import Image

    from copylens.core.globaldesc.neural import is_flat

    _, path = weights
    desc = create_descriptor(f"timm:{ARCH}:{path}", query_variants=(0, 5, 8))
    white = np.full((200, 260, 3), 255, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.full((200, 260, 3), (40, 90, 160), np.uint8)).save(buf, "JPEG", quality=30)
    blue = np.asarray(Image.open(buf).convert("RGB"))
    line = white.copy()
    line[20:180, 128:130] = 150  # a line drawing's thinnest stroke
    b = desc.extract([white, blue, line, _images()[0]])
    assert b.low_quality.tolist() == [True, True, False, False] and b.quality.tolist() == [0, 0, 1, 1]
    assert desc.extract_query(blue).low_quality.all() and not desc.extract_query(line).low_quality.any()
    assert is_flat(white) and not is_flat(line)


def test_grey_view_is_the_network_on_the_luma(weights, square):
    """``<name>@grey``: the same network on the BT.601 luma (three equal channels), references and queries
    alike, with its own fingerprint; a greyscaled copy is then described exactly as its reference."""
    from copylens.core.errors import UnknownBackendError
    from copylens.core.globaldesc import validate_name

    model, path = weights
    colour = create_descriptor(f"timm:{ARCH}:{path}")
    grey = create_descriptor(f"timm:{ARCH}:{path}@grey")
    assert grey.name == f"timm:{ARCH}:{path}@grey" and grey.config.grey and not colour.config.grey
    assert grey.fingerprint() != colour.fingerprint()
    y = np.rint(square.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    by_hand = _reference(model, np.ascontiguousarray(np.repeat(y[..., None], 3, axis=2)))
    assert np.allclose(grey.extract([square]).vectors[0], by_hand, atol=1e-5)
    assert not np.allclose(colour.extract([square]).vectors[0], by_hand, atol=1e-3)
    greyscaled = np.ascontiguousarray(np.repeat(y[..., None], 3, axis=2))
    assert np.allclose(grey.extract_query(greyscaled).vectors[0], grey.extract([square]).vectors[0], atol=1e-5)
    assert validate_name("copylens-sscd18g@grey") == "copylens-sscd18g@grey"
    for bad in ("pdq@grey", "none@grey"):
        with pytest.raises(UnknownBackendError, match="@grey"):
            create_descriptor(bad)
        with pytest.raises(UnknownBackendError):
            validate_name(bad)


def test_the_shipped_models_fingerprint_is_unchanged():
    """Indexes built with copylens-sscd18g keep opening: its fingerprint is the one they store (a new
    NeuralConfig field at its default, like ``grey``, must not change it)."""
    desc = create_descriptor("copylens-sscd18g", device="cpu")
    assert desc.fingerprint() == "cccab493342358bbbb60471e629ffe5398240a305d252f7a962791be3aa4d0df"
