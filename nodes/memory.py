"""memory="auto" inside ComfyUI's memory manager.

ComfyUI keeps its models in comfy.model_management's list of loaded models and unloads them (whole or in part)
when another node needs the device. `ManagedModel` puts the Wan Animate model in that list with the methods that
list calls (a ModelPatcher's load/unload surface), so:
- before a job the sampler enters `load_models_gpu`, which calls our `partially_load`: it asks ComfyUI's
  `free_memory` to unload ComfyUI's other models until all of ours could stay on the device (our own entry kept),
  then plans with the library's planner (wan_animate.engine.memory) on ComfyUI's numbers (free memory,
  --reserve-vram, --lowvram/--novram) and places the weights (wan_animate.engine.placement). A placed model reports
  what it placed as its size, so ComfyUI does not move it out and back between jobs;
- when a core node needs memory later, ComfyUI calls our `partially_unload`/`detach`: the weights go to pinned
  host memory and come back by the next job's plan.
"""
from __future__ import annotations

import logging

import comfy.model_management as mm
import torch

from wan_animate.engine.memory import (
    AUTO,
    DeviceBudget,
    Footprint,
    JobShape,
    MemoryPlan,
    available_host_bytes,
    host_memory_warning,
    plan_memory,
    resident_plan,
    tensor_bytes,
)
from wan_animate.engine.placement import place, swapping, to_host

log = logging.getLogger("wan_animate")


def comfy_budget(device, own_bytes: int = 0) -> DeviceBudget:
    """ComfyUI's view of the device as plain numbers: free memory (its cache included) plus what our model holds
    there now (it is what gets placed); kept free: ComfyUI's minimum inference memory (--reserve-vram included: what
    its load_models_gpu wants free, so it does not unload our placed model before each job); and the --lowvram /
    --novram wishes."""
    return DeviceBudget(free_bytes=int(mm.get_free_memory(device)) + own_bytes,
                        reserve_bytes=int(mm.minimum_inference_memory()),
                        lowvram=mm.vram_state == mm.VRAMState.LOW_VRAM,
                        novram=mm.vram_state == mm.VRAMState.NO_VRAM,
                        host_available_bytes=available_host_bytes())


def device_bytes(components, device) -> int:
    """Bytes of the model's weights on `device` now."""
    return sum(tensor_bytes(module, device) for module in (components.transformer, components.vae,
                                                           components.text_encoder, components.image_encoder))


class ManagedModel:
    """The Wan Animate model as an entry of ComfyUI's loaded-model list (duck-typed ModelPatcher surface)."""

    def __init__(self, components, device, kernels_runner, job: JobShape | None = None,
                 blocks_on_cpu: int | None = None):
        self.components = components
        self.load_device = torch.device(device)
        self.offload_device = torch.device("cpu")
        self.parent = None
        self.kernels_runner = kernels_runner
        self.blocks_on_cpu = blocks_on_cpu  # the user's fixed block-swap count, else the plan's
        self.driving_cache = AUTO  # Wan-Animate-2: the job's choice of where its K/V cache lives (auto: the plan's)
        self.footprint = Footprint.of(components)
        self.job = job or JobShape()
        self.plan: MemoryPlan | None = None
        self.swap = None
        self.placed_bytes: int | None = None  # on the device after the last placement

    @property
    def model(self) -> torch.nn.Module:
        return self.components.transformer

    # --- what comfy.model_management.LoadedModel calls ---
    def model_size(self) -> int:
        """What the model holds on the device when placed (its plan's weights), everything before the first plan:
        ComfyUI frees model_size - loaded_size for it, so a placed model is not moved out and back each job."""
        if self.placed_bytes is not None:
            return self.placed_bytes
        fp = self.footprint
        return fp.dit_bytes + fp.vae_bytes + fp.encoder_bytes

    def loaded_size(self) -> int:
        return device_bytes(self.components, self.load_device)

    def current_loaded_device(self):
        return self.load_device if self.loaded_size() else self.offload_device

    def model_dtype(self):
        return self.model.dtype

    def model_patches_to(self, device) -> None:
        return None

    def model_patches_models(self) -> list:
        return []

    def lowvram_patch_counter(self) -> int:
        return 0

    def is_clone(self, other) -> bool:
        return other is self

    def make_room(self) -> None:
        """Ask ComfyUI to unload its other models until everything of ours could stay on the device for the job
        (it stops early when that much is free; our own entry is kept)."""
        own = [entry for entry in mm.current_loaded_models if entry.model is self]
        want = resident_plan(self.footprint, self.job).peak_bytes + int(mm.minimum_inference_memory())
        mm.free_memory(want - self.loaded_size(), self.load_device, keep_loaded=own)

    def partially_load(self, device, extra_memory=0, force_patch_weights=False) -> int:
        """Make room through ComfyUI, plan on what it left free and place the weights; returns the bytes moved onto
        the device."""
        self.make_room()
        before = self.loaded_size()
        self.plan = plan_memory(self.footprint, self.job, comfy_budget(self.load_device, before), self.blocks_on_cpu,
                                self.driving_cache)
        self.swap = place(self.components, self.load_device, self.plan)
        self.placed_bytes = self.loaded_size()
        log.info("Wan Animate %s", self.plan.describe())
        warning = host_memory_warning(self.plan, available_host_bytes())
        if warning:
            log.warning("Wan Animate: %s", warning)
        return max(self.loaded_size() - before, 0)

    def partially_unload(self, device, memory_to_free=0) -> int:
        """ComfyUI needs the device: every weight goes to pinned host memory (the next job places them again)."""
        before = self.loaded_size()
        self.detach()
        return before - self.loaded_size()

    def detach(self, unpatch_all=True) -> None:
        """Out of ComfyUI's list: with unpatch_all the weights go to the host, without (ComfyUI re-registering a
        model it is about to load again) they stay."""
        if not unpatch_all:
            return
        pinned = self.load_device.type == "cuda"
        for module in (self.components.transformer, self.components.vae, self.components.text_encoder,
                       self.components.image_encoder):
            if module is not None:
                to_host(module, pinned)
        self.swap = None
        mm.soft_empty_cache()

    # --- for the sampler ---
    def prepare(self, job: JobShape, driving_cache: str = AUTO):
        """Before a job: enter ComfyUI's loaded models (it calls `partially_load`, which makes room through
        ComfyUI, plans for `job` and places the weights); returns the block runner for the job. `driving_cache`:
        the Wan-Animate-2 job's choice (the plan's `driving_cache` says where the cache goes)."""
        self.job, self.driving_cache = job, driving_cache
        mm.load_models_gpu([self])  # our activations are in the plan; make_room asks for them
        return swapping(self.swap, self.kernels_runner)
