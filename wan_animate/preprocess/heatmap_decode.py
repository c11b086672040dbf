"""Unbiased (DARK) decoding of top-down pose heatmaps, vectorised over people and keypoints.

Same maths as the official preprocessing (mmpose `keypoints_from_heatmaps(unbiased=True)`): integer argmax of the raw
heatmap, its value as the confidence; then the heatmap is blurred with an 11x11 Gaussian (zero border),
log-transformed, and one Newton (Taylor) step from the argmax gives the sub-pixel peak
(Zhang et al., "Distribution-Aware Coordinate Representation for Human Pose Estimation", CVPR 2020). The official
code blurs every whole map and loops over keypoints in Python; this blurs only the patch around each peak and runs
all people and keypoints of a batch at once. One guard differs: the step is taken only at a true peak
(negative-definite Hessian) and limited to two heatmap pixels, where the official code would follow a degenerate
step far outside the image; on proper peaks the results are identical.
"""
from __future__ import annotations

import cv2
import numpy as np

DARK_KERNEL = 11
MAX_STEP = 2.0  # heatmap pixels; legitimate steps stay below ~1.5 even on noisy maps


def _blur_band(kernel: int, reach: int) -> np.ndarray:
    """[2*reach+1, 5] matrix applying the 1-D Gaussian of cv2.GaussianBlur (sigma from the kernel size) at 5 offsets."""
    g = cv2.getGaussianKernel(kernel, 0).ravel().astype(np.float32)
    band = np.zeros((2 * reach + 1, 5), np.float32)
    for j in range(5):
        band[j:j + kernel, j] = g
    return band


def _blurred_neighbourhoods(heatmaps: np.ndarray, n: np.ndarray, k: np.ndarray, x: np.ndarray, y: np.ndarray, kernel: int) -> np.ndarray:
    """Gaussian-blurred values (zero border) at offsets -2..2 around (x, y) of map (n, k): [M, 5, 5] as [dy, dx].

    Only these 5x5 values enter the Taylor step, so only the (kernel + 4)^2 patch around each peak is blurred
    (two small matrix products) instead of whole maps: the same numbers as blurring the full map, far cheaper.
    """
    _, maps, h, w = heatmaps.shape
    reach = (kernel - 1) // 2 + 2
    offsets = np.arange(-reach, reach + 1)
    rows, cols = y[:, None] + offsets, x[:, None] + offsets  # [M, P]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    first = (n * maps + k) * (h * w)
    index = first[:, None, None] + np.clip(rows, 0, h - 1)[:, :, None] * w + np.clip(cols, 0, w - 1)[:, None, :]
    patch = np.take(heatmaps.reshape(-1), index)
    patch[~inside] = 0.0
    band = _blur_band(kernel, reach)
    return band.T @ patch @ band


def decode_heatmaps(heatmaps: np.ndarray, kernel: int = DARK_KERNEL) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel peaks of [N, K, h, w] heatmaps: (coords [N, K, 2] as x, y in heatmap pixels, scores [N, K]).

    Maps whose maximum is not positive give (-1, -1) and their (non-positive) maximum as the score, like mmpose.
    (mmpose also rescales each blurred map to its original maximum; a constant factor cancels out of the log
    derivatives, so it is left out.)
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

    # Taylor step needs two pixels of context on each side (second differences use a step of 2).
    inner = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2) & (scores > 0)
    ni, ki = np.nonzero(inner)
    if len(ni):
        x, y = px[ni, ki], py[ni, ki]
        logs = np.log(np.maximum(_blurred_neighbourhoods(heatmaps, ni, ki, x, y, kernel), 1e-10)).astype(np.float64)

        def at(dy: int, dx: int) -> np.ndarray:
            return logs[:, dy + 2, dx + 2]

        centre = at(0, 0)
        dx = 0.5 * (at(0, 1) - at(0, -1))
        dy = 0.5 * (at(1, 0) - at(-1, 0))
        dxx = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
        dyy = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
        dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
        det = dxx * dyy - dxy**2
        # A real peak has a negative-definite Hessian; elsewhere (flat or noisy maps) the Newton step is meaningless
        # and mmpose can throw the point thousands of pixels away; a genuine step stays well within MAX_STEP.
        peak = (det > 0) & (dxx < 0)
        safe = np.where(peak, det, 1.0)
        # offset = -H^-1 g with H = [[dxx, dxy], [dxy, dyy]]
        off_x = np.clip(-(dyy * dx - dxy * dy) / safe, -MAX_STEP, MAX_STEP)
        off_y = np.clip(-(-dxy * dx + dxx * dy) / safe, -MAX_STEP, MAX_STEP)
        coords[ni, ki, 0] += np.where(peak, off_x, 0.0).astype(np.float32)
        coords[ni, ki, 1] += np.where(peak, off_y, 0.0).astype(np.float32)
    return coords, scores


def heatmap_to_image(coords: np.ndarray, centers: np.ndarray, sizes: np.ndarray, heatmap_size: tuple[int, int]) -> np.ndarray:
    """Map [N, K, 2] heatmap coordinates to image pixels, given each crop's centre and (width, height) in pixels.

    mmpose's non-UDP convention, as the models were trained: heatmap pixel i sits at crop offset i * size / w.
    """
    h, w = heatmap_size
    scale = (sizes / np.array([w, h], dtype=np.float64))[:, None, :]
    origin = (centers - 0.5 * sizes)[:, None, :]
    return (coords * scale + origin).astype(np.float32)
