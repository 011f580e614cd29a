"""Scale distractors (issue 12, core/bench/distractors.py): deterministic, prefix-stable, each source cell
used once, complete provenance, procedural images that differ. Sources are scikit-image's photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from copylens.core.bench import distractors as D
from copylens.core.bench.procedural import PROCEDURAL, recolour
from copylens.core.globaldesc.pdq import PdqDescriptor
from copylens.core.progress import run_job

from conftest import skimage_rgb

SOURCES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "horse", "hubble_deep_field")
SOURCE_HEAVY = {"shapes": (0.2, 0, "png"), "texture": (0.1, 0, "jpg"), "crop": (0.3, 1, "jpg"),
                "mosaic": (0.2, 4, "jpg"), "collage": (0.2, 3, "jpg")}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("sources")
    paths = []
    for name in SOURCES:
        Image.fromarray(skimage_rgb(name)).save(root / f"{name}.png")
        paths.append(root / f"{name}.png")
    Image.new("RGB", (300, 300), (250, 250, 250)).save(root / "blank.png")  # every cell flat: dropped
    return [*paths, root / "blank.png"]


@pytest.fixture(scope="module")
def cells(sources) -> list[D.Cell]:
    return D.cut_cells(sources)[0]


def test_cells_tile_each_source_without_overlap(sources, cells):
    found, dropped = D.cut_cells(sources)
    assert dropped == [(str(sources[-1]), "every cell is nearly flat")]
    for src in sources[:-1]:
        boxes = [c.box for c in found if c.source == str(src)]
        w, h = Image.open(src).size
        assert boxes and all(0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h for x0, y0, x1, y1 in boxes)
        cover = np.zeros((h, w), np.int32)
        for x0, y0, x1, y1 in boxes:
            cover[y0:y1, x0:x1] += 1
        assert cover.max() == 1  # no pixel in two cells
    assert len({c.source for c in found}) == len(SOURCES)
    # astronaut (512 x 512) is cut into 3 x 3 cells of about 170 px at CELL_SIDE 200; none is flat
    assert sum(c.source.endswith("astronaut.png") for c in found) == 9


def test_plan_is_deterministic_and_a_prefix_of_longer_plans(cells):
    long = D.plan(cells, 600, seed=3)
    assert D.plan(cells, 250, seed=3) == long[:250]
    assert D.plan(cells, 600, seed=3) == long
    assert [it.kind for it in D.plan(cells, 600, seed=4)] != [it.kind for it in long]
    assert len({it.file for it in long}) == 600
    assert {it.kind for it in long} >= {"shapes", "texture", "strokes", "text", "gradient"}


def test_every_cell_is_used_at_most_once_and_the_rest_falls_back(cells, monkeypatch):
    monkeypatch.setattr(D, "KINDS", SOURCE_HEAVY)
    items = D.plan(cells, 200, seed=0)
    taken = [c for it in items for c in it.cells]
    assert len(taken) == len(set(taken)) and len(taken) >= len(cells) - 4  # nearly all used, none twice
    for it in items:
        want = {"crop": (1,), "mosaic": (4,), "collage": (2, 3)}.get(it.kind, (0,))
        assert len(it.cells) in want
        assert len({cells[c].source for c in it.cells}) == len(it.cells)  # different source images
    late = items[-50:]  # cells ran out: procedural only
    assert all(not it.cells and it.kind in ("shapes", "texture") for it in late)


def test_make_is_deterministic_resumable_prefix_stable_with_complete_provenance(sources, tmp_path, monkeypatch):
    monkeypatch.setattr(D, "KINDS", SOURCE_HEAVY)  # the parent plans; workers only draw what they are given
    a = run_job(D.make_distractors(sources, tmp_path / "a", 24, seed=5, workers=1))
    assert a.written == 24 and not a.failed and sum(a.composition.values()) == 24
    prov = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert prov["n"] == 24 and [r["index"] for r in prov["items"]] == list(range(24))
    kinds = {r["kind"] for r in prov["items"]}
    assert {"crop", "mosaic", "collage"} & kinds and {"shapes", "texture"} & kinds
    for r in prov["items"]:
        f = tmp_path / "a" / r["file"]
        assert f.exists() and Image.open(f).size == tuple(r["size"]) and r["seed"] == [5, 2, r["index"]]
        assert 400 <= max(r["size"]) <= 800
        if SOURCE_HEAVY[r["kind"]][1]:
            assert r["cells"] and all(Path(c["source"]).exists() and len(c["box"]) == 4 for c in r["cells"])
            assert len(r["recolour"]) == len(r["cells"])
        else:
            assert r["cells"] == []
    cells_json = json.loads((tmp_path / "a" / "cells.json").read_text())
    used = [(c["source"], tuple(c["box"])) for r in prov["items"] for c in r["cells"]]
    assert len(used) == len(set(used)) and set(used) <= {(c["source"], tuple(c["box"])) for c in cells_json["cells"]}

    b = run_job(D.make_distractors(sources, tmp_path / "b", 10, seed=5, workers=1))  # a prefix, made alone
    assert b.written == 10
    for r in prov["items"][:10]:
        assert (tmp_path / "b" / r["file"]).read_bytes() == (tmp_path / "a" / r["file"]).read_bytes()
    first = tmp_path / "a" / prov["items"][3]["file"]
    original = first.read_bytes()
    first.unlink()
    again = run_job(D.make_distractors(sources, tmp_path / "a", 24, seed=5, workers=1))  # resumed
    assert again.written == 1 and first.read_bytes() == original
    assert json.loads((tmp_path / "a" / "provenance.json").read_text()) == prov
    with pytest.raises(ValueError):
        run_job(D.make_distractors(sources, tmp_path / "a", 24, seed=6, workers=1))


def test_procedural_images_differ_from_each_other():
    pdq = PdqDescriptor()
    images = [PROCEDURAL[k](np.random.default_rng([0, s]), 480, 360) for k in PROCEDURAL for s in range(6)]
    assert all(im.shape == (360, 480, 3) and im.dtype == np.uint8 for im in images)
    assert all(im.std() > 5 for im in images)  # not blank
    bits = np.unpackbits(pdq.extract(images).vectors, axis=1).astype(int)
    dist = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    np.fill_diagonal(dist, 256)
    assert dist.min() > 31  # no two within PDQ's match distance
    same = PROCEDURAL["shapes"](np.random.default_rng([0, 1]), 480, 360)
    assert np.array_equal(same, images[1])  # and each is reproducible from its seed


def test_recolour_changes_colours_but_keeps_the_picture():
    px = skimage_rgb("astronaut")
    for s in range(8):
        out, note = recolour(np.random.default_rng(s), px)
        assert out.shape == px.shape and note
        assert np.abs(out.astype(int) - px).mean() > 10
