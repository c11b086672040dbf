"""Temporal smoothing of keypoints and face boxes: a One-Euro filter run forward and then backward.

The One-Euro filter (Casiez et al. 2012) is a low-pass whose cutoff rises with the signal's speed: still points are
smoothed hard (jitter goes), fast motion passes almost untouched. Run causally it still lags a little on fast
motion; preprocessing is offline, so the output is filtered a second time in reverse, which cancels that lag
(the same idea as a zero-phase filtfilt). Samples marked invalid (low-confidence keypoints, frames without a face)
pass through unchanged and do not disturb the filter's state; the time gap they leave is accounted for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroParams:
    """Cutoffs in Hz; beta in cutoff-Hz per (signal unit / second). Signals are normalised by a body/face size."""

    min_cutoff: float = 1.2
    beta: float = 1.2
    d_cutoff: float = 1.0

    @classmethod
    def from_strength(cls, strength: float) -> OneEuroParams:
        """0 < strength <= 1: a single knob from light (5 Hz floor) to strong (0.3 Hz floor) smoothing."""
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"smoothing strength must be in (0, 1], got {strength}")
        value = 5.0 * (0.3 / 5.0) ** strength
        return cls(min_cutoff=value, beta=value)


def _alpha(cutoff: np.ndarray, dt: np.ndarray) -> np.ndarray:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(signal: np.ndarray, fps: float, params: OneEuroParams, valid: np.ndarray | None = None) -> np.ndarray:
    """Causal One-Euro filter over axis 0 of a (T, ...) signal, each trailing element filtered independently."""
    x = np.asarray(signal, np.float64)
    shape = x.shape
    x = x.reshape(shape[0], -1)
    if valid is None:
        ok = np.ones_like(x, bool)
    else:
        v = np.asarray(valid, bool)
        ok = np.broadcast_to(v.reshape(shape[0], -1 if v.size == x.size else 1), x.shape)
    ok = ok & np.isfinite(x)
    out = x.copy()
    state = np.zeros(x.shape[1])
    deriv = np.zeros(x.shape[1])
    last_t = np.full(x.shape[1], np.nan)
    for t in range(x.shape[0]):
        m = ok[t]
        if not m.any():
            continue
        fresh = m & np.isnan(last_t)
        state[fresh], deriv[fresh], last_t[fresh] = x[t, fresh], 0.0, t
        upd = m & ~fresh
        if upd.any():
            dt = (t - last_t[upd]) / fps
            dx = (x[t, upd] - state[upd]) / dt
            deriv[upd] += _alpha(np.full(dx.shape, params.d_cutoff), dt) * (dx - deriv[upd])
            cutoff = params.min_cutoff + params.beta * np.abs(deriv[upd])
            state[upd] += _alpha(cutoff, dt) * (x[t, upd] - state[upd])
            last_t[upd] = t
        out[t, m] = state[m]
    return out.reshape(shape)


def smooth(signal: np.ndarray, fps: float, params: OneEuroParams, valid: np.ndarray | None = None) -> np.ndarray:
    """Zero-lag smoothing: One-Euro forward, then One-Euro over the reversed result."""
    forward = one_euro(signal, fps, params, valid)
    rev_valid = None if valid is None else np.asarray(valid)[::-1]
    return one_euro(forward[::-1], fps, params, rev_valid)[::-1].copy()


def smooth_keypoints(
    keypoints: np.ndarray, scores: np.ndarray, fps: float, params: OneEuroParams, scale: float,
    min_score: float = 0.3,
) -> np.ndarray:
    """Smooth (T, K, 2) pixel keypoints, normalised by `scale` pixels; points scored below min_score are left as is."""
    valid = np.repeat((np.asarray(scores) >= min_score)[..., None], 2, axis=-1)
    scale = max(float(scale), 1e-6)
    return smooth(np.asarray(keypoints, np.float64) / scale, fps, params, valid) * scale


def smooth_boxes(boxes: np.ndarray, fps: float, params: OneEuroParams, valid: np.ndarray | None = None) -> np.ndarray:
    """Smooth (T, 4) x1, y1, x2, y2 boxes as centre and size, normalised by the median box height."""
    boxes = np.asarray(boxes, np.float64)
    ok = np.ones(len(boxes), bool) if valid is None else np.asarray(valid, bool)
    ok = ok & np.isfinite(boxes).all(axis=1)
    if not ok.any():
        return boxes.copy()
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    scale = max(float(np.median(size[ok, 1])), 1e-6)
    cs = smooth(np.concatenate([centre, size], axis=1) / scale, fps, params, ok[:, None]) * scale
    out = np.concatenate([cs[:, :2] - cs[:, 2:] / 2, cs[:, :2] + cs[:, 2:] / 2], axis=1)
    out[~ok] = boxes[~ok]
    return out
