"""The ``copylens`` command line, end to end on scikit-image's sample images (run as a real subprocess)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import skimage_rgb, write_references


def copylens(*args, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "copylens.core", *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    refs = write_references(root / "refs", ("astronaut", "rocket", "camera", "horse", "coins", "brick"))
    p = copylens("index", "build", refs, "--out", root / "idx", "--workers", "2", "--no-calibrate")
    assert "6 references in the index" in p.stderr
    queries = root / "queries"
    queries.mkdir()
    Image.fromarray(skimage_rgb("rocket")[40:380, 60:560]).save(queries / "my rocket.jpg", quality=90)
    Image.fromarray(np.ascontiguousarray(skimage_rgb("astronaut")[:, ::-1])).save(queries / "astro.png")
    Image.fromarray(skimage_rgb("coffee")).save(queries / "coffee.jpg")
    (queries / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    return root


def test_help_everywhere():
    for args in ([], ["index"], ["index", "build"], ["query"], ["eval"], ["bench", "make"]):
        p = copylens(*args, "--help")
        assert p.stdout.startswith("usage: copylens")


def test_query_csv_contract(cli_index):
    p = copylens("query", cli_index / "idx", cli_index / "queries", "--top-k", "2")
    rows = list(csv.reader(io.StringIO(p.stdout)))
    assert rows[0] == ["query_id", "reference_id", "score"]
    best = {}
    for q, ref, score in rows[1:]:
        assert len(score.split(".")[1]) == 6  # the contract: six decimals
        best.setdefault(q, (ref, float(score)))
    assert best["my rocket"][0] == "rocket" and best["astro"][0] == "astronaut"
    # an uncalibrated index still separates copies from the unrelated coffee photo
    assert best["my rocket"][1] > 0.5 and best["astro"][1] > 0.5
    assert best.get("coffee", ("", 0.0))[1] < 0.3
    assert all(q in ("my rocket", "astro", "coffee") for q in best)
    assert sum(1 for r in rows[1:] if r[0] == "astro") <= 2
    assert "broken.jpg" in p.stderr and "skipped" in p.stderr  # reported, not fatal


def test_query_json_has_evidence(cli_index, tmp_path):
    out = tmp_path / "r.json"
    copylens("query", cli_index / "idx", cli_index / "queries" / "astro.png", "--format", "json", "--out", out)
    data = json.loads(out.read_text())
    m = data[0]["matches"][0]
    assert m["reference_id"] == "astronaut" and m["mirrored"] is True
    assert len(m["query_points"]) == len(m["reference_points"]) == m["inliers"] > 20
    assert np.asarray(m["homography"]).shape == (3, 3) and np.asarray(m["outline"]).shape == (4, 2)


def test_sift_only_index(cli_index, tmp_path):
    copylens("index", "build", cli_index / "refs", "--out", tmp_path / "sift", "--global", "none", "--no-calibrate")
    info = json.loads(copylens("index", "info", tmp_path / "sift", "--json").stdout)
    assert info["descriptors"] == ["local:rootsift"]
    p = copylens("query", tmp_path / "sift", cli_index / "queries" / "my rocket.jpg")
    assert p.stdout.splitlines()[1].startswith("my rocket,rocket,")
    bad = copylens("index", "build", cli_index / "refs", "--out", tmp_path / "bad", "--global", "nonsense",
                   check=False)
    assert bad.returncode == 1 and "valid" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()  # nothing written for a mistyped option


def test_exit_codes(cli_index, tmp_path):
    assert copylens("query", cli_index / "idx", cli_index / "queries" / "broken.jpg", check=False).returncode == 1
    p = copylens("query", tmp_path / "nope", cli_index / "queries", check=False)
    assert p.returncode == 1 and "no such index" in p.stderr and "Traceback" not in p.stderr
    assert copylens("query", check=False).returncode == 2
    assert copylens("index", "remove", cli_index / "idx", "not-there", check=False).returncode == 1


def test_info_add_remove(cli_index):
    idx = cli_index / "idx"
    extra = write_references(cli_index / "more", ("chelsea",))
    copylens("index", "add", idx, extra / "chelsea.png")
    info = json.loads(copylens("index", "info", idx, "--json").stdout)
    assert info["references"] == 7 and info["descriptors"] == ["local:rootsift", "global:pdq",
                                                                   "global:copylens-sscd18g"]
    copylens("index", "remove", idx, "chelsea")
    assert json.loads(copylens("index", "info", idx, "--json").stdout)["references"] == 6


def test_small_cli_mistakes_are_clear(cli_index, tmp_path):
    import shutil

    bad_k = copylens("query", cli_index / "idx", cli_index / "queries", "--top-k", "-1", check=False)
    assert bad_k.returncode == 2 and "must be at least 1" in bad_k.stderr and "Traceback" not in bad_k.stderr
    missing = copylens("query", cli_index / "idx", cli_index / "queries", "--out", tmp_path / "no" / "o.csv",
                       check=False)
    assert missing.returncode == 2 and "cannot write" in missing.stderr and "Traceback" not in missing.stderr
    idx = tmp_path / "idx"
    shutil.copytree(cli_index / "idx", idx)
    coffee = cli_index / "queries" / "coffee.jpg"
    twice = copylens("index", "add", idx, coffee, coffee)  # the same file twice in one command
    assert "failed: " not in twice.stderr and "added 1, skipped 1" in twice.stderr
