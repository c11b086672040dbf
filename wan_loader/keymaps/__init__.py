"""Key maps between checkpoint layouts, as lazy conversion plans.

A plan maps each *target* key to a Recipe: which source keys to read and how to combine them. Plans are built
from key names and shapes only, so the loader can stream: it reads the sources of one target tensor from the
memory-mapped file, applies the transform, casts and places the result, then moves on. No second full copy of
the weights exists at any time, and the same plan serves `convert` (writing another layout).

Each component module (transformer, vae, t5, clip) exposes, for every layout it knows:
    plan_<layout>_to_diffusers(shapes: dict[str, tuple[int, ...]]) -> Plan
    plan_diffusers_to_<layout>(shapes: dict[str, tuple[int, ...]]) -> Plan
where "diffusers" means the diffusers / transformers module's own state-dict names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch


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
