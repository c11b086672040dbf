"""Settings of one Wan-Animate-2 job. Defaults are diffusers' WanAnimate2 (full) and WanAnimate2Distilled
pipelines'; `variant` picks which set the unset (None) fields take."""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..memory import AUTO, check_driving_cache, check_vae_tile
from ..parallel.sequence import check_mode
from ..schedulers import check_sampling
from ..segments import check_segment_frames
from ..stepcache import check_step_cache
from .framing import DEFAULT_AREA

VARIANTS = ("full", "distilled")
SOLVERS = ("dpm++", "euler")
DRIVING_PROMPT = "人物动作的参考视频"  # "reference video of the person's motion": conditions the driving-video pass
DEFAULTS = {  # variant -> (steps, guide_scale, solver); both sample with shift 5
    "full": (40, 3.0, "dpm++"),
    "distilled": (10, 1.0, "euler"),
}
GUIDE_FRAMES = 1  # frames carried from one segment to the next (the model's continue-motion frame)


@dataclass
class Animate2Options:
    variant: str = "full"  # "full" (CFG, 40 steps) or "distilled" (no CFG, 10 steps): match the loaded weights
    prompt: str = ""  # the character/background/viewpoint text ("front view", "in a forest", ...)
    negative_prompt: str = ""  # used with guide_scale > 1
    prompt_ref: str = DRIVING_PROMPT  # text of the driving-video pass
    steps: int | None = None  # None: 40 (full) / 10 (distilled)
    guide_scale: float | None = None  # None: 3.0 (full) / 1.0 (distilled); > 1 runs the unconditional pass
    shift: float = 5.0
    solver: str | None = None  # None: "dpm++" (full) / "euler" (distilled)
    seed: int = 0
    segment_frames: int = 81  # frames per segment, 4n+1
    fit_short: bool = True  # a video shorter than a segment gets the smallest 4n+1 segment that holds it
    fps: float = 24.0  # the model's frame rate: the driving video is resampled to it when its own rate is known
    area: int = DEFAULT_AREA  # target height x width in pixels; the aspect ratio is the reference image's
    driving_strength: float = 1.0  # scales the driving video's attention values (ComfyUI's pose_strength)
    driving_start: float = 0.0  # fraction of the steps from which the driving video is attended
    driving_end: float = 1.0  # fraction of the steps after which it is not (plain self-attention)
    reference_strength: float = 1.0  # scales the reference image's attention values
    tiled_vae: bool = False
    step_cache: float = 0.0  # > 0: reuse the DiT's last transformation while the estimated change stays below this (engine.stepcache); for the full model's 40 steps, e.g. 0.1
    vae_tile: int = 256  # tiled_vae: tile side in pixels (memory.plan_memory picks it under memory="auto")
    offload: bool = False  # return the DiT and VAE to where they were (e.g. CPU) after the job
    # where the segment's driving K/V cache lives: "device", "host" (host memory, a layer at a time on the device:
    # animate2.kvcache), "host_int8" (stored as int8: half the RAM and transfers, a small error), "auto" (memory="auto"
    # sets the plan's choice; on the device without a plan)
    driving_cache: str = AUTO
    sequence_parallel: str = "off"  # "ulysses": split the DiT's tokens across torch.distributed's ranks

    def resolved(self) -> Animate2Options:
        """A copy with the variant's defaults filled in and every value checked (ValueError names the field)."""
        if self.variant not in VARIANTS:
            raise ValueError(f"variant={self.variant!r}: choose 'full' or 'distilled' (match the loaded weights).")
        steps, guide, solver = DEFAULTS[self.variant]
        out = replace(self, steps=steps if self.steps is None else self.steps,
                      guide_scale=guide if self.guide_scale is None else self.guide_scale,
                      solver=solver if self.solver is None else self.solver)
        out.check()
        return out

    def check(self) -> None:
        check_sampling(self.solver, self.steps, self.guide_scale, SOLVERS)
        if self.fps <= 0:
            raise ValueError(f"fps={self.fps}: must be > 0 (the model's own rate is 24).")
        if not 0.0 <= self.driving_start <= self.driving_end <= 1.0:
            raise ValueError(f"driving_start={self.driving_start}, driving_end={self.driving_end}: need "
                             "0 <= start <= end <= 1 (fractions of the sampling steps).")
        for name in ("driving_strength", "reference_strength"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0 (1 = as trained).")
        check_step_cache(self.step_cache)
        check_segment_frames(self.segment_frames, GUIDE_FRAMES)
        check_vae_tile(self.vae_tile)
        check_driving_cache(self.driving_cache)
        check_mode(self.sequence_parallel)

    @property
    def cfg(self) -> bool:
        return self.guide_scale > 1.0

    def drives(self, step: int) -> bool:
        """Whether sampling step `step` (0-based) attends the driving video."""
        return self.driving_start <= step / self.steps < self.driving_end
