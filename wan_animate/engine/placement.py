"""Where the weights live: the transformer's resident and swapped blocks, and encoders moved or streamed per use.

`place_transformer` puts a loaded (CPU) transformer where a memory plan says, block by block, so placing never
needs more device memory than the placement itself: resident blocks go to the device, swapped blocks stay in pinned
host memory and are streamed in per step (engine.blockswap).

Encoders kept on the CPU (low-memory mode) are needed for a moment per job. `Module.to()` from pageable memory
runs at a few GB/s and `.to("cpu")` afterwards copies every weight back although inference never changes one
(umT5-XXL + CLIP: 15 s per job measured on an H100). `streamed` pins the CPU weights once (first use), makes the
device copies with asynchronous copies from pinned memory, one piece (`memory.stream_units`) at a time while it
runs, and afterwards simply drops them: the CPU tensors were never replaced, and the device holds one layer instead
of the whole encoder (umT5-XXL: 11 GB). Pinned memory cannot be swapped out, so only the encoders are streamed;
the transformer (17-35 GB) keeps `moved`.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .blockswap import BlockSwap, spread_indices
from .forward import BlockRunner
from .memory import (
    AUTO,
    ENCODER_UNIT_BYTES,
    ENCODERS_RESIDENT,
    DeviceBudget,
    Footprint,
    JobShape,
    MemoryPlan,
    available_host_bytes,
    free_device_bytes,
    plan_memory,
    stream_units,
    tensor_bytes,
)
from .pinned import on_host


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _slots(module: nn.Module):
    """(owner, name, is_parameter, tensor) of every parameter and buffer; a tied tensor appears once per owner."""
    for owner in module.modules():
        for table, is_param in ((owner._parameters, True), (owner._buffers, False)):
            for name, t in table.items():
                if t is not None:
                    yield owner, name, is_param, t


def _put(owner: nn.Module, name: str, is_param: bool, value: torch.Tensor) -> None:
    (owner._parameters if is_param else owner._buffers)[name] = value


def pin(module: nn.Module) -> bool:
    """Move the module's CPU weights into page-locked memory in place (one exact-size slab: engine.pinned; already
    pinned ones are skipped, so later calls are cheap); False when the system refuses pinned memory (the weights
    stay pageable)."""
    try:
        to_host(module, pinned=True)
    except RuntimeError:
        return False
    return True


def _direct_slots(module: nn.Module):
    for table, is_param in ((module._parameters, True), (module._buffers, False)):
        for name, t in table.items():
            if t is not None:
                yield module, name, is_param, t


def _lend(slots, device) -> None:
    """Point every slot at a device copy of its tensor (one copy per tensor, so ties stay tied)."""
    copies: dict[int, torch.Tensor] = {}
    for owner, name, is_param, t in slots:
        if id(t) not in copies:
            data = t.data.to(device, non_blocking=True)
            copies[id(t)] = nn.Parameter(data, requires_grad=False) if is_param else data
        _put(owner, name, is_param, copies[id(t)])


def _give_back(slots) -> None:
    for owner, name, is_param, t in slots:
        _put(owner, name, is_param, t)


@contextlib.contextmanager
def streamed(module: nn.Module, device: torch.device, unit_bytes: int = ENCODER_UNIT_BYTES):
    """The module on `device` for the block, each piece (`memory.stream_units`) copied in when its forward starts
    and dropped when it ends, so the device holds one piece at a time; its CPU weights are untouched."""
    if torch.device(device).type == "cuda":
        pin(module)
    original = list(_slots(module))
    hooks = []
    for unit, whole in stream_units(module, unit_bytes):
        slots = list(_slots(unit) if whole else _direct_slots(unit))
        hooks.append(unit.register_forward_pre_hook(lambda m, args, s=slots: _lend(s, device)))
        hooks.append(unit.register_forward_hook(lambda m, args, out, s=slots: _give_back(s)))
    try:
        yield module
    finally:
        for hook in hooks:
            hook.remove()
        _give_back(original)  # also after an error inside a piece


@contextlib.contextmanager
def moved(module: nn.Module, device: torch.device, restore: bool):
    """Run with `module` on `device`; move it back afterwards when `restore` (even after an error)."""
    origin = module_device(module)
    if origin != device:
        module.to(device)
    try:
        yield module
    finally:
        if restore and origin != device:
            module.to(origin)


def placed(module: nn.Module, device: torch.device, restore: bool, borrow: bool = False):
    """`streamed` for a CPU module that goes back afterwards (when `borrow`), else `moved`."""
    device = torch.device(device)
    if borrow and restore and module_device(module).type == "cpu" and device.type != "cpu":
        return streamed(module, device)
    return moved(module, device, restore)


def place_transformer(transformer: nn.Module, device, blocks_on_cpu: int = 0) -> BlockSwap | None:
    """Put the transformer on `device` one part at a time, except `blocks_on_cpu` blocks (spread evenly), which stay
    in pinned host memory; returns the BlockSwap whose `runner()` streams them in (None when nothing swaps).
    Calling it again with another count moves only the blocks that change sides."""
    device = torch.device(device)
    indices = spread_indices(len(transformer.blocks), blocks_on_cpu)
    for name, child in transformer.named_children():
        if name != "blocks":
            child.to(device)
    transformer._apply(lambda t: t.to(device), recurse=False)  # its own tensors (scale_shift_table)
    if not indices:
        for block in transformer.blocks:
            block.to(device)
        return None
    return BlockSwap(transformer.blocks, indices, device)


def swapping(swap: BlockSwap | None, inner: BlockRunner) -> BlockRunner:
    """The block runner that streams `swap`'s blocks in around `inner` (the kernels' runner); `inner` without swap."""
    return swap.runner(inner) if swap is not None else inner


def to_host(module: nn.Module, pinned: bool) -> None:
    """Move the module's weights to host memory, page-locked when `pinned`: one exact-size slab per streaming piece
    (at most ENCODER_UNIT_BYTES, so moving never holds a second copy of more than one piece; a device tensor is
    copied straight into its slab). Tied tensors stay tied."""
    for unit, whole in stream_units(module, ENCODER_UNIT_BYTES):
        slots = list(_slots(unit) if whole else _direct_slots(unit))
        unique = {id(t): t for _, _, _, t in slots}
        datas = [t.data for t in unique.values()]
        moved = {key: host for key, data, host in zip(unique, datas, on_host(datas, pinned)) if host is not data}
        for owner, name, is_param, t in slots:
            if id(t) not in moved:
                continue
            if is_param:
                t.data = moved[id(t)]
            else:
                _put(owner, name, False, moved[id(t)])


def place(components, device, plan: MemoryPlan) -> BlockSwap | None:
    """Put every component where `plan` says: the transformer block by block (its swapped blocks pinned on the
    host), the VAE on the device, the encoders on the device or pinned on the host (streamed in per use).
    Returns the transformer's BlockSwap (None when no block swaps)."""
    device = torch.device(device)
    for encoder in (components.text_encoder, components.image_encoder):
        if encoder is not None and plan.encoders != ENCODERS_RESIDENT:
            to_host(encoder, pinned=device.type == "cuda")  # first, so the device has room for what moves in
    swap = place_transformer(components.transformer, device, plan.blocks_on_cpu)
    if components.vae is not None:
        components.vae.to(device)
    for encoder in (components.text_encoder, components.image_encoder):
        if encoder is not None and plan.encoders == ENCODERS_RESIDENT:
            encoder.to(device)
    return swap


def place_for_job(components, device, job: JobShape, budget: DeviceBudget | None = None,
                  blocks_on_cpu: int | None = None, driving_cache: str = AUTO) -> tuple[MemoryPlan, BlockSwap | None]:
    """memory="auto" outside ComfyUI: plan for `job` on `budget` (default: the device's free memory, the model's
    own weights already there counted as free) and place the components; returns the plan and the BlockSwap.
    `blocks_on_cpu`, `driving_cache`: the user's fixed choices (plan_memory); the plan's `driving_cache` says where
    Wan-Animate-2's K/V cache goes (Animate2Options.driving_cache)."""
    if budget is None:
        own = sum(tensor_bytes(m, device) for m in (components.transformer, components.vae,
                                                    components.text_encoder, components.image_encoder))
        budget = DeviceBudget(free_device_bytes(device) + own, host_available_bytes=available_host_bytes())
    plan = plan_memory(Footprint.of(components), job, budget, blocks_on_cpu, driving_cache)
    return plan, place(components, device, plan)
