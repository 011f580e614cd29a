"""Integrity and writers: the manifest records every data file's size and sha256, opening checks sizes,
``copylens index verify`` finds a single flipped bit, and one writer at a time holds a visible lock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from copylens.core.cli import main
from copylens.core.engine import Engine
from copylens.core.errors import IndexFormatError
from copylens.core.index import LOCAL_FAISS, MANIFEST
from copylens.core.index.build import add_to_index, build_index, remove_from_index
from copylens.core.index.layout import data_files
from copylens.core.index.lock import LOCK, IndexBusyError, current_writer, writer_lock
from copylens.core.index.verify import verify_index
from copylens.core.progress import run_job

from conftest import skimage_rgb, write_references

DB = "references.sqlite"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("integrity")
    refs = write_references(root / "refs", ("astronaut", "chelsea", "rocket", "camera", "coins"))
    run_job(build_index(refs, root / "idx", workers=1, calibrate=False))
    return root / "idx"


@pytest.fixture
def copy(built, tmp_path) -> Path:
    out = tmp_path / "idx"
    shutil.copytree(built, out)
    return out


def _flip_bit(path: Path, at: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x10
    path.write_bytes(bytes(data))


def test_manifest_records_each_data_file_and_verify_passes(built):
    files = json.loads((built / MANIFEST).read_text())["files"]
    assert set(files) == {p.name for p in data_files(built)} >= {DB, LOCAL_FAISS, "global_0.faiss", "global_1.faiss"}
    for name, rec in files.items():
        assert rec["size"] == (built / name).stat().st_size and len(rec["sha256"]) == 64
    report = run_job(verify_index(built))
    assert report.ok and not report.problems
    assert {c.subject for c in report.checks if c.status == "ok"} >= {DB, LOCAL_FAISS, "global_0.faiss", "index"}
    assert not (built / LOCK).exists()


def test_reading_an_index_leaves_its_files_as_recorded(built, tmp_path):
    """Readers never change the database (no journal switch, no log folded in later)."""
    with Engine.open(built) as eng:
        result = run_job(eng.search(skimage_rgb("chelsea")[40:260, 30:400].copy(), query_id="q"))
        assert result.matches and result.matches[0].reference_id == "chelsea"
    assert run_job(verify_index(built)).ok


@pytest.mark.parametrize("name", [LOCAL_FAISS, DB])
def test_one_flipped_bit_is_found_by_verify(copy, name):
    _flip_bit(copy / name)
    report = run_job(verify_index(copy))
    assert not report.ok
    bad = [c for c in report.problems if c.subject == name]
    assert len(bad) == 1 and "content changed since the index was written" in bad[0].message
    assert str(copy / name) in bad[0].message and "rebuild the index" in bad[0].message
    assert main(["index", "verify", str(copy), "-q"]) == 1


def test_a_file_of_another_size_is_refused_at_open(copy):
    with open(copy / DB, "ab") as fh:
        fh.write(b"\0" * 4096)
    with pytest.raises(IndexFormatError, match=r"references\.sqlite: \d+ bytes but the manifest recorded \d+"):
        Engine.open(copy)
    (copy / "global_0.faiss").unlink()
    report = run_job(verify_index(copy))
    assert {c.subject for c in report.problems} >= {DB, "global_0.faiss"}


def test_verify_cli_reports_a_sound_index(built, capsys):
    assert main(["index", "verify", str(built), "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and any(c["subject"] == LOCAL_FAISS and c["status"] == "ok" for c in out["checks"])


@pytest.fixture
def other_process():
    """A live process that is not this one, to hold a lock."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _lock_as(index: Path, pid: int) -> None:
    import socket

    (index / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                          "command": "copylens index add", "started": "2026-11-30T10:00:00"}))


def test_a_second_writer_and_any_reader_are_told_who_writes(copy, other_process, tmp_path):
    _lock_as(copy, other_process.pid)
    assert current_writer(copy).pid == other_process.pid
    msg = rf"being written by 'copylens index add' \(process {other_process.pid}"
    with pytest.raises(IndexBusyError, match=msg):
        run_job(add_to_index(copy, [write_references(tmp_path / "more", ("horse",))]))
    with pytest.raises(IndexBusyError, match=msg):
        remove_from_index(copy, ["chelsea"])
    with pytest.raises(IndexBusyError, match=msg):
        run_job(build_index(write_references(tmp_path / "r", ("horse",)), copy, calibrate=False))
    with pytest.raises(IndexBusyError, match=msg):
        Engine.open(copy)
    assert main(["index", "remove", str(copy), "chelsea"]) == 1
    report = run_job(verify_index(copy))
    assert [c.status for c in report.checks] == ["unchecked"]
    assert json.loads((copy / LOCK).read_text())["pid"] == other_process.pid  # nobody took it away


def test_a_stale_lock_is_taken_over_and_said_so(copy, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock_as(copy, dead.pid)
    assert current_writer(copy) is None
    with Engine.open(copy) as eng:  # readers ignore a stale lock
        assert eng.info.num_references == 5
    summary = run_job(add_to_index(copy, [write_references(tmp_path / "more", ("horse",))], workers=1))
    assert summary.added == 1
    assert any(f"stale lock left by 'copylens index add' (process {dead.pid}" in n for n in summary.notes)
    assert not (copy / LOCK).exists()
    assert run_job(verify_index(copy)).ok


def test_the_lock_is_held_during_the_write_and_released_after_a_failure(copy, tmp_path):
    seen = []
    job = add_to_index(copy, [write_references(tmp_path / "more", ("horse", "brick"))], workers=1)
    for _ in job:
        seen.append(current_writer(copy))
    assert seen and all(w is not None and w.pid == os.getpid() for w in seen)
    assert not (copy / LOCK).exists()
    with Engine.open(copy) as eng:
        horse = next(i for i in eng.store.known_ids() if "horse" in i)
    with writer_lock(copy, "test"):
        with pytest.raises(IndexBusyError):  # the same process, a second writer
            remove_from_index(copy, [horse])
    assert remove_from_index(copy, [horse]) == 1 and not (copy / LOCK).exists()
    # a build that cannot start leaves no folder and no lock behind
    with pytest.raises(Exception, match="unknown"):
        run_job(build_index(copy.parent, tmp_path / "new-index", global_descriptors=("no-such-descriptor",)))
    assert not (tmp_path / "new-index").exists()
