"""ViTPose whole-body (133 keypoints) on person boxes, by the official Wan2.2-Animate recipe, batched over people.

Each box is widened to the model's 3:4 aspect, scaled by 1.25 and cut out of the frame at 256x192 (area outside the
frame is black), normalised with the ImageNet mean/std and run; the [P,133,64,48] heatmaps are DARK-decoded and
mapped back to frame pixels; the heatmap peak is the keypoint confidence.

Crop: one affine warp per box in mmpose's convention (frame point = centre + (crop pixel - crop size / 2) * scale),
which is exactly the inverse of the keypoint mapping. The official code cuts an integer-rounded window and resizes
it, which shifts its input by up to one frame pixel against that mapping; the warp has no such offset.

Channel order: the models are trained on RGB. The official pipeline feeds the pose model BGR frames by mistake
(Wan-Video/Wan2.2 issue #183: `Pose2d.load_images` swaps the RGB frames that `process_pipepline.py` passes). This
module feeds RGB; `channel_order="bgr"` reproduces the official behaviour for side-by-side comparisons.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from .heatmap_decode import decode_heatmaps, heatmap_to_image
from .onnx_session import OnnxModel
from .types import NUM_KEYPOINTS

POSE_SIZE = (256, 192)  # height, width
BOX_PADDING = 1.25
MIN_BOX_SIDE = 10  # the official code does not trust boxes narrower or shorter than this
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

ChannelOrder = Literal["rgb", "bgr"]


def crop_region(box: np.ndarray, input_size: tuple[int, int] = POSE_SIZE, padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Centre (x, y) and size (width, height) in frame pixels of the region cut out for a person box (x1, y1, x2, y2).

    The box is grown to the input's aspect (height/width = 256/192) around its centre, then scaled by `padding`.
    """
    aspect = input_size[0] / input_size[1]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    center = np.array([(x1 + x2) / 2, (y1 + y2) / 2], dtype=np.float64)
    height = max((x2 - x1) * aspect, y2 - y1)
    size = np.array([height / aspect, height], dtype=np.float64) * padding
    return center, size


def crop_person(frame: np.ndarray, center: np.ndarray, size: np.ndarray, input_size: tuple[int, int] = POSE_SIZE) -> np.ndarray:
    """The [h, w, 3] uint8 crop of `frame` for one region (bilinear, black outside the frame)."""
    height, width = input_size
    scale = size[0] / width  # frame pixels per crop pixel (same in y: the region has the input's aspect)
    to_crop = np.array(
        [[1 / scale, 0, width / 2 - center[0] / scale], [0, 1 / scale, height / 2 - center[1] / scale]],
        dtype=np.float64,
    )
    return cv2.warpAffine(
        frame, to_crop, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def normalise_crops(crops: np.ndarray, channel_order: ChannelOrder = "rgb") -> np.ndarray:
    """[P, h, w, 3] uint8 RGB crops -> [P, 3, h, w] float32 ImageNet-normalised model input."""
    if channel_order == "bgr":
        crops = crops[..., ::-1]
    scale = (1 / (255 * IMAGENET_STD)).astype(np.float32)[None, :, None, None]
    shift = (IMAGENET_MEAN / IMAGENET_STD).astype(np.float32)[None, :, None, None]
    out = np.empty((crops.shape[0], 3, *crops.shape[1:3]), dtype=np.float32)
    np.multiply(crops.transpose(0, 3, 1, 2), scale, out=out)
    out -= shift
    return out


def usable_box(box: np.ndarray) -> bool:
    return (box[2] - box[0]) >= MIN_BOX_SIDE and (box[3] - box[1]) >= MIN_BOX_SIDE


class WholeBodyPoseModel:
    """Runs the pose model on any number of (frame, box) pairs in batches and returns frame-pixel keypoints."""

    def __init__(self, model: OnnxModel, batch_size: int = 32, channel_order: ChannelOrder = "rgb"):
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
        self.model = model
        self.input_size = model.spatial_size(POSE_SIZE)
        self.batch_size = batch_size
        self.channel_order = channel_order

    def __call__(self, frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [P, K, 2] (frame pixels) and scores [P, K] for box p of frames[p]."""
        if len(frames) != len(boxes):
            raise ValueError(f"{len(frames)} frames but {len(boxes)} boxes")
        if not len(boxes):
            return np.zeros((0, NUM_KEYPOINTS, 2), np.float32), np.zeros((0, NUM_KEYPOINTS), np.float32)
        regions = [crop_region(box, self.input_size) for box in boxes]
        centers = np.stack([c for c, _ in regions])
        sizes = np.stack([s for _, s in regions])
        crops = np.stack([crop_person(f, c, s, self.input_size) for f, (c, s) in zip(frames, regions)])
        heatmaps = self.model.run(normalise_crops(crops, self.channel_order), self.batch_size)
        coords, scores = decode_heatmaps(heatmaps)
        return heatmap_to_image(coords, centers, sizes, heatmaps.shape[2:]), scores
