"""Replacement mode: the character mask of each frame and the background video.

The official pipeline segments the person with SAM2, dilates the mask (7x7 kernel, 3 iterations) and then
`get_aug_mask` fills the mask's grid cells (with its defaults w_len = h_len = 1: the whole bounding box of the
dilated mask). So the official default mask is a filled rectangle around the person, grown by 9 pixels. Here the
raw mask comes from SAM2/SAM3 prompted by the pose (segmenter.py), from an external mask sequence of any segmenter,
or, with neither, from the person box united with the confident keypoints (hands often reach outside the box); each
then gets the same dilation and blockification.
The background is frame * (1 - mask).
"""
from __future__ import annotations

import cv2
import numpy as np

from .errors import MaskInputError

DILATION_KERNEL = 7
DILATION_ITERATIONS = 3
GRID_W = 1
GRID_H = 1
KEYPOINT_SCORE = 0.3


def person_region(height: int, width: int, box: np.ndarray, keypoints: np.ndarray | None = None,
                  scores: np.ndarray | None = None, min_score: float = KEYPOINT_SCORE) -> np.ndarray:
    """(H, W) uint8 0/1 mask of the person box united with the bounding box of the confident keypoints."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if keypoints is not None and scores is not None:
        pts = np.asarray(keypoints)[(np.asarray(scores) >= min_score) & np.isfinite(keypoints).all(axis=1)]
        if len(pts):
            x1, y1 = min(x1, pts[:, 0].min()), min(y1, pts[:, 1].min())
            x2, y2 = max(x2, pts[:, 0].max()), max(y2, pts[:, 1].max())
    mask = np.zeros((height, width), np.uint8)
    c1, r1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
    c2, r2 = min(int(np.floor(x2)) + 1, width), min(int(np.floor(y2)) + 1, height)  # pixels holding x2, y2 included
    if c2 > c1 and r2 > r1:
        mask[r1:r2, c1:c2] = 1
    return mask


def dilate(mask: np.ndarray, kernel: int = DILATION_KERNEL, iterations: int = DILATION_ITERATIONS) -> np.ndarray:
    """Official get_mask_body_img dilation (a kernel x kernel square, `iterations` times)."""
    if iterations <= 0 or kernel <= 1:
        return mask.astype(np.uint8)
    return cv2.dilate(mask.astype(np.uint8), np.ones((kernel, kernel), np.uint8), iterations=iterations)


def blockify(mask: np.ndarray, grid_w: int = GRID_W, grid_h: int = GRID_H) -> np.ndarray:
    """Official get_aug_mask: split the mask's bounding box into grid_w x grid_h cells, fill every touched cell.

    As in the official code the cells span [min, max) of the mask's pixel coordinates. An empty mask stays empty
    (the official code crashes on it) and cells are at least one pixel wide.
    """
    out = mask.astype(np.uint8).copy()
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    if len(rows) == 0:
        return out
    x0, x1, y0, y1 = int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])
    step_w = max(int((x1 - x0) / grid_w), 1)
    step_h = max(int((y1 - y0) / grid_h), 1)
    for cx in range(x0, x1, step_w):
        c_end = min(cx + step_w, x1)
        for cy in range(y0, y1, step_h):
            r_end = min(cy + step_h, y1)
            if out[cy:r_end, cx:c_end].any():
                out[cy:r_end, cx:c_end] = 1
    return out


def refine(mask: np.ndarray, kernel: int = DILATION_KERNEL, iterations: int = DILATION_ITERATIONS,
           grid_w: int = GRID_W, grid_h: int = GRID_H) -> np.ndarray:
    """Official post-processing: dilate then blockify; with iterations == 0 the mask is used as it is."""
    if iterations <= 0:
        return mask.astype(np.uint8)
    return blockify(dilate(mask, kernel, iterations), grid_w, grid_h)


def background(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """frame * (1 - mask): the driving frame with the character blacked out."""
    keep = (np.asarray(mask) == 0).view(np.uint8)
    return cv2.bitwise_and(frame, frame, mask=keep)


def fit_external_mask(mask: np.ndarray, height: int, width: int, where: str = "mask") -> np.ndarray:
    """One external mask frame -> (height, width) uint8 0/1, letterboxed the way the driving frames were.

    Accepts (h, w) or (h, w, 1|3|4) arrays: integer 0/1 or 0-255, bool or float 0-1. A mask of another aspect ratio than
    (width, height) is refused, except that a mask made on the original frames is letterboxed like them.
    """
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[-1] in (1, 3, 4):
        m = m[..., 0]
    if m.ndim != 2 or min(m.shape) < 1:
        raise MaskInputError(
            f"{where}: expected a 2-D mask (or an image with 1, 3 or 4 channels), got shape {np.shape(mask)}."
        )
    if m.dtype == np.bool_:
        binary = m
    elif np.issubdtype(m.dtype, np.integer):
        binary = m > 0 if m.max() <= 1 else m > 127  # 0/1 labels or 0-255 images
    else:
        binary = m > 0.5
    binary = binary.astype(np.uint8)
    if binary.shape == (height, width):
        return binary
    from .resolution import letterbox

    return letterbox(binary, height, width, cv2.INTER_NEAREST)


def check_mask_aspect(mask_hw: tuple[int, int], frame_hw: tuple[int, int], work_hw: tuple[int, int],
                      where: str = "mask") -> None:
    """Refuse a mask sequence whose size fits neither the original driving frames nor the working size."""
    def aspect(hw: tuple[int, int]) -> float:
        return hw[1] / hw[0]

    if mask_hw == work_hw:
        return
    if abs(aspect(mask_hw) - aspect(frame_hw)) <= 0.01 * aspect(frame_hw):
        return
    raise MaskInputError(
        f"{where} is {mask_hw[1]}x{mask_hw[0]} but the driving frames are {frame_hw[1]}x{frame_hw[0]} "
        f"(working size {work_hw[1]}x{work_hw[0]}): another aspect ratio. Give masks made from the same video."
    )
