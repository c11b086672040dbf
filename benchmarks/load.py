"""Transformer load speed and host memory: wan_loader vs ComfyUI's path vs diffusers' from_single_file.

    python -m benchmarks.load                      # full size (17.3 B params, 34.5 GB bf16 file) to cuda
    python -m benchmarks.load --size tiny --device cpu --out /tmp/load.json   # smoke test

Writes a random-weight Wan2.2-Animate transformer once as ONE bf16 safetensors file in ComfyUI/original key names
(reused when it is already there), then, each in a fresh subprocess, loads it to the device: ours
(wan_loader.load_transformer), ComfyUI's (comfy.utils.load_torch_file + load_state_dict into ComfyUI's
AnimateWanModel, from COMFYUI_DIR; a plain state-dict load into same-shaped parameters when that is unavailable)
and diffusers' (WanAnimateTransformer3DModel.from_single_file with a local config, then .to(device)); plus a raw
sequential read of the file. Warm = page cache filled; cold = caches dropped (/proc/sys/vm/drop_caches, else
posix_fadvise DONTNEED). Prints a table and writes JSON to --out.

The full run takes several minutes (the file is written once, ~35 GB on disk, and kept for later runs; diffusers'
path needs ~40 GB of host RAM). Where a runner limits one command's time, split it: `--modes warm` then
`--modes cold` (and/or `--loaders ours,comfy` / `--loaders diffusers`), each with its own --out.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from .harness import (Report, drop_page_cache, last_json_line, peak_rss_bytes, raw_read, reset_peak_rss, rss_bytes,
                      run_child)
from .models import import_comfy, transformer_config

GOALS = {"warm ours vs best competitor": 1.5, "cold ours vs raw read": 0.9}  # and RSS growth <= 2 GB


def rss_gb() -> float:
    return rss_bytes() / 1024 ** 3


def peak_rss_gb() -> float:
    return peak_rss_bytes() / 1024 ** 3


def write_checkpoint(path: Path, size: str, layers: int | None = None) -> None:
    """One bf16 safetensors file in original/ComfyUI names, random values, streamed (bounded memory)."""
    import torch
    from wan_loader.model.configs import build_empty
    from wan_loader.keymaps import transformer as tmap
    from wan_loader.writers import write_safetensors

    model = build_empty("transformer", transformer_config(size, layers))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    plan = tmap.plan_diffusers_to_original(shapes)
    fake = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    block = torch.randn(64 * 1024 * 1024, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16) * 0.02
    items = []
    for key, recipe in plan.items():
        shape = tuple(recipe.build(fake.__getitem__).shape)
        n = 1
        for d in shape:
            n *= d

        def produce(n=n, shape=shape, off=len(items) * 7919):  # noqa: B008 (binds this tensor's offset)
            reps = (n + off) // block.numel() + 1
            flat = block.repeat(reps)[off:off + n] if reps > 1 else block[off:off + n]
            return flat.reshape(shape).clone()
        items.append((key, shape, torch.bfloat16, produce))
    write_safetensors(path, items)


def warm_cache(path: Path) -> None:
    raw_read(path)


# ---- loaders (run in a fresh subprocess each: --worker NAME) ----

def load_ours(path, device, config_dir):
    from wan_loader import load_transformer
    return load_transformer(path, device=device, weight_dtype="bf16")


def load_diffusers(path, device, config_dir):
    import torch
    from diffusers import WanAnimateTransformer3DModel
    model = WanAnimateTransformer3DModel.from_single_file(str(path), config=str(config_dir), subfolder="transformer",
                                                          torch_dtype=torch.bfloat16)
    return model.to(device)


def load_comfy(path, device, config_dir):
    import torch
    import comfy.ops
    import comfy.utils
    cfg = json.loads((Path(config_dir) / "transformer" / "config.json").read_text())
    try:
        from comfy.ldm.wan.model_animate import AnimateWanModel
        dim = cfg["num_attention_heads"] * cfg["attention_head_dim"]
        if cfg["motion_encoder_size"] != 512 or cfg["face_encoder_hidden_dim"] != 1024:
            raise ValueError("ComfyUI's AnimateWanModel hard-codes the 14B motion/face encoder sizes")
        model = AnimateWanModel(in_dim=cfg["in_channels"], dim=dim, ffn_dim=cfg["ffn_dim"], freq_dim=cfg["freq_dim"],
                                text_dim=cfg["text_dim"], out_dim=cfg["out_channels"],
                                num_heads=cfg["num_attention_heads"], num_layers=cfg["num_layers"],
                                device=device, dtype=torch.bfloat16, operations=comfy.ops.disable_weight_init)
        how = "comfy"
    except Exception:
        model = None
        how = "comfy (plain load_state_dict: ComfyUI's AnimateWanModel needs the full-size config)"
    sd = comfy.utils.load_torch_file(str(path))
    if model is None:
        model = torch.nn.Module()
        for i, v in enumerate(sd.values()):
            model.register_parameter(f"p{i}", torch.nn.Parameter(torch.empty(v.shape, dtype=v.dtype, device=device),
                                                                 requires_grad=False))
        sd = {f"p{i}": v for i, v in enumerate(sd.values())}
    model.load_state_dict(sd, strict=False)
    model.__dict__["_how"] = how
    return model


LOADERS = {"ours": load_ours, "comfy": load_comfy, "diffusers": load_diffusers}


def prepare(name: str, device: str) -> None:
    """Imports and CUDA context before the clock starts: we time loading, not library start-up."""
    import diffusers  # noqa: F401
    import wan_loader.load  # noqa: F401
    from diffusers import WanAnimateTransformer3DModel  # noqa: F401
    if name == "comfy":
        import_comfy(device)


def worker(name: str, path: str, device: str, config_dir: str) -> None:
    import torch
    prepare(name, device)
    if device.startswith("cuda"):
        torch.cuda.init()
        torch.empty(1, device=device)
    reset_peak_rss()
    base = rss_gb()
    t0 = time.perf_counter()
    model = LOADERS[name](path, device, config_dir)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    on_device = all(p.device.type == torch.device(device).type for p in model.parameters())
    print(json.dumps({"seconds": seconds, "rss_growth_gb": peak_rss_gb() - base, "on_device": on_device,
                      "how": model.__dict__.get("_how", name)}))


def run_worker(name, path, device, config_dir, timeout):
    try:
        r = run_child("load", ["--worker", name, "--file", path, "--device", device, "--config-dir", config_dir],
                      timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout}s"}
    result = last_json_line(r.stdout)
    if r.returncode != 0 or result is None:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["full", "small", "tiny"], default="full")
    p.add_argument("--device", default="cuda")
    p.add_argument("--layers", type=int, default=None, help="fewer DiT blocks (a quick full-width check), e.g. 5")
    p.add_argument("--file", default=None, help="checkpoint (default: $TMPDIR/wan_animate_<size>_bf16.safetensors)")
    p.add_argument("--config-dir", default=None)
    p.add_argument("--loaders", default="ours,comfy,diffusers")
    p.add_argument("--modes", default="warm,cold")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.file, args.device, args.config_dir)
        return 0

    import tempfile
    name = f"wan_animate_{args.size}{f'_{args.layers}l' if args.layers else ''}_bf16.safetensors"
    path = Path(args.file or Path(tempfile.gettempdir()) / name)
    config_dir = Path(args.config_dir or path.with_suffix(".config"))
    from wan_loader.writers import save_config, Weights, Written
    save_config(Weights("transformer", {}, {}, None, transformer_config(args.size, args.layers)),
                 config_dir / "transformer",
                 Written())
    if not path.is_file():
        print(f"writing {path} ...", flush=True)
        t0 = time.perf_counter()
        write_checkpoint(path, args.size, args.layers)
        print(f"  {path.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t0:.0f} s", flush=True)
    size_gb = path.stat().st_size / 1e9
    report = Report("transformer load", args.out, args.device, vars(args), GOALS)
    report.set(file=str(path), size_gb=size_gb)
    for mode in args.modes.split(","):
        if mode == "cold":
            report.set(cache_drop=drop_page_cache([path]))
        else:
            warm_cache(path)
        secs = raw_read(path)
        report.add(loader="raw read", mode=mode, seconds=secs, gb_per_s=size_gb / secs)
        for name in args.loaders.split(","):
            if mode == "cold":
                drop_page_cache([path])
            else:
                warm_cache(path)
            r = run_worker(name, path, args.device, config_dir, args.timeout)
            r.update(loader=name, mode=mode)
            if "seconds" in r:
                r["gb_per_s"] = size_gb / r["seconds"]
            report.add(**r)
            print(f"  {mode:<5} {name:<10} " + (f"{r['gb_per_s']:.2f} GB/s" if "gb_per_s" in r else r["error"]),
                  flush=True)
    add_ratios(report)
    print(f"\n{path} ({size_gb:.2f} GB) -> {args.device}")
    report.print_table(["mode", "loader", "seconds", "gb_per_s", "rss_growth_gb", "error"])
    return 0


def add_ratios(report: Report) -> None:
    """Ours vs the faster competitor (goal: warm >= 1.5x) and vs a raw read of the file (goal: cold >= 0.9x)."""
    by = {(r["loader"], r["mode"]): r for r in report.rows}
    for mode in ("warm", "cold"):
        ours = by.get(("ours", mode))
        if not ours or "gb_per_s" not in ours:
            continue
        rivals = [by[(n, mode)]["gb_per_s"] for n in ("comfy", "diffusers") if "gb_per_s" in by.get((n, mode), {})]
        if rivals:
            report.ratio(f"{mode} ours vs best competitor", ours["gb_per_s"] / max(rivals))
        raw = by.get(("raw read", mode))
        if raw:
            report.ratio(f"{mode} ours vs raw read", ours["gb_per_s"] / raw["gb_per_s"])


if __name__ == "__main__":
    sys.exit(main())
