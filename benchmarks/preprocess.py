"""Frames per second of person detection + whole-body pose (+ face crops) on 720p frames.

Graphs with the real models' size and compute (YOLOv10m-sized detector, ViTPose-H- or L-sized pose model, random
weights; built once into --model-dir) run through the real PoseEstimator, batched and one frame per call (as the
official script and the existing ComfyUI nodes do). The detector is planted to find --people people per frame, so
the pose model sees a realistic number of crops.

    python -m benchmarks.preprocess --device cuda --size real --out bench_preprocess.json   # on a GPU (goal >= 150 fps)
    python -m benchmarks.preprocess --device cpu --size tiny --frames 8 --out /tmp/b.json    # smoke test

--device cuda needs onnxruntime-gpu (the CUDA 13 build for a cu130 torch); the run stops with exit code 2 rather than
report CPU figures when its CUDA provider does not load. Real-size graphs are built once into --model-dir
(ViTPose-H: ~2.5 GB of random weights in an external-data file, about a minute).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from wan_animate.preprocess import synthetic_models as sm
from wan_animate.preprocess.estimator import PoseEstimator
from wan_animate.preprocess.onnx_session import CUDA

from .harness import Report

GOAL_FPS = 150


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--size", choices=["real", "tiny"], default="real", help="real: YOLOv10m/ViTPose-sized graphs")
    parser.add_argument("--pose", choices=["h", "l"], default="h", help="ViTPose size for --size real")
    parser.add_argument("--frames", type=int, default=256, help="frames per measured run")
    parser.add_argument("--per-frame-frames", type=int, default=None, help="frames for the one-per-call run (default: --frames)")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per detector call in the batched run")
    parser.add_argument("--people", type=int, default=1, help="people the detector finds per frame")
    parser.add_argument("--static-batch", action="store_true", help="graphs with a static batch of 1, like some shipped files")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--model-dir", type=Path, default=Path.home() / ".cache" / "wan_animate" / "bench_models")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def person_rows(people: int) -> list[list[float]]:
    """Planted detector rows: `people` standing people side by side (640x640 model pixels)."""
    width = 560 / people
    return [[40 + i * width + 0.1 * width, 120, 40 + (i + 1) * width - 0.1 * width, 600, 0.9, 0] for i in range(people)]


def build_models(args) -> tuple[Path, Path]:
    folder = args.model_dir / args.size
    folder.mkdir(parents=True, exist_ok=True)
    static = 1 if args.static_batch else None
    tag = "_static1" if static else ""
    detector = folder / f"yolo_{args.size}_{args.people}p{tag}.onnx"
    if not detector.exists():
        sm.yolo_detector(detector.with_suffix(".tmp"), args.size, planted_boxes=person_rows(args.people), static_batch=static).rename(detector)
    vit = "tiny" if args.size == "tiny" else args.pose
    pose = folder / f"vitpose_{vit}{tag}.onnx"
    if not pose.exists():
        print(f"building the {vit} pose graph with random weights in {folder} ...", flush=True)
        data = f"vitpose_{vit}{tag}_data.bin" if vit != "tiny" else None
        sm.vitpose_model(pose.with_suffix(".tmp"), vit, external_data=data, static_batch=static).rename(pose)
    return detector, pose


def frame_source(count: int, height: int, width: int, distinct: int = 16):
    """`count` 720p frames cycling through a few distinct ones (decoding is not what is measured)."""
    rng = np.random.default_rng(0)
    base = [rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1) for _ in range(distinct)]
    return (base[i % distinct] for i in range(count))


def face_cropper():
    """Official face crops of the first person, when the face-crop module is in this checkout."""
    try:
        from wan_animate.preprocess.face_crop import clamp_box, crop_face, face_box
    except ImportError:
        return None

    def crop(frame: np.ndarray, poses) -> None:
        if poses.people:
            box = face_box(poses.people[0].keypoints[23:91])
            clamped = clamp_box(box, poses.width, poses.height) if box is not None else None
            if clamped is not None:
                crop_face(frame, clamped)

    return crop


def measure(estimator: PoseEstimator, args, frames: int, with_faces) -> dict:
    list(estimator.iter_estimate(frame_source(min(frames, 2 * estimator.batch_size), args.height, args.width)))  # warm-up
    source = list(frame_source(min(frames, 16), args.height, args.width))
    start = time.perf_counter()
    people = 0
    for poses in estimator.iter_estimate(source[i % len(source)] for i in range(frames)):
        people += len(poses.people)
        if with_faces is not None:
            with_faces(source[poses.index % len(source)], poses)
    seconds = time.perf_counter() - start
    return {"frames": frames, "seconds": round(seconds, 4), "fps": round(frames / seconds, 2), "people": people}


def main(argv=None) -> int:
    args = parse_args(argv)
    detector, pose = build_models(args)
    faces = face_cropper()
    report = Report("preprocess detection + pose", args.out, "cuda" if args.device == "cuda" else "cpu", vars(args),
                    {"fps": GOAL_FPS})
    providers = None
    for mode, batch, frames in (
        ("batched", args.batch_size, args.frames),
        ("per_frame", 1, args.per_frame_frames or args.frames),
    ):
        estimator = PoseEstimator(detector, pose, providers=args.device, batch_size=batch)
        providers = estimator.providers
        if args.device == "cuda" and CUDA not in providers["pose"]:
            print(f"--device cuda asked for, but the models run on {providers['pose']}: see the warning above", file=sys.stderr)
            return 2
        for with_faces in (None, faces) if faces is not None else (None,):
            result = measure(estimator, args, frames, with_faces)
            report.add(mode=mode, batch_size=batch, face_crops=with_faces is not None, **result)
    headline = [r for r in report.rows if r["mode"] == "batched"][-1]  # batched, with face crops when available
    report.set(pose_model="tiny" if args.size == "tiny" else f"vitpose_{args.pose}",
               parameters={"detector": sm.parameter_count(detector), "pose": sm.parameter_count(pose)},
               providers=providers, gpu=gpu_name() if CUDA in providers["pose"] else None,
               onnxruntime=__import__("onnxruntime").__version__, headline_fps=headline["fps"],
               meets_goal=headline["fps"] >= GOAL_FPS)
    print_table(report.data)
    return 0


def gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def print_table(report: dict) -> None:
    config = report["config"]
    print(
        f"\npreprocess models: {report['pose_model']} + yolo ({config['size']}), {config['width']}x"
        f"{config['height']}, {config['people']} person/frame"
        f"{', static batch 1' if config['static_batch'] else ''}, providers {report['providers']['pose'][0]}"
        f"{', GPU ' + report['gpu'] if report['gpu'] else ''}"
    )
    print(f"{'mode':<10} {'batch':>5} {'faces':>5} {'frames':>6} {'seconds':>8} {'fps':>8}")
    for r in report["rows"]:
        print(f"{r['mode']:<10} {r['batch_size']:>5} {'yes' if r['face_crops'] else 'no':>5} {r['frames']:>6} {r['seconds']:>8.2f} {r['fps']:>8.1f}")
    verdict = "met" if report["meets_goal"] else "NOT met"
    print(f"batched: {report['headline_fps']:.1f} fps; goal >= {report['goals']['fps']} fps: {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
