"""Colour/brightness anchoring of segments, against the drift that builds up when each segment continues the last.

Each segment is conditioned on decoded frames of the previous one, so small colour and exposure errors compound
(washed-out or over-saturated late segments). Anchoring moves a whole segment's per-channel mean and spread to those
of an anchor (the reference image, or the first segment) before its frames are emitted and before its tail guides
the next segment — one affine map per segment, so it adds no flicker inside a segment.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ColorStats:
    mean: torch.Tensor  # (3,)
    std: torch.Tensor  # (3,)


def color_stats(pixels: torch.Tensor) -> ColorStats:
    """Statistics of (3, ...) pixels."""
    flat = pixels.reshape(3, -1).float()
    return ColorStats(flat.mean(dim=1), flat.std(dim=1))


def anchor_colors(pixels: torch.Tensor, target: ColorStats, strength: float = 1.0) -> torch.Tensor:
    """Map (3, T, H, W) pixels in [-1, 1] so their per-channel mean/std move `strength` of the way to `target`."""
    own = color_stats(pixels)
    shape = (3,) + (1,) * (pixels.dim() - 1)
    scale = (target.std / own.std.clamp_min(1e-4)).view(shape)
    matched = (pixels - own.mean.view(shape)) * scale + target.mean.view(shape)
    return (pixels + strength * (matched - pixels)).clamp(-1, 1)
