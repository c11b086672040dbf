"""ComfyUI's int8 weights (comfy-kitchen's TensorWiseINT8Layout, with or without ConvRot): read exactly, kept int8.

A quantised linear is stored as `<name>.weight` (int8, [out, in]), `<name>.weight_scale` (fp32 per output row) and
`<name>.comfy_quant` (a uint8 tensor holding JSON such as {"format": "int8_tensorwise", "convrot": true,
"convrot_groupsize": 256}; the ConvRot fields may sit under "params"). ConvRot rotated each group of `groupsize`
input columns by the normalised Hadamard matrix H (Kronecker powers of a symmetric 4x4 Hadamard) before rounding:
stored = round(W H^T / scale). Since H is symmetric and orthogonal, W = (q * scale) H^T again; this is the same
arithmetic as comfy-kitchen's eager `dequantize_int8_convrot_weight` (tests compare the two).

The loader either dequantises such weights at load or, asked to keep them (`Int8Weights`), puts them in `Int8Linear`
layers that hold the int8 weight, its scale and its ConvRot group as they are in the file. An Int8Linear's `matmul`
is the seam where a kernel multiplies with the int8 weight directly (the engine installs comfy-kitchen's int8 GEMM,
wan_animate.engine.accel.int8_matmul); without one it dequantises per call, exactly as the load-time path would.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import WanLoaderError
from .fp8 import ScaledWeightLinear

log = logging.getLogger(__name__)

INT8_FORMAT = "int8_tensorwise"
INT8_WEIGHTS = ("keep", "dequantize")  # what the loader does with int8 weights (Int8Weights.parse)
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


def convrot_group(config: dict) -> int:
    """The ConvRot group size of a layer's comfy_quant config (0: not rotated); other int8 formats are refused."""
    fmt = config.get("format", INT8_FORMAT)
    if fmt != INT8_FORMAT:
        raise ValueError(f"int8 weights in format {fmt!r}: only ComfyUI's {INT8_FORMAT!r} (optionally ConvRot) is "
                         "supported; re-save the model in bf16 or fp8.")
    params = config.get("params") if isinstance(config.get("params"), dict) else {}
    if not config.get("convrot", params.get("convrot", False)):
        return 0
    return int(config.get("convrot_groupsize", params.get("convrot_groupsize", 256)))


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor, group: int) -> torch.Tensor:
    """An int8 weight [out, in] with its per-row (or per-tensor) scale -> fp32, un-rotated when `group` > 0."""
    s = scale.to(device=q.device, dtype=torch.float32)
    w = q.to(torch.float32) * (s.reshape(-1, 1) if s.numel() > 1 else s.reshape(()))
    if not group:
        return w
    rows, cols = w.shape
    return (w.reshape(rows, cols // group, group) @ hadamard(group).to(w.device).T).reshape(rows, cols)


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, config: dict) -> torch.Tensor:
    """An int8 weight [out, in] with its scale and comfy_quant config -> fp32 (see the module docstring)."""
    return dequantize_rows(q, scale, convrot_group(config))


def quantize_int8(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 [out, in], fp32 scale [out, 1]) as comfy-kitchen's ConvRot (group > 0) or row-wise int8 quantiser
    writes them: rotate each group of input columns by H^T, then one scale per row (absolute max / 127)."""
    w = w.to(torch.float32)
    if group:
        rows, cols = w.shape
        w = torch.matmul(w.reshape(rows, cols // group, group), hadamard(group).to(w.device).T).reshape(rows, cols)
    scale = (w.abs().amax(dim=-1, keepdim=True) / 127.0).clamp(min=1e-30)
    return (w / scale).round_().clamp_(-128.0, 127.0).to(torch.int8), scale


Int8Matmul = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None", int, torch.dtype],
                      torch.Tensor]


def dequant_int8_matmul(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                        group: int, compute_dtype: torch.dtype) -> torch.Tensor:
    """The Int8Linear default: the weight dequantised (as at load) in the compute dtype, then a plain matmul."""
    w = dequantize_rows(weight, scale, group).to(compute_dtype)
    out = F.linear(x.to(compute_dtype), w, None if bias is None else bias.to(compute_dtype))
    return out.to(x.dtype)


class Int8Linear(ScaledWeightLinear):
    """nn.Linear with an int8 weight [out, in], its fp32 scale (per output row, or one) and ConvRot group size as
    ComfyUI's int8 files store them; bias in the compute dtype.

    `group_size` (0: not rotated) is set from the layer's comfy_quant marker when the weights are loaded.
    `matmul(x, weight, scale, bias, group_size, compute_dtype) -> y` computes the product (None: dequantise per
    call).
    """

    matmul: Int8Matmul | None = None

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 compute_dtype: torch.dtype = torch.bfloat16, device=None, matmul: Int8Matmul | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype = compute_dtype
        self.group_size = 0
        self.matmul = matmul
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=torch.int8, device=device),
                                   requires_grad=False)
        self.scale = nn.Parameter(torch.ones(out_features, dtype=torch.float32, device=device), requires_grad=False)
        self.bias = (nn.Parameter(torch.empty(out_features, dtype=compute_dtype, device=device), requires_grad=False)
                     if bias else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.matmul or dequant_int8_matmul)(x, self.weight, self.scale, self.bias, self.group_size,
                                                    self.compute_dtype)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return dequantize_rows(self.weight, self.scale, self.group_size).to(dtype or self.compute_dtype)

    def extra_repr(self) -> str:
        rotation = f"ConvRot group {self.group_size}" if self.group_size else "no rotation"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"weight=int8 ({rotation}), compute={self.compute_dtype}")


@dataclass(frozen=True)
class Int8Weights:
    """What the loader does with a file's int8 weights: `keep` them int8 in Int8Linear layers computing through
    `matmul`, or dequantise them at load. `fallback`: why they are not kept, logged once when a file has them;
    `refusal`: keeping them was required but cannot work here, raised as the load's error when a file has them.
    The engine builds this for a device (wan_animate.engine.accel.choose_int8_weights); plain "keep" and
    "dequantize" are `parse`d to one."""

    keep: bool = False
    matmul: Int8Matmul | None = None
    fallback: str = ""
    refusal: str = ""

    @classmethod
    def parse(cls, value: Int8Weights | str) -> Int8Weights:
        if isinstance(value, Int8Weights):
            return value
        if value not in INT8_WEIGHTS:
            raise ValueError(f"int8_weights={value!r}: use 'keep' (Int8Linear layers) or 'dequantize' (at load); "
                             "the engine's choose_int8_weights resolves 'auto' for a device.")
        return cls(keep=value == "keep")


def int8_linear_names(model: nn.Module, plan, view) -> list[str]:
    """The nn.Linear layers of `model` whose weight is one int8 file tensor with its scale, read as it is (no
    rename-with-transform): those an Int8Linear can hold."""
    scale_of = getattr(view, "scale", lambda k: None)
    names = []
    for name, module in model.named_modules():
        recipe = plan.get(f"{name}.weight") if isinstance(module, nn.Linear) else None
        if recipe is None or len(recipe.sources) != 1 or recipe.transform is not None:
            continue
        source = recipe.sources[0]
        if view.dtype(source) == torch.int8 and view.byte_range(source) is not None and scale_of(source) is not None:
            names.append(name)
    return names


def has_int8_weights(view) -> bool:
    return any(view.dtype(k) == torch.int8 for k in view.keys())


def keep_int8_linears(model: nn.Module, plan, view, int8: Int8Weights, compute_dtype: torch.dtype,
                      where: str) -> int:
    """Apply `int8` to a model about to be loaded from `view`: swap the Linears whose weights are int8 in the file
    for Int8Linear (on the meta device) when they are kept, else log the fallback or raise the refusal (only when
    the file has int8 weights). Returns how many layers keep int8 weights."""
    if not has_int8_weights(view):
        return 0
    if not int8.keep:
        if int8.refusal:
            raise WanLoaderError(f"{where}: {int8.refusal}")
        if int8.fallback:
            log.warning("%s: %s", where, int8.fallback)
        return 0
    names = int8_linear_names(model, plan, view)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        setattr(parent, child, Int8Linear(old.in_features, old.out_features, old.bias is not None, compute_dtype,
                                          device=old.weight.device, matmul=int8.matmul))
    return len(names)
