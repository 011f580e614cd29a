"""Shared fixtures: small real images from scikit-image and a session-wide tiny index built from them."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np
import pytest
from PIL import Image
from skimage import data

# scikit-image's bundled images; "coffee", "motorcycle" and "retina" stay OUT of the index (distractors)
REFERENCE_NAMES = ("astronaut", "chelsea", "rocket", "camera", "coins", "horse", "moon", "page", "text",
                   "brick", "gravel", "immunohistochemistry", "hubble_deep_field", "logo", "clock", "colorwheel")
DISTRACTOR_NAMES = ("coffee", "motorcycle", "retina")


def skimage_rgb(name: str) -> np.ndarray:
    a = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = (a / max(float(a.max()), 1e-9) * 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def write_references(folder: Path, names=REFERENCE_NAMES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.fromarray(skimage_rgb(n)).save(folder / f"{n}.png")
    return folder


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory) -> Path:
    return write_references(tmp_path_factory.mktemp("refs") / "references")


@pytest.fixture(scope="session")
def small_index(tmp_path_factory, reference_dir) -> Path:
    """A calibrated index of the scikit-image references, built once per test session."""
    from copylens.core.index.build import build_index
    from copylens.core.progress import run_job

    out = tmp_path_factory.mktemp("index") / "idx"
    run_job(build_index(reference_dir, out, workers=2, calibration_queries=40))
    return out


@pytest.fixture(scope="session")
def engine(small_index):
    from copylens.core.engine import Engine

    eng = Engine.open(small_index)
    yield eng
    eng.close()
