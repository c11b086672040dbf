"""Self-attention through FlashAttention-3's fp8 forward kernel (Hopper), when it is installed.

FlashAttention-3 (`flash_attn_interface`, built from the hopper/ folder of Dao-AILab/flash-attention) overlaps
softmax with the tensor-core matmuls through warp specialisation, which the cuDNN and Triton kernels here do not.
It takes e4m3 Q/K/V with one descale per (batch, head) and writes bf16. The operands are smoothed and
quantised per head (attention_quant); V's mean is added back to the output.
"""
from __future__ import annotations

import torch

from .attention_quant import cuda_index, probe, quantize, smooth

try:
    import flash_attn_interface
except ImportError:  # an optional, separately built package (scripts/build_fa3.sh)
    flash_attn_interface = None
_probe: dict[int, str | None] = {}


def unavailable_reason(device=None) -> str | None:
    """Why FlashAttention-3's fp8 kernel cannot run on `device` (None when it can)."""
    if flash_attn_interface is None:
        return "FlashAttention-3 is not installed (bash scripts/build_fa3.sh builds and installs it)"
    index, reason = cuda_index(device)
    if reason:
        return reason
    if torch.cuda.get_device_capability(index)[0] != 9:
        return "FlashAttention-3 runs on Hopper GPUs (compute capability 9.x) only"
    # builds may leave out fp8 or head dim 128: one tiny call tells
    return probe(fa3_fp8_attention, torch.device("cuda", index), _probe, "this FlashAttention-3 build cannot run fp8 head-dim-128 attention")


def available(device=None) -> bool:
    return unavailable_reason(device) is None


def fa3_fp8_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v for (B, S, H, D) bf16/fp16 CUDA tensors, computed by FlashAttention-3 in fp8."""
    if flash_attn_interface is None:
        raise RuntimeError(unavailable_reason())
    q8, dq = quantize(query, per_head=True)
    k8, dk = quantize(smooth(key)[0], per_head=True)
    v_smooth, v_mean = smooth(value)
    v8, dv = quantize(v_smooth, per_head=True)
    out = flash_attn_interface.flash_attn_func(q8, k8, v8, softmax_scale=scale, causal=False,
                                               q_descale=dq, k_descale=dk, v_descale=dv)
    out = out[0] if isinstance(out, tuple) else out
    return (out.float() + v_mean).to(query.dtype)
