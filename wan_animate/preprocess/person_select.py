"""Whom to follow when a frame has several people, and what to do with frames where nobody was found.

Strategies: "largest" box in each frame (the official choice), "index" (the N-th person from the left in each
frame), and "track" (pick the N-th person from the left at a start frame, then follow that person forwards and
backwards by box overlap and body-keypoint agreement, so a second person walking past does not steal the pose).
Frames without the chosen person are filled by linear interpolation between the nearest frames that have them, or
hold the nearest one at the ends; how many of each is reported. No person anywhere is an error.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import NoPersonError
from .types import BODY, NUM_KEYPOINTS, FramePoses, PersonPose

STRATEGIES = ("largest", "index", "track")
FILL_MODES = ("interpolate", "hold")
MIN_MATCH = 0.25  # track: least similarity (IoU or keypoint agreement) to accept a candidate
KEYPOINT_SCORE = 0.3


@dataclass
class PersonTrack:
    """The chosen person in every frame, gaps filled. Arrays are per frame; `found` marks real detections."""

    keypoints: np.ndarray  # (N, 133, 2) float64 frame pixels
    scores: np.ndarray  # (N, 133)
    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2
    found: np.ndarray  # (N,) bool
    interpolated: np.ndarray  # (N,) bool
    held: np.ndarray  # (N,) bool
    width: int
    height: int
    missing_frames: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.found)


def left_to_right(people: Sequence[PersonPose]) -> list[PersonPose]:
    return sorted(people, key=lambda p: float(p.detection.box[0] + p.detection.box[2]))


def largest(people: Sequence[PersonPose]) -> PersonPose | None:
    return max(people, key=lambda p: p.detection.area, default=None)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def keypoint_agreement(a: PersonPose, b: PersonPose) -> float:
    """OKS-like similarity of the confident body keypoints two poses share (0 when they share none)."""
    common = (a.scores[BODY] >= KEYPOINT_SCORE) & (b.scores[BODY] >= KEYPOINT_SCORE)
    if not common.any():
        return 0.0
    box = a.detection.box
    sigma = 0.1 * max(np.hypot(box[2] - box[0], box[3] - box[1]), 1.0)
    d2 = ((a.keypoints[BODY][common] - b.keypoints[BODY][common]) ** 2).sum(axis=1)
    return float(np.exp(-d2 / (2 * sigma**2)).mean())


def _similarity(last: PersonPose, candidate: PersonPose) -> float:
    return max(box_iou(last.detection.box, candidate.detection.box), keypoint_agreement(last, candidate))


def _follow(frames: Sequence[FramePoses], order: range, start: PersonPose, chosen: list) -> None:
    last = start
    for i in order:
        best = max(frames[i].people, key=lambda p: _similarity(last, p), default=None)
        if best is not None and _similarity(last, best) >= MIN_MATCH:
            chosen[i] = last = best


def choose(frames: Sequence[FramePoses], strategy: str = "largest", index: int = 0, start_frame: int = 0) -> list[PersonPose | None]:
    """The chosen person of every frame (None where not found) by one of STRATEGIES."""
    if strategy not in STRATEGIES:
        raise ValueError(f"person strategy must be one of {STRATEGIES}, got {strategy!r}")
    if index < 0:
        raise ValueError(f"person index must be >= 0, got {index}")
    if strategy == "largest":
        return [largest(f.people) for f in frames]
    if strategy == "index":
        return [left_to_right(f.people)[index] if len(f.people) > index else None for f in frames]
    if not 0 <= start_frame < max(len(frames), 1):
        raise ValueError(f"track start frame {start_frame} is outside the video's {len(frames)} frames")
    chosen: list[PersonPose | None] = [None] * len(frames)
    first = next((i for i in range(start_frame, len(frames)) if len(frames[i].people) > index), None)
    if first is None:
        _raise_no_person(frames, f" with at least {index + 1} people from frame {start_frame} on (person index {index})")
    chosen[first] = left_to_right(frames[first].people)[index]
    _follow(frames, range(first + 1, len(frames)), chosen[first], chosen)
    _follow(frames, range(first - 1, -1, -1), chosen[first], chosen)
    return chosen


def _raise_no_person(frames: Sequence[FramePoses], detail: str = "") -> None:
    raise NoPersonError(
        f"No person found in any of the {len(frames)} frames of the driving video{detail}. "
        "Use a video where the person is clearly visible (whole body or upper body), or check the detector model."
    )


def fill_gaps(chosen: Sequence[PersonPose | None], width: int, height: int, mode: str = "interpolate") -> PersonTrack:
    """Arrays for the chosen person with missing frames interpolated (or held) and counted."""
    if mode not in FILL_MODES:
        raise ValueError(f"fill mode must be one of {FILL_MODES}, got {mode!r}")
    n = len(chosen)
    found = np.array([p is not None for p in chosen], bool)
    if not found.any():
        _raise_no_person([FramePoses(i, width, height) for i in range(n)])
    kps = np.zeros((n, NUM_KEYPOINTS, 2))
    scores = np.zeros((n, NUM_KEYPOINTS))
    boxes = np.zeros((n, 4))
    for i, p in enumerate(chosen):
        if p is not None:
            kps[i], scores[i], boxes[i] = p.keypoints, p.scores, p.detection.box
    known = np.flatnonzero(found)
    interpolated = np.zeros(n, bool)
    held = np.zeros(n, bool)
    for i in np.flatnonzero(~found):
        after = known[np.searchsorted(known, i)] if i < known[-1] else None
        before = known[np.searchsorted(known, i) - 1] if i > known[0] else None
        if before is not None and after is not None and mode == "interpolate":
            t = (i - before) / (after - before)
            kps[i] = kps[before] * (1 - t) + kps[after] * t
            boxes[i] = boxes[before] * (1 - t) + boxes[after] * t
            scores[i] = np.minimum(scores[before], scores[after])
            interpolated[i] = True
        else:
            src = before if before is not None else after
            kps[i], scores[i], boxes[i] = kps[src], scores[src], boxes[src]
            held[i] = True
    return PersonTrack(kps, scores, boxes, found, interpolated, held, int(width), int(height),
                       missing_frames=[int(i) for i in np.flatnonzero(~found)])
