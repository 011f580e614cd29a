"""The evidence frame (Engine._evidence_frames): the query warped back into a candidate's reference frame by
its homography, its global similarity ``frame_similarity`` and that signal's gated expert."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from copylens.app.explain import explain
from copylens.core.calibrate import (
    FRAME,
    SIGNALS,
    FusedCalibrator,
    calibrator_from_dict,
    default_calibrator,
    fit_fused,
)
from copylens.core.engine import QueryConfig, warp_to_reference
from copylens.core.imageio import from_array
from copylens.core.progress import run_job
from copylens.core.results import Evidence, Match

from conftest import skimage_rgb


def test_the_frame_is_the_reference_again_wherever_the_homography_put_it():
    ref = cv2.resize(skimage_rgb("astronaut"), (300, 240))
    # the reference seen in perspective inside another picture, the query stored at twice the working size
    corners = np.float32([[420, 130], [820, 180], [790, 560], [390, 500]])
    h = cv2.getPerspectiveTransform(np.float32([[0, 0], [300, 0], [300, 240], [0, 240]]), corners)
    query = cv2.resize(skimage_rgb("coffee"), (1000, 700))
    warped = cv2.warpPerspective(ref, h, (1000, 700))
    mask = cv2.warpPerspective(np.full((240, 300), 255, np.uint8), h, (1000, 700)) > 127
    query[mask] = warped[mask]
    working = from_array(query, max_side=500)  # pixels at half the original size
    assert abs(working.scale_to_original - 2.0) < 1e-6
    outline = cv2.perspectiveTransform(np.float32([[[0, 0], [300, 0], [300, 240], [0, 240]]]), h)[0]
    z = np.zeros((0, 2), np.float32)
    frame = warp_to_reference(working, Evidence(z, z, np.zeros(0, np.float32), h, outline), side=150)
    assert frame is not None and frame.shape[:2] == (120, 150)  # the reference's aspect, longer side 150
    again = cv2.resize(ref, (150, 120), interpolation=cv2.INTER_AREA).astype(np.float32)
    inner = (slice(4, -4), slice(4, -4))  # the border mixes in the background
    assert np.corrcoef(frame[inner].astype(np.float32).ravel(), again[inner].ravel())[0, 1] > 0.9
    # a degenerate homography gives no frame rather than an error
    flat = np.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 1.0]])
    assert warp_to_reference(working, Evidence(z, z, np.zeros(0, np.float32), flat, outline), side=150) is None


def test_a_pasted_photo_is_recognised_globally_through_its_frame(engine):
    """The horse pasted onto the indexed cat photo: the whole query looks like the cat to the global
    descriptors, but the horse's frame looks like the horse; a cropped copy, which shows only part of its
    reference, gets no frame. Frames are made only for a calibration that reads them: the session's tiny
    index has too few framed calibration candidates to fit their expert, so a model that reads them is
    put in for the test."""
    query = cv2.resize(skimage_rgb("chelsea"), (900, 600))
    query[250:340, 350:470] = cv2.GaussianBlur(cv2.resize(skimage_rgb("horse"), (120, 90)), (0, 0), 0.8)
    plain, _ = run_job(engine.candidates(from_array(query)))
    assert FRAME not in engine.calibrator.names and not any(FRAME in c.signals for c in plain)
    old_cal, old_cfg = engine.calibrator, engine.config
    engine.calibrator = default_calibrator((*old_cal.names, FRAME))
    try:
        cands, _ = run_job(engine.candidates(from_array(query)))
        engine.config = QueryConfig(evidence_frames=0)
        off, _ = run_job(engine.candidates(from_array(query)))
        engine.config = old_cfg
        crop = skimage_rgb("rocket")[:, : skimage_rgb("rocket").shape[1] // 2]  # the left half
        cropped, _ = run_job(engine.candidates(from_array(crop)))
    finally:
        engine.calibrator, engine.config = old_cal, old_cfg
    ids = engine.store.ids_of_rows([c.row for c in cands])
    got = {ids[c.row]: c.signals for c in cands}
    horse, cat = got["horse"], got["chelsea"]
    assert horse[FRAME] > 0.5, horse
    assert horse[FRAME] > max(v for k, v in horse.items() if k.startswith("global:")) + 0.2, horse
    assert cat[FRAME] > 0.5, cat
    # only the best-verified candidates are framed, and none when disabled
    assert sum(FRAME in s for s in got.values()) <= QueryConfig().evidence_frames
    assert not any(FRAME in c.signals for c in off)
    best = max(cropped, key=lambda c: c.evidence.num_inliers)
    assert engine.store.ids_of_rows([best.row])[best.row] == "rocket" and FRAME not in best.signals
    # the window's explanation shows the frame's similarity beside the whole query's
    by_row = {c.row: c for c in cands}
    row = next(r for r, i in ids.items() if i == "horse")
    why = " ".join(explain(Match("horse", 0.9, by_row[row].evidence, horse), 0.8, 0.5))
    assert f"similarity of {horse[FRAME]:.2f} to it" in why and "Global similarity (pdq)" in why


def _framed_set(rng: np.random.Generator, n: int = 1500, framed: bool = True):
    """Candidates as self-calibration meets them: copies whose whole image matches (many inliers, a global
    similarity), pasted copies (a few dozen inliers, the whole query's global similarity 0, their frame
    like the reference), cropped copies (no frame: the outline leaves the query) and verified non-copies
    (a frame unlike the reference) or unverified ones (no homography, no frame)."""
    kind = rng.choice(["whole", "paste", "crop", "verified", "none"], n, p=[0.05, 0.03, 0.02, 0.15, 0.75])
    sigs, y = [], []
    for k in kind:
        inl = {"whole": rng.gamma(6, 20), "paste": rng.gamma(6, 5), "crop": rng.gamma(6, 12),
               "verified": rng.gamma(3, 4), "none": 0.0}[k]
        s = {"inliers": float(inl), "matches": float(inl * 1.5), "votes": float(inl), "plausible": float(inl > 8),
             "inlier_ratio": 0.7 if inl else 0.0, "query_spread": 0.05 if k == "paste" else 0.4 if inl else 0.0,
             "reference_spread": 0.5 if inl else 0.0, "mean_similarity": 0.9 if inl else 0.0,
             "inlier_share": float(min(1, inl / 300)),
             "global:sim": float(rng.uniform(0.3, 0.8) if k == "whole" else rng.uniform(0, 0.2))}
        if framed and k in ("whole", "paste"):
            s[FRAME] = float(rng.uniform(0.6, 0.95))
        elif framed and k == "verified":
            s[FRAME] = float(rng.uniform(0.0, 0.5))
        sigs.append(s)
        y.append(int(k in ("whole", "paste", "crop")))
    return sigs, np.array(y), kind


def test_the_frames_expert_speaks_only_for_candidates_with_a_frame():
    """The evidence frame's similarity is a third expert, gated: a candidate without a frame (a crop, an
    unverified candidate) scores exactly as without the expert, while a pasted copy with few inliers and its
    picture's frame rises; never lower for a higher frame similarity."""
    rng = np.random.default_rng(5)
    sigs, y, _ = _framed_set(rng)
    names = (*SIGNALS, FRAME, "global:sim")
    prior = y.mean() / (2 - y.mean())
    fused = fit_fused(sigs, y, positive_prior=prior, names=names)
    assert isinstance(fused, FusedCalibrator) and len(fused.parts) == 3, fused
    assert fused.parts[2].names == (FRAME,) and fused.parts[2].gate == FRAME and FRAME in fused.names
    assert FRAME not in fused.parts[0].names  # not also a local signal
    plain = fit_fused([{k: v for k, v in s.items() if k != FRAME} for s in sigs], y, positive_prior=prior,
                      names=names)
    assert len(plain.parts) == 2 and FRAME not in plain.names  # no frames seen: the engine need not make them
    test, ty, kind = _framed_set(np.random.default_rng(6))
    unframed = [s for s in test if FRAME not in s]
    assert np.allclose(fused.predict(unframed), plain.predict(unframed))
    crops = [s for s, k in zip(test, kind, strict=True) if k == "crop"]
    assert np.allclose(fused.predict(crops), plain.predict(crops))
    pastes = [s for s, k in zip(test, kind, strict=True) if k == "paste"]
    without = [{k: v for k, v in s.items() if k != FRAME} for s in pastes]
    assert fused.predict(pastes).mean() > plain.predict(without).mean() + 0.2, (
        fused.predict(pastes).mean(), plain.predict(without).mean())
    wrong = [s for s, k in zip(test, kind, strict=True) if k == "verified"]
    # a verified non-copy's frame is unlike its reference: it barely moves
    assert fused.predict(wrong).mean() < plain.predict(wrong).mean() + 0.03, (
        fused.predict(wrong).mean(), plain.predict(wrong).mean())
    base = dict(pastes[0])
    assert np.all(np.diff(fused.predict([{**base, FRAME: v} for v in (0.0, 0.3, 0.6, 0.9)])) > 0)
    # the manifest's record keeps the gate; a gate on a signal the expert does not read is refused
    d = fused.to_dict()
    assert d["parts"][2]["gate"] == FRAME
    again = calibrator_from_dict(d, names)
    assert np.allclose(again.predict(test), fused.predict(test))
    d["parts"][2]["gate"] = "inliers"
    with pytest.raises(ValueError, match="gate"):
        calibrator_from_dict(d, names)


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(st.lists(st.floats(-1e6, 1e6) | st.sampled_from([0.0, np.nan, np.inf, -np.inf, 1e-12]), min_size=9, max_size=9),
       st.lists(st.floats(-5e3, 5e3), min_size=8, max_size=8))
