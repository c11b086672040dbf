"""Wan-Animate-2's driving K/V cache in host memory, brought to the device one layer ahead of use.

The driving pass keeps every layer's driving keys (rotary applied) and values for the segment's sampling steps: 25 GiB
in bf16 for 81 frames at 480p, more than a 24 or 32 GB card holds next to the weights. `HostDrivingCache` keeps them in
host memory (page-locked on CUDA, one slab for the job, reused by every segment) and the device holds
RESIDENT_CACHE_LAYERS layers at a time, what memory.plan_memory counts for it:

- driving pass (`put`): a layer's K/V are copied out on the side stream (engine.copystream) while the next block
  computes; when a layer is put, the compute stream waits for the previous layer's copy and the cache lets go of it,
  so the device holds the layer being copied out and the one the next block produces;
- sampling (`layer`): the layer's K/V are read from one of two device slots, and the next layer the pass reads is
  copied into the other slot while this one computes (after the block that last read that slot). The DiT's loop
  calls it (forward.Animate2DiT), outside the block functions, so compiled blocks see a slot's tensors as their
  k_ref/v_ref: the same values as the device cache's, hence the same frames.

The DiT names the next layer, so the unconditional CFG pass (which skips block 9) fetches block 10's after block 8's,
and the last layer of a pass fetches layer 0 for the next pass. Steps outside the driving window read nothing. With
block swap the copies share the swap's stream (one queue for the host link). Under sequence parallel each rank keeps
its own heads' shard. Cost: the whole cache crosses the host link once per DiT pass (twice per step with CFG),
overlapping the blocks' compute; how much of it shows on a GPU is not measured yet.

`int8=True` (driving_cache="host_int8", off by default) stores each token's K and V per head as int8 with a float32
scale (quantised on the device before the copy out, dequantised on the device after the copy in, a chunk of tokens at
a time): half the host memory and transfers, at a small error to the bf16 cache (tests/test_animate2_memory.py prints
it), so the frames are no longer those of the device cache.
"""
from __future__ import annotations

import torch

from ..copystream import CopyStream, Event
from ..memory import RESIDENT_CACHE_LAYERS
from ..pinned import host_empty

CHUNK_TOKENS = 4096  # int8: tokens (de)quantised at once, bounding the float32 temporaries


def quantize(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S, H, D) -> int8 values and a float32 scale per token and head (B, S, H, 1), symmetric, max |t| -> 127."""
    q = torch.empty(t.shape, dtype=torch.int8, device=t.device)
    scale = torch.empty(*t.shape[:-1], 1, dtype=torch.float32, device=t.device)
    for start in range(0, t.shape[1], CHUNK_TOKENS):
        chunk = slice(start, start + CHUNK_TOKENS)
        part = t[:, chunk].float()
        scale[:, chunk] = part.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny) / 127
        q[:, chunk] = part.div_(scale[:, chunk]).round_().clamp_(-127, 127)
    return q, scale


def dequantize(q: torch.Tensor, scale: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """`quantize`'s values back into `out` (its dtype)."""
    for start in range(0, q.shape[1], CHUNK_TOKENS):
        chunk = slice(start, start + CHUNK_TOKENS)
        out[:, chunk] = q[:, chunk].float() * scale[:, chunk]
    return out


