"""PDQ backend, registry and shared types: known answers on scikit-image's bundled pictures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from skimage import data

from copylens.core.errors import IndexFormatError, UnknownBackendError
from copylens.core.globaldesc import (
    DIHEDRAL,
    ModelLoadError,
    check_fingerprint,
    create_descriptor,
    validate_name,
)
from copylens.core.globaldesc.base import (
    INVERTED,
    MIRRORED_VARIANTS,
    DescriptorBatch,
    pairwise_similarity,
    variant_pixels,
)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distances between packed rows of a [N x 32] and one row b [32]."""
    return np.unpackbits(np.bitwise_xor(a, b[None]), axis=1).sum(axis=1)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return np.ascontiguousarray(np.repeat(data.camera()[:, :, None], 3, axis=2))


@pytest.fixture(scope="module")
def pdq():
    return create_descriptor("pdq")


def test_pdq_shape_and_identical_image(pdq, astronaut):
    b = pdq.extract([astronaut, astronaut.copy()])
    assert pdq.metric == "hamming" and pdq.dim == 256
    assert b.vectors.shape == (2, 32) and b.vectors.dtype == np.uint8
    assert b.variant.tolist() == [0, 1]
    assert hamming(b.vectors, b.vectors[0]).tolist() == [0, 0]
    assert 0.5 <= b.quality[0] <= 1.0 and not b.low_quality[0]
    # variant 0 of the query equals the reference hash
    q = pdq.extract_query(astronaut)
    assert q.variant.tolist() == list(range(16))
    assert hamming(q.vectors[:1], b.vectors[0])[0] == 0


@pytest.mark.parametrize("variant", [1, 3, 5, 6])
def test_pdq_dihedral_variant_matches_transformed_copy(pdq, astronaut, variant):
    ref = pdq.extract([astronaut]).vectors[0]
    q = pdq.extract_query(np.ascontiguousarray(DIHEDRAL[variant](astronaut)))
    d = hamming(q.vectors, ref)
    # the matching variant is the one that undoes the transform (these four are their own inverse or
    # each other's: 1 <-> 3); PDQ's 64x64 resampling leaves ~15 of 256 bits
    undo = {1: 3, 3: 1, 5: 5, 6: 6}[variant]
    assert int(np.argmin(d)) == undo
    assert d[undo] <= 20
    assert np.median(d) > 90
    assert (undo in MIRRORED_VARIANTS) == (variant in MIRRORED_VARIANTS)


def test_pdq_inverted_copy_matches_the_complement_variant(pdq, astronaut):
    ref = pdq.extract([astronaut]).vectors[0]
    negative = pdq.extract_query(255 - astronaut)
    d = hamming(negative.vectors, ref)
    assert int(np.argmin(d)) == INVERTED and d[INVERTED] == 0
    assert d[0] == 256  # without the complement: every bit differs
    assert np.array_equal(variant_pixels(astronaut, INVERTED + 5), 255 - astronaut[:, ::-1])
    with pytest.raises(ValueError, match="0..15"):
        variant_pixels(astronaut, 16)


def test_pdq_unrelated_images_far_apart(pdq, astronaut, camera):
    b = pdq.extract([astronaut, camera])
    assert hamming(b.vectors[:1], b.vectors[1])[0] > 80
    assert pdq.extract_query(camera).vectors.shape == (16, 32)
    assert create_descriptor("pdq", query_inverted=False).extract_query(camera).vectors.shape == (8, 32)
    sims = pairwise_similarity(pdq.extract_query(camera).vectors, b.vectors, "hamming")
    assert sims[0, 1] == 1.0 and sims[:, 0].max() < 0.7


def test_pdq_blank_image_is_low_quality(pdq, astronaut):
    blank = np.full((200, 300, 3), 127, np.uint8)
    b = pdq.extract([blank, astronaut])
    assert b.quality[0] < pdq.config.min_quality <= b.quality[1]
    assert b.low_quality.tolist() == [True, False]
    assert pdq.extract_query(blank).low_quality.all()


def test_pdq_large_image_is_downscaled_first(pdq, astronaut):
    big = np.repeat(np.repeat(astronaut, 3, axis=0), 3, axis=1)  # 1536 px, above max_side
    d = hamming(pdq.extract([big]).vectors, pdq.extract([astronaut]).vectors[0])
    assert d[0] <= 12


