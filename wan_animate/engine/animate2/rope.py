"""Rotary tables of Wan-Animate-2's two token streams, as (cos, sin) for `accel.processors.apply_rotary`.

The generation tokens sit on the (t, h, w) grid from 0. The driving-video ("reference") tokens sit on their own
strip of rotary space: time starts at `refer_offset_t` (1, so driving latent frame j lines up with generation frame
j + 1, past the reference image's slot), width at `refer_offset_w` (-1 = the grid width, i.e. right of the
generation grid). Same frequencies as diffusers' `rope_params` (head dim split t : h : w = d - 4(d//6) : 2(d//6) :
2(d//6), theta 10000), computed in float64 and rounded to float32 once per segment.
"""
from __future__ import annotations

import torch

THETA = 10000.0


def _axis_angles(positions: torch.Tensor, dim: int) -> torch.Tensor:
    inv = 1.0 / torch.pow(THETA, torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    return torch.outer(positions.to(torch.float64), inv)


def rotary_tables(head_dim: int, grid: tuple[int, int, int], offsets: tuple[int, int, int] = (0, 0, 0),
                  time_stride: int = 1, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (1, f*h*w, 1, head_dim) with every angle repeated for its channel pair."""
    frames, height, width = grid
    d_hw = 2 * (head_dim // 6)
    d_t = head_dim - 2 * d_hw
    t = _axis_angles(torch.arange(frames) * time_stride + offsets[0], d_t)
    h = _axis_angles(torch.arange(height) + offsets[1], d_hw)
    w = _axis_angles(torch.arange(width) + offsets[2], d_hw)
    angles = torch.cat([
        t.view(frames, 1, 1, -1).expand(frames, height, width, -1),
        h.view(1, height, 1, -1).expand(frames, height, width, -1),
        w.view(1, 1, width, -1).expand(frames, height, width, -1),
    ], dim=-1).reshape(1, frames * height * width, 1, -1).repeat_interleave(2, dim=-1)
    return angles.cos().float().to(device), angles.sin().float().to(device)


def reference_offsets(config, grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """The driving stream's rotary offsets from the model config; -1 means "the driving grid's size on that axis"."""
    offsets = (config.refer_offset_t, config.refer_offset_h, config.refer_offset_w)
    return tuple(o if o >= 0 else grid[axis] for axis, o in enumerate(offsets))
