"""Dense edge agreement: a copy (rotated, recoloured, with a caption) agrees with its reference almost
everywhere; a near-identical sibling graphic (one part redrawn) does not; the calibration uses the signal
with a neutral value where it cannot judge."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from copylens.app.explain import explain
from copylens.app.session import decode_result, encode_result
from copylens.core.agreement import distinct_edges, edge_agreement, likeness, query_edges, warp_reference
from copylens.core.calibrate import Calibrator, feature_matrix, fit, neutral_fill
from copylens.core.engine import Engine
from copylens.core.imageio import from_array
from copylens.core.index.build import build_index
from copylens.core.progress import run_job


def _graphic(part: str = "sun") -> np.ndarray:
    """A flat clip-art scene: a house, a tree and, top right, a sun or a cloud (the sibling's redrawn part)."""
    img = Image.new("RGB", (400, 300), "white")
    d = ImageDraw.Draw(img)
    d.rectangle((60, 140, 200, 260), fill=(200, 60, 40), outline="black", width=3)
    d.polygon([(50, 140), (130, 70), (210, 140)], fill=(120, 40, 30), outline="black")
    d.rectangle((110, 200, 150, 260), fill=(90, 60, 20), outline="black", width=2)
    d.ellipse((250, 150, 330, 230), fill=(40, 150, 50), outline="black", width=3)
    d.rectangle((282, 230, 298, 275), fill=(100, 70, 30), outline="black", width=2)
    if part == "sun":
        d.ellipse((300, 20, 370, 90), fill=(250, 210, 30), outline="black", width=3)
        for k in range(8):
            a = k * math.pi / 4
            d.line((335 + 42 * math.cos(a), 55 + 42 * math.sin(a), 335 + 58 * math.cos(a), 55 + 58 * math.sin(a)),
                   fill="black", width=3)
    elif part == "star":
        pts = [(335 + (40 if k % 2 == 0 else 16) * math.cos(k * math.pi / 5 - math.pi / 2),
                55 + (40 if k % 2 == 0 else 16) * math.sin(k * math.pi / 5 - math.pi / 2)) for k in range(10)]
        d.polygon(pts, fill=(250, 230, 60), outline="black", width=3)
    else:
        for x, y, r in ((300, 60, 28), (330, 50, 34), (360, 62, 26)):
            d.ellipse((x - r, y - r, x + r, y + r), fill=(180, 180, 190), outline="black", width=3)
    return np.asarray(img)


def _rotate(pixels: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = pixels.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 0.9)
    out = cv2.warpAffine(pixels, m, (w, h), borderValue=(255, 255, 255))
    return out, np.vstack([m, [0, 0, 1]])


def test_a_copy_agrees_and_a_sibling_does_not():
    ref = _graphic("sun")
    copy, h = _rotate(255 - ref, 12)  # rotated and inverted
    cv2.putText(copy, "LOL", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 3)  # a caption
    recall, precision = edge_agreement(copy, 1.0, ref, 1.0, h)
    assert recall > 0.95 and precision > 0.9
    sibling, h2 = _rotate(_graphic("cloud"), 12)  # about a tenth of the reference's edges are redrawn
    s_recall, s_precision = edge_agreement(sibling, 1.0, ref, 1.0, h2)
    assert s_recall < 0.92 and s_precision < 0.85
    # scales: the same pair, the reference given as a half-size thumbnail and the query at double size
    small = cv2.resize(ref, (200, 150), interpolation=cv2.INTER_AREA)
    big = cv2.resize(copy, (800, 600), interpolation=cv2.INTER_CUBIC)
    r2, _ = edge_agreement(big, 0.5, small, 2.0, h)
    assert abs(r2 - recall) < 0.1


def test_what_tells_siblings_apart_decides_between_them():
    """A copy shows the part that tells its reference from an indexed sibling; a third, unindexed sibling
    (a star where the two have a sun and a cloud) shows neither part, though it shares nine tenths of both."""
    sun, cloud = _graphic("sun"), _graphic("cloud")
    unrelated = cv2.putText(np.full_like(sun, 255), "12345", (30, 180), cv2.FONT_HERSHEY_SIMPLEX, 3, (0, 0, 0), 6)

    def verdicts(query: np.ndarray, h: np.ndarray) -> tuple[float, float]:
        q = query_edges(query, 1.0)
        a, b = warp_reference(q, sun, 1.0, h), warp_reference(q, cloud, 1.0, h)
        return distinct_edges(q, a, b), distinct_edges(q, b, a)

    copy, h = _rotate(sun, 12)
    cv2.putText(copy, "LOL", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 3)
    for_sun, for_cloud = verdicts(copy, h)
    assert for_sun > 0.6 and for_cloud < -0.6
    star, h = _rotate(_graphic("star"), 12)
    for_sun, for_cloud = verdicts(star, h)
    assert abs(for_sun) < 0.35 and abs(for_cloud) < 0.35
    # siblings are alike, an unrelated picture is not; identical references give no verdict
    q = query_edges(copy, 1.0)
    a, b, u = (warp_reference(q, x, 1.0, np.eye(3)) for x in (sun, cloud, unrelated))
    assert likeness(a, b) > 0.8 and likeness(b, a) > 0.8 and likeness(a, u) < 0.3
    assert math.isnan(distinct_edges(q, a, warp_reference(q, sun.copy(), 1.0, np.eye(3))))


def test_a_graphic_pasted_into_a_busy_picture_is_judged_on_its_own_lines():
    """The reference covers a quarter of the query: its surround must not draw an edge that drowns the
    graphic's lines (a black border did: no verdict at all), and the busy picture around it must not
    count as showing a sibling's parts."""
    rng = np.random.default_rng(1)
    busy = cv2.resize(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), (800, 600), interpolation=cv2.INTER_NEAREST)
    busy[150:450, 200:600] = _graphic("sun")
    h = np.array([[1.0, 0, 200], [0, 1, 150], [0, 0, 1]])
    q = query_edges(busy, 1.0)
    sun, cloud = warp_reference(q, _graphic("sun"), 1.0, h), warp_reference(q, _graphic("cloud"), 1.0, h)
    recall, _ = edge_agreement(busy, 1.0, _graphic("sun"), 1.0, h)
    assert recall > 0.9
    assert likeness(sun, cloud) > 0.8 and distinct_edges(q, sun, cloud) > 0.8
    # a rival misplaced over the busy part is no sibling (chance-corrected likeness)
    shifted = warp_reference(q, _graphic("cloud"), 1.0, h @ np.array([[1.0, 0, 120], [0, 1, 60], [0, 0, 1]]))
    assert likeness(sun, shifted) < 0.3


