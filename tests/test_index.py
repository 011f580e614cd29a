"""Index on disk: round trip, add/remove, duplicates, broken files, and resume after a killed build."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from copylens.core.engine import Engine
from copylens.core.errors import IndexFormatError
from copylens.core.imageio import from_array
from copylens.core.index import DATABASE, MANIFEST
from copylens.core.index.build import add_to_index, build_index, remove_from_index
from copylens.core.progress import run_job

from conftest import skimage_rgb, write_references


def _best(eng: Engine, pixels: np.ndarray) -> str | None:
    r = run_job(eng.query(from_array(pixels)))
    return r.best.reference_id if r.best else None


def _variants(folder: Path, n: int) -> Path:
    """``n`` distinct reference files: crops and rotations of scikit-image photos, in sub-folders."""
    folder.mkdir(parents=True, exist_ok=True)
    names = ["astronaut", "chelsea", "rocket", "coffee", "camera", "horse", "brick", "immunohistochemistry"]
    for i in range(n):
        a = skimage_rgb(names[i % len(names)])
        a = np.rot90(a[(i * 7) % 60:, (i * 11) % 60:], k=(i // len(names)) % 4)
        sub = folder / f"set{i % 3}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(np.ascontiguousarray(a)).save(sub / f"img {i:03d}.jpg", quality=92)
    return folder


def test_manifest_and_reference_ids(small_index, reference_dir):
    m = json.loads((small_index / MANIFEST).read_text())
    assert m["format"] == "copylens-index" and m["format_version"] == 1
    assert m["counts"]["references"] == len(list(reference_dir.glob("*.png")))
    assert m["features"]["kind"] == "rootsift"
    with Engine.open(small_index) as eng:
        ids = {r.reference_id for r in eng.references()}
        assert "astronaut" in ids and all("/" not in i and "." not in i for i in ids)


def test_reference_ids_relative_and_duplicates_once(tmp_path):
    refs = tmp_path / "refs"
    (refs / "a b" / "c'd").mkdir(parents=True)
    img = Image.fromarray(skimage_rgb("astronaut"))
    img.save(refs / "a b" / "c'd" / "ästro.png")
    (refs / "zz").mkdir()
    img.save(refs / "zz" / "copy.png")  # same bytes, later in scan order: recorded as a duplicate
    Image.fromarray(skimage_rgb("rocket")).save(refs / "rocket.jpg")
    s = run_job(build_index(refs, tmp_path / "idx", workers=2, calibrate=False))
    assert (s.added, s.duplicates, s.total_references) == (2, 1, 2)
    with Engine.open(tmp_path / "idx") as eng:
        ids = sorted(r.reference_id for r in eng.references())
    assert ids == ["a b/c'd/ästro", "rocket"]


def test_broken_files_reported_and_build_continues(tmp_path):
    refs = write_references(tmp_path / "refs", ("astronaut", "rocket"))
    (refs / "empty.jpg").write_bytes(b"")
    (refs / "text.png").write_text("not an image")
    buf = (refs / "astronaut.png").read_bytes()
    (refs / "truncated.png").write_bytes(buf[: len(buf) // 3])
    s = run_job(build_index(refs, tmp_path / "idx", workers=2, calibrate=False))
    assert s.total_references == 2
    reasons = dict(s.failed)
    assert set(map(lambda p: Path(p).name, reasons)) == {"empty.jpg", "text.png", "truncated.png"}
    assert "empty" in reasons[str(refs / "empty.jpg")]
    with Engine.open(tmp_path / "idx") as eng:
        assert _best(eng, skimage_rgb("rocket")) == "rocket"


def test_add_remove_round_trip(tmp_path):
    refs = write_references(tmp_path / "refs", ("astronaut", "rocket", "camera"))
    out = tmp_path / "idx"
    run_job(build_index(refs, out, workers=2, calibrate=False))
    extra = write_references(tmp_path / "extra", ("chelsea", "coffee"))
    s = run_job(add_to_index(out, [extra]))
    assert s.added == 2 and s.total_references == 5
    with Engine.open(out) as eng:
        assert _best(eng, skimage_rgb("coffee")[30:300, 40:500]) == "extra/coffee"
    assert remove_from_index(out, ["extra/coffee", "no-such-id"]) == 1
    with Engine.open(out) as eng:
        assert eng.info.num_references == 4
        assert _best(eng, skimage_rgb("coffee")[30:300, 40:500]) != "extra/coffee"
        assert _best(eng, skimage_rgb("camera")) == "camera"
    # adding the same file again is a no-op
    assert run_job(add_to_index(out, [extra / "chelsea.png"])).added == 0


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(IndexFormatError, match="no such index"):
        Engine.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="not a CopyLens index"):
        Engine.open(tmp_path / "empty")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / DATABASE).write_bytes(b"")
    with pytest.raises(IndexFormatError, match="resume"):
        Engine.open(partial)


def test_resume_after_killed_build(tmp_path):
    refs = _variants(tmp_path / "refs", 48)
    out = tmp_path / "idx"
    code = ("import sys; from copylens.core.index.build import build_index; from copylens.core.progress import run_job;"
            "run_job(build_index(sys.argv[1], sys.argv[2], workers=1, calibrate=False))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(refs), str(out)])
    db = out / DATABASE
    committed = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=1) as c:
                        committed = c.execute("SELECT COUNT(*) FROM refs").fetchone()[0]
                except sqlite3.Error:
                    committed = 0
                if committed >= 16:
                    break
            time.sleep(0.02)
        assert proc.poll() is None, "the build finished before it could be killed; make it bigger"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / MANIFEST).exists()
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = c.execute("SELECT COUNT(*) FROM refs").fetchone()[0]
    assert 16 <= kept < 48
    s = run_job(build_index(refs, out, workers=2, calibrate=False))
    assert s.skipped == kept and s.added == 48 - kept and s.total_references == 48
    with Engine.open(out) as eng:
        assert eng.info.num_references == 48
        assert _best(eng, np.asarray(Image.open(refs / "set1" / "img 040.jpg"))) == "set1/img 040"


def test_approximate_index_add_remove_with_tombstones(tmp_path, monkeypatch):
    """The approximate FAISS kind cannot delete vectors: removed rows become tombstones, never results."""
    from copylens.core.index import local as localindex

    monkeypatch.setattr(localindex, "FLAT_MAX_DESCRIPTORS", 1000)  # force the IVF kind on a tiny index
    refs = _variants(tmp_path / "refs", 24)
    out = tmp_path / "idx"
    run_job(build_index(refs, out, workers=2, calibrate=False))
    m = json.loads((out / MANIFEST).read_text())
    assert m["local_index"]["kind"] == "ivf-pq"
    probe = np.asarray(Image.open(refs / "set0" / "img 009.jpg"))
    with Engine.open(out) as eng:
        assert _best(eng, probe) == "set0/img 009"
    assert remove_from_index(out, ["set0/img 009"]) == 1
    with Engine.open(out) as eng:
        assert eng.tombstones and _best(eng, probe) != "set0/img 009"
    # adding after a removal keeps the FAISS index consistent (no spurious rebuild, still searchable)
    extra = write_references(tmp_path / "extra", ("coffee",))
    assert run_job(add_to_index(out, [extra])).added == 1
    with Engine.open(out) as eng:
        assert _best(eng, skimage_rgb("coffee")) == "extra/coffee"
        assert _best(eng, probe) != "set0/img 009"


def test_neural_global_descriptor_in_the_pipeline(tmp_path):
    """A timm backbone (random init, tiny test model: no download) as the global branch, end to end."""
    refs = write_references(tmp_path / "refs", ("astronaut", "rocket", "camera", "coins"))
    Image.new("RGB", (300, 260), "white").save(refs / "blank.png")  # one flat colour: nothing to identify
    out = tmp_path / "idx"
    s = run_job(build_index(refs, out, workers=2, calibrate=False, global_descriptors=("timm:test_resnet",)))
    assert s.notes == ["1 reference(s) have no local features and no reliable global descriptor (blank, one flat "
                       "colour or fully transparent?): no query can match them: blank"]
    m = json.loads((out / MANIFEST).read_text())
    assert m["descriptors"] == ["local:rootsift", "global:timm:test_resnet"]
    assert m["global"][0]["metric"] == "ip" and len(m["global"][0]["fingerprint"]) == 64
    with Engine.open(out, device="cpu") as eng:
        r = run_job(eng.query(from_array(skimage_rgb("rocket"))))
        assert r.best.reference_id == "rocket"
        sig = r.best.signals["global:timm:test_resnet"]
        assert sig == pytest.approx(1.0, abs=0.02)  # the reference itself: identical embedding
        assert sig > max((x.signals["global:timm:test_resnet"] for x in r.matches[1:]), default=-1.0)
        # a colour-inverted copy: the network describes its negative too, which is the reference again
        rocket_row = dict(eng.store.rows_by_id())["rocket"]
        negative = np.ascontiguousarray(255 - skimage_rgb("rocket"))
        recall = eng.global_recall(negative, frozenset())
        assert recall.rows[0] == rocket_row
        vec = eng.store.global_vectors_of("timm:test_resnet", [rocket_row])[rocket_row]
        assert eng.globals[0].similarity(recall.queries[0], vec) == pytest.approx(1.0, abs=0.02)
        # a blank reference is no neighbour of anything: neither of a blank query (whose descriptor is not
        # used either) nor of a nearly blank one, such as a white sheet with one thin line
        sheet = np.full((240, 320, 3), 250, np.uint8)
        assert not run_job(eng.query(from_array(sheet))).matches
        cv2.line(sheet, (40, 200), (120, 30), (90, 80, 70), 2)
        assert all(x.reference_id != "blank" for x in run_job(eng.query(from_array(sheet))).matches)
    # 4 references are far too few to fit whitening or a background: the manifest says so, nothing is stored
    assert "needs at least 384 (4 per dimension)" in m["global"][0]["whitening"]["skipped"]
    assert "needs at least 11" in m["global"][0]["normalization"]["skipped"]
    assert not list(out.glob("*.npz"))
    # a manifest whose fingerprint no longer matches the descriptor is refused with a clear error
    m["global"][0]["fingerprint"] = "0" * 64
    (out / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(IndexFormatError, match="fingerprint"):
        Engine.open(out)


def test_build_constructs_each_global_descriptor_once(tmp_path, monkeypatch):
    """Names are validated without building; a resumed build builds the stored descriptors only (one
    neural model load, not two); a bad name for a new index writes nothing."""
    from copylens.core.errors import UnknownBackendError
    from copylens.core.globaldesc import ModelLoadError
    from copylens.core.index import build as index_module

    made = []
    real = index_module.create_descriptor
    monkeypatch.setattr(index_module, "create_descriptor", lambda name, **kw: made.append(name) or real(name, **kw))
    refs = write_references(tmp_path / "refs", ("astronaut", "rocket"))
    out = tmp_path / "idx"
    run_job(build_index(refs, out, workers=2, calibrate=False))
    assert made == list(index_module.DEFAULT_GLOBAL) == ["pdq", "copylens-sscd18g"]
    made.clear()
    write_references(refs, ("camera",))
    s = run_job(build_index(refs, out, workers=2, calibrate=False, global_descriptors=("none",)))
    assert s.added == 1 and made == ["pdq", "copylens-sscd18g"]  # resumed: the index keeps (and builds once) its own
    assert json.loads((out / MANIFEST).read_text())["descriptors"] == ["local:rootsift", "global:pdq",
                                                                       "global:copylens-sscd18g"]
    made.clear()
    with pytest.raises(UnknownBackendError):
        run_job(build_index(refs, out, global_descriptors=("sift",)))  # even a resumed build checks names
    for bad, error in (("timm:x:/no/such/weights.safetensors", ModelLoadError),
                       ("timm:no_such_net_xyz", ModelLoadError)):  # the second fails only when built
        with pytest.raises(error):
            run_job(build_index(refs, tmp_path / "new", global_descriptors=(bad,)))
        assert not (tmp_path / "new").exists()
    assert made == ["timm:no_such_net_xyz"]


def test_batched_neural_vectors_equal_one_image_at_a_time(tmp_path):
    """The build runs the neural descriptor on batches of references; each stored vector is the one the
    descriptor gives that image alone."""
    from copylens.core.features import FeatureConfig
    from copylens.core.globaldesc import create_descriptor
    from copylens.core.imageio import load_image
    from copylens.core.index import ReferenceStore

    names = ("astronaut", "rocket", "coffee", "camera")
    refs = write_references(tmp_path / "refs", names)
    run_job(build_index(refs, tmp_path / "idx", workers=2, calibrate=False,
                        global_descriptors=("pdq", "copylens-sscd18")))
    d = create_descriptor("copylens-sscd18")
    store = ReferenceStore(tmp_path / "idx")
    try:
        ids = store.ids_of_rows(store.rows())
        for row, rid in ids.items():
            pixels = load_image(refs / f"{rid}.png", max_side=FeatureConfig().max_side).pixels
            alone = d.extract([pixels]).vectors[0]
            stored = store.global_vector("copylens-sscd18", row).vector
            assert np.allclose(stored, alone, atol=1e-4), rid
    finally:
        store.close()


def test_indexes_with_the_earlier_refined_kind_still_open_and_search(tmp_path, monkeypatch):
    """Indexes built before the default became ``ivf-pq`` hold ``ivf-pq-refine``: they keep working."""
    from copylens.core.index import local as localindex

    monkeypatch.setattr(localindex, "FLAT_MAX_DESCRIPTORS", 1000)
    from copylens.core.index import build as build_module

    def legacy(n: int) -> str:
        return "flat" if n <= 1000 else "ivf-pq-refine"

    monkeypatch.setattr(localindex, "choose_kind", legacy)
    monkeypatch.setattr(build_module, "choose_kind", legacy)
    refs = _variants(tmp_path / "refs", 24)
    out = tmp_path / "idx"
    run_job(build_index(refs, out, workers=2, calibrate=False))
    assert json.loads((out / MANIFEST).read_text())["local_index"]["kind"] == "ivf-pq-refine"
    monkeypatch.undo()
    with Engine.open(out) as eng:
        assert _best(eng, np.asarray(Image.open(refs / "set1" / "img 010.jpg"))) == "set1/img 010"


def test_approximate_local_index_holds_our_ids_in_its_lists(tmp_path):
    """New IVF indexes keep (row, keypoint) ids in their inverted lists, with no IndexIDMap2 (its id array
    and hash map nearly double the RAM per descriptor); an index saved with the wrapper (before 2026-12-04)
    loads without it and answers exactly as before."""
    import faiss

    from copylens.core.index import local as localindex
    from copylens.core.index.faissio import save_index

    rng = np.random.default_rng(0)
    vecs = rng.random((6000, 128), dtype=np.float32)
    rows, kps = np.arange(6000) // 100 + 7, np.arange(6000) % 100
    ids = rows * localindex.KP_SLOTS + kps
    queries = vecs[::120] + 0.01

    new = localindex.LocalIndex.create(vecs, 6000)
    assert isinstance(new._index, faiss.IndexIVF)
    new.add_many(rows, kps, vecs)
    found = new.search(queries, 3)
    assert np.array_equal(found.rows[:, 0], rows[::120]) and np.array_equal(found.keypoints[:, 0], kps[::120])

    inner = faiss.index_factory(128, localindex.FACTORIES["ivf-pq"].format(nlist=64))
    inner.train(vecs)
    legacy = faiss.IndexIDMap2(inner)
    legacy.add_with_ids(vecs, ids.astype(np.int64))
    faiss.extract_index_ivf(inner).nprobe = localindex.NPROBE
    want_d, want_i = legacy.search(queries, 5)
    save_index(legacy, tmp_path / "local.faiss")
    del legacy, inner
    loaded = localindex.LocalIndex.load(tmp_path / "local.faiss", "ivf-pq")
    assert not isinstance(loaded._index, faiss.IndexIDMap)
    got = loaded.search(queries, 5)
    assert np.array_equal(got.rows * localindex.KP_SLOTS + got.keypoints, want_i)
    assert np.allclose(got.sq_dists, want_d)
    loaded.add_many(np.array([99]), np.array([0]), vecs[:1] + 0.5)  # still grows, and saves without the wrapper
    loaded.save(tmp_path / "again.faiss")
    again = localindex.LocalIndex.load(tmp_path / "again.faiss", "ivf-pq")
    assert again.ntotal == 6001 and np.array_equal(again.search(queries, 5).rows, got.rows)
    # every FAISS object keeps the ownership FAISS gave it: reading the legacy file again (and anything
    # else) still gives typed indexes (taking the inner index over in place once broke SWIG's type table)
    del loaded, again
    for _ in range(2):
        twice = localindex.LocalIndex.load(tmp_path / "local.faiss", "ivf-pq")
        assert isinstance(twice._index, faiss.IndexIVF) and twice.ntotal == 6000
    assert isinstance(faiss.read_index(str(tmp_path / "local.faiss")), faiss.IndexIDMap2)
