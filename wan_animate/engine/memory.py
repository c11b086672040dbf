"""memory="auto": where the weights live, how many blocks swap, whether the encoders stream and how the VAE tiles.

A plan is computed from numbers only, so it can be checked for any card without one:
- `Footprint`: the bytes of the loaded model's weights, counted from its modules (a full-size model built on the
  meta device gives the same numbers without any memory);
- `JobShape`: the segment's frames and size, which set the activations;
- `DeviceBudget`: the free device memory, less what the user reserves (ComfyUI's --reserve-vram), and ComfyUI's
  --lowvram / --novram wishes.

The estimates are upper bounds of what the engine allocates, checked against a trace of the real diffusers modules
(tests/test_memory_plan.py); a margin covers cuBLAS/cuDNN workspaces and allocator fragmentation.
What costs the least time is given up last: first the encoders leave the device (streamed in per job, layer by
layer: ~13 GB of copies, well under a second from pinned memory), then transformer blocks swap (their copies
overlap the previous blocks' compute), and only when all 40 blocks swapped still do not fit does the VAE tile
(tiles cost seconds per job: the largest tile that fits is used).

Both models go through the same rules; what differs is read from the loaded model (`Footprint.of`): Wan-Animate-2
has no face encoder, and keeps every layer's driving-video keys and values for a whole segment (its K/V cache:
2 x 40 layers x driving tokens x 5120 in 16-bit, ~27 GB for 81 frames at 480p), which its sampling steps attend next
to their own activations. The cache stays on the device when a plan with it there fits (blocks swapped as the rule
above picks); otherwise it lives in host memory and only RESIDENT_CACHE_LAYERS layers are on the device at a time
(engine.animate2.kvcache: each layer is copied in while the previous one computes; the whole cache crosses the
host link once per DiT pass, twice per step with CFG), which is given up before the VAE tiles. Where the host
memory available is known (DeviceBudget.host_available_bytes) and the bf16 cache does not fit it, the cache is kept
as int8 in host memory (half the bytes, a small error); where that does not fit either, the plan is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

GIB = 1024 ** 3
ENCODERS_RESIDENT, ENCODERS_STREAMED = "resident", "streamed"
VAE_TILES = (None, 512, 384, 256, 192)  # sample pixels per tile side; None: the whole frame at once
ENCODER_UNIT_BYTES = 1 << 30  # streamed encoders are cut into pieces of at most this size (one umT5 layer: 0.4 GB)
MARGIN_BYTES = GIB // 2  # cuBLAS/cuDNN workspaces, allocator rounding
MARGIN_FRACTION = 0.08  # and fragmentation, which grows with the memory in use
# Bytes per output pixel of one VAE chunk (4 frames) in 16-bit, through the Wan2.1 VAE's widest layers (traced).
VAE_BYTES_PER_PIXEL = 10 * 1024
AUTO = "auto"
# where Wan-Animate-2's driving K/V cache lives; host_int8: in host memory as int8 with a scale per token and head
# (half the RAM and transfers, not exact: only by the user's choice)
CACHE_DEVICE, CACHE_HOST, CACHE_HOST_INT8 = "device", "host", "host_int8"
DRIVING_CACHES = (AUTO, CACHE_DEVICE, CACHE_HOST, CACHE_HOST_INT8)
HOST_CACHES = (CACHE_HOST, CACHE_HOST_INT8)
SCALE_BYTES = 4  # an int8 cache's scale per token and head (float32)
# A host-memory K/V cache's layers on the device at once: sampling, the layer a block reads and the next one being
# copied in; the driving pass, the layer a block produces and the previous one being copied out.
RESIDENT_CACHE_LAYERS = 2


def tensor_bytes(module: nn.Module | None, device=None) -> int:
    """Bytes of the module's parameters and buffers (only those on `device` when given), each storage counted once
    (tied weights, wherever they are)."""
    if module is None:
        return 0
    device = torch.device(device) if device is not None else None
    seen: dict[tuple, int] = {}
    for t in list(module.parameters()) + list(module.buffers()):
        if device is not None and t.device != device:
            continue
        key = (t.device, t.untyped_storage()._cdata)  # the storage itself: views and ties share it (on meta too)
        seen[key] = max(seen.get(key, 0), t.numel() * t.element_size())
    return sum(seen.values())


def stream_units(module: nn.Module, max_bytes: int) -> list[tuple[nn.Module, bool]]:
    """How a module is cut for streaming: (submodule, whole) pairs covering every tensor once. A submodule no larger
    than `max_bytes` (or without children) is a whole unit; a larger one is split into its children and keeps only
    its own direct tensors (whole=False)."""
    if tensor_bytes(module) <= max_bytes or not any(True for _ in module.children()):
        return [(module, True)]
    units = [(module, False)] if any(t is not None for t in [*module._parameters.values(),
                                                             *module._buffers.values()]) else []
    for child in module.children():
        units += stream_units(child, max_bytes)
    return units


def largest_unit_bytes(module: nn.Module | None, max_bytes: int = ENCODER_UNIT_BYTES) -> int:
    if module is None:
        return 0
    sizes = []
    for unit, whole in stream_units(module, max_bytes):
        if whole:
            sizes.append(tensor_bytes(unit))
        else:
            sizes.append(sum(t.numel() * t.element_size()
                             for t in [*unit._parameters.values(), *unit._buffers.values()] if t is not None))
    return max(sizes, default=0)


@dataclass(frozen=True)
class Footprint:
    """Weight bytes of a loaded model and the transformer shape that sets its activations."""

    block_bytes: int  # the largest transformer block
    blocks: int
    dit_other_bytes: int  # the transformer outside its blocks: embeddings, motion encoder, face adapter, head
    vae_bytes: int
    encoder_bytes: int  # umT5 + CLIP
    encoder_unit_bytes: int  # the largest piece a streamed encoder is copied in
    dim: int
    ffn_dim: int
    patch: tuple[int, int, int]
    face_size: int = 512  # the motion encoder's input frames (face crops); 0: no face input (Animate-2)
    heads: int = 40  # attention heads (an int8 K/V cache has a scale per token and head)
    kv_cache_layers: int = 0  # layers whose driving-video keys/values stay on the device per segment (Animate-2)
    model: str = "Wan2.2-Animate-14B"  # named in the refusal when nothing fits
    vae_scale: int = 8  # pixels per latent pixel
    vae_time_scale: int = 4  # frames per latent frame
    activation_bytes: int = 2  # bytes per activation element (bf16)

    @classmethod
    def of(cls, components) -> Footprint:
        """Count the components' tensors (works on meta-device modules too)."""
        dit = components.transformer
        blocks = [tensor_bytes(b) for b in dit.blocks]
        config = dit.config
        encoders = [m for m in (components.text_encoder, components.image_encoder) if m is not None]
        vae = components.vae
        if components.family == "animate2":
            shape = dict(dim=config.dim, face_size=0, kv_cache_layers=len(blocks), model="Wan-Animate-2",
                         heads=config.num_heads)
        else:
            shape = dict(dim=config.num_attention_heads * config.attention_head_dim,
                         face_size=config.motion_encoder_size, heads=config.num_attention_heads)
        return cls(
            block_bytes=max(blocks), blocks=len(blocks), dit_other_bytes=tensor_bytes(dit) - sum(blocks),
            vae_bytes=tensor_bytes(vae), encoder_bytes=sum(tensor_bytes(m) for m in encoders),
            encoder_unit_bytes=max((largest_unit_bytes(m) for m in encoders), default=0),
            ffn_dim=config.ffn_dim, patch=tuple(config.patch_size), **shape,
            vae_scale=int(getattr(getattr(vae, "config", None), "scale_factor_spatial", 8) or 8) if vae else 8,
            vae_time_scale=int(getattr(getattr(vae, "config", None), "scale_factor_temporal", 4) or 4) if vae else 4,
        )

    @property
    def dit_bytes(self) -> int:
        return self.dit_other_bytes + self.blocks * self.block_bytes


