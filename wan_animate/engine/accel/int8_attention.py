"""Attention with int8 Q·K^T and fp8 (or fp16) P·V tensor-core products (Triton), SageAttention2's recipe.

Why int8 for Q·K^T: e4m3 keeps 3 mantissa bits, int8 7. With structured activations (low-rank signal, peaky
scores) the scores' rounding dominates an fp8 kernel's error: 3.6-4 % relative to fp32 attention on an H200, where
int8 Q·K^T stays at 0.5-0.9 % (benchmarks.attention's error column). Ampere and later run int8 products at twice
the bf16 rate. Quantisation, exact in real arithmetic except for the rounding:
- K is smoothed (its mean over the tokens subtracted per head and channel): each score of a query moves by the
  same amount, which softmax ignores, and the shared component no longer eats the int8 range.
- Q and K get one scale per block of tokens per head (amax / 127); the softmax scale and log2(e) fold into Q's.
- V is smoothed the same way and its mean added back to the output (softmax rows sum to 1), then gets one e4m3
  scale per channel. P (in [0, 1]) is scaled by 448 before its cast to e4m3, so small probabilities stay normal
  numbers instead of flushing to zero.
- Each block's P·V starts from a fresh accumulator and is added in fp32 (Hopper's fp8 MMA accumulates with
  reduced precision; chaining it over hundreds of blocks would lose bits).
`pv="fp16"` keeps P and V in fp16 (SageAttention1): for GPUs without fp8 tensor cores (Ampere), a little more
accurate, P·V at the fp16 rate. Inputs are (B, S, H, D) as diffusers' processors pass them; D is 64 or 128.
The kernel call is a torch custom op, so compiled blocks fuse the quantisation around it without a graph break.
"""
from __future__ import annotations

import math
import os

import torch

from .attention_quant import E4M3, E4M3_MAX, cuda_index, heads_first_padded, probe

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs; `unavailable_reason()` says so
    triton = None

INT8_MAX = 127.0
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"  # Triton's CPU interpreter: one configuration, no tuning
BLOCK_M = 128  # query tokens per program and per Q scale
BLOCK_N = 128  # key tokens per loop step and per K scale (measured on an H200: 1.2x the speed of 64)
PAD = 128  # sequences are padded to a multiple of both blocks
P_SCALE = E4M3_MAX  # P in [0, 1] -> [0, 448] before the e4m3 cast
PV_CHOICES = ("fp8", "fp16")
_probe: dict[str, dict[int, str | None]] = {}  # per P·V dtype, per GPU


def unavailable_reason(device=None, pv: str = "fp8") -> str | None:
    """Why the kernel cannot run on `device` with P·V in `pv` (None when it can); the probe runs once per GPU."""
    if triton is None:
        return "Triton is not installed"
    index, reason = cuda_index(device)
    if reason:
        return reason
    need = (8, 9) if pv == "fp8" else (8, 0)
    if torch.cuda.get_device_capability(index) < need:
        return f"int8 attention with {pv} P·V needs compute capability >= {need[0]}.{need[1]}"
    results = _probe.setdefault(pv, {})
    return probe(lambda q, k, v: int8_attention(q, k, v, pv=pv), torch.device("cuda", index), results,
                 f"the Triton int8 attention kernel ({pv} P·V) does not build here")


def _int8_blocks(x: torch.Tensor, block: int, extra_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, S, D) padded -> int8 values and fp32 scales (B, H, S / block), one per block of tokens."""
    b, h, s, d = x.shape
    blocks = x.float().reshape(b, h, s // block, block, d)
    scale = (blocks.abs().amax(dim=(3, 4)) / INT8_MAX).clamp(min=1e-12)
    q = (blocks / scale[..., None, None]).round().clamp(-INT8_MAX, INT8_MAX).to(torch.int8).reshape(b, h, s, d)
    return q, (scale * extra_scale).contiguous()


def quantize_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sm_scale: float, pv: str = "fp8",
                 block_n: int = BLOCK_N):
    """(B, S, H, D) -> the kernel's operands: int8 Q and K with scales per BLOCK_M / `block_n` tokens, V (smoothed,
    e4m3 with a scale per channel, or fp16) transposed to (B, H, D, S), V's scale and mean per (B, H, D)."""
    v = v.float()
    k = k.float()
    v_mean = v.mean(dim=1)  # (B, H, D)
    k = k - k.mean(dim=1, keepdim=True)
    q, k, v = (heads_first_padded(t, PAD) for t in (q, k, v - v_mean[:, None]))
    q8, q_scale = _int8_blocks(q, BLOCK_M, sm_scale * math.log2(math.e))
    k8, k_scale = _int8_blocks(k, block_n)
    if pv == "fp8":
        v_scale = (v.abs().amax(dim=2) / E4M3_MAX).clamp(min=1e-12)  # (B, H, D)
        vt = (v / v_scale[:, :, None, :]).to(E4M3).transpose(2, 3).contiguous()
        v_scale = v_scale / P_SCALE
    else:
        vt = v.to(torch.float16).transpose(2, 3).contiguous()
        v_scale = torch.ones_like(v_mean)
    return q8.contiguous(), k8.contiguous(), vt, q_scale, k_scale, v_scale.contiguous(), v_mean.contiguous()


