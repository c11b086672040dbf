"""ComfyUI's int8 weights (comfy-kitchen's TensorWiseINT8Layout, with or without ConvRot) read exactly.

A quantised linear is stored as `<name>.weight` (int8, [out, in]), `<name>.weight_scale` (fp32 per output row) and
`<name>.comfy_quant` (a uint8 tensor holding JSON such as {"format": "int8_tensorwise", "convrot": true,
"convrot_groupsize": 256}; the ConvRot fields may sit under "params"). ConvRot rotated each group of `groupsize`
input columns by the normalised Hadamard matrix H (Kronecker powers of a symmetric 4x4 Hadamard) before rounding:
stored = round(W H^T / scale). Since H is symmetric and orthogonal, W = (q * scale) H^T again; this is the same
arithmetic as comfy-kitchen's eager `dequantize_int8_convrot_weight` (tests compare the two).
"""
from __future__ import annotations

import json
from functools import lru_cache

import torch

INT8_FORMAT = "int8_tensorwise"
_H4 = ((1, 1, 1, -1), (1, 1, -1, 1), (1, -1, 1, 1), (-1, 1, 1, 1))


@lru_cache(maxsize=8)
def hadamard(size: int) -> torch.Tensor:
    """The normalised (size x size) Hadamard matrix ConvRot rotates with; size a power of 4."""
    if size < 4 or size & (size - 1) or (size.bit_length() - 1) % 2:
        raise ValueError(f"ConvRot group size must be a power of 4, got {size}")
    h4 = torch.tensor(_H4, dtype=torch.float32)
    h = h4
    while h.shape[0] < size:
        h = torch.kron(h, h4)
    return h / size ** 0.5


def read_config(marker: torch.Tensor | None) -> dict:
    """The JSON of a `comfy_quant` marker tensor (empty when there is none)."""
    if marker is None:
        return {}
    try:
        config = json.loads(bytes(marker.reshape(-1).to(torch.uint8).tolist()).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"unreadable comfy_quant marker ({error})") from None
    return config if isinstance(config, dict) else {}


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, config: dict) -> torch.Tensor:
    """An int8 weight [out, in] with its per-row (or per-tensor) scale -> fp32, un-rotated when ConvRot was used."""
    fmt = config.get("format", INT8_FORMAT)
    if fmt != INT8_FORMAT:
        raise ValueError(f"int8 weights in format {fmt!r}: only ComfyUI's {INT8_FORMAT!r} (optionally ConvRot) is "
                         "supported; re-save the model in bf16 or fp8.")
    params = config.get("params") if isinstance(config.get("params"), dict) else {}
    w = q.to(torch.float32) * scale.to(device=q.device, dtype=torch.float32).reshape(-1, 1) \
        if scale.numel() > 1 else q.to(torch.float32) * scale.to(device=q.device, dtype=torch.float32)
    if not config.get("convrot", params.get("convrot", False)):
        return w
    group = int(config.get("convrot_groupsize", params.get("convrot_groupsize", 256)))
    rows, cols = w.shape
    h = hadamard(group).to(w.device)
    return (w.reshape(rows, cols // group, group) @ h.T).reshape(rows, cols)
