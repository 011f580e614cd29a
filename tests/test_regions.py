"""Region proposals: pasted, padded and captioned pictures are found; plain photos raise no alarm."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from skimage import data

from copylens.core.errors import UnknownBackendError
from copylens.core.regions import ProposalConfig, box_iou, non_max_suppression, propose_regions
from copylens.core.results import Region


def _resize(a: np.ndarray, w: int, h: int) -> np.ndarray:
    return cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)


def _best_iou(regions: list[Region], box) -> float:
    return max((box_iou(r.box, box) for r in regions), default=0.0)


DEFAULT = ProposalConfig()


def _check_valid(regions: list[Region], shape, config: ProposalConfig = DEFAULT) -> None:
    h, w = shape[:2]
    assert len(regions) <= config.max_regions
    scores = [r.score for r in regions]
    assert scores == sorted(scores, reverse=True)
    for r in regions:
        x0, y0, x1, y1 = r.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert 0.0 <= r.score <= 1.0
        assert r.kind in ("border", "caption", "edges", "quad", "fixed")
        assert box_iou(r.box, (0, 0, w, h)) < 0.95  # never the whole image


def _texture(seed: int, w: int, h: int) -> np.ndarray:
    """A smooth random colour field with a few discs: a stand-in background photo."""
    rng = np.random.default_rng(seed)
    a = cv2.resize(rng.integers(0, 256, (5, 5, 3)).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(a, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(10, 60)), c, -1)
    return cv2.GaussianBlur(a, (5, 5), 0)


@pytest.mark.parametrize("box", [
    (250, 100, 450, 300),
    pytest.param((40, 180, 220, 360), marks=pytest.mark.xfail(
        reason="known limit: the left side runs through dense saucer texture (line strength 0.37); "
               "the best box has IoU 0.73, under 0.8")),
    (330, 20, 570, 260),
])
def test_paste_on_photo_is_found(box):
    x0, y0, x1, y1 = box
    query = data.coffee().copy()  # 600 x 400
    query[y0:y1, x0:x1] = _resize(data.astronaut(), x1 - x0, y1 - y0)
    regions = propose_regions(query)
    _check_valid(regions, query.shape)
    assert _best_iou(regions, box) >= 0.8
    hit = max(regions, key=lambda r: box_iou(r.box, box))
    assert hit.kind == "edges" and hit.score >= 0.5


def _gradient(w: int, h: int, c0, c1) -> np.ndarray:
    """A smooth wallpaper: a diagonal two-colour gradient with a soft glow, and no edge anywhere."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (x / w + y / h)[..., None] / 2
    glow = np.exp(-(((x - 0.7 * w) / (0.3 * w)) ** 2 + ((y - 0.4 * h) / (0.4 * h)) ** 2))[..., None]
    return np.clip(np.float32(c0) * (1 - t) + np.float32(c1) * t + 50 * glow, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("box", [(250, 100, 450, 230), (60, 220, 340, 380)])
def test_smooth_wallpaper_pasted_on_photo_is_found(box):
    """A gradient has colour but hardly an edge inside: it is a picture, not a flat window."""
    x0, y0, x1, y1 = box
    query = data.coffee().copy()
    query[y0:y1, x0:x1] = _gradient(x1 - x0, y1 - y0, (120, 30, 110), (230, 90, 40))
    regions = propose_regions(query)
    _check_valid(regions, query.shape)
    assert _best_iou(regions, box) >= 0.8
    assert max(regions, key=lambda r: box_iou(r.box, box)).score >= 0.5


def test_faint_gradient_on_a_busy_background_gets_its_exact_box():
    """A faint wallpaper centred on a colourful background: the best box is the wallpaper's own, not one
    running on into the background (whose colours would make it look like more of a picture)."""
    query = _texture(3, 800, 512)
    box = (24, 52, 680, 424)
    query[52:424, 24:680] = _gradient(656, 372, (10, 70, 100), (20, 120, 160))
    regions = propose_regions(query)
    _check_valid(regions, query.shape)
    assert box_iou(regions[0].box, box) >= 0.9, regions


@pytest.mark.parametrize("seed", [0, 1])
def test_paste_on_texture_is_found(seed):
    query = _texture(seed, 640, 480)
    box = (300, 150, 300 + 220, 150 + 250)
    query[150:400, 300:520] = _resize(data.chelsea(), 220, 250)
    regions = propose_regions(query)
    assert _best_iou(regions, box) >= 0.8


def test_large_image_maps_boxes_back_to_input_pixels():
    query = _resize(data.coffee(), 1500, 1000)
    box = (600, 250, 1100, 700)
    query[250:700, 600:1100] = _resize(data.astronaut(), 500, 450)
    regions = propose_regions(query)
    _check_valid(regions, query.shape)
    assert _best_iou(regions, box) >= 0.8


@pytest.mark.parametrize("name", ["chelsea", "astronaut", "coffee"])
def test_plain_photo_raises_no_alarm(name):
    img = getattr(data, name)()
    regions = propose_regions(img)
    _check_valid(regions, img.shape)
    assert all(r.score < 0.5 for r in regions)


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (40, 120, 200)])
def test_padding_is_trimmed(colour):
    pic = data.astronaut()[::2, ::2]  # 256 x 256
    canvas = np.empty((400, 360, 3), np.uint8)
    canvas[:] = colour
    canvas[90:346, 30:286] = pic
    regions = propose_regions(canvas)
    _check_valid(regions, canvas.shape)
    assert box_iou(regions[0].box, (30, 90, 286, 346)) >= 0.8
    assert regions[0].kind in ("border", "edges") and regions[0].score >= 0.5


