"""Salt-and-pepper noise: isolated impulses are found and removed, line art and text are left alone, and a
flat icon buried in impulse noise is found by the query's cleaned second search."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from skimage import data
from test_graphics import _icon

from copylens.core.denoise import isolated_impulses, remove_impulses
from copylens.core.engine import Engine, QueryConfig
from copylens.core.imageio import from_array
from copylens.core.index.build import build_index
from copylens.core.progress import run_job

from conftest import write_references


def _salt_and_pepper(a: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = a.copy()
    m = rng.random(a.shape[:2])
    out[m < share / 2] = 0
    out[m > 1 - share / 2] = 255
    return out


def _flat_icon(side: int = 128) -> np.ndarray:
    icon = Image.new("RGB", (128, 128), (255, 255, 255))
    icon.paste(_icon(0), (0, 0), _icon(0))
    return np.asarray(icon.resize((side, side), Image.Resampling.LANCZOS))


def test_line_art_and_text_have_no_isolated_impulses():
    img = Image.new("RGB", (300, 200), (255, 255, 255))
    d = ImageDraw.Draw(img)
    for k in range(0, 300, 12):  # one-pixel lines, a grid and a diagonal
        d.line([(k, 0), (k, 199)], fill=(0, 0, 0), width=1)
    d.line([(0, 0), (299, 199)], fill=(0, 0, 0), width=1)
    px = np.asarray(img)
    assert isolated_impulses(px).sum() == 0
    assert remove_impulses(px) is px  # a clean image is returned as it is
    d.text((20, 80), "Hello, line art: 1 l i . , ;", fill=(0, 0, 0))
    px = np.asarray(img)
    # a bitmap font's dots (i, full stops) are isolated pixels: a few, far below the share that cleans
    assert 0 < isolated_impulses(px).sum() < 20 and remove_impulses(px) is px
    photo = data.astronaut()
    assert isolated_impulses(photo).mean() < 0.0005 and remove_impulses(photo) is photo


def test_impulses_are_found_and_removed():
    clean = _flat_icon()
    noisy = _salt_and_pepper(clean, 0.04)
    found = isolated_impulses(noisy)
    changed = np.any(np.abs(noisy.astype(int) - clean) > 80, axis=2)  # impulses that stand out
    # most of them (not those next to another impulse or on a dark outline), and nothing else
    assert found.sum() > 0.6 * changed.sum() and not (found & ~changed).any()
    cleaned = remove_impulses(noisy)
    err_before = np.abs(noisy.astype(int) - clean).mean()
    err_after = np.abs(cleaned.astype(int) - clean).mean()
    assert err_after < 0.4 * err_before
    assert np.array_equal(cleaned[~found], noisy[~found])  # nothing but the impulses changes


def test_a_flat_icon_under_impulse_noise_is_found_by_the_cleaned_search(tmp_path):
    refs = write_references(tmp_path / "refs", ("astronaut", "chelsea", "rocket", "camera", "coins"))
    Image.fromarray(_flat_icon()).save(refs / "icon.png")
    run_job(build_index(refs, tmp_path / "idx", workers=2, calibrate=False))
    query = from_array(_salt_and_pepper(_flat_icon(160), 0.06, seed=3))
    with Engine.open(tmp_path / "idx") as eng:
        result = run_job(eng.query(query))
    assert "denoised" in [r.kind for r in result.regions]
    best = result.best
    assert best is not None and best.reference_id == "icon"
    assert best.evidence.region is not None and best.evidence.region.kind == "denoised"
    with Engine.open(tmp_path / "idx", QueryConfig(impulse_share=0)) as eng:
        plain = run_job(eng.query(query))
    assert "denoised" not in [r.kind for r in plain.regions]
    got = {m.reference_id: m for m in plain.matches}
    # without it the noise's own keypoints bury the icon's: far fewer inliers
    assert "icon" not in got or got["icon"].num_inliers < best.num_inliers / 2