def test_any_homography_gives_a_frame_or_none(h, outline):
    """Whatever a verification's homography and outline hold (degenerate, huge, not finite), the frame is
    a small upright picture or None, never an error or a huge allocation."""
    image = from_array(np.full((120, 160, 3), 128, np.uint8))
    z = np.zeros((0, 2), np.float32)
    ev = Evidence(z, z, np.zeros(0, np.float32), np.reshape(h, (3, 3)), np.reshape(outline, (4, 2)))
    frame = warp_to_reference(image, ev, side=64)
    assert frame is None or (frame.ndim == 3 and 16 <= min(frame.shape[:2]) and max(frame.shape[:2]) <= 64)


def test_a_default_model_does_not_ask_for_frames():
    """Too few calibration copies to fit: the default model's record does not read frames, so queries on
    that index make none (nothing to pay for)."""
    from copylens.core.calibrate import signal_names
    from copylens.core.selfcal import fit_calibration

    names = signal_names(["global:pdq"])
    assert FRAME in names
    sigs = [{"inliers": 3.0, FRAME: 0.2}] * 30 + [{"inliers": 80.0, FRAME: 0.9}] * 2
    record = fit_calibration(sigs, [0] * 30 + [1] * 2, names)
    assert record["source"].startswith("default") and FRAME not in calibrator_from_dict(record, names).names