def _meme(pic: np.ndarray, band: int, text: str, bottom: bool = False) -> np.ndarray:
    h, w = pic.shape[:2]
    canvas = Image.new("RGB", (w, h + band * (2 if bottom else 1)), (255, 255, 255))
    canvas.paste(Image.fromarray(pic), (0, band))
    d = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=int(band * 0.5))
    d.text((w // 2, band // 2), text, fill=(0, 0, 0), font=font, anchor="mm")
    if bottom:
        d.text((w // 2, h + band + band // 2), text, fill=(0, 0, 0), font=font, anchor="mm")
    return np.asarray(canvas)


@pytest.mark.parametrize("bottom", [False, True])
def test_meme_caption_band_is_cut_off(bottom):
    pic = data.chelsea()  # 451 x 300
    query = _meme(pic, 80, "WHEN THE CAT SITS", bottom)
    regions = propose_regions(query)
    _check_valid(regions, query.shape)
    box = (0, 80, 451, 380)
    assert box_iou(regions[0].box, box) >= 0.8
    assert regions[0].kind == "caption" and regions[0].score >= 0.5


def test_screenshot_like_frame():
    pic = _resize(data.coffee(), 300, 200)
    canvas = Image.new("RGB", (340, 340), (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    d.ellipse((10, 10, 50, 50), fill=(30, 90, 200))
    d.text((60, 20), "someone @handle", fill=(20, 20, 20), font=ImageFont.load_default(size=16))
    canvas.paste(Image.fromarray(pic), (20, 70))
    for i in range(4):
        d.rectangle((20 + 80 * i, 290, 40 + 80 * i, 310), outline=(100, 100, 100), width=2)
    regions = propose_regions(np.asarray(canvas))
    assert _best_iou(regions, (20, 70, 320, 270)) >= 0.8


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (20, 20), (6, 500), (500, 6), (3000, 12), (40, 40)])
def test_tiny_and_extreme_images_do_not_crash(shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    regions = propose_regions(img)
    _check_valid(regions, img.shape)
    if min(shape) < ProposalConfig().min_side:
        assert regions == []


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (90, 140, 30)])
def test_single_colour_image_has_no_detection(colour):
    img = np.empty((300, 400, 3), np.uint8)
    img[:] = colour
    regions = propose_regions(img)
    _check_valid(regions, img.shape)
    assert all(r.kind == "fixed" for r in regions)


def test_fixed_crops_are_a_low_score_fallback_and_can_be_switched_off():
    img = data.chelsea()
    only_fixed = propose_regions(img, ProposalConfig(methods=("fixed",), fixed_scales=(0.5, 0.75)))
    assert [r.kind for r in only_fixed] == ["fixed", "fixed"]
    assert all(r.score <= 0.1 for r in only_fixed)
    x0, y0, x1, y1 = only_fixed[0].box
    assert abs((x0 + x1) / 2 - img.shape[1] / 2) < 1 and abs((y0 + y1) / 2 - img.shape[0] / 2) < 1
    assert propose_regions(img, ProposalConfig(methods=("border",))) == []


def test_max_regions_is_respected():
    query = data.coffee().copy()
    query[100:300, 250:450] = _resize(data.astronaut(), 200, 200)
    assert len(propose_regions(query, ProposalConfig(max_regions=1))) == 1
    assert propose_regions(query, ProposalConfig(max_regions=0)) == []


def test_unknown_method_lists_valid_names():
    with pytest.raises(UnknownBackendError, match="edges"):
        propose_regions(data.chelsea(), ProposalConfig(methods=("border", "magic")))


def test_non_rgb_input_is_rejected():
    with pytest.raises(ValueError):
        propose_regions(np.zeros((50, 50), np.uint8))


def test_non_max_suppression_keeps_the_better_of_overlapping_boxes():
    a = Region((0, 0, 100, 100), 0.9, "edges")
    b = Region((2, 2, 100, 100), 0.5, "border")
    c = Region((200, 200, 300, 300), 0.7, "edges")
    assert non_max_suppression([b, c, a], 0.6) == [a, c]
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0


def _in_perspective(pic: np.ndarray, background: np.ndarray, corners) -> np.ndarray:
    """``pic`` warped onto ``corners`` (clockwise from the top left) of ``background``: a print or a screen
    photographed at an angle."""
    h, w = pic.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    m = cv2.getPerspectiveTransform(src, np.float32(corners))
    bh, bw = background.shape[:2]
    warped = cv2.warpPerspective(pic, m, (bw, bh), flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), m, (bw, bh)) > 127
    out = background.copy()
    out[mask] = warped[mask]
    return out


@pytest.mark.parametrize("corners", [
    [(150, 60), (470, 95), (440, 350), (120, 320)],  # seen from the left and above
    [(90, 110), (520, 40), (560, 380), (60, 300)],  # a stronger tilt
])
@pytest.mark.parametrize("frame", [
    12,  # a print with a white margin, a screen with its bezel, a framed painting
    pytest.param(0, marks=pytest.mark.xfail(strict=True, reason=(
        "known limit: a borderless photo on a photo; its outline's edges join the background's and the "
        "inside's, so no contour simplifies to four corners (both tilts)"))),
])
def test_picture_seen_at_an_angle_is_found_with_its_corners_and_rectified(corners, frame):
    from copylens.core.regions import rectify

    pic = cv2.copyMakeBorder(_resize(data.astronaut(), 300 - 2 * frame, 300 - 2 * frame), frame, frame, frame,
                             frame, cv2.BORDER_CONSTANT, value=(250, 250, 250))
    query = _in_perspective(pic, data.coffee(), corners)
    regions = propose_regions(query)
    _check_valid(regions, query.shape)
    quads = [r for r in regions if r.kind == "quad"]
    assert quads, regions
    q = np.asarray(quads[0].quad).reshape(4, 2)
    # the outline of the print, or of the picture inside its margin: either, corners in order
    m = cv2.getPerspectiveTransform(np.float32([[0, 0], [300, 0], [300, 300], [0, 300]]), np.float32(corners))
    inner = cv2.perspectiveTransform(np.float32([[[frame, frame], [300 - frame, frame], [300 - frame, 300 - frame],
                                                  [frame, 300 - frame]]]), m)[0]
    outline, shown = min(((np.float32(corners), pic), (inner, pic[frame:300 - frame, frame:300 - frame])),
                         key=lambda o: np.abs(q - o[0]).max())
    assert np.abs(q - outline).max() < 8, (q, outline)
    upright = rectify(query, quads[0].quad)
    # the rectified region is the picture again (up to the scale the frame chose)
    again = _resize(upright, shown.shape[1], shown.shape[0]).astype(np.float32)
    assert np.corrcoef(again.ravel(), shown.astype(np.float32).ravel())[0, 1] > 0.9


def test_rectified_frame_maps_back_onto_the_quad():
    from copylens.core.regions import frame_size, rectify, to_query

    quad = (40.0, 30.0, 300.0, 50.0, 280.0, 220.0, 60.0, 200.0)
    fw, fh = frame_size(quad)
    t = to_query(quad)
    corners = np.array([[0, 0, 1], [fw, 0, 1], [fw, fh, 1], [0, fh, 1]], np.float64) @ t.T
    assert np.allclose(corners[:, :2] / corners[:, 2:], np.reshape(quad, (4, 2)), atol=1e-6)
    # a half-size working copy rectifies to half the frame, with the same content
    pixels = np.zeros((240, 320, 3), np.uint8)
    cv2.fillConvexPoly(pixels, np.int32(np.reshape(quad, (4, 2))), (200, 60, 30))
    half = cv2.resize(pixels, (160, 120), interpolation=cv2.INTER_AREA)
    upright = rectify(half, quad, 0.5)
    assert abs(upright.shape[1] - fw / 2) <= 1 and abs(upright.shape[0] - fh / 2) <= 1
    inner = upright[3:-3, 3:-3].reshape(-1, 3).astype(int)
    assert np.abs(inner - (200, 60, 30)).max(1).mean() < 12  # all of it is the filled quad


def test_axis_aligned_photos_give_no_strong_quad():
    for name in ("chelsea", "astronaut", "coffee"):
        img = getattr(data, name)()
        assert all(r.score < 0.5 for r in propose_regions(img) if r.kind == "quad"), name
