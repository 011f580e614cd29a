"""PCA whitening and background score normalisation of neural global descriptors inside an index: fitted
by the build, stored pickle-free with their digests, applied by queries, ``index add`` and ``index remove``.

The network is timm's tiny ``test_resnet`` (random init, seeded: no download, 96-d output); the references
are 28 small crops of scikit-image photos, enough for a whitening once the test lowers the minimum.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from copylens.core.engine import Engine, QueryConfig, recalled_rows
from copylens.core.errors import IndexFormatError
from copylens.core.fileio import file_sha256
from copylens.core.globaldesc import DescriptorBatch, create_descriptor
from copylens.core.globaldesc.whitening import BackgroundNormalizer, Whitening
from copylens.core.globalsearch import GlobalBranch
from copylens.core.imageio import from_array
from copylens.core.index import MANIFEST, ReferenceStore
from copylens.core.index.build import add_to_index, build_index, remove_from_index
from copylens.core.index.globalfiles import GlobalPostConfig
from copylens.core.index.globalindex import GlobalIndex
from copylens.core.index.store import GlobalVector
from copylens.core.progress import run_job

from conftest import skimage_rgb

pytest.importorskip("timm")

NAME = "timm:test_resnet"
# 28 references for a 96-d network: far below the default 4 per dimension, so the test lowers the minimum
# and keeps 12 axes (28 points whitened in all 27 of their axes would become a regular simplex)
POST = GlobalPostConfig(whiten_min_per_dim=0.25, whiten_dim=12)
PHOTOS = ("astronaut", "chelsea", "rocket", "coffee", "camera", "horse", "brick", "immunohistochemistry",
          "coins", "page")
NUM_REFS = 28


def _crop(name: str, i: int, side: int = 96) -> np.ndarray:
    a = skimage_rgb(name)
    h, w = a.shape[:2]
    y, x = (i * 97) % (h - 2 * side), (i * 61) % (w - 2 * side)
    return np.ascontiguousarray(a[y:y + 2 * side:2, x:x + 2 * side:2])


def _write_refs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i in range(NUM_REFS):
        Image.fromarray(_crop(PHOTOS[i % len(PHOTOS)], i // len(PHOTOS))).save(folder / f"r{i:02d}.png")
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine two spinning threads make this tiny network's forward
    pass ~100x slower (measured 4 ms -> 440 ms), and the test nothing more exact."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("globalnorm")
    refs = _write_refs(root / "refs")
    run_job(build_index(refs, root / "idx", workers=2, calibrate=False, global_descriptors=(NAME,),
                        global_post=POST))
    return refs, root / "idx"


def _copy(index: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(index, tmp_path / "idx"))


def _entry(index: Path) -> dict:
    return json.loads((index / MANIFEST).read_text())["global"][0]


def _raw(index: Path) -> tuple[list[int], np.ndarray]:
    store = ReferenceStore(index)
    try:
        rows, vecs = store.global_vectors(NAME)
    finally:
        store.close()
    return rows, np.stack(vecs)


def _results(eng: Engine, images: list[np.ndarray]) -> list[list[tuple]]:
    out = []
    for im in images:
        r = run_job(eng.query(from_array(im)))
        out.append([(m.reference_id, m.score, sorted(m.signals.items())) for m in r.matches])
    return out


def test_build_stores_whitening_and_background_and_indexes_whitened_vectors(built):
    _, index = built
    e = _entry(index)
    net = create_descriptor(NAME, device="cpu")
    assert e["fingerprint"] == net.fingerprint()  # the network alone, independent of the fitted whitening
    w_spec, n_spec = e["whitening"], e["normalization"]
    assert (w_spec["input_dim"], w_spec["dim"], w_spec["references"]) == (96, 12, NUM_REFS)
    assert (n_spec["k"], n_spec["beta"], n_spec["skip"], n_spec["size"]) == (10, 1.0, 1, NUM_REFS)
    for spec in (w_spec, n_spec):
        assert file_sha256(index / spec["file"]) == spec["sha256"]
        with np.load(index / spec["file"], allow_pickle=False) as arrays:  # plain arrays, nothing pickled
            assert all(arrays[k].dtype != object for k in arrays.files)
    w = Whitening.load(index / w_spec["file"])
    rows, raw = _raw(index)
    white = w.apply(raw)
    # the FAISS index holds the whitened vectors: each whitened reference finds itself at similarity 1
    faiss_index = GlobalIndex.load(index / e["file"])
    assert faiss_index.dim == 12 and len(faiss_index) == NUM_REFS
    scores, ids = faiss_index.search(white, 1)
    assert ids[:, 0].tolist() == rows and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    with np.load(index / n_spec["file"], allow_pickle=False) as bg:
        assert sorted(bg["rows"].tolist()) == rows  # 28 references < background_size: all of them
        assert np.allclose(bg["background"], white[np.searchsorted(rows, bg["rows"])], atol=1e-6)


def test_queries_are_whitened_and_normalised_and_the_same_after_reopening(built):
    refs, index = built
    e = _entry(index)
    spec = e["normalization"]
    copy = _crop(PHOTOS[5], 0)[4:-6, 3:-5]  # a crop of reference r05
    unrelated = np.ascontiguousarray(skimage_rgb("retina")[::5, ::5])
    with Engine.open(index, device="cpu") as eng:
        branch = eng.globals[0]
        assert branch.whitening is not None and branch.normalizer is not None
        # the branch's scores, computed by hand from the stored raw vectors and the two files
        w = Whitening.load(index / e["whitening"]["file"])
        with np.load(index / spec["file"], allow_pickle=False) as f:
            background = f["background"]
        rows, raw = _raw(index)
        net = create_descriptor(NAME, device="cpu")
        for image in (copy, unrelated):
            # each query variant (the image and its negative) with its own offset; the best one counts
            wqs = w.apply(net.extract_query(image).vectors)
            assert len(wqs) == 2
            offsets = [spec["beta"] * np.sort(background @ wq)[::-1][spec["skip"]:spec["skip"] + spec["k"]].mean()
                       for wq in wqs]
            expected = np.clip(np.max([w.apply(raw) @ wq - o for wq, o in zip(wqs, offsets, strict=True)], 0), 0, 1)
            q = branch.query(image)
            assert np.allclose(q.offsets, offsets, atol=1e-5)
            hits = branch.search(q, NUM_REFS)
            assert np.allclose([hits.get(r, 0.0) for r in rows], expected, atol=1e-5)
            sims = [branch.similarity(q, eng.store.global_vector(NAME, r)) for r in rows]
            assert np.allclose(sims, expected, atol=1e-5)
        assert max(branch.search(branch.query(copy), 1).items(), key=lambda kv: kv[1])[0] == rows[5]
        before = _results(eng, [copy, unrelated, np.asarray(Image.open(refs / "r11.png"))])
    with Engine.open(index, device="cpu") as eng:
        after = _results(eng, [copy, unrelated, np.asarray(Image.open(refs / "r11.png"))])
    assert before == after and before[0][0][0] == "r05" and before[2][0][0] == "r11"


def test_add_applies_the_stored_whitening_and_remove_keeps_it(built, tmp_path):
    _, index = built
    index = _copy(index, tmp_path)
    before = _entry(index)
    w_bytes = (index / before["whitening"]["file"]).read_bytes()
    extra = tmp_path / "extra"
    extra.mkdir()
    new = np.ascontiguousarray(skimage_rgb("motorcycle")[::6, ::6])
    Image.fromarray(new).save(extra / "moto.png")
    assert run_job(add_to_index(index, [extra / "moto.png"])).added == 1
    after = _entry(index)
    assert after["whitening"] == before["whitening"] and after["normalization"] == before["normalization"]
    assert (index / before["whitening"]["file"]).read_bytes() == w_bytes  # not refitted
    rows, raw = _raw(index)
    new_row = rows[-1]
    w = Whitening.load(index / before["whitening"]["file"])
    scores, ids = GlobalIndex.load(index / after["file"]).search(w.apply(raw[-1:]), 1)
    assert ids[0, 0] == new_row and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    with Engine.open(index, device="cpu") as eng:
        hits = eng.globals[0].search(eng.globals[0].query(new), 5)
        assert max(hits, key=hits.get) == new_row
        assert run_job(eng.query(from_array(new))).best.reference_id == "moto"
    assert remove_from_index(index, ["moto"]) == 1
    assert _entry(index)["whitening"] == before["whitening"]
    with Engine.open(index, device="cpu") as eng:
        assert new_row not in eng.globals[0].search(eng.globals[0].query(new), NUM_REFS)


def test_missing_or_altered_files_are_refused(built, tmp_path):
    _, index = built
    index = _copy(index, tmp_path)
    e = _entry(index)
    white, background = index / e["whitening"]["file"], index / e["normalization"]["file"]
    good = white.read_bytes()
    w = Whitening.load(white)
    Whitening(w.mean + 0.01, w.projection).save(white)  # a valid file, other numbers
    with pytest.raises(IndexFormatError, match=r"PCA whitening of global descriptor .* was altered.*sha256"):
        Engine.open(index, device="cpu")
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.fromarray(np.ascontiguousarray(skimage_rgb("motorcycle")[::6, ::6])).save(extra / "moto.png")
    with pytest.raises(IndexFormatError, match="altered"):  # refused before anything changes
        run_job(add_to_index(index, [extra]))
    with pytest.raises(IndexFormatError, match="altered"):
        remove_from_index(index, ["r00"])
    assert len(_raw(index)[0]) == NUM_REFS
    white.write_bytes(good)
    background.unlink()
    with pytest.raises(IndexFormatError, match=r"global_0\.background\.npz: missing \(the manifest records it\)"):
        Engine.open(index, device="cpu")


def test_an_index_without_whitening_entries_still_opens(built, tmp_path):
    """An index written before whitening existed: raw vectors in FAISS, no post-processing keys."""
    refs, index = built
    index = _copy(index, tmp_path)
    manifest = json.loads((index / MANIFEST).read_text())
    e = manifest["global"][0]
    for key in ("whitening", "normalization"):
        (index / e.pop(key)["file"]).unlink()
    manifest.pop("files")  # nor file sizes and hashes, recorded since
    (index / MANIFEST).write_text(json.dumps(manifest))
    rows, raw = _raw(index)
    old = GlobalIndex(96, "ip")
    old.add(np.asarray(rows, np.int64), raw)
    old.save(index / e["file"])
    probe = np.asarray(Image.open(refs / "r07.png"))
    with Engine.open(index, device="cpu") as eng:
        branch = eng.globals[0]
        assert branch.whitening is None and branch.normalizer is None
        q = branch.query(probe)
        assert np.array_equal(q.offsets, [0.0, 0.0]) and q.vectors.shape == (2, 96)  # the image and its negative
        hits = branch.search(q, 3)
        assert max(hits, key=hits.get) == rows[7] and hits[rows[7]] == pytest.approx(1.0, abs=1e-5)
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.fromarray(np.ascontiguousarray(skimage_rgb("motorcycle")[::6, ::6])).save(extra / "moto.png")
    assert run_job(add_to_index(index, [extra])).added == 1
    assert "whitening" not in _entry(index)
    with Engine.open(index, device="cpu") as eng:
        assert eng.globals[0].index.dim == 96 and len(eng.globals[0].index) == NUM_REFS + 1


def test_background_offsets_skip_the_nearest_neighbours():
    e = np.eye(4, dtype=np.float32)
    background = np.array([e[0], 0.6 * e[0] + 0.8 * e[1], 0.8 * e[0] + 0.6 * e[2], e[3]], np.float32)
    query = e[:1]  # similarities to the background: 1.0, 0.6, 0.8, 0.0
    assert BackgroundNormalizer(background, "ip", k=2).offsets(query) == pytest.approx([0.9])  # 1.0, 0.8
    assert BackgroundNormalizer(background, "ip", k=2, skip=1).offsets(query) == pytest.approx([0.7])  # 0.8, 0.6
    assert BackgroundNormalizer(background, "ip", k=10, skip=1, beta=0.5).offsets(query) == pytest.approx(
        [0.5 * (0.8 + 0.6 + 0.0) / 3])  # k beyond the background: what there is
    assert BackgroundNormalizer(background, "ip", k=2, skip=4).offsets(query) == pytest.approx([0.0])
    with pytest.raises(ValueError, match="skip"):
        BackgroundNormalizer(background, "ip", skip=-1)
    # the query's own image treated as absent: the window moves past it (0.6, 0.0 instead of 0.8, 0.6)
    norm = BackgroundNormalizer(background, "ip", k=2, skip=1)
    assert norm.offsets(query, absent=background[:1]) == pytest.approx([0.3])
    assert norm.offsets(query, absent=background[:0]) == pytest.approx([0.7])  # nothing absent
    assert norm.offsets(query, absent=e[1:2]) == pytest.approx([0.7])  # not in the background: no change


def test_a_reference_searched_as_absent_scores_the_others_as_an_index_built_without_it(tmp_path):
    """Self-calibration searches an edited reference with its row excluded, as a query whose original is not
    indexed. Every other reference must then score as it would on an index built without that reference:
    the excluded one leaves the score normalisation's background too. (It used to stay there; as the
    query's nearest background image it took the skipped place, the window took in the nearest other
    references, and they all scored lower than for a real distractor.)"""
    refs = _write_refs(tmp_path / "refs")
    fewer = tmp_path / "fewer"
    shutil.copytree(refs, fewer)
    (fewer / "r07.png").unlink()
    post = GlobalPostConfig(whiten=False)  # a whitening is fitted on the references: not the same without one
    for src, out in ((refs, tmp_path / "all"), (fewer, tmp_path / "without")):
        run_job(build_index(src, out, workers=2, calibrate=False, global_descriptors=(NAME,), global_post=post))
    edited = np.ascontiguousarray(np.asarray(Image.open(refs / "r07.png").convert("RGB"))[8:, 4:-6][:, ::-1])
    with (Engine.open(tmp_path / "all", device="cpu") as full,
          Engine.open(tmp_path / "without", device="cpu") as fewer_eng):
        row = dict(full.store.rows_by_id())["r07"]
        absent = full.global_recall(edited, frozenset({row}), frozenset({row})).queries[0]
        kept = full.global_recall(edited, frozenset({row})).queries[0]  # excluded from recall only
        truth = fewer_eng.global_recall(edited, frozenset()).queries[0]
        assert absent.offsets == pytest.approx(truth.offsets, abs=1e-5)
        # the copy's own reference raised the background (of the image; its negative's is not near it)
        assert kept.offsets[0] > truth.offsets[0] + 1e-3
        rows, vecs = full.store.global_vectors(NAME)
        b_full, b_fewer = full.globals[0], fewer_eng.globals[0]
        scores = {}
        for r, v in zip(rows, vecs, strict=True):
            rid = full.store.ids_of_rows([r])[r]
            if rid == "r07":
                continue
            vec = GlobalVector(v, 1.0, False)
            scores[rid] = (b_full.similarity(absent, vec), b_fewer.similarity(truth, vec),
                           b_full.similarity(kept, vec))
            assert scores[rid][0] == pytest.approx(scores[rid][1], abs=1e-5), rid
        assert len(scores) == NUM_REFS - 1
        best = max(scores.values())
        assert best[0] > 0.01 and best[2] < best[0] - 1e-3  # with r07 in the background it scored lower
        # the engine's candidates: never the excluded reference, and at least the whole image's score (a
        # candidate keeps the best over the whole image and its regions)
        cands = run_job(full.candidates(from_array(edited), frozenset({row})))[0]
        assert cands and all(c.row != row for c in cands)
        for c in cands:
            rid = full.store.ids_of_rows([c.row])[c.row]
            assert c.signals[f"global:{NAME}"] >= scores[rid][0] - 1e-5


class _Fixed:
    """A stand-in descriptor whose query vector is read off the first pixel's red value."""

    name, metric = "fixed", "ip"

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        self.dim = vectors.shape[1]

    def extract_query(self, image: np.ndarray) -> DescriptorBatch:
        v = self.vectors[int(image[0, 0, 0])][None]
        return DescriptorBatch(v, np.ones(1, np.float32), np.zeros(1, np.int64))