class HostDrivingCache:
    """A segment's driving K/V in host memory for `layers` layers, filled by `Animate2DiT.driving_pass(..., host=)`
    and read through `layer` (the same reading interface as forward.DrivingCache)."""

    def __init__(self, device: torch.device | str, layers: int, copies: CopyStream | None = None, int8: bool = False):
        self.device = torch.device(device)
        self.layers = layers
        self.copies = copies or CopyStream(self.device)
        self.int8 = int8
        # host, per layer: (K, V), int8 (K, K scales, V, V scales); allocated at the first put, kept for every segment
        self.stored: list[tuple[torch.Tensor, ...]] = []
        self.like: torch.Tensor | None = None  # an empty tensor of one layer's K/V shape and dtype (what blocks read)
        self.grid: tuple[int, int, int] | None = None
        self.pending: dict[int, tuple[tuple[torch.Tensor, ...], Event]] = {}  # on the device, being copied out
        self.staging: list[tuple[torch.Tensor, ...]] = []  # per slot: the device copy of a layer's stored tensors
        self.slots: list[tuple[torch.Tensor, torch.Tensor]] = []  # per slot: its (K, V) as blocks read them
        self.in_slot: dict[int, int] = {}  # layer -> the slot holding it (copy finished or in flight)
        self.copied: dict[int, Event] = {}  # layer -> its copy into its slot done
        self.released: list[Event] = []  # slot -> the compute stream finished with it
        self.reading: int | None = None  # the layer whose slot the last block read
        self.peak_resident = 0  # most layers' K/V held on the device at once (pending + slots)
        self.fetches = 0  # layers copied into a slot

    @property
    def resident(self) -> int:
        return len(self.pending) + len(self.slots)

    def _count(self) -> None:
        self.peak_resident = max(self.peak_resident, self.resident)

    def _settle(self) -> None:
        """The compute stream waits for every copy in flight; then the device memory they touch may be reused."""
        for _, done in self.pending.values():
            self.copies.wait(done)
        for done in self.copied.values():
            self.copies.wait(done)
        self.pending.clear()

    def release(self) -> None:
        """After a segment's sampling: the slots are let go (after their copies), so the VAE has their memory; the
        host copy stays for the next segment."""
        self._settle()
        self.staging, self.slots, self.in_slot, self.copied, self.released, self.reading = [], [], {}, {}, [], None

    def close(self) -> None:
        """The job is over (or failed): the slots let go and the host waits for the copies, so the host copy may be
        freed (a page-locked slab freed under a copy in flight would fail it)."""
        self.release()
        self.copies.synchronize()

    def begin(self, grid: tuple[int, int, int]) -> None:
        """A new segment's driving pass (what the last one left on the device let go)."""
        self.release()
        self.grid = grid

    def _allocate(self, parts: tuple[torch.Tensor, ...]) -> None:
        like = list(parts) * self.layers
        if parts[0].device.type == "meta":  # traced without memory (tests/test_memory_plan.py)
            host = [torch.empty_like(t) for t in like]
        else:  # page-locked if the driver registers the slab, else pageable (slower copies): torch's pinned
            # allocator would round each layer up to a power of two, ~1.5x the cache
            host = host_empty(like, pinned=self.copies.cuda, per_tensor=False)
        self.stored = [tuple(host[i:i + len(parts)]) for i in range(0, len(host), len(parts))]

    def put(self, index: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """The driving pass produced layer `index`'s K/V on the device: copy them out behind the compute stream."""
        parts = (*quantize(k), *quantize(v)) if self.int8 else (k, v)
        if not self.stored:  # every segment of a job has the same shapes
            self._allocate(parts)
            self.like = torch.empty_like(k, device="meta")
        done = self.copies.copy(zip(self.stored[index], parts), after=self.copies.mark())
        self.pending[index] = (parts, done)
        self._count()
        for older in [i for i in self.pending if i != index]:
            self.copies.wait(self.pending[older][1])
            del self.pending[older]  # after the wait: from here the allocator may give its memory to the next block

    def finish(self) -> HostDrivingCache:
        """After the driving pass: the last layer's copy waited for, nothing of the pass left on the device."""
        self._settle()
        return self

    def _fetch(self, index: int, avoid: int | None) -> None:
        """Copy layer `index` into a slot (not the one holding layer `avoid`), after that slot's last reader."""
        if not self.slots:
            self.staging = [tuple(torch.empty_like(t, device=self.device) for t in self.stored[0])
                            for _ in range(RESIDENT_CACHE_LAYERS)]
            self.slots = [tuple(torch.empty_like(self.like, device=self.device) for _ in range(2))
                          for _ in self.staging] if self.int8 else self.staging
            self.released = [self.copies.mark() for _ in self.slots]  # fresh memory: after the work queued so far
            self._count()
        empty = [s for s in range(len(self.slots)) if s not in self.in_slot.values()]
        slot = (empty or [s for s in range(len(self.slots)) if self.in_slot.get(avoid) != s])[0]
        for other in [i for i, s in self.in_slot.items() if s == slot]:
            del self.in_slot[other]
            self.copied.pop(other, None)
        self.copied[index] = self.copies.copy(zip(self.staging[slot], self.stored[index]), after=self.released[slot])
        self.in_slot[index] = slot
        self.fetches += 1

    def layer(self, index: int, upcoming: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `index`'s (keys, values) on the device for the block about to be queued; `upcoming`: the layer the
        DiT reads next, copied in meanwhile."""
        if self.reading is not None and self.reading in self.in_slot:  # its block is queued: the slot may refill
            self.released[self.in_slot[self.reading]] = self.copies.mark()
        if index not in self.in_slot:
            self._fetch(index, avoid=upcoming)
        self.copies.wait(self.copied[index])
        slot = self.in_slot[index]
        if self.int8:  # on the compute stream, before the block (the staging refills only after the block)
            kq, ks, vq, vs = self.staging[slot]
            dequantize(kq, ks, self.slots[slot][0])
            dequantize(vq, vs, self.slots[slot][1])
        self.reading = index
        if upcoming is not None and upcoming != index and upcoming not in self.in_slot:
            self._fetch(upcoming, avoid=index)
        return self.slots[slot]
