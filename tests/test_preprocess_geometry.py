"""Working size, letterboxing, skeleton drawing and face-crop geometry follow the official rules."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest

from wan_animate.preprocess.errors import InputSizeError
from wan_animate.preprocess.face_crop import clamp_box, crop_face, face_box
from wan_animate.preprocess.resolution import letterbox, letterbox_points, resize_by_area, size_by_area
from wan_animate.preprocess.skeleton import (
    BODY_COLORS, LIMBS, Skeleton, hand_stick_width, render_skeleton, stick_width,
)


def test_official_area_rule_and_the_exact_search():
    assert size_by_area(1920, 1080) == (1280, 720)
    assert size_by_area(1080, 1920) == (720, 1280)
    assert size_by_area(512, 512) == (960, 960)
    # What the official code really produces (its exact search always raises): sides floored to 16 separately.
    assert size_by_area(640, 480) == (1104, 816)
    # The search as meant: largest area within 1280*720 with both sides divisible by 16.
    assert size_by_area(640, 480, rule="exact") == (1104, 832)
    for w, h in [(640, 480), (333, 1000), (1001, 701)]:
        for rule in ("official", "exact"):
            nw, nh = size_by_area(w, h, rule=rule)
            assert nw % 16 == 0 and nh % 16 == 0 and nw * nh <= 1280 * 720
            assert abs(nw / nh - w / h) < 0.06
    with pytest.raises(InputSizeError, match="less extreme aspect"):
        size_by_area(2, 5000)
    with pytest.raises(InputSizeError, match="at least 2 pixels"):
        size_by_area(1, 100)


def test_letterbox_matches_padding_resize_and_maps_points():
    img = np.full((101, 303, 3), 200, np.uint8)  # odd sizes
    out = letterbox(img, 160, 160)
    # Wider than the target: width fills, height int(160 / 303 * 101) = 53, padded int((160 - 53) / 2) = 53 on top.
    rows = np.flatnonzero(out[:, 80, 0])
    assert (rows[0], rows[-1]) == (53, 105) and out.shape == (160, 160, 3)
    mapped = letterbox_points(np.array([[0.0, 0.0], [303.0, 101.0]]), (101, 303), (160, 160))
    assert np.allclose(mapped, [[0, 53], [160, 53 + 160 / 303 * 101]])
    resized = resize_by_area(np.zeros((37, 51, 3), np.uint8), area=256 * 144)
    assert resized.shape[0] % 16 == 0 and resized.shape[1] % 16 == 0


def _skeleton(h: int = 400, w: int = 300, body_score: float = 0.9) -> Skeleton:
    kps = np.zeros((133, 2))
    scores = np.zeros(133)
    for i, (x, y) in {5: (100, 100), 6: (200, 100), 7: (90, 180), 9: (80, 250), 0: (150, 50)}.items():
        kps[i], scores[i] = (x, y), body_score
    return Skeleton.from_wholebody(kps, scores, w, h)


def test_body_split_is_the_official_20_points():
    kps = np.arange(133 * 2, dtype=float).reshape(133, 2)
    scores = np.linspace(0, 1, 133)
    sk = Skeleton.from_wholebody(kps, scores, 10, 10)
    assert np.allclose(sk.body[1], (kps[5] + kps[6]) / 2) and np.isclose(sk.body_scores[1], (scores[5] + scores[6]) / 2)
    assert np.allclose(sk.body[2], kps[6]) and np.allclose(sk.body[5], kps[5])  # RShoulder = COCO 6, LShoulder = 5
    assert np.allclose(sk.body[18], (kps[17] + kps[18]) / 2) and np.allclose(sk.body[19], (kps[20] + kps[21]) / 2)
    assert np.allclose(sk.face, kps[23:91]) and np.allclose(sk.left_hand, kps[91:112])


def test_drawing_colours_widths_threshold_and_no_face():
    assert stick_width(400, 300) == 1 and stick_width(720, 1280) == 2 and stick_width(1080, 1920) == 4
    assert hand_stick_width(1080, 1920) == 2
    img = render_skeleton(_skeleton())
    # Shoulder limb RShoulder(200,100)-Neck(150,100) is the first limb: colour (255, 0, 0) at 0.6 intensity.
    assert LIMBS[0] == (1, 2) and tuple(img[100, 175]) == (153, 0, 0)
    # Joint dots in full colour: RShoulder is body point 2.
    assert tuple(img[100, 200]) == BODY_COLORS[2]
    # Left arm LShoulder(100,100)->LElbow(90,180): limb index 4 colour (170, 255, 0) * 0.6.
    assert tuple(img[140, 95]) == (102, 153, 0)
    # Below the 0.5 threshold nothing is drawn; face landmarks are never drawn.
    assert render_skeleton(_skeleton(body_score=0.49)).max() == 0
    kps, scores = np.zeros((133, 2)), np.zeros(133)
    kps[23:91] = np.random.default_rng(0).uniform(50, 250, (68, 2))
    scores[23:91] = 1.0
    assert render_skeleton(Skeleton.from_wholebody(kps, scores, 300, 300)).max() == 0


def test_hands_are_drawn_in_hsv_with_blue_joints():
    kps, scores = np.zeros((133, 2)), np.zeros(133)
    kps[91] = (50, 50)
    kps[92] = (150, 50)
    scores[91:93] = 0.9
    img = render_skeleton(Skeleton.from_wholebody(kps, scores, 400, 400))
    r, g, b = (c * 255 for c in colorsys.hsv_to_rgb(0.0, 1, 1))
    assert tuple(img[50, 100]) == (round(r), round(g), round(b))  # first hand edge: hue 0
    assert tuple(img[50, 50]) == (0, 0, 255) and tuple(img[50, 150]) == (0, 0, 255)


def test_face_box_follows_the_official_recipe():
    # A 40x60 landmark box: area x1.3 keeps the aspect, so each side grows by sqrt(1.3).
    lm = np.array([[100, 100], [140, 160], [120, 130]] * 23)[:68].astype(float)
    box = face_box(lm)
    s = np.sqrt(1.3)
    dw, dh = (40 * s - 40) / 2, (60 * s - 60) / 4
    assert np.allclose(box, [100 - dw, 100 - 3 * dh, 140 + dw, 160 + dh])  # 3x more room above than below
    assert clamp_box(box, 1000, 1000) == tuple(int(v) for v in box)
    assert clamp_box(np.array([-5.0, -7.0, 30.5, 40.9]), 20, 30) == (0, 0, 20, 30)
    assert face_box(np.zeros((68, 2))) is None  # collapsed landmarks are not a box
    frame = np.zeros((300, 300, 3), np.uint8)
    frame[50:100, 60:90] = (10, 200, 30)
    crop = crop_face(frame, (60, 50, 90, 100))
    assert crop.shape == (512, 512, 3) and tuple(crop[256, 256]) == (10, 200, 30)  # RGB kept, aspect not kept