def test_normalisation_lowers_an_unrelated_query_more_than_a_copy():
    """Raw GeM descriptors share a common direction, and a plain, generic image (little detail) lies close
    to it: it looks similar to every reference. Its background level is high and normalisation takes that
    away, while a copy of a reference keeps its lead."""
    rng = np.random.default_rng(3)
    dim = 32

    def unit(v: np.ndarray) -> np.ndarray:
        return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)

    common = unit(rng.standard_normal(dim))
    refs = unit(common + 0.6 * rng.standard_normal((40, dim)))
    copy = unit(refs[7] + 0.1 * rng.standard_normal(dim))
    unrelated = unit(common + 0.15 * rng.standard_normal(dim))  # generic: near the common direction
    queries = np.stack([copy, unrelated])
    norm = BackgroundNormalizer(refs, "ip", k=10, beta=1.0, skip=1)  # background: the references themselves
    raw = queries @ refs.T
    fixed = norm.normalize(queries, raw)
    drop = raw - fixed  # one offset per query
    assert drop[1, 0] > drop[0, 0] + 0.1
    assert fixed[0, 7] - fixed[1].max() > raw[0, 7] - raw[1].max()  # the copy's lead over the unrelated grows

    index = GlobalIndex(dim, "ip")
    index.add(np.arange(40, dtype=np.int64), refs)
    desc = _Fixed(queries)
    plain, normalised = GlobalBranch(desc, index), GlobalBranch(desc, index, normalizer=norm)
    images = [np.full((4, 4, 3), i, np.uint8) for i in range(2)]  # pixel value = which query vector
    top_plain = [max(plain.search(plain.query(im), 40).values()) for im in images]
    top_norm = [max(normalised.search(normalised.query(im), 40).values()) for im in images]
    assert top_plain[1] > 0.5  # without normalisation the unrelated query looks like a good match
    assert top_plain[1] - top_norm[1] > top_plain[0] - top_norm[0]  # ... and loses more than the copy
    assert top_norm[0] > 0.5 > top_norm[1]
    q = normalised.query(images[0])
    assert normalised.similarity(q, None) == 0.0
    assert normalised.similarity(q, GlobalVector(refs[7], 1.0, False)) == pytest.approx(top_norm[0], abs=1e-6)


