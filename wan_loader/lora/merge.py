"""Merging a delta into one parameter in its own storage format, and undoing it exactly without a full weight copy.

A float weight becomes W' = round(W + d) (the sum in fp32). Undoing computes round(W' - d), which is W for most
elements; where it is not (rounding across a power of two, ties), the original value is kept aside. What is kept: a bit
mask of those positions (1 bit per element) and their original values, on the CPU. For LoRA-sized deltas that is
5-25% of the elements, so a tenth to a third of a full copy; for a 14B model in bf16 a few GB instead of 34.

An FP8Linear weight is dequantized, changed and re-quantized with its own scheme (per tensor or per output channel,
the scale recomputed from the new absolute max); its exact undo is a CPU copy of the fp8 weight and scale (1 byte per
element), since a new scale changes every element.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..dtypes import is_fp8
from ..fp8 import FP8Linear, quantize_fp8

_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_BIT = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


@dataclass
class Snapshot:
    """Full CPU copies of the tensors a merge changes (fp8 weight + scale)."""

    tensors: dict[str, torch.Tensor]


@dataclass
class Residual:
    """Where round(W' - d) != W: a packed bit mask of the positions and the original values there (CPU)."""

    mask: torch.Tensor    # uint8, ceil(numel / 8)
    values: torch.Tensor  # original values at the masked positions, in the weight's dtype
    numel: int

    @property
    def nbytes(self) -> int:
        return self.mask.numel() + self.values.numel() * self.values.element_size()


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    view = _INT_VIEW[a.element_size()]
    return a.view(view) == b.view(view)


def _pack(mask: torch.Tensor) -> torch.Tensor:
    flat = mask.reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8).to(torch.uint8) * _BIT.to(flat.device)).sum(1, dtype=torch.uint8)


def _unpack(packed: torch.Tensor, numel: int) -> torch.Tensor:
    return ((packed[:, None] & _BIT.to(packed.device)) != 0).reshape(-1)[:numel]


def _is_fp8_linear_weight(module: nn.Module, attr: str) -> bool:
    return isinstance(module, FP8Linear) and attr == "weight"


def merge_into(module: nn.Module, attr: str, delta: torch.Tensor, keep: bool) -> Snapshot | Residual | None:
    """module.attr += delta (an fp32 tensor of its shape); with keep, what `unmerge_from` needs to undo it exactly."""
    if _is_fp8_linear_weight(module, attr):
        undo = Snapshot({n: getattr(module, n).detach().to("cpu", copy=True) for n in ("weight", "scale")}) \
            if keep else None
        w = module.dequantized_weight(torch.float32).add_(delta)
        q, scale = quantize_fp8(w, per_channel=module.scale.ndim > 0, dtype=module.weight.dtype)
        module.weight.data.copy_(q)
        module.scale.data.copy_(scale.reshape(module.scale.shape))
        return undo
    p = getattr(module, attr)
    if is_fp8(p.dtype):  # a plain fp8 tensor (no scale): saturate like the quantizer does
        undo = Snapshot({attr: p.detach().to("cpu", copy=True)}) if keep else None
        fmax = torch.finfo(p.dtype).max
        p.data.copy_((p.data.float() + delta).clamp_(-fmax, fmax).to(p.dtype))
        return undo
    new = (p.data.float() + delta).to(p.dtype)  # out of place: .float() of an fp32 weight is the weight itself
    undo = None
    if keep:
        back = (new.float() - delta).to(p.dtype)
        differs = ~_same_bits(back, p.data)
        undo = Residual(_pack(differs).cpu(), p.data[differs].cpu(), p.numel())
    p.data.copy_(new)
    return undo


def unmerge_from(module: nn.Module, attr: str, delta: torch.Tensor, undo: Snapshot | Residual | None) -> None:
    """Take a merged delta out again: exactly with the `undo` merge_into returned, else by subtraction."""
    if isinstance(undo, Snapshot):
        for name, t in undo.tensors.items():
            getattr(module, name).data.copy_(t)
        return
    if undo is None:
        merge_into(module, attr, -delta, keep=False)
        return
    p = getattr(module, attr)
    back = (p.data.float() - delta).to(p.dtype)
    differs = _unpack(undo.mask.to(p.device), undo.numel).reshape(p.shape)
    back[differs] = undo.values.to(p.device)
    p.data.copy_(back)
