"""Conversion plans: each target key's Recipe (which source keys to read, how to combine them), built lazily."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..dtypes import is_fp8


@dataclass(frozen=True)
class Recipe:
    """How to build one target tensor: `transform(*[get(k) for k in sources])`, or the single source as is."""

    sources: tuple[str, ...]
    transform: Callable[..., torch.Tensor] | None = None

    def build(self, get: Callable[[str], torch.Tensor]) -> torch.Tensor:
        tensors = [get(k) for k in self.sources]
        if self.transform is None:
            if len(tensors) != 1:
                raise ValueError(f"recipe from {self.sources} needs a transform")
            return tensors[0]
        return self.transform(*tensors)


Plan = dict[str, Recipe]


def renamed(pairs: dict[str, str]) -> Plan:
    """A plan of pure renames {target: source}."""
    return {target: Recipe((source,)) for target, source in pairs.items()}


def execute(plan: Plan, get: Callable[[str], torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (target key, tensor) one at a time, in plan order."""
    for target, recipe in plan.items():
        yield target, recipe.build(get)


def used_sources(plan: Plan) -> set[str]:
    return {k for r in plan.values() for k in r.sources}


def meta_shapes(plan: Plan, view) -> dict[str, tuple[int, ...]]:
    """Target shapes of a plan over a tensor source, computed on the meta device (no data read)."""
    def fake(k):
        return torch.empty(view.shape(k), dtype=view.dtype(k) if not is_fp8(view.dtype(k)) else torch.float32,
                           device="meta")
    return {t: tuple(r.build(fake).shape) for t, r in plan.items()}
