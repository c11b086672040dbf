"""Conditioning signals, computed the way the official `WanAnimate.generate` computes them.

Pixels are float tensors in [-1, 1] laid out (B, C, T, H, W); latents are VAE latents normalised with the VAE's
latents_mean / latents_std (what the DiT was trained on).
"""
from __future__ import annotations

import contextlib
import weakref

import numpy as np
import torch
import torch.nn.functional as F

from .memory import vae_tile_stride
from .vae_fast import DEFAULT_VAE_FAST, FastWanVae, VaeFastOptions, unsupported_reason

# Official defaults (wan/configs/wan_animate_14B.py, shared_config.py).
OFFICIAL_PROMPT = "视频中的人在做动作"
OFFICIAL_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，"
    "多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
TEXT_LENGTH = 512


def to_pixels(frames: np.ndarray, device=None) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> float (1, 3, T, H, W) in [-1, 1] on `device` (official `/ 127.5 - 1`).

    The frames travel as uint8 (4x less than float) and are converted on the device."""
    frames = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    return frames.permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """float (3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3), rounded."""
    frames = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).cpu().numpy()


def fit_reference(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The reference at the output size: letterboxed on black when it differs (official `padding_resize`)."""
    from wan_animate.preprocess.resolution import letterbox

    return image if image.shape[:2] == (height, width) else letterbox(image, height, width)


def clean_prompt(text: str) -> str:
    """ftfy + HTML unescape + whitespace collapse, as the official umT5 tokenizer wrapper does."""
    from diffusers.pipelines.wan.pipeline_wan_animate import prompt_clean

    return prompt_clean(text)


