"""One query entry point: a path, its bytes and its decoded array give the same answer, and the window
gets exactly what the CLI gets."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from copylens.core.errors import ImageLoadError
from copylens.core.imageio import read_image_file
from copylens.core.progress import run_job
from copylens.core.query_input import QuerySource, read_query

from conftest import skimage_rgb


@pytest.fixture(scope="module")
def edited_copy(tmp_path_factory) -> Path:
    """A rotated, cropped JPEG of the astronaut, larger than query_max_side (so decoding matters)."""
    img = Image.fromarray(skimage_rgb("astronaut")).resize((1100, 1100)).rotate(9, fillcolor=(255, 255, 255))
    path = tmp_path_factory.mktemp("q") / "astro_edit.jpg"
    img.crop((80, 60, 1000, 1050)).save(path, quality=88)
    return path


def _same(a, b) -> None:
    assert [m.reference_id for m in a.matches] == [m.reference_id for m in b.matches]
    assert [round(m.score, 9) for m in a.matches] == [round(m.score, 9) for m in b.matches]
    for ma, mb in zip(a.matches, b.matches, strict=True):
        np.testing.assert_array_equal(ma.evidence.query_points, mb.evidence.query_points)
    assert a.regions == b.regions and a.image_size == b.image_size


def test_path_bytes_and_array_give_the_same_result(engine, edited_copy):
    data = edited_copy.read_bytes()
    by_path = run_job(engine.search(edited_copy))
    by_bytes = run_job(engine.search(data, query_id="astro_edit"))
    assert by_path.best.reference_id == "astronaut" and by_path.query_id == "astro_edit"
    _same(by_path, by_bytes)
    assert by_path.query_sha256 == by_bytes.query_sha256 == hashlib.sha256(data).hexdigest()
    # an array of the pixels the engine decoded is the same query too
    pixels = read_query(QuerySource.of(edited_copy), engine.config.query_max_side).image.pixels
    by_array = run_job(engine.search(pixels))
    assert by_array.best.reference_id == "astronaut"
    assert [m.reference_id for m in by_array.matches[:1]] == [m.reference_id for m in by_path.matches[:1]]


def test_window_and_cli_see_the_same_pixels(engine, small_index, edited_copy, tmp_path):
    from copylens.app.jobs import QueryRequest, query_job

    out = run_job(query_job(engine, QueryRequest("q1", edited_copy.name, path=str(edited_copy)), top_k=5))
    cli = subprocess.run([sys.executable, "-m", "copylens.core", "query", str(small_index), str(edited_copy),
                          "--top-k", "5", "--format", "csv"], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    rows = [line.split(",") for line in cli.stdout.strip().splitlines()[1:]]
    assert [r[1] for r in rows] == [m.reference_id for m in out.result.matches]
    assert [float(r[2]) for r in rows] == pytest.approx([m.score for m in out.result.matches], abs=1e-6)


def test_query_source_needs_exactly_one_input():
    with pytest.raises(ValueError):
        QuerySource("x")
    with pytest.raises(ValueError):
        QuerySource("x", path="a.jpg", data=b"1")
    with pytest.raises(TypeError):
        QuerySource.of(3.5)


def test_special_files_are_refused_before_reading(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageLoadError, match="not a regular file"):
        read_image_file(fifo)  # would block forever if opened
    zero = tmp_path / "zero.jpg"
    zero.symlink_to("/dev/zero")
    with pytest.raises(ImageLoadError, match="not a regular file"):
        read_image_file(zero)  # would never end
    with pytest.raises(ImageLoadError, match="is a folder"):
        read_image_file(tmp_path)


def test_unique_query_ids_for_shared_stems():
    from copylens.core.cli import unique_query_ids

    files = [Path("a/x.jpg"), Path("a/x.png"), Path("a/y.jpg"), Path("b/x.png")]
    assert unique_query_ids(files) == {Path("a/x.jpg"): "x.jpg", Path("a/x.png"): "a/x.png",
                                       Path("a/y.jpg"): "y", Path("b/x.png"): "b/x.png"}