@dataclass(frozen=True)
class JobShape:
    """One segment: what sets the activations (the official 77-frame 480p segment by default)."""

    frames: int = 77
    height: int = 480
    width: int = 832


@dataclass(frozen=True)
class DeviceBudget:
    """Device memory the model may use. free_bytes: free now (e.g. torch.cuda.mem_get_info, or ComfyUI's
    get_free_memory after it unloaded its own models); reserve_bytes: kept for others (--reserve-vram);
    lowvram: prefer memory over speed (encoders stream, the VAE tiles); novram: no weights stay on the device.
    host_available_bytes: host memory available for a host K/V cache (available_host_bytes(), read with the
    weights already loaded), None when unknown: memory="auto" then does not weigh host memory."""

    free_bytes: int
    reserve_bytes: int = 0
    lowvram: bool = False
    novram: bool = False
    host_available_bytes: int | None = None

    def holds_on_host(self, plan: MemoryPlan) -> bool:
        """The plan's host K/V cache fits the host memory available (page-locked memory cannot be swapped out)."""
        cache = plan.parts.get("driving_cache_host", 0)
        return self.host_available_bytes is None or cache <= self.host_available_bytes

    @property
    def usable_bytes(self) -> int:
        usable = self.free_bytes - self.reserve_bytes
        return int(usable - max(MARGIN_BYTES, MARGIN_FRACTION * usable))

    def free_bytes_for(self, usable: int) -> int:
        """The free memory under which `usable_bytes` would be `usable` (the inverse, margin and reserve added)."""
        return int(max(usable + MARGIN_BYTES, usable / (1 - MARGIN_FRACTION))) + 1 + self.reserve_bytes


