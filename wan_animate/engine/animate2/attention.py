"""Wan-Animate-2's in-context self-attention without a block mask.

Generation frame j attends every generation token plus the driving-video tokens of driving frame j - 1 (frame 0 is
the reference image's slot and sees no driving tokens). diffusers expresses this as a flex-attention BlockMask over
a packed [generation | driving] buffer, which needs torch.compile and runs on the flex backend only. Here the same
attention is built from plain (q, k, v) -> out kernels, so every attention kernel of the engine serves it:

- frame by frame: the keys/values of frame j are [generation ; driving frame j - 1] in one buffer whose generation
  part is written once per layer; only the hw-token tail is rewritten per frame (one kernel call per latent frame);
- merged (kernels that also return the log-sum-exp): one call over all generation keys plus one batched call of
  each frame against its driving frame, combined exactly through their log-sum-exps.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
LseKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def framewise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_ref: torch.Tensor, v_ref: torch.Tensor,
              hw: int, kernel: Kernel) -> torch.Tensor:
    """(B, F*hw, H, D) generation q/k/v, (B, (F-1)*hw, H, D) driving k/v -> (B, F*hw, H, D)."""
    b, s, h, d = q.shape
    frames = s // hw
    keys = k.new_empty(b, s + hw, h, d)
    values = v.new_empty(b, s + hw, h, d)
    keys[:, :s], values[:, :s] = k, v
    out = torch.empty_like(q)
    out[:, :hw] = kernel(q[:, :hw], k, v)
    for j in range(1, frames):
        keys[:, s:], values[:, s:] = k_ref[:, (j - 1) * hw:j * hw], v_ref[:, (j - 1) * hw:j * hw]
        out[:, j * hw:(j + 1) * hw] = kernel(q[:, j * hw:(j + 1) * hw], keys, values)
    return out


def merged(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_ref: torch.Tensor, v_ref: torch.Tensor,
           hw: int, kernel: LseKernel) -> torch.Tensor:
    """Same result as `framewise` from two kernel calls; `kernel` returns (out (B,S,H,D), lse (B,H,S) fp32)."""
    b, s, h, d = q.shape
    frames = s // hw
    out, lse = kernel(q, k, v)
    q_f = q[:, hw:].reshape(b, frames - 1, hw, h, d).flatten(0, 1)
    k_f = k_ref.reshape(b, frames - 1, hw, h, d).flatten(0, 1)
    v_f = v_ref.reshape(b, frames - 1, hw, h, d).flatten(0, 1)
    out_ref, lse_ref = kernel(q_f, k_f, v_f)
    out_ref = out_ref.reshape(b, (frames - 1) * hw, h, d)
    lse_ref = lse_ref.reshape(b, frames - 1, h, hw).transpose(1, 2).reshape(b, h, (frames - 1) * hw)
    lse_main = lse[:, :, hw:]
    total = torch.logaddexp(lse_main, lse_ref)
    w_main = torch.exp(lse_main - total).transpose(1, 2).unsqueeze(-1)
    w_ref = torch.exp(lse_ref - total).transpose(1, 2).unsqueeze(-1)
    out[:, hw:] = (out[:, hw:].float() * w_main + out_ref.float() * w_ref).to(out.dtype)  # in place: no copy of out
    return out


def sdpa_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's fused SDPA kernels that also return the log-sum-exp (flash on CPU; cuDNN or flash on CUDA)."""
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(qt, kt, vt)
    elif torch.backends.cudnn.is_available() and torch.cuda.get_device_capability(q.device)[0] >= 9:
        out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(qt, kt, vt, None, True)[:2]
    else:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(qt, kt, vt)[:2]
    b, h, s = qt.shape[:3]
    return out.transpose(1, 2), lse.float().reshape(b, h, s)
