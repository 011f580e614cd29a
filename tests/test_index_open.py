"""Opening a damaged index gives one clear IndexFormatError naming the file, never a traceback from FAISS,
SQLite or json; and the store releases every thread's connection."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from copylens.core.engine import Engine
from copylens.core.errors import IndexFormatError
from copylens.core.index import LOCAL_FAISS, MANIFEST, ReferenceStore
from copylens.core.index.build import build_index
from copylens.core.progress import run_job

from conftest import write_references


@pytest.fixture(scope="module")
def two_indexes(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("two")
    a = write_references(root / "a", ("astronaut", "chelsea", "rocket", "camera"))
    b = write_references(root / "b", ("coffee", "horse", "brick"))
    run_job(build_index(a, root / "ia", workers=1, calibrate=False))
    run_job(build_index(b, root / "ib", workers=1, calibrate=False))
    return root / "ia", root / "ib"


@pytest.fixture
def copy(two_indexes, tmp_path) -> Path:
    out = tmp_path / "idx"
    shutil.copytree(two_indexes[0], out)
    return out


def _manifest(idx: Path) -> dict:
    return json.loads((idx / MANIFEST).read_text())


def _forget_file_records(idx: Path) -> None:
    """Drop the manifest's file sizes and hashes (as in an index from before they were recorded), so the
    deeper checks below are what must catch the damage, not the size check."""
    m = _manifest(idx)
    m.pop("files", None)
    (idx / MANIFEST).write_text(json.dumps(m))


def _fails(idx: Path, match: str) -> None:
    with pytest.raises(IndexFormatError, match=match):
        Engine.open(idx)


def test_local_faiss_from_another_index_is_refused(copy, two_indexes):
    shutil.copyfile(two_indexes[1] / LOCAL_FAISS, copy / LOCAL_FAISS)
    _forget_file_records(copy)
    _fails(copy, "local.faiss: holds .* descriptors but the manifest recorded .*another index")


@pytest.mark.parametrize("content", [b"", b"garbage" * 40, None])
def test_garbage_empty_or_truncated_local_faiss(copy, content):
    path = copy / LOCAL_FAISS
    data = content if content is not None else path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(data)
    _forget_file_records(copy)
    _fails(copy, "local.faiss: the local descriptor index is (empty or truncated|damaged)")


@pytest.mark.parametrize("edit", ["list", "no features", "no local_index", "short calibration", "not json"])
def test_damaged_manifest(copy, edit):
    m = _manifest(copy)
    if edit == "list":
        text = json.dumps([m])
    elif edit == "not json":
        text = "{ broken"
    else:
        if edit == "short calibration":
            m["calibration"] = {"weights": [1.0], "bias": 0.0, "mean": [0.0], "scale": [1.0], "source": "x"}
        else:
            del m[edit.split()[1]]
        text = json.dumps(m)
    (copy / MANIFEST).write_text(text)
    _fails(copy, {"list": "not a CopyLens index manifest", "not json": "unreadable manifest",
                  "no features": "lacks features", "no local_index": "lacks local_index",
                  "short calibration": "calibration is damaged"}[edit])


def test_damaged_database(copy):
    db = copy / "references.sqlite"
    for extra in ("-wal", "-shm"):
        (copy / ("references.sqlite" + extra)).unlink(missing_ok=True)
    db.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50 + b"junk" * 500)
    _forget_file_records(copy)
    _fails(copy, "references.sqlite: the reference database is damaged")


def test_dropped_table(copy):
    con = sqlite3.connect(copy / "references.sqlite")
    con.execute("DROP TABLE refs")
    con.commit()
    con.close()
    _fails(copy, "reference database is damaged")


def test_store_close_releases_every_threads_connection(two_indexes):
    store = ReferenceStore(two_indexes[0])
    counts = []
    threads = [threading.Thread(target=lambda: counts.append(store.count())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts == [4, 4, 4] and len(store._all) == 3
    conns = list(store._all)
    store.close()
    assert store._all == []
    for c in conns:
        with pytest.raises(sqlite3.ProgrammingError):  # closed
            c.execute("SELECT 1")
    assert store.count() == 4  # usable again: a fresh connection
    store.close()


def test_a_build_stopped_while_calibrating_does_not_open(copy):
    m = _manifest(copy)
    (copy / MANIFEST).write_text(json.dumps({**m, "calibration_pending": True, "calibration": None}))
    _fails(copy, "stopped while calibrating; run 'copylens index build")
    with Engine.open(copy, allow_pending=True) as eng:  # self-calibration's own view
        assert eng.info.num_references == 4


def test_metadata_sidecar(tmp_path):
    from copylens.core.cli import main as cli

    refs = write_references(tmp_path / "refs", ("astronaut", "rocket", "camera"))
    sidecar = tmp_path / "meta.csv"
    sidecar.write_text("file,title,artist,licence\nastronaut.png,Eileen Collins,NASA,public domain\n"
                       "rocket,Launch,NASA,public domain\nnot-there.jpg,Ghost,,\n", encoding="utf-8")
    assert cli(["index", "build", str(refs), "--out", str(tmp_path / "idx"), "--no-calibrate",
                "--metadata", str(sidecar)]) == 0
    with Engine.open(tmp_path / "idx") as eng:
        assert eng.metadata("astronaut") == {"artist": "NASA", "licence": "public domain",
                                             "title": "Eileen Collins"}
        assert eng.metadata("rocket")["title"] == "Launch" and eng.metadata("camera") == {}


def test_near_identical_references_are_known(tmp_path):
    """Two versions of one drawing (a few strokes differ) are near-identical; an unrelated photo is not.
    A query of one version still ranks it first, and the window says near-identical references exist."""
    import cv2
    import numpy as np
    from PIL import Image

    from copylens.app.jobs import QueryRequest, query_job

    refs = write_references(tmp_path / "refs", ("rocket", "coffee"))
    rng = np.random.default_rng(4)
    art = np.full((400, 400, 3), 255, np.uint8)
    for _ in range(40):
        p, q = rng.integers(0, 400, 2), rng.integers(0, 400, 2)
        cv2.line(art, tuple(int(v) for v in p), tuple(int(v) for v in q), (0, 0, 0), 3)
    variant = art.copy()
    cv2.line(variant, (20, 380), (120, 300), (0, 0, 0), 3)  # one stroke more
    Image.fromarray(art).save(refs / "spiro_a.png")
    Image.fromarray(variant).save(refs / "spiro_b.png")
    run_job(build_index(refs, tmp_path / "idx", workers=1, calibrate=False))
    with Engine.open(tmp_path / "idx") as eng:
        assert eng.near_identical("spiro_a") == ["spiro_b"] and eng.near_identical("spiro_b") == ["spiro_a"]
        assert eng.near_identical("rocket") == [] and eng.near_identical("coffee") == []
        query = tmp_path / "q.png"
        Image.fromarray(np.ascontiguousarray(np.rot90(art))).save(query)  # rotated copy of version a
        out = run_job(query_job(eng, QueryRequest("q1", "q.png", path=str(query)), top_k=5))
    assert out.result.best.reference_id == "spiro_a"
    assert out.references["spiro_a"]["near_identical"] == "spiro_b"


def test_references_with_the_same_stem_get_ids_with_extensions(tmp_path, capsys):
    """a.jpg and a.png used to crash the build (UNIQUE constraint) on every rerun."""
    from PIL import Image

    from copylens.core.cli import main as cli

    from conftest import skimage_rgb

    refs = tmp_path / "refs"
    (refs / "sub").mkdir(parents=True)
    Image.fromarray(skimage_rgb("astronaut")).save(refs / "a.jpg")
    Image.fromarray(skimage_rgb("rocket")).save(refs / "a.png")
    Image.fromarray(skimage_rgb("camera")).save(refs / "sub" / "b.webp")
    Image.fromarray(skimage_rgb("coins")).save(refs / "sub" / "b.bmp")
    Image.fromarray(skimage_rgb("horse")).save(refs / "c.png")
    for _ in range(2):  # a rerun resumes cleanly
        assert cli(["index", "build", str(refs), "--out", str(tmp_path / "idx"), "--no-calibrate"]) == 0
    err = capsys.readouterr().err
    assert "shares its name with another file: indexed as 'a.jpg'" in err
    with Engine.open(tmp_path / "idx") as eng:
        assert sorted(r.reference_id for r in eng.references()) == ["a.jpg", "a.png", "c", "sub/b.bmp",
                                                                   "sub/b.webp"]
        from copylens.core.query_input import QuerySource

        best = run_job(eng.search(QuerySource("q", pixels=skimage_rgb("rocket")))).best
        assert best.reference_id == "a.png"
