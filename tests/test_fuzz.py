"""Fuzz tests (Hypothesis) of the two places hostile bytes enter: the image loader and the index opener.

Each either succeeds with a well-formed result or raises CopyLens's own typed error (``ImageLoadError``,
``IndexFormatError``...), never anything else. In CI they run briefly and reproducibly (derandomised);
for a longer, random run:

    COPYLENS_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz.py -q
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from copylens.core.engine import Engine
from copylens.core.errors import CopyLensError, ImageLoadError
from copylens.core.imageio import DecodedImage, load_image_bytes
from copylens.core.index import MANIFEST
from copylens.core.index.build import build_index
from copylens.core.progress import run_job

from conftest import skimage_rgb, write_references

_ON_DEMAND = "COPYLENS_FUZZ_EXAMPLES" in os.environ
fuzz = settings(max_examples=int(os.environ.get("COPYLENS_FUZZ_EXAMPLES", "60")), deadline=None,
                derandomize=not _ON_DEMAND, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(skimage_rgb("chelsea")[::8, ::8].copy()).save(buf, format=fmt)
    return buf.getvalue()


SAMPLES = {fmt: _encoded(fmt) for fmt in FORMATS}


def _well_formed(img: DecodedImage) -> None:
    assert img.pixels.dtype == np.uint8 and img.pixels.ndim == 3 and img.pixels.shape[2] == 3
    assert img.pixels.shape[0] >= 1 and img.pixels.shape[1] >= 1
    assert all(s >= 1 for s in img.original_size)


def _load(data: bytes) -> None:
    try:
        img = load_image_bytes(data, "fuzz", max_side=512)
    except ImageLoadError as exc:
        assert exc.reason  # a readable reason, not an empty message
        return
    _well_formed(img)


@fuzz
@given(st.binary(max_size=4096))
def test_any_bytes_load_or_fail_cleanly(data):
    _load(data)


@fuzz
@given(fmt=st.sampled_from(FORMATS),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=6),
       cut=st.none() | st.floats(0, 1))
def test_damaged_images_load_or_fail_cleanly(fmt, flips, cut):
    data = bytearray(SAMPLES[fmt])
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    if cut is not None:
        data = data[: int(cut * len(data))]
    _load(bytes(data))


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (the data stays tiny): a decompression-bomb shape."""
    data = bytearray(SAMPLES["PNG"])
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


@fuzz
@given(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_declared_sizes_never_exhaust_memory(width, height):
    _load(_png_with_size(width, height))


# --- the index opener --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-index")
    refs = write_references(root / "refs", ("astronaut", "chelsea", "rocket"))
    run_job(build_index(refs, root / "idx", workers=1, calibrate=False))
    return root / "idx"


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True)
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)


def _open_and_query(idx: Path) -> None:
    try:
        with Engine.open(idx) as eng:
            result = run_job(eng.search(skimage_rgb("chelsea")[30:250, 40:380].copy(), query_id="q"))
            assert all(0.0 <= m.score <= 1.0 for m in result.matches)
    except CopyLensError as exc:
        assert str(exc)


def _paths(manifest: dict) -> list[tuple[str, ...]]:
    out = []
    for k, v in manifest.items():
        out.append((k,))
        if isinstance(v, dict):
            out.extend((k, k2) for k2 in v)
    return sorted(out)


@fuzz
@given(data=st.data())
def test_a_damaged_manifest_opens_or_fails_cleanly(pristine, data):
    manifest = json.loads((pristine / MANIFEST).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        idx = Path(tmp) / "idx"
        shutil.copytree(pristine, idx)
        for _ in range(data.draw(st.integers(1, 3))):
            path = data.draw(st.sampled_from(_paths(manifest)))
            target = manifest
            for key in path[:-1]:
                target = target[key]
            if data.draw(st.booleans()):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = data.draw(JSON)
            if not isinstance(manifest.get(path[0]), dict) and len(path) > 1:
                break
        (idx / MANIFEST).write_text(json.dumps(manifest))
        _open_and_query(idx)


@fuzz
@given(name=st.sampled_from(["references.sqlite", "local.faiss", "global_0.faiss"]),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4),
       cut=st.none() | st.floats(0, 1), keep_record=st.booleans())
def test_damaged_data_files_open_or_fail_cleanly(pristine, name, flips, cut, keep_record):
    """Flipped bytes and truncations, with the size record kept (refused at open) or dropped (as in an index
    from before sizes were recorded: the loaders themselves must cope)."""
    with tempfile.TemporaryDirectory() as tmp:
        idx = Path(tmp) / "idx"
        shutil.copytree(pristine, idx)
        data = bytearray((idx / name).read_bytes())
        for where, xor in flips:
            data[int(where * len(data))] ^= xor
        if cut is not None:
            data = data[: int(cut * len(data))]
        (idx / name).write_bytes(bytes(data))
        if not keep_record:
            m = json.loads((idx / MANIFEST).read_text())
            m.pop("files", None)
            (idx / MANIFEST).write_text(json.dumps(m))
        _open_and_query(idx)
