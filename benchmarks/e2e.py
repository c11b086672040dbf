"""A whole 77-frame 480p job, timed stage by stage: preprocessing, encoders, 4 distilled steps, decode.

    python -m benchmarks.e2e --out benchmarks/results/e2e_h100.json          # on an H100 (goal: <= 20 s in total)
    python -m benchmarks.e2e --size tiny --device cpu --out /tmp/e2e.json    # smoke test

Every model is full size with random weights (no downloads): YOLOv10m- and ViTPose-H-sized ONNX graphs (built
once into --model-dir, as benchmarks.preprocess does) run by the real PoseEstimator/preprocess pipeline on
a 77-frame 832x480 driving clip; umT5-XXL, CLIP ViT-H/14, the Wan2.1 VAE and the Animate DiT (fp8, fast attention,
compiled blocks) run through the engine's `animate()` with a distill-shaped LoRA (lightx2v layout, rank 64, on
every attention and FFN linear of the 40 blocks; merged into the fp8 weights once at load by default, as a distill
LoRA serves every job - --lora-mode merge/runtime use the engine's per-job modes), 4 Euler steps, guide 1. The job runs twice: the first run
warms up (compilation, kernel selection); the second is reported. Stage times come from timers around each
component's calls (device synchronised); "other" is the rest (motion encoder, LoRA merge/unmerge, conditioning).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .harness import Report, allocated_gib, cap_gpu_memory, model_parser, peak_gib, reset_peak, sync
from .models import RandomWeights, build_fp8, random_module, transformer_config
from .preprocess import build_models

GOAL_SECONDS = 20.0


def parse_args(argv=None):
    p = model_parser(__doc__)
    p.add_argument("--frames", type=int, default=77)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--attention", default="auto")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--blocks-on-cpu", type=int, default=0)
    p.add_argument("--offload-encoders", action="store_true", help="umT5/CLIP live on the CPU between jobs")
    p.add_argument("--tiled-vae", action="store_true")
    p.add_argument("--lora-rank", type=int, default=64)
    p.add_argument("--lora-mode", choices=["load", "merge", "runtime"], default="load",
                   help="load: merged once when the model is set up (a distill LoRA stays for every job); "
                        "merge / runtime: the engine's per-job LoRA modes")
    p.add_argument("--memory-cap-gib", type=float, default=None,
                   help="cap GPU memory (torch.cuda.set_per_process_memory_fraction) for the jobs")
    p.add_argument("--no-preprocess", action="store_true",
                   help="synthetic skeleton/face frames instead of running detection + pose (GPU-side figures only)")
    p.add_argument("--preprocess-device", default="auto", help="onnxruntime providers: auto | cuda | cpu")
    p.add_argument("--model-dir", type=Path, default=Path.home() / ".cache" / "wan_animate" / "bench_models")
    return p.parse_args(argv)


def build_components(args, device, weights):
    from transformers import CLIPImageProcessor

    from wan_loader import WanAnimateComponents
    from wan_loader.testing import tiny
    from wan_loader.model.configs import CLIP_VIT_H_CONFIG, UMT5_XXL_CONFIG, WAN21_VAE_CONFIG
    if args.size == "tiny":
        c = tiny.tiny_components()
        c.transformer = build_fp8(transformer_config("tiny"), weights, device)
        return c
    encoder_device = "cpu" if args.offload_encoders else device
    return WanAnimateComponents(
        transformer=build_fp8(transformer_config("full"), weights, device),
        vae=random_module("vae", WAN21_VAE_CONFIG, weights, device),
        text_encoder=random_module("text_encoder", UMT5_XXL_CONFIG, weights, encoder_device),
        tokenizer=tiny.tiny_tokenizer(),
        image_encoder=random_module("image_encoder", CLIP_VIT_H_CONFIG, weights, encoder_device),
        image_processor=CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
        sources={"all": "random full-size weights"},
    )


def distill_lora(transformer, rank: int, seed: int = 0):
    """A LoRA shaped like lightx2v's distill LoRAs: every attention/FFN linear of every block, rank `rank`."""
    from wan_loader.keymaps.transformer import plan_diffusers_to_original
    from wan_loader.lora.file import lora_from_state_dict
    g = torch.Generator().manual_seed(seed)
    shapes = {k: tuple(v.shape) for k, v in transformer.state_dict().items()}
    plan = plan_diffusers_to_original(shapes)
    sd = {}
    for original, recipe in plan.items():
        if not original.startswith("blocks.") or not original.endswith(".weight") or len(recipe.sources) != 1:
            continue
        if not any(p in original for p in (".self_attn.", ".cross_attn.", ".ffn.")) or "norm" in original:
            continue
        out_f, in_f = shapes[recipe.sources[0]]
        base = "diffusion_model." + original[: -len(".weight")]
        sd[base + ".lora_down.weight"] = (torch.randn(rank, in_f, generator=g) * in_f ** -0.5).to(torch.bfloat16)
        sd[base + ".lora_up.weight"] = (torch.randn(out_f, rank, generator=g) * 0.01 / rank ** 0.5).to(torch.bfloat16)
        sd[base + ".alpha"] = torch.tensor(float(rank))
    return lora_from_state_dict(sd, f"distill-shaped rank {rank}")


