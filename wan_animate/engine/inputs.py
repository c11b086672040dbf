"""What the engine animates: a reference image and the preprocessed driving signals, as frame sequences.

A frame sequence is anything with `len()` and integer indexing that yields one frame as a numpy array: a numpy
array (T, H, W, C), a list of arrays, a memory map, or a lazy reader. Only the frames of the segment being generated
are read, so a 1000-frame video never has to be in memory at once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..modes import MODES
from .segments import SegmentPlan, segment_indices

FrameSequence = Sequence[np.ndarray] | np.ndarray


def check_replace_signals(mode: str, has_background: bool, has_mask: bool) -> None:
    """Replace mode puts the character into the driving video: it needs that video's background and character mask."""
    if mode == "replace" and not (has_background and has_mask):
        missing = ", ".join(name for name, given in (("background", has_background), ("character mask", has_mask))
                            if not given)
        raise ValueError(f"replace mode needs the driving video's background and character mask (from preprocessing in "
                         f"replace mode); missing: {missing}. Give both, or use animate mode.")


@dataclass
class AnimateInputs:
    """reference: (H, W, 3) uint8 RGB character image (letterboxed to the pose size if it differs).
    pose: skeleton frames (H, W, 3) uint8; the output has their size and count.
    face: face crops (S, S, 3) uint8, S = the motion encoder size (512; other sizes are resized).
    background, mask (replace mode): driving frames with the person removed (H, W, 3) uint8, and the character
    mask (H, W) or (H, W, C) in [0, 1] float / bool or 0..255 uint8 (1 = the character to replace).
    """

    reference: np.ndarray
    pose: Any
    face: Any
    background: Any = None
    mask: Any = None

    def __len__(self) -> int:
        return len(self.pose)

    @property
    def size(self) -> tuple[int, int]:
        height, width = np.asarray(self.pose[0]).shape[:2]
        return height, width

    def check(self, mode: str) -> None:
        """Raise ValueError naming the input at fault and what to do."""
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: choose 'animate' (move the reference) or 'replace' (put it in the video).")
        reference = np.asarray(self.reference)
        if reference.ndim != 3 or reference.shape[2] != 3 or reference.dtype != np.uint8:
            raise ValueError(f"reference: expected an (H, W, 3) uint8 RGB image, got {reference.dtype} {reference.shape}.")
        if len(self.pose) == 0:
            raise ValueError("pose: the driving video has no frames.")
        height, width = self.size
        if height % 16 or width % 16:
            raise ValueError(
                f"pose frames are {width}x{height}: width and height must be multiples of 16 (VAE 8x and patch 2x). "
                f"Resize the driving video to e.g. {width // 16 * 16}x{height // 16 * 16} before preprocessing "
                "(the preprocessing picks such a size by itself)."
            )
        signals = {"pose": self.pose, "face": self.face}
        check_replace_signals(mode, self.background is not None, self.mask is not None)
        if mode == "replace":
            signals.update(background=self.background, mask=self.mask)
        lengths = {name: len(frames) for name, frames in signals.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{k} {v}" for k, v in lengths.items())
            raise ValueError(
                f"The driving signals differ in length ({listed} frames); they must come from the same video. "
                "Re-run preprocessing, or cut them all to the shortest."
            )
        for name in ("background", "mask") if mode == "replace" else ():
            shape = np.asarray(signals[name][0]).shape[:2]
            if shape != (height, width):
                raise ValueError(f"{name} frames are {shape[1]}x{shape[0]} but pose frames are {width}x{height}; they must match.")
        face = np.asarray(self.face[0])
        if face.ndim != 3 or face.shape[2] != 3:
            raise ValueError(f"face: expected (S, S, 3) RGB crops, got {face.shape}.")


def gather(frames: FrameSequence, plan: SegmentPlan, index: int) -> np.ndarray:
    """The frames of segment `index` (ping-pong padded past the end), stacked."""
    return np.stack([np.asarray(frames[i]) for i in segment_indices(plan, index, len(frames))])


def gather_face(frames: FrameSequence, plan: SegmentPlan, index: int, size: int) -> np.ndarray:
    crops = gather(frames, plan, index)
    if crops.shape[1:3] == (size, size):
        return crops
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])


def mask_scale(frames: FrameSequence) -> float:
    """What integer mask values are divided by: 1 for 0/1 labels, 255 for 0..255 masks (official: / 255)."""
    first = np.asarray(frames[0])
    if not np.issubdtype(first.dtype, np.integer) or first.dtype == np.bool_:
        return 1.0
    peak = int(frames.max()) if isinstance(frames, np.ndarray) else max(int(np.asarray(frames[i]).max()) for i in range(len(frames)))
    return 1.0 if peak <= 1 else 255.0


def gather_mask(frames: FrameSequence, plan: SegmentPlan, index: int, scale: float) -> np.ndarray:
    """Character mask frames of segment `index` as float32 (T, H, W) in [0, 1] (channel 0 of colour masks)."""
    masks = gather(frames, plan, index)
    if masks.ndim == 4:
        masks = masks[..., 0]
    return masks.astype(np.float32) / scale
