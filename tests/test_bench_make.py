"""Benchmark generation on a tiny synthetic source tree built in tmp_path."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from copylens.core.bench.make import (
    MAX_EDITS_PER_IMAGE,
    Source,
    load_config,
    make_benchmark,
    query_file,
    read_benchmark_query,
    split_benchmark,
)
from copylens.core.cli import main as _cli  # the real `copylens` entry point
from copylens.core.errors import UnknownBackendError
from copylens.core.progress import Progress, run_job

PHOTO_NAMES = ["a.jpg", "b c.jpg", "carpenter's kit.jpg", "café/ü.jpg", "sub/deep/x1.png", "sub/x2.jpeg",
               "d.jpg", "e.jpg", "f.jpg", "g.jpg", "h.jpg", "i.jpg"]
GRAPHIC_NAMES = ["star.png", "frog.png", "frog-1.png", "tux's hat.png", "s/sun.png", "s/moon.png"]


def _draw(rng: np.random.Generator, w: int, h: int, flat: bool) -> Image.Image:
    img = Image.new("RGB", (w, h), (255, 255, 255) if flat else tuple(int(v) for v in rng.integers(0, 256, 3)))
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        d.ellipse((x0, y0, x0 + int(rng.integers(8, w // 2)), y0 + int(rng.integers(8, h // 2))),
                  fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(0)
    for folder, names, flat in (("photos", PHOTO_NAMES, False), ("graphics", GRAPHIC_NAMES, True)):
        for name in names:
            p = root / folder / name
            p.parent.mkdir(parents=True, exist_ok=True)
            _draw(rng, int(rng.integers(60, 140)), int(rng.integers(60, 140)), flat).save(p)
    (root / "photos" / "notes.txt").write_text("not an image")
    (root / "photos" / ".hidden.jpg").write_bytes(b"")
    return root / "photos", root / "graphics"


def _make(tree, out: Path, seed: int = 3, **kw):
    photos, graphics = tree
    sources = [Source(photos, "photo"), Source(graphics, "graphics", queries=3)]
    reports: list[Progress] = []
    summary = run_job(make_benchmark(sources, out, kw.pop("references", 12), kw.pop("queries", 6),
                                     kw.pop("distractors", 5), seed=seed, **kw), reports.append)
    return summary, reports


def _gt(out: Path) -> list[dict]:
    with open(out / "ground_truth.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_layout_ids_and_ground_truth(source_tree, tmp_path):
    out = tmp_path / "bench"
    summary, reports = _make(source_tree, out)
    assert reports and {r.stage for r in reports} >= {"references", "queries"}
    refs = sorted(p for p in (out / "references").rglob("*") if p.is_file())
    assert len(refs) == summary.references == 12
    # every reference is a byte-identical copy of a source file, kept under its relative path
    photos, graphics = source_tree
    for p in refs:
        rel = p.relative_to(out / "references")
        src = (photos if rel.parts[0] == "photos" else graphics) / Path(*rel.parts[1:])
        assert src.read_bytes() == p.read_bytes()
    ref_ids = {p.relative_to(out / "references").with_suffix("").as_posix() for p in refs}
    rows = _gt(out)
    assert list(rows[0]) == ["query_id", "reference_id", "edit", "content", "x0", "y0", "x1", "y1"]
    assert len(rows) == summary.copies + summary.distractors == 11
    assert summary.copies == 6 and summary.distractors == 5 and not summary.failed
    # the graphics source asked for 3 of the copies (its weight 3 against the photos' reference count)
    copies = [r for r in rows if r["reference_id"]]
    assert sum(r["content"] == "graphics" for r in copies) >= 1
    assert summary.per_content["photo"]["copies"] + summary.per_content["graphics"]["copies"] == 6
    for r in rows:
        assert re.fullmatch(r"q\d{5}", r["query_id"])
        assert query_file(out, r["query_id"]) == out / "queries" / f"{r['query_id']}.jpg"
        assert r["content"] in ("photo", "graphics") and r["edit"]
        if r["reference_id"]:
            assert r["reference_id"] in ref_ids
        else:  # distractors: no reference, no box
            assert r["x0"] == r["y0"] == r["x1"] == r["y1"] == ""
    assert sorted(p.stem for p in (out / "queries").iterdir()) == sorted(r["query_id"] for r in rows)
    # scripts read a query as the engine decodes it: the file's pixels, at most max_side on a side
    first = rows[0]["query_id"]
    with Image.open(out / "queries" / f"{first}.jpg") as im:
        size = im.size
    img = read_benchmark_query(out, first, max(size) // 2)
    assert max(img.pixels.shape[:2]) == max(size) // 2 and img.original_size == size
    with pytest.raises(FileNotFoundError, match="q99999"):
        query_file(out, "q99999")
    # a query's name says nothing about its answer: copies and distractors are interleaved
    kinds = "".join("c" if r["reference_id"] else "d" for r in sorted(rows, key=lambda r: r["query_id"]))
    assert kinds != "c" * 6 + "d" * 5
    # names with apostrophes, spaces and unicode survive as ids
    assert any("'" in i or " " in i or "é" in i for i in ref_ids)
    assert (out / "benchmark.json").is_file()


def test_reproducible_from_the_seed(source_tree, tmp_path):
    _make(source_tree, tmp_path / "a", seed=5)
    _make(source_tree, tmp_path / "b", seed=5)
    _make(source_tree, tmp_path / "c", seed=6)
    assert _gt(tmp_path / "a") == _gt(tmp_path / "b")
    for p in (tmp_path / "a" / "queries").iterdir():
        assert p.read_bytes() == (tmp_path / "b" / "queries" / p.name).read_bytes()
    assert _gt(tmp_path / "a") != _gt(tmp_path / "c")


def test_boxes_are_written_for_pastes(source_tree, tmp_path):
    out = tmp_path / "paste"
    summary, _ = _make(source_tree, out, edits=["paste", "pad"])
    assert set(summary.per_edit) <= {"paste", "pad"}
    for r in _gt(out):
        if not r["reference_id"]:
            continue
        x0, y0, x1, y1 = (int(r[k]) for k in ("x0", "y0", "x1", "y1"))
        w, h = Image.open(out / "queries" / f"{r['query_id']}.jpg").size
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h


def test_refuses_a_non_empty_folder_and_unknown_edits(source_tree, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(FileExistsError):
        _make(source_tree, tmp_path / "full")
    with pytest.raises(UnknownBackendError, match="sepia"):
        _make(source_tree, tmp_path / "new", edits=["sepia"])


def test_unreadable_images_are_reported_not_fatal(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.jpg").write_bytes(b"not a jpeg at all")
    summary = run_job(make_benchmark([src], tmp_path / "out", references=0, queries=0, distractors=1))
    assert summary.distractors == 0 and summary.failed and "broken.jpg" in summary.failed[0][0]
    assert _gt(tmp_path / "out") == []


def test_load_config_resolves_paths(tmp_path, source_tree):
    cfg = tmp_path / "conf" / "b.toml"
    cfg.parent.mkdir()
    photos, graphics = source_tree
    cfg.write_text(f'[benchmark]\nroot = ".."\nseed = 4\n\n[[sources]]\npath = "{photos}"\n\n'
                   f'[[sources]]\npath = "conf/../g"\ncontent = "graphics"\nreferences = 2\nqueries = 1\n',
                   encoding="utf-8")
    c = load_config(cfg)
    assert c.seed == 4 and c.sources[0].path == photos and c.sources[1].path == (tmp_path / "g").resolve()
    assert c.sources[1].content == "graphics" and (c.references, c.queries, c.distractors) == (2, 1, 0)




def test_bench_make_command(source_tree, tmp_path, capsys):
    photos, graphics = source_tree
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[benchmark]\nseed = 9\nreferences = 4\nqueries = 2\ndistractors = 2\n\n'
                   f'[[sources]]\npath = "{graphics}"\ncontent = "graphics"\n', encoding="utf-8")
    out = tmp_path / "cli"
    code = _cli(["bench", "make", str(photos), "--config", str(cfg), "--out", str(out), "--references", "8",
                 "--queries", "4"])
    assert code == 0
    rows = _gt(out)
    assert sum(1 for r in rows if r["reference_id"]) == 4 and sum(1 for r in rows if not r["reference_id"]) == 2
    assert {r["content"] for r in rows} <= {"photo", "graphics"}
    assert len([p for p in (out / "references").rglob("*") if p.is_file()]) == 8
    assert "4 copies" in capsys.readouterr().err
    # usage error: nothing to make it from
    assert _cli(["bench", "make", "--out", str(tmp_path / "x")]) == 2
    # failure: the output folder is not empty; one line on stderr
    assert _cli(["bench", "make", str(photos), "--out", str(out)]) == 1
    assert "not empty" in capsys.readouterr().err


def test_a_small_source_edits_its_spare_images_several_times(source_tree, tmp_path):
    """A kind with few images still gets enough distractor queries (dev_v2w.toml): each image kept out of
    the index is edited several times, each time with its own edit, and never becomes a reference."""
    photos, graphics = source_tree
    sources = [Source(photos, "photo", references=10, queries=4, distractors=2),
               Source(graphics, "graphics", references=3, queries=9, distractors=8)]
    split = split_benchmark(sources, 13, 13, 10, seed=4)
    g = split.splits[1]
    assert len(g.references) == 3 and g.distractor_queries == 8
    spare = g.pool  # the 3 graphics kept out of the index
    assert len(spare) == 3 and not set(spare) & set(g.references)
    used = Counter(p for si, p, rid in split.jobs if si == 1 and not rid)
    assert sum(used.values()) == 8 and set(used) == set(spare) and max(used.values()) - min(used.values()) <= 1
    assert max(used.values()) <= MAX_EDITS_PER_IMAGE
    copies = Counter(rid for si, _, rid in split.jobs if si == 1 and rid)
    assert sum(copies.values()) == 9 and set(copies.values()) == {3}  # three edited copies of each reference
    out = tmp_path / "bench"
    summary = run_job(make_benchmark(sources, out, 13, 13, 10, seed=4))
    assert summary.per_content["graphics"] == {"references": 3, "copies": 9, "distractors": 8}
    rows = [r for r in _gt(out) if r["content"] == "graphics" and not r["reference_id"]]
    assert len(rows) == 8 and len({r["edit"] for r in rows}) > 1
    # the repeats are different queries, not the same file written again
    assert len({(out / "queries" / f"{r['query_id']}.jpg").read_bytes() for r in rows}) == 8
