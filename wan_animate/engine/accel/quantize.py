"""Put a transformer's big Linear layers into fp8 (FP8Linear, e4m3 + fp32 scale) in place, one layer at a time."""
from __future__ import annotations

from torch import nn

from wan_loader.fp8 import FP8Linear, fp8_linear_names, quantize_fp8


def to_fp8_linear(linear: nn.Linear, per_channel: bool = True) -> FP8Linear:
    """An FP8Linear computing in the Linear's dtype, on its device, from its weights."""
    weight = linear.weight.data
    q, scale = quantize_fp8(weight, per_channel=per_channel)
    layer = FP8Linear(linear.in_features, linear.out_features, linear.bias is not None,
                      compute_dtype=weight.dtype, per_channel=per_channel, device="meta")
    layer.weight = nn.Parameter(q, requires_grad=False)
    layer.scale = nn.Parameter(scale, requires_grad=False)
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.data, requires_grad=False)
    return layer


def quantize_transformer(model: nn.Module, per_channel: bool = True) -> int:
    """Swap the transformer/face-block Linears for FP8Linear (wan_loader.fp8's choice of layers); returns how many."""
    names = fp8_linear_names(model)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, to_fp8_linear(getattr(parent, child), per_channel))
    return len(names)
