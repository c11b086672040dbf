"""Wan-Animate-2's samplers as its Diffusers release configures them: DPM-Solver++ on flow sigmas (full model) and
flow-matching Euler (distilled), both with shift 5 and diffusers' own timestep spacing (not Animate-14B's
official sigma lists in ../schedulers.py)."""
from __future__ import annotations

import torch


def make_scheduler(solver: str, steps: int, shift: float, device: torch.device | str | None = None):
    """A fresh scheduler set up for `steps` steps; returns (scheduler, timesteps)."""
    from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler

    if solver == "euler":
        scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    elif solver == "dpm++":
        scheduler = DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", use_flow_sigmas=True,
                                                prediction_type="flow_prediction", flow_shift=shift)
    else:
        raise ValueError(f"solver={solver!r}: choose 'dpm++' or 'euler'.")
    scheduler.set_timesteps(steps, device=device)
    return scheduler, scheduler.timesteps
