"""Attention with fp8 tensor cores (Triton): Q·K^T and P·V in e4m3 with fp32 softmax and accumulation.

Hopper runs e4m3 matrix products at twice the bf16 rate. Self-attention is ~70% of a Wan step's FLOPs at 720p,
so it is where fp8 pays most. Accuracy measures (SageAttention-style, all exact in real arithmetic):
- K is "smoothed": its mean over the tokens is subtracted per (batch, head, channel). That shifts every score of a
  query by the same amount, which softmax ignores, and removes the large shared component that would otherwise
  eat the fp8 range.
- Q and K get one scale per block of 128 tokens per head (amax / 448), the softmax scale and log2(e) folded into Q's.
- V gets one scale per (batch, head, channel); P (in [0, 1]) is cast to e4m3 as is.
- Each block's P·V product starts from a fresh accumulator and is added in fp32 (Hopper's fp8 MMA accumulates
  with reduced precision; chaining it over hundreds of blocks would lose bits).
Inputs are (B, S, H, D) as diffusers' attention processors pass them; D must be 64 or 128.
"""
from __future__ import annotations

import math

import torch

from wan_loader.dtypes import E4M3, E4M3_MAX

from .attention_quant import cuda_index, heads_first_padded

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU-only installs; `available()` says so
    triton = None

BLOCK = 128  # token block of the scales = BLOCK_M = BLOCK_N of the kernel
FAST_EXP = False  # True: exponentials through ex2.approx.f16x2 (measured 10% slower on an H100: the MMA, not MUFU, bounds)


def available(device=None) -> bool:
    """Triton present and a GPU with fp8 tensor cores (compute capability >= 8.9)."""
    index, reason = cuda_index(device)
    return triton is not None and reason is None and torch.cuda.get_device_capability(index) >= (8, 9)


def _block_quant(x: torch.Tensor, extra_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, S, D) padded -> e4m3 values and fp32 scales (B, H, S / BLOCK), one per block of tokens."""
    b, h, s, d = x.shape
    blocks = x.float().reshape(b, h, s // BLOCK, BLOCK, d)
    scale = (blocks.abs().amax(dim=(3, 4)) / E4M3_MAX).clamp(min=1e-12)
    q = (blocks / scale[..., None, None]).to(E4M3).reshape(b, h, s, d)
    return q, (scale * extra_scale).contiguous()


def quantize_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sm_scale: float):
    """(B, S, H, D) bf16 -> fp8 operands and scales in the kernel's layouts (V transposed: (B, H, D, S))."""
    q, k, v = (heads_first_padded(t, BLOCK) for t in (q, k, v))
    s_k = k.shape[2]
    k = k - k.float().mean(dim=2, keepdim=True).to(k.dtype)
    q8, q_scale = _block_quant(q, sm_scale * math.log2(math.e))
    k8, k_scale = _block_quant(k)
    v_scale = (v.float().abs().amax(dim=2) / E4M3_MAX).clamp(min=1e-12)  # (B, H, D)
    v8 = (v.float() / v_scale[:, :, None, :]).to(E4M3).transpose(2, 3).contiguous()
    assert v8.shape[-1] == s_k
    return q8.contiguous(), k8.contiguous(), v8, q_scale, k_scale, v_scale.contiguous()


if triton is not None:

    @triton.jit
    def _exp2_fast(x):
        """2^x for x <= 0 through the half-precision MUFU path (two values per instruction; P is cast to e4m3
        right after, so fp16's precision is more than enough)."""
        return tl.inline_asm_elementwise("ex2.approx.f16x2 $0, $1;", "=r,r", [x.to(tl.float16)],
                                         dtype=tl.float16, is_pure=True, pack=2)

    @triton.jit
    def _fp8_attention_kernel(Q, K, VT, QS, KS, VS, Out, H, S_Q, S_K, S_K_PAD,
                              stride_ob, stride_os, stride_oh,
                              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                              FAST_EXP: tl.constexpr):
        start_m = tl.program_id(0)
        bh = tl.program_id(1)
        s_q_pad = tl.num_programs(0) * BLOCK_M
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        q = tl.load(Q + bh.to(tl.int64) * s_q_pad * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :])
        q_scale = tl.load(QS + bh * tl.num_programs(0) + start_m)
        k_base = K + bh.to(tl.int64) * S_K_PAD * HEAD_DIM
        v_base = VT + bh.to(tl.int64) * S_K_PAD * HEAD_DIM
        ks_base = KS + bh * (S_K_PAD // BLOCK_N)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        for start_n in range(0, S_K_PAD, BLOCK_N):
            k = tl.load(k_base + (start_n + offs_n)[:, None] * HEAD_DIM + offs_d[None, :])
            scale = q_scale * tl.load(ks_base + start_n // BLOCK_N)
            qk = tl.dot(q, tl.trans(k))
            if start_n + BLOCK_N > S_K:
                qk = tl.where((start_n + offs_n)[None, :] < S_K, qk, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1) * scale)
            s = qk * scale - m_new[:, None]
            if FAST_EXP:
                p16 = _exp2_fast(s)
                l_new = tl.sum(p16.to(tl.float32), 1)
                p8 = p16.to(tl.float8e4nv)
            else:
                p = tl.math.exp2(s)
                l_new = tl.sum(p, 1)
                p8 = p.to(tl.float8e4nv)
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + l_new
            vt = tl.load(v_base + offs_d[:, None] * S_K_PAD + (start_n + offs_n)[None, :])
            acc = acc * alpha[:, None] + tl.dot(p8, tl.trans(vt))
            m_i = m_new
        v_scale = tl.load(VS + bh * HEAD_DIM + offs_d)
        out = acc / l_i[:, None] * v_scale[None, :]
        b = bh // H
        h = bh % H
        o_ptrs = Out + b.to(tl.int64) * stride_ob + h * stride_oh + offs_m[:, None] * stride_os + offs_d[None, :]
        tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=offs_m[:, None] < S_Q)


def fp8_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None = None,
                  num_warps: int = 8, num_stages: int = 3, fast_exp: bool | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v for (B, S, H, D) bf16/fp16 tensors, computed in fp8; returns (B, S_q, H, D)."""
    if triton is None:
        raise RuntimeError("fp8 attention needs Triton (pip install triton) and a CUDA GPU")
    d, s_k = query.shape[-1], key.shape[1]
    if d not in (64, 128):
        raise ValueError(f"fp8 attention supports head dims 64 and 128, not {d}")
    scale = scale if scale is not None else d ** -0.5
    out = torch.empty_like(query)
    launch(quantize_qkv(query, key, value, scale), out, s_k, num_warps, num_stages, fast_exp)
    return out


def launch(quantized, out: torch.Tensor, s_k: int, num_warps: int = 8, num_stages: int = 3,
           fast_exp: bool | None = None) -> None:
    """Run the kernel on `quantize_qkv`'s result for `s_k` real (unpadded) keys, writing `out` (B, S_q, H, D)."""
    q8, k8, v8, q_scale, k_scale, v_scale = quantized
    b, s_q, h, d = out.shape
    grid = (q8.shape[2] // BLOCK, b * h)
    _fp8_attention_kernel[grid](q8, k8, v8, q_scale, k_scale, v_scale, out, h, s_q, s_k, k8.shape[2],
                                out.stride(0), out.stride(1), out.stride(2),
                                HEAD_DIM=d, BLOCK_M=BLOCK, BLOCK_N=BLOCK, FAST_EXP=FAST_EXP if fast_exp is None else fast_exp,
                                num_warps=num_warps, num_stages=num_stages)
