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

from . import clip, t5, transformer, transformer_animate2, vae
from .plan import Plan, Recipe, execute, meta_shapes, renamed, used_sources

KEYMAPS = {"transformer": transformer, "vae": vae, "text_encoder": t5, "image_encoder": clip}  # weights components
TRANSFORMER_KEYMAPS = {"animate": transformer, "animate2": transformer_animate2}  # per transformer family


def keymap(component: str, family: str = "animate"):
    """The key-map module of a component (the transformer's depends on its family)."""
    return TRANSFORMER_KEYMAPS[family] if component == "transformer" else KEYMAPS[component]


def plan_to_diffusers(component: str, part) -> Plan:
    """The plan from an identified file (model.detect.Identified: its layout and tensor view) to module names."""
    view = part.view
    if part.layout == "diffusers":
        return renamed({k: k for k in view.keys()})
    return getattr(keymap(component, part.family), f"plan_{part.layout}_to_diffusers")(view.shapes())


def ignorable_keys(component: str, part) -> set[str]:
    """Keys of an identified file that the module has no place for and that are safe to skip."""
    keys = part.view.keys()
    if component == "transformer":
        return {k for k in keys if part.family == "animate" and transformer.is_ignorable_original_key(k)}
    fn = getattr(KEYMAPS[component], f"ignored_{part.layout}_keys", None)
    return set(fn(keys)) if fn else set()


__all__ = ["KEYMAPS", "TRANSFORMER_KEYMAPS", "keymap", "Plan", "Recipe", "execute", "ignorable_keys", "meta_shapes", "plan_to_diffusers", "renamed",
           "used_sources"]
