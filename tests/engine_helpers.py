"""Shared test material for the engine tests: random driving signals of a given size."""
from __future__ import annotations

import numpy as np

from wan_animate.engine import AnimateInputs


def driving(n: int, height: int, width: int, face: int = 16, seed: int = 0) -> AnimateInputs:
    """Random reference, pose, face crops, background and a 0/255 character mask for `n` frames."""
    rng = np.random.default_rng(seed)
    return AnimateInputs(
        reference=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        pose=rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8),
        face=rng.integers(0, 256, (n, face, face, 3), dtype=np.uint8),
        background=rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8),
        mask=(rng.random((n, height, width)) > 0.5).astype(np.uint8) * 255,
    )
