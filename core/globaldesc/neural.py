"""Neural global descriptors: a CNN/ViT backbone, GeM pooling, optional projection/whitening, L2 norm.

Three ways to get a network, all from local files only (nothing is ever downloaded, nothing unpickled):

* ``timm:<model>[:<weights.safetensors>]`` — ``timm.create_model(model, pretrained=False, num_classes=0,
  global_pool="")`` and, when given, a safetensors state dict (without weights: a seeded random init, only
  useful for tests and speed measurements);
* ``torchscript:<path>`` — ``torch.jit.load`` (TorchScript archives are read by torch's C++ loader);
* ``copylens-<name>`` — ``resources/models/<name>.safetensors`` (keys ``backbone.*`` plus optional
  ``projection.weight`` ``[dim x C]`` / ``projection.bias`` ``[dim]``) and ``<name>.json``:
  ``{"architecture": "<timm name>", "input_size": 288, "dim": 512}`` (``dim``: the output length, after the
  projection if there is one) with optional ``gem_p``, ``mean``, ``std`` (default ImageNet), ``resize``.
  ``<name>.md`` is the human model card.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from ..features import to_gray
from .base import NUM_VARIANTS, DescriptorBatch, ModelLoadError, check_image, config_digest, variant_pixels
from .models import copylens_model_files
from .whitening import Whitening

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("square", "short")


@dataclass(frozen=True)
class NeuralConfig:
    input_size: int = 224           # square side ("square") or shorter side ("short") fed to the network
    resize: str = "square"          # "square": whole image squashed to input_size^2 (no crop: copies keep
    #                                 their borders); "short": shorter side to input_size, aspect kept, longer
    #                                 side capped at 2 * input_size (CNNs only; a ViT needs "square")
    mean: tuple[float, ...] = IMAGENET_MEAN  # per-channel normalisation of RGB in [0, 1]
    std: tuple[float, ...] = IMAGENET_STD
    gem_p: float = 3.0              # GeM exponent over the feature map (1 = average, large = max pooling)
    batch_size: int = 16            # images per forward pass
    # variants extract_query computes (base.variant_pixels), each one more image in the query's forward pass:
    # 5 adds the mirror, 8 the negative. The negative is searched by default: a network's description of a
    # colour-inverted copy is far from its reference's (dev v2's 57 inverted copies: the reference's
    # copylens-sscd18g similarity a median 0, nearest in 13 of them), and the negative's is the reference's
    # again (median 0.78, nearest in all 57), while one distractor's negative in 148 reached 0.3
    # (bench/inverted_global.py; bench/README.md, "Inverted copies and the global descriptor")
    query_variants: tuple[int, ...] = (0, 8)
    # describe the picture's luma only (ITU-R BT.601, replicated to three channels), references and queries
    # alike: a recoloured or greyscaled copy keeps its reference's grey picture, while the colour description
    # of a smooth wallpaper is mostly its colours (registry name suffix "@grey"; see GREY_SUFFIX)
    grey: bool = False


def gem(features: torch.Tensor, p: float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling ``[B x C x H x W] -> [B x C]``: ``mean(clamp(x, eps)^p)^(1/p)``, fixed p."""
    x = features.float().clamp(min=eps)
    return x.pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def pool(output: torch.Tensor, p: float, prefix_tokens: int = 0) -> torch.Tensor:
    """Turn a backbone output into ``[B x C]``: GeM over a ``[B x C x H x W]`` map; a ViT's ``[B x N x C]``
    tokens (signed, so GeM is undefined) are averaged over the patch tokens; ``[B x C]`` passes through."""
    if output.ndim == 4:
        return gem(output, p)
    if output.ndim == 3:
        tokens = output[:, prefix_tokens:] if output.shape[1] > prefix_tokens else output
        return tokens.float().mean(dim=1)
    if output.ndim == 2:
        return output.float()
    raise ModelLoadError(f"the network returned a tensor of shape {tuple(output.shape)}; expected "
                         f"[B x C x H x W], [B x N x C] or [B x C]")


