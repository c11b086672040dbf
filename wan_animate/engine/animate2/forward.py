"""The Wan-Animate-2 DiT forward, with the work split by how often it changes.

The model definition stays diffusers' `WanAnimate2Transformer3DModel` (same modules, weights and maths); the order
of work differs from its `forward`:

- per job:     `encode_context` (umT5 text and CLIP tokens projected once for each prompt and image);
- per segment: `driving_pass` runs the driving-video tokens through every block once and keeps each layer's
               keys (rotary applied) and values, on the device (`DrivingCache`) or in host memory
               (kvcache.HostDrivingCache, read back a layer ahead of use). diffusers keeps them before rotary and
               re-applies it at every step; the reference pass uses the fixed timestep 1, as diffusers does;
- per step:    `time_embedding`, then `__call__` over the generation tokens with in-context attention
               (attention.py) instead of a flex BlockMask.

Seams for the fast paths are those of the Animate-14B forward: swapped `nn.Linear`s (fp8), the self-attention
kernel (`kernel`, `lse_kernel`), diffusers' attention backend for cross-attention, `block_runner` (block swap: it
calls `run(block)` for each block in order) and `blocks` (compiled blocks). One block's work is a module-level
function of tensors and the block (`generation_block`, `driving_block`): its layer's driving keys/values come in
as arguments (fetched from a host cache in the loop here, outside the function), so one compiled graph serves all
40 blocks (accel.compile.compile_function).

Sequence parallel (`sequence`, Ulysses only): each rank runs the blocks on its slice of the tokens; self-attention
turns q/k/v into (all tokens, heads / N) and back (parallel.sequence.Split.to_heads), so the in-context attention
and the driving K/V cache work on whole sequences of the rank's heads (the cache holds 1/N of the heads per rank).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from wan_loader.fp8 import linear_compute_dtype

from ..accel.processors import apply_rotary, sdpa_kernel
from ..parallel.sequence import SequenceParallel, check_ulysses, split_for
from ..parallel.weights import unsharding
from . import attention
from .kvcache import HostDrivingCache
from .rope import reference_offsets, rotary_tables

UNCONDITIONAL_SKIPPED_BLOCK = 9  # the unconditional CFG pass skips this block (diffusers `is_uncondtion`)
REFERENCE_TIMESTEP = 1.0  # the driving pass is modulated at this fixed timestep

BlockCall = Callable[[torch.nn.Module], torch.Tensor]
Animate2BlockRunner = Callable[[int, torch.nn.Module, BlockCall], torch.Tensor]


def run_block(index: int, block: torch.nn.Module, call: BlockCall) -> torch.Tensor:
    return call(block)


@dataclass
class Context:
    """Projected cross-attention inputs of one prompt + image: text tokens and CLIP tokens (or None)."""

    text: torch.Tensor
    image: torch.Tensor | None


@dataclass
class DrivingCache:
    """Per-layer driving-video keys (rotary applied) and values of one segment, (B, T*hw, H, D) each."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    grid: tuple[int, int, int]

    def layer(self, index: int, upcoming: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `index`'s keys and values (`upcoming`, the layer read next, matters to a host cache only)."""
        return self.keys[index], self.values[index]


def _qkv(attn, x, rotary):
    q = attn.norm_q(attn.to_q(x)).unflatten(2, (attn.heads, -1))
    k = attn.norm_k(attn.to_k(x)).unflatten(2, (attn.heads, -1))
    v = attn.to_v(x).unflatten(2, (attn.heads, -1))
    return apply_rotary(q, *rotary), apply_rotary(k, *rotary), v


def _out(attn, out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return attn.to_out[1](attn.to_out[0](out.flatten(2, 3).type_as(like)))


def _block(block, hidden, proj, context: Context, self_attention) -> torch.Tensor:
    """One WanAnimate2TransformerBlock with `self_attention(attn, normed hidden) -> (B, S, dim)`."""
    shift, scale, gate, c_shift, c_scale, c_gate = (block.modulation + proj).chunk(6, dim=1)
    normed = (block.norm1(hidden.float()) * (1 + scale) + shift).type_as(hidden)
    hidden = (hidden.float() + self_attention(block.self_attn, normed) * gate).type_as(hidden)
    hidden = hidden + block.cross_attn(block.norm3(hidden.float()).type_as(hidden),
                                       encoder_hidden_states=context.text,
                                       encoder_hidden_states_image=context.image)
    normed = (block.norm2(hidden.float()) * (1 + c_scale) + c_shift).type_as(hidden)
    return (hidden.float() + block.ffn(normed).float() * c_gate).type_as(hidden)


def driving_block(block, hidden, proj, context: Context, rotary, split, kernel: attention.Kernel):
    """One block of the driving pass: (hidden states out, this layer's keys, values)."""
    cache = []

    def self_attention(attn, x):
        q, k, v = (split.to_heads(t) for t in _qkv(attn, x, rotary))
        cache.extend((k, v))
        return _out(attn, split.to_tokens(kernel(q, k, v)), x)

    hidden = _block(block, hidden, proj, context, self_attention)
    return hidden, cache[0], cache[1]


def generation_block(block, hidden, proj, context: Context, rotary, split, kernel: attention.Kernel,
                     lse_kernel: attention.LseKernel | None, hw: int, k_ref: torch.Tensor | None,
                     v_ref: torch.Tensor | None, driving_strength: float, reference_strength: float):
    """One block of a sampling step: in-context self-attention against this layer's driving keys/values (plain
    self-attention when `k_ref` is None)."""

    def self_attention(attn, x):
        q, k, v = (split.to_heads(t) for t in _qkv(attn, x, rotary))
        if reference_strength != 1.0:
            v = torch.cat([v[:, :hw] * reference_strength, v[:, hw:]], dim=1)
        if k_ref is None:
            return _out(attn, split.to_tokens(kernel(q, k, v)), x)
        values = v_ref * driving_strength if driving_strength != 1.0 else v_ref
        if lse_kernel is not None:
            out = attention.merged(q, k, v, k_ref, values, hw, lse_kernel)
        else:
            out = attention.framewise(q, k, v, k_ref, values, hw, kernel)
        return _out(attn, split.to_tokens(out), x)

    return _block(block, hidden, proj, context, self_attention)


@dataclass(frozen=True)
class BlockFunctions:
    """How one block's work runs: these functions eagerly, or their compiled versions (accel.compile)."""

    generation: Callable = generation_block
    driving: Callable = driving_block


class Animate2DiT:
    """Runs a diffusers WanAnimate2Transformer3DModel with per-job and per-segment work hoisted out of the steps."""

    def __init__(self, transformer, block_runner: Animate2BlockRunner | None = None,
                 kernel: attention.Kernel | None = None, lse_kernel: attention.LseKernel | None = None,
                 sequence: SequenceParallel | None = None, blocks: BlockFunctions | None = None):
        check_ulysses(sequence, "Wan-Animate-2")
        self.blocks = blocks or BlockFunctions()
        self.sequence = sequence
        self.model = transformer
        self.config = transformer.config
        self.block_runner = unsharding(block_runner or run_block)  # FSDP2-sharded blocks gathered around their run
        self.kernel = kernel or sdpa_kernel
        self.lse_kernel = lse_kernel
        self.head_dim = self.config.dim // self.config.num_heads
        self._rotary: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def rotary(self, grid: tuple[int, int, int], offsets: tuple[int, int, int] = (0, 0, 0), stride: int = 1):
        """(cos, sin) of a token grid, built once per grid and kept (every step of a job has the same grids)."""
        key = (grid, offsets, stride)
        if key not in self._rotary:
            self._rotary[key] = rotary_tables(self.head_dim, grid, offsets, stride, self.device)
        return self._rotary[key]

    @property
    def dtype(self) -> torch.dtype:
        return linear_compute_dtype(self.model.blocks[0].self_attn.to_q)

    @property
    def device(self) -> torch.device:
        return self.model.patch_embedding.weight.device

    def encode_context(self, text_embeds: torch.Tensor, clip_embeds: torch.Tensor | None) -> Context:
        """umT5 states (B, L <= text_len, d) zero-padded to text_len, and CLIP penultimate states -> Context."""
        model = self.model
        pad = self.config.text_len - text_embeds.shape[1]
        text = torch.nn.functional.pad(text_embeds.to(self.dtype), (0, 0, 0, pad))
        image = model.img_emb(clip_embeds.to(self.dtype)) if self.config.use_img_emb and clip_embeds is not None \
            else None
        return Context(model.text_embedding(text), image)

    def time_embedding(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(temb (B, dim) for the head, projection (B, 6, dim) for the blocks), in the time embedding's dtype."""
        model = self.model
        dtype = next(model.time_embedding.parameters()).dtype
        temb = model.time_embedding(model.timesteps_proj(timestep).to(dtype))
        return temb, model.time_projection(temb).unflatten(1, (6, self.config.dim))

    def _embed(self, latent_input: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        conv = self.model.patch_embedding
        hidden = conv(latent_input.to(conv.weight.dtype))
        grid = tuple(hidden.shape[2:])
        return hidden.flatten(2).transpose(1, 2).to(self.dtype), grid

    @torch.no_grad()
    def driving_pass(self, driving_input: torch.Tensor, context: Context,
                     host: HostDrivingCache | None = None) -> DrivingCache | HostDrivingCache:
        """Driving latents with their conditioning (B, 36, T, h, w) -> every layer's keys/values (the K/V cache), on
        the device or, given `host`, copied into it layer by layer (returned, filled)."""
        hidden, grid = self._embed(driving_input)
        split = split_for(self.sequence, hidden.shape[1])
        hidden = split.shard(hidden)
        rotary = tuple(split.shard(table) for table in
                       self.rotary(grid, reference_offsets(self.config, grid), self.config.refer_stride))
        timestep = torch.full((driving_input.shape[0],), REFERENCE_TIMESTEP, device=self.device)
        _, proj = self.time_embedding(timestep)
        keys, values = [], []
        if host is not None:
            host.begin(grid)
        for index, block in enumerate(self.model.blocks):
            hidden, k, v = self.block_runner(index, block, lambda b, h=hidden: self.blocks.driving(
                b, h, proj, context, rotary, split, self.kernel))
            if host is not None:
                host.put(index, k, v)
            else:
                keys.append(k)
                values.append(v)
        return host.finish() if host is not None else DrivingCache(keys, values, grid)

    @torch.no_grad()
    def __call__(self, latent_input: torch.Tensor, timestep: torch.Tensor, context: Context,
                 driving: DrivingCache | HostDrivingCache | None, unconditional: bool = False,
                 driving_strength: float = 1.0, reference_strength: float = 1.0) -> torch.Tensor:
        """Velocity (B, 16, F, h, w) for [noisy latents; conditioning] (B, 36, F, h, w), F = 1 + driving frames.

        driving None: plain self-attention (the driving video's influence windowed out for this step).
        driving_strength scales the driving values, reference_strength the values of the reference image's frame
        (ComfyUI's pose_strength / reference_image_strength); 1 is the model as trained.
        """
        model = self.model
        hidden, grid = self._embed(latent_input)
        hw = grid[1] * grid[2]
        if driving is not None and driving.grid[0] != grid[0] - 1:
            raise ValueError(f"the driving cache has {driving.grid[0]} latent frames; the generation needs "
                             f"{grid[0] - 1} (its frames minus the reference image's slot).")
        split = split_for(self.sequence, hidden.shape[1])
        hidden = split.shard(hidden)
        rotary = tuple(split.shard(table) for table in self.rotary(grid))
        temb, proj = self.time_embedding(timestep)
        layers = [i for i in range(len(model.blocks)) if not (unconditional and i == UNCONDITIONAL_SKIPPED_BLOCK)]
        for position, index in enumerate(layers):
            upcoming = layers[(position + 1) % len(layers)]  # after the last: the next pass's first
            k_ref, v_ref = driving.layer(index, upcoming) if driving is not None else (None, None)
            hidden = self.block_runner(index, model.blocks[index], lambda b, h=hidden, k=k_ref, v=v_ref: (
                self.blocks.generation(b, h, proj, context, rotary, split, self.kernel, self.lse_kernel, hw, k, v,
                                       driving_strength, reference_strength)))
        head = model.head
        shift, scale = (head.modulation + temb.float().unsqueeze(1)).chunk(2, dim=1)
        hidden = head.head((head.norm(hidden.float()) * (1 + scale) + shift).type_as(hidden))
        return self._unpatchify(split.gather(hidden), grid)

    def _unpatchify(self, hidden: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        b = hidden.shape[0]
        p_t, p_h, p_w = self.config.patch_size
        c = self.config.out_dim
        hidden = hidden[:, :math.prod(grid)].reshape(b, *grid, p_t, p_h, p_w, c)
        return hidden.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, c, grid[0] * p_t, grid[1] * p_h, grid[2] * p_w)
