"""Wan-Animate-2: seconds per denoising step, ours vs diffusers' WanAnimate2Transformer3DModel on the same random
full-size weights in one process; then a distilled job end to end with its stages.

    python -m benchmarks.animate2 --out benchmarks/results/animate2_h200.json          # on an H200
    python -m benchmarks.animate2 --size tiny --device cpu --no-compile --e2e-frames 9  # smoke test
    python -m benchmarks.animate2 --int8-only --out benchmarks/results/animate2_int8_h200.json  # int8 ConvRot only

Step (one generation forward at 480p, 81 frames = 21 latent frames + the reference slot, the driving K/V cache
filled beforehand and not counted, as in a real job where it is built once per segment):
- diffusers: bf16, its in-context attention through flex attention with a BlockMask, blocks compiled with
  `compile_repeated_blocks` as its docstring requires (first call timed separately);
- ours: Animate2DiT over the same model with its block linears in fp8 (e4m3, per-channel scales, fp8 tensor-core
  GEMMs) and each attention choice (`--attention`): fp8 kernels frame by frame, bf16 cuDNN merged by log-sum-exp;
  each eager and with compiled blocks (`compile=True`; not with --no-compile); then with the first attention choice
  and the driving K/V cache in host memory (`--driving-cache`, default host and host_int8: each layer copied in on a
  side stream while the previous one computes; the step's time then includes those copies, its peak only two layers);
- ours int8: the block linears as Comfy-Org's int8 ConvRot repack stores them (group 256, one scale per row), kept
  int8 through comfy-kitchen's int8 GEMMs vs dequantised to bf16 at load (what int8_weights auto/dequantize do), with
  the first attention choice; and the three block linear shapes alone at the step's token count, bf16 vs int8 kept.
Job (`--e2e-frames`, default 81): the distilled variant (10 steps, no CFG) with full-size random umT5-XXL, CLIP
ViT-H and Wan2.1 VAE, 480p, printed as stages: setup (prompts, CLIP, reference latent), per segment the driving
pass, denoising and decode.
"""
from __future__ import annotations

import itertools
import time

import numpy as np
import torch

from .harness import Report, allocated_gib, cosine, free, median, model_parser, peak_gib, reset_peak, sync, time_calls
from .models import RESOLUTIONS, RandomWeights, build_diffusers, build_fp8, build_int8, random_module

GOALS = {"480p ours vs diffusers": 1.8}
FULL = {"_class_name": "WanAnimate2Transformer3DModel"}  # diffusers' defaults are the 14B release's


def animate2_config(size: str) -> dict:
    from wan_loader.testing.tiny import TINY_ANIMATE2_CONFIG

    return dict(FULL) if size == "full" else {**FULL, **TINY_ANIMATE2_CONFIG}


def parse_args(argv=None):
    p = model_parser(__doc__)
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--attention", default="cudnn_fp8,cudnn", help="ours, comma list (accel attention choices)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="diffusers eager (CPU smoke tests only)")
    p.add_argument("--e2e-frames", type=int, default=81, help="0: no end-to-end job")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--driving-cache", default="host,host_int8",
                   help="ours with the driving K/V cache in host memory, comma list (host, host_int8; empty: none)")
    p.add_argument("--int8-only", action="store_true",
                   help="only the int8 ConvRot rows (step kept vs dequantised, the linear shapes): no fp8, diffusers "
                        "or job")
    return p.parse_args(argv)