def auto_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class NeuralDescriptor:
    """A torch module wrapped as a :class:`~copylens.core.globaldesc.base.GlobalDescriptor` (metric "ip").

    ``weights_digest`` identifies the weights (sha256 hex); the fingerprint adds the configuration and the
    whitening. On CUDA the network runs in float16 (pooling and normalisation stay in float32).
    """

    batchable = True  # index builds hand it batches of references (core/index/build.py)

    metric = "ip"

    def __init__(self, name: str, module: torch.nn.Module, weights_digest: str, config: NeuralConfig,
                 *, prefix_tokens: int = 0, projection: torch.nn.Linear | None = None,
                 whitening: Whitening | None = None, device: str | None = None, half: bool | None = None):
        if config.resize not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {config.resize!r}; valid: {', '.join(RESIZE_MODES)}")
        bad = [v for v in config.query_variants if not 0 <= v < NUM_VARIANTS]
        if bad:
            raise ValueError(f"query variants {bad} are not in 0..{NUM_VARIANTS - 1}")
        self.name, self.config, self.whitening = name, config, whitening
        self.device = auto_device(device)
        self.half = (self.device.type == "cuda") if half is None else half
        dtype = torch.float16 if self.half else torch.float32
        self.module = module.eval().to(self.device, dtype)
        self.projection = projection.eval().to(self.device) if projection is not None else None
        self.prefix_tokens = prefix_tokens
        self._weights_digest = weights_digest
        self._dtype = dtype
        self._mean = torch.tensor(config.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(config.std, device=self.device).view(1, 3, 1, 1)
        probe = np.zeros((config.input_size, config.input_size, 3), np.uint8)
        self.network_dim = int(self._forward([probe], whiten=False).shape[1])
        self.dim = whitening.dim if whitening is not None else self.network_dim
        if whitening is not None and whitening.input_dim != self.network_dim:
            raise ValueError(f"the whitening expects {whitening.input_dim}-d input; the network gives "
                             f"{self.network_dim}-d")

    def fingerprint(self) -> str:
        cfg = asdict(self.config)
        for key in ("batch_size", "query_variants"):  # they do not change reference descriptors
            cfg.pop(key)
        if not cfg["grey"]:
            cfg.pop("grey")  # the colour view keeps the fingerprint it had before the grey view existed
        cfg.update(kind="neural", weights=self._weights_digest, prefix_tokens=self.prefix_tokens)
        extra = [self.whitening.digest().encode()] if self.whitening is not None else []
        return config_digest(cfg, *extra)

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        """The network's input: the image resized (and its luma when ``config.grey``), uint8 RGB."""
        small = self._resize(image)
        return luma3(small) if self.config.grey else small

    def _resize(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        s = self.config.input_size
        if self.config.resize == "square":
            size = (s, s)
        else:
            scale = s / min(h, w)
            size = (min(2 * s, max(1, round(w * scale))), min(2 * s, max(1, round(h * scale))))
        interp = cv2.INTER_AREA if size[0] * size[1] < w * h else cv2.INTER_LINEAR
        return cv2.resize(image, size, interpolation=interp)

    @torch.inference_mode()
    def _run(self, arrays: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(arrays)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        x = ((x - self._mean) / self._std).to(self._dtype)
        v = pool(self.module(x), self.config.gem_p, self.prefix_tokens)
        if self.projection is not None:
            v = self.projection(v)
        return v.float()

    def _forward(self, images: Sequence[np.ndarray], whiten: bool = True) -> np.ndarray:
        return self._forward_prepared([self._prepare(check_image(im)) for im in images], whiten)

    def _forward_prepared(self, prepared: list[np.ndarray], whiten: bool = True) -> np.ndarray:
        out: list[np.ndarray | None] = [None] * len(prepared)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(prepared):
            groups.setdefault(a.shape, []).append(i)
        bs = max(1, self.config.batch_size)
        for idx in groups.values():
            for start in range(0, len(idx), bs):
                chunk = idx[start:start + bs]
                vecs = self._run([prepared[i] for i in chunk]).cpu().numpy()
                for i, v in zip(chunk, vecs, strict=True):
                    out[i] = v
        v = _l2(np.stack(out).astype(np.float32))
        if whiten and self.whitening is not None:
            return self.whitening.apply(v)  # fitted on L2-normalised descriptors; normalises again
        return v

    def _batch(self, prepared: list[np.ndarray], variant: Sequence[int]) -> DescriptorBatch:
        """Descriptors of prepared images; a flat one (:func:`is_flat`) is flagged unreliable, quality 0."""
        flat = np.array([is_flat(a) for a in prepared], bool)
        return DescriptorBatch(self._forward_prepared(prepared), (~flat).astype(np.float32),
                               np.asarray(variant, dtype=np.int64), flat)

    def extract(self, images: Sequence[np.ndarray]) -> DescriptorBatch:
        if len(images) == 0:
            return DescriptorBatch.empty(self.dim, self.metric)
        return self._batch([self._prepare(check_image(im)) for im in images], range(len(images)))

    def extract_query(self, image: np.ndarray) -> DescriptorBatch:
        image = check_image(image)
        variants = list(self.config.query_variants)
        return self._batch([self._prepare(variant_pixels(image, k)) for k in variants], variants)


# A network describes a flat image too, and every flat image alike: a blank white reference (one in dev v2's
# 3,316, a Tux Paint stamp drawn white on white) was the nearest neighbour of nearly blank queries, a
# blank print photographed at an angle scoring 0.94 against it. Below this spread of every colour channel
# (0-255, at the network's input size) an image is one flat colour and its descriptor is not used, as PDQ
# does below its quality 50. Dev v2's next flattest reference spreads 8.8 (a glass drawn in thin grey lines).
FLAT_SPREAD = 2.0


def luma3(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 image's BT.601 luma (the grey SIFT sees, features.to_gray) as three equal channels."""
    return cv2.cvtColor(to_gray(image), cv2.COLOR_GRAY2RGB)


def is_flat(image: np.ndarray) -> bool:
    """True for an image that is one flat colour: no channel's standard deviation reaches FLAT_SPREAD."""
    return bool(image.reshape(-1, image.shape[-1]).std(axis=0).max() < FLAT_SPREAD)


def _l2(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32)


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes (independent of the file layout)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file not found")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc})") from exc


def _timm_backbone(architecture: str):
    import timm

    if not timm.is_model(architecture):
        near = difflib.get_close_matches(architecture, timm.list_models(), n=8, cutoff=0.6)
        raise ModelLoadError(f"timm has no model {architecture!r}" + (f"; close: {', '.join(near)}" if near
                                                                       else "; see timm.list_models()"))
    return timm.create_model(architecture, pretrained=False, num_classes=0, global_pool="")


def _fill(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, architecture: str) -> None:
    classifier = str(getattr(model, "pretrained_cfg", {}).get("classifier") or "\0")
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.startswith(classifier)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise ModelLoadError(
            f"{source}: the weights do not fit timm {architecture!r}: {len(missing)} missing "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(wrong)} of wrong shape "
            f"{wrong[:3]}")
    model.load_state_dict(state, strict=True)


def _config(model: torch.nn.Module, kw: dict) -> NeuralConfig:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    base = NeuralConfig(input_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
                        mean=tuple(cfg.get("mean", IMAGENET_MEAN)), std=tuple(cfg.get("std", IMAGENET_STD)))
    fields = {k: kw.pop(k) for k in list(kw) if k in NeuralConfig.__dataclass_fields__}
    return replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def load_timm(name: str, architecture: str, weights: str | None, **kw) -> NeuralDescriptor:
    """``timm:<architecture>[:<weights.safetensors>]``; keyword arguments override :class:`NeuralConfig`
    fields and pass ``device``, ``half``, ``whitening`` on."""
    if weights:
        model = _timm_backbone(architecture)
        _fill(model, _load_safetensors(Path(weights)), Path(weights), architecture)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # a random init that is the same every time, so the fingerprint holds
            model = _timm_backbone(architecture)
    config = _config(model, kw)
    return NeuralDescriptor(name, model, state_digest(model.state_dict()), config,
                            prefix_tokens=int(getattr(model, "num_prefix_tokens", 0)), **kw)


def load_torchscript(name: str, path: str, **kw) -> NeuralDescriptor:
    """``torchscript:<path>``: a scripted/traced module mapping ``[B x 3 x S x S]`` to features."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: TorchScript file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch marks TorchScript as deprecated
            module = torch.jit.load(str(p), map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(f"{p}: not a TorchScript archive ({exc})") from exc
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    config = _config(torch.nn.Module(), kw)
    return NeuralDescriptor(name, module, digest, config, **kw)


def load_copylens(name: str, model: str, directory: Path | None = None, **kw) -> NeuralDescriptor:
    """``copylens-<model>``: the project's own descriptor from the models directory."""
    weights, card = copylens_model_files(model, directory)
    try:
        meta = json.loads(card.read_text(encoding="utf-8"))
        architecture, input_size, dim = str(meta["architecture"]), int(meta["input_size"]), int(meta["dim"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{card}: needs JSON with architecture, input_size and dim ({exc})") from exc
    state = _load_safetensors(weights)
    backbone = _timm_backbone(architecture)
    _fill(backbone, {k[9:]: v for k, v in state.items() if k.startswith("backbone.")}, weights, architecture)
    projection = None
    if "projection.weight" in state:
        w = state["projection.weight"]
        b = state.get("projection.bias")
        projection = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        projection.load_state_dict({"weight": w, **({"bias": b} if b is not None else {})})
    for key, default in (("gem_p", 3.0), ("mean", IMAGENET_MEAN), ("std", IMAGENET_STD), ("resize", "square")):
        kw.setdefault(key, meta.get(key, default))
    kw["input_size"] = input_size
    config = _config(backbone, kw)
    desc = NeuralDescriptor(name, backbone, state_digest(state), config, projection=projection,
                            prefix_tokens=int(getattr(backbone, "num_prefix_tokens", 0)), **kw)
    if desc.network_dim != dim:
        raise ModelLoadError(f"{card}: says dim {dim}, but the network gives {desc.network_dim}")
    return desc
