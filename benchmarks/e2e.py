"""A whole 77-frame 480p job, timed stage by stage: preprocessing, encoders, 4 distilled steps, decode; the same job
through diffusers' WanAnimatePipeline on the same weights; the VAE with its fast path on and off.

    python -m benchmarks.e2e --out benchmarks/results/e2e_h200.json          # on an H200 (goal: <= 9 s in total)
    python -m benchmarks.e2e --size tiny --device cpu --out /tmp/e2e.json    # smoke test

Every model is full size with random weights (no downloads): YOLOv10m- and ViTPose-H-sized ONNX graphs (built
once into --model-dir, as benchmarks.preprocess does) run by the real PoseEstimator/preprocess pipeline on
a 77-frame 832x480 driving clip; umT5-XXL, CLIP ViT-H/14, the Wan2.1 VAE and the Animate DiT (fp8, fast attention,
compiled blocks) run through the engine's `animate()` with a distill-shaped LoRA (lightx2v layout, rank 64, on
every attention and FFN linear of the 40 blocks; merged into the fp8 weights once at load by default, as a distill
LoRA serves every job - --lora-mode merge/runtime use the engine's per-job modes), 4 Euler steps, guide 1. The job runs twice: the first run
warms up (compilation, kernel selection); the second is reported. Stage times come from timers around each
component's calls (device synchronised); "other" is the rest (motion encoder, LoRA merge/unmerge, conditioning).

The competitor (`--competitor diffusers`, default): diffusers' WanAnimatePipeline with the same random weights in
bf16 (the DiT unquantised, the same LoRA merged into it once), the same VAE, umT5 and CLIP objects, the
preprocessed pose and face frames of our job as its inputs, Euler with shift 5, 4 steps, guide 1, SDPA attention;
run twice, the second reported. The ratio is its time over our job without preprocessing (diffusers has none).
The VAE rows encode the job's 77-frame video and decode its 20 latent frames with diffusers' own VAE code (in the
VAE's dtype, and in bf16) and with the fast path (wan_animate.engine.vae_fast: auto = bf16 on CUDA; fp32), with
each one's relative error to diffusers' fp32 result.
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

GOAL_SECONDS = 9.0
GOAL_VS_DIFFUSERS = 2.5


def parse_args(argv=None):
    p = model_parser(__doc__)
    p.add_argument("--frames", type=int, default=77)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--attention", default="auto")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--blocks-on-cpu", type=int, default=0)
    p.add_argument("--offload-encoders", action="store_true", help="umT5/CLIP live on the CPU between jobs")
    p.add_argument("--tiled-vae", action="store_true")
    p.add_argument("--vae-dtype", choices=["fp32", "bf16"], default="fp32",
                   help="the VAE's weights (wan_loader loads fp32 unless told otherwise)")
    p.add_argument("--no-vae-fast", action="store_true", help="our job uses diffusers' VAE code (AnimateOptions)")
    p.add_argument("--vae-compile", action="store_true", help="our job compiles the VAE's residual blocks")
    p.add_argument("--vae-chunks", default="1,4", help="fast-path chunk sizes (latent frames) for the VAE rows")
    p.add_argument("--vae-repeats", type=int, default=1, help="timed calls per VAE row (the median is reported)")
    p.add_argument("--competitor", choices=["diffusers", "none"], default="diffusers")
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


def build_components(size: str, device, weights, offload_encoders: bool = False, vae_dtype: str = "fp32"):
    """The job's models with random weights: `size` tiny or full (fp8 DiT); umT5/CLIP on the CPU when
    `offload_encoders`; the VAE in `vae_dtype` (fp32 as wan_loader loads it, or bf16)."""
    from transformers import CLIPImageProcessor

    from wan_loader import WanAnimateComponents
    from wan_loader.testing import tiny
    from wan_loader.model.configs import CLIP_VIT_H_CONFIG, UMT5_XXL_CONFIG, WAN21_VAE_CONFIG
    vae_dtype = torch.float32 if vae_dtype == "fp32" else torch.bfloat16
    if size == "tiny":
        c = tiny.tiny_components()
        c.transformer = build_fp8(transformer_config("tiny"), weights, device)
        c.vae = c.vae.to(device, vae_dtype)
        return c
    encoder_device = "cpu" if offload_encoders else device
    return WanAnimateComponents(
        transformer=build_fp8(transformer_config("full"), weights, device),
        vae=random_module("vae", WAN21_VAE_CONFIG, weights, device).to(vae_dtype),
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
        self._wrapped: list = []

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
        self._wrapped.append((obj, method, inner))

    def restore(self) -> None:
        for obj, method, inner in reversed(self._wrapped):
            if isinstance(obj, type):
                setattr(obj, method, inner)
            else:
                obj.__dict__.pop(method, None)
        self._wrapped.clear()


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
    from wan_animate.engine.conditioning import LatentCodec
    from wan_animate.preprocess import preprocess
    timer = StageTimer(device)
    c = components
    timer.wrap(c.text_encoder, "forward", "text encoder (umT5)")
    timer.wrap(c.image_encoder, "forward", "image encoder (CLIP)")
    timer.wrap(LatentCodec, "encode", "VAE encode")  # the codec: the fast path does not call vae.encode
    timer.wrap(LatentCodec, "decode", "VAE decode")
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
                             seed=0, vae_fast=not args.no_vae_fast, vae_compile=args.vae_compile)
    job_began = time.perf_counter()
    try:
        result = animate(c, inputs, options, device=device, loras=[(lora, 1.0)] if lora is not None else (),
                         block_runner=runner, progress=progress)
        sync(device)
    finally:
        timer.restore()
    total = time.perf_counter() - began
    steps_seconds = marks[-1] - first_block[0] if marks and first_block else float("nan")
    stages = {"preprocess (detection, pose, skeleton, face crops)": prep_seconds, **timer.seconds,
              f"DiT {args.steps} steps": steps_seconds}
    stages["other (per-job LoRA, conditioning, letterbox, frame copies)"] = (
        total - sum(v for v in stages.values()))
    return inputs, {"kind": "ours", "total_seconds": round(total, 2),
            "job_seconds": round(time.perf_counter() - job_began, 2),
            "frames_out": int(result.num_frames), "resolution": [width, height],
            "per_step_seconds": [round(b - a, 3) for a, b in zip([first_block[0]] + marks[:-1], marks)]
            if first_block else [],
            "stages": {k: round(v, 3) for k, v in stages.items()}, "peak_gib": peak_gib(device)}


def diffusers_pipeline(args, components, weights, device, lora):
    """diffusers' WanAnimatePipeline on the same weights: the DiT in bf16 (as from_pretrained(torch_dtype=bf16)),
    the distill LoRA merged into it once, and our VAE, umT5 and CLIP objects."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanAnimatePipeline

    from wan_loader.lora import merge_loras

    from .models import build_diffusers
    transformer = build_diffusers(transformer_config(args.size), weights, device)
    merge_loras(transformer, [(lora, 1.0)])
    c = components
    pipe = WanAnimatePipeline(tokenizer=c.tokenizer, text_encoder=c.text_encoder, vae=c.vae,
                              scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0), image_processor=c.image_processor,
                              image_encoder=c.image_encoder, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_diffusers_job(args, pipe, inputs, device, height: int, width: int, frames: int) -> dict:
    """The same job through the pipeline, stage by stage (the pipeline calls the VAE's own encode/decode)."""
    from PIL import Image

    from wan_animate.engine.conditioning import OFFICIAL_PROMPT
    timer = StageTimer(device)
    timer.wrap(pipe.text_encoder, "forward", "text encoder (umT5)")
    timer.wrap(pipe.image_encoder, "forward", "image encoder (CLIP)")
    timer.wrap(pipe.vae, "encode", "VAE encode")
    timer.wrap(pipe.vae, "decode", "VAE decode")
    timer.wrap(pipe.transformer, "forward", f"DiT {args.steps} steps")
    pil = lambda video: [Image.fromarray(np.asarray(f)) for f in video]  # noqa: E731
    reference, pose, face = Image.fromarray(np.asarray(inputs.reference)), pil(inputs.pose), pil(inputs.face)
    reset_peak(device)
    sync(device)
    began = time.perf_counter()
    try:
        out = pipe(image=reference, pose_video=pose, face_video=face, prompt=OFFICIAL_PROMPT, height=height, width=width,
                   segment_frame_length=frames, num_inference_steps=args.steps, mode="animate", guidance_scale=1.0,
                   generator=torch.Generator().manual_seed(0), output_type="np").frames[0]
        sync(device)
    finally:
        timer.restore()
    total = time.perf_counter() - began
    stages = dict(timer.seconds)
    stages["other (conditioning, image processing, frame copies)"] = total - sum(stages.values())
    return {"kind": "diffusers", "total_seconds": round(total, 2), "frames_out": int(len(out)),
            "stages": {k: round(v, 3) for k, v in stages.items()}, "peak_gib": peak_gib(device)}


