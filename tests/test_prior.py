"""A queue's share of copies (core/prior.py): confidences moved by Bayes' rule, and the share estimated from
a queue's own unlabelled confidences; in the engine and the ``copylens query --copy-share`` command."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from conftest import DISTRACTOR_NAMES, REFERENCE_NAMES, skimage_rgb


def _queue(rng: np.random.Generator, n: int, share: float, calibrated: float) -> tuple[np.ndarray, np.ndarray]:
    """Confidences of a model calibrated for ``calibrated`` copies, on a queue with ``share`` copies: evidence
    x ~ N(+1, 1) for a copy and N(-1, 1) for a non-copy, whose likelihood ratio is exp(2x)."""
    y = rng.random(n) < share
    x = rng.normal(np.where(y, 1.0, -1.0), 1.0)
    p = 1 / (1 + np.exp(-(2 * x + np.log(calibrated / (1 - calibrated)))))
    return p, y


def _ece(p: np.ndarray, y: np.ndarray) -> float:
    bins = np.minimum((p * 10).astype(int), 9)
    return float(sum(abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).sum() for b in set(bins.tolist()))
                 / len(p))


def test_shift_moves_confidence_to_another_share_and_keeps_every_order():
    from copylens.core.prior import shift_scores

    p = np.array([0.01, 0.3, 0.5, 2 / 3, 0.9, 0.999])
    assert np.allclose(shift_scores(p, 2 / 3, 2 / 3), p)
    low = shift_scores(p, 2 / 3, 0.1)
    assert np.all(low < p) and np.all(np.diff(low) > 0)  # fewer copies: every score lower, order kept
    assert np.all(shift_scores(p, 2 / 3, 0.9) > p)
    assert low[3] == pytest.approx(0.1)  # a score equal to the calibrated share becomes the new share
    assert np.allclose(shift_scores(low, 0.1, 2 / 3), p)  # and back
    assert shift_scores([], 2 / 3, 0.1).size == 0


@pytest.mark.parametrize("share", [0.05, 0.3, 0.9])
def test_share_is_estimated_from_unlabelled_confidences_and_fixes_their_calibration(share):
    from copylens.core.prior import estimate_share, shift_scores

    rng = np.random.default_rng(int(share * 100))
    p, y = _queue(rng, 3000, share, calibrated=2 / 3)
    est = estimate_share(p, 2 / 3)
    assert est.converged and est.queries == 3000
    assert est.share == pytest.approx(y.mean(), abs=0.03)
    moved = shift_scores(p, 2 / 3, est.share)
    assert _ece(moved, y) < 0.02  # measured 0.004-0.008
    if abs(share - 2 / 3) > 0.2:
        assert _ece(p, y) > 0.05  # as calibrated, far from its share: 0.09-0.19


def test_share_needs_enough_queries_and_a_sane_value():
    from copylens.core.prior import MIN_QUERIES, check_share, estimate_share

    with pytest.raises(ValueError, match="too few"):
        estimate_share([0.9] * (MIN_QUERIES - 1), 2 / 3)
    assert 0.01 <= estimate_share([0.0] * 50, 2 / 3).share <= 0.02  # no copies at all: the lowest share kept
    assert estimate_share([1.0] * 50, 2 / 3).share == pytest.approx(0.99)
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ValueError, match="between 1% and 99%"):
            check_share(bad)


def test_engine_scores_for_a_queue_share_and_keeps_the_ranking(small_index):
    from copylens.core.edits import random_edit
    from copylens.core.engine import Engine, QueryConfig
    from copylens.core.prior import shift_scores
    from copylens.core.progress import run_job

    query = random_edit(skimage_rgb("astronaut"), np.random.default_rng(4), edits=["crop"]).pixels
    with Engine.open(small_index) as plain, Engine.open(small_index, QueryConfig(copy_share=0.05)) as rare:
        calibrated = plain.calibrated_share
        assert calibrated is not None and 0.6 < calibrated < 0.8  # copy views against half-weight distractor views
        assert plain.info.copy_share == calibrated
        a = run_job(plain.search(query, top_k=5))
        b = run_job(rare.search(query, top_k=5))
        assert a.best.reference_id == "astronaut"
        assert [m.reference_id for m in b.matches] == [m.reference_id for m in a.matches]
        assert np.allclose([m.score for m in b.matches], shift_scores([m.score for m in a.matches], calibrated, 0.05))
        assert b.best.score < a.best.score
        plain.set_copy_share(None)
        with pytest.raises(ValueError, match="between"):
            plain.set_copy_share(1.2)


def test_an_index_without_a_recorded_share_refuses_to_move_it(tmp_path, reference_dir):
    from copylens.core.engine import Engine, QueryConfig
    from copylens.core.errors import CopyLensError
    from copylens.core.index.build import build_index
    from copylens.core.progress import run_job

    run_job(build_index(reference_dir, tmp_path / "idx", workers=2, calibrate=False))
    with Engine.open(tmp_path / "idx") as eng:
        assert eng.calibrated_share is None and eng.info.copy_share is None
        with pytest.raises(CopyLensError, match="rebuild the index"):
            eng.set_copy_share(0.2)
    with pytest.raises(CopyLensError, match="share of copies"):
        Engine.open(tmp_path / "idx", QueryConfig(copy_share=0.2))


def test_query_command_estimates_the_share_of_its_queries(small_index, tmp_path):
    """``--copy-share auto``: 8 edited copies among 24 queries; the scores written are the plain run's,
    moved to the share estimated from them, and the estimate is reported."""
    from test_cli import copylens

    from copylens.core.edits import random_edit
    from copylens.core.prior import estimate_share, shift_scores

    rng = np.random.default_rng(11)
    queries = tmp_path / "queries"
    queries.mkdir()
    for i, name in enumerate(REFERENCE_NAMES[:8]):
        Image.fromarray(random_edit(skimage_rgb(name), rng, edits=["crop", "color", "text"]).pixels).save(
            queries / f"copy{i}.png")
    for i in range(16):  # unrelated pictures: the distractor samples and smooth random fields
        if i < len(DISTRACTOR_NAMES):
            a = skimage_rgb(DISTRACTOR_NAMES[i])
        else:
            small = rng.integers(0, 256, (4, 5, 3)).astype(np.uint8)
            a = np.asarray(Image.fromarray(small).resize((400, 320), Image.BICUBIC))
        Image.fromarray(a).save(queries / f"other{i}.png")

    def best(stdout: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for q, _, s in list(csv.reader(io.StringIO(stdout)))[1:]:
            out.setdefault(q, float(s))
        return out

    plain = copylens("query", small_index, queries, "--top-k", "3", "-q")
    auto = copylens("query", small_index, queries, "--top-k", "3", "-q", "--copy-share", "auto")
    assert "copies estimated at" in auto.stderr
    a, b = best(plain.stdout), best(auto.stdout)
    assert a.keys() == b.keys()
    from copylens.core.engine import Engine

    with Engine.open(small_index) as eng:
        calibrated = eng.calibrated_share
    est = estimate_share([a.get(f"copy{i}", 0.0) for i in range(8)] + [a.get(f"other{i}", 0.0) for i in range(16)],
                         calibrated)
    assert 0.15 < est.share < 0.5  # 8 of 24 queries are copies
    assert f"{est.share:.0%} of these 24 queries" in auto.stderr
    for q in a:
        assert b[q] == pytest.approx(float(shift_scores([a[q]], calibrated, est.share)[0]), abs=2e-6)
    from copylens.core.cli import _copy_share

    assert _copy_share("5%") == pytest.approx(0.05) and _copy_share("0.3") == 0.3 and _copy_share("AUTO") == "auto"
    bad = copylens("query", small_index, queries, "--copy-share", "150%", check=False)
    assert bad.returncode == 2 and "between 1% and 99%" in bad.stderr and "Traceback" not in bad.stderr


def test_an_interrupted_query_command_still_writes_what_it_found(small_index, tmp_path, monkeypatch, capsys):
    """Ctrl+C during a batch: the queries done so far are written (JSON, and --copy-share auto, which holds
    its results until the end), then the command stops as interrupted (exit 130)."""
    import json

    from copylens.core import cli
    from copylens.core.engine import Engine

    for name in REFERENCE_NAMES[:4]:
        Image.fromarray(skimage_rgb(name)).save(tmp_path / f"{name}.png")
    real, calls = Engine.search, []

    def search(self, *a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(Engine, "search", search)
    for extra in ([], ["--copy-share", "auto"]):
        calls.clear()
        out = tmp_path / f"out{len(extra)}.json"
        code = cli.main(["query", str(small_index), str(tmp_path), "--format", "json", "--out", str(out), "-q", *extra])
        assert code == 130
        rows = json.loads(out.read_text())
        assert [r["query_id"] for r in rows] == sorted(REFERENCE_NAMES[:4])[:2]
        assert all(r["matches"][0]["reference_id"] == r["query_id"] for r in rows)
        err = capsys.readouterr().err
        assert "interrupted after 2 of 4 queries" in err
        if extra:
            assert "too few to estimate" in err


def test_share_properties_hold_for_any_scores():
    """Hypothesis: moving scores keeps every order and comes back exactly; an estimate is a share in range
    that moves with the scores (higher scores, more copies)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from copylens.core.prior import MAX_SHARE, MIN_QUERIES, MIN_SHARE, estimate_share, shift_scores

    shares = st.floats(MIN_SHARE, MAX_SHARE)
    scores = st.lists(st.floats(1e-6, 1 - 1e-6), min_size=MIN_QUERIES, max_size=200)

    @settings(max_examples=150, deadline=None)
    @given(scores, shares, shares)
    def check(p, a, b):
        p = np.array(p)
        moved = shift_scores(p, a, b)
        assert np.all((moved > 0) & (moved < 1))
        order = np.argsort(p, kind="stable")
        assert np.all(np.diff(moved[order]) >= -1e-12)
        assert np.allclose(shift_scores(moved, b, a), p, atol=1e-9)
        est = estimate_share(p, a)
        assert MIN_SHARE <= est.share <= MAX_SHARE
        assert estimate_share(np.sqrt(p), a).share >= est.share - 1e-6  # every score higher: no fewer copies

    check()
