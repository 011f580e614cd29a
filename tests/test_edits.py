"""The benchmark edit library: determinism, output format, and exact boxes for the box-reporting edits."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from copylens.core.edits import EDITS, MAX_SIDE, Edited, apply_edit, random_edit
from copylens.core.errors import UnknownBackendError

FAMILIES = sorted(EDITS)
BOXED = ["pad", "meme", "screenshot", "paste"]
MAGENTA = (255, 0, 255)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return data.astronaut()[::2, ::2].copy()  # 256 x 256


@pytest.fixture(scope="module")
def background() -> np.ndarray:
    return data.coffee()


def _check(e: Edited, edit: str) -> None:
    assert isinstance(e, Edited)
    assert e.edit == edit
    assert e.pixels.dtype == np.uint8 and e.pixels.ndim == 3 and e.pixels.shape[2] == 3
    assert e.pixels.shape[0] >= 1 and e.pixels.shape[1] >= 1 and max(e.pixels.shape[:2]) <= MAX_SIDE
    if e.box is not None:
        x0, y0, x1, y1 = e.box
        assert 0 <= x0 < x1 <= e.pixels.shape[1] and 0 <= y0 < y1 <= e.pixels.shape[0]


@pytest.mark.parametrize("edit", FAMILIES)
def test_edit_is_deterministic_and_rgb(edit, photo, background):
    a = apply_edit(edit, photo, np.random.default_rng(7), background)
    b = apply_edit(edit, photo, np.random.default_rng(7), background)
    _check(a, edit)
    assert np.array_equal(a.pixels, b.pixels) and a.box == b.box
    # the edit changes the picture (every edit does, for every seed we use)
    assert a.pixels.shape != photo.shape or not np.array_equal(a.pixels, photo)
    # another seed gives another result for edits with random parameters
    if edit not in ("grayscale", "invert"):
        outs = {apply_edit(edit, photo, np.random.default_rng(s), background).pixels.tobytes()
                for s in range(3)}
        assert len(outs) > 1


@pytest.mark.parametrize("edit", FAMILIES)
@pytest.mark.parametrize("shape", [(40, 40), (6, 500), (500, 6), (1, 1), (1500, 1100)])
def test_edit_survives_tiny_and_extreme_images(edit, shape):
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    for seed in range(3):
        _check(apply_edit(edit, img, np.random.default_rng(seed)), edit)


@pytest.mark.parametrize("edit", BOXED)
@pytest.mark.parametrize("seed", range(6))
def test_box_covers_exactly_the_pasted_content(edit, seed, background):
    solid = np.zeros((120, 90, 3), np.uint8)
    solid[:] = MAGENTA
    bg = background.copy()
    bg[..., 0] = np.minimum(bg[..., 0], 200)  # no magenta anywhere in the background
    e = apply_edit(edit, solid, np.random.default_rng(seed), bg)
    _check(e, edit)
    x0, y0, x1, y1 = e.box
    px = e.pixels.astype(int)
    is_mag = (np.abs(px - np.array(MAGENTA)).sum(axis=2) < 40)
    inner = is_mag[y0 + 2:y1 - 2, x0 + 2:x1 - 2]
    assert inner.size > 0 and inner.all()
    # every magenta pixel lies in the box (a 2-pixel tolerance for resampling at the border)
    ys, xs = np.nonzero(is_mag)
    assert xs.min() >= x0 - 2 and xs.max() <= x1 + 1 and ys.min() >= y0 - 2 and ys.max() <= y1 + 1
    # the box is not larger than the content: its border rows / columns are mostly magenta
    assert is_mag[y0 + 1:y1 - 1, x0 + 1].mean() > 0.9 and is_mag[y0 + 1:y1 - 1, x1 - 2].mean() > 0.9
    assert is_mag[y0 + 1, x0 + 1:x1 - 1].mean() > 0.9 and is_mag[y1 - 2, x0 + 1:x1 - 1].mean() > 0.9


def test_paste_size_is_a_fraction_of_the_background(photo, background):
    for seed in range(10):
        e = apply_edit("paste", photo, np.random.default_rng(seed), background)
        x0, y0, x1, y1 = e.box
        h, w = e.pixels.shape[:2]
        frac = max((x1 - x0) / w, (y1 - y0) / h)
        assert 0.18 <= frac <= 0.62
        # the background really is the caller's image (coffee is brown; the texture is not constrained)
        assert e.pixels.shape[1] / e.pixels.shape[0] == pytest.approx(background.shape[1] / background.shape[0],
                                                                      rel=0.02)


def test_combo_reports_combo_and_unknown_names_fail(photo):
    e = apply_edit("combo", photo, np.random.default_rng(3))
    assert e.edit == "combo" and e.box is None
    with pytest.raises(UnknownBackendError, match="crop"):
        apply_edit("sepia", photo, np.random.default_rng(0))
    with pytest.raises(UnknownBackendError):
        random_edit(photo, np.random.default_rng(0), edits=["crop", "nope"])


def test_random_edit_draws_from_the_given_edits(photo):
    rng = np.random.default_rng(1)
    seen = {random_edit(photo, rng, edits=["blur", "invert"]).edit for _ in range(12)}
    assert seen == {"blur", "invert"}
    rng = np.random.default_rng(2)
    assert len({random_edit(photo, rng).edit for _ in range(40)}) > 8


def test_strong_crops_keep_30_to_95_percent(photo):
    fracs = []
    for seed in range(30):
        e = apply_edit("crop", photo, np.random.default_rng(seed))
        fracs.append(e.pixels.shape[0] * e.pixels.shape[1] / (photo.shape[0] * photo.shape[1]))
    assert min(fracs) >= 0.29 and max(fracs) <= 0.96
    assert sum(f <= 0.6 for f in fracs) >= 5  # strong crops do occur
