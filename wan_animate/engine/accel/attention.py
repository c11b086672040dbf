"""Attention kernel choice: the fastest kernel within 3 % of bf16 attention on this device, with an override.

"auto" is selection.select_attention over the device's facts: cuDNN's bf16 kernel on Hopper, the Triton int8
Q·K^T kernel with fp16 P·V on the other GPUs from Ampere on (int8_fp16), else the fastest bf16 SDPA kernel. "accurate" is bf16 attention (the fastest SDPA
kernel). By name: int8 (fp8 P·V), the all-fp8 kernels (fa3_fp8 when FlashAttention-3 is installed, cudnn_fp8, the
Triton fp8), faster on Hopper and 3-6 % off bf16 attention (benchmarks.attention), and torch's SDPA backends. Measured on an H100 (torch 2.11, cuDNN 9.19, 40 heads x 128, 480p self-attention, kernel only):
FlashAttention-3 fp8 891-900 TFLOP/s, cuDNN's fp8 kernel 815-843, the Triton fp8 kernel 709-723, FlashAttention-3
bf16 690-709, cuDNN bf16 580-594, FLASH 345-364, memory-efficient 123. The choice goes through diffusers'
attention dispatch (`set_attention_backend`, per model), and the self-attention processors of the model's own
blocks, so two models in one process keep their own. "sparse" is comfy-kitchen's training-free Sol-Attn
(sparse_attention.py) for long and 720p videos, by name only (its error depends on the content), with its
settings (`SparseSettings`) on the model's processors.
"""
from __future__ import annotations

import logging
import os

import torch

from . import cudnn_fp8_attention, fa3_attention, fp8_attention, int8_attention, sparse_attention
from .processors import Kernel, install_self_attention, reset_self_attention, sdpa_kernel
from .selection import INT8, INT8_FP16, device_facts, fastest_sdpa_for, select_attention
from .sparse_attention import SPARSE, SparseAttention, SparseSettings

log = logging.getLogger(__name__)

ENV_VAR = "WAN_ANIMATE_ATTENTION"
BACKENDS = {  # our name -> diffusers AttentionBackendName value
    "cudnn": "_native_cudnn",
    "flash": "_native_flash",
    "efficient": "_native_efficient",
    "math": "_native_math",
    "native": "native",
}
ACCURATE = "accurate"  # bf16 attention: the fastest SDPA kernel
FP8 = "fp8"  # self-attention through the Triton fp8 kernel (fp8_attention.py), cross-attention through cuDNN/FLASH
CUDNN_FP8 = "cudnn_fp8"  # self-attention through cuDNN's fp8 kernel (cudnn_fp8_attention.py), cross as for FP8
FA3_FP8 = "fa3_fp8"  # self-attention through FlashAttention-3's fp8 kernel (fa3_attention.py), cross as for FP8
SELF_ATTENTION_KERNELS = (INT8, INT8_FP16, FA3_FP8, CUDNN_FP8, FP8)
CHOICES = ("auto", ACCURATE, *SELF_ATTENTION_KERNELS, SPARSE, *BACKENDS)


def choose_attention(device: torch.device | str, override: str | None = None) -> str:
    """The backend to use: `override`, else $WAN_ANIMATE_ATTENTION, else the fastest accurate one on `device`."""
    name = (override or os.environ.get(ENV_VAR) or "auto").lower()
    if name not in CHOICES:
        raise ValueError(f"attention={name!r}: choose one of {', '.join(CHOICES)} (or unset ${ENV_VAR}).")
    if name == "auto":
        return select_attention(device_facts(device))
    if name == ACCURATE:
        return fastest_sdpa(device)
    return name


def fastest_sdpa(device: torch.device | str) -> str:
    """The fastest of torch's bf16 SDPA kernels on `device`."""
    return fastest_sdpa_for(device_facts(device))


def _self_attention_kernel(name: str, device):
    """The (B, S, H, D) kernel for a self-attention choice, or a ValueError saying why it cannot run."""
    device = device or "cuda"
    if name in (INT8, INT8_FP16):
        pv = "fp8" if name == INT8 else "fp16"
        reason = int8_attention.unavailable_reason(device, pv)
        kernel = int8_attention.int8_attention if name == INT8 else int8_attention.int8_fp16_attention
    elif name == FP8:
        reason = None if fp8_attention.available(device) else \
            f"needs Triton and a GPU with fp8 tensor cores; {device} has not"
        kernel = fp8_attention.fp8_attention
    else:
        module = fa3_attention if name == FA3_FP8 else cudnn_fp8_attention
        reason = module.unavailable_reason(device)
        kernel = module.fa3_fp8_attention if name == FA3_FP8 else module.cudnn_fp8_attention
    if reason:
        raise ValueError(f"attention={name!r} cannot run: {reason}.")
    return kernel


def backend_kernel(name: str) -> Kernel:
    """A (B, S, H, D) kernel that runs torch SDPA backend `name` (BACKENDS) through diffusers' dispatch."""
    if name == "native":
        return sdpa_kernel
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    return lambda q, k, v: dispatch_attention_fn(q, k, v, backend=BACKENDS[name])


def usable_sparse(device: torch.device | str | None) -> str:
    """SPARSE where Sol-Attn's kernel runs on `device`, else auto's choice there (with one log line saying why)."""
    reason = sparse_attention.unavailable_reason(device or "cuda")
    if reason is None:
        return SPARSE
    fallback = select_attention(device_facts(device or "cuda"))
    log.warning("attention='sparse' cannot run: %s; using %r instead", reason, fallback)
    return fallback


def set_attention(transformer, name: str, device: torch.device | str | None = None,
                  sparse: SparseSettings | None = None) -> str:
    """Route all attention of a diffusers transformer through backend `name` (CHOICES but auto); returns the one
    set (SPARSE falls back to auto's choice where it cannot run).

    The quantised and sparse choices replace the blocks' self-attention processors (SPARSE's with `sparse`
    settings, kept by this model's processors); cross-attention (short keys) keeps the fastest SDPA kernel."""
    if name == SPARSE:
        name = usable_sparse(device)
    if name == SPARSE:
        dense = fastest_sdpa(device or "cuda")
        transformer.set_attention_backend(BACKENDS[dense])
        install_self_attention(transformer.blocks, SparseAttention(sparse or SparseSettings(), backend_kernel(dense)))
        return name
    if name in SELF_ATTENTION_KERNELS:
        kernel = _self_attention_kernel(name, device)
        transformer.set_attention_backend(BACKENDS[fastest_sdpa(device or "cuda")])
        install_self_attention(transformer.blocks, kernel)
        return name
    if name not in BACKENDS:
        raise ValueError(f"attention backend {name!r}: choose one of {', '.join(CHOICES)}.")
    reset_self_attention(transformer.blocks)
    transformer.set_attention_backend(BACKENDS[name])
    return name
