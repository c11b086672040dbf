"""Settings of one animation job. Defaults are the official ones (wan/configs/wan_animate_14B.py, generate.py)."""
from __future__ import annotations

from dataclasses import dataclass

from .memory import check_vae_tile
from .parallel.sequence import check_mode
from .schedulers import check_sampling
from .segments import check_segment_frames
from .stepcache import check_step_cache
from .vae_fast import VaeFastOptions

COLOR_ANCHORS = ("off", "reference", "first_segment")
LORA_MODES = ("runtime", "merge")


@dataclass
class AnimateOptions:
    mode: str = "animate"  # "animate": move the reference character; "replace": put it into the driving video
    prompt: str | None = None  # None: the official default prompt
    negative_prompt: str | None = None  # None: the official negative prompt (used only when guide_scale > 1)
    steps: int = 20
    guide_scale: float = 1.0  # > 1: classifier-free guidance (negative prompt + blank face), two forwards a step
    shift: float = 5.0
    solver: str = "unipc"  # "unipc" | "dpm++" | "euler"
    seed: int = 0
    segment_frames: int = 77  # frames generated per segment, 4n+1
    guide_frames: int = 1  # frames carried from the previous segment, 1 or 5
    fit_short: bool = True  # a video shorter than a segment gets the smallest 4n+1 segment that holds it
    color_anchor: str = "off"  # "reference" | "first_segment": match each segment's colour statistics to it
    color_anchor_strength: float = 1.0
    tiled_vae: bool = False  # tile VAE encode/decode spatially: lower peak memory at large sizes
    vae_tile: int = 256  # tiled_vae: tile side in pixels (larger: faster, more memory; memory.plan_memory picks it)
    vae_fast: bool = True  # the VAE's fast path (vae_fast.py: bf16 on CUDA, channels-last, fewer copies); False: diffusers' own
    vae_compile: bool = False  # vae_fast: torch.compile its residual blocks (minutes on first use; skipped where torch.compile cannot run)
    motion_encode_batch: int = 8  # face frames per motion-encoder batch (official 8)
    offload: bool = False  # return the DiT and VAE to where they were (e.g. CPU) after the job
    lora_mode: str = "runtime"  # job LoRAs: "runtime" (forward hooks) or "merge" (into the weights, restored after)
    step_cache: float = 0.0  # > 0: reuse the DiT's last transformation while the estimated change stays below this (stepcache.py); for 20+ undistilled steps, e.g. 0.1
    sequence_parallel: str = "off"  # "ulysses" | "ring": split the DiT's tokens across torch.distributed's ranks

    def check(self) -> None:
        check_sampling(self.solver, self.steps, self.guide_scale)
        if self.color_anchor not in COLOR_ANCHORS:
            raise ValueError(f"color_anchor={self.color_anchor!r}: choose one of {', '.join(COLOR_ANCHORS)}.")
        if not 0.0 <= self.color_anchor_strength <= 1.0:
            raise ValueError(f"color_anchor_strength={self.color_anchor_strength}: must be within [0, 1].")
        if self.motion_encode_batch < 1:
            raise ValueError(f"motion_encode_batch={self.motion_encode_batch}: must be >= 1.")
        check_vae_tile(self.vae_tile)
        if self.lora_mode not in LORA_MODES:
            raise ValueError(f"lora_mode={self.lora_mode!r}: choose one of {', '.join(LORA_MODES)}.")
        check_step_cache(self.step_cache)
        check_segment_frames(self.segment_frames, self.guide_frames)
        check_mode(self.sequence_parallel)

    def vae_fast_options(self) -> VaeFastOptions | None:
        """What LatentCodec's `fast` takes: None for diffusers' own encode/decode."""
        return VaeFastOptions(compile=self.vae_compile) if self.vae_fast else None

    @property
    def cfg(self) -> bool:
        return self.guide_scale > 1.0
