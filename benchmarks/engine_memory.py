"""Peak memory of a whole animation job against the video length: it must stay flat (bounded by one segment).

    python -m benchmarks.engine_memory --size 480x832 --frames 77,1000 --device cuda --out bench_engine_memory.json
    python -m benchmarks.engine_memory --size 64x112 --frames 77,308 --steps 1                 # CPU smoke run

Each frame count runs in its own process (so the peaks are its own) with the tiny random model (wan_loader.testing.tiny) at
the requested frame size, official 77-frame segments, lazily generated inputs (like a video reader: nothing held) and
a sink that drops the frames. Reported per run: frames, segments, seconds, seconds per segment, peak process RSS
(`harness.peak_rss_bytes`), and on CUDA the peak allocated device memory. The model is tiny so the figures isolate what the
engine itself holds (inputs, latents, activations of the VAE at full frame size, decoded frames), which is what would
grow with the length if anything accumulated.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from wan_animate.modes import MODES

from .harness import Report, last_json_line, peak_rss_bytes, run_child


class LazyFrames:
    def __init__(self, n: int, shape: tuple[int, ...], seed: int):
        self.n, self.shape, self.seed = n, shape, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        import numpy as np

        return np.random.default_rng(self.seed + i).integers(0, 256, self.shape, dtype=np.uint8)


class Discard:
    def write(self, frames) -> None:
        pass


def one_run(height: int, width: int, frames: int, steps: int, device: str, mode: str) -> dict:
    import numpy as np
    import torch

    from wan_animate.engine import AnimateInputs, AnimateOptions, animate
    from wan_loader.testing.tiny import TINY_FACE_SIZE, tiny_components

    components = tiny_components()
    face = (TINY_FACE_SIZE, TINY_FACE_SIZE, 3)
    inputs = AnimateInputs(np.zeros((height, width, 3), np.uint8), LazyFrames(frames, (height, width, 3), 0),
                           LazyFrames(frames, face, 10**6), LazyFrames(frames, (height, width, 3), 2 * 10**6),
                           LazyFrames(frames, (height, width), 3 * 10**6))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    result = animate(components, inputs, AnimateOptions(mode=mode, steps=steps), device=device, sink=Discard())
    seconds = time.perf_counter() - began
    out = {"frames": frames, "segments": result.segments, "seconds": round(seconds, 2),
           "seconds_per_segment": round(seconds / result.segments, 2),
           "peak_rss_mib": round(peak_rss_bytes() / 2**20, 1)}
    if device.startswith("cuda"):
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="480x832", help="HxW of the frames (multiples of 16)")
    parser.add_argument("--frames", default="77,1000", help="comma-separated frame counts")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--mode", choices=MODES, default="replace")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: a single run
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    if args.one is not None:
        print(json.dumps(one_run(height, width, args.one, args.steps, args.device, args.mode)))
        return 0
    report = Report("engine memory vs video length", args.out, args.device, vars(args))
    for frames in (int(v) for v in args.frames.split(",")):
        child = run_child("engine_memory", ["--size", args.size, "--steps", args.steps, "--mode", args.mode,
                                            "--device", args.device, "--one", frames])
        result = last_json_line(child.stdout)
        if child.returncode or result is None:
            raise SystemExit(f"the {frames}-frame run failed:\n{child.stderr[-3000:]}")
        report.add(**result)
        print(json.dumps(result), flush=True)
    first, last = report.rows[0], report.rows[-1]
    report.ratio(f"peak RSS {last['frames']} vs {first['frames']} frames", last["peak_rss_mib"] / first["peak_rss_mib"])
    report.print_ratios()
    return 0


if __name__ == "__main__":
    sys.exit(main())
