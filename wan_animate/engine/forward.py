"""The Wan-Animate DiT forward, split into the parts that change at different rates.

diffusers' `WanAnimateTransformer3DModel.forward` recomputes everything on every call: the face motion encoder
(77 frames through a 512x512 conv net), the text and CLIP projections, the pose patch embedding and the rotary
tables. Here the model definition stays diffusers' (same modules, same weights, same maths) and only the order of
work changes:

- per job:     `encode_context` (text + CLIP projections), `encode_motion` of the blank (uncond) face
- per segment: `encode_motion` of the face frames, `embed_pose`, `rotary`
- per step:    `time_embedding` (shared by the cond and uncond passes), then `__call__`

Seams for fast paths (the rest of the engine does not care which is used):
- attention backend: `transformer.set_attention_backend(name)` (diffusers dispatch; the blocks here call diffusers'
  attention processors unchanged);
- quantised linears (fp8): swap the `nn.Linear` modules of `transformer.blocks` in place;
- compilation of the repeated blocks: `transformer.compile_repeated_blocks()` or wrap `block_runner`;
- block swap / offload: pass `block_runner(index, block, hidden, context, timestep_proj, rotary)`, which may move
  the block to the device (and prefetch the next) before calling it;
- sequence parallel: pass `sequence` (parallel.SequenceParallel): the tokens are split across the ranks after the
  patch embedding and gathered after the output projection; the face adapters see their own tokens frame by frame.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from wan_loader.fp8 import linear_compute_dtype

from .parallel.sequence import SequenceParallel, Split, WholeSequence, frame_runs, split_for

BlockRunner = Callable[[int, torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, tuple], torch.Tensor]


def run_block(index: int, block, hidden, context, timestep_proj, rotary):
    return block(hidden, context, timestep_proj, rotary)


@dataclass
class StepEmbedding:
    """Time conditioning of one sampling step: `temb` for the output head, `proj` (B, 6, dim) for the blocks."""

    temb: torch.Tensor
    proj: torch.Tensor


class AnimateDiT:
    """Runs a diffusers WanAnimateTransformer3DModel with per-job and per-segment work hoisted out of the steps."""

    def __init__(self, transformer, block_runner: BlockRunner | None = None,
                 sequence: SequenceParallel | None = None):
        self.model = transformer
        self.config = transformer.config
        self.block_runner = block_runner or run_block
        self.sequence = sequence

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the blocks (an fp8-weight linear reports the dtype it computes in)."""
        return linear_compute_dtype(self.model.blocks[0].attn1.to_q)

    @property
    def device(self) -> torch.device:
        return self.model.patch_embedding.weight.device

    def encode_context(self, text_embeds: torch.Tensor, clip_embeds: torch.Tensor | None) -> torch.Tensor:
        """Cross-attention context: projected CLIP tokens followed by projected text tokens."""
        embedder = self.model.condition_embedder
        context = embedder.text_embedder(text_embeds.to(self.dtype))
        if clip_embeds is not None and embedder.image_embedder is not None:
            context = torch.cat([embedder.image_embedder(clip_embeds.to(self.dtype)), context], dim=1)
        return context

    def encode_motion(self, face_pixels: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Face frames (B, 3, T, S, S) in [-1, 1] -> face tokens (B, latent T + 1, heads + 1, dim)."""
        b, c, t, h, w = face_pixels.shape
        frames = face_pixels.to(self.dtype).permute(0, 2, 1, 3, 4).reshape(-1, c, h, w)
        batch_size = batch_size or self.config.motion_encoder_batch_size
        motion = torch.cat([self.model.motion_encoder(chunk) for chunk in torch.split(frames, batch_size)])
        motion = self.model.face_encoder(motion.view(b, t, -1))
        return torch.cat([torch.zeros_like(motion[:, :1]), motion], dim=1)

    def embed_pose(self, pose_latents: torch.Tensor) -> torch.Tensor:
        """Pose latents (B, 16, T, h, w) -> patch embeddings added to latent frames 1..T."""
        conv = self.model.pose_patch_embedding
        return conv(pose_latents.to(conv.weight.dtype)).to(self.dtype)

    def rotary(self, latent_input_shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary tables for a (B, C, T, h, w) latent input; depend on the shape only."""
        return self.model.rope(torch.empty(latent_input_shape, device="meta"))

    def time_embedding(self, timestep: torch.Tensor, context: torch.Tensor) -> StepEmbedding:
        embedder = self.model.condition_embedder
        freqs = embedder.timesteps_proj(timestep)
        weight_dtype = embedder.time_embedder.linear_1.weight.dtype
        temb_dtype = weight_dtype if weight_dtype.is_floating_point else context.dtype
        temb = embedder.time_embedder(freqs.to(temb_dtype)).type_as(context)
        proj = embedder.time_proj(embedder.act_fn(temb)).unflatten(1, (6, -1))
        return StepEmbedding(temb, proj)

    def __call__(
        self,
        latent_input: torch.Tensor,
        step: StepEmbedding,
        context: torch.Tensor,
        motion: torch.Tensor,
        pose: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """Velocity prediction (B, 16, T, h, w) for `latent_input` = [noisy latents; mask; conditioning latents]."""
        model = self.model
        b, _, frames, height, width = latent_input.shape
        p_t, p_h, p_w = self.config.patch_size
        hidden = model.patch_embedding(latent_input.to(model.patch_embedding.weight.dtype)).to(self.dtype)
        hidden[:, :, 1:] = hidden[:, :, 1:] + pose
        hidden = hidden.flatten(2).transpose(1, 2).contiguous()
        split = split_for(self.sequence, hidden.shape[1])
        hidden = split.shard(hidden)
        rotary = tuple(split.shard(table) for table in rotary)
        frame_tokens = (height // p_h) * (width // p_w)

        every = self.config.inject_face_latents_blocks
        for index, block in enumerate(model.blocks):
            hidden = self.block_runner(index, block, hidden, context, step.proj, rotary)
            if index % every == 0:
                adapter = model.face_adapter[index // every]
                hidden = face_attention(adapter, hidden, motion, split, frame_tokens).to(hidden.device) + hidden

        shift, scale = (model.scale_shift_table.to(step.temb.device) + step.temb.unsqueeze(1)).chunk(2, dim=1)
        dtype = hidden.dtype
        hidden = model.norm_out(hidden.float())
        hidden = (hidden * (1 + scale.to(hidden.device)) + shift.to(hidden.device)).to(dtype)
        hidden = split.gather(model.proj_out(hidden))
        hidden = hidden.reshape(b, frames // p_t, height // p_h, width // p_w, p_t, p_h, p_w, -1)
        return hidden.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)



def face_attention(adapter, hidden: torch.Tensor, motion: torch.Tensor, split: Split | WholeSequence,
                   frame_tokens: int) -> torch.Tensor:
    """A face adapter on this rank's tokens: each latent frame's tokens attend to that frame's motion tokens, so a
    slice that starts or ends inside a frame runs frame by frame (padding tokens get zeros)."""
    if split.size == 1:
        return adapter(hidden, motion)
    parts = [adapter(hidden[:, first - split.start:end - split.start], motion[:, frame:frame + 1])
             for frame, first, end in frame_runs(split.start, split.end, frame_tokens)]
    padding = hidden.shape[1] - (split.end - split.start)
    if padding:
        parts.append(hidden.new_zeros(hidden.shape[0], padding, hidden.shape[2]))
    return torch.cat(parts, dim=1)
