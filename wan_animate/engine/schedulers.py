"""Flow-matching samplers: diffusers' schedulers set to the sigma schedules the official code uses.

Official (wan/animate.py, wan/utils/fm_solvers*.py):
- unipc:  sigmas = shift(linspace(0.999, 0, steps + 1)[:-1]), then 0; timesteps = int64(sigma * 1000).
          diffusers' UniPCMultistepScheduler(use_flow_sigmas, flow_shift), as the diffusers WanAnimatePipeline uses
          it, samples shift(linspace(1, 0.001, steps + 1)[:-1]) instead (about 0.1% apart in t), so the official
          schedule is set explicitly.
- dpm++:  sigmas = shift(linspace(1, 0, steps + 1)[:-1]), then 0 (note: starts at 1.0, not 0.999).
          diffusers' DPMSolverMultistepScheduler starts at 0.999, so the official schedule is set explicitly.
- euler:  not in the official code; ComfyUI's default (ModelSamplingSD3 shift + euler). Same sigmas as dpm++,
          with diffusers' FlowMatchEulerDiscreteScheduler.
shift(s) = shift * s / (1 + (shift - 1) * s).
"""
from __future__ import annotations

import numpy as np
import torch

SOLVERS = ("unipc", "dpm++", "euler")
NUM_TRAIN_TIMESTEPS = 1000


def shifted(sigmas: np.ndarray, shift: float) -> np.ndarray:
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def official_sigmas(solver: str, steps: int, shift: float) -> np.ndarray:
    """The `steps` sigmas the official code samples at (the final 0 excluded)."""
    top = 1.0 if solver in ("dpm++", "euler") else 1.0 - 1.0 / NUM_TRAIN_TIMESTEPS
    return shifted(np.linspace(top, 0.0, steps + 1)[:-1], shift)


def check_sampling(solver: str, steps: int, guide_scale: float = 1.0, solvers: tuple[str, ...] = SOLVERS) -> None:
    """The settings every sampler takes: a solver of `solvers`, at least one step, guidance >= 0 (1 = none)."""
    if solver not in solvers:
        raise ValueError(f"solver={solver!r}: choose one of {', '.join(solvers)}.")
    if steps < 1:
        raise ValueError(f"steps={steps}: at least 1 sampling step is needed.")
    if guide_scale < 0:
        raise ValueError(f"guide_scale={guide_scale}: must be >= 0 (1 = no guidance).")


def make_scheduler(solver: str, steps: int, shift: float, device: torch.device | str | None = None):
    """A fresh scheduler set up for `steps` steps; returns (scheduler, timesteps)."""
    from diffusers import (
        DPMSolverMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    check_sampling(solver, steps)
    sigmas = official_sigmas(solver, steps, shift)
    if solver == "euler":
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=1.0)
        scheduler.set_timesteps(sigmas=sigmas.tolist(), device=device)
        return scheduler, scheduler.timesteps
    common = {
        "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
        "prediction_type": "flow_prediction",
        "use_flow_sigmas": True,
        "flow_shift": shift,
        "solver_order": 2,
        "lower_order_final": True,
        "final_sigmas_type": "zero",
    }
    if solver == "unipc":
        scheduler = UniPCMultistepScheduler(solver_type="bh2", **common)
    else:
        scheduler = DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_type="midpoint", **common)
    scheduler.set_timesteps(steps, device=device)
    scheduler.sigmas = torch.from_numpy(np.append(sigmas, 0.0).astype(np.float32))
    scheduler.timesteps = torch.from_numpy(sigmas * NUM_TRAIN_TIMESTEPS).to(device=device, dtype=torch.int64)
    return scheduler, scheduler.timesteps