def check_vae_tile(tile: int) -> None:
    if tile < 16 or tile % 16:
        raise ValueError(f"vae_tile={tile}: must be a multiple of 16 pixels (256 is the default).")


def vae_tile_stride(tile: int) -> int:
    """Pixels between the starts of neighbouring VAE tiles: they overlap by a quarter of a tile (at least one latent
    pixel), blended across the overlap (diffusers' default: 256-pixel tiles, stride 192)."""
    return tile - max(8, tile // 32 * 8)


def latent_frames(fp: Footprint, job: JobShape) -> int:
    """Latent frames of the segment's video (without the reference frame)."""
    return (job.frames - 1) // fp.vae_time_scale + 1


def frame_tokens(fp: Footprint, job: JobShape) -> int:
    """Tokens of one latent frame, patchified."""
    return (job.height // fp.vae_scale // fp.patch[1]) * (job.width // fp.vae_scale // fp.patch[2])


def tokens(fp: Footprint, job: JobShape) -> int:
    """Sequence length of one DiT forward: the latent frames plus the reference frame, patchified."""
    return (latent_frames(fp, job) + 1) // fp.patch[0] * frame_tokens(fp, job)


def check_driving_cache(where: str) -> None:
    if where not in DRIVING_CACHES:
        raise ValueError(f"driving_cache={where!r}: choose 'auto' (the memory plan's choice; on the device without "
                         "one), 'device', 'host' or 'host_int8'.")


def driving_cache_bytes(fp: Footprint, job: JobShape) -> int:
    """Animate-2's K/V cache of one segment: keys and values of every driving-video token in each layer."""
    driving_tokens = latent_frames(fp, job) // fp.patch[0] * frame_tokens(fp, job)
    return 2 * fp.kv_cache_layers * driving_tokens * fp.dim * fp.activation_bytes


def int8_cache_bytes(fp: Footprint, job: JobShape) -> int:
    """The K/V cache stored as int8: a byte per value and a scale per token and head."""
    values = driving_cache_bytes(fp, job) // fp.activation_bytes
    return values + values // (fp.dim // fp.heads) * SCALE_BYTES


def driving_cache_host_bytes(fp: Footprint, job: JobShape, where: str) -> int:
    """What the K/V cache keeps in host memory where it lives (`where`)."""
    return {CACHE_HOST: driving_cache_bytes(fp, job), CACHE_HOST_INT8: int8_cache_bytes(fp, job)}.get(where, 0)


def driving_cache_device_bytes(fp: Footprint, job: JobShape, where: str = CACHE_DEVICE) -> int:
    """What the K/V cache holds on the device: all of it, or (in host memory) RESIDENT_CACHE_LAYERS layers (int8:
    each also with its int8 copy, which is dequantised on the device)."""
    whole = driving_cache_bytes(fp, job)
    if where not in HOST_CACHES or not fp.kv_cache_layers:
        return whole
    per_layer = whole // fp.kv_cache_layers
    if where == CACHE_HOST_INT8:
        per_layer += int8_cache_bytes(fp, job) // fp.kv_cache_layers
    return per_layer * min(RESIDENT_CACHE_LAYERS, fp.kv_cache_layers)


def job_tensor_bytes(fp: Footprint, job: JobShape) -> int:
    """The segment's pixels on the device: pose, conditioning video and decoded frames as float32, face crops."""
    pixels = 3 * job.frames * job.height * job.width
    return 3 * pixels * 4 + 3 * job.frames * fp.face_size * fp.face_size * 4


def dit_activation_bytes(fp: Footprint, job: JobShape, driving_cache: str = CACHE_DEVICE) -> int:
    """Peak activations of one DiT forward: the FFN's hidden layer twice (projection + GELU) and four float32
    copies of the hidden states (norms and modulation upcast), plus the segment's tensors and (Animate-2) what the
    driving K/V cache the forward attends holds on the device (`driving_cache`: where it lives)."""
    n = tokens(fp, job)
    return (2 * n * fp.ffn_dim * fp.activation_bytes + 4 * n * fp.dim * 4 + job_tensor_bytes(fp, job)
            + driving_cache_device_bytes(fp, job, driving_cache))


def vae_peak_bytes(fp: Footprint, job: JobShape, tile: int | None) -> int:
    """Peak of a VAE encode/decode of the segment: one tile's (or frame's) activations plus the whole video three
    times in 16-bit (tiles kept for blending, the concatenation) and the segment's tensors."""
    tile_pixels = job.height * job.width if tile is None else min(tile, job.height) * min(tile, job.width)
    video = 3 * job.frames * job.height * job.width * fp.activation_bytes
    return VAE_BYTES_PER_PIXEL * tile_pixels + 3 * video + job_tensor_bytes(fp, job)


def encoder_peak_bytes(fp: Footprint, streamed: bool) -> int:
    """Encoding a prompt/reference (512 tokens, one image: small activations): a streamed encoder holds one piece
    at a time (each is dropped before the next is copied in)."""
    return fp.encoder_unit_bytes + GIB // 4 if streamed else GIB // 4


class NotEnoughMemory(RuntimeError):
    """No placement fits the device; the message names the minimum and what to change."""


@dataclass(frozen=True)
class MemoryPlan:
    """Where everything goes for one model on one device, and the numbers it was decided from."""

    blocks_on_cpu: int
    encoders: str  # ENCODERS_RESIDENT | ENCODERS_STREAMED
    vae_tile: int | None  # None: the VAE works on whole frames
    weights_bytes: int  # on the device between jobs
    peak_bytes: int  # weights + the largest transient (DiT activations, VAE, encoders)
    budget_bytes: int  # what the device may use (free - reserve - margin)
    parts: dict = field(default_factory=dict)  # the estimates, for the log
    driving_cache: str = CACHE_DEVICE  # where Wan-Animate-2's driving K/V cache lives (CACHE_DEVICE | CACHE_HOST)
    host_bytes: int = 0  # kept in host memory: swapped blocks, streamed encoders, a host K/V cache

    @property
    def tiled_vae(self) -> bool:
        return self.vae_tile is not None

    def vae_tiling(self, tiled: bool, tile: int) -> tuple[bool, int]:
        """A job's (tiled_vae, vae_tile) under this plan: tiled when the job or the plan asks, at the plan's tile."""
        return tiled or self.tiled_vae, self.vae_tile or tile

    def describe(self) -> str:
        gib = lambda b: f"{b / GIB:.1f}"  # noqa: E731
        vae = f"tiled {self.vae_tile}px" if self.vae_tile else "whole frames"
        cache = self.parts.get("driving_cache", 0)
        if not cache:
            where = ""
        elif self.driving_cache in HOST_CACHES:
            int8 = f" as int8 ({gib(self.parts['driving_cache_host'])} GiB)" \
                if self.driving_cache == CACHE_HOST_INT8 else ""
            where = (f", driving K/V cache {gib(cache)} GiB in host memory{int8} ({RESIDENT_CACHE_LAYERS} of "
                     f"{self.parts.get('blocks', '?')} layers on the device at a time)")
        else:
            where = f", driving K/V cache {gib(cache)} GiB on the device"
        return (f"memory plan: {self.blocks_on_cpu} of {self.parts.get('blocks', '?')} transformer blocks swapped from "
                f"host memory, encoders {self.encoders}, VAE {vae}{where}; device weights {gib(self.weights_bytes)} "
                f"GiB, peak ~{gib(self.peak_bytes)} of {gib(self.budget_bytes)} GiB usable; host memory "
                f"{gib(self.host_bytes)} GiB")


def _plan(fp: Footprint, job: JobShape, blocks_on_cpu: int, encoders: str, tile: int | None,
          budget: int, driving_cache: str = CACHE_DEVICE) -> MemoryPlan:
    resident_blocks = fp.blocks - blocks_on_cpu
    slots = 2 * fp.block_bytes if blocks_on_cpu else 0
    streamed = encoders == ENCODERS_STREAMED
    weights = (fp.dit_other_bytes + resident_blocks * fp.block_bytes + slots + fp.vae_bytes
               + (0 if streamed else fp.encoder_bytes))
    cache = driving_cache_bytes(fp, job)
    parts = {"blocks": fp.blocks, "block_bytes": fp.block_bytes,
             "dit_activations": dit_activation_bytes(fp, job, driving_cache), "vae": vae_peak_bytes(fp, job, tile),
             "encoders": encoder_peak_bytes(fp, streamed), "driving_cache": cache,
             "driving_cache_host": driving_cache_host_bytes(fp, job, driving_cache)}
    transient = max(parts["dit_activations"], parts["vae"], parts["encoders"])
    host = (blocks_on_cpu * fp.block_bytes + (fp.encoder_bytes if streamed else 0)
            + parts["driving_cache_host"])
    return MemoryPlan(blocks_on_cpu, encoders, tile, weights, weights + transient, budget, parts, driving_cache, host)


def resident_plan(fp: Footprint, job: JobShape) -> MemoryPlan:
    """Everything on the device: the fastest placement, and the most memory the model could use for `job`."""
    return _plan(fp, job, 0, ENCODERS_RESIDENT, None, 0)


def plan_memory(fp: Footprint, job: JobShape, budget: DeviceBudget, blocks_on_cpu: int | None = None,
                driving_cache: str = AUTO) -> MemoryPlan:
    """The fastest placement that fits `budget` (see the module docstring for the order things are given up);
    `blocks_on_cpu` fixes the block-swap count and `driving_cache` ("device" / "host") where Wan-Animate-2's K/V cache
    lives (the user's choices); the rest is planned around them."""
    check_driving_cache(driving_cache)
    # auto: the device, else host memory; int8 in host memory only where the bf16 cache does not fit the host's
    # (so only when the host memory is known)
    host_known = budget.host_available_bytes is not None
    caches = ([CACHE_DEVICE] if not fp.kv_cache_layers else [driving_cache] if driving_cache != AUTO
              else [CACHE_DEVICE, CACHE_HOST, CACHE_HOST_INT8] if host_known else [CACHE_DEVICE, CACHE_HOST])
    host_short = None  # the last plan that fit the device but not the host memory (auto only: int8 if it got there)
    usable = budget.usable_bytes
    tiles = [t for t in VAE_TILES if t is not None] if budget.lowvram or budget.novram else list(VAE_TILES)
    encoder_choices = [ENCODERS_STREAMED] if budget.lowvram or budget.novram else [ENCODERS_RESIDENT,
                                                                                   ENCODERS_STREAMED]
    swaps = [blocks_on_cpu] if blocks_on_cpu is not None else [fp.blocks] if budget.novram else range(fp.blocks + 1)
    for tile in tiles:
        for cache in caches:
            for encoders in encoder_choices:
                for swapped in swaps:
                    plan = _plan(fp, job, swapped, encoders, tile, usable, cache)
                    if plan.peak_bytes <= usable:
                        if driving_cache != AUTO or budget.holds_on_host(plan):
                            return plan
                        host_short = plan
                        break  # more swapping only needs more host memory
                    if encoders == ENCODERS_RESIDENT and blocks_on_cpu is None:
                        break  # resident encoders only when nothing swaps
    if host_short is not None:
        cache = host_short.parts["driving_cache_host"]
        int8 = " (int8)" if host_short.driving_cache == CACHE_HOST_INT8 else ""
        raise NotEnoughMemory(
            f"{fp.model}'s driving K/V cache for {job.frames} frames at {job.width}x{job.height} does not fit the "
            f"device, and in host memory it needs {cache / GIB:.1f} GiB{int8} where "
            f"{budget.host_available_bytes / GIB:.1f} GiB is available: use shorter segments or a smaller size, or "
            f"free host memory.")
    smallest_each = [_plan(fp, job, fp.blocks if blocks_on_cpu is None else blocks_on_cpu, ENCODERS_STREAMED,
                           VAE_TILES[-1], usable, cache) for cache in caches]
    allowed = [p for p in smallest_each if driving_cache != AUTO or budget.holds_on_host(p)] or smallest_each
    smallest = min(allowed, key=lambda p: p.peak_bytes)
    need = budget.free_bytes_for(smallest.peak_bytes)
    cache = {CACHE_HOST: ", driving K/V cache in host memory", CACHE_HOST_INT8: ", driving K/V cache in host memory",
             CACHE_DEVICE: ", driving K/V cache on the device"}
    host_cache = ("keep the driving K/V cache in host memory (driving_cache host), "
                  if fp.kv_cache_layers and caches == [CACHE_DEVICE] else "")
    raise NotEnoughMemory(
        f"{fp.model} needs at least {need / GIB:.1f} GiB of free device memory for {job.frames} frames at "
        f"{job.width}x{job.height} ({smallest.blocks_on_cpu} of {fp.blocks} blocks swapped, encoders streamed, "
        f"VAE tiled{cache[smallest.driving_cache] if fp.kv_cache_layers else ''}); "
        f"{max(budget.free_bytes - budget.reserve_bytes, 0) / GIB:.1f} GiB is free: lower the resolution or "
        f"segment length, use fp8 precision, {host_cache}close other GPU programs or lower --reserve-vram.")


def host_memory_warning(plan: MemoryPlan, available: int | None) -> str | None:
    """One line when the plan's host K/V cache needs more host memory than is `available` after placement (the
    weights it keeps there are already loaded): page-locked memory cannot be swapped out, so the system would thrash
    or stop the process. None when it fits or nothing is known."""
    cache = plan.parts.get("driving_cache_host", 0)
    if not cache or available is None or cache <= available:
        return None
    return (f"the driving K/V cache in host memory needs {cache / GIB:.1f} GiB and {available / GIB:.1f} GiB of host "
            f"memory is available: use shorter segments, a smaller size, driving_cache host_int8 (half the memory) or "
            f"a GPU that holds it")


def available_host_bytes() -> int | None:
    """Host memory available now (psutil, which ComfyUI installs), None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def free_device_bytes(device) -> int:
    """Free memory of a CUDA device now (the caching allocator's cached-but-unused blocks count as free)."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"memory planning needs a CUDA device; {device} has no device memory to plan.")
    free, _ = torch.cuda.mem_get_info(device)
    reserved = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return free + reserved