if triton is not None:

    @triton.jit
    def _int8_attention_kernel(Q, K, VT, QS, KS, VS, VM, Out, H, S_Q, S_K, S_K_PAD,
                               stride_ob, stride_os, stride_oh,
                               HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                               PV_FP8: tl.constexpr, P_SCALE: tl.constexpr):
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
            qk = tl.dot(q, tl.trans(k), out_dtype=tl.int32)
            s = qk.to(tl.float32) * (q_scale * tl.load(ks_base + start_n // BLOCK_N))
            if start_n + BLOCK_N > S_K:
                s = tl.where((start_n + offs_n)[None, :] < S_K, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.math.exp2(s - m_new[:, None])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            vt = tl.load(v_base + offs_d[:, None] * S_K_PAD + (start_n + offs_n)[None, :])
            if PV_FP8:
                acc = acc * alpha[:, None] + tl.dot((p * P_SCALE).to(tl.float8e4nv), tl.trans(vt), out_dtype=tl.float32)
            else:
                acc = tl.dot(p.to(tl.float16), tl.trans(vt), acc * alpha[:, None], out_dtype=tl.float32)
            m_i = m_new
        v_scale = tl.load(VS + bh * HEAD_DIM + offs_d)
        v_mean = tl.load(VM + bh * HEAD_DIM + offs_d)
        out = acc / l_i[:, None] * v_scale[None, :] + v_mean[None, :]
        b = bh // H
        h = bh % H
        o_ptrs = Out + b.to(tl.int64) * stride_ob + h * stride_oh + offs_m[:, None] * stride_os + offs_d[None, :]
        tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=offs_m[:, None] < S_Q)

    _tuned_kernel = triton.autotune(
        # one-stage configurations fit the 100 KB of shared memory of sm86/sm89/sm120 with 128 x 128 tiles
        configs=[triton.Config({}, num_warps=w, num_stages=s) for w, s in ((8, 2), (8, 3), (8, 4), (4, 3), (8, 1),
                                                                             (4, 1))],
        key=["S_K_PAD", "HEAD_DIM", "PV_FP8"])(_int8_attention_kernel)


def launch(operands, out: torch.Tensor, s_k: int, pv: str = "fp8", num_warps: int | None = None,
           num_stages: int = 3, block_n: int = BLOCK_N) -> None:
    """Run the kernel on `quantize_qkv`'s operands (quantised with the same `block_n`) for `s_k` real (unpadded)
    keys, writing `out` (B, S_q, H, D); `num_warps` None: the tuned launch configuration."""
    q8, k8, vt, q_scale, k_scale, v_scale, v_mean = operands
    b, s_q, h, d = out.shape
    grid = (q8.shape[2] // BLOCK_M, b * h)
    args = (q8, k8, vt, q_scale, k_scale, v_scale, v_mean, out, h, s_q, s_k, k8.shape[2],
            out.stride(0), out.stride(1), out.stride(2))
    constants = dict(HEAD_DIM=d, BLOCK_M=BLOCK_M, BLOCK_N=block_n, PV_FP8=pv == "fp8",
                     P_SCALE=P_SCALE if pv == "fp8" else 1.0)
    if num_warps is None and not INTERPRETED:
        _tuned_kernel[grid](*args, **constants)
    else:
        _int8_attention_kernel[grid](*args, **constants, num_warps=num_warps or 8, num_stages=num_stages)


@torch.library.custom_op("wan_animate::int8_attention_kernel", mutates_args=())
def attention_kernel(q8: torch.Tensor, k8: torch.Tensor, vt: torch.Tensor, q_scale: torch.Tensor,
                     k_scale: torch.Tensor, v_scale: torch.Tensor, v_mean: torch.Tensor, s_q: int, s_k: int,
                     pv: str, out_dtype: torch.dtype) -> torch.Tensor:
    """The kernel on quantised operands; returns (B, S_q, H, D) in `out_dtype`."""
    b, h, _, d = q8.shape
    out = torch.empty(b, s_q, h, d, dtype=out_dtype, device=q8.device)
    launch((q8, k8, vt, q_scale, k_scale, v_scale, v_mean), out, s_k, pv)
    return out


@attention_kernel.register_fake
def _(q8, k8, vt, q_scale, k_scale, v_scale, v_mean, s_q, s_k, pv, out_dtype):
    b, h, _, d = q8.shape
    return torch.empty(b, s_q, h, d, dtype=out_dtype, device=q8.device)


def int8_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None = None,
                   pv: str = "fp8") -> torch.Tensor:
    """softmax(q k^T * scale) v for (B, S, H, D) tensors: int8 Q·K^T, `pv` ("fp8" | "fp16") P·V."""
    if triton is None:
        raise RuntimeError("int8 attention needs Triton (pip install triton)")
    if pv not in PV_CHOICES:
        raise ValueError(f"pv={pv!r}: choose one of {', '.join(PV_CHOICES)}")
    d = query.shape[-1]
    if d not in (64, 128):
        raise ValueError(f"int8 attention supports head dims 64 and 128, not {d}")
    operands = quantize_qkv(query, key, value, scale if scale is not None else d ** -0.5, pv)
    return attention_kernel(*operands, query.shape[1], key.shape[1], pv, query.dtype)


def int8_fp16_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """int8 Q·K^T with fp16 P·V (for GPUs without fp8 tensor cores)."""
    return int8_attention(query, key, value, pv="fp16")
