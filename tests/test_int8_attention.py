"""The int8 Q·K^T attention kernel on the CPU: the Triton kernel itself through Triton's interpreter (fp16 P·V:
the interpreter's e4m3 casts are not exact), and the fp8 P·V numerics emulated with torch's exact e4m3 casts on
structured inputs. Its speed and its error on the GPU: benchmarks.attention."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.attention import structured_qkv
from wan_animate.engine.accel import fp8_attention, int8_attention
from wan_animate.engine.accel.attention_quant import E4M3
from wan_animate.engine.accel.processors import sdpa_kernel

REPO = Path(__file__).resolve().parent.parent


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def test_kernel_in_triton_interpreter_matches_attention():
    """Padded sequences (not multiples of the blocks), head dims 64 and 128, K/V offsets: the kernel's output is
    attention within int8 rounding, also traced by torch.compile (fullgraph)."""
    code = """
import torch
from wan_animate.engine.accel.int8_attention import int8_attention
from wan_animate.engine.accel.processors import sdpa_kernel
g = torch.Generator().manual_seed(0)
for s, h, d in ((200, 2, 64), (130, 1, 128)):
    q, k, v = (torch.randn(1, s, h, d, generator=g) for _ in range(3))
    k, v = k + 3 * torch.randn(1, 1, h, d, generator=g), v + torch.randn(1, 1, h, d, generator=g)
    q, k, v = (x.to(torch.bfloat16) for x in (q, k, v))
    out = int8_attention(q, k, v, pv="fp16")
    ref = sdpa_kernel(q.float(), k.float(), v.float())
    assert out.shape == q.shape and out.dtype == torch.bfloat16
    print(((out.float() - ref).norm() / ref.norm()).item())
# inside a compiled block: the quantisation is traced around the kernel's custom op without a graph break
compiled = torch.compile(lambda q, k, v: int8_attention(q, k, v, pv="fp16"), backend="aot_eager", fullgraph=True)
assert torch.equal(compiled(q, k, v), out)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={**os.environ, "TRITON_INTERPRET": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    errors = [float(x) for x in run.stdout.split()]
    assert len(errors) == 2 and max(errors) < 0.01


def emulate_int8(q, k, v) -> torch.Tensor:
    """The fp8 P·V kernel's arithmetic on its own operands (P against its row maximum, cast at x448 to e4m3)."""
    s_q = q.shape[1]
    q8, k8, vt, q_scale, k_scale, v_scale, v_mean = int8_attention.quantize_qkv(q, k, v, q.shape[-1] ** -0.5)
    qf = (q8.float().unflatten(2, (-1, int8_attention.BLOCK_M)) * q_scale[..., None, None]).flatten(2, 3)
    kf = (k8.float().unflatten(2, (-1, int8_attention.BLOCK_N)) * k_scale[..., None, None]).flatten(2, 3)
    scores = (qf @ kf.transpose(-1, -2))[:, :, :s_q] * math.log(2)  # log2 units back to natural ones
    scores[..., k.shape[1]:] = float("-inf")
    p = torch.exp(scores - scores.amax(-1, keepdim=True))
    p8 = (p * int8_attention.P_SCALE).to(E4M3).float()
    out = (p8 @ vt.float().transpose(-1, -2)) / p.sum(-1, keepdim=True) * v_scale[:, :, None] + v_mean[:, :, None]
    return out.transpose(1, 2)


def emulate_all_fp8(q, k, v) -> torch.Tensor:
    """The all-fp8 Triton kernel's arithmetic (e4m3 Q/K per block, P cast unscaled) for comparison."""
    s_q = q.shape[1]
    q8, k8, v8, q_scale, k_scale, v_scale = fp8_attention.quantize_qkv(q, k, v, q.shape[-1] ** -0.5)
    qf = (q8.float().unflatten(2, (-1, fp8_attention.BLOCK)) * q_scale[..., None, None]).flatten(2, 3)
    kf = (k8.float().unflatten(2, (-1, fp8_attention.BLOCK)) * k_scale[..., None, None]).flatten(2, 3)
    scores = (qf @ kf.transpose(-1, -2))[:, :, :s_q] * math.log(2)
    scores[..., k.shape[1]:] = float("-inf")
    p = torch.exp(scores - scores.amax(-1, keepdim=True))
    out = (p.to(E4M3).float() @ v8.float().transpose(-1, -2)) / p.sum(-1, keepdim=True) * v_scale[:, :, None]
    return out.transpose(1, 2)


def test_fp8_pv_numerics_within_3_percent_on_structured_inputs():
    """On structured inputs (low-rank signal, K channel offsets) int8 Q·K^T with x448-scaled e4m3 P stays within
    3 % of attention; the all-fp8 kernel's rounding is several times larger."""
    q, k, v = structured_qkv(1000, 2, 128, torch.Generator().manual_seed(3))
    ref = sdpa_kernel(q.double(), k.double(), v.double())
    int8_error = relative_error(emulate_int8(q, k, v), ref)
    fp8_error = relative_error(emulate_all_fp8(q, k, v), ref)
    assert int8_error < 0.03
    assert fp8_error > 2 * int8_error
