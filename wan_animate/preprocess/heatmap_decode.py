"""Unbiased (DARK) decoding of top-down pose heatmaps, vectorised over people and keypoints.

Same maths as the official preprocessing (mmpose `keypoints_from_heatmaps(unbiased=True)`): integer argmax of the raw
heatmap, its value as the confidence; then the heatmap is blurred with an 11x11 Gaussian (zero border, rescaled to
keep its maximum), log-transformed, and one Newton (Taylor) step from the argmax gives the sub-pixel peak
(Zhang et al., "Distribution-Aware Coordinate Representation for Human Pose Estimation", CVPR 2020). The official
code loops over every keypoint in Python; this runs all people and keypoints of a batch at once.
"""
from __future__ import annotations

import cv2
import numpy as np

DARK_KERNEL = 11


def blur_heatmaps(heatmaps: np.ndarray, kernel: int = DARK_KERNEL) -> np.ndarray:
    """Gaussian-blur every [h, w] map with a zero border, rescaled so each keeps its original maximum."""
    n, k, h, w = heatmaps.shape
    border = (kernel - 1) // 2
    # One 2-D image with every map in its own zero-padded cell: one OpenCV call, identical to blurring each map
    # padded by `border` zeros (the kernel never reaches the next cell).
    cells = np.zeros((n * k, h + 2 * border, w + 2 * border), dtype=np.float32)
    cells[:, border:border + h, border:border + w] = heatmaps.reshape(n * k, h, w)
    mosaic = cv2.GaussianBlur(cells.reshape(-1, w + 2 * border), (kernel, kernel), 0)
    blurred = mosaic.reshape(n * k, h + 2 * border, w + 2 * border)[:, border:border + h, border:border + w]
    blurred = blurred.reshape(n, k, h, w)
    original_max = heatmaps.reshape(n, k, -1).max(axis=2)
    blurred_max = blurred.reshape(n, k, -1).max(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(blurred_max > 0, original_max / blurred_max, 1.0).astype(np.float32)
    return blurred * ratio[:, :, None, None]


def decode_heatmaps(heatmaps: np.ndarray, kernel: int = DARK_KERNEL) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel peaks of [N, K, h, w] heatmaps: (coords [N, K, 2] as x, y in heatmap pixels, scores [N, K]).

    Maps whose maximum is not positive give (-1, -1) and their (non-positive) maximum as the score, like mmpose.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be [N, K, h, w], got shape {heatmaps.shape}")
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    index = flat.argmax(axis=2)
    scores = np.take_along_axis(flat, index[:, :, None], axis=2)[:, :, 0]
    px, py = index % w, index // w
    coords = np.stack([px, py], axis=-1).astype(np.float32)
    coords[scores <= 0] = -1.0

    log_maps = np.log(np.maximum(blur_heatmaps(heatmaps, kernel), 1e-10))
    # Taylor step needs two pixels of context on each side (second differences use a step of 2).
    inner = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2) & (scores > 0)
    ni, ki = np.nonzero(inner)
    if len(ni):
        x, y = px[ni, ki], py[ni, ki]

        def at(dy: int, dx: int) -> np.ndarray:
            return log_maps[ni, ki, y + dy, x + dx].astype(np.float64)

        centre = at(0, 0)
        dx = 0.5 * (at(0, 1) - at(0, -1))
        dy = 0.5 * (at(1, 0) - at(-1, 0))
        dxx = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
        dyy = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
        dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
        det = dxx * dyy - dxy**2
        ok = det != 0
        safe = np.where(ok, det, 1.0)
        # offset = -H^-1 g with H = [[dxx, dxy], [dxy, dyy]]
        off_x = -(dyy * dx - dxy * dy) / safe
        off_y = -(-dxy * dx + dxx * dy) / safe
        coords[ni, ki, 0] += np.where(ok, off_x, 0.0).astype(np.float32)
        coords[ni, ki, 1] += np.where(ok, off_y, 0.0).astype(np.float32)
    return coords, scores


def heatmap_to_image(coords: np.ndarray, centers: np.ndarray, sizes: np.ndarray, heatmap_size: tuple[int, int]) -> np.ndarray:
    """Map [N, K, 2] heatmap coordinates to image pixels, given each crop's centre and (width, height) in pixels.

    mmpose's non-UDP convention, as the models were trained: heatmap pixel i sits at crop offset i * size / w.
    """
    h, w = heatmap_size
    scale = (sizes / np.array([w, h], dtype=np.float64))[:, None, :]
    origin = (centers - 0.5 * sizes)[:, None, :]
    return (coords * scale + origin).astype(np.float32)
