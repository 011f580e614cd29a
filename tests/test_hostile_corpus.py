"""A hostile corpus, end to end through the CLI: one folder with every kind of bad and special file is
built into an index, added to another, and queried. Each bad file gets one clear line; the good ones
(including those sharing a stem with a bad one, and one whose name holds terminal escape sequences)
are indexed and found; nothing hangs; the terminal never sees a raw escape; the index verifies."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from copylens.core.cli import main

from conftest import skimage_rgb

EVIL = "evil\x1b[31mred\x07.png"  # a good picture with a hostile name
EVIL_BAD = "clear\x1b[2J\x1b]0;owned\x07.jpg"  # a broken one: its name is printed in the report


def _png_claiming(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "gray").save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def _save(path: Path, name: str, fmt: str | None = None, step: int = 2) -> None:
    Image.fromarray(np.ascontiguousarray(skimage_rgb(name)[::step, ::step])).save(path, format=fmt)


def make_corpus(folder: Path, v: int = 0) -> dict[str, str]:
    """Writes the corpus (``v`` makes other pictures of the same kinds); returns {file name: what the report
    must say about it} for the bad files."""
    folder.mkdir(parents=True)
    s = 2 + v
    _save(folder / "astronaut.png", "astronaut", step=s)
    _save(folder / "rocket.webp", "rocket", "WEBP", step=s)
    _save(folder / "camera.jpg", "camera", step=s)  # same stem, different pictures
    _save(folder / "camera.png", "coins", step=s)
    jpeg = io.BytesIO()
    Image.fromarray(skimage_rgb("chelsea")).save(jpeg, format="JPEG")
    (folder / "trunc50.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    _save(folder / "trunc50.png", "horse", step=s)  # must not lose its id to the broken trunc50.jpg
    _save(folder / EVIL, "brick", step=s)
    Image.fromarray(skimage_rgb("moon")[::v + 1, ::v + 1, 0].astype(np.uint16) * 257).save(folder / "deep16.png")
    Image.new("RGB", (300 + v, 300), "white").save(folder / "blank.png")
    Image.new("RGBA", (200 + v, 200), (0, 0, 0, 0)).save(folder / "transparent.png")
    Image.new("RGB", (1, 1), (255, v, 0)).save(folder / "tiny.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not a picture at all\n")
    (folder / EVIL_BAD).write_bytes(b"\x1b[2J" * 50)
    (folder / "bomb.png").write_bytes(_png_claiming(40_000, 40_000))
    (folder / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>')
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    (folder / "folder.jpg").mkdir()
    return {"trunc50.jpg": "truncated", "empty.jpg": "empty", "notes.png": "not an image file",
            "bomb.png": "too large", "drawing.svg": "vector drawing", "pipe.jpg": "not a regular file",
            "zero.jpg": "not a regular file", EVIL_BAD: "not an image file"}


GOOD = {"astronaut", "rocket", "camera.jpg", "camera.png", "trunc50.png", "deep16", "blank", "transparent",
        "tiny", EVIL[:-4]}


def _failed_lines(err: str) -> dict[str, str]:
    out = {}
    for line in err.splitlines():
        if line.strip().startswith("failed:"):
            path = line.split("failed: ", 1)[1].split(": ", 1)[0]
            out[Path(path).name.replace("\\x1b", "\x1b").replace("\\x07", "\x07")] = line
    return out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_hostile_corpus_builds_adds_and_queries(tmp_path, capsys):
    bad = make_corpus(tmp_path / "refs")
    idx = tmp_path / "idx"
    assert main(["index", "build", str(tmp_path / "refs"), "--out", str(idx), "--no-calibrate", "-q",
                 "--workers", "2"]) == 0
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\\x1b[2J\\x1b]0;owned\\x07" in err  # shown, never interpreted
    failed = _failed_lines(err)
    assert set(failed) == set(bad), err
    for name, words in bad.items():
        assert words in failed[name], failed[name]
    assert "indexed as 'trunc50.png'" in err and "indexed as 'camera.jpg'" in err
    assert "no local features" in err and "blank" in err and "transparent" in err and "tiny" in err
    assert f"{len(GOOD)} references in the index" in err

    assert main(["index", "info", str(idx), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["references"] == len(GOOD)

    # the same corpus added to an existing index: the same report, then a rerun is all skips
    other = tmp_path / "other"
    assert main(["index", "build", str(tmp_path / "refs"), "--out", str(other), "--no-calibrate", "-q"]) == 0
    capsys.readouterr()
    more = tmp_path / "more"
    make_corpus(more, v=1)
    assert main(["index", "add", str(other), str(more), "-q"]) == 0
    err = capsys.readouterr().err
    assert set(_failed_lines(err)) == set(bad) and "\x1b" not in err
    assert f"{2 * len(GOOD)} references in the index" in err
    assert main(["index", "add", str(other), str(more), "-q"]) == 1  # nothing new, the same failures
    assert f"added 0, skipped {len(GOOD)}" in capsys.readouterr().err

    # every good file is found as itself; every bad one is one line; the FIFO does not hang
    assert main(["query", str(idx), str(tmp_path / "refs"), "--format", "json", "-q", "--top-k", "3"]) == 0
    captured = capsys.readouterr()
    results = {Path(r["path"]).name: r for r in json.loads(captured.out)}
    expect = {"astronaut.png": "astronaut", "rocket.webp": "rocket", "camera.jpg": "camera.jpg",
              "camera.png": "camera.png", "trunc50.png": "trunc50.png", "deep16.png": "deep16",
              EVIL: EVIL[:-4]}
    for name, rid in expect.items():
        assert results[name]["matches"] and results[name]["matches"][0]["reference_id"] == rid, name
    skipped = [line for line in captured.err.splitlines() if str(tmp_path / "refs") in line]
    assert len(skipped) == len(bad) and "\x1b" not in captured.err
    assert f"{len(GOOD)} processed, {len(bad) - 1} skipped" in captured.err  # the SVG was never a query
    assert main(["index", "verify", str(idx), "-q"]) == 0
    assert main(["index", "verify", str(other), "-q"]) == 0
