"""GlobalIndex (FAISS wrapper) round trips for both metrics, and background score normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from copylens.core.errors import IndexFormatError
from copylens.core.globaldesc.whitening import BackgroundNormalizer
from copylens.core.index.globalindex import GlobalIndex

METRICS = [("ip", 32), ("hamming", 256)]


def _vectors(metric: str, dim: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if metric == "hamming":
        return rng.integers(0, 256, (n, dim // 8), dtype=np.uint8)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize(("metric", "dim"), METRICS)
@pytest.mark.parametrize("exact_max", [10_000, 300])  # 300: the 1000 rows below go to an IVF
def test_add_search_remove_save_load(tmp_path, metric, dim, exact_max):
    x = _vectors(metric, dim, 1000)
    ids = np.arange(1000, dtype=np.int64) * 7 + 3
    index = GlobalIndex(dim, metric, exact_max=exact_max)
    index.add(ids[:200], x[:200])
    assert index.exact and len(index) == 200
    index.add(ids[200:], x[200:])
    assert index.exact == (exact_max > 1000) and len(index) == 1000
    scores, found = index.search(x[:50], 3)
    assert scores.shape == found.shape == (50, 3) and scores.dtype == np.float32 and found.dtype == np.int64
    assert (found[:, 0] == ids[:50]).all()
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    assert scores[:, 1].max() < 0.9
    assert sorted(index.ids().tolist()) == ids.tolist()

    assert index.remove(ids[:10]) == 10 and index.remove(np.array([-5, ids[0]])) == 0
    assert len(index) == 990
    assert not np.isin(index.search(x[:10], 3)[1], ids[:10]).any()

    path = tmp_path / "glöbal índex.faiss"  # non-ASCII on purpose
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    back = GlobalIndex.load(path)
    assert (back.metric, back.dim, back.exact, len(back)) == (metric, dim, index.exact, 990)
    s1, f1 = index.search(x[10:60], 5)
    s2, f2 = back.search(x[10:60], 5)
    assert np.array_equal(f1, f2) and np.allclose(s1, s2)
    back.add(ids[:10], x[:10])  # removed ids may come back
    assert back.search(x[:1], 1)[1][0, 0] == ids[0]


def test_hamming_scores_are_similarities_in_unit_range():
    index = GlobalIndex(256, "hamming")
    a = np.zeros((1, 32), np.uint8)
    b = a.copy()
    b[0, :2] = 0xFF  # 16 bits differ
    c = np.full((1, 32), 0xFF, np.uint8)  # all 256 differ
    index.add(np.array([1, 2, 3]), np.concatenate([a, b, c]))
    scores, found = index.search(a, 3)
    assert found.tolist() == [[1, 2, 3]]
    assert np.allclose(scores, [[1.0, 1 - 16 / 256, 0.0]])


def test_ip_scores_are_inner_products():
    index = GlobalIndex(3, "ip")
    index.add(np.array([10, 20]), np.eye(3, dtype=np.float32)[:2])
    scores, found = index.search(np.array([[0.6, 0.8, 0.0]], np.float32), 5)  # k above size: trimmed
    assert found.tolist() == [[20, 10]] and np.allclose(scores, [[0.8, 0.6]])


@pytest.mark.parametrize(("metric", "dim"), METRICS)
def test_empty_is_normal(tmp_path, metric, dim):
    index = GlobalIndex(dim, metric)
    q = _vectors(metric, dim, 2)
    scores, found = index.search(q, 10)
    assert scores.shape == found.shape == (2, 0)
    assert index.search(q[:0], 10)[0].shape == (0, 0)
    index.add(np.zeros(0, np.int64), q[:0])
    assert index.remove(np.array([1, 2])) == 0 and len(index) == 0
    index.save(tmp_path / "empty.faiss")
    assert len(GlobalIndex.load(tmp_path / "empty.faiss")) == 0


def test_bad_input_is_refused(tmp_path):
    index = GlobalIndex(8, "ip")
    x = _vectors("ip", 8, 3)
    index.add(np.array([1, 2, 3]), x)
    with pytest.raises(ValueError, match="already in the index"):
        index.add(np.array([3]), x[:1])
    with pytest.raises(ValueError, match="repeated"):
        index.add(np.array([7, 7]), x[:2])
    with pytest.raises(ValueError, match=r"\[N x 8\]"):
        index.add(np.array([9]), np.zeros((1, 9), np.float32))
    with pytest.raises(ValueError, match="ids for"):
        index.add(np.array([9, 10]), x[:1])
    with pytest.raises(ValueError, match="metric"):
        GlobalIndex(8, "l2")
    with pytest.raises(ValueError, match="dimension"):
        GlobalIndex(12, "hamming")
    assert len(index) == 3  # nothing half-added


def test_load_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(IndexFormatError, match="absent.faiss: the global descriptor index is missing; rebuild"):
        GlobalIndex.load(tmp_path / "absent.faiss")
    (tmp_path / "junk.faiss").write_bytes(b"this is not a faiss index at all")
    with pytest.raises(IndexFormatError, match="junk.faiss: the global descriptor index is damaged or not a FAISS"):
        GlobalIndex.load(tmp_path / "junk.faiss")
    (tmp_path / "empty.faiss").write_bytes(b"")
    with pytest.raises(IndexFormatError, match="empty or truncated"):
        GlobalIndex.load(tmp_path / "empty.faiss")
    good = GlobalIndex(8, "ip")
    good.add(np.arange(3), np.eye(3, 8, dtype=np.float32))
    good.save(tmp_path / "good.faiss")
    data = (tmp_path / "good.faiss").read_bytes()
    (tmp_path / "cut.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match="cut.faiss: the global descriptor index is damaged"):
        GlobalIndex.load(tmp_path / "cut.faiss")
    assert len(GlobalIndex.load(tmp_path / "good.faiss")) == 3


@pytest.mark.parametrize(("metric", "dim"), METRICS)
def test_background_normalisation_known_answer(tmp_path, metric, dim):
    if metric == "ip":
        background = np.eye(dim, dtype=np.float32)[:2]            # e0, e1
        query = np.eye(dim, dtype=np.float32)[:1]                 # e0: similarities 1 and 0
    else:
        background = np.zeros((2, 32), np.uint8)
        background[1, :16] = 0xFF                                 # 128 bits away
        query = np.zeros((1, 32), np.uint8)                       # similarities 1 and 0.5
    expected = {"ip": 0.5, "hamming": 0.75}[metric]               # mean of the top 2
    norm = BackgroundNormalizer(background, metric, k=2)
    assert np.allclose(norm.offsets(query), [expected])
    assert np.allclose(norm.normalize(query, np.array([[0.9, 0.1]])), [[0.9 - expected, 0.1 - expected]])
    assert np.allclose(BackgroundNormalizer(background, metric, k=1, beta=0.5).offsets(query), [0.5])
    assert np.allclose(BackgroundNormalizer(background[:0], metric).offsets(query), [0.0])
    norm.save(tmp_path / "bg.npz")
    back = BackgroundNormalizer.load(tmp_path / "bg.npz")
    assert (back.metric, back.k, back.beta) == (metric, 2, 1.0)
    assert np.allclose(back.offsets(query), [expected])


def test_faiss_files_stream_in_faiss_s_own_format_and_a_failed_write_leaves_the_old_file(tmp_path):
    import faiss

    from copylens.core.index.faissio import save_index

    idx = faiss.IndexFlatL2(4)
    idx.add(np.eye(4, dtype=np.float32))
    save_index(idx, tmp_path / "ours.faiss")
    faiss.write_index(idx, str(tmp_path / "theirs.faiss"))
    assert (tmp_path / "ours.faiss").read_bytes() == (tmp_path / "theirs.faiss").read_bytes()
    with pytest.raises(TypeError):  # fails mid-write: the old file must stay whole
        save_index("not an index", tmp_path / "ours.faiss")
    assert (tmp_path / "ours.faiss").read_bytes() == (tmp_path / "theirs.faiss").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    non_ascii = tmp_path / "índice ✓.faiss"
    save_index(idx, non_ascii)
    good = GlobalIndex(8, "hamming")
    good.add(np.arange(2), np.zeros((2, 1), np.uint8) + np.array([[0], [255]], np.uint8))
    good.save(tmp_path / "bin.faiss")
    assert len(GlobalIndex.load(tmp_path / "bin.faiss")) == 2
