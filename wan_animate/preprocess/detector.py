"""YOLOv10 person detection by the official Wan2.2-Animate recipe, for whole batches of frames.

Input: each RGB frame plainly resized (no letterbox) to the model size (640x640), divided by 255, NCHW float32.
Output rows x1, y1, x2, y2, score, class in model pixels ([N,300,6]; a YOLOv8-style [N,84,anchors] head is also
read, as the official code does). Rows with score >= 0.05 are scaled to the frame, truncated to integer x, y, w, h,
non-maximum-suppressed across classes at IoU 0.5 (OpenCV's NMSBoxes, as the official code) and class 0 (person)
with score > 0.05 is kept. Every person is returned; choosing whom to follow happens downstream.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .onnx_session import OnnxModel
from .types import PersonDetection

DETECTOR_SIZE = (640, 640)
SCORE_THRESHOLD = 0.05
NMS_IOU = 0.5
PERSON_CLASS = 0


def detector_input(frames: Sequence[np.ndarray], size: tuple[int, int] = DETECTOR_SIZE) -> np.ndarray:
    """[B, 3, h, w] float32 in [0, 1] from uint8 RGB frames (plain bilinear resize, as the official code)."""
    height, width = size
    batch = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        cv2.resize(frame, (width, height), dst=batch[i])
    out = np.empty((len(frames), 3, height, width), dtype=np.float32)
    np.multiply(batch.transpose(0, 3, 1, 2), np.float32(1 / 255), out=out)  # one pass: layout, type and scale
    return out


def _rows_from_yolov8(output: np.ndarray) -> np.ndarray:
    """[4+C, anchors] centre-size boxes with class scores -> [anchors, 6] xyxy, score, class rows."""
    rows = output.T
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    classes = rows[:, 4:]
    return np.stack(
        [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, classes.max(axis=1), classes.argmax(axis=1)], axis=1
    )


def decode_detections(
    output: np.ndarray,
    frame_size: tuple[int, int],
    input_size: tuple[int, int] = DETECTOR_SIZE,
    score_threshold: float = SCORE_THRESHOLD,
    iou_threshold: float = NMS_IOU,
    person_class: int = PERSON_CLASS,
) -> list[PersonDetection]:
    """People in one frame from the detector's output for it ([300, 6] rows or [4+C, anchors]).

    frame_size and input_size are (height, width). Boxes are in frame pixels, in NMS order (highest score first).
    """
    rows = np.asarray(output, dtype=np.float32)
    if rows.ndim != 2:
        raise ValueError(f"detector output for one frame must be 2-D, got shape {rows.shape}")
    if rows.shape[1] != 6:
        rows = _rows_from_yolov8(rows)
    rows = rows[rows[:, 4] >= score_threshold]
    if len(rows) == 0:
        return []
    x_factor = frame_size[1] / input_size[1]
    y_factor = frame_size[0] / input_size[0]
    x1, y1 = rows[:, 0] * x_factor, rows[:, 1] * y_factor
    x2, y2 = rows[:, 2] * x_factor, rows[:, 3] * y_factor
    xywh = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).astype(np.int32)
    scores = rows[:, 4]
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), score_threshold, iou_threshold)
    people = []
    for i in np.asarray(keep, dtype=np.int64).reshape(-1):
        if int(rows[i, 5]) != person_class or not scores[i] > score_threshold:
            continue
        x, y, w, h = xywh[i]
        box = np.array([x, y, x + w, y + h], dtype=np.float32)
        people.append(PersonDetection(box=box, score=float(scores[i])))
    return people


class PersonDetector:
    """Runs the detector on batches of frames and decodes the people in each."""

    def __init__(
        self,
        model: OnnxModel,
        score_threshold: float = SCORE_THRESHOLD,
        iou_threshold: float = NMS_IOU,
        batch_size: int = 16,
    ):
        self.model = model
        self.input_size = model.spatial_size(DETECTOR_SIZE)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.batch_size = batch_size

    def __call__(self, frames: Sequence[np.ndarray]) -> list[list[PersonDetection]]:
        if not len(frames):
            return []
        outputs = self.model.run(detector_input(frames, self.input_size), self.batch_size)
        return [
            decode_detections(out, frame.shape[:2], self.input_size, self.score_threshold, self.iou_threshold)
            for out, frame in zip(outputs, frames)
        ]
