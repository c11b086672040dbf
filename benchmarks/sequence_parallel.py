"""One job on N GPUs (sequence parallel) against one GPU: per-step and whole-job speed-up at 480p and 720p.

    python -m benchmarks.sequence_parallel --gpus 1,2,4,8 --out benchmarks/results/sequence_parallel_h200x8.json
    python -m benchmarks.sequence_parallel --size tiny --device cpu --gpus 1,2 --out /tmp/sp.json   # CPU smoke run

For each N the benchmark starts a fresh `torchrun --nproc-per-node N` (one process per GPU; N = 1: sequence parallel
off, the engine as it runs on one GPU; N > 1: --mode ulysses by default) whose processes build the
full-size models with random weights (as benchmarks.e2e does: fp8 DiT with the fast attention and, unless
--no-compile, compiled blocks; umT5-XXL, CLIP, the VAE), then at each resolution
- step: median seconds of one denoising step (time embedding + DiT forward), the engine's per-step work;
- job: seconds of a whole `animate()` job of --frames frames (no preprocessing: synthetic pose/face frames),
  --steps Euler steps, guide 1 - encoders, VAE encode/decode (replicated on every rank) and the DiT steps.
Reported per N and resolution: seconds, speed-up against N = 1 and efficiency = speed-up / N. Goal (issue 14):
whole-job efficiency >= 0.85 at 720p on 8 GPUs. On the CPU (gloo) the figures only show that the runs work.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from .harness import REPO, Report, last_json_line, median, peak_gib, sync, time_calls
from .models import RESOLUTIONS, RandomWeights
from .step import Inputs

GOALS = {"720p job efficiency x8": 0.85}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=["full", "tiny"], default="full")
    p.add_argument("--device", default="cuda", help="cuda (one process per GPU, NCCL) or cpu (gloo processes)")
    p.add_argument("--gpus", default="1,2,4,8", help="comma list of process counts; 1 is the baseline")
    p.add_argument("--res", default="480p,720p", help="comma list of 480p, 720p (tiny: ignored)")
    p.add_argument("--frames", type=int, default=77)
    p.add_argument("--steps", type=int, default=4, help="sampling steps of the whole job")
    p.add_argument("--mode", default="ulysses", choices=["ulysses", "ring", "off"], help="off: the baseline run")
    p.add_argument("--shard-weights", action="store_true", help="FSDP2-sharded DiT blocks instead of replicated")
    p.add_argument("--attention", default="auto")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child_arguments(args) -> list[str]:
    keep = ["--size", args.size, "--device", args.device, "--res", args.res, "--frames", args.frames,
            "--steps", args.steps, "--mode", args.mode, "--attention", args.attention, "--repeats", args.repeats]
    flags = [flag for flag, on in (("--shard-weights", args.shard_weights), ("--no-compile", args.no_compile)) if on]
    return ["--child", *map(str, keep), *flags]


def run_count(args, count: int) -> dict:
    """One fresh run on `count` processes; its rank 0's JSON result."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={count}",
               "-m", "benchmarks.sequence_parallel", *child_arguments(args), *(["--mode", "off"] if count == 1 else [])]
    # torchrun gives each of several processes one CPU thread; the same for one process keeps CPU runs comparable
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if args.device == "cpu" else None
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    result = last_json_line(done.stdout)
    if done.returncode != 0 or result is None:
        raise RuntimeError(f"the run on {count} process(es) failed:\n{done.stderr[-3000:]}")
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    counts = [int(n) for n in args.gpus.split(",")]
    if 1 not in counts:
        counts.insert(0, 1)
    if args.device == "cuda" and max(counts) > torch.cuda.device_count():
        raise SystemExit(f"--gpus {args.gpus}: this machine has {torch.cuda.device_count()} GPU(s).")
    report = Report("sequence parallel", args.out, args.device, vars(args), GOALS)
    if args.device == "cpu":
        report.note("CPU run: gloo processes sharing this machine's cores; the figures show that the runs work, "
                    "not GPU speed-ups.")
    results = {}
    for count in sorted(counts):
        print(f"{count} process(es)...", flush=True)
        results[count] = run_count(args, count)
        for res, row in results[count]["rows"].items():
            base = results[1]["rows"][res]
            entry = {"gpus": count, "res": res, **row}
            for what in ("step", "job"):
                speedup = base[f"{what}_seconds"] / row[f"{what}_seconds"]
                entry[f"{what}_speedup"] = round(speedup, 3)
                entry[f"{what}_efficiency"] = round(speedup / count, 3)
                if count > 1:
                    report.ratio(f"{res} {what} efficiency x{count}", speedup / count)
            report.add(**entry)
    report.print_table(["gpus", "res", "step_seconds", "step_speedup", "step_efficiency", "job_seconds",
                        "job_speedup", "job_efficiency", "peak_gib", "mode"])
    return 0


