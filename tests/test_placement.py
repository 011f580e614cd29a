"""Where each candidate's evidence lies in the query (core/placement.py), and what the confidence makes of it:
a picture pasted onto an indexed picture is not judged against the picture around it (that one still is
against the inset)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from test_calibrate import _calibration_set, _query

from copylens.core.calibrate import ContrastCalibrator, calibrator_from_dict, fit_contrast, leads
from copylens.core.engine import candidate_insets
from copylens.core.imageio import from_array
from copylens.core.placement import insets, rival_matrix
from copylens.core.progress import run_job

from conftest import skimage_rgb


def _grid(x0, y0, x1, y1, step=10.0, hole=None) -> np.ndarray:
    """Inliers on a regular grid over a box, none inside ``hole`` (a box an inset covers)."""
    xs, ys = np.meshgrid(np.arange(x0, x1 + 1e-9, step), np.arange(y0, y1 + 1e-9, step))
    p = np.stack([xs.ravel(), ys.ravel()], 1)
    if hole is not None:
        hx0, hy0, hx1, hy1 = hole
        p = p[~((p[:, 0] >= hx0) & (p[:, 0] <= hx1) & (p[:, 1] >= hy0) & (p[:, 1] <= hy1))]
    return p.astype(np.float32)


def test_an_inset_is_found_inside_the_picture_around_it_and_nothing_else_is():
    background = _grid(0, 0, 600, 400, step=20, hole=(300, 200, 420, 290))  # covered where the inset is
    inset = _grid(305, 205, 415, 285, step=8)
    sibling = _grid(300, 200, 420, 290, step=12)  # matches the inset's place too
    side = _grid(440, 20, 590, 150, step=10)  # side by side with the inset, not inside it
    few = np.float32([[10, 10], [500, 300], [50, 350], [590, 10], [300, 100], [100, 200], [400, 50]])  # 7
    points = [background, inset, sibling, side, few, None]
    # the inset is an inset of the background, and so is the sibling at its place; nothing else is: the
    # background's inliers fill the side-by-side box, 7 inliers locate nothing, no evidence is nowhere
    assert insets(points) == [(1, 0), (2, 0)]
    # a whole-image match whose inliers also fill the inset's box (a copy of the full picture, and a
    # reference that matches a part of it): they compete
    assert insets([_grid(0, 0, 600, 400, step=20), inset]) == []
    # the inset must lie inside the other's extent: half outside it, it is not an inset
    assert insets([_grid(0, 0, 360, 400, step=20, hole=(300, 200, 420, 290)), inset]) == []
    # the order of the candidates does not matter
    assert insets([inset, background]) == [(0, 1)]


def test_an_insets_lead_skips_the_candidate_around_it_and_not_the_reverse():
    z = np.array([5.0, 1.0, 0.5, -2.0])
    assert np.allclose(leads(z), [4.0, -4.0, -4.5, -7.0])
    rival = rival_matrix(4, [(1, 0)])  # candidate 1 is an inset of candidate 0
    assert rival.tolist() == [[False, True, True, True], [False, False, True, True],
                              [True, True, False, True], [True, True, True, False]]
    # candidate 1 now leads its own rivals (2 and 3); 0 still leads 1; 2 and 3 still trail 0
    assert np.allclose(leads(z, rival), [4.0, 0.5, -4.5, -7.0])
    # a candidate without any rival leads by its logit + LEAD_CLIP, as a query's only candidate does
    assert np.allclose(leads(np.array([1.0, 2.0]), rival_matrix(2, [(0, 1)])), [8.0, 1.0])
    assert np.allclose(leads(np.array([1.0])), [8.0])


def test_a_copy_pasted_onto_a_better_matched_picture_keeps_its_confidence():
    """Synthetic calibration set: a second stage fitted with placements. A copy query whose copy is an
    inset of a picture that matches more strongly (both real evidence) scores as a copy with it,
    and far lower when every candidate counts as its rival (the rule before 2026-12-06)."""
    rng = np.random.default_rng(11)
    sigs, labels, queries, first = _calibration_set(rng)
    cal = fit_contrast(first, sigs, labels, queries, insets=[])
    assert cal.insets and cal.weights[1] > 0
    old = dataclasses.replace(cal, insets=False)
    hits_new, hits_old = [], []
    for _ in range(100):
        s, y = _query(rng, copy=True, siblings=0)
        copy = s[0]
        copy["inliers"] = copy["votes"] = 25.0  # a modest copy, as a small paste gives
        background = dict(s[0], inliers=300.0, votes=600.0, matches=310.0)  # the picture it is pasted onto
        s = [copy, background] + s[1:]
        pairs = [(0, 1)]  # the copy is an inset of the background
        hits_new.append(cal.predict_query(s, pairs)[0])
        hits_old.append(old.predict_query(s, pairs)[0])
        # without insets (old records, or none in the query) the new model is the old rule; the
        # background's own confidence does not change either way
        assert np.isclose(cal.predict_query(s)[0], old.predict_query(s)[0])
        assert np.isclose(cal.predict_query(s, pairs)[1], old.predict_query(s, pairs)[1])
    assert np.mean(hits_new) > 0.8 and np.mean(hits_old) < 0.2, (np.mean(hits_new), np.mean(hits_old))
    # the manifest records the rule; records without it keep the old one; an unknown rule is refused
    d = cal.to_dict()
    assert d["insets"] is True
    assert calibrator_from_dict(d).insets
    legacy = {k: v for k, v in d.items() if k != "insets"}
    assert isinstance(calibrator_from_dict(legacy), ContrastCalibrator) and not calibrator_from_dict(legacy).insets
    with pytest.raises(ValueError, match="inset rule"):
        calibrator_from_dict({**d, "insets": "everywhere"})


def test_a_photo_pasted_onto_an_indexed_photo_is_confident_beside_it(engine):
    """Real images: a small horse pasted onto the indexed cat photo. The cat matches the whole query with
    hundreds of inliers; the horse is found through its region with a few dozen, and its evidence lies
    inside the cat's but where the cat has none: the confidence does not judge it against the cat, so it
    reads as a copy (it read about 0 when the cat was its rival)."""
    query = cv2.resize(skimage_rgb("chelsea"), (900, 600))
    query[250:340, 350:470] = cv2.GaussianBlur(cv2.resize(skimage_rgb("horse"), (120, 90)), (0, 0), 0.8)
    cands, _ = run_job(engine.candidates(from_array(query)))
    ids = engine.store.ids_of_rows([c.row for c in cands])
    at = {ids[c.row]: i for i, c in enumerate(cands)}
    cat, horse = at["chelsea"], at["horse"]
    assert cands[cat].evidence.num_inliers > 100 and cands[horse].evidence.num_inliers >= 8
    assert (horse, cat) in candidate_insets(cands)
    cal = engine.calibrator
    assert isinstance(cal, ContrastCalibrator) and cal.insets  # what builds fit now
    signals = [c.signals for c in cands]
    new = cal.predict_query(signals, candidate_insets(cands))
    before = dataclasses.replace(cal, insets=False).predict_query(signals)
    assert new[cat] > 0.9 and new[horse] > 0.5, (new[cat], new[horse])
    assert new[horse] > before[horse] + 0.3, (new[horse], before[horse])
    # what the engine reports
    result = run_job(engine.query(from_array(query)))
    got = {m.reference_id: m.score for m in result.matches}
    assert np.isclose(got["horse"], new[horse]) and got["chelsea"] > 0.9
