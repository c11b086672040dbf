"""Seconds per denoising step: ours vs stock diffusers vs ComfyUI native, same random full-size weights, one process.

    python -m benchmarks.step --res 480p,720p --out benchmarks/results/step_h200.json          # on an H200
    python -m benchmarks.step --res 480p --models ours --memory-cap-gib 22 --blocks-on-cpu 8    # low-memory run
    python -m benchmarks.step --size tiny --device cpu --out /tmp/step.json                    # smoke test

Weights: one deterministic random tensor per diffusers key (benchmarks.models.RandomWeights), generated on the
device, loaded in turn into
- diffusers: WanAnimateTransformer3DModel in bf16 (fp32 where diffusers keeps fp32), default attention; one step
  = one `forward` (which re-encodes the face video, text and CLIP every call);
- comfy: ComfyUI's comfy.ldm.wan.model_animate.AnimateWanModel (from $COMFYUI_DIR, the carried .comfy_src or
  /opt/ComfyUI), bf16, the same tensors through wan_loader's diffusers->ComfyUI key map; one step = one forward;
- ours: the engine's AnimateDiT over the same diffusers model with its linears in fp8 (e4m3, per-channel scales),
  fp8 tensor-core GEMMs, the fastest attention kernel and (unless --no-compile) compiled blocks; one step = the
  step's time embedding + forward (per-segment work - face motion, pose embedding, context - is done once per
  segment by the engine and not counted, as in a real job).
Each model is freed before the next is built. Reported: median seconds per step, ratio of the faster competitor's
time to ours, TFLOP/s (1.71 PF / 6.60 PF per forward), peak allocated GPU memory, cosine similarity of each output
to the diffusers bf16 output on the same inputs. --memory-cap-gib then re-runs ours under
torch.cuda.set_per_process_memory_fraction with --blocks-on-cpu blocks swapped.
"""
from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import torch

from .harness import (
    Report,
    allocated_gib,
    cap_gpu_memory,
    cosine,
    free,
    median,
    model_parser,
    peak_gib,
    reset_peak,
    time_calls,
)
from .models import (
    KNOWN_FLOPS,
    RESOLUTIONS,
    RandomWeights,
    build_comfy,
    build_diffusers,
    build_fp8,
    import_comfy,
    transformer_config,
)

GOALS = {"480p ours vs best competitor": 2.0, "720p ours vs best competitor": 1.9}


def parse_args(argv=None):
    p = model_parser(__doc__)
    p.add_argument("--res", default="480p,720p", help="comma list of 480p, 720p (tiny: ignored)")
    p.add_argument("--frames", type=int, default=77)
    p.add_argument("--models", default="diffusers,comfy,ours")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--attention", default="auto",
                   help="ours, comma list: auto | accurate | int8 | cudnn_fp8 | ... (attention.CHOICES), or sm86 / "
                        "sm89 / sm120...: the kernels auto picks on that GPU generation (a proxy run on this GPU)")
    p.add_argument("--profile", action="store_true", help="write a kernel table of one step of ours (CUDA)")
    p.add_argument("--no-compile", action="store_true", help="ours: eager blocks")
    p.add_argument("--eager-too", action="store_true", help="ours: also time fp8 eager (before compiling)")
    p.add_argument("--memory-cap-gib", type=float, default=None, help="then run ours under this GPU memory cap")
    p.add_argument("--blocks-on-cpu", default="0", help="comma list: block swap counts for the capped runs")
    p.add_argument("--cap-res", default="480p", help="resolutions of the capped runs")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def forward_flops(cfg: dict, tokens: int, context: int = 512 + 257) -> float:
    """Matmul + attention FLOPs of one forward (the known full-size figures where they apply)."""
    if cfg["num_layers"] == 40 and tokens in KNOWN_FLOPS:
        return KNOWN_FLOPS[tokens]
    d, f = cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["ffn_dim"]
    per_block = 2 * tokens * (6 * d * d + 2 * d * f) + 4 * tokens * tokens * d + 4 * tokens * context * d
    return cfg["num_layers"] * per_block


class Inputs:
    """Random inputs of one step at one resolution (batch 1, one reference frame + `frames` video frames)."""

    def __init__(self, cfg: dict, height: int, width: int, frames: int, device, seed: int):
        g = torch.Generator().manual_seed(seed + 17)
        latent_frames = (frames - 1) // 4 + 1
        h, w = height // 8, width // 8
        size = cfg["motion_encoder_size"]
        bf16 = torch.bfloat16
        self.latent = torch.randn(1, cfg["in_channels"], latent_frames + 1, h, w, generator=g).to(device, bf16)
        self.pose = torch.randn(1, cfg["latent_channels"], latent_frames, h, w, generator=g).to(device, bf16)
        self.face = (torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1).to(device, bf16)
        self.text = torch.randn(1, 512, cfg["text_dim"], generator=g).to(device, bf16)
        self.clip = torch.randn(1, 257, cfg["image_dim"], generator=g).to(device, bf16)
        self.timestep = torch.tensor([700.0], device=device)
        p = cfg["patch_size"]
        self.tokens = (latent_frames + 1) // p[0] * (h // p[1]) * (w // p[2])


