"""Person choice, tracking and gap filling; smoothing without lag; retargeting to the reference's proportions."""
from __future__ import annotations

import numpy as np
import pytest

from tests.preprocess_helpers import frames_of, person
from wan_animate.preprocess.errors import NoPersonError
from wan_animate.preprocess.person_select import choose, fill_gaps
from wan_animate.preprocess.retarget import apply_retarget, plan_retarget, retarget
from wan_animate.preprocess.skeleton import LIMBS, Skeleton
from wan_animate.preprocess.smoothing import OneEuroParams, one_euro, smooth, smooth_boxes

SMALL = [10, 100, 60, 200]
BIG = [300, 50, 420, 330]


def test_largest_and_left_to_right_index():
    frames = frames_of([[person(BIG), person(SMALL)], [person(SMALL)], []])
    assert [p.detection.box[0] if p else None for p in choose(frames, "largest")] == [300, 10, None]
    assert [p.detection.box[0] if p else None for p in choose(frames, "index", 0)] == [10, 10, None]
    assert [p.detection.box[0] if p else None for p in choose(frames, "index", 1)] == [300, None, None]
    with pytest.raises(ValueError, match="strategy"):
        choose(frames, "tallest")


def test_tracking_follows_the_chosen_person_when_another_passes_bigger():
    # Person A walks right slowly; person B (bigger) crosses from the right; "largest" would jump to B.
    people = []
    for t in range(12):
        a = [100 + 5 * t, 100, 160 + 5 * t, 250]
        b = [600 - 40 * t, 40, 720 - 40 * t, 330]
        people.append([person(b), person(a)] if t != 6 else [person(b)])  # A hidden behind B at t=6
    frames = frames_of(people, width=800)
    tracked = choose(frames, "track", index=0, start_frame=0)
    assert all(p is None or p.detection.box[0] < 200 for p in tracked)
    assert tracked[6] is None and sum(p is not None for p in tracked) == 11
    largest = choose(frames, "largest")
    assert largest[0].detection.box[0] == 600
    # Tracking backwards from a start frame works too.
    back = choose(frames, "track", index=0, start_frame=11)
    assert back[0].detection.box[0] == 100
    with pytest.raises(NoPersonError, match="at least 3 people"):
        choose(frames, "track", index=2)


def test_missing_frames_are_interpolated_inside_held_outside_and_counted():
    frames = frames_of([[], [person([0, 0, 10, 10])], [], [], [person([30, 30, 40, 40])], []])
    track = fill_gaps(choose(frames), 640, 360)
    assert track.missing_frames == [0, 2, 3, 5]
    assert track.interpolated.tolist() == [False, False, True, True, False, False]
    assert track.held.tolist() == [True, False, False, False, False, True]
    assert np.allclose(track.boxes[2], [10, 10, 20, 20]) and np.allclose(track.boxes[3], [20, 20, 30, 30])
    assert np.allclose(track.boxes[0], track.boxes[1]) and np.allclose(track.boxes[5], track.boxes[4])
    held = fill_gaps(choose(frames), 640, 360, mode="hold")
    assert held.interpolated.sum() == 0 and np.allclose(held.boxes[2], held.boxes[1])
    with pytest.raises(NoPersonError, match="No person found in any of the 3 frames"):
        fill_gaps(choose(frames_of([[], [], []])), 640, 360)


def test_smoothing_removes_jitter_without_lag_on_a_step_or_fast_motion():
    rng = np.random.default_rng(0)
    t = np.arange(120)
    step = np.where(t < 60, 0.0, 1.0)
    noisy = step + rng.normal(0, 0.02, t.shape)
    params = OneEuroParams.from_strength(0.5)
    out = smooth(noisy, 30, params)
    still = slice(10, 50)
    assert np.std(np.diff(out[still])) < np.std(np.diff(noisy[still])) / 4  # jitter mostly gone
    # No lag: the step is crossed at the step, and settled two frames later.
    assert out[59] < 0.5 < out[60]
    assert abs(out[62] - 1) < 0.05 and abs(out[57]) < 0.1
    # Causal One-Euro alone would lag: crossing is later.
    forward = one_euro(noisy, 30, params)
    assert forward[60] < out[60]
    # Fast sinusoidal motion (2 Hz, one body height amplitude) passes with no phase shift.
    wave = np.sin(2 * np.pi * 2 * t / 30)
    follow = smooth(wave + rng.normal(0, 0.02, t.shape), 30, params)
    lags = range(-3, 4)
    best = max(lags, key=lambda k: np.dot(np.roll(follow, k)[10:-10], wave[10:-10]))
    assert best == 0 and np.abs(follow - wave)[10:-10].max() < 0.25
    # Invalid samples pass through and do not disturb the others.
    valid = np.ones(120, bool)
    valid[30] = False
    spiky = noisy.copy()
    spiky[30] = 50.0
    kept = smooth(spiky, 30, params, valid)
    assert kept[30] == 50.0 and abs(kept[29]) < 0.1 and abs(kept[31]) < 0.1
    boxes = np.stack([np.array([100, 100, 150, 160]) + rng.normal(0, 2, 4) for _ in range(60)])
    sb = smooth_boxes(boxes, 30, params)
    assert np.std(sb[5:-5], axis=0).max() < np.std(boxes, axis=0).min() / 2