def test_flat_overlap_gives_no_verdict():
    flat = np.full((300, 400, 3), 128, np.uint8)
    r, p = edge_agreement(flat, 1.0, flat, 1.0, np.eye(3))
    assert math.isnan(r) and math.isnan(p)


def test_calibration_fills_a_missing_agreement_with_a_neutral_value():
    rng = np.random.default_rng(0)
    signals, labels = [], []
    for i in range(400):
        y = int(i % 4 == 0)
        s = {"inliers": float(rng.integers(20, 80) if y else rng.integers(0, 30)), "votes": 5.0}
        if i % 5:  # a fifth of the candidates cannot be judged
            s["edge_recall"] = float(rng.normal(0.95 if y else 0.55, 0.05))
            s["edge_precision"] = float(rng.normal(0.9 if y else 0.45, 0.05))
        signals.append(s)
        labels.append(y)
    fill = neutral_fill(signals, labels, ["edge_recall", "edge_precision"])
    assert fill["edge_recall"] == pytest.approx(0.75, abs=0.02) and fill["edge_precision"] == pytest.approx(0.675, abs=0.02)
    names = ("inliers", "votes", "edge_recall", "edge_precision")
    cal = fit(signals, labels, names=names)
    assert dict(cal.fill) == fill and cal.weights[names.index("edge_recall")] > 0
    again = Calibrator.from_dict(cal.to_dict())
    assert again == cal
    unjudged = {"inliers": 40.0, "votes": 5.0}
    assert feature_matrix([unjudged], names, dict(cal.fill))[0, 2] == fill["edge_recall"]
    agree = cal.predict([{**unjudged, "edge_recall": 0.97, "edge_precision": 0.93}])[0]
    sibling = cal.predict([{**unjudged, "edge_recall": 0.6, "edge_precision": 0.5}])[0]
    assert agree > cal.predict([unjudged])[0] > sibling


