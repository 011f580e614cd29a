"""PDQ hash lists: export an index's hashes, import them into an index without images, and find mirrored,
rotated and re-encoded copies at exactly the distances PDQ gives; malformed lines are reported and skipped."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pdqhash
import pytest
from PIL import Image

from copylens.core.cli import main
from copylens.core.engine import Engine
from copylens.core.errors import CopyLensError
from copylens.core.hashlist_io import hamming, hash_bits, parse_hash_list, parse_hash_text
from copylens.core.hashmatch import HashMatchConfig, transform_name
from copylens.core.imageio import load_image
from copylens.core.index.build import build_index
from copylens.core.index.hashlists import add_hash_list, hash_lists, remove_hash_list
from copylens.core.index.verify import verify_index
from copylens.core.progress import run_job
from copylens.core.resize import fit_longest

from conftest import skimage_rgb, write_references

SAMPLES = ("astronaut", "chelsea", "rocket", "coffee", "horse")
# published examples of python-threatexchange's PdqSignal (pdq/data/bridge-mods and misc-images)
TE_EXAMPLES = ("f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
               "e64cc9d91c623882f8d1f1d9a398e78c9f199b3bd83924f2b7e11e0bf861b064",
               "6227401f601ff4ccafcc9fad4b0d95d371a2eb7265a3285234d228ca94deeb2d")


@pytest.fixture(scope="module")
def indexes(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(an index of the samples, its exported hash list, an index with no references at all)."""
    root = tmp_path_factory.mktemp("hashlists")
    refs = write_references(root / "refs", SAMPLES)
    run_job(build_index(refs, root / "with-images", workers=1, calibrate=False))
    (root / "none").mkdir()
    run_job(build_index(root / "none", root / "hashes-only", workers=1, calibrate=False))
    assert main(["index", "export-hashes", str(root / "with-images"), "--out", str(root / "ours.csv")]) == 0
    return root / "with-images", root / "ours.csv", root / "hashes-only"


def _expected_distance(path: Path, listed: bytes, eng: Engine) -> int:
    """PDQ's own answer, computed here without CopyLens's matcher: the best of the query's 8 dihedral
    hashes (and their complements) against the listed hash, on the pixels the engine queries."""
    pixels, _ = fit_longest(load_image(path, max_side=eng.config.query_max_side).pixels, 512, cv2.INTER_AREA)
    hashes, _ = pdqhash.compute_dihedral(np.ascontiguousarray(pixels))
    packed = [np.packbits(np.asarray(h, np.uint8)).tobytes() for h in hashes]
    packed += [bytes(255 - b for b in p) for p in packed]
    return min(hamming(p, listed) for p in packed)


def test_export_writes_every_reference_hash(indexes):
    with_images, exported, _ = indexes
    parsed = parse_hash_list(exported)
    assert parsed.format == "csv" and not parsed.problems
    assert sorted(e.entry_id for e in parsed.entries) == sorted(SAMPLES)
    for e in parsed.entries:  # the hash of the reference as the index holds it, quality included
        img = load_image(with_images.parent / "refs" / f"{e.entry_id}.png").pixels
        pixels, _ = fit_longest(img, 512, cv2.INTER_AREA)
        bits, q = pdqhash.compute(np.ascontiguousarray(pixels))
        assert e.bits == np.packbits(np.asarray(bits, np.uint8)).tobytes() and e.quality == q


