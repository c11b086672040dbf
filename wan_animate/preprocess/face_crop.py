"""Face crops by the official recipe (utils.get_face_bboxes + cv2.resize to 512x512).

The box is the bounding box of the 68 face landmarks with its area scaled by 1.3 (aspect kept), widened equally
left and right, and extended three times as much upward as downward so the forehead and hair are in the crop.
The crop is resized to 512x512 without keeping its aspect, as the official code does (the face encoder was
trained on such crops). Boxes are kept as floats until the end so they can be smoothed over time.
"""
from __future__ import annotations

import cv2
import numpy as np

FACE_SIZE = 512
FACE_BOX_SCALE = 1.3
MIN_FACE_BOX = 2.0  # pixels: landmark boxes thinner than this are degenerate


def expand_face_box(box: np.ndarray, scale: float = FACE_BOX_SCALE) -> np.ndarray | None:
    """Official expansion of a tight face box (x1, y1, x2, y2) -> float box, unclamped; None if degenerate."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if not np.isfinite([x1, y1, x2, y2]).all() or w < MIN_FACE_BOX or h < MIN_FACE_BOX:
        return None
    area = w * h * scale
    new_w, new_h = np.sqrt(area * (w / h)), np.sqrt(area * (h / w))
    dw, dh = (new_w - w) / 2, (new_h - h) / 4
    return np.array([x1 - dw, y1 - 3 * dh, x2 + dw, y2 + dh], np.float64)


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """Tight (x1, y1, x2, y2) of the face landmarks (all 68, whatever their scores, as the official code)."""
    pts = np.asarray(landmarks, np.float64)
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def face_box(landmarks: np.ndarray, scale: float = FACE_BOX_SCALE) -> np.ndarray | None:
    """Official crop box (float, unclamped) from 68 face landmarks, or None when they collapse to a point/line."""
    return expand_face_box(landmark_box(landmarks), scale)


def clamp_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Clamp a float box to the frame and truncate to ints as the official code does; None if nothing is left."""
    x1 = int(max(box[0], 0))
    y1 = int(max(box[1], 0))
    x2 = int(min(box[2], width))
    y2 = int(min(box[3], height))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return x1, y1, x2, y2


def crop_face(frame: np.ndarray, box: tuple[int, int, int, int], size: int = FACE_SIZE) -> np.ndarray:
    """frame[y1:y2, x1:x2] resized to size x size (bilinear, aspect not kept)."""
    x1, y1, x2, y2 = box
    return cv2.resize(frame[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_LINEAR)


def fallback_box(width: int, height: int) -> np.ndarray:
    """Box used when no face was ever found: the centred square of the upper half-frame, so crops stay valid."""
    side = min(width, height) / 2
    cx = width / 2
    return np.array([cx - side / 2, 0.0, cx + side / 2, side], np.float64)
