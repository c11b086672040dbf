"""Retarget the driving pose to the reference character's proportions (official retarget_pose.py, no FLUX edit).

Method, as in the official code:
1. A global scale `s`: the driving person's height over the reference's (nose to mean ankle, else nose to mean hip,
   else sqrt of the canvas areas).
2. One ratio per limb: reference bone length (scaled by s) over the first driving frame's bone length; left and
   right limbs take the larger of the pair, eye and ear bones the mean of the pair.
3. Every driving frame is rebuilt bone by bone from the neck outwards with its own bone directions and the scaled
   lengths (feet capped at half the shin), translated so that in the first frame the feet (full body in both) or the
   neck (otherwise) land where the reference's are, and divided by s into the reference's canvas.
4. Hands are scaled about their root by the larger shoulder ratio / s and attached to the retargeted wrists (each
   hand to the wrist it is nearer to in the driving frame).

Differences, deliberate: a bone whose end points are below the drawing threshold in either pose gets the mean
shoulder ratio instead of a ratio from invisible points (the official code takes whatever the pose model guessed);
a zero-length bone gets the same fallback instead of dividing by zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .skeleton import LIMBS, Skeleton

NOSE, NECK, R_WRIST, L_WRIST, R_HIP, R_ANKLE, L_HIP, L_ANKLE, L_TOE, R_TOE = 0, 1, 4, 7, 8, 10, 11, 13, 18, 19
RIGHT_SHIN, LEFT_SHIN, LEFT_FOOT, RIGHT_FOOT = 8, 11, 17, 18  # indices into LIMBS
SYMMETRIC_LIMBS = ((0, 1), (2, 4), (3, 5), (6, 9), (7, 10), (8, 11), (17, 18))
AVERAGED_LIMBS = ((13, 15), (14, 16))
HEIGHT_THRESHOLD = 0.5  # official: nose/ankle/hip confidence needed to measure body height
BODY_FLAG_THRESHOLD = 0.4  # official check_full_body threshold (also the hand keypoint threshold)
RATIO_THRESHOLD = 0.5
FOOT_TO_SHIN = 0.5
FULL_BODY, THREE_QUARTER_BODY, HALF_BODY = 2, 1, 0


@dataclass
class RetargetPlan:
    """What retargeting learned from the first driving frame and the reference; applied to every frame."""

    ratios: np.ndarray  # (19,) per-limb length ratios
    scale: float  # driving height / reference height
    offset: np.ndarray  # (2,) subtracted after rebuilding, in driving pixels
    body_flag: int
    width: int  # reference canvas
    height: int


def body_height(sk: Skeleton, other: Skeleton) -> tuple[float, float] | None:
    """(height of sk, height of other) measured the official way, or None when neither measure is confident."""
    for low_a, low_b in ((R_ANKLE, L_ANKLE), (R_HIP, L_HIP)):
        idx = [NOSE, low_a, low_b]
        if (sk.body_scores[idx] > HEIGHT_THRESHOLD).all() and (other.body_scores[idx] > HEIGHT_THRESHOLD).all():
            h1 = abs((sk.body[low_a, 1] + sk.body[low_b, 1]) / 2 - sk.body[NOSE, 1])
            h2 = abs((other.body[low_a, 1] + other.body[low_b, 1]) / 2 - other.body[NOSE, 1])
            if h1 > 0 and h2 > 0:
                return h1, h2
    return None


def body_extent(sk: Skeleton) -> int:
    """Official check_full_body: feet and hips inside the canvas and confident -> full; hips only -> 3/4; else half."""
    s, y = sk.body_scores, sk.body[:, 1]

    def seen(*idx: int) -> bool:
        return all(s[i] >= BODY_FLAG_THRESHOLD and y[i] <= sk.height for i in idx)

    if seen(R_ANKLE, L_ANKLE, R_HIP, L_HIP):
        return FULL_BODY
    if seen(R_HIP, L_HIP):
        return THREE_QUARTER_BODY
    return HALF_BODY


def limb_lengths(body: np.ndarray) -> np.ndarray:
    return np.array([math.dist(body[a], body[b]) for a, b in LIMBS])


def limb_ratios(src: Skeleton, dst_body: np.ndarray, dst_scores: np.ndarray) -> np.ndarray:
    """Per-limb dst/src length ratios with the official pairing rules and the fallbacks described above."""
    src_len, dst_len = limb_lengths(src.body), limb_lengths(dst_body)
    confident = np.array([
        min(src.body_scores[a], src.body_scores[b], dst_scores[a], dst_scores[b]) >= RATIO_THRESHOLD for a, b in LIMBS
    ])
    usable = confident & (src_len > 1e-6)
    ratios = np.full(len(LIMBS), np.nan)
    ratios[usable] = dst_len[usable] / src_len[usable]
    shoulders = ratios[[0, 1]]
    fallback = np.nanmean(shoulders) if np.isfinite(shoulders).any() else (
        np.nanmedian(ratios) if np.isfinite(ratios).any() else 1.0)
    ratios[~np.isfinite(ratios)] = fallback
    for a, b in SYMMETRIC_LIMBS:
        ratios[a] = ratios[b] = max(ratios[a], ratios[b])
    for a, b in AVERAGED_LIMBS:
        ratios[a] = ratios[b] = (ratios[a] + ratios[b]) / 2
    return ratios


def rebuild(body: np.ndarray, ratios: np.ndarray, cap_feet: bool) -> np.ndarray:
    """Rebuild the body from the neck outwards: same bone directions, lengths multiplied by the ratios."""
    lengths = limb_lengths(body) * ratios
    if cap_feet:
        lengths[RIGHT_FOOT] = min(lengths[RIGHT_FOOT], lengths[RIGHT_SHIN] * FOOT_TO_SHIN)
        lengths[LEFT_FOOT] = min(lengths[LEFT_FOOT], lengths[LEFT_SHIN] * FOOT_TO_SHIN)
    out = body.astype(np.float64).copy()
    for (a, b), length in zip(LIMBS, lengths):
        direction = body[b] - body[a]
        norm = math.hypot(*direction)
        unit = direction / norm if norm > 0 else np.zeros(2)
        out[b] = out[a] + unit * length
    return out


def plan_retarget(first_frame: Skeleton, reference: Skeleton) -> RetargetPlan:
    """Learn ratios, scale and offset from the first driving frame and the reference pose."""
    heights = body_height(first_frame, reference)
    if heights is not None:
        scale = heights[0] / heights[1]
    else:
        scale = math.sqrt(first_frame.height * first_frame.width) / math.sqrt(reference.height * reference.width)
    # The reference in driving pixels; the official code truncates the scaled canvas size to ints.
    sized = np.array([int(reference.width * scale), int(reference.height * scale)], np.float64)
    dst = reference.body / np.array([reference.width, reference.height]) * sized
    ratios = limb_ratios(first_frame, dst, reference.body_scores)
    rebuilt = rebuild(first_frame.body, ratios, cap_feet=False)
    flag = min(body_extent(first_frame), body_extent(reference))
    if flag == FULL_BODY:
        ground_y = max((dst[R_ANKLE, 1] + dst[R_TOE, 1]) / 2, (dst[L_ANKLE, 1] + dst[L_TOE, 1]) / 2)
        offset = np.array([
            (rebuilt[R_HIP, 0] + rebuilt[L_HIP, 0]) / 2 - (dst[R_HIP, 0] + dst[L_HIP, 0]) / 2,
            max(rebuilt[R_ANKLE, 1], rebuilt[L_ANKLE, 1]) - ground_y,
        ])
    else:
        offset = rebuilt[NECK] - dst[NECK]
    return RetargetPlan(ratios, float(scale), offset, flag, reference.width, reference.height)


def _retarget_hand(points: np.ndarray, scores: np.ndarray, ratio: float, wrist_before: np.ndarray,
                   wrist_after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale a hand about its root; put the root on the retargeted wrist (or, root unseen, move with the wrist)."""
    ok = (scores >= BODY_FLAG_THRESHOLD) & np.isfinite(points).all(axis=1)
    root = points[0]
    shift = wrist_after - (root if ok[0] else wrist_before)
    out = np.full(points.shape, np.nan)
    out[ok] = np.trunc(root + (points[ok] - root) * ratio + shift)  # official int() of the hand points
    return out, np.where(ok, scores, 0.0)