def test_reimported_hashes_find_mirrored_rotated_and_reencoded_copies(indexes, tmp_path, capsys):
    _, exported, hashes_only = indexes
    assert main(["index", "add-hashes", str(hashes_only), str(exported), "--name", "partner"]) == 0
    assert "5 entries imported, 0 line(s) skipped" in capsys.readouterr().err
    listed = {e.entry_id: e.bits for e in parse_hash_list(exported).entries}
    copies = {
        "astronaut-mirrored.png": ("astronaut", skimage_rgb("astronaut")[:, ::-1], "mirrored left to right"),
        "rocket-rot90.png": ("rocket", np.rot90(skimage_rgb("rocket")), "rotated 90° counter-clockwise"),
        "chelsea-q60.jpg": ("chelsea", skimage_rgb("chelsea"), "as listed"),
        "horse-inverted.png": ("horse", 255 - skimage_rgb("horse"), "inverted"),
    }
    for name, (_, pixels, _) in copies.items():
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp_path / name, quality=60)
    with Engine.open(hashes_only) as eng:
        assert eng.info.num_references == 0 and len(eng.hashlists) == 5
        for name, (sample, _, transform) in copies.items():
            result = run_job(eng.search(tmp_path / name, query_id=name))
            assert result.matches == []  # no image in this index: nothing for SIFT to match
            top = result.hash_matches[0]
            assert (top.list_name, top.entry_id) == ("partner", sample), name
            assert top.distance == _expected_distance(tmp_path / name, listed[sample], eng) <= 31
            assert top.transform == transform and top.quality >= 50 and top.box is None
            assert top.confidence == pytest.approx(HashMatchConfig().confidence(top.distance, 5))
            assert all(h.entry_id != "coffee" for h in result.hash_matches)  # no false alarm beside it
        # a picture that is in no list matches nothing
        assert run_job(eng.search(skimage_rgb("camera"), query_id="camera")).hash_matches == []
    assert main(["query", str(hashes_only), str(tmp_path / "chelsea-q60.jpg"), "--format", "json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)[0]
    h = out["hash_matches"][0]
    assert h["list"] == "partner" and h["entry_id"] == "chelsea" and "no image" in h["evidence"]
    strict = tmp_path / "strict.json"  # the threshold is the user's: at 5 bits the rotated copy is not listed
    assert main(["query", str(hashes_only), str(tmp_path / "rocket-rot90.png"), "--format", "json", "-q",
                 "--hash-max-distance", "5", "--out", str(strict)]) == 0
    assert json.loads(strict.read_text())[0]["hash_matches"] == []
    assert main(["index", "info", str(hashes_only), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["hash_lists"][0]["name"] == "partner" and info["hash_lists"][0]["entries"] == 5
    assert run_job(verify_index(hashes_only)).ok


def test_a_list_with_malformed_lines_imports_its_good_lines(indexes, tmp_path, capsys):
    _, exported, _ = indexes
    idx = tmp_path / "idx"
    run_job(build_index(tmp_path, idx, workers=1, calibrate=False))  # an empty folder: an index of no image
    good = [e.hex for e in parse_hash_list(exported).entries]
    text = "\n".join([
        "pdq_hash,id,tags",                       # 1 header
        f"{good[0]},known-1,violence;graphic",    # 2 good, two tags
        f"{good[1][:-2]},short",                  # 3 wrong length
        "# a comment",                            # 4
        f"{'zz' + good[2][2:]},nonhex",           # 5 not hexadecimal
        f"{good[0].upper()},again",               # 6 a duplicate of line 2 (hex case does not matter)
        f"{good[3]},known-2",                     # 7 good
        "",                                       # 8
        ",no-hash",                               # 9 no hash
    ])
    (tmp_path / "list.csv").write_text(text)
    (tmp_path / "bad.csv").write_text("nothing,here\n1234,x\n")
    with pytest.raises(CopyLensError, match="no valid PDQ hash"):  # on an index that never held a list
        add_hash_list(idx, tmp_path / "bad.csv", "first")
    assert run_job(verify_index(idx)).ok  # refused before the database was touched
    assert main(["index", "add-hashes", str(idx), str(tmp_path / "list.csv"), "--name", "gifct"]) == 0
    err = capsys.readouterr().err
    assert "2 entries imported, 4 line(s) skipped" in err
    for line, words in ((3, "62 characters, a PDQ hash has 64"), (5, "not hexadecimal"), (6, "repeats the hash of line 2"),
                        (9, "no hash")):
        assert f"line {line}: " in err and words in err, (line, err)
    with Engine.open(idx) as eng:
        lists = hash_lists(eng.store)
    assert [(h.name, h.entries) for h in lists] == [("gifct", 2)]
    # a list whose every line is bad changes nothing; a second list of the same name is refused
    with pytest.raises(CopyLensError, match="no valid PDQ hash"):
        add_hash_list(idx, tmp_path / "bad.csv", "other")
    with pytest.raises(CopyLensError, match="already held"):
        add_hash_list(idx, tmp_path / "list.csv", "gifct")
    assert main(["index", "remove-list", str(idx), "nope"]) == 1
    with Engine.open(idx) as eng:
        assert [(h.name, h.entries) for h in hash_lists(eng.store)] == [("gifct", 2)]
    assert run_job(verify_index(idx)).ok
    assert remove_hash_list(idx, "gifct") == 2
    with Engine.open(idx) as eng:
        assert hash_lists(eng.store) == [] and eng.hashlists is None
    assert run_job(verify_index(idx)).ok


def test_threatexchange_formats_read_and_write(indexes, tmp_path):
    with_images, _, _ = indexes
    te = "pdq " + "\npdq ".join(TE_EXAMPLES) + "\nmd5 d41d8cd98f00b204e9800998ecf8427e\n"
    parsed = parse_hash_text(te)
    assert parsed.format == "threatexchange" and [e.hex for e in parsed.entries] == list(TE_EXAMPLES)
    assert parsed.problems == [(4, "signal type 'md5' is not PDQ; skipped")]
    descriptors = json.dumps({"data": [
        {"id": "111", "type": "HASH_PDQ", "raw_indicator": TE_EXAMPLES[0], "tags": {"data": [{"text": "csam"}]}},
        {"id": "112", "type": "HASH_MD5", "raw_indicator": "d41d8cd98f00b204e9800998ecf8427e"}]})
    parsed = parse_hash_text(descriptors)
    assert [(e.entry_id, e.hex, e.tags) for e in parsed.entries] == [("111", TE_EXAMPLES[0], ("csam",))]
    assert parsed.problems == [(2, "signal type 'hash_md5' is not PDQ; skipped")]
    records = "\n".join(json.dumps({"signal_type": "pdq", "signal_value": h, "quality": 90}) for h in TE_EXAMPLES)
    assert [e.quality for e in parse_hash_text(records).entries] == [90, 90, 90]
    tsv = "\t".join([TE_EXAMPLES[1], "row-id", "tag-a", "tag-b"])
    assert parse_hash_text(tsv).entries[0].tags == ("tag-a", "tag-b")
    assert main(["index", "export-hashes", str(with_images), "--out", str(tmp_path / "te.txt"),
                 "--format", "threatexchange"]) == 0
    lines = (tmp_path / "te.txt").read_text().splitlines()
    assert len(lines) == len(SAMPLES) and all(ln.startswith("pdq ") and hash_bits(ln[4:]) for ln in lines)


def test_confidence_falls_with_distance_and_with_list_size():
    cfg = HashMatchConfig()
    c = [cfg.confidence(d, 1000) for d in (0, 16, 31, 48)]
    assert c == sorted(c, reverse=True) and c[0] > 0.99 and 0.9 < c[2] < 0.97
    assert cfg.confidence(31, 10 * cfg.measured_entries) < cfg.confidence(31, cfg.measured_entries)
    assert transform_name(8) == "inverted" and transform_name(13) == "inverted, mirrored left to right"


def test_variant_names_match_pdq_dihedral_order():
    """What TRANSFORMS claims, checked against pdqhash itself: a query that is the listed picture
    transformed as named matches the listed hash through that variant (within a few bits)."""
    a = skimage_rgb("astronaut")
    listed = np.packbits(np.asarray(pdqhash.compute(a)[0], np.uint8)).tobytes()
    named = {1: np.rot90(a, -1), 2: np.rot90(a, 2), 3: np.rot90(a, 1), 4: a[::-1], 5: a[:, ::-1],
             6: a.transpose(1, 0, 2), 7: np.rot90(a, 2).transpose(1, 0, 2)}
    for v, img in named.items():
        hashes, _ = pdqhash.compute_dihedral(np.ascontiguousarray(img))
        dist = [hamming(np.packbits(np.asarray(h, np.uint8)).tobytes(), listed) for h in hashes]
        assert int(np.argmin(dist)) == v and min(dist) <= 20, (v, dist)


def test_hash_lists_of_a_query_region(indexes, tmp_path):
    """A listed picture pasted into a larger screenshot is found through a region proposal."""
    _, exported, hashes_only = indexes
    with Engine.open(hashes_only) as eng:
        if eng.hashlists is None:
            add_hash_list(hashes_only, exported, "partner")
    canvas = np.full((900, 1400, 3), 245, np.uint8)
    canvas[:60] = (40, 60, 90)  # a title bar
    canvas[150:662, 300:812] = skimage_rgb("astronaut")
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    with Engine.open(hashes_only) as eng:
        result = run_job(eng.search(buf.getvalue(), query_id="screenshot"))
    top = result.hash_matches[0]
    assert top.entry_id == "astronaut" and top.box is not None
    x0, y0, x1, y1 = top.box
    assert abs(x0 - 300) < 40 and abs(y0 - 150) < 40 and abs(x1 - 812) < 40 and abs(y1 - 662) < 40
