"""Known-answer tests of the query engine on a tiny index of scikit-image photos."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from copylens.core.features import FeatureConfig, extract, mirrored_descriptors, rootsift
from copylens.core.imageio import from_array
from copylens.core.progress import Progress, run_job

from conftest import DISTRACTOR_NAMES, skimage_rgb


def _query(engine, pixels, **kw):
    return run_job(engine.query(from_array(pixels, "<test>", max_side=engine.config.query_max_side), **kw))


def _warp(src: np.ndarray, h: np.ndarray, size=(700, 600)) -> np.ndarray:
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), (0, 0), 6)
    out = cv2.warpPerspective(src, h, size, dst=background.copy(), borderMode=cv2.BORDER_TRANSPARENT)
    return out


def test_known_homography_found_with_region_box(engine):
    src = skimage_rgb("astronaut")
    angle, scale = np.deg2rad(12), 0.8
    h = np.array([[scale * np.cos(angle), -scale * np.sin(angle), 150],
                  [scale * np.sin(angle), scale * np.cos(angle), 40],
                  [0.00005, 0.0001, 1.0]])
    query = _warp(src, h)
    result = _query(engine, query)
    best = result.best
    assert best.reference_id == "astronaut"
    assert best.score > 0.9
    assert not best.evidence.mirrored
    corners = np.array([[0, 0], [512, 0], [512, 512], [0, 512]], np.float32).reshape(-1, 1, 2)
    truth = cv2.perspectiveTransform(corners, h).reshape(4, 2)
    err = np.linalg.norm(best.evidence.outline - truth, axis=1)
    assert err.max() < 6.0, err  # the copied region's box within a few pixels
    # inlier pairs are consistent with the known homography
    proj = cv2.perspectiveTransform(best.evidence.reference_points.reshape(-1, 1, 2).astype(np.float64), h)
    assert np.median(np.linalg.norm(proj.reshape(-1, 2) - best.evidence.query_points, axis=1)) < 3.0
    assert best.num_inliers >= 30


def test_mirrored_copy_found(engine):
    query = skimage_rgb("chelsea")[20:280, 30:420][:, ::-1].copy()
    best = _query(engine, query).best
    assert best.reference_id == "chelsea"
    assert best.evidence.mirrored
    assert np.linalg.det(best.evidence.homography[:2, :2]) < 0
    assert best.score > 0.8


def test_distractor_scores_low(engine):
    for name in DISTRACTOR_NAMES:
        result = _query(engine, skimage_rgb(name))
        assert all(m.score < 0.3 for m in result.matches), [(m.reference_id, m.score) for m in result.matches]


def test_results_ranked_and_bounded(engine):
    result = _query(engine, skimage_rgb("rocket"), top_k=3)
    assert len(result.matches) <= 3
    scores = [m.score for m in result.matches]
    assert scores == sorted(scores, reverse=True)
    assert result.best.reference_id == "rocket"
    assert {"features", "search", "verify"} <= set(result.timings_ms)


def test_blank_and_tiny_queries_give_empty_results(engine):
    assert _query(engine, np.full((300, 300, 3), 128, np.uint8)).matches == []
    assert _query(engine, np.zeros((5, 5, 3), np.uint8)).matches == []


def test_query_is_a_cancellable_generator(engine):
    job = engine.query(from_array(skimage_rgb("astronaut")))
    first = next(job)
    assert isinstance(first, Progress)
    job.close()  # cancelling between yields leaves the engine usable
    assert _query(engine, skimage_rgb("astronaut")).best.reference_id == "astronaut"


def test_reference_image_and_thumbnail(engine, small_index, reference_dir):
    info = engine.reference("camera")
    assert (info.width, info.height) == (512, 512)
    thumb = engine.thumbnail("camera")
    assert max(thumb.shape[:2]) <= 320 and thumb.shape[2] == 3
    img = engine.reference_image("camera")
    assert img.original_size == (512, 512) and img.pixels.shape[:2] == (512, 512)


def test_mirror_permutation_matches_reextraction():
    """Descriptors of the flipped image equal the permuted descriptors of the same keypoints."""
    img = skimage_rgb("astronaut")
    cfg = FeatureConfig(max_side=512, max_keypoints=400)
    a = extract(from_array(img), cfg)
    b = extract(from_array(np.ascontiguousarray(img[:, ::-1])), cfg)
    bx = 512 - b.keypoints[:, 0]  # flipped x back
    d = np.abs(a.keypoints[:, None, 0] - bx[None]) + np.abs(a.keypoints[:, None, 1] - b.keypoints[None, :, 1])
    i, j = np.nonzero(d < 1.0)
    assert len(i) > 50
    perm = rootsift(mirrored_descriptors(a.descriptors[i]))
    other = rootsift(b.descriptors[j])
    sim_perm = (perm * other).sum(1)
    sim_plain = (rootsift(a.descriptors[i]) * other).sum(1)
    assert np.median(sim_perm) > 0.97 > np.median(sim_plain)


def test_features_in_original_pixels():
    img = skimage_rgb("astronaut")
    small = extract(from_array(img, max_side=256), FeatureConfig(max_side=640))
    full = extract(from_array(img), FeatureConfig(max_side=256))
    for f in (small, full):
        assert f.image_size == (512, 512)
        assert f.keypoints[:, :2].max() > 300  # coordinates span the original 512 px, not the resized 256
        assert f.descriptors.dtype == np.uint8 and f.descriptors.shape[1] == 128


def test_calibration_was_fitted(engine):
    assert engine.info.calibration.startswith("fitted"), engine.info.calibration


def test_query_scores_judge_each_candidate_against_the_query_s_others(engine):
    """The build fits the second stage (calibrate.ContrastCalibrator) and queries use it on all of a
    query's candidates together: a copy's score is the stage's score given its rivals."""
    from copylens.core.calibrate import ContrastCalibrator

    assert isinstance(engine.calibrator, ContrastCalibrator) and min(engine.calibrator.weights) >= 0
    result = _query(engine, skimage_rgb("astronaut")[40:400, 60:460], top_k=1000)
    assert result.best.reference_id == "astronaut" and result.best.score > 0.8
    scores = engine.calibrator.predict_query([m.signals for m in result.matches])
    assert np.allclose(scores, [m.score for m in result.matches])
    alone = engine.calibrator.predict_query([result.best.signals])[0]  # without rivals it leads by more
    assert alone >= result.best.score


