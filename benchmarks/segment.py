"""Replace mode's SAM2 segmentation: frames per second at 720p and memory along a long video.

SAM 2.1 Hiera-L at its real size (random weights, built from the configuration: no download) runs through the real
PersonSegmenter + SamVideoTracker on a synthetic 720p video with a person walking across it: key-frame prompts,
backwards/forwards tracking, re-prompts, and the 720p mask of every frame copied to the host. (The official dilation
and grid, done on CPU threads while rendering, are not part of the figure.) Memory is sampled along the video: the
GPU's peak allocation and the process's resident memory per window of frames, so a flat line shows that memory does
not grow with the video's length.

    python -m benchmarks.segment --devices cuda cpu --frames 1000 --cpu-frames 6 --out benchmarks/results/segment_h200.json
    python -m benchmarks.segment --devices cpu --size tiny --frames 30 --width 256 --height 144   # smoke test
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from wan_animate.preprocess.person_select import PersonTrack
from wan_animate.preprocess.sam_tracker import SamVideoTracker, sam2_processor
from wan_animate.preprocess.segmenter import PersonSegmenter, SegmentOptions
from wan_animate.preprocess.synthetic_sam import SIZES, sam2_model
from wan_animate.preprocess.types import NUM_KEYPOINTS

from .harness import GIB, Report, peak_gib, reset_peak, rss_bytes, sync

WINDOW = 100  # frames per memory sample


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=["cuda", "cpu"], choices=["cuda", "cpu"])
    parser.add_argument("--size", choices=SIZES, default="large", help="large: SAM 2.1 Hiera-L's real configuration")
    parser.add_argument("--frames", type=int, default=1000, help="frames of the video on the GPU")
    parser.add_argument("--cpu-frames", type=int, default=6, help="frames of the video on the CPU (slow)")
    parser.add_argument("--chunk", type=int, default=400, help="frames per tracking session (official 400)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def walking_person(count: int, height: int, width: int) -> tuple[list[np.ndarray], PersonTrack]:
    """A few distinct frames (cycled) with a person-sized ellipse, and a PersonTrack following it across the frame."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.tile(np.linspace(30, 200, width, dtype=np.uint8)[None, :, None], (height, 1, 3))
    frames, centres = [], []
    for k in range(8):
        cx = width * (0.3 + 0.05 * k)
        inside = ((xx - cx) / (0.08 * width)) ** 2 + ((yy - height / 2) / (0.42 * height)) ** 2 <= 1
        frame = base.copy()
        frame[inside] = (180, 60, 40)
        frames.append(frame)
        centres.append(cx)
    cx = np.array([centres[i % 8] for i in range(count)])
    rng = np.random.default_rng(0)
    keypoints = np.empty((count, NUM_KEYPOINTS, 2))
    keypoints[..., 0] = cx[:, None] + rng.uniform(-0.05, 0.05, (count, NUM_KEYPOINTS)) * width
    keypoints[..., 1] = height * rng.uniform(0.15, 0.85, (count, NUM_KEYPOINTS))
    boxes = np.stack([cx - 0.08 * width, np.full(count, 0.08 * height), cx + 0.08 * width,
                      np.full(count, 0.92 * height)], axis=1)
    found = np.ones(count, bool)
    track = PersonTrack(keypoints, np.full((count, NUM_KEYPOINTS), 0.9), boxes, found, ~found, ~found, width, height)
    return frames, track


def rss_gib() -> float:
    return rss_bytes() / GIB


def run(device: str, args, frames_count: int, report: Report) -> dict:
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    began = time.perf_counter()
    model = sam2_model(args.size, dtype=dtype).to(device)
    tracker = SamVideoTracker(model, sam2_processor(model.config.image_size), device)
    setup_s = time.perf_counter() - began
    segmenter = PersonSegmenter(tracker, SegmentOptions(chunk_frames=args.chunk))
    frames, track = walking_person(frames_count, args.height, args.width)
    # Warm-up on a short video (kernels, allocator), not timed.
    warm = min(8, frames_count)
    _, warm_track = walking_person(warm, args.height, args.width)
    for _ in segmenter.masks((frames[i % 8] for i in range(warm)), warm_track):
        pass
    sync(device)
    windows: list[dict] = []
    window_rss = [0.0]

    def sample(done: int) -> None:
        window_rss[0] = max(window_rss[0], rss_gib())
        if done % WINDOW == 0 or done == frames_count:
            windows.append({"frames": done, "gpu_peak_gib": peak_gib(device), "rss_gib": round(window_rss[0], 2),
                            "seconds": round(time.perf_counter() - began, 2)})
            print(f"{device} {windows[-1]}", flush=True)
            window_rss[0] = 0.0
            reset_peak(device)

    reset_peak(device)
    baseline_rss = rss_gib()
    began = time.perf_counter()
    produced = 0
    for _, mask in segmenter.masks((frames[i % 8] for i in range(frames_count)), track, on_frame=sample):
        produced += int(mask.shape == (args.height, args.width))
    sync(device)
    seconds = time.perf_counter() - began
    row = report.add(
        device=device, dtype=str(dtype).replace("torch.", ""), frames=frames_count, size=f"{args.width}x{args.height}",
        seconds=round(seconds, 2), fps=round(frames_count / seconds, 2), setup_s=round(setup_s, 1),
        chunks=segmenter.report.chunks, key_frames=len(segmenter.report.key_frames),
        reprompts=len(segmenter.report.reprompts), masks=produced,
        gpu_peak_gib=max((w["gpu_peak_gib"] or 0 for w in windows), default=None) if device == "cuda" else None,
        gpu_model_gib=round(sum(p.numel() * p.element_size() for p in model.parameters()) / GIB, 2),
        rss_baseline_gib=round(baseline_rss, 2), rss_peak_gib=max(w["rss_gib"] for w in windows), windows=windows,
    )
    print(f"{device}: {row['fps']} fps over {frames_count} frames; per-{WINDOW}-frame windows: "
          + ", ".join(f"{w['frames']}: gpu {w['gpu_peak_gib']} GiB rss {w['rss_gib']} GiB" for w in windows), flush=True)
    del segmenter, tracker, model
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    devices = [d for d in args.devices if d != "cuda" or torch.cuda.is_available()]
    if not devices:
        print("no CUDA device here; run with --devices cpu")
        return 2
    report = Report("segment (SAM2 video, person replace masks)", args.out, devices[0], vars(args))
    for device in devices:
        run(device, args, args.frames if device == "cuda" else args.cpu_frames, report)
    for row in report.rows:
        windows = row["windows"][1:] or row["windows"]  # after the first window the chunk buffer is full
        key = "gpu_peak_gib" if row["device"] == "cuda" else "rss_gib"
        values = [w[key] for w in windows if w[key] is not None]
        if len(values) > 1:
            report.ratio(f"{row['device']} memory last/first window ({key})", values[-1] / max(values[0], 1e-9))
    report.print_table(["device", "dtype", "frames", "size", "fps", "seconds", "chunks", "reprompts", "gpu_peak_gib",
                        "rss_peak_gib"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