def test_a_distinct_nearest_reference_is_recalled_below_the_floor():
    """Each branch recalls its best references at or above the floor; when none is, its nearest one still
    joins if it stands out (Lowe's ratio test on the global ranking). The similarities are those of the
    dev v2 wide benchmark's seed 7: a wallpaper rotated 8 degrees has its reference first at 0.297, the next
    at 0.101, under the floor 0.3."""
    cfg = QueryConfig()
    assert dict(cfg.global_recall_floor)["ip"] == 0.3 and dict(cfg.global_recall_distinct)["ip"] == 0.2
    rotated = {11: 0.297, 12: 0.101, 13: 0.08}
    assert recalled_rows(rotated, "ip", cfg) == [11]
    assert recalled_rows({11: 0.297}, "ip", cfg) == [11]  # alone among the neighbours
    # a near-identical reference close behind (a family of wallpapers): which one is ambiguous, none joins
    assert recalled_rows({11: 0.297, 12: 0.16}, "ip", cfg) == []
    assert recalled_rows({11: 0.19, 12: 0.05}, "ip", cfg) == []  # too weak to stand out at all
    # above the floor nothing changes: the best three, however close they are
    assert recalled_rows({1: 0.9, 2: 0.85, 3: 0.4, 4: 0.35, 5: 0.1}, "ip", cfg) == [1, 2, 3]
    assert recalled_rows({1: 0.31, 2: 0.2}, "ip", cfg) == [1]
    # PDQ (hamming) has no such rule: its floor alone decides
    assert recalled_rows({7: 0.45, 8: 0.1}, "hamming", cfg) == []
    assert recalled_rows({11: 0.297, 12: 0.101}, "ip", QueryConfig(global_recall_distinct=())) == []