def test_pdq_tiny_and_empty_inputs(pdq):
    assert pdq.extract([]).vectors.shape == (0, 32)
    assert len(pdq.extract([np.zeros((1, 1, 3), np.uint8)])) == 1
    with pytest.raises(ValueError, match="RGB uint8"):
        pdq.extract([np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match="RGB uint8"):
        pdq.extract([np.zeros((10, 10, 3), np.float32)])


def test_pdq_fingerprint_tracks_settings():
    a, b = create_descriptor("pdq"), create_descriptor("pdq")
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 64
    assert create_descriptor("pdq", max_side=256).fingerprint() != a.fingerprint()
    assert create_descriptor("pdq", query_inverted=False).fingerprint() == a.fingerprint()


def test_check_fingerprint_refuses_mismatch():
    pdq = create_descriptor("pdq")
    check_fingerprint(pdq.fingerprint(), pdq)  # same: no error
    with pytest.raises(IndexFormatError, match="rebuild the index"):
        check_fingerprint(create_descriptor("pdq", max_side=128).fingerprint(), pdq)


def test_unknown_names_list_valid_kinds():
    for bad in ("sift", "pdq:x", "timm", "torchscript:", "copylens-", ""):
        with pytest.raises(UnknownBackendError) as info:
            create_descriptor(bad)
        msg = str(info.value)
        assert "pdq" in msg and "timm:<model-name>" in msg and "copylens-<name>" in msg
        assert isinstance(info.value, KeyError)


def test_validate_name_checks_form_and_files_without_building(tmp_path):
    assert validate_name(" pdq ") == "pdq" and validate_name("none") == "none"
    assert validate_name("timm:resnet50") == "timm:resnet50"  # the architecture is checked when built
    for bad in ("sift", "pdq:x", "none:x", "timm", "timm:", "timm::/w.safetensors", "torchscript:", "copylens-", ""):
        with pytest.raises(UnknownBackendError, match="timm:<model-name>"):
            validate_name(bad)
    weights = tmp_path / "w.safetensors"
    with pytest.raises(ModelLoadError, match="weights file not found"):
        validate_name(f"timm:resnet50:{weights}")
    weights.write_bytes(b"")  # exists: whether it loads is the builder's business
    assert validate_name(f"timm:resnet50:{weights}") == f"timm:resnet50:{weights}"
    with pytest.raises(ModelLoadError, match="TorchScript file not found"):
        validate_name(f"torchscript:{tmp_path / 'net.pt'}")
    with pytest.raises(ModelLoadError, match="sscd.safetensors is missing"):
        validate_name("copylens-sscd", tmp_path)
    (tmp_path / "sscd.safetensors").write_bytes(b"")
    (tmp_path / "sscd.json").write_text("{}")
    assert validate_name("copylens-sscd", tmp_path) == "copylens-sscd"
    code = ("import sys; from copylens.core.globaldesc import validate_name; "
            f"validate_name('timm:resnet50:{weights}'); validate_name('copylens-sscd', {str(tmp_path)!r}); "
            "print(sorted(m for m in ('torch', 'timm', 'faiss') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # nothing heavy was imported, let alone a model loaded


def test_none_backend_gives_no_rows(astronaut):
    none = create_descriptor("none")
    assert none.dim == 0 and len(none.extract([astronaut])) == 0 and len(none.extract_query(astronaut)) == 0


def test_copylens_model_missing_says_what_exists(tmp_path):
    with pytest.raises(ModelLoadError, match="none"):
        create_descriptor("copylens-sscd", models_dir=tmp_path)
    (tmp_path / "other.safetensors").write_bytes(b"")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="copylens-other") as info:
        create_descriptor("copylens-sscd", models_dir=tmp_path)
    assert "sscd.safetensors is missing" in str(info.value)


def test_descriptor_batch_checks_rows():
    with pytest.raises(ValueError, match="disagree"):
        DescriptorBatch(np.zeros((2, 4), np.float32), np.ones(3, np.float32), np.arange(2))
    assert DescriptorBatch.empty(32, "hamming").vectors.dtype == np.uint8


def test_pairwise_similarity_known_answer():
    a = np.zeros((1, 32), np.uint8)
    b = np.zeros((2, 32), np.uint8)
    b[1, :2] = 0xFF  # 16 bits set
    assert pairwise_similarity(a, b, "hamming").tolist() == [[1.0, 1.0 - 16 / 256]]
    e = np.eye(3, dtype=np.float32)
    assert np.allclose(pairwise_similarity(e[:1], e, "ip"), [[1, 0, 0]])
    with pytest.raises(ValueError, match="metric"):
        pairwise_similarity(e, e, "l2")
