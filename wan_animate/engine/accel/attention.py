"""Attention kernel choice: the fastest of torch's SDPA kernels that works on this device, with an override.

Measured on an H100 (torch 2.11, cuDNN 9.19, 40 heads x 128, 480p self-attention): cuDNN 580 TFLOP/s, FLASH 371,
memory-efficient 123. diffusers' default ("native") lets torch pick, which picks FLASH. The choice goes through
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
CHOICES = ("auto", *BACKENDS)


def choose_attention(device: torch.device | str, override: str | None = None) -> str:
    """The backend to use: `override`, else $WAN_ANIMATE_ATTENTION, else the fastest one the device supports."""
    name = (override or os.environ.get(ENV_VAR) or "auto").lower()
    if name not in CHOICES:
        raise ValueError(f"attention={name!r}: choose one of {', '.join(CHOICES)} (or unset ${ENV_VAR}).")
    if name != "auto":
        return name
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


def set_attention(transformer, name: str) -> str:
    """Route all attention of a diffusers transformer through backend `name` (see BACKENDS); returns it."""
    if name not in BACKENDS:
        raise ValueError(f"attention backend {name!r}: choose one of {', '.join(BACKENDS)}.")
    transformer.set_attention_backend(BACKENDS[name])
    return name
