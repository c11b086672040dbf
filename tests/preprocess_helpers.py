"""Shared test material for the preprocessing tests: a planted stick person, model folders, videos, a tiny SCRFD.

All models are real ONNX graphs run by onnxruntime with the real models' input/output signatures.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from wan_animate.preprocess import synthetic_models as sm
from wan_animate.preprocess.types import FramePoses, PersonDetection, PersonPose
from wan_animate.preprocess.video_io import write_video

# Body keypoints of a standing person in ViTPose heatmap pixels (48 x 64), COCO-WholeBody order.
_BODY = {
    0: (24, 8), 1: (23, 7), 2: (25, 7), 3: (21, 8), 4: (27, 8), 5: (18, 16), 6: (30, 16), 7: (16, 24), 8: (32, 24),
    9: (15, 31), 10: (33, 31), 11: (20, 34), 12: (28, 34), 13: (20, 45), 14: (28, 45), 15: (20, 56), 16: (28, 56),
    17: (19, 59), 18: (20, 59), 19: (21, 58), 20: (27, 59), 21: (28, 59), 22: (29, 58),
}


def stick_person_heatmap() -> np.ndarray:
    """(133, 2) heatmap positions: body, a ring of 68 face landmarks round the nose, two hands at the wrists."""
    k = np.zeros((133, 2), np.float32)
    for i, xy in _BODY.items():
        k[i] = xy
    ang = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    k[23:91] = np.stack([24 + 3 * np.cos(ang), 9 + 4 * np.sin(ang)], 1)
    k[91:112] = np.stack([15 + np.linspace(0, 2, 21), 31 + np.linspace(0, 3, 21)], 1)
    k[112:133] = np.stack([33 - np.linspace(0, 2, 21), 31 + np.linspace(0, 3, 21)], 1)
    return k


def model_dir(folder: Path, boxes, *, drift=None, face_confidence: float = 0.9) -> Path:
    """An official-layout model folder: det/yolov10m.onnx (planted boxes, 640-px rows) + pose2d/vitpose_h_wholebody.onnx."""
    (folder / "det").mkdir(parents=True, exist_ok=True)
    (folder / "pose2d").mkdir(parents=True, exist_ok=True)
    sm.planted_detector(folder / "det" / "yolov10m.onnx", boxes, drift=drift)
    conf = np.full(133, 0.9, np.float32)
    conf[23:91] = face_confidence
    sm.planted_pose_model(folder / "pose2d" / "vitpose_h_wholebody.onnx", stick_person_heatmap(), confidences=conf)
    return folder


def appearing_person_detector_rows():
    """Rows and drift for a person detected only in bright frames (score = -0.45 + mean brightness in [0, 1])."""
    rows = [[200, 100, 440, 600, -0.45, 0]]
    drift = [[0, 0, 0, 0, 1.0, 0]]
    return rows, drift


def write_test_video(path: Path, brightness, width: int = 192, height: int = 128, fps: float = 30.0) -> Path:
    """A smooth-gradient video, one frame per brightness value (cheap to encode)."""
    ramp = np.linspace(0, 30, width, dtype=np.float32)[None, :, None]
    frames = [np.clip(np.full((height, width, 3), b, np.float32) + ramp, 0, 255).astype(np.uint8) for b in brightness]
    write_video(path, frames, fps=fps)
    return path


def person(box, keypoints=None, score: float = 0.9) -> PersonPose:
    """A PersonPose with a box and (default) keypoints spread inside it, all confident."""
    box = np.asarray(box, np.float32)
    if keypoints is None:
        x1, y1, x2, y2 = box
        hm = stick_person_heatmap()
        keypoints = np.stack([x1 + hm[:, 0] / 48 * (x2 - x1), y1 + hm[:, 1] / 64 * (y2 - y1)], 1)
    return PersonPose(PersonDetection(box, score), np.asarray(keypoints, np.float32), np.full(133, 0.9, np.float32))


def frames_of(people_per_frame, width: int = 640, height: int = 360) -> list[FramePoses]:
    return [FramePoses(i, width, height, list(p)) for i, p in enumerate(people_per_frame)]


# ---------------------------------------------------------------------------------------------- tiny SCRFD


def tiny_scrfd(path: Path) -> Path:
    """A SCRFD-shaped face detector (det_10g.onnx signature: input.1 [1,3,?,?] -> 9 outputs: scores, boxes, 5-point
    landmarks at strides 8/16/32, two anchors each). It fires on bright regions at stride 32 only, with 64x64 boxes."""
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    outputs = {"score": [], "bbox": [], "kps": []}
    for stride in (8, 16, 32):
        pooled = f"pool{stride}"
        nodes.append(helper.make_node("AveragePool", ["input.1"], [pooled], kernel_shape=[stride, stride],
                                      strides=[stride, stride]))
        fires = stride == 32
        for kind, channels in (("score", 2), ("bbox", 8), ("kps", 20)):
            w = np.zeros((channels, 3, 1, 1), np.float32)
            b = np.zeros(channels, np.float32)
            if kind == "score":
                w[:] = 10.0 / 3 if fires else 0.0
                b[:] = -5.0 if fires else -20.0
            elif kind == "bbox":
                b[:] = 1.0  # distances in strides: a 2-stride box around the anchor
            conv = f"{kind}{stride}_conv"
            nodes.append(helper.make_node("Conv", [pooled, const(f"{conv}_w", w), const(f"{conv}_b", b)], [conv]))
            last = conv
            if kind == "score":
                nodes.append(helper.make_node("Sigmoid", [conv], [f"{conv}_sig"]))
                last = f"{conv}_sig"
            nodes.append(helper.make_node("Transpose", [last], [f"{conv}_t"], perm=[0, 2, 3, 1]))
            shape = f"{kind}{stride}_shape"
            inits.append(numpy_helper.from_array(np.array([-1, channels // 2], np.int64), shape))
            out = f"{kind}_{stride}"
            nodes.append(helper.make_node("Reshape", [f"{conv}_t", shape], [out]))
            outputs[kind].append(out)
    names = outputs["score"] + outputs["bbox"] + outputs["kps"]
    widths = [1] * 3 + [4] * 3 + [10] * 3
    graph = helper.make_graph(
        nodes, "tiny_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["?", w]) for n, w in zip(names, widths)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