def child(args) -> int:
    """One run: every rank builds the models and times steps and jobs together; rank 0 prints the JSON."""
    import torch.distributed as dist

    from wan_animate.engine.accel import AccelOptions, accelerate
    from wan_animate.engine.parallel import SequenceParallel, join, leave, shard_blocks

    from .e2e import build_components

    parallel = args.mode != "off"
    rank = join(args.device) if parallel else None
    device = rank.device if rank else torch.device(args.device)

    def barrier():
        sync(device)
        if parallel:
            dist.barrier()

    components = build_components(args.size, device, RandomWeights(device, 0))
    fast = accelerate(components.transformer, device, AccelOptions(attention=args.attention,
                                                                   compile=not args.no_compile))
    if args.shard_weights and parallel:
        shard_blocks(components.transformer, device)
    heads = components.transformer.config.num_attention_heads
    sequence = SequenceParallel(args.mode, heads) if parallel else None
    rows = {res: measure(args, res, components, fast, sequence, device, barrier)
            for res in (["tiny"] if args.size == "tiny" else args.res.split(","))}
    if rank is None or rank.is_first:
        print(json.dumps({"rows": rows, "device": str(device), "accel": fast.describe(),
                          "world_size": rank.world_size if rank else 1}), flush=True)
    leave()
    return 0


def measure(args, res: str, components, fast, sequence, device, barrier) -> dict:
    """Median step seconds and whole-job seconds at `res` (every rank takes part)."""
    from wan_animate.engine import AnimateDiT, AnimateInputs, AnimateOptions, animate
    from wan_animate.engine.parallel.attention import parallel_self_attention

    from .e2e import driving_clip

    model = components.transformer
    frames = 9 if args.size == "tiny" else args.frames
    height, width = RESOLUTIONS[res] if res != "tiny" else (64, 64)
    x = Inputs(dict(model.config), height, width, frames, device, seed=0)
    dit = AnimateDiT(model, fast.block_runner, sequence)
    with torch.no_grad(), parallel_self_attention(model.blocks, sequence):
        context, motion = dit.encode_context(x.text, x.clip), dit.encode_motion(x.face)
        pose, rotary = dit.embed_pose(x.pose), dit.rotary(x.latent.shape)

        def step():
            barrier()
            return dit(x.latent, dit.time_embedding(x.timestep, context), context, motion, pose, rotary)

        times, _ = time_calls(step, device, 1, args.repeats)
    clip = driving_clip(frames, height, width)
    inputs = AnimateInputs(clip[0].copy(), clip, clip[:, :512, :512].copy())
    options = AnimateOptions(steps=args.steps, solver="euler", segment_frames=frames, seed=0,
                             sequence_parallel=sequence.mode if sequence else "off")
    job_seconds = []
    for _ in range(2):  # warm-up (compilation, kernel choice), then measured
        barrier()
        began = time.perf_counter()
        animate(components, inputs, options, device=device, block_runner=fast.block_runner)
        barrier()
        job_seconds.append(time.perf_counter() - began)
    return {"step_seconds": round(median(times), 4), "job_seconds": round(job_seconds[-1], 3),
            "peak_gib": peak_gib(device), "mode": sequence.mode if sequence else "off", "tokens": x.tokens}


if __name__ == "__main__":
    sys.exit(main())