def vae_rows(args, vae, device, height: int, width: int, frames: int) -> list[dict]:
    """The job's VAE work (encode the 77-frame video, decode its 20 latent frames) by diffusers' code and by the
    fast path, timed (second of two calls) with the relative error to diffusers' fp32 result."""
    import copy

    from wan_animate.engine.vae_fast import FastWanVae, VaeFastOptions
    from .harness import median, relative_error, time_calls
    g = torch.Generator().manual_seed(0)
    video = (torch.rand(1, 3, frames, height, width, generator=g) * 2 - 1).to(device)
    latents = torch.randn(1, vae.config.z_dim, (frames - 1) // 4 + 1, height // 8, width // 8, generator=g).to(device)
    weights = next(vae.parameters()).dtype
    fp32 = vae if weights == torch.float32 else copy.deepcopy(vae).float()
    bf16 = vae if weights == torch.bfloat16 else copy.deepcopy(vae).to(torch.bfloat16)

    def diffusers_codec(model):
        dtype = next(model.parameters()).dtype
        return (lambda: model.encode(video.to(dtype)).latent_dist.mode().float(),
                lambda: model.decode(latents.to(dtype)).sample.float())

    variants = [("diffusers fp32", *diffusers_codec(fp32)), ("diffusers bf16", *diffusers_codec(bf16))]
    for chunk in (int(c) for c in args.vae_chunks.split(",")):
        for dtype in ("auto", "fp32"):
            fast = FastWanVae(vae, VaeFastOptions(dtype=dtype, chunk=chunk))
            variants.append((f"fast {dtype} chunk {chunk}", (lambda f=fast: f.encode(video)),
                             (lambda f=fast: f.decode(latents))))
    if args.vae_compile:
        fast = FastWanVae(vae, VaeFastOptions(compile=True))
        variants.append((f"fast auto compiled ({fast.compile_skipped or 'compiled'})", lambda: fast.encode(video),
                         lambda: fast.decode(latents)))
    rows, reference = [], None
    with torch.no_grad():
        for name, encode, decode in variants:
            reset_peak(device)
            enc_times, encoded = time_calls(encode, device, 1, args.vae_repeats)
            dec_times, decoded = time_calls(decode, device, 1, args.vae_repeats)
            if reference is None:
                reference = (encoded, decoded)
            rows.append({"kind": "vae", "variant": name, "encode_seconds": round(median(enc_times), 3),
                         "decode_seconds": round(median(dec_times), 3),
                         "encode_error": round(relative_error(encoded, reference[0]), 5),
                         "decode_error": round(relative_error(decoded, reference[1]), 5), "peak_gib": peak_gib(device)})
            print(f"VAE {name}: encode {rows[-1]['encode_seconds']} s, decode {rows[-1]['decode_seconds']} s, "
                  f"error {rows[-1]['encode_error']} / {rows[-1]['decode_error']}", flush=True)
            del encoded, decoded
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    height, width, frames = (480, 832, args.frames) if args.size == "full" else (64, 64, 9)
    weights = RandomWeights(device, 0)
    report = Report("end-to-end job", args.out, device, vars(args),
                    {"seconds": GOAL_SECONDS, "diffusers pipeline vs ours (without preprocessing)": GOAL_VS_DIFFUSERS})
    began = time.perf_counter()
    components = build_components(args.size, device, weights, args.offload_encoders, args.vae_dtype)
    estimator = None if args.no_preprocess else pose_estimator(args)
    from wan_animate.engine.accel import AccelOptions, accelerate
    from wan_animate.engine.placement import place_transformer, swapping
    swap = place_transformer(components.transformer, device, args.blocks_on_cpu)
    fast = accelerate(components.transformer, device, AccelOptions(
        attention=args.attention, compile=not args.no_compile))
    fast.block_runner = swapping(swap, fast.block_runner)
    lora = distill = distill_lora(components.transformer, args.lora_rank if args.size == "full" else 4)
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
        inputs, result = run_job(args, components, estimator, lora, fast, device, height, width, frames)
        report.add(run=run, **result)
        print(f"{run}: {result['total_seconds']} s  {result['stages']}  peak {result['peak_gib']} GiB", flush=True)
    measured = report.rows[-1]
    report.set(total_seconds=measured["total_seconds"], meets_goal=measured["total_seconds"] <= GOAL_SECONDS,
               vae_path=vae_path(components.vae, args))
    for row in vae_rows(args, components.vae, device, height, width, frames):
        report.add(run="measured", **row)
    theirs = None
    if args.competitor == "diffusers":
        pipe = diffusers_pipeline(args, components, weights, device, distill)
        for run in ("warm-up", "measured"):
            theirs = run_diffusers_job(args, pipe, inputs, device, height, width, frames)
            report.add(run=run, **theirs)
            print(f"diffusers {run}: {theirs['total_seconds']} s  {theirs['stages']}", flush=True)
        del pipe
        report.ratio("diffusers pipeline vs ours (without preprocessing)",
                     theirs["total_seconds"] / measured["job_seconds"])
    vae = {r["variant"]: r for r in report.rows if r["kind"] == "vae"}
    fast_row = f"fast auto chunk {args.vae_chunks.split(',')[0]}"
    for what in ("encode", "decode"):
        report.ratio(f"VAE {what}: diffusers (VAE weights' dtype) vs {fast_row}",
                     vae[f"diffusers {args.vae_dtype}"][f"{what}_seconds"] / vae[fast_row][f"{what}_seconds"])
    print("\n| stage | ours (s) |" + (" diffusers (s) |" if theirs else "") + "\n|---|---|" + ("---|" if theirs else ""))
    for k, v in measured["stages"].items():
        other = f" {theirs['stages'].get(k, float('nan')):.2f} |" if theirs else ""
        print(f"| {k} | {v:.2f} |{other}")
    print(f"| **total** | **{measured['total_seconds']:.2f}** |" + (f" **{theirs['total_seconds']:.2f}** |" if theirs else ""))
    report.print_ratios()
    return 0


def vae_path(vae, args) -> dict:
    from wan_animate.engine.conditioning import LatentCodec
    from wan_animate.engine.options import AnimateOptions
    options = AnimateOptions(vae_fast=not args.no_vae_fast, vae_compile=args.vae_compile)
    return LatentCodec(vae, tiled=args.tiled_vae, fast=options.vae_fast_options()).describe()


if __name__ == "__main__":
    sys.exit(main())
