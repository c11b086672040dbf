"""fp8 tensor-core matmuls for FP8Linear: activations quantised per row to e4m3, then torch._scaled_mm.

wan_loader.fp8.FP8Linear keeps an e4m3 weight and an fp32 scale (per tensor or per output channel); its default
matmul dequantises the weight to bf16 first. On Hopper/Ada (compute capability >= 8.9) `install()` replaces that
with `scaled_mm_linear`: one rowwise activation scale per token (amax / 448), the weight scale per output channel,
and cuBLAS's fp8 GEMM with both scales and the bias applied in its epilogue (~1.5x a bf16 GEMM on an H100).
Fast accumulation (no periodic promotion of the tensor cores' partial sums to fp32) makes the GEMMs another ~25%
faster; measured on a full-size 480p step it left the cosine to bf16 unchanged (0.99889 vs 0.99888), so it is on
by default (`ScaledMatmul(fast_accum=False)` turns it off). The choice lives on the model's layers, not in a global.
The activation quantisation is a small torch.compile'd function, so it is one fused pass (eager: 3-5 passes,
slower than the GEMM it saves); inside a compiled block it fuses into the preceding norm/modulation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from wan_loader.dtypes import E4M3, E4M3_MAX
from wan_loader.fp8 import FP8Linear, FP8Matmul, dequant_matmul

_compiled_quant = None


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e4m3 values, fp32 scale (M, 1)) with x ~= q * scale, one scale per row of a 2-D tensor."""
    amax = x.abs().amax(dim=1, keepdim=True).float()
    scale = (amax / E4M3_MAX).clamp(min=1e-12)
    q = (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
    return q, scale


def _quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    global _compiled_quant
    if not x.is_cuda or torch.compiler.is_compiling():
        return quantize_rows(x)
    if _compiled_quant is None:
        _compiled_quant = torch.compile(quantize_rows, dynamic=True, fullgraph=True)
    return _compiled_quant(x)


def supports_scaled_mm(device: torch.device | str) -> bool:
    """fp8 tensor cores: CUDA compute capability 8.9 (Ada) or 9.x (Hopper) and later."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 9)


def scaled_mm_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                     compute_dtype: torch.dtype, fast_accum: bool = True) -> torch.Tensor:
    """y = x @ (weight * scale).T + bias through fp8 tensor cores (torch's CPU kernel off the GPU); falls back to
    the dequantising default where _scaled_mm cannot run (e5m2 weights, dimensions not multiples of 16)."""
    n, k = weight.shape
    if weight.dtype != E4M3 or k % 16 or n % 16:
        return dequant_matmul(x, weight, scale, bias, compute_dtype)
    out_dtype = torch.bfloat16
    rows = x.reshape(-1, k).to(out_dtype)
    q, x_scale = _quantize(rows)
    w_scale = scale.float().reshape(1, -1).expand(1, n).contiguous()
    y = torch._scaled_mm(q, weight.t(), scale_a=x_scale, scale_b=w_scale,
                         bias=None if bias is None else bias.to(out_dtype), out_dtype=out_dtype,
                         use_fast_accum=fast_accum)
    return y.reshape(*x.shape[:-1], n).to(x.dtype)


@dataclass(frozen=True)
class ScaledMatmul:
    """An FP8Linear matmul through `scaled_mm_linear` with its accumulation setting."""

    fast_accum: bool = True

    def __call__(self, x, weight, scale, bias, compute_dtype):
        return scaled_mm_linear(x, weight, scale, bias, compute_dtype, self.fast_accum)


def install(model: torch.nn.Module, matmul: FP8Matmul | None) -> int:
    """Give every FP8Linear of `model` this matmul (None: the dequantising default); returns how many."""
    layers = [m for m in model.modules() if isinstance(m, FP8Linear)]
    for layer in layers:
        layer.matmul = matmul
    return len(layers)