def test_the_engine_measures_agreement_on_verified_candidates(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    Image.fromarray(_graphic("sun")).save(refs / "house-sun.png")
    Image.fromarray(_graphic("cloud")).save(refs / "house-cloud.png")
    run_job(build_index(refs, tmp_path / "idx", workers=1, calibrate=False))
    query, _ = _rotate(_graphic("sun"), 12)
    with Engine.open(tmp_path / "idx") as eng:
        cands, _ = run_job(eng.candidates(from_array(query)))
        ids = eng.store.ids_of_rows([c.row for c in cands])
        result = run_job(eng.search(query))
    by_id = {ids[c.row]: c.signals for c in cands}
    # (edges of the stored JPEG thumbnail, weak ones included since the warp's surround is no longer black:
    # 0.85 against 0.75 here; the sibling is told apart by distinct_edges below)
    assert by_id["house-sun"]["edge_recall"] > 0.8
    assert by_id["house-cloud"].get("edge_recall", 0.0) < by_id["house-sun"]["edge_recall"] - 0.05
    # each is compared with the other, its indexed sibling: the query shows the sun, not the cloud
    assert by_id["house-sun"]["sibling_likeness"] > 0.5
    assert by_id["house-sun"]["distinct_edges"] > 0.5
    assert by_id["house-cloud"].get("distinct_edges", -1.0) < 0.0
    # the window's explanation of the top match says so, with the numbers, and names the sibling
    top = result.matches[0]
    assert top.reference_id == "house-sun" and top.sibling == "house-cloud"
    why = " ".join(explain(top, 0.8, 0.5))
    assert "of the reference's edges" in why
    assert "tell this reference apart" in why and f"{top.signals['distinct_edges']:+.2f}" in why
    assert "reference (house-cloud) was verified" in why
    # a saved session keeps it
    assert decode_result(*encode_result(result)).matches[0].sibling == "house-cloud"


def _map_sheet(width: int = 900, height: int = 300) -> np.ndarray:
    """A wide line drawing (coast-like outlines and labels on white) to cut overlapping sheets from."""
    rng = np.random.default_rng(3)
    img = np.full((height, width, 3), 255, np.uint8)
    for _ in range(14):
        cx, cy = int(rng.integers(30, width - 30)), int(rng.integers(30, height - 30))
        pts = np.array([[cx + r * math.cos(t), cy + r * 0.7 * math.sin(t)]
                        for t, r in zip(np.linspace(0, 2 * math.pi, 11)[:-1], rng.integers(15, 45, 10), strict=True)], np.int32)
        cv2.polylines(img, [pts], True, (0, 0, 0), 2)
    return img


def test_siblings_that_differ_in_extent_are_told_apart_by_what_only_one_covers():
    """Two overlapping sheets of one map (the left and the right two thirds) are identical where they
    overlap: a copy of the left sheet is told apart by the part only the left sheet covers, which the
    query shows, and a copy of the overlap alone gives no side a verdict."""
    sheet = _map_sheet()
    left, right = np.ascontiguousarray(sheet[:, :600]), np.ascontiguousarray(sheet[:, 300:])
    shift = np.array([[1.0, 0, 300], [0, 1, 0], [0, 0, 1]])  # right-sheet pixels -> left-sheet pixels

    def verdicts(query: np.ndarray, h_left: np.ndarray) -> tuple[float, float]:
        q = query_edges(query, 1.0)
        a, b = warp_reference(q, left, 1.0, h_left), warp_reference(q, right, 1.0, h_left @ shift)
        assert likeness(a, b) > 0.8 and likeness(b, a) > 0.8  # siblings: identical where both reach
        return distinct_edges(q, a, b), distinct_edges(q, b, a)

    copy, h = _rotate(left, 8)
    for_left, for_right = verdicts(copy, h)
    assert for_left > 0.6 and for_right < -0.6
    # a copy of the overlap alone (the middle third, padded) shows nothing only one sheet has
    middle = np.full_like(left, 255)
    middle[:, 150:450] = sheet[:, 300:600]
    for_left, for_right = verdicts(middle, np.array([[1.0, 0, -150], [0, 1, 0], [0, 0, 1]]))
    assert not abs(for_left) > 0.3 and not abs(for_right) > 0.3
