"""Step caching on a 20-step undistilled job: speed-up and per-frame difference to the uncached video.

    python -m benchmarks.stepcache --out /tmp/stepcache.json                       # tiny model, CPU
    python -m benchmarks.stepcache --thresholds 0.05,0.1,0.2 --steps 20
    python -m benchmarks.stepcache --model animate2 --steps 40 --out benchmarks/results/stepcache_animate2_cpu.json

Runs the same job on wan_loader's tiny random model (Animate-14B, or `--model animate2`: Wan-Animate-2's full
variant, CFG and DPM++ as its 40-step sampling) without the cache and with each threshold; per run: wall
seconds, DiT forwards, the DiT's speed-up (forwards uncached / forwards: the DiT is >90 % of a full-size step's
time, while the tiny model's wall time is mostly VAE and overheads), and per frame the mean absolute difference
(0-255) and PSNR against the uncached frames. A random tiny model's denoising trajectory is not a trained model's,
so its differences show the mechanism, not the quality on real weights.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from wan_animate.engine import AnimateOptions, animate
from wan_animate.engine.forward import run_block
from wan_loader.testing.tiny import tiny_components

from .harness import Report


def driving_clip(frames: int, height: int, width: int, face: int):
    """A smooth moving pattern (so neighbouring frames and steps are alike, as in real clips)."""
    from wan_animate.engine import AnimateInputs
    y, x = np.mgrid[0:height, 0:width]
    clip = np.stack([np.stack([(128 + 100 * np.sin((x + 3 * t) / 7 + c)).astype(np.uint8) * np.ones_like(y,
                     dtype=np.uint8) for c in range(3)], -1) for t in range(frames)])
    faces = np.ascontiguousarray(clip[:, :face, :face])
    return AnimateInputs(reference=clip[0].copy(), pose=clip, face=faces)


def run_job(components, inputs, steps: int, threshold: float, device: str):
    """(frames, seconds, DiT forwards) of one Animate-14B job."""
    forwards = []

    def runner(index, block, *args):
        if index == 0:
            forwards.append(1)
        return run_block(index, block, *args)
    began = time.perf_counter()
    result = animate(components, inputs, AnimateOptions(steps=steps, segment_frames=len(inputs),
                                                         step_cache=threshold), device=device, block_runner=runner)
    return result.frames, time.perf_counter() - began, len(forwards)


def run_job_animate2(components, inputs, steps: int, threshold: float, device: str):
    """(frames, seconds, DiT forwards) of one Wan-Animate-2 job (full variant: two forwards a step with CFG; the
    driving pass, once per segment, is not counted)."""
    from wan_animate.engine.animate2 import Animate2Inputs, Animate2Options, animate2
    from wan_animate.engine.animate2.accel import Animate2FastPath

    forwards = []

    def runner(index, block, call):
        if index == 0:
            forwards.append(1)
        return call(block)
    clip = np.asarray(inputs.pose)
    options = Animate2Options(variant="full", steps=steps, segment_frames=len(clip), area=clip.shape[1] * clip.shape[2],
                              step_cache=threshold)
    began = time.perf_counter()
    result = animate2(components, Animate2Inputs(clip[0].copy(), clip), options, device=device,
                      fast=Animate2FastPath("native", "dequant", None, block_runner=runner))
    return result.frames, time.perf_counter() - began, len(forwards) - result.segments


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("animate", "animate2"), default="animate")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--thresholds", default="0.05,0.1,0.2,0.4")
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--size", type=int, default=64, help="frame height and width (multiple of 16)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.model == "animate2":
        from wan_loader.testing.tiny import tiny_animate2_components
        components, job = tiny_animate2_components(), run_job_animate2
    else:
        components, job = tiny_components(), run_job
    inputs = driving_clip(args.frames, args.size, args.size, 16)
    report = Report("step caching", args.out, args.device, vars(args))
    job(components, inputs, 2, 0.0, args.device)  # warm-up (first-call costs)
    reference, seconds, forwards = job(components, inputs, args.steps, 0.0, args.device)
    report.add(threshold=0.0, seconds=round(seconds, 3), forwards=forwards)
    for threshold in (float(t) for t in args.thresholds.split(",")):
        frames, secs, calls = job(components, inputs, args.steps, threshold, args.device)
        diffs = np.abs(frames.astype(int) - reference.astype(int)).mean(axis=(1, 2, 3))
        report.add(threshold=threshold, seconds=round(secs, 3), forwards=calls, dit_speedup=round(forwards / calls, 2),
                   mean_abs_diff_per_frame=[round(float(d), 2) for d in diffs],
                   worst_frame_mean_abs_diff=round(float(diffs.max()), 2),
                   psnr_db=round(psnr(frames, reference), 1))
        report.ratio(f"threshold {threshold:g} DiT speed-up", forwards / calls)
    report.print_table(["threshold", "seconds", "forwards", "dit_speedup", "worst_frame_mean_abs_diff", "psnr_db",
                        "mean_abs_diff_per_frame"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
