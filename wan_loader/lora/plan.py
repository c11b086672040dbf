"""Matching LoRAs to a model: which parameters change, by which LoRA at which strength, and what does not fit.

Merging and run-time application (apply.py) both start from a LoraPlan, so they change the same parameters by the
same amounts.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from .file import LoraError, LoraMismatchError, LoraWeights, LowRank, load_lora
from .keys import summarize

log = logging.getLogger(__name__)

@dataclass
class Contribution:
    """One LoRA's change to one parameter, at a strength."""

    lora: str
    strength: float
    low_rank: LowRank | None = None
    diff: torch.Tensor | None = None

    def delta(self, shape: torch.Size, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if self.low_rank is not None:
            d = self.low_rank.delta(shape, device, dtype)
        else:
            d = self.diff.to(device=device, dtype=dtype).reshape(shape).clone()
        return d.mul_(self.strength)


@dataclass
class LoraPlan:
    """Which parameters of a model change, by which LoRAs; what did not match."""

    changes: dict[str, list[Contribution]]
    unmatched: dict[str, list[str]]  # lora name -> its targets that are not in the model

    def total_delta(self, param: str, shape: torch.Size, device=None) -> torch.Tensor:
        total = None
        for c in self.changes[param]:
            d = c.delta(shape, device)
            total = d if total is None else total.add_(d)
        return total


def unwrap(model: nn.Module) -> nn.Module:
    """The module itself under a torch.compile wrapper."""
    return getattr(model, "_orig_mod", model)


def parse_loras(loras) -> list[tuple[LoraWeights, float]]:
    """Accept LoraWeights, paths, or (LoraWeights | path, strength) pairs; load paths."""
    out = []
    for item in loras:
        lora, strength = (item, 1.0) if not isinstance(item, (tuple, list)) else item
        if not isinstance(lora, LoraWeights):
            lora = load_lora(lora)
        out.append((lora, float(strength)))
    return out


def plan_loras(model: nn.Module, loras, strict: bool = False) -> LoraPlan:
    """Match LoRAs to a model's parameters; raise LoraMismatchError when one does not fit.

    A LoRA whose targets are mostly absent from the model, or whose shapes differ, is for another model: error.
    A few absent targets (e.g. image-attention layers of an I2V LoRA on a model without them) only warn,
    unless strict=True.
    """
    model = unwrap(model)
    params = dict(model.named_parameters())
    changes: dict[str, list[Contribution]] = {}
    unmatched: dict[str, list[str]] = {}
    for lora, strength in parse_loras(loras):
        missing, wrong = [], []
        entries = [(t, lr, None) for t, lr in lora.low_rank.items()] + [(t, None, d) for t, d in lora.diffs.items()]
        for target, low_rank, diff in entries:
            param = params.get(target)
            if param is None:
                missing.append(target)
                continue
            problem = _shape_problem(param.shape, low_rank, diff)
            if problem:
                wrong.append(f"{target}: {problem}")
                continue
            if strength != 0.0:
                changes.setdefault(target, []).append(Contribution(lora.name, strength, low_rank, diff))
        matched = len(entries) - len(missing) - len(wrong)
        if wrong:
            raise LoraMismatchError(
                f"LoRA {lora.name} does not fit this model: {len(wrong)} of its layers have other shapes, e.g. "
                f"{'; '.join(wrong[:3])}. It was made for another model (another Wan size or version?).")
        if missing and (strict or matched < len(missing)):
            raise LoraMismatchError(
                f"LoRA {lora.name}: {len(missing)} of its {len(entries)} layers are not in this model "
                f"({summarize(missing)}); only {matched} match. It was made for another model"
                + (" (strict matching asked for)." if strict and matched >= len(missing) else "."))
        if missing:
            log.warning("LoRA %s: %d of its %d layers are not in this model and are skipped: %s", lora.name,
                        len(missing), len(entries), summarize(missing))
            unmatched[lora.name] = missing
    _check_not_fused(model, changes)
    return LoraPlan(changes, unmatched)


def _shape_problem(shape: torch.Size, low_rank: LowRank | None, diff: torch.Tensor | None) -> str | None:
    if low_rank is not None:
        out_ok = low_rank.up.shape[0] == shape[0]
        in_ok = len(shape) >= 2 and math.prod(low_rank.down.shape[1:]) == math.prod(shape[1:])
        if not (out_ok and in_ok):
            return (f"model weight {tuple(shape)}, LoRA up {tuple(low_rank.up.shape)} x down "
                    f"{tuple(low_rank.down.shape)}")
        return None
    if diff.numel() != math.prod(shape):
        return f"model {tuple(shape)}, LoRA delta {tuple(diff.shape)}"
    return None


def _check_not_fused(model: nn.Module, changes: dict[str, list[Contribution]]) -> None:
    fused = [name for name, m in model.named_modules() if getattr(m, "fused_projections", False)]
    for target in changes:
        for name in fused:
            if target.startswith(name + "."):
                raise LoraError(f"{target}: the attention projections of {name} are fused (fuse_projections()); "
                                "apply or merge LoRAs before fusing them.")
