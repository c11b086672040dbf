"""`python -m wan_animate animate` when the weights are Wan-Animate-2: reference image + raw driving video -> mp4.

No pose preprocessing: the driving video is decoded once into a memory-mapped uint8 file at its own frame rate
and the engine reads it one segment at a time (resampled to --fps, default the model's 24), so host memory stays
bounded for any length. The driving video's sound is kept in sync unless --no-audio.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..cli_common import (accel_options, check_sources, device_and_dtype, output, pick, place_by_plan, plans_memory,
                          print_progress)


def decode_to_disk(video: Path, work: Path):
    """(memory-mapped (T, H, W, 3) uint8 frames, fps) of a video file, decoded once."""
    from ...preprocess.video_io import VideoFile

    source = VideoFile(video)
    path = work / "driving.u8"
    count = 0
    with open(path, "wb") as f:
        for frame in source.frames():
            f.write(np.ascontiguousarray(frame).tobytes())
            count += 1
            shape = frame.shape
    frames = np.memmap(path, np.uint8, "r", shape=(count, *shape))
    return frames, source.fps


def sources(args: argparse.Namespace, work: Path) -> tuple[str, Path, Path]:
    """(models, video, reference); --tiny writes a tiny random Animate-2 (and demo inputs when none are given)."""
    models, video, ref = args.models, args.video, args.ref
    if args.tiny:
        from wan_loader.testing.tiny import tiny_animate2_components
        from wan_loader.writers import write_components

        from ..demo import write_demo_inputs

        models = str(write_components(tiny_animate2_components(), work / "models", "comfy"))
        if video is None or ref is None:
            demo_video, demo_ref = write_demo_inputs(work / "inputs")
            video, ref = video or demo_video, ref or demo_ref
    check_sources(models, video, ref)
    return models, Path(video), Path(ref)


def options_from(args: argparse.Namespace, distilled: bool):
    from ...preprocess.cli import area_argument
    from .options import DRIVING_PROMPT, Animate2Options

    variant = ("distilled" if distilled else "full") if args.variant == "auto" else args.variant
    area = area_argument(args.resolution_area or ((96, 64) if args.tiny else (640, 800)))
    fps = pick(args.fps, 24.0)
    return Animate2Options(
        variant=variant, prompt=args.prompt or "", negative_prompt=args.negative_prompt or "",
        prompt_ref=pick(args.prompt_ref, DRIVING_PROMPT), steps=args.steps, guide_scale=args.guide_scale,
        shift=args.shift, solver=args.solver, seed=args.seed, segment_frames=pick(args.segment_frames, 81),
        fps=fps if fps > 0 else 24.0, area=area, driving_strength=args.driving_strength,
        driving_start=args.driving_window[0], driving_end=args.driving_window[1],
        reference_strength=args.reference_strength, tiled_vae=args.tiled_vae, step_cache=args.step_cache,
        sequence_parallel=args.sequence_parallel, driving_cache=args.driving_cache,
    ).resolved()


def run_animate2(args: argparse.Namespace, work: Path, rank=None) -> None:
    """The job; under torchrun (`rank`: parallel.Rank) every rank decodes the video itself and rank 0 writes."""
    from wan_loader import load_components

    from ...preprocess.audio import DrivingSound
    from ...preprocess.video_io import read_image
    from ..accel import choose_int8_weights
    from ..parallel import shard_blocks
    from .accel import accelerate_animate2, eager_path
    from .run import Animate2Inputs, animate2, job_shape

    if args.mode != "animate" or args.lora or args.mask:
        raise ValueError("Wan-Animate-2 takes the raw driving video: --mode replace, --mask and --lora are "
                         "Animate-14B options (Animate-2 puts the character into a new background from --prompt).")
    if args.shard_weights and args.int8_weights == "keep":
        raise ValueError("--shard-weights shards bf16/fp16/fp32 weights: use --int8-weights dequantize (or auto) "
                         "with it.")
    accel = accel_options(args)
    models, video, ref = sources(args, work)
    device, dtype = device_and_dtype(args, rank)
    first = rank is None or rank.is_first
    int8 = choose_int8_weights(device, "dequantize" if args.shard_weights else args.int8_weights)
    planned = plans_memory(args, device)
    components = load_components(models, device="cpu" if planned else str(device), weight_dtype=dtype,
                                 model="animate2", int8_weights=int8)
    if args.shard_weights:
        shard_blocks(components.transformer, device)
    options = options_from(args, components.distilled)
    frames, video_fps = decode_to_disk(video, work)
    inputs = Animate2Inputs(read_image(ref), frames, video_fps=video_fps if args.fps is None or args.fps > 0 else None)
    # placed from the CPU block by block: never more GPU memory than the plan
    swap = place_by_plan(components, device, job_shape(inputs, options), options, first,
                         options.driving_cache) if planned else None
    fast = (accelerate_animate2(components.transformer, device, accel) if accel else eager_path()).with_swap(swap)
    out_fps = options.fps if inputs.video_fps is not None else video_fps
    count = len(inputs.frames_at(options.fps))
    sound = None if args.no_audio or not first else DrivingSound.probe(video)
    if first:
        print(f"Wan-Animate-2 ({options.variant}): {count} frames at {out_fps:g} fps, {options.steps} steps",
              file=sys.stderr)
    with output(args.out, first, out_fps, sound, count) as sink:
        result = animate2(components, inputs, options, device=device, sink=sink,
                          progress=print_progress if first else None, fast=fast)
    if first:
        print(f"wrote {args.out}: {result.num_frames} frames in {result.segments} segment(s) of "
              f"{result.segment_frames} ({result.seconds:.1f} s)", file=sys.stderr)
