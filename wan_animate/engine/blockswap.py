"""Block swap: keep N transformer blocks' weights in (pinned) host memory and stream each in just before it runs.

All Wan blocks have the same tensor shapes, so two device "slots" (one block's worth of tensors each) serve every
swapped block: while block i computes from one slot, the next swapped block is copied into the other on a side
stream from pinned memory (asynchronous, overlapping compute; engine.copystream). The compute stream waits only for
that copy's event and the copy stream waits for the previous user of its slot to finish, so nothing synchronises the
host. During a
block's run its parameters point at the slot; afterwards they point back at the host copies, so the model's
memory on the device is the resident blocks plus two slots.

An fp8 block (~0.4 GB) crosses PCIe 4/5 in 15-30 ms, against ~45 ms of compute per block at 480p on an H100,
so the swap is hidden when the swapped blocks are spread out (`spread_indices`).
"""
from __future__ import annotations

import torch
from torch import nn

from .copystream import CopyStream
from .forward import BlockRunner, run_block
from .pinned import on_host


def spread_indices(total: int, count: int) -> list[int]:
    """`count` block indices spread evenly over `total` (swapped blocks far apart give copies the most time)."""
    if not 0 <= count <= total:
        raise ValueError(f"blocks_on_cpu={count}: must be between 0 and the number of blocks ({total}).")
    return sorted({(i * total) // count + (total // count) // 2 for i in range(count)}) if count else []


def _tensors(block: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor]]:
    return [(m, n, t) for m in block.modules()
            for n, t in list(m._parameters.items()) + list(m._buffers.items()) if t is not None]


def _point(block_tensors, datas) -> None:
    for (_module, _name, tensor), data in zip(block_tensors, datas):
        tensor.data = data


class BlockSwap:
    """Holds `indices` of `blocks` in host memory; `runner()` is the AnimateDiT block_runner that streams them."""

    def __init__(self, blocks: nn.ModuleList, indices: list[int], device: torch.device | str, pin: bool = True):
        self.device = torch.device(device)
        self.indices = sorted(indices)
        self.order = {b: p for p, b in enumerate(self.indices)}
        self.blocks = blocks
        self.cuda = self.device.type == "cuda"
        swapped = set(self.indices)
        self.host: dict[int, list[torch.Tensor]] = {}
        for i, block in enumerate(blocks):
            if i in swapped:
                entries = _tensors(block)
                datas = on_host([t.data for _, _, t in entries], pin and self.cuda)  # one slab per block
                _point(entries, datas)
                self.host[i] = datas
            else:
                block.to(self.device)
        self.slots: list[list[torch.Tensor]] = []
        if self.indices:
            template = self.host[self.indices[0]]
            self.slots = [[torch.empty_like(d, device=self.device) for d in template] for _ in range(2)]
        self.copies = CopyStream(self.device)  # also Wan-Animate-2's host K/V cache's (one queue for the host link)
        self.copied: dict[int, torch.cuda.Event | None] = {}  # block index -> copy done (in flight or finished)
        self.released = [None, None]  # slot -> event: its last user finished

    @property
    def slot_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.slots[0]) if self.slots else 0

    def _slot(self, index: int) -> int:
        return self.order[index] % 2

    def _prefetch(self, index: int) -> None:
        if index in self.copied:
            return
        slot = self._slot(index)
        for other in [i for i in self.copied if self._slot(i) == slot]:
            del self.copied[other]
        self.copied[index] = self.copies.copy(zip(self.slots[slot], self.host[index]), after=self.released[slot])

    def _next_swapped(self, index: int) -> int:
        for i in self.indices:
            if i > index:
                return i
        return self.indices[0]  # the next step starts over

    def runner(self, inner: BlockRunner = run_block) -> BlockRunner:
        """A block_runner that brings swapped blocks in (and prefetches the next) around `inner` (any runner
        signature `(index, block, *args)`: Animate-14B's and Animate-2's)."""

        def run(index, block, *args):
            if not self.indices:
                return inner(index, block, *args)
            if index not in self.order:
                self._prefetch(self._next_swapped(index))
                return inner(index, block, *args)
            self._prefetch(index)
            slot = self._slot(index)
            self.copies.wait(self.copied[index])
            nxt = self._next_swapped(index)
            if nxt != index and self._slot(nxt) != slot:
                self._prefetch(nxt)
            entries = _tensors(block)
            _point(entries, self.slots[slot])
            try:
                out = inner(index, block, *args)
            finally:
                _point(entries, self.host[index])
            self.released[slot] = self.copies.mark()
            del self.copied[index]
            return out

        return run
