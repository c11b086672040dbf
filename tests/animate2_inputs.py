"""Inputs of the Wan-Animate-2 engine tests: random clips and the reference image they share."""
from __future__ import annotations

import numpy as np


def clip(n: int, seed: int = 0, size=(40, 56)) -> np.ndarray:
    """`n` random RGB frames (uint8) of `size` (height, width)."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, *size, 3)) * 255).astype(np.uint8)


REFERENCE = clip(1, seed=9, size=(48, 40))[0]  # portrait, unlike the landscape clips: the framing letterboxes