def test_inversion_permutation_matches_reextraction():
    from copylens.core.features import VARIANTS

    img = skimage_rgb("astronaut")
    cfg = FeatureConfig(max_side=512, max_keypoints=400)
    a = extract(from_array(img), cfg)
    for name, pixels in (("invert", 255 - img), ("invert_mirror", np.ascontiguousarray(255 - img[:, ::-1]))):
        b = extract(from_array(pixels), cfg)
        bx = 512 - b.keypoints[:, 0] if "mirror" in name else b.keypoints[:, 0]
        d = np.abs(a.keypoints[:, None, 0] - bx[None]) + np.abs(a.keypoints[:, None, 1] - b.keypoints[None, :, 1])
        i, j = np.nonzero(d < 1.0)
        assert len(i) > 50
        sim = (rootsift(a.descriptors[i][:, VARIANTS[name]]) * rootsift(b.descriptors[j])).sum(1)
        assert np.median(sim) > 0.97


def test_inverted_copy_found(engine):
    query = 255 - skimage_rgb("astronaut")[60:460, 40:480]
    best = _query(engine, np.ascontiguousarray(query)).best
    assert best.reference_id == "astronaut"
    assert best.evidence.variant == "invert"
    assert best.score > 0.8


def test_inverted_variants_are_searched_only_without_a_strong_plain_match(engine, monkeypatch):
    searched: list[list[str]] = []
    original = engine.local_recall

    def spy(feats, excluded, candidates=None, variants=None):
        searched.append(list(variants))
        return original(feats, excluded, candidates, variants)

    monkeypatch.setattr(engine, "local_recall", spy)
    plain = np.ascontiguousarray(skimage_rgb("astronaut")[60:460, 40:480])
    best = _query(engine, plain).best
    assert best.reference_id == "astronaut" and best.num_inliers >= engine.config.late_variants_below
    assert searched == [["direct", "mirror"]]  # a strong plain match: the inverted variants never searched
    searched.clear()
    best = _query(engine, np.ascontiguousarray(255 - plain)).best
    assert best.reference_id == "astronaut" and best.evidence.variant == "invert"
    assert searched[:2] == [["direct", "mirror"], ["invert", "invert_mirror"]]
    # the late variants' candidates keep each reference's candidate with more inliers: one per reference
    result = _query(engine, np.ascontiguousarray(255 - plain))
    ids = [m.reference_id for m in result.matches]
    assert len(ids) == len(set(ids))


def test_pasted_copy_found_with_region_and_box(engine):
    from copylens.core.regions import box_iou

    background = cv2.resize(skimage_rgb("coffee"), (900, 600))  # coffee is not in the index
    paste = cv2.resize(skimage_rgb("horse"), (260, 200))
    x0, y0 = 500, 330
    query = background.copy()
    query[y0:y0 + 200, x0:x0 + 260] = paste
    result = _query(engine, query)
    best = result.best
    assert best.reference_id == "horse"
    truth = (x0, y0, x0 + 260, y0 + 200)
    o = best.evidence.outline
    found = (o[:, 0].min(), o[:, 1].min(), o[:, 0].max(), o[:, 1].max())
    assert box_iou(found, truth) > 0.85
    assert result.regions[0].kind == "full"


def test_no_copied_region_is_drawn_for_chance_inliers(engine):
    """A distractor's few chance inliers may fit some homography, but no box is claimed from it."""
    result = _query(engine, skimage_rgb("coffee"))
    weak = [m for m in result.matches if m.signals["plausible"] == 0.0]
    assert weak and all(m.evidence.outline is None for m in weak)
    strong = _query(engine, skimage_rgb("rocket")).best
    assert strong.evidence.outline is not None and strong.signals["plausible"] == 1.0


