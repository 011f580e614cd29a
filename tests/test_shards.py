"""Sharded indexes (issue 12): built in K parts, searched as one, with the answers of one index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from copylens.core.edits import EDITS
from copylens.core.engine import Engine
from copylens.core.errors import CopyLensError, IndexFormatError
from copylens.core.imageio import from_array
from copylens.core.index.build import add_to_index
from copylens.core.index.shardbuild import add_to_sharded, build_sharded, remove_from_sharded
from copylens.core.index.shards import SHARD_ROWS, read_shards_manifest, shard_of_id
from copylens.core.index.store import ReferenceStore
from copylens.core.index.verify import verify_index
from copylens.core.progress import run_job

from conftest import DISTRACTOR_NAMES, REFERENCE_NAMES, skimage_rgb, write_references

SHARDS = 3
EDITED = (("rocket", "crop"), ("astronaut", "rotate"), ("coins", "color"), ("horse", "mirror_jpeg"),
          ("brick", "paste"), ("chelsea", "text"), ("camera", "pad"), ("clock", "perspective"))


def queries() -> list[tuple[str, np.ndarray]]:
    """Edited copies of references (their answer: the reference) and distractors (no answer)."""
    out = []
    for i, (name, edit) in enumerate(EDITED):
        out.append((name, EDITS[edit](skimage_rgb(name), np.random.default_rng(i), skimage_rgb("coffee")).pixels))
    out += [("", skimage_rgb(n)) for n in DISTRACTOR_NAMES]
    return out


@pytest.fixture(scope="module")
def sharded_index(tmp_path_factory, reference_dir) -> Path:
    out = tmp_path_factory.mktemp("sharded") / "idx"
    run_job(build_sharded(reference_dir, out, SHARDS, workers=2, calibration_queries=40))
    return out


def decided(result) -> tuple[str | None, float]:
    m = result.matches[0] if result.matches else None
    return (m.reference_id if m is not None and m.score >= 0.5 else None), (m.score if m else 0.0)


def test_sharded_answers_equal_one_index(sharded_index, small_index):
    """The same references in one index and in 3 shards: the same decided top-1 for every query, each right,
    with its evidence (inliers, lines, outline) from the shard that holds the reference."""
    with Engine.open(small_index) as one, Engine.open(sharded_index) as many:
        assert many.info.num_references == one.info.num_references == len(REFERENCE_NAMES)
        for answer, pixels in queries():
            img = from_array(pixels, "<q>", max_side=800)
            a, b = run_job(one.query(img)), run_job(many.query(img))
            assert decided(a)[0] == decided(b)[0] == (answer or None), (answer, decided(a), decided(b))
            if answer:
                m = b.matches[0]
                assert m.num_inliers >= 8 and len(m.evidence.query_points) == m.num_inliers
                assert m.evidence.outline is not None
                assert abs(decided(a)[1] - decided(b)[1]) < 0.25


def test_shards_hold_disjoint_row_ranges_and_share_their_post_processing(sharded_index):
    top = read_shards_manifest(sharded_index)
    assert top["shards"] == ["shard-000", "shard-001", "shard-002"]
    assert top["calibration"]["source"].startswith("fitted")
    assert sum(top["counts"]["per_shard"]) == len(REFERENCE_NAMES)
    backgrounds = set()
    for i, name in enumerate(top["shards"]):
        store = ReferenceStore(sharded_index / name)
        try:
            ids = dict(store.rows_by_id())
        finally:
            store.close()
        assert ids and all(i * SHARD_ROWS < r < (i + 1) * SHARD_ROWS for r in ids.values())
        assert all(shard_of_id(rid, SHARDS) == i for rid in ids)
        m = json.loads((sharded_index / name / "manifest.json").read_text())
        neural = [e for e in m["global"] if e["metric"] == "ip"]
        backgrounds |= {e["normalization"]["sha256"] for e in neural}
        # 16 references in all are enough for a score-normalisation background; 5 in one shard would not be
        assert all("skipped" not in e["normalization"] for e in neural)
    assert len(backgrounds) == 1  # one background, fitted once on all shards, in every shard


def test_shard_of_id_is_stable_and_spreads():
    assert shard_of_id("icons/tango-edit-copy", 7) == shard_of_id("icons/tango-edit-copy", 7)
    counts = np.bincount([shard_of_id(f"ref-{i}", 8) for i in range(8000)], minlength=8)
    assert counts.min() > 850 and counts.max() < 1150


def test_near_identical_pairs_across_shards(tmp_path):
    """Two near-identical images in different shards: each says the other exists."""
    refs = tmp_path / "refs"
    refs.mkdir()
    base = skimage_rgb("coins")
    other = base.copy()
    other[150:160, 90:130] = 0  # a few strokes differ
    names = [f"drawing-{i}" for i in range(40)]
    a = names[0]
    b = next(n for n in names[1:] if shard_of_id(n, 2) != shard_of_id(a, 2))
    Image.fromarray(base).save(refs / f"{a}.png")
    Image.fromarray(other).save(refs / f"{b}.png")
    Image.fromarray(skimage_rgb("rocket")).save(refs / "rocket.png")
    out = tmp_path / "idx"
    run_job(build_sharded(refs, out, 2, workers=2, calibrate=False, global_descriptors=("pdq",)))
    with Engine.open(out) as eng:
        assert eng.near_identical(a) == [b] and eng.near_identical(b) == [a]
        assert eng.near_identical("rocket") == []


def test_rerun_adds_new_files_where_their_ids_say_and_refuses_another_shard_count(tmp_path, sharded_index):
    refs = write_references(tmp_path / "refs", REFERENCE_NAMES[:6])
    out = tmp_path / "idx"
    run_job(build_sharded(refs, out, 2, workers=2, calibrate=False, global_descriptors=("pdq",)))
    write_references(refs, REFERENCE_NAMES[6:9])
    s = run_job(build_sharded(refs, out, 2, workers=2, calibrate=False, global_descriptors=("pdq",)))
    assert (s.added, s.skipped, s.total_references) == (3, 6, 9)
    for i in range(2):
        store = ReferenceStore(out / f"shard-00{i}")
        try:
            assert all(shard_of_id(rid, 2) == i for rid, _ in store.rows_by_id())
        finally:
            store.close()
    with pytest.raises(CopyLensError, match="--shards 2"):
        run_job(build_sharded(refs, out, 3, workers=2, calibrate=False, global_descriptors=("pdq",)))
    with pytest.raises(IndexFormatError, match="sharded index"):
        run_job(add_to_index(out, [refs / "rocket.png"]))  # the one-directory function refuses it clearly


def test_a_sharded_build_stopped_midway_resumes(tmp_path):
    """Cancelled during the second shard: the folder says how to resume, and the rerun finishes it."""
    refs = write_references(tmp_path / "refs", REFERENCE_NAMES[:6])
    out = tmp_path / "idx"
    job = build_sharded(refs, out, 2, workers=1, calibrate=False, global_descriptors=("pdq",))
    for p in job:
        if p.message.startswith("shard 2/2") and p.stage == "extract":
            job.close()
            break
    with pytest.raises(IndexFormatError, match="did not finish.*--shards K"):
        Engine.open(out)
    s = run_job(build_sharded(refs, out, 2, workers=1, calibrate=False, global_descriptors=("pdq",)))
    assert s.total_references == 6 and s.skipped >= 1
    with Engine.open(out) as eng:
        assert eng.info.num_references == 6


def test_add_and_remove_on_a_sharded_index(tmp_path):
    """``index add`` sends each new file to the shard its id hashes to and keeps the calibration;
    ``index remove`` removes from the right shard; both keep the manifests true (verify passes)."""
    refs = write_references(tmp_path / "refs", REFERENCE_NAMES[:6])
    out = tmp_path / "idx"
    run_job(build_sharded(refs, out, 3, workers=1, calibration_queries=20, global_descriptors=("pdq",)))
    calibration = read_shards_manifest(out)["calibration"]
    extra = write_references(tmp_path / "more", ("clock", "coins"))
    s = run_job(add_to_sharded(out, [extra / "clock.png", extra / "coins.png", refs / "rocket.png"], workers=1))
    # rocket.png is indexed already (a skip); this coins.png has the content of the indexed coins (a duplicate)
    assert (s.added, s.skipped, s.duplicates, s.total_references) == (1, 1, 1, 7)
    top = read_shards_manifest(out)
    assert top["calibration"] == calibration and top["counts"]["references"] == 7
    with Engine.open(out) as eng:
        r = run_job(eng.query(from_array(skimage_rgb("clock"), "<clock>")))
        assert r.matches[0].reference_id == "clock"
        holder = shard_of_id("clock", 3)
    store = ReferenceStore(out / f"shard-00{holder}")
    try:
        assert "clock" in dict(store.rows_by_id())
    finally:
        store.close()
    assert remove_from_sharded(out, ["clock", "no-such-id"]) == 1
    assert read_shards_manifest(out)["counts"]["references"] == 6
    with Engine.open(out) as eng:
        assert "clock" not in {i.reference_id for i in eng.references()}
    assert run_job(verify_index(out)).ok


def test_verify_names_the_damaged_shard(tmp_path, sharded_index):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(sharded_index, copy)
    assert run_job(verify_index(copy)).ok
    target = copy / "shard-001" / "local.faiss"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x40
    target.write_bytes(bytes(data))
    report = run_job(verify_index(copy))
    assert not report.ok
    assert [c.subject for c in report.problems] == ["shard-001/local.faiss"]


def test_more_shards_than_references(tmp_path):
    """Empty shards are fine: a 3-reference index in 6 shards answers like any other."""
    refs = write_references(tmp_path / "refs", ("rocket", "coins", "camera"))
    out = tmp_path / "idx"
    run_job(build_sharded(refs, out, 6, workers=1, calibrate=False))
    top = read_shards_manifest(out)
    assert sorted(top["counts"]["per_shard"]).count(0) >= 3 and top["counts"]["references"] == 3
    with Engine.open(out) as eng:
        r = run_job(eng.query(from_array(np.ascontiguousarray(skimage_rgb("rocket")[40:380, 60:560]), "<q>")))
        assert r.matches[0].reference_id == "rocket" and r.matches[0].num_inliers > 20


def test_the_same_content_is_stored_once_across_shards(tmp_path):
    """Two files with the same content under ids that hash to different shards: one reference and one
    duplicate, as in one index."""
    refs = tmp_path / "refs"
    refs.mkdir()
    a = "photo-a"
    b = next(f"photo-{i}" for i in range(100) if shard_of_id(f"photo-{i}", 2) != shard_of_id(a, 2))
    Image.fromarray(skimage_rgb("rocket")).save(refs / f"{a}.png")
    (refs / f"{b}.png").write_bytes((refs / f"{a}.png").read_bytes())
    Image.fromarray(skimage_rgb("coins")).save(refs / "coins.png")
    s = run_job(build_sharded(refs, tmp_path / "idx", 2, workers=1, calibrate=False, global_descriptors=("pdq",)))
    assert (s.added, s.duplicates, s.total_references) == (2, 1, 2)