def test_the_engine_recalls_a_distinct_neighbour_and_refuses_a_close_one(built):
    """The rule in the engine's global recall, on the built index's real search: with a floor nothing
    reaches, a copy's nearest reference joins the candidates when the ratio test passes, and not when the
    runner-up is too close for the asked ratio."""
    _, index = built
    copy = _crop(PHOTOS[5], 0)[4:-6, 3:-5]
    with Engine.open(index, device="cpu") as eng:
        branch = eng.globals[0]
        (r1, s1), (r2, s2) = sorted(branch.search(branch.query(copy), NUM_REFS).items(), key=lambda kv: -kv[1])[:2]
        assert 0 < s2 < s1 < 1
    strict = dict(global_recall_floor=(("hamming", 0.5), ("ip", 1.01)), global_recall_distinct=(("ip", 0.0),))
    with Engine.open(index, QueryConfig(**strict, global_recall_ratio=0.5 * (1 + s1 / s2)), device="cpu") as eng:
        assert eng.global_recall(copy, frozenset()).rows == [r1]
        assert r1 not in eng.global_recall(copy, frozenset({r1})).rows  # an excluded row is no neighbour
    with Engine.open(index, QueryConfig(**strict, global_recall_ratio=1.01 * s1 / s2), device="cpu") as eng:
        assert eng.global_recall(copy, frozenset()).rows == []