class StageTimer:
    """Wall time of each stage (device synchronised around it), summed over calls."""

    def __init__(self, device):
        self.device = device
        self.seconds: dict[str, float] = {}

    def wrap(self, obj, method: str, stage: str) -> None:
        inner = getattr(obj, method)

        def timed(*a, **k):
            sync(self.device)
            began = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                sync(self.device)
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - began

        setattr(obj, method, timed)


def driving_clip(frames: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = [rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
            for _ in range(8)]
    return np.stack([base[i % 8] for i in range(frames)])


def pose_estimator(args):
    from wan_animate.preprocess.estimator import PoseEstimator
    size = "tiny" if args.size == "tiny" else "real"
    models = argparse.Namespace(model_dir=args.model_dir, size=size, static_batch=False, people=1, pose="h")
    detector, pose = build_models(models)
    device = args.preprocess_device if args.preprocess_device != "auto" else ("cpu" if args.size == "tiny"
                                                                              else "auto")
    return PoseEstimator(detector, pose, providers=device, batch_size=16)


def run_job(args, components, estimator, lora, fast, device, height: int, width: int, frames: int) -> dict:
    from wan_animate.engine import AnimateInputs, AnimateOptions, animate
    from wan_animate.preprocess import preprocess
    timer = StageTimer(device)
    c = components
    timer.wrap(c.text_encoder, "forward", "text encoder (umT5)")
    timer.wrap(c.image_encoder, "forward", "image encoder (CLIP)")
    timer.wrap(c.vae, "encode", "VAE encode")
    timer.wrap(c.vae, "decode", "VAE decode")
    timer.wrap(c.transformer.motion_encoder, "forward", "face motion encoder")
    marks: list[float] = []
    clip = driving_clip(frames, height, width)
    reference = clip[0].copy()
    reset_peak(device)
    began = time.perf_counter()
    if estimator is None:
        inputs = AnimateInputs(reference, clip, clip[:, :512, :512].copy())
    else:
        prep = preprocess(estimator, clip, reference, fps=30.0, resolution_area=height * width,
                          check_reference=False)
        inputs = AnimateInputs(prep.reference, prep.pose, prep.face)
    prep_seconds = time.perf_counter() - began
    first_block: list[float] = []

    def runner(index, block, *a):
        if not first_block:
            sync(device)
            first_block.append(time.perf_counter())
        return fast.block_runner(index, block, *a)

    def progress(done, total, **info):
        sync(device)
        marks.append(time.perf_counter())

    options = AnimateOptions(steps=args.steps, solver="euler", guide_scale=1.0, segment_frames=frames,
                             tiled_vae=args.tiled_vae, lora_mode=args.lora_mode if lora is not None else "runtime",
                             seed=0)
    job_began = time.perf_counter()
    result = animate(c, inputs, options, device=device, loras=[(lora, 1.0)] if lora is not None else (),
                     block_runner=runner, progress=progress)
    sync(device)
    total = time.perf_counter() - began
    for obj, method in ((c.text_encoder, "forward"), (c.image_encoder, "forward"), (c.vae, "encode"),
                        (c.vae, "decode"), (c.transformer.motion_encoder, "forward")):
        obj.__dict__.pop(method, None)
    steps_seconds = marks[-1] - first_block[0] if marks and first_block else float("nan")
    stages = {"preprocess (detection, pose, skeleton, face crops)": prep_seconds, **timer.seconds,
              f"DiT {args.steps} steps": steps_seconds}
    stages["other (per-job LoRA, conditioning, letterbox, frame copies)"] = (
        total - sum(v for v in stages.values()))
    return {"total_seconds": round(total, 2), "job_seconds": round(time.perf_counter() - job_began, 2),
            "frames_out": int(result.num_frames), "resolution": [width, height],
            "per_step_seconds": [round(b - a, 3) for a, b in zip([first_block[0]] + marks[:-1], marks)]
            if first_block else [],
            "stages": {k: round(v, 3) for k, v in stages.items()}, "peak_gib": peak_gib(device)}


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    height, width, frames = (480, 832, args.frames) if args.size == "full" else (64, 64, 9)
    weights = RandomWeights(device, 0)
    report = Report("end-to-end job", args.out, device, vars(args), {"seconds": GOAL_SECONDS})
    began = time.perf_counter()
    components = build_components(args, device, weights)
    estimator = None if args.no_preprocess else pose_estimator(args)
    from wan_animate.engine.accel import AccelOptions, accelerate
    from wan_animate.engine.placement import place_transformer, swapping
    swap = place_transformer(components.transformer, device, args.blocks_on_cpu)
    fast = accelerate(components.transformer, device, AccelOptions(
        attention=args.attention, compile=not args.no_compile))
    fast.block_runner = swapping(swap, fast.block_runner)
    lora = distill_lora(components.transformer, args.lora_rank if args.size == "full" else 4)
    if args.lora_mode == "load":
        from wan_loader.lora import merge_loras
        merged = time.perf_counter()
        handle = merge_loras(components.transformer, [(lora, 1.0)])
        sync(device)
        report.set(lora_merge_at_load_seconds=round(time.perf_counter() - merged, 3),
                   lora_merged_parameters=len(handle.plan.changes))
        lora = None
    report.set(setup_seconds=round(time.perf_counter() - began, 1), accel=fast.describe() | {"blocks_on_cpu": args.blocks_on_cpu},
               preprocess_providers=estimator.providers if estimator else None,
               weights_on_gpu_gib=allocated_gib(device))
    cap_gpu_memory(device, args.memory_cap_gib)
    print(f"setup {report.data['setup_seconds']} s, {fast.describe()}, on GPU {report.data['weights_on_gpu_gib']} GiB",
          flush=True)
    for run in ("warm-up", "measured"):
        result = run_job(args, components, estimator, lora, fast, device, height, width, frames)
        report.add(run=run, **result)
        print(f"{run}: {result['total_seconds']} s  {result['stages']}  peak {result['peak_gib']} GiB", flush=True)
    measured = report.rows[-1]
    report.set(total_seconds=measured["total_seconds"], meets_goal=measured["total_seconds"] <= GOAL_SECONDS)
    print("\n| stage | seconds |\n|---|---|")
    for k, v in measured["stages"].items():
        print(f"| {k} | {v:.2f} |")
    print(f"| **total** | **{measured['total_seconds']:.2f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
