"""Attention kernel choice: the fastest of torch's SDPA kernels that works on this device, with an override.

Measured on an H100 (torch 2.11, cuDNN 9.19, 40 heads x 128, 480p self-attention, kernel only): FlashAttention-3
fp8 891-900 TFLOP/s, cuDNN's fp8 kernel 815-843, our Triton fp8 kernel 709-723, FlashAttention-3 bf16 690-709,
cuDNN bf16 580-594, FLASH 345-364, memory-efficient 123. diffusers' default ("native") lets torch pick, which
picks FLASH. "auto" on Hopper takes FlashAttention-3 fp8 when it is installed (scripts/build_fa3.sh), else cuDNN fp8
(the cuDNN frontend is a dependency), else the Triton fp8 kernel; elsewhere the fastest SDPA kernel. The choice goes through
diffusers' attention dispatch (`set_attention_backend`), so every attention module of the transformer uses it.
"""
from __future__ import annotations

import os

import torch

ENV_VAR = "WAN_ANIMATE_ATTENTION"
BACKENDS = {  # our name -> diffusers AttentionBackendName value
    "cudnn": "_native_cudnn",
    "flash": "_native_flash",
    "efficient": "_native_efficient",
    "math": "_native_math",
    "native": "native",
}
FP8 = "fp8"  # self-attention through the Triton fp8 kernel (fp8_attention.py), cross-attention through cuDNN/FLASH
CUDNN_FP8 = "cudnn_fp8"  # self-attention through cuDNN's fp8 kernel (cudnn_fp8_attention.py), cross as for FP8
FA3_FP8 = "fa3_fp8"  # self-attention through FlashAttention-3's fp8 kernel (fa3_attention.py), cross as for FP8
SELF_ATTENTION_FP8 = (FA3_FP8, CUDNN_FP8, FP8)
CHOICES = ("auto", *SELF_ATTENTION_FP8, *BACKENDS)


def choose_attention(device: torch.device | str, override: str | None = None) -> str:
    """The backend to use: `override`, else $WAN_ANIMATE_ATTENTION, else the fastest one the device supports."""
    name = (override or os.environ.get(ENV_VAR) or "auto").lower()
    if name not in CHOICES:
        raise ValueError(f"attention={name!r}: choose one of {', '.join(CHOICES)} (or unset ${ENV_VAR}).")
    if name != "auto":
        return name
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] == 9:
        from . import cudnn_fp8_attention, fa3_attention, fp8_attention
        if fa3_attention.available(device):
            return FA3_FP8  # Hopper with FlashAttention-3 installed: 1.07x cuDNN's fp8 kernel
        if cudnn_fp8_attention.available(device):
            return CUDNN_FP8  # else cuDNN's fp8 kernel, 1.4x its bf16 one at the same end-to-end cosine
        if fp8_attention.available(device):
            return FP8  # else the Triton fp8 kernel, 1.2x cuDNN's bf16 kernel
    return fastest_sdpa(device)


def fastest_sdpa(device: torch.device | str) -> str:
    """The fastest of torch's SDPA kernels on `device` (measured order on Hopper: cuDNN, FLASH, efficient)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return "native"
    major, minor = torch.cuda.get_device_capability(device)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if major == 9 and cudnn is not None and cudnn >= 90000:
        return "cudnn"  # Hopper + cuDNN 9: cuDNN's fused attention beats FlashAttention-2 by ~1.5x
    if (major, minor) >= (8, 0):
        return "flash"
    return "efficient"


def _self_attention_kernel(name: str, device):
    """The (B, S, H, D) kernel for an fp8 self-attention choice, or a ValueError saying why it cannot run."""
    if name == FP8:
        from . import fp8_attention
        if device is not None and not fp8_attention.available(device):
            raise ValueError(f"attention='fp8' needs Triton and a GPU with fp8 tensor cores; {device} has not.")
        return fp8_attention.fp8_attention
    if name == FA3_FP8:
        from . import fa3_attention as module
        kernel = module.fa3_fp8_attention
    else:
        from . import cudnn_fp8_attention as module
        kernel = module.cudnn_fp8_attention
    reason = module.unavailable_reason(device or "cuda")
    if reason:
        raise ValueError(f"attention={name!r} cannot run: {reason}.")
    return kernel


def set_attention(transformer, name: str, device: torch.device | str | None = None) -> str:
    """Route all attention of a diffusers transformer through backend `name` (CHOICES but auto); returns it.

    The fp8 choices replace the blocks' self-attention processors; cross-attention (short keys) keeps the fastest
    SDPA kernel."""
    from .processors import install_self_attention, reset_self_attention
    if name in SELF_ATTENTION_FP8:
        kernel = _self_attention_kernel(name, device)
        transformer.set_attention_backend(BACKENDS[fastest_sdpa(device or "cuda")])
        install_self_attention(transformer.blocks, kernel)
        return name
    if name not in BACKENDS:
        raise ValueError(f"attention backend {name!r}: choose one of {', '.join(CHOICES)}.")
    reset_self_attention(transformer.blocks)
    transformer.set_attention_backend(BACKENDS[name])
    return name