class Inputs:
    def __init__(self, cfg: dict, height: int, width: int, frames: int, device, seed: int):
        g = torch.Generator().manual_seed(seed + 17)
        self.latent_frames = (frames - 1) // 4 + 1
        h, w = height // 8, width // 8
        bf16 = torch.bfloat16
        dim = cfg.get("text_dim", 4096)
        self.height, self.width, self.frames = height, width, frames
        self.generation = torch.randn(1, 36, self.latent_frames + 1, h, w, generator=g).to(device, bf16)
        self.driving = torch.randn(1, 36, self.latent_frames, h, w, generator=g).to(device, bf16)
        self.text = torch.randn(1, 512, dim, generator=g).to(device, bf16)
        self.text_ref = torch.randn(1, 512, dim, generator=g).to(device, bf16)
        self.clip = torch.randn(1, 257, 1280, generator=g).to(device, bf16)
        self.timestep = torch.tensor([700.0], device=device)
        self.tokens = (self.latent_frames + 1) * (h // 2) * (w // 2)


def step_flops(cfg: dict, x: Inputs) -> float:
    d, f, layers = cfg.get("dim", 5120), cfg.get("ffn_dim", 13824), cfg.get("num_layers", 40)
    s, hw = x.tokens, x.tokens // (x.latent_frames + 1)
    per_block = 2 * s * (6 * d * d + 2 * d * f) + 4 * s * (s + hw) * d + 4 * s * (512 + 257) * d
    return layers * per_block


class Diffusers:
    def __init__(self, model, x: Inputs, compile: bool):
        from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache

        self.model, self.x = model, x
        grid = torch.tensor([[x.latent_frames, x.driving.shape[-2] // 2, x.driving.shape[-1] // 2]])
        self.grid = grid
        self.cache = WanAnimate2KVCache(len(model.blocks))
        with torch.no_grad():
            model([x.driving[0, 20:]], timestep=x.timestep, encoder_hidden_states=[x.text_ref[0]],
                  encoder_hidden_states_image=x.clip, condition_latents=[x.driving[0, :20]], kv_cache=self.cache,
                  kv_cache_mode="extract", seq_len=x.driving[0, 0].numel() // 4, offset_grid_sizes=grid)
        if compile:
            model.compile_repeated_blocks(fullgraph=False)

    def step(self):
        x = self.x
        return self.model([x.generation[0, :16]], timestep=x.timestep, encoder_hidden_states=[x.text[0]],
                          encoder_hidden_states_image=x.clip, condition_latents=[x.generation[0, 16:]],
                          kv_cache=self.cache, kv_cache_mode="cached", seq_len=x.tokens,
                          reference_grid_sizes=self.grid, origin_len=x.frames, origin_area=[x.height, x.width],
                          return_dict=False)[0][0][None]


class Ours:
    def __init__(self, model, x: Inputs, device, attention: str, compile: bool = False, driving_cache: str = "device"):
        from wan_animate.engine.accel import AccelOptions
        from wan_animate.engine.animate2.accel import accelerate_animate2
        from wan_animate.engine.animate2.kvcache import HostDrivingCache

        self.fast = accelerate_animate2(model, device, AccelOptions(attention=attention, compile=compile))
        self.dit = self.fast.dit(model)
        self.x = x
        host = None if driving_cache == "device" else HostDrivingCache(device, len(model.blocks),
                                                                         int8=driving_cache == "host_int8")
        with torch.no_grad():
            self.context = self.dit.encode_context(x.text, x.clip)
            self.driving = self.dit.driving_pass(x.driving, self.dit.encode_context(x.text_ref, x.clip), host)

    def step(self):
        return self.dit(self.x.generation, self.x.timestep, self.context, self.driving)


def measure(report, name, fn, x, cfg, device, repeats, first_call=True):
    reset_peak(device)
    first = None
    if first_call:
        began = time.perf_counter()
        with torch.no_grad():
            fn()
        sync(device)
        first = round(time.perf_counter() - began, 1)
    with torch.no_grad():
        times, out = time_calls(fn, device, 0, repeats)
    seconds = median(times)
    row = {"model": name, "seconds": round(seconds, 4), "times": [round(t, 4) for t in times],
           "tflops": round(step_flops(cfg, x) / seconds / 1e12, 1), "peak_gib": peak_gib(device),
           "first_call_seconds": first}
    print(f"  {name:<34} {seconds:8.3f} s/step  {row['tflops']:7.1f} TFLOP/s  peak {row['peak_gib']} GiB", flush=True)
    return row, out.float().cpu()


def int8_rows(report, cfg, x: Inputs, weights, device, attention: str, repeats: int, outputs: dict) -> None:
    """The step with the block linears int8 kept (comfy-kitchen) vs dequantised to bf16 at load."""
    from wan_animate.engine.accel import choose_int8_weights
    from wan_loader.int8_convrot import Int8Weights

    kept = choose_int8_weights(device, "keep")
    if not kept.keep:
        report.note(f"int8 kept skipped: {kept.refusal}")
    rows = {}
    for label, choice in (("dequantised bf16", Int8Weights()), ("kept", kept)):
        if label == "kept" and not kept.keep:
            continue
        model = build_int8(cfg, weights, device, choice)
        weights_gib = allocated_gib(device)
        ours = Ours(model, x, device, attention)
        name = f"ours int8 {label} ({attention}, {ours.fast.describe()['in_context']})"
        row, outputs[name] = measure(report, name, ours.step, x, cfg, device, repeats)
        rows[label] = report.add(res="480p", setup=ours.fast.describe(), weights_gib=weights_gib, **row)
        del ours, model
        free(device)
    if len(rows) == 2:
        rows["kept"]["speedup_vs_int8_dequantised"] = round(rows["dequantised bf16"]["seconds"] /
                                                            rows["kept"]["seconds"], 3)
        rows["kept"]["cosine_vs_int8_dequantised"] = round(cosine(outputs[rows["kept"]["model"]],
                                                                  outputs[rows["dequantised bf16"]["model"]]), 5)
        report.ratio("480p step int8 kept vs dequantised", rows["kept"]["speedup_vs_int8_dequantised"])


def int8_linears(report, cfg, tokens: int, device, repeats: int) -> None:
    """The block linear shapes alone, M = the step's tokens: bf16 F.linear vs comfy-kitchen's int8_linear on the
    ConvRot int8 weights (activation rotation and quantisation included) through the backend its registry picks,
    and on a GPU also through its eager backend (torch._int_mm: the candidate where the native backends are
    disabled, e.g. ComfyUI under a torch built for CUDA < 13); relative errors against the bf16 product."""
    from wan_animate.engine.accel import int8_matmul
    from wan_loader.int8_convrot import Int8Linear, dequantize_rows, quantize_int8

    from .harness import relative_error
    from .models import convrot_group

    if not int8_matmul.kitchen_installed():
        report.note("int8 linears skipped: comfy-kitchen is not installed")
        return
    registry = int8_matmul.kitchen().registry
    dim, ffn = cfg.get("dim", 5120), cfg.get("ffn_dim", 13824)
    g = torch.Generator().manual_seed(1)
    table = []
    for n, k in ((dim, dim), (ffn, dim), (dim, ffn)):
        group = convrot_group(k)
        q, scale = quantize_int8(torch.randn(n, k, generator=g) / k ** 0.5, group)
        bf16 = dequantize_rows(q, scale, group).to(device, torch.bfloat16)
        layer = Int8Linear(k, n, bias=False, device=device, matmul=int8_matmul.KitchenInt8Matmul())
        layer.weight.data, layer.scale.data, layer.group_size = q.to(device), scale.reshape(-1).to(device), group
        x = torch.randn(tokens, k, generator=g).to(device, torch.bfloat16)
        row = {"shape": f"{tokens}x{k} @ {k}x{n}",
               "kitchen_backend": int8_matmul.backend_for(x, layer.weight, layer.scale, group)}
        with torch.no_grad():
            plain, reference = time_calls(lambda x=x, w=bf16: torch.nn.functional.linear(x, w), device, 1, repeats)
            row["bf16_ms"] = round(median(plain) * 1e3, 3)
            backends = {"int8_kept": None, **({"int8_int_mm": "eager"} if device.type == "cuda" else {})}
            for label, backend in backends.items():
                try:
                    if backend:
                        with registry.use_backend(backend):
                            times, out = time_calls(lambda x=x, layer=layer: layer(x), device, 1, repeats)
                    else:
                        times, out = time_calls(lambda x=x, layer=layer: layer(x), device, 1, repeats)
                except Exception as error:  # noqa: BLE001  # a backend that does not run here is a row note
                    row[f"{label}_error"] = str(error).splitlines()[0][:200]
                    continue
                row[f"{label}_ms"] = round(median(times) * 1e3, 3)
                row[f"{label}_speedup_vs_bf16"] = round(median(plain) / median(times), 3)
                row[f"{label}_relative_error"] = round(relative_error(out.float(), reference.float()), 5)
        print("  linear", row, flush=True)
        table.append(row)
    report.set(int8_linears=table)


def e2e(report, args, device, weights):
    """A distilled Animate-2 job on random full-size (or tiny) components, timed by stage."""
    from wan_animate.engine.accel import AccelOptions
    from wan_animate.engine.animate2 import Animate2Inputs, Animate2Options, animate2
    from wan_animate.engine.animate2.accel import accelerate_animate2
    from wan_loader.model.components import WanAnimateComponents
    from wan_loader.model.configs import CLIP_VIT_H_CONFIG, UMT5_XXL_CONFIG, WAN21_VAE_CONFIG, clip_image_processor
    from wan_loader.testing.tiny import (TINY_ANIMATE2_CLIP_CONFIG, TINY_UMT5_CONFIG, TINY_VAE_CONFIG,
                                         tiny_tokenizer)

    full = args.size == "full"
    began = time.perf_counter()
    components = WanAnimateComponents(
        transformer=build_fp8(animate2_config(args.size), weights, device),
        vae=random_module("vae", WAN21_VAE_CONFIG if full else TINY_VAE_CONFIG, RandomWeights(device, 1,
                                                                                              torch.float32), device),
        text_encoder=random_module("text_encoder", UMT5_XXL_CONFIG if full else TINY_UMT5_CONFIG, weights, device),
        tokenizer=tiny_tokenizer(),
        image_encoder=random_module("image_encoder", CLIP_VIT_H_CONFIG if full else TINY_ANIMATE2_CLIP_CONFIG,
                                    weights, device),
        image_processor=clip_image_processor(224), distilled=True)
    fast = accelerate_animate2(components.transformer, device, AccelOptions(attention=args.attention.split(",")[0]))
    build = time.perf_counter() - began
    rng = np.random.default_rng(0)
    height, width = RESOLUTIONS["480p"] if full else (32, 32)
    reference = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    video = (rng.random((args.e2e_frames, height, width, 3)) * 255).astype(np.uint8)
    marks = []

    def progress(done, total, *, step, steps, segment, segments):
        sync(device)
        marks.append((time.perf_counter(), segment, step))

    sync(device)
    began = time.perf_counter()
    result = animate2(components, Animate2Inputs(reference, video), Animate2Options(
        variant="distilled", area=height * width, segment_frames=81 if full else 9), device=device,
        progress=progress, fast=fast)
    total = time.perf_counter() - began
    first_step = marks[0][0] - began
    steps = [b[0] - a[0] for a, b in zip(marks, marks[1:]) if a[1] == b[1]]
    stages = {"build_random_components_s": round(build, 1), "total_s": round(total, 2),
              "until_first_step_done_s": round(first_step, 2),
              "denoise_step_median_s": round(median(steps), 3) if steps else None,
              "after_last_step_s (decode, crop)": round(began + total - marks[-1][0], 2),
              "frames": result.num_frames, "segments": result.segments, "steps": 10,
              "frames_per_second": round(result.num_frames / total, 2), "peak_gib": peak_gib(device)}
    print("distilled job:", stages, flush=True)
    report.set(e2e_distilled_480p=stages, e2e_attention=fast.describe())


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    cfg = animate2_config(args.size)
    height, width = RESOLUTIONS["480p"] if args.size == "full" else (32, 48)
    frames = args.frames if args.size == "full" else 9
    weights = RandomWeights(device, args.seed)
    report = Report("Wan-Animate-2 DiT step", args.out, device, vars(args), GOALS)
    x = Inputs(cfg, height, width, frames, device, args.seed)
    outputs = {}
    if args.int8_only:
        int8_rows(report, cfg, x, weights, device, args.attention.split(",")[0], args.repeats, outputs)
        int8_linears(report, cfg, x.tokens, device, args.repeats)
        report.print_table(["res", "model", "seconds", "speedup_vs_int8_dequantised", "weights_gib", "peak_gib",
                            "cosine_vs_int8_dequantised", "first_call_seconds"])
        return 0

    model = build_fp8(cfg, weights, device)  # ours first: its rows survive a run cut short in diffusers' compile
    report.set(ours_weights_gib=allocated_gib(device))
    compiled_choices = (False,) if args.no_compile else (False, True)  # compiled: the first call is the compile
    for attention, compiled in itertools.product(args.attention.split(","), compiled_choices):
        try:
            ours = Ours(model, x, device, attention, compiled)
        except ValueError as error:
            report.note(f"ours ({attention}) skipped: {error}")
            continue
        name = f"ours fp8 ({attention}, {ours.fast.describe()['in_context']}{', compiled' if compiled else ''})"
        row, outputs[name] = measure(report, name, ours.step, x, cfg, device, args.repeats)
        report.add(res="480p", setup=ours.fast.describe(), **row)
        del ours
        free(device)
    attention = args.attention.split(",")[0]
    for where in filter(None, args.driving_cache.split(",")):
        ours = Ours(model, x, device, attention, driving_cache=where)
        name = f"ours {where} K/V cache (fp8, {attention})"  # not an "ours fp8" row: the goal is the device's
        row, outputs[name] = measure(report, name, ours.step, x, cfg, device, args.repeats)
        report.add(res="480p", setup={**ours.fast.describe(), "driving_cache": where}, **row)
        ours.driving.close()
        del ours
        free(device)
    del model
    free(device)
    int8_rows(report, cfg, x, weights, device, args.attention.split(",")[0], args.repeats, outputs)
    int8_linears(report, cfg, x.tokens, device, args.repeats)

    print("diffusers WanAnimate2Transformer3DModel (bf16, flex attention" +
          (", compiled blocks)" if not args.no_compile else ", eager)"), flush=True)
    model = build_diffusers(cfg, weights, device)
    theirs = Diffusers(model, x, compile=not args.no_compile)
    row, reference = measure(report, "diffusers", theirs.step, x, cfg, device, args.repeats)
    del theirs, model
    free(device)
    for ours_row in report.rows:
        ours_row["cosine_vs_diffusers_bf16"] = round(cosine(outputs[ours_row["model"]], reference), 5)
        ours_row["speedup_vs_diffusers"] = round(row["seconds"] / ours_row["seconds"], 3)
    report.add(res="480p", **row)
    best = max((r["speedup_vs_diffusers"] for r in report.rows if r["model"].startswith("ours fp8")), default=None)
    if best is not None:
        report.ratio("480p ours vs diffusers", best)
    report.print_table(["res", "model", "seconds", "speedup_vs_diffusers", "speedup_vs_int8_dequantised",
                        "weights_gib", "tflops", "peak_gib", "cosine_vs_diffusers_bf16", "cosine_vs_int8_dequantised",
                        "first_call_seconds"])
    if args.e2e_frames:
        e2e(report, args, device, weights)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
