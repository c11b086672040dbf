"""Page-locked host copies of many tensors in one exact-size slab.

torch's pinned allocator rounds every allocation up to a power of two: a 67 MB fp8 FFN weight takes 128 MB, and
the weights kept on the host (swapped blocks, streamed encoders) would need about 1.5x their size. Here the
tensors of one module share one ordinary host allocation of exactly their size, page-locked with
cudaHostRegister (unregistered when the last view of it is gone), so asynchronous copies to the GPU work as from
torch's pinned memory and the host holds what the weights weigh.
"""
from __future__ import annotations

import weakref

import torch

ALIGN = 512  # bytes: every tensor starts on a boundary the copy engines like


def _register(slab: torch.Tensor) -> bool:
    cudart = torch.cuda.cudart()
    if int(cudart.cudaHostRegister(slab.data_ptr(), slab.numel(), 0)) != 0:
        return False
    weakref.finalize(slab.untyped_storage(), cudart.cudaHostUnregister, slab.data_ptr())
    return True


def host_empty(like: list[torch.Tensor], pinned: bool = True, per_tensor: bool = True) -> list[torch.Tensor]:
    """Uninitialised host tensors of `like`'s shapes and dtypes carved out of one slab, page-locked when `pinned`
    (needs a CUDA device; if the driver refuses to register the slab, torch's pinned memory per tensor, or with
    `per_tensor=False` the slab as it is, pageable)."""
    offsets, total = [], 0
    for t in like:
        offsets.append(total)
        total += -(-t.numel() * t.element_size() // ALIGN) * ALIGN
    slab = torch.empty(max(total, 1), dtype=torch.uint8)
    if pinned and not (torch.cuda.is_available() and _register(slab)) and per_tensor:
        return [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in like]
    return [slab[offset:offset + t.numel() * t.element_size()].view(t.dtype).view(t.shape)
            for t, offset in zip(like, offsets)]


def pinned_copies(tensors: list[torch.Tensor], pinned: bool = True) -> list[torch.Tensor]:
    """Host copies of `tensors` (same shapes and dtypes) in one slab (`host_empty`), page-locked when `pinned`."""
    copies = host_empty(tensors, pinned)
    for copy, t in zip(copies, tensors):
        copy.copy_(t.detach())
    return copies


def on_host(tensors: list[torch.Tensor], pinned: bool) -> list[torch.Tensor]:
    """`tensors` in host memory (page-locked when `pinned`): those already there stay, the others are copied into
    one slab."""
    ready = [t.device.type == "cpu" and (not pinned or t.is_pinned()) for t in tensors]
    copies = iter(pinned_copies([t for t, ok in zip(tensors, ready) if not ok], pinned) if not all(ready) else [])
    return [t if ok else next(copies) for t, ok in zip(tensors, ready)]
