"""fp8 weights: quantize/dequantize and a Linear that keeps fp8 weight + fp32 scale and computes in another dtype.

Scales follow ComfyUI's scaled-fp8 convention: real weight = fp8 weight * scale, the scale being one fp32 value
per tensor or one per output channel (row). Each FP8Linear's `matmul` is the seam where a fused kernel
(torch._scaled_mm on Hopper/Ada) replaces the dequantize-then-matmul default; it belongs to the layer, so two
models in one process keep their own.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _rows(scale: torch.Tensor, ndim: int) -> torch.Tensor:
    """Broadcast a scalar or per-output-channel scale against a weight of `ndim` dims."""
    return scale if scale.ndim == 0 or scale.numel() == 1 else scale.reshape(-1, *([1] * (ndim - 1)))


def quantize_fp8(w: torch.Tensor, per_channel: bool = False, dtype: torch.dtype = torch.float8_e4m3fn,
                 scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp8 weight, fp32 scale) with w ~= q * scale. The scale maps the absolute max to the fp8 max unless given."""
    w32 = w.to(torch.float32)
    fmax = torch.finfo(dtype).max
    if scale is None:
        amax = w32.abs().flatten(1).amax(dim=1) if per_channel and w32.ndim > 1 else w32.abs().amax()
        scale = (amax / fmax).clamp(min=torch.finfo(torch.float32).tiny)
    scale = scale.to(device=w32.device, dtype=torch.float32)
    q = (w32 / _rows(scale, w32.ndim)).clamp(-fmax, fmax).to(dtype)
    return q, scale


def dequantize(q: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """q * scale in `dtype` (computed in fp32 when dtype is fp32, in `dtype` otherwise, as ComfyUI does)."""
    w = q.to(dtype)
    if scale is None:
        return w
    return w * _rows(scale.to(device=w.device, dtype=dtype), w.ndim)


def dequant_matmul(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                        compute_dtype: torch.dtype) -> torch.Tensor:
    w = dequantize(weight, scale, compute_dtype)
    out = F.linear(x.to(compute_dtype), w, None if bias is None else bias.to(compute_dtype))
    return out.to(x.dtype)


FP8Matmul = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None", torch.dtype], torch.Tensor]


class ScaledWeightLinear(nn.Module):
    """A Linear holding a quantised `weight` with an fp32 `scale` (FP8Linear, int8_convrot.Int8Linear): `.to(dtype)`
    moves them between devices but never casts them (a plain cast would silently drop the scale); the compute
    dtype follows the bias."""

    def _apply(self, fn, recurse=True):
        weight, scale = self.weight.data, self.scale.data
        super()._apply(fn, recurse)
        if self.weight.dtype != weight.dtype:
            self.weight.data = weight.to(self.weight.device)
        if self.scale.dtype != torch.float32:
            self.scale.data = scale.to(self.scale.device)
        if self.bias is not None:
            self.compute_dtype = self.bias.dtype
        return self


class FP8Linear(ScaledWeightLinear):
    """nn.Linear with an fp8 weight and fp32 scale (scalar or per output channel); bias in the compute dtype.

    `matmul(x, weight, scale, bias, compute_dtype) -> y` computes the product (None: dequantise, then a plain
    matmul).
    """

    matmul: FP8Matmul | None = None

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 fp8_dtype: torch.dtype = torch.float8_e4m3fn, compute_dtype: torch.dtype = torch.bfloat16,
                 per_channel: bool = False, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype = compute_dtype
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=fp8_dtype, device=device),
                                   requires_grad=False)
        self.scale = nn.Parameter(torch.ones((out_features,) if per_channel else (), dtype=torch.float32,
                                             device=device), requires_grad=False)
        self.bias = (nn.Parameter(torch.empty(out_features, dtype=compute_dtype, device=device), requires_grad=False)
                     if bias else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.matmul or dequant_matmul)(x, self.weight, self.scale, self.bias, self.compute_dtype)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return dequantize(self.weight, self.scale, dtype or self.compute_dtype)

    def extra_repr(self) -> str:
        kind = "per-channel" if self.scale.ndim else "per-tensor"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"weight={self.weight.dtype} ({kind} scale), compute={self.compute_dtype}")


def linear_compute_dtype(linear: nn.Module) -> torch.dtype:
    """The dtype a linear layer computes in: an FP8Linear's compute dtype (its weight is fp8), else its weight's."""
    return getattr(linear, "compute_dtype", None) or linear.weight.dtype


FP8_LINEAR_PREFIXES = {"transformer": ("blocks.", "face_adapter."), "text_encoder": ("encoder.block.",)}
# transformers' T5 FFN casts its input to `wo.weight.dtype` before `wo`: an fp8 `wo` would round activations to fp8
FP8_EXCLUDED_SUFFIXES = (".DenseReluDense.wo",)


def fp8_linear_names(model: nn.Module, component: str = "transformer") -> list[str]:
    """The Linear layers of a component worth keeping in fp8: the big projections of the transformer and face
    blocks, or of the umT5 blocks (FP8_LINEAR_PREFIXES), less those that must stay in the compute dtype."""
    prefixes = FP8_LINEAR_PREFIXES[component]
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name.startswith(prefixes) and not name.endswith(FP8_EXCLUDED_SUFFIXES)]


def replace_linears(model: nn.Module, names: list[str], fp8_dtype: torch.dtype, compute_dtype: torch.dtype,
                    per_channel: bool = False) -> None:
    """Swap the named nn.Linear modules for FP8Linear, on the model's current device (meta before loading)."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        setattr(parent, child, FP8Linear(old.in_features, old.out_features, old.bias is not None, fp8_dtype,
                                         compute_dtype, per_channel, device=old.weight.device))