def _skeleton(scale_x: float, scale_y: float, w: int, h: int, leg: float = 1.0, x0: float = 0, y0: float = 0) -> Skeleton:
    """A standing person: legs `leg` times longer, everything scaled and shifted."""
    pts = {0: (0, -90), 1: (-5, -95), 2: (5, -95), 3: (-10, -92), 4: (10, -92), 5: (-20, -70), 6: (20, -70),
           7: (-30, -40), 8: (30, -40), 9: (-35, -15), 10: (35, -15), 11: (-12, -10), 12: (12, -10),
           13: (-13, -10 + 50 * leg), 14: (13, -10 + 50 * leg), 15: (-14, -10 + 95 * leg), 16: (14, -10 + 95 * leg),
           17: (-20, -10 + 105 * leg), 18: (-17, -10 + 105 * leg), 20: (20, -10 + 105 * leg), 21: (17, -10 + 105 * leg)}
    kps, scores = np.zeros((133, 2)), np.zeros(133)
    for i, (x, y) in pts.items():
        kps[i], scores[i] = (x0 + x * scale_x, y0 + y * scale_y), 0.9
    kps[91:112] = kps[9] + np.linspace(0, 10, 21)[:, None] * scale_x
    kps[112:133] = kps[10] + np.linspace(0, 10, 21)[:, None] * scale_x
    scores[91:133] = 0.9
    return Skeleton.from_wholebody(kps, scores, w, h)


def test_retarget_ratios_scale_and_feet_placement():
    driving = _skeleton(2.0, 2.0, 640, 480, x0=320, y0=240)
    # The reference: same proportions but twice as small, except legs 1.5x longer.
    ref = _skeleton(1.0, 1.0, 400, 400, leg=1.5, x0=200, y0=150)
    plan = plan_retarget(driving, ref)
    thighs, shins = plan.ratios[[7, 10]], plan.ratios[[8, 11]]
    arms = plan.ratios[[2, 3, 4, 5]]
    # Global scale: driving height (nose to mean ankle) over the reference's: 2 * 175 / 222.5.
    assert plan.scale == pytest.approx(2 * 175 / 222.5, rel=1e-6)
    assert np.allclose(arms, arms[0]) and np.allclose(thighs, thighs[0]) and np.allclose(shins, shins[0])
    assert thighs[0] / arms[0] == pytest.approx(1.5, rel=1e-2) and shins[0] / arms[0] == pytest.approx(1.5, rel=1e-2)
    out = apply_retarget(plan, driving)
    assert (out.width, out.height) == (400, 400)
    # In the first frame the retargeted body has the reference's bone lengths and stands where its feet are.
    for a, b in LIMBS[:12]:
        assert np.linalg.norm(out.body[a] - out.body[b]) == pytest.approx(np.linalg.norm(ref.body[a] - ref.body[b]), rel=0.02, abs=0.5)
    assert (out.body[8, 0] + out.body[11, 0]) / 2 == pytest.approx((ref.body[8, 0] + ref.body[11, 0]) / 2, abs=0.5)
    # Official ground rule: the driving ankles land on the reference's ankle-toe midpoints.
    ground = max((ref.body[10, 1] + ref.body[19, 1]) / 2, (ref.body[13, 1] + ref.body[18, 1]) / 2)
    assert max(out.body[10, 1], out.body[13, 1]) == pytest.approx(ground, abs=0.5)
    # Hands hang from the retargeted wrists.
    assert np.allclose(out.left_hand[0], out.body[7], atol=1) and np.allclose(out.right_hand[0], out.body[4], atol=1)
    # Later frames keep the motion: moving the driving person right by 40 px moves the output by 40 / scale.
    moved = _skeleton(2.0, 2.0, 640, 480, x0=360, y0=240)
    later = retarget([driving, moved], ref)[1]
    assert np.allclose(later.body - out.body, [40 / plan.scale, 0], atol=1e-6)
