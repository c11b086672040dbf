"""Command-line pieces that the runs of both models (Animate-14B: cli.py, Animate-2: animate2/cli.py) share."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from .sinks import DiscardFrames, Mp4Writer


def device_and_dtype(args: argparse.Namespace, rank=None):
    """--device auto: CUDA when available (under torchrun: `rank`'s device; --device cuda without one: a one-line
    error); --dtype auto: bf16 on CUDA, fp32 on the CPU."""
    import torch

    device = rank.device if rank is not None else torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else
        "cpu" if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: this machine has no CUDA GPU that torch can use "
                         f"(torch {torch.__version__}); use --device cpu (slow) or --tiny to try the pipeline.")
    return device, args.dtype if args.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")


def accel_options(args: argparse.Namespace):
    """--attention and --sparse-tau as the engine's AccelOptions, or None when --attention is not given (the DiT
    then runs diffusers' default attention, as before)."""
    from .accel import AccelOptions

    if args.attention is None:
        return None
    options = AccelOptions(attention=args.attention, sparse_tau=args.sparse_tau)
    options.check()
    return options


def plans_memory(args: argparse.Namespace, device) -> bool:
    """--memory auto on a GPU (weights not sharded): the model loads on the CPU and a memory plan places it, so
    loading never needs more device memory than the placement."""
    return args.memory == "auto" and device.type == "cuda" and not args.shard_weights


def place_by_plan(components, device, job, options, first: bool, driving_cache: str | None = None):
    """Plan for `job` on the device's free memory, place the weights (block by block), print the plan on the
    rank that writes and give `options` the plan's VAE tiling (and, for Wan-Animate-2, given the user's
    `driving_cache` choice, where the plan puts its K/V cache); returns the BlockSwap (None: nothing swaps)."""
    from .memory import AUTO, available_host_bytes, host_memory_warning
    from .placement import place_for_job

    plan, swap = place_for_job(components, device, job, driving_cache=driving_cache or AUTO)
    warning = host_memory_warning(plan, available_host_bytes())
    if first:
        print(plan.describe(), file=sys.stderr)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    options.tiled_vae, options.vae_tile = plan.vae_tiling(options.tiled_vae, options.vae_tile)
    if driving_cache is not None:
        options.driving_cache = plan.driving_cache
    return swap


def pick(value, default):
    """A command-line value left unset (None) takes the model's default."""
    return default if value is None else value


def check_sources(models, video, ref) -> None:
    """Every input given and present, else one error naming the flag or the file."""
    missing = [flag for flag, value in (("--ref", ref), ("--video", video), ("--models", models)) if value is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (or use --tiny for the built-in demo).")
    for what, path in (("reference image", ref), ("driving video", video), ("model folder", models)):
        if not Path(path).exists():
            raise FileNotFoundError(f"{what} not found: {path}")


def output(path, first: bool, fps: float, sound, frames: int):
    """The mp4 writer (a context manager) on the rank that writes; the other ranks of a sequence-parallel job
    compute the same frames and drop them."""
    if first:
        return Mp4Writer(path, fps=fps, sound=sound, expected_frames=frames)
    return contextlib.nullcontext(DiscardFrames())


def print_progress(done: int, total: int, *, step: int, steps: int, segment: int, segments: int) -> None:
    print(f"\rsegment {segment}/{segments} step {step}/{steps}", end="" if done < total else "\n", file=sys.stderr,
          flush=True)
