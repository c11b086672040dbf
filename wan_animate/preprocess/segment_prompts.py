"""Automatic SAM prompts for the chosen person: which frames to prompt and with which points and box.

The official recipe (process_pipepline.py `get_mask`) cuts the video into 400-frame chunks and prompts each at 4
evenly spaced key frames (chunk frames 0, L/4, L/2, 3L/4) with 8 positive points: nose, neck, both shoulders, both
hips and both ankles of the pose. Here the same points are used, from the chosen person's track (largest / index /
track), with two differences that make the prompts trustworthy:

- only confident keypoints (score >= KEYPOINT_SCORE) become points, and a frame is a key frame only when the person
  was really detected there (not interpolated or held) with at least MIN_POINTS of them; each key frame is the first
  such frame of its quarter of the chunk (official: the quarter's first frame whatever the pose says);
- the detector's person box is added as a box prompt: it tells SAM the whole extent of the person, where eight
  points alone often give a part (the shirt, the trousers). `use_box=False` gives the official points-only prompt.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .person_select import KEYPOINT_SCORE, PersonTrack
from .skeleton import Skeleton

# Official prompt points as indices into the 20-point body: Nose, Neck, RShoulder, LShoulder, RHip, LHip, RAnkle, LAnkle.
PROMPT_BODY_POINTS = (0, 1, 2, 5, 8, 11, 10, 13)
MIN_POINTS = 3
OFFICIAL_CHUNK_FRAMES = 400
OFFICIAL_KEY_FRAMES = 4


@dataclass(frozen=True)
class FramePrompt:
    """Positive points (P, 2) and an optional person box (x1, y1, x2, y2), in frame pixels."""

    points: np.ndarray
    box: np.ndarray | None = None


def frame_prompt(track: PersonTrack, index: int, use_box: bool = True, min_score: float = KEYPOINT_SCORE,
                 min_points: int = MIN_POINTS) -> FramePrompt | None:
    """The prompt for one frame, or None where the person was not detected or shows too few confident points."""
    if not track.found[index]:
        return None
    skeleton = Skeleton.from_wholebody(track.keypoints[index], track.scores[index], track.width, track.height)
    chosen = np.asarray(PROMPT_BODY_POINTS)
    points = skeleton.body[chosen]
    inside = ((points[:, 0] >= 0) & (points[:, 0] < track.width) & (points[:, 1] >= 0) & (points[:, 1] < track.height))
    points = points[(skeleton.body_scores[chosen] >= min_score) & inside & np.isfinite(points).all(axis=1)]
    if len(points) < min_points:
        return None
    box = None
    if use_box:
        x1, y1, x2, y2 = track.boxes[index]
        box = np.array([max(x1, 0.0), max(y1, 0.0), min(x2, track.width - 1.0), min(y2, track.height - 1.0)])
        if box[2] <= box[0] or box[3] <= box[1]:
            box = None
    return FramePrompt(points.astype(np.float64), box)


def chunk_ranges(count: int, size: int = OFFICIAL_CHUNK_FRAMES) -> list[range]:
    """Consecutive frame ranges of at most `size` frames covering [0, count)."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def key_frames(usable: list[bool], count: int = OFFICIAL_KEY_FRAMES) -> list[int]:
    """Chunk-local key frames: the first usable frame of each of `count` equal parts of the chunk (official spacing).

    A part without a usable frame gives no key frame; a chunk without any gives none (nothing to prompt).
    """
    n = len(usable)
    parts = max(1, min(count, n))
    keys = []
    for k in range(parts):
        first, stop = k * n // parts, (k + 1) * n // parts
        found = next((i for i in range(first, stop) if usable[i]), None)
        if found is not None:
            keys.append(found)
    return keys


def point_coverage(mask: np.ndarray, points: np.ndarray, radius: int = 2) -> float:
    """Fraction of the points lying on the mask (within `radius` pixels): how well a mask still holds the person."""
    if len(points) == 0:
        return 1.0
    h, w = mask.shape
    hits = 0
    for x, y in np.asarray(points):
        c, r = int(round(x)), int(round(y))
        if mask[max(r - radius, 0):min(r + radius + 1, h), max(c - radius, 0):min(c + radius + 1, w)].any():
            hits += 1
    return hits / len(points)
