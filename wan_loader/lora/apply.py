"""Putting LoRAs into a model: merged into the weights, or added at run time by removable forward hooks.

Both ways start from the same LoraPlan (lora.plan_loras), so they change the same parameters by the same amounts.

Merged: each changed weight becomes W + sum(strength * delta), computed in fp32 and stored back in the weight's own
format, FP8Linear weights re-quantized with their scale scheme (merge.py). Unmerging restores the exact original
bits when `keep_original=True` (at a fraction of the cost of a copy, see merge.py), else subtracts the deltas again
(exact up to rounding).

Run time: nn.Linear / FP8Linear layers get a forward hook adding strength * scale * up(down(x)) (+ bias deltas);
the factors of all LoRAs of one call are concatenated so each layer does two small matmuls whatever the count.
Other parameters (norm weights, modulation tables, convolutions) are small: they are changed in place and restored
bit-exactly from a saved original when the last handle touching them is removed, in any order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..fp8 import FP8Linear, linear_compute_dtype
from .file import LoraError
from .merge import Residual, Snapshot, merge_into, unmerge_from
from .plan import Contribution, LoraPlan, plan_loras, unwrap

_PATCHES = "_wan_lora_patches"  # module.__dict__ entry: {attr: {"original": tensor, "deltas": {handle id: delta}}}


def _owner(model: nn.Module, param_name: str) -> tuple[nn.Module, str]:
    module_name, _, attr = param_name.rpartition(".")
    return (model.get_submodule(module_name) if module_name else model), attr


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, FP8Linear))


class LoraHandle:
    """What merge_loras / apply_loras return: the plan they followed, and remove() (also on leaving a `with`)."""

    def __init__(self, model: nn.Module, plan: LoraPlan):
        self.model, self.plan = model, plan

    @property
    def changed(self) -> list[str]:
        """The parameters the LoRAs change."""
        return list(self.plan.changes)

    @property
    def unmatched(self) -> dict[str, list[str]]:
        """Per LoRA file, its layers that are not in the model (skipped, with a warning)."""
        return self.plan.unmatched

    def remove(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class MergedLoras(LoraHandle):
    """LoRAs merged into a model's weights. `unmerge()` (= `remove()`) takes them out again (module docstring)."""

    def __init__(self, model: nn.Module, plan: LoraPlan, undo: dict[str, Snapshot | Residual | None]):
        super().__init__(model, plan)
        self._undo = undo
        self.merged = True

    @property
    def kept_bytes(self) -> int:
        """CPU bytes held for an exact unmerge (keep_original=True)."""
        return sum(u.nbytes if isinstance(u, Residual) else sum(t.nbytes for t in u.tensors.values())
                   for u in self._undo.values() if u is not None)

    def remove(self) -> None:
        self.unmerge()

    def unmerge(self) -> None:
        if not self.merged:
            return
        with torch.no_grad():
            for name in self.plan.changes:
                module, attr = _owner(self.model, name)
                p = getattr(module, attr)
                unmerge_from(module, attr, self.plan.total_delta(name, p.shape, p.device), self._undo.get(name))
        self.merged = False
        self._undo = {}


def merge_loras(transformer: nn.Module, loras, *, keep_original: bool = False, strict: bool = False) -> MergedLoras:
    """Add each LoRA's delta (times its strength) into the weights. loras: [(LoraWeights | path, strength), ...]."""
    model = unwrap(transformer)
    plan = plan_loras(model, loras, strict=strict)
    for name in plan.changes:
        module, attr = _owner(model, name)
        if attr in module.__dict__.get(_PATCHES, {}):
            raise LoraError(f"{name} carries run-time LoRAs: remove them (handle.remove()) before merging.")
    undo = {}
    with torch.no_grad():
        try:
            for name in plan.changes:
                module, attr = _owner(model, name)
                p = getattr(module, attr)
                undo[name] = merge_into(module, attr, plan.total_delta(name, p.shape, p.device), keep_original)
        except BaseException:  # out of memory, interrupted: take out what went in, leave no half-merged model
            done = LoraPlan({name: plan.changes[name] for name in undo}, plan.unmatched)
            MergedLoras(model, done, undo).unmerge()
            raise
    return MergedLoras(model, plan, undo)


# --------------------------------------------------------------------------------------------------------- run time