def run_diffusers(model, x: Inputs):
    return model(hidden_states=x.latent, timestep=x.timestep, encoder_hidden_states=x.text,
                 encoder_hidden_states_image=x.clip, pose_hidden_states=x.pose, face_pixel_values=x.face,
                 return_dict=False)[0]


def run_comfy(model, x: Inputs):
    return model(x.latent, x.timestep, x.text, clip_fea=x.clip, pose_latents=x.pose, face_pixel_values=x.face)


class Ours:
    """The engine's per-step work over an fp8 copy of the diffusers model."""

    def __init__(self, cfg, weights, device, args):
        self.model = build_fp8(cfg, weights, device)
        self.device, self.args = device, args
        self.fast = None

    def accelerate(self, compile: bool, attention: str, blocks_on_cpu: int = 0):
        from wan_animate.engine import AnimateDiT
        from wan_animate.engine.accel import AccelOptions, accelerate
        from wan_animate.engine.accel.processors import reset_self_attention
        from wan_animate.engine.placement import place_transformer, swapping
        reset_self_attention(self.model.blocks)
        options = AccelOptions(attention=attention, compile=compile)
        if attention.startswith("sm"):
            options.attention, options.fp8_matmul = generation_kernels(attention, self.device)
        swap = place_transformer(self.model, self.device, blocks_on_cpu)
        self.fast = accelerate(self.model, self.device, options)
        self.dit = AnimateDiT(self.model, swapping(swap, self.fast.block_runner))
        return self.fast.describe() | {"blocks_on_cpu": blocks_on_cpu}

    @torch.no_grad()
    def prepare(self, x: Inputs):
        dit = self.dit
        self.context = dit.encode_context(x.text, x.clip)
        self.motion = dit.encode_motion(x.face)
        self.pose = dit.embed_pose(x.pose)
        self.rotary = dit.rotary(x.latent.shape)

    def step(self, x: Inputs):
        embedding = self.dit.time_embedding(x.timestep, self.context)
        return self.dit(x.latent, embedding, self.context, self.motion, self.pose, self.rotary)


def generation_kernels(generation: str, device) -> tuple[str, str]:
    """(attention, fp8 matmul) that selection picks on GPU generation `generation` ("sm86": capability 8.6) given
    what works on this device: the kernels a proxy run forces here."""
    from dataclasses import replace

    from wan_animate.engine.accel.selection import device_facts, select_attention, select_fp8_matmul
    digits = generation[2:]
    facts = replace(device_facts(device), capability=(int(digits[:-1]), int(digits[-1])))
    return select_attention(facts), select_fp8_matmul(facts, has_fp8_weights=True)


def variant_name(attention: str) -> str:
    if attention == "auto":
        return "ours"
    if attention.startswith("sm"):
        return f"ours ({attention} kernels, proxy)"
    return f"ours ({attention})"