def test_global_signal_is_the_best_over_the_whole_image_and_its_regions(engine, monkeypatch):
    """A reference found by the whole query and by a region keeps its best-inlier evidence, but each global
    similarity is the highest it reached in any of those searches."""
    from copylens.core import engine as engine_module
    from copylens.core.engine import Candidate
    from copylens.core.results import Evidence, Region

    name = "global:pdq"
    assert [g.name for g in engine.globals][0] == "pdq"  # the default set (other branches stay silent here)

    def cand(row: int, inliers: float, sim: float, kind: str) -> Candidate:
        signals = {"inliers": inliers, "votes": 3.0, "plausible": 0.0, name: sim}
        return Candidate(row, dataclasses.replace(Evidence.empty(), variant=kind), signals)

    searched = []

    def fake_search(feats, region, exclude_rows=frozenset(), timings=None, candidates=None, pixels=None,
                    late=True, glob=None):
        searched.append(region.kind)
        yield Progress("verify", 0, 1)
        if region.kind == "full":  # row 1: most inliers here, weak global; row 2 the other way round
            return [cand(1, 30.0, 0.2, "full"), cand(2, 5.0, 0.9, "full")]
        return [cand(1, 12.0, 0.8, "border"), cand(2, 20.0, 0.1, "border")]

    monkeypatch.setattr(engine, "search_and_verify", fake_search)
    monkeypatch.setattr(engine_module, "propose_regions", lambda pixels, config=None: [Region((8, 8, 120, 120), 0.9, "border")])
    image = from_array(skimage_rgb("rocket"), "<test>", max_side=engine.config.query_max_side)
    cands, regions = run_job(engine.candidates(image))
    assert searched == ["full", "border"] and [r.kind for r in regions] == ["full", "border"]
    by_row = {c.row: c for c in cands}
    assert by_row[1].signals["inliers"] == 30.0 and by_row[1].evidence.variant == "full"  # best-inlier evidence
    assert by_row[1].signals[name] == 0.8  # ... with the region's stronger global similarity
    assert by_row[2].signals["inliers"] == 20.0 and by_row[2].evidence.variant == "border"
    assert by_row[2].signals[name] == 0.9  # the whole image's


def _flat_icon(seed: int, side: int = 96) -> np.ndarray:
    """A flat application-icon-like picture: a few filled shapes in a few colours on white."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.full((side, side, 3), 255, np.uint8)
    for _ in range(4):
        colour = tuple(int(c) for c in rng.integers(0, 200, 3))
        x0, y0 = (int(v) for v in rng.integers(4, side // 2, 2))
        x1, y1 = x0 + int(rng.integers(side // 5, side // 2)), y0 + int(rng.integers(side // 5, side // 2))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
        else:
            cv2.circle(img, ((x0 + x1) // 2, (y0 + y1) // 2), (x1 - x0) // 2, colour, -1)
    return img


def test_small_flat_images_get_enough_keypoints():
    """Upscaling small images and a second, lower-contrast pass: a 96-px flat icon goes from a handful of
    keypoints to dozens; a photo is untouched (same keypoints with or without the levers)."""
    legacy = FeatureConfig.from_dict({"max_side": 640, "max_keypoints": 500, "contrast_threshold": 0.03,
                                      "edge_threshold": 10.0})
    assert (legacy.min_side, legacy.retry_contrast) == (0, 0.0)  # an old manifest keeps its behaviour
    new = FeatureConfig()
    counts = [(len(extract(from_array(_flat_icon(s)), legacy)), len(extract(from_array(_flat_icon(s)), new)))
              for s in range(6)]
    assert all(n > 2 * max(o, 5) for o, n in counts), counts
    photo = from_array(skimage_rgb("astronaut"))
    a, b = extract(photo, legacy), extract(photo, new)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    # keypoints of the upscaled icon are in its original pixels
    kp = extract(from_array(_flat_icon(0)), new).keypoints
    assert kp[:, :2].max() <= 96 and kp[:, :2].min() >= 0


def test_bounded_map_keeps_a_window_and_cancels_the_rest():
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from copylens.core.progress import bounded_map

    live, peak, lock = [0], [0], threading.Lock()

    def work(i):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.01)
        with lock:
            live[0] -= 1
        return i * i

    drawn = []

    def tasks():
        for i in range(20):
            drawn.append(i)
            yield i, (lambda i=i: work(i))

    with ThreadPoolExecutor(4) as pool:
        out = {k: f.result() for batch in bounded_map(pool, tasks(), 3) for k, f in batch}
        assert out == {i: i * i for i in range(20)} and peak[0] <= 3
        drawn.clear()
        gen = bounded_map(pool, tasks(), 3)
        next(gen)
        gen.close()  # the consumer stops: nothing more is drawn
        assert len(drawn) <= 4