class LinearLoraHook:
    """Forward hook of one Linear / FP8Linear: output += x @ (sum of deltas).T, in low-rank form where possible."""

    def __init__(self, module: nn.Module, weight: list[Contribution], bias: list[Contribution]):
        device = module.weight.device
        self.dtype = linear_compute_dtype(module)
        downs, ups, full = [], [], None
        for c in weight:
            if c.low_rank is not None:
                downs.append(c.low_rank.down.to(device, torch.float32).flatten(1) * (c.strength * c.low_rank.scale))
                ups.append(c.low_rank.up.to(device, torch.float32).flatten(1))
            else:
                d = c.delta(module.weight.shape, device)
                full = d if full is None else full.add_(d)
        self.down = torch.cat(downs).to(self.dtype) if downs else None
        self.up = torch.cat(ups, dim=1).to(self.dtype) if ups else None
        self.full = full.to(self.dtype) if full is not None else None
        bias_delta = None
        for c in bias:
            d = c.delta(torch.Size([module.out_features]), device)
            bias_delta = d if bias_delta is None else bias_delta.add_(d)
        self.bias = bias_delta.to(self.dtype) if bias_delta is not None else None

    def _to(self, device: torch.device) -> None:
        for name in ("down", "up", "full", "bias"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))

    def __call__(self, module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        x = args[0].to(self.dtype)
        if next(t for t in (self.down, self.full, self.bias) if t is not None).device != x.device:
            self._to(x.device)
        extra = None
        if self.down is not None:
            extra = F.linear(F.linear(x, self.down), self.up)
        if self.full is not None:
            y = F.linear(x, self.full)
            extra = y if extra is None else extra + y
        if self.bias is not None:
            extra = self.bias.expand(output.shape) if extra is None else extra + self.bias
        extra = extra.to(output.dtype)
        if torch.is_grad_enabled() and (output.requires_grad or extra.requires_grad):
            return output + extra
        return output.add_(extra)  # inference: no second output-sized tensor


def _patch(module: nn.Module, attr: str, key: int, delta: torch.Tensor | None) -> None:
    """Set (delta) or clear (None) one handle's in-place change of module.attr; recompute from the original."""
    registry = module.__dict__.setdefault(_PATCHES, {})
    p = getattr(module, attr)
    entry = registry.setdefault(attr, {"original": p.detach().clone(), "deltas": {}})
    if delta is None:
        entry["deltas"].pop(key, None)
    else:
        entry["deltas"][key] = delta
    with torch.no_grad():
        if entry["deltas"]:
            total = entry["original"].float() + sum(entry["deltas"].values())
            p.data.copy_(total.to(p.dtype))
        else:
            p.data.copy_(entry["original"])
            del registry[attr]
            if not registry:
                del module.__dict__[_PATCHES]


class RuntimeLoras(LoraHandle):
    """LoRAs applied at run time. `remove()` (or leaving a `with` block) takes them off and restores the model."""

    def __init__(self, model: nn.Module, plan: LoraPlan):
        super().__init__(model, plan)
        self._hooks = []
        self._patched: list[tuple[nn.Module, str]] = []
        self.active = True

    def remove(self) -> None:
        if not self.active:
            return
        for h in self._hooks:
            h.remove()
        for module, attr in self._patched:
            _patch(module, attr, id(self), None)
        self._hooks, self._patched = [], []
        self.active = False


def apply_loras(transformer: nn.Module, loras, *, strict: bool = False) -> RuntimeLoras:
    """Apply LoRAs at run time (weights untouched). loras: [(LoraWeights | path, strength), ...]."""
    model = unwrap(transformer)
    plan = plan_loras(model, loras, strict=strict)
    handle = RuntimeLoras(model, plan)
    per_linear: dict[nn.Module, dict[str, list[Contribution]]] = {}
    try:
        for name, contributions in plan.changes.items():
            module, attr = _owner(model, name)
            if _is_linear(module) and attr in ("weight", "bias"):
                per_linear.setdefault(module, {"weight": [], "bias": []})[attr].extend(contributions)
                continue
            p = getattr(module, attr)
            delta = plan.total_delta(name, p.shape, p.device)
            _patch(module, attr, id(handle), delta)
            handle._patched.append((module, attr))
        for module, parts in per_linear.items():
            handle._hooks.append(module.register_forward_hook(LinearLoraHook(module, parts["weight"], parts["bias"])))
    except BaseException:
        handle.remove()
        raise
    return handle
