"""Which attention, fp8-matmul and int8-weight kernels a GPU gets: a pure function of what the device is and what works
on it.

`device_facts(device)` gathers the inputs once per GPU: the compute capability, cuDNN's version, and which of the
optional kernels import and pass a one-call probe there (a failed probe logs one line and drops that kernel).
`select_attention` / `select_fp8_matmul` turn facts into a choice, so every GPU generation's choice is testable on
a CPU by building its facts. "auto" takes the fastest kernel whose output stays within 3 % relative error of bf16
attention on random and structured inputs (benchmarks.attention): bf16 kernels and int8 Q·K^T with fp16 P·V
(0.5-1.8 %) qualify;
fp8 P·V (5-6 % on random inputs) and the all-fp8 kernels (cuDNN, FlashAttention-3, the Triton fp8 kernel: 3-4 %
structured, 5-6 % random) are there to be asked for by name. int8 weights (Comfy-Org's int8 ConvRot repack) stay int8
where comfy-kitchen's int8 GEMMs run natively (int8_matmul), else they are dequantised at load.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import int8_attention, int8_matmul
from .attention_quant import probe
from .fp8_matmul import scaled_mm_linear

INT8 = "int8"  # Triton: int8 Q·K^T, fp8 P·V (compute capability >= 8.9: Ada, Hopper, Blackwell)
INT8_FP16 = "int8_fp16"  # Triton: int8 Q·K^T, fp16 P·V (>= 8.0: Ampere and later)
SCALED_MM = "scaled_mm"  # torch._scaled_mm fp8 GEMMs (>= 8.9)
INT8_LINEAR = "int8_linear"  # comfy-kitchen's int8 GEMMs through its CUDA or Triton backend (>= 7.5)
FP8_CAPABILITY = (8, 9)
INT8_CAPABILITY = (8, 0)
_SCALED_MM_PROBE: dict[int, str | None] = {}


@dataclass(frozen=True)
class DeviceFacts:
    """The inputs of kernel selection. capability None: no CUDA device (CPU)."""

    capability: tuple[int, int] | None = None
    cudnn_version: int | None = None
    working: frozenset[str] = frozenset()  # optional kernels that imported and passed their probe here


def fastest_sdpa_for(facts: DeviceFacts) -> str:
    """The fastest bf16 SDPA kernel (measured order on Hopper: cuDNN, FLASH, memory-efficient)."""
    if facts.capability is None:
        return "native"
    if facts.capability[0] == 9 and (facts.cudnn_version or 0) >= 90000:
        return "cudnn"  # Hopper + cuDNN 9: cuDNN's fused attention beats FlashAttention-2 by ~1.5x
    if facts.capability >= (8, 0):
        return "flash"
    return "efficient"


def select_attention(facts: DeviceFacts) -> str:
    """'auto': on Hopper with cuDNN 9 cuDNN's bf16 kernel (measured on an H200: 38.4 ms at 480p, as fast as the
    int8 kernels and exact); elsewhere from Ampere on int8 Q·K^T with fp16 P·V where it runs (FLASH, the bf16
    alternative there, took 62 ms); else the fastest bf16 SDPA kernel."""
    bf16 = fastest_sdpa_for(facts)
    if bf16 != "cudnn" and facts.capability is not None and facts.capability >= INT8_CAPABILITY \
            and INT8_FP16 in facts.working:
        return INT8_FP16
    return bf16


def select_fp8_matmul(facts: DeviceFacts, has_fp8_weights: bool) -> str:
    """'auto': fp8 tensor-core GEMMs for fp8 weights where they work, else dequantise to bf16 and multiply."""
    if has_fp8_weights and facts.capability is not None and facts.capability >= FP8_CAPABILITY \
            and SCALED_MM in facts.working:
        return SCALED_MM
    return "dequant"


def select_int8_weights(facts: DeviceFacts) -> str:
    """'auto' for int8 weights: "keep" them int8 where comfy-kitchen's int8 GEMMs passed their probe on this GPU,
    else "dequantize" them at load."""
    if facts.capability is not None and facts.capability >= int8_matmul.INT8_LINEAR_CAPABILITY \
            and INT8_LINEAR in facts.working:
        return "keep"
    return "dequantize"


def _probe_scaled_mm(device: torch.device) -> str | None:
    def call(q, k, v):
        weight = torch.zeros(16, 128, device=q.device).to(torch.float8_e4m3fn)
        return scaled_mm_linear(q[0, :16, 0], weight, torch.ones(16, device=q.device), None, torch.bfloat16)
    return probe(call, device, _SCALED_MM_PROBE, "torch._scaled_mm does not run fp8 GEMMs here")


def device_facts(device: torch.device | str) -> DeviceFacts:
    """Facts of `device`; the probes of the kernels its generation could use run once per GPU."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return DeviceFacts()
    capability = torch.cuda.get_device_capability(device)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    working = set()
    if capability >= FP8_CAPABILITY and _probe_scaled_mm(device) is None:
        working.add(SCALED_MM)
    if capability >= INT8_CAPABILITY and int8_attention.unavailable_reason(device, "fp16") is None:
        working.add(INT8_FP16)
    if capability >= int8_matmul.INT8_LINEAR_CAPABILITY and int8_matmul.unavailable_reason(device) is None:
        working.add(INT8_LINEAR)
    return DeviceFacts(capability, cudnn, frozenset(working))
