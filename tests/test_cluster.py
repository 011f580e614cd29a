"""Ray (issue 12): sharded builds extract on a local Ray cluster, queries fan out to shard actors, and a
shard actor that dies gives a retried answer or a clear error, never a silently partial ranking."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import ray
from PIL import Image

from copylens.core.cluster import ShardUnavailableError
from copylens.core.cluster.extract import ray_extract
from copylens.core.engine import Engine
from copylens.core.errors import CopyLensError
from copylens.core.imageio import from_array
from copylens.core.index.shardbuild import build_sharded
from copylens.core.index.store import ReferenceStore
from copylens.core.progress import Progress, run_job

from conftest import REFERENCE_NAMES, skimage_rgb, write_references

GLOBALS = ("pdq", "copylens-sscd18")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def built(local_ray, tmp_path_factory, reference_dir):
    """The same references sharded twice: extracted on Ray, and in this process."""
    root = tmp_path_factory.mktemp("ray")
    on_ray, here = root / "on-ray", root / "here"
    run_job(build_sharded(reference_dir, on_ray, 2, workers=2, calibration_queries=30, global_descriptors=GLOBALS,
                          extract=ray_extract()))
    run_job(build_sharded(reference_dir, here, 2, workers=2, calibration_queries=30, global_descriptors=GLOBALS))
    return on_ray, here


def _stored(index, shard):
    store = ReferenceStore(index / shard)
    try:
        out = {}
        for rid, row in store.rows_by_id():
            f = store.features(row)
            out[rid] = (row, f.keypoints.tobytes(), f.descriptors.tobytes(),
                        *(store.global_vector(n, row).vector.tobytes() for n in GLOBALS))
        return out
    finally:
        store.close()


def test_ray_extraction_stores_what_a_local_build_stores(built):
    on_ray, here = built
    for shard in ("shard-000", "shard-001"):
        a, b = _stored(on_ray, shard), _stored(here, shard)
        assert a.keys() == b.keys() and a
        for rid in a:
            assert a[rid][:3] == b[rid][:3], rid  # rows, keypoints and descriptors byte for byte
            assert np.allclose(np.frombuffer(a[rid][4], np.float32), np.frombuffer(b[rid][4], np.float32), atol=1e-5)
    assert sum(len(_stored(on_ray, s)) for s in ("shard-000", "shard-001")) == len(REFERENCE_NAMES)


def _queries():
    q = [from_array(np.ascontiguousarray(skimage_rgb("rocket")[40:380, 60:560]), "<rocket>", max_side=800),
         from_array(np.ascontiguousarray(skimage_rgb("astronaut")[:, ::-1]), "<astronaut>", max_side=800),
         from_array(skimage_rgb("coffee"), "<coffee>", max_side=800)]
    return list(zip(("rocket", "astronaut", None), q, strict=True))


def _answer(result):
    return [(m.reference_id, round(m.score, 6), m.num_inliers) for m in result.matches]


def test_queries_on_shard_actors_equal_queries_in_process(built):
    on_ray, _ = built
    with Engine.open(on_ray) as here, Engine.open(on_ray, ray="auto") as remote:
        assert len(remote.store.shards) == 2
        for answer, q in _queries():
            a, b = run_job(here.query(q)), run_job(remote.query(q))
            assert _answer(a) == _answer(b)
            top = b.matches[0] if b.matches else None
            assert (top.reference_id if top is not None and top.score >= 0.5 else None) == answer
        assert remote.near_identical("rocket") == here.near_identical("rocket")
        assert remote.thumbnail("rocket").shape == here.thumbnail("rocket").shape


def test_ray_on_an_unsharded_index_is_a_clear_error(local_ray, small_index):
    with pytest.raises(CopyLensError, match="not a sharded index"):
        Engine.open(small_index, ray="auto")


def _query_killing(engine, image, kill):
    """Run a query, calling ``kill()`` once verification has started (mid-query)."""
    job = engine.query(image)
    killed = False
    try:
        while True:
            p = next(job)
            if not killed and isinstance(p, Progress) and p.stage == "verify":
                kill()
                killed = True
    except StopIteration as stop:
        assert killed
        return stop.value


def test_a_shard_actor_dying_mid_query_is_restarted_and_the_answer_is_complete(built):
    on_ray, _ = built
    answer, q = _queries()[0]
    with Engine.open(on_ray) as here, Engine.open(on_ray, ray="auto") as remote:
        expected = _answer(run_job(here.query(q)))
        actors = remote.store.shards.actors
        pid = ray.get(actors[1].pid.remote())
        result = _query_killing(remote, q, lambda: ray.kill(actors[1], no_restart=False))
        assert _answer(result) == expected and result.matches[0].reference_id == answer
        assert ray.get(actors[1].pid.remote()) != pid  # a new process holds the shard now


def test_a_shard_that_stays_dead_is_a_clear_error_not_a_partial_ranking(built):
    on_ray, _ = built
    _, q = _queries()[0]
    with Engine.open(on_ray, ray="auto") as remote:
        actors = remote.store.shards.actors
        with pytest.raises(ShardUnavailableError, match="shard-001"):
            _query_killing(remote, q, lambda: ray.kill(actors[1], no_restart=True))


@pytest.mark.slow
def test_cli_builds_and_queries_on_ray(local_ray, tmp_path):
    """``--shards 2 --ray auto`` from the command line (the subprocesses start a Ray instance of their own or
    join this one), and the query answers as the in-process sharded index does."""
    refs = write_references(tmp_path / "refs", REFERENCE_NAMES[:8])
    q = tmp_path / "q.jpg"
    Image.fromarray(skimage_rgb("rocket")[40:380, 60:560]).save(q, quality=90)

    def copylens(*args):
        p = subprocess.run([sys.executable, "-m", "copylens.core", *map(str, args)], capture_output=True, text=True,
                           timeout=600)
        assert p.returncode == 0, p.stderr
        return p

    p = copylens("index", "build", refs, "--out", tmp_path / "idx", "--shards", 2, "--ray", "auto", "--global", "pdq",
                 "--no-calibrate", "-q")
    assert "8 references in the index" in p.stderr
    info = copylens("index", "info", tmp_path / "idx", "--json")
    assert '"shards": 2' in info.stdout
    a = copylens("query", tmp_path / "idx", q, "-q").stdout.splitlines()
    b = copylens("query", tmp_path / "idx", q, "--ray", "auto", "-q").stdout.splitlines()
    assert a == b and a[1].split(",")[1] == "rocket"