def apply_retarget(plan: RetargetPlan, frame: Skeleton) -> Skeleton:
    """One driving frame's skeleton moved onto the reference's proportions and canvas (face landmarks dropped)."""
    body = (rebuild(frame.body, plan.ratios, cap_feet=True) - plan.offset) / plan.scale
    hand_ratio = max(plan.ratios[0], plan.ratios[1]) / plan.scale
    hands = []
    for points, scores in ((frame.right_hand, frame.right_hand_scores), (frame.left_hand, frame.left_hand_scores)):
        root = points[0]
        near_right = math.dist(root, frame.body[R_WRIST]) <= math.dist(root, frame.body[L_WRIST])
        wrist = R_WRIST if near_right else L_WRIST
        hands.append(_retarget_hand(points, scores, hand_ratio, frame.body[wrist], body[wrist]))
    (rh, rhs), (lh, lhs) = hands
    return Skeleton(
        body, frame.body_scores.copy(), lh, lhs, rh, rhs, np.full_like(frame.face, np.nan),
        np.zeros_like(frame.face_scores), plan.width, plan.height,
    )


def retarget(frames: list[Skeleton], reference: Skeleton, first_frame: Skeleton | None = None) -> list[Skeleton]:
    """Retarget every driving frame; the plan comes from `first_frame` (default: frames[0]) and the reference."""
    plan = plan_retarget(first_frame or frames[0], reference)
    return [apply_retarget(plan, f) for f in frames]