def measure(name: str, fn, x: Inputs, args, cfg, device, warmup: int | None = None) -> tuple[dict, torch.Tensor]:
    reset_peak(device)
    began = time.perf_counter()
    with torch.no_grad():
        times, out = time_calls(fn, device, args.warmup if warmup is None else warmup, args.repeats)
    seconds = median(times)
    row = {"model": name, "seconds": round(seconds, 4), "times": [round(t, 4) for t in times],
           "tflops": round(forward_flops(cfg, x.tokens) / seconds / 1e12, 1), "peak_gib": peak_gib(device),
           "wall_seconds": round(time.perf_counter() - began, 1)}
    print(f"  {name:<28} {seconds:8.3f} s/step  {row['tflops']:7.1f} TFLOP/s  peak {row['peak_gib']} GiB", flush=True)
    return row, out.float().cpu()


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    cfg = transformer_config(args.size)
    resolutions = ["tiny"] if args.size == "tiny" else args.res.split(",")
    frames = 9 if args.size == "tiny" else args.frames
    weights = RandomWeights(device, args.seed)
    models = args.models.split(",")
    report = Report("DiT step", args.out, device, vars(args) | {"frames": frames}, GOALS)
    inputs = {r: Inputs(cfg, *RESOLUTIONS[r], frames, device, args.seed) for r in resolutions}
    reference: dict[str, torch.Tensor] = {}

    def record(res, row, out):
        if res in reference:
            row["cosine_vs_diffusers_bf16"] = round(cosine(out, reference[res]), 5)
        report.add(res=res, **row)

    if "diffusers" in models:
        print("diffusers (bf16, default attention)", flush=True)
        model = build_diffusers(cfg, weights, device)
        for res in resolutions:
            row, out = measure("diffusers", partial(run_diffusers, model, inputs[res]), inputs[res], args, cfg, device)
            reference[res] = out
            record(res, row, out)
        del model
        free(device)

    if "comfy" in models:
        try:
            where = import_comfy(device)
            if cfg["num_attention_heads"] * cfg["attention_head_dim"] != 5120:
                raise ValueError("ComfyUI's AnimateWanModel hard-codes the 14B face/motion encoder sizes")
        except (ImportError, ValueError) as error:
            report.note(f"comfy skipped: {error}")
        else:
            print(f"comfy native AnimateWanModel ({where})", flush=True)
            model = build_comfy(cfg, weights, device)
            for res in resolutions:
                record(res, *measure("comfy", partial(run_comfy, model, inputs[res]), inputs[res], args, cfg, device))
            del model
            free(device)

    if "ours" in models:
        print("ours (fp8 + fast attention + compiled blocks)", flush=True)
        ours = Ours(cfg, weights, device, args)
        report.set(ours_weights_gib=allocated_gib(device))
        attentions = args.attention.split(",")
        variants = []
        if args.eager_too or args.no_compile:
            variants.append(("ours fp8 eager", False, attentions[0]))
        if not args.no_compile:
            variants += [(variant_name(a), True, a) for a in attentions]
        for name, compile, attention in variants:
            try:
                setup = ours.accelerate(compile, attention)
            except ValueError as error:  # a kernel this machine lacks (e.g. FlashAttention-3 not installed)
                report.note(f"{name} skipped: {error}")
                continue
            for res in resolutions:
                ours.prepare(inputs[res])
                began = time.perf_counter()
                try:
                    with torch.no_grad():
                        ours.step(inputs[res])  # first call: compile (timed separately)
                except Exception as error:  # noqa: BLE001 - e.g. a kernel that does not build on this GPU: report, go on
                    report.note(f"{res} {name} failed: {type(error).__name__}: {str(error)[:400]}")
                    free(device)
                    continue
                first = time.perf_counter() - began
                row, out = measure(name, partial(ours.step, inputs[res]), inputs[res], args, cfg, device, warmup=0)
                row.update(setup=setup, first_call_seconds=round(first, 1))
                record(res, row, out)
                if args.profile and device.type == "cuda" and args.out:
                    profile(partial(ours.step, inputs[res]), Path(args.out).with_suffix(f".{res}.{attention}.prof.txt"))
        if cap_gpu_memory(device, args.memory_cap_gib):
            for count in sorted(int(c) for c in args.blocks_on_cpu.split(",")):
                setup = ours.accelerate(not args.no_compile, attentions[-1], count)
                free(device)
                for res in args.cap_res.split(",") if args.size == "full" else resolutions:
                    name = f"ours, cap {args.memory_cap_gib:g} GiB, {count} blocks on CPU"
                    try:
                        ours.prepare(inputs[res])
                        with torch.no_grad():
                            ours.step(inputs[res])
                        row, out = measure(name, partial(ours.step, inputs[res]), inputs[res], args, cfg, device,
                                           warmup=0)
                    except torch.OutOfMemoryError as error:
                        report.note(f"{res} {name}: out of memory ({str(error).splitlines()[0]})")
                        free(device)
                        continue
                    row.update(setup=setup, memory_cap_gib=args.memory_cap_gib,
                               max_reserved_gib=peak_gib(device, reserved=True))
                    record(res, row, out)
        del ours
        free(device)

    add_ratios(report)
    report.print_table(["res", "model", "seconds", "speedup_vs_best_competitor", "tflops", "peak_gib",
                        "cosine_vs_diffusers_bf16"])
    return 0


def profile(fn, path: Path) -> None:
    """The CUDA kernels of one call, by total time (what to fuse next)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    with torch.no_grad(), torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    text = prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=90)
    with torch.no_grad(), torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                                        profile_memory=True) as prof:
        fn()
        torch.cuda.synchronize()
    text += "\n" + prof.key_averages().table(sort_by="self_cuda_memory_usage", row_limit=25,
                                              max_name_column_width=90)
    path.write_text(text)


def add_ratios(report: Report) -> None:
    """Each row's speed-up over the faster competitor at its resolution; the ratios of the plain `ours` rows."""
    for res in dict.fromkeys(r["res"] for r in report.rows):
        rows = [r for r in report.rows if r["res"] == res]
        competitors = [r["seconds"] for r in rows if r["model"] in ("diffusers", "comfy")]
        if not competitors:
            continue
        for r in rows:
            r["speedup_vs_best_competitor"] = round(min(competitors) / r["seconds"], 3)
            if r["model"].startswith("ours") and "memory_cap_gib" not in r:
                report.ratio(f"{res} {r['model']} vs best competitor", r["speedup_vs_best_competitor"])


if __name__ == "__main__":
    sys.exit(main())