@torch.no_grad()
def encode_text(text_encoder, tokenizer, prompt: str, device: torch.device, clean: bool = True) -> torch.Tensor:
    """umT5 embedding (1, 512, d): the prompt's tokens followed by zeros (official padding, not the pad token's).

    clean: ftfy/whitespace clean-up first (Animate-14B's official tokenizer wrapper); Animate-2 encodes the prompt
    exactly as given."""
    tokens = tokenizer(
        [clean_prompt(prompt) if clean else prompt],
        padding="max_length",
        max_length=TEXT_LENGTH,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
    hidden = text_encoder(ids, mask).last_hidden_state
    length = int(mask.sum())
    hidden[:, length:] = 0
    return hidden


@torch.no_grad()
def encode_clip(image_encoder, image_processor, reference: torch.Tensor) -> torch.Tensor:
    """CLIP ViT penultimate hidden states of the reference (1, 3, H, W) in [-1, 1].

    Official preprocessing (wan/modules/animate/clip.py `CLIPModel.visual`): the whole frame is squashed to the
    CLIP input size with bicubic interpolation (no aspect keep, no crop), then normalised. diffusers'
    CLIPImageProcessor instead resizes the short side and centre-crops, which drops the sides of a wide frame.
    """
    crop = image_processor.crop_size
    size = (crop["height"], crop["width"])
    mean = torch.tensor(image_processor.image_mean, device=reference.device).view(1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std, device=reference.device).view(1, 3, 1, 1)
    pixels = F.interpolate(reference.float(), size=size, mode="bicubic", align_corners=False)
    pixels = (pixels * 0.5 + 0.5 - mean) / std
    dtype = next(image_encoder.parameters()).dtype
    out = image_encoder(pixel_values=pixels.to(dtype), output_hidden_states=True)
    return out.hidden_states[-2]


# Latents of all-zero videos (animate mode's first-segment conditioning video), per VAE, reused by later jobs of the
# same size while the VAE's weights are unchanged: a cache, not a setting.
_ZERO_LATENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights_stamp(module) -> tuple:
    """Changes whenever a parameter is replaced, moved or modified in place. Inference tensors (weights loaded under
    torch.inference_mode, as inside ComfyUI, and parameters converted from them) have no version counter: for them
    only replacing or moving counts (no code path edits VAE weights in place)."""
    return tuple((p.data_ptr(), _version(p)) for p in module.parameters())


def _version(tensor: torch.Tensor) -> int | None:
    try:
        return tensor._version
    except RuntimeError:  # "Inference tensors do not track version counter"
        return None


class LatentCodec:
    """VAE encode/decode with the DiT's latent normalisation.

    fast: the fast path's settings (vae_fast.py: same maths, less data movement, bf16 on CUDA), or None for
    diffusers' own encode/decode; VAEs the fast path does not cover, and tiled runs, use diffusers'. `tiled`
    bounds the activation memory of large frames to `tile` x `tile` pixel tiles (overlapping by a quarter of a
    tile, blended: memory.vae_tile_stride)."""

    def __init__(self, vae, tiled: bool = False, tile: int = 256, fast: VaeFastOptions | None = DEFAULT_VAE_FAST):
        self.vae = vae
        self.tiled = tiled
        self.tile = tile
        self.fast = FastWanVae(vae, fast) if fast is not None and not tiled and unsupported_reason(vae) is None \
            else None
        z = vae.config.z_dim
        self.mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def describe(self) -> dict:
        if self.fast is None:
            return {"path": "diffusers", "tiled": self.tiled}
        o = self.fast.options
        return {"path": "fast", "dtype": o.dtype, "channels_last": o.channels_last, "chunk": o.chunk,
                "compiled": self.fast.compiled, **({"compile_skipped": self.fast.compile_skipped}
                                                    if self.fast.compile_skipped else {})}

    @contextlib.contextmanager
    def _tiling(self):
        names = ("use_tiling", "tile_sample_min_height", "tile_sample_min_width", "tile_sample_stride_height",
                 "tile_sample_stride_width")
        before = {n: getattr(self.vae, n) for n in names}
        if self.tiled:
            stride = vae_tile_stride(self.tile)
            self.vae.use_tiling = True
            self.vae.tile_sample_min_height = self.vae.tile_sample_min_width = self.tile
            self.vae.tile_sample_stride_height = self.vae.tile_sample_stride_width = stride
        try:
            yield
        finally:
            for name, value in before.items():
                setattr(self.vae, name, value)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> normalised latents (B, 16, (T - 1) / 4 + 1, H / 8, W / 8), distribution mode."""
        if self.fast is not None:
            latents = self.fast.encode(pixels)
        else:
            with self._tiling():
                latents = self.vae.encode(pixels.to(self.dtype)).latent_dist.mode()
        return (latents - self.mean.to(latents)) * self.inv_std.to(latents)

    @torch.no_grad()
    def encode_zeros(self, frames: int, height: int, width: int, device) -> torch.Tensor:
        """`encode` of an all-zero video (1, 3, frames, height, width), remembered per VAE: the same size in a later
        job (while the weights are unchanged) costs nothing."""
        key = (frames, height, width, str(device), repr(self.describe()), self.tile)
        stamp = _weights_stamp(self.vae)
        memo = _ZERO_LATENTS.get(self.vae)
        if memo is None or memo[0] != stamp:
            memo = _ZERO_LATENTS[self.vae] = (stamp, {})
        if key not in memo[1]:
            memo[1].clear()  # one size at a time: a worker serves one size over and over
            memo[1][key] = self.encode(torch.zeros(1, 3, frames, height, width, device=device))
        return memo[1][key]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> pixels in [-1, 1] (float32)."""
        if self.fast is not None:
            latents = latents.float()
            return self.fast.decode(latents / self.inv_std.to(latents) + self.mean.to(latents))
        latents = latents.to(self.dtype)
        latents = latents / self.inv_std.to(latents) + self.mean.to(latents)
        with self._tiling():
            return self.vae.decode(latents, return_dict=False)[0].float()


def frame_mask(latent_frames: int, height: int, width: int, known_frames: int, pixel_mask: torch.Tensor | None = None,
               device=None) -> torch.Tensor:
    """The 4-channel mask channels of the conditioning (official `get_i2v_mask`): 1 where the content is given.

    pixel_mask: (T, h, w) per-pixel-frame mask at latent resolution, or None for all zeros. The first
    `known_frames` pixel frames are marked known; the first frame is repeated 4x so that 4 pixel frames map onto
    each latent frame's 4 channels. Returns (4, latent_frames, h, w).
    """
    if pixel_mask is None:
        mask = torch.zeros(1, (latent_frames - 1) * 4 + 1, height, width, device=device)
    else:
        mask = pixel_mask.clone().unsqueeze(0).to(device=device, dtype=torch.float32)
    mask[:, :known_frames] = 1
    mask = torch.cat([mask[:, :1].repeat_interleave(4, dim=1), mask[:, 1:]], dim=1)
    return mask.view(1, mask.shape[1] // 4, 4, height, width).transpose(1, 2)[0]


def background_mask(character_mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Replace mode: character mask (T, H, W) in [0, 1] -> known-background mask (T, h, w), nearest downsampled."""
    return F.interpolate((1 - character_mask).unsqueeze(1), size=(height, width), mode="nearest")[:, 0]
