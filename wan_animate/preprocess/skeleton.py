"""The official 20-point body + hands skeleton, and its drawing (human_visualization.draw_aapose_new).

The body is OpenPose-18 with the neck as the mid-shoulder point plus one toe per foot (mean of big and small toe),
built from COCO-WholeBody's 133 points exactly as the official split does (scores are averaged with the points).
Drawing follows the official rules: confidence threshold 0.5, OpenPose colours, limbs as filled ellipses at 0.6
intensity, stick width max(int(min(H, W) / 200) - 1, 1), joints as dots, hands in HSV colours with half the stick
width, and no face landmarks.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .types import FACE, LEFT_HAND, NUM_KEYPOINTS, RIGHT_HAND

# 20-point body from the 133 whole-body points: the mean of the two source points of each row.
BODY_FROM_WHOLEBODY = (
    [0, 6, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3, 17, 20],
    [0, 5, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3, 18, 21],
)
BODY_NAMES = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip", "RKnee", "RAnkle",
    "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar", "LToe", "RToe",
)
# Limbs as 0-based index pairs into the 20-point body, in the official drawing (and retargeting) order.
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (13, 18), (10, 19),
)
BODY_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85), (200, 200, 0), (100, 100, 0),
)
HEAD_POINTS = (0, 14, 15, 16, 17)
HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
    (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)
HAND_EDGE_COLORS = tuple(tuple(c * 255 for c in colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1.0, 1.0)) for i in range(20))
HAND_JOINT_COLOR = (0, 0, 255)
LIMB_INTENSITY = 0.6
DRAW_THRESHOLD = 0.5


@dataclass
class Skeleton:
    """One person's drawable pose in pixel coordinates of a width x height canvas (scores 0 = absent)."""

    body: np.ndarray  # (20, 2)
    body_scores: np.ndarray  # (20,)
    left_hand: np.ndarray  # (21, 2)
    left_hand_scores: np.ndarray
    right_hand: np.ndarray  # (21, 2)
    right_hand_scores: np.ndarray
    face: np.ndarray  # (68, 2), used for face crops, never drawn
    face_scores: np.ndarray
    width: int
    height: int

    @classmethod
    def from_wholebody(cls, keypoints: np.ndarray, scores: np.ndarray, width: int, height: int) -> Skeleton:
        """Official split of 133 COCO-WholeBody points (x, y, score averaged for the paired body points)."""
        kps = np.concatenate([np.asarray(keypoints, np.float64), np.asarray(scores, np.float64)[:, None]], axis=1)
        if kps.shape != (NUM_KEYPOINTS, 3):
            raise ValueError(f"expected 133 keypoints, got {kps.shape[0]}")
        body = (kps[BODY_FROM_WHOLEBODY[0]] + kps[BODY_FROM_WHOLEBODY[1]]) / 2
        return cls(
            body[:, :2], body[:, 2], kps[LEFT_HAND, :2], kps[LEFT_HAND, 2], kps[RIGHT_HAND, :2], kps[RIGHT_HAND, 2],
            kps[FACE, :2], kps[FACE, 2], int(width), int(height),
        )

    def mapped(self, scale: float, offset: tuple[float, float], width: int, height: int) -> Skeleton:
        """Every point p -> p * scale + offset, on a new width x height canvas."""
        off = np.asarray(offset, np.float64)
        return Skeleton(
            self.body * scale + off, self.body_scores.copy(), self.left_hand * scale + off,
            self.left_hand_scores.copy(), self.right_hand * scale + off, self.right_hand_scores.copy(),
            self.face * scale + off, self.face_scores.copy(), int(width), int(height),
        )


def stick_width(height: int, width: int) -> int:
    """Official 'v2' body stick width (also the ellipse minor axis and the joint radius)."""
    return max(int(min(height, width) / 200) - 1, 1)


def hand_stick_width(height: int, width: int) -> int:
    return max(stick_width(height, width) // 2, 1)


def _usable(points: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    return (scores >= threshold) & np.isfinite(points).all(axis=1)


def draw_skeleton(
    canvas: np.ndarray, skeleton: Skeleton, threshold: float = DRAW_THRESHOLD, draw_hands: bool = True,
    draw_head: bool = True,
) -> np.ndarray:
    """Draw the skeleton onto an RGB uint8 canvas in place (and return it), by the official rules."""
    h, w = canvas.shape[:2]
    sw = stick_width(h, w)
    body_scores = skeleton.body_scores.copy()
    if not draw_head:
        body_scores[list(HEAD_POINTS)] = 0
    ok = _usable(skeleton.body, body_scores, threshold)
    for (a, b), color in zip(LIMBS, BODY_COLORS):
        if not (ok[a] and ok[b]):
            continue
        (x1, y1), (x2, y2) = skeleton.body[a], skeleton.body[b]
        length = math.hypot(x1 - x2, y1 - y2)
        angle = math.degrees(math.atan2(y1 - y2, x1 - x2))
        polygon = cv2.ellipse2Poly(
            (int((x1 + x2) / 2), int((y1 + y2) / 2)), (int(length / 2), sw), int(angle), 0, 360, 1
        )
        cv2.fillConvexPoly(canvas, polygon, [int(float(c) * LIMB_INTENSITY) for c in color])
    for i, color in enumerate(BODY_COLORS):
        if ok[i]:
            cv2.circle(canvas, (int(skeleton.body[i, 0]), int(skeleton.body[i, 1])), sw, color, thickness=-1)
    if draw_hands:
        for points, scores in ((skeleton.left_hand, skeleton.left_hand_scores),
                               (skeleton.right_hand, skeleton.right_hand_scores)):
            _draw_hand(canvas, points, scores, threshold)
    return canvas


def _draw_hand(canvas: np.ndarray, points: np.ndarray, scores: np.ndarray, threshold: float) -> None:
    eps = 0.01
    width = hand_stick_width(*canvas.shape[:2])
    ok = _usable(points, scores, threshold)
    ip = np.zeros((len(points), 2), np.int64)
    ip[ok] = points[ok].astype(np.int64)  # official int() truncation
    inside = ok & (ip[:, 0] > eps) & (ip[:, 1] > eps)
    for (a, b), color in zip(HAND_EDGES, HAND_EDGE_COLORS):
        if inside[a] and inside[b]:
            cv2.line(canvas, (int(ip[a, 0]), int(ip[a, 1])), (int(ip[b, 0]), int(ip[b, 1])), color, thickness=width)
    for i in np.flatnonzero(inside):
        cv2.circle(canvas, (int(ip[i, 0]), int(ip[i, 1])), width, HAND_JOINT_COLOR, thickness=-1)


def render_skeleton(skeleton: Skeleton, threshold: float = DRAW_THRESHOLD, **options) -> np.ndarray:
    """A fresh black (height, width, 3) canvas with the skeleton drawn on it."""
    canvas = np.zeros((skeleton.height, skeleton.width, 3), np.uint8)
    return draw_skeleton(canvas, skeleton, threshold, **options)
