"""A 77-frame 480p 4-step fp8 job placed by memory="auto" on the whole GPU and under caps of 32, 24, 16, 12 GiB.

    python -m benchmarks.memory_caps --out benchmarks/results/memory_caps_h200.json      # on an H200 / H100
    python -m benchmarks.memory_caps --size tiny --device cpu --caps 0,1 --out /tmp/caps.json   # smoke test

Full-size random weights (umT5-XXL, CLIP ViT-H/14, Wan2.1 VAE, the 14B DiT in fp8), no preprocessing (synthetic
pose/face frames). For each cap (torch.cuda.set_per_process_memory_fraction: what a smaller card leaves to the
process) the model is planned and placed by the code the loader node uses (wan_animate.engine.memory.plan_memory,
placement.place), then one job runs after an uncapped warm-up job. Reported per cap: the plan, job time and its
ratio to uncapped, peak GPU memory allocated/reserved, the peak per stage (what takes the memory), the weights
left in host memory and the process's peak resident host memory during the job.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import torch

from .e2e import build_components, driving_clip
from .harness import GIB, Report, cap_gpu_memory, model_parser, peak_gib, rss_bytes, sync
from .models import RandomWeights

GOALS = {24: 1.25, 16: 1.6}  # cap GiB -> most time relative to uncapped; 12 GiB: completes
HOST_SLACK_GIB = 3.0  # host memory beyond the weights kept there


def parse_args(argv=None):
    p = model_parser(__doc__)
    p.add_argument("--caps", default="0,12,16,24,32", help="GiB; 0 = the whole device (first: the reference)")
    p.add_argument("--frames", type=int, default=77)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--attention", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the blocks (first job ~1 min longer)")
    return p.parse_args(argv)


class HostPeak:
    """Peak resident memory of this process while the block runs, sampled every 20 ms (harness.rss_bytes)."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self):
        self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


class StagePeaks:
    """Peak GPU memory allocated inside each wrapped method (and the job's overall peak)."""

    def __init__(self, device):
        self.device = device
        self.cuda = torch.device(device).type == "cuda"
        self.peaks: dict[str, int] = {}
        self.overall = 0

    def around(self, stage: str, fn):
        def measured(*a, **k):
            if not self.cuda:
                return fn(*a, **k)
            self.overall = max(self.overall, torch.cuda.max_memory_allocated(self.device))
            torch.cuda.reset_peak_memory_stats(self.device)
            try:
                return fn(*a, **k)
            finally:
                peak = torch.cuda.max_memory_allocated(self.device)
                self.peaks[stage] = max(self.peaks.get(stage, 0), peak)
                self.overall = max(self.overall, peak)

        return measured

    def wrap(self, obj, method: str, stage: str) -> None:
        setattr(obj, method, self.around(stage, getattr(obj, method)))

    def gib(self) -> dict:
        return {k: round(v / GIB, 2) for k, v in self.peaks.items()}


def device_budget(device, cap_gib: float):
    """What the model may use: the cap (a smaller card), or the whole device's free memory when uncapped (our own
    weights already there count as free: they are what is being placed)."""
    from wan_animate.engine.memory import DeviceBudget, free_device_bytes
    if cap_gib:
        return DeviceBudget(int(cap_gib * GIB))
    if torch.device(device).type != "cuda":
        return DeviceBudget(64 * GIB)
    return DeviceBudget(free_device_bytes(device) + torch.cuda.memory_allocated(device))


def run_job(components, runner, options, device, frames: int, height: int, width: int, stages: StagePeaks):
    from wan_animate.engine import AnimateInputs, animate
    clip = driving_clip(frames, height, width)
    inputs = AnimateInputs(clip[0].copy(), clip, np.ascontiguousarray(clip[:, :512, :512]))
    sync(device)
    began = time.perf_counter()
    result = animate(components, inputs, options, device=device, block_runner=stages.around("DiT blocks", runner))
    sync(device)
    return time.perf_counter() - began, result


