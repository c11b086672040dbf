"""The tiny end-to-end job: a tiny random Wan2.2-Animate, tiny ONNX detection models and a synthetic driving video.

Everything is written in the real file layouts (diffusers model folder, official det/ and pose2d/ ONNX files, an
mp4 and a PNG) and then loaded by the same code paths as real models, so `scripts/demo.sh` exercises the whole job
on a CPU in seconds. The output is noise-like (random weights); what it shows is that every stage runs.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DEMO_FRAMES = 48
DEMO_SIZE = (96, 128)  # (height, width) of the synthetic driving video
# Detector rows in 640-px model space: one person whose box follows the frame's mean brightness (drift), with a
# score of -0.25 + brightness, so a dark image (e.g. an empty black reference) has nobody in it.
DEMO_BOX = [[240.0, 120.0, 400.0, 600.0, -0.25, 0.0]]
DEMO_DRIFT = [[-160.0, 0.0, -160.0, 0.0, 1.0, 0.0]]


def demo_keypoints() -> np.ndarray:
    """(133, 2) positions in ViTPose heatmap pixels (48 x 64) of a person standing with arms out."""
    body = np.array([
        (24, 9), (23, 8), (25, 8), (22, 9), (26, 9),  # nose, eyes, ears
        (19, 17), (29, 17), (14, 22), (34, 22), (10, 27), (38, 27),  # shoulders, elbows, wrists
        (21, 35), (27, 35), (20, 46), (28, 46), (20, 57), (28, 57),  # hips, knees, ankles
        (18, 60), (19, 60), (20, 59), (30, 60), (29, 60), (28, 59),  # feet
    ], np.float32)
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    face = np.stack([24 + 3 * np.cos(angles), 9 + 3.5 * np.sin(angles)], 1)
    fingers = np.linspace(0, 3, 21)
    left = np.stack([10 - fingers, 27 + fingers / 2], 1)
    right = np.stack([38 + fingers, 27 + fingers / 2], 1)
    return np.concatenate([body, face, left, right]).astype(np.float32)


def write_demo_models(folder: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Tiny Wan2.2-Animate in the diffusers layout and detection models in the official layout; returns both dirs."""
    from wan_animate.preprocess import synthetic_models as sm
    from wan_loader.testing.tiny import tiny_components
    from wan_loader.writers import write_components

    folder = Path(folder)
    model_dir = write_components(tiny_components(seed), folder / "Wan2.2-Animate-tiny", "diffusers", "fp32")
    detection = folder / "process_checkpoint"
    (detection / "det").mkdir(parents=True, exist_ok=True)
    (detection / "pose2d").mkdir(parents=True, exist_ok=True)
    sm.planted_detector(detection / "det" / "yolov10m.onnx", DEMO_BOX, drift=DEMO_DRIFT)
    sm.planted_pose_model(detection / "pose2d" / "vitpose_h_wholebody.onnx", demo_keypoints())
    return Path(model_dir), detection


def draw_figure(canvas: np.ndarray, centre_x: int, colour) -> None:
    h = canvas.shape[0]
    cv2.circle(canvas, (centre_x, h // 5), max(h // 14, 2), colour, -1)
    cv2.rectangle(canvas, (centre_x - h // 10, h // 4), (centre_x + h // 10, 2 * h // 3), colour, -1)
    cv2.line(canvas, (centre_x, 2 * h // 3), (centre_x - h // 10, h - 4), colour, max(h // 30, 1))
    cv2.line(canvas, (centre_x, 2 * h // 3), (centre_x + h // 10, h - 4), colour, max(h // 30, 1))


def write_demo_inputs(folder: str | Path, frames: int = DEMO_FRAMES) -> tuple[Path, Path]:
    """A driving video (a figure swaying over a background that brightens and darkens) and a reference PNG."""
    from wan_animate.preprocess.video_io import write_image, write_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    height, width = DEMO_SIZE
    video = []
    for t in range(frames):
        phase = np.sin(2 * np.pi * t / 24)
        frame = np.full((height, width, 3), int(130 + 60 * phase), np.uint8)
        draw_figure(frame, int(width / 2 - 20 * phase), (200, 60, 40))
        video.append(frame)
    video_path = folder / "driving.mp4"
    write_video(video_path, video, fps=30.0)
    reference = np.full((height, width, 3), (90, 160, 210), np.uint8)
    draw_figure(reference, width // 2, (40, 90, 200))
    reference_path = folder / "reference.png"
    write_image(reference_path, reference)
    return video_path, reference_path
