"""Where a component lives during a job: moved to the device and back, or borrowed from pinned host memory.

Encoders kept on the CPU (low-memory mode) are needed for a moment per job. `Module.to()` from pageable memory
runs at a few GB/s and `.to("cpu")` afterwards copies every weight back although inference never changes one
(umT5-XXL + CLIP: 15 s per job measured on an H100). `borrowed` pins the CPU weights once (first use), makes the
device copies with asynchronous copies from pinned memory, and afterwards simply drops them: the CPU tensors were
never replaced. Pinned memory cannot be swapped out, so only the encoders borrow; the transformer (17-35 GB) keeps
`moved`.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn


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
    """Move the module's CPU weights into pinned memory in place (one tensor at a time; already pinned ones are
    skipped, so later calls are cheap); False when the system refuses pinned memory (the weights stay pageable)."""
    buffers: dict[int, torch.Tensor] = {}  # a tied buffer gets one pinned copy
    try:
        for owner, name, is_param, t in list(_slots(module)):
            if t.device.type != "cpu" or t.is_pinned():
                continue
            if is_param:
                t.data = t.data.pin_memory()  # same Parameter object: ties and hooks stay
            else:
                if id(t) not in buffers:
                    buffers[id(t)] = t.pin_memory()
                _put(owner, name, False, buffers[id(t)])
    except RuntimeError:
        return False
    return True


@contextlib.contextmanager
def borrowed(module: nn.Module, device: torch.device):
    """The module on `device` for the block; its CPU weights are untouched and back in place afterwards."""
    if torch.device(device).type == "cuda":
        pin(module)
    slots = list(_slots(module))
    copies: dict[int, torch.Tensor] = {}
    try:
        for owner, name, is_param, t in slots:
            if id(t) not in copies:
                data = t.data.to(device, non_blocking=True)
                copies[id(t)] = nn.Parameter(data, requires_grad=False) if is_param else data
            _put(owner, name, is_param, copies[id(t)])
        yield module
    finally:
        for owner, name, is_param, t in slots:
            _put(owner, name, is_param, t)


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
    """`borrowed` for a CPU module that goes back afterwards (when `borrow`), else `moved`."""
    device = torch.device(device)
    if borrow and restore and module_device(module).type == "cpu" and device.type != "cpu":
        return borrowed(module, device)
    return moved(module, device, restore)