def main(argv=None) -> int:
    from wan_animate.engine import AnimateOptions, EngineOutOfMemory
    from wan_animate.engine.accel import AccelOptions, accelerate
    from wan_animate.engine.memory import Footprint, JobShape, NotEnoughMemory, plan_memory
    from wan_animate.engine.placement import place, swapping

    args = parse_args(argv)
    device = torch.device(args.device)
    height, width, frames = (480, 832, args.frames) if args.size == "full" else (64, 64, 9)
    caps = [float(c) for c in args.caps.split(",")]
    report = Report("memory caps", args.out, device, vars(args))
    report.set(time_goals={f"{cap} GiB": f"<= {goal}x uncapped" for cap, goal in GOALS.items()},
               host_goal=f"peak RSS <= weights kept on the host + {HOST_SLACK_GIB} GiB")
    began = time.perf_counter()
    components = build_components(args.size, device, RandomWeights(device, 0))
    fast = accelerate(components.transformer, device, AccelOptions(attention=args.attention, compile=args.compile))
    footprint = Footprint.of(components)
    report.set(setup_seconds=round(time.perf_counter() - began, 1), accel=fast.describe(),
               footprint={k: (round(v / GIB, 3) if isinstance(v, int) and v > 2 ** 20 else v)
                          for k, v in vars(footprint).items()})
    stages = StagePeaks(device)
    c = components
    for obj, method, stage in ((c.text_encoder, "forward", "text encoder"), (c.image_encoder, "forward",
                               "image encoder"), (c.vae, "encode", "VAE encode"), (c.vae, "decode", "VAE decode"),
                               (c.transformer.motion_encoder, "forward", "face motion encoder")):
        stages.wrap(obj, method, stage)
    job = JobShape(frames, height, width)
    uncapped = None
    for cap in caps:
        row = {"cap_gib": cap or None}
        try:
            plan = plan_memory(footprint, job, device_budget(device, cap))
        except NotEnoughMemory as error:
            report.add(**row, error=str(error))
            continue
        placed_at = time.perf_counter()
        if device.type == "cuda":  # the previous cap off while placing: blocks may come back to the device
            torch.cuda.set_per_process_memory_fraction(1.0, device.index or 0)
        swap = place(components, device, plan)
        cap_gpu_memory(device, cap or None)
        row.update(plan=plan.describe(), blocks_on_cpu=plan.blocks_on_cpu, encoders=plan.encoders,
                   vae_tile=plan.vae_tile, planned_peak_gib=round(plan.peak_bytes / GIB, 2),
                   place_seconds=round(time.perf_counter() - placed_at, 1))
        options = AnimateOptions(steps=args.steps, solver="euler", segment_frames=frames, seed=0,
                                 tiled_vae=plan.tiled_vae, vae_tile=plan.vae_tile or 256)
        runner = swapping(swap, fast.block_runner)
        if uncapped is None:  # warm-up: kernel selection, the fp8 quantiser's compile, cuDNN plans
            warm = AnimateOptions(**{**vars(options), "steps": 1})
            row["warmup_seconds"] = round(run_job(c, runner, warm, device, frames, height, width, stages)[0], 1)
        stages.peaks.clear()
        stages.overall = 0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        on_host = [t for m in (c.transformer, c.text_encoder) for t in m.parameters() if t.device.type == "cpu"]
        row["host_weights_page_locked"] = all(t.is_pinned() for t in on_host[:50]) if on_host else None
        host_weights = sum(t.numel() * t.element_size() for m in (c.transformer, c.vae, c.text_encoder,
                                                                   c.image_encoder)
                           for t in [*m.parameters(), *m.buffers()] if t.device.type == "cpu")
        try:
            with HostPeak() as host:
                seconds, result = run_job(c, runner, options, device, frames, height, width, stages)
        except EngineOutOfMemory as error:
            report.add(**row, error=str(error)[:300], stage_peaks_gib=stages.gib())
            print(f"cap {cap:g} GiB: out of memory; {plan.describe()}", flush=True)
            continue
        row.update(seconds=round(seconds, 2), frames_out=int(result.num_frames),
                   peak_gib=peak_gib(device) and round(max(stages.overall, torch.cuda.max_memory_allocated(device))
                                                       / GIB, 2),
                   peak_reserved_gib=peak_gib(device, reserved=True), stage_peaks_gib=stages.gib(),
                   host_weights_gib=round(host_weights / GIB, 2), host_peak_rss_gib=round(host.peak / GIB, 2))
        row["host_within_goal"] = row["host_peak_rss_gib"] <= row["host_weights_gib"] + HOST_SLACK_GIB
        if uncapped is None:
            uncapped = seconds
        else:
            report.ratio(f"{cap:g} GiB vs uncapped", seconds / uncapped)
            row["ratio_to_uncapped"] = round(seconds / uncapped, 3)
        report.add(**row)
        print(f"cap {cap or 'none'}: {seconds:.1f} s, peak {row['peak_gib']} GiB, host {row['host_peak_rss_gib']} "
              f"GiB (weights there {row['host_weights_gib']}); {plan.describe()}", flush=True)
    report.print_table(["cap_gib", "blocks_on_cpu", "encoders", "vae_tile", "seconds", "ratio_to_uncapped",
                        "peak_gib", "planned_peak_gib", "host_weights_gib", "host_peak_rss_gib", "error"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
