"""Data passed between the detection/pose models and the rest of preprocessing.

Coordinates are float pixels of the original frame (x right, y down). Keypoints follow COCO-WholeBody's 133
points: 0-16 body, 17-22 feet, 23-90 face (68), 91-111 left hand, 112-132 right hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NUM_KEYPOINTS = 133
BODY = slice(0, 17)
FEET = slice(17, 23)
FACE = slice(23, 91)
LEFT_HAND = slice(91, 112)
RIGHT_HAND = slice(112, 133)


@dataclass
class PersonDetection:
    """One person box from the detector: xyxy in frame pixels and its score."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2
    score: float

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))


@dataclass
class PersonPose:
    """Whole-body pose of one detected person."""

    detection: PersonDetection
    keypoints: np.ndarray  # (133, 2) float32, frame pixels
    scores: np.ndarray  # (133,) float32, heatmap peak values in [0, 1]


@dataclass
class FramePoses:
    """Everything found in one frame, people in detector order (the caller chooses whom to follow)."""

    index: int
    width: int
    height: int
    people: list[PersonPose] = field(default_factory=list)
