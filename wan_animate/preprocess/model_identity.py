"""Tell what an ONNX model is from its input/output shapes, so a model put in the wrong slot gets a clear error.

Model pickers in ComfyUI list every file of `models/detection` in both the detector and the pose drop-down, so
swapping them (or picking a face detector) is easy; without this check it shows up as a cryptic onnxruntime shape
error deep inside preprocessing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from wan_loader.errors import WrongModelError

from .types import NUM_KEYPOINTS

Slot = Literal["detector", "pose"]

EXPECTED = {
    "detector": "a YOLOv10 person detector such as yolov10m.onnx (input [N,3,640,640], output [N,300,6])",
    "pose": (
        "a ViTPose whole-body pose model such as vitpose_h_wholebody.onnx or vitpose-l-wholebody.onnx "
        "(input [N,3,256,192], output heatmaps [N,133,64,48])"
    ),
}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[tuple, ...]
    outputs: tuple[tuple, ...]

    @classmethod
    def of(cls, session) -> Signature:
        return cls(
            tuple(tuple(i.shape) for i in session.get_inputs()),
            tuple(tuple(o.shape) for o in session.get_outputs()),
        )

    def __str__(self) -> str:
        def fmt(shapes):
            return ", ".join("[" + ",".join(str(d) for d in s) + "]" for s in shapes)

        return f"inputs {fmt(self.inputs)} -> outputs {fmt(self.outputs)}"


def _dim(shape: tuple, axis: int) -> int | None:
    """A fixed dimension, or None when it is symbolic/unknown or absent."""
    try:
        value = shape[axis]
    except IndexError:
        return None
    return value if isinstance(value, int) and value > 0 else None


def detector_layout(signature: Signature) -> str | None:
    """'yolov10' ([N,300,6] rows) or 'yolov8' ([N,4+classes,anchors]) when this is a usable box detector."""
    if len(signature.inputs) != 1 or len(signature.inputs[0]) != 4 or _dim(signature.inputs[0], 1) not in (3, None):
        return None
    out = signature.outputs[0]
    if len(out) != 3:
        return None
    if _dim(out, 2) == 6:
        return "yolov10"
    channels = _dim(out, 1)
    if channels is not None and channels > 4 and (_dim(out, 2) or 0) > channels:
        return "yolov8"
    return None


def pose_keypoints(signature: Signature) -> int | None:
    """Number of heatmap channels when this is a top-down heatmap pose model (image in, [N,K,h,w] out)."""
    inp, out = signature.inputs[0], signature.outputs[0]
    if len(signature.inputs) != 1 or len(inp) != 4 or _dim(inp, 1) not in (3, None) or len(out) != 4:
        return None
    height, width = _dim(inp, 2), _dim(inp, 3)
    if height is not None and width is not None and height <= width:
        return None  # pose crops are portrait (256x192); square inputs are detectors/segmenters
    return _dim(out, 1)


def describe(signature: Signature) -> str:
    """A human name for what this model looks like."""
    layout = detector_layout(signature)
    if layout == "yolov10":
        return "a YOLOv10 object detector (NMS-free, [N,300,6] boxes)"
    if layout == "yolov8":
        return "a YOLOv8-style object detector ([N,4+classes,anchors] boxes)"
    keypoints = pose_keypoints(signature)
    if keypoints == NUM_KEYPOINTS:
        return "a ViTPose whole-body pose model (133 keypoints)"
    if keypoints == 17:
        return "a body-only pose model (17 COCO keypoints, no hands or face)"
    if keypoints is not None:
        return f"a heatmap pose model with {keypoints} keypoints"
    inp = signature.inputs[0] if signature.inputs else ()
    if len(signature.outputs) in (6, 9, 10) and len(inp) == 4:
        return "an insightface SCRFD face detector"
    if len(inp) == 4 and _dim(inp, 2) == 112 and _dim(inp, 3) == 112:
        return "a face-recognition model (ArcFace-style, 112x112 faces)"
    if len(inp) == 4 and _dim(inp, 2) == 192 and _dim(inp, 3) == 192:
        return "a face-landmark model (insightface 2d106/1k3d68-style, 192x192 faces)"
    if len(inp) == 4 and _dim(inp, 2) == 1024 and _dim(inp, 3) == 1024:
        return "a segmentation image encoder (SAM-style, 1024x1024)"
    return "an unrecognised model"


def check_slot(signature: Signature, slot: Slot, name: str) -> None:
    """Raise WrongModelError naming the file, what it looks like and what the slot expects."""
    if slot == "detector":
        ok = detector_layout(signature) is not None
    else:
        ok = pose_keypoints(signature) == NUM_KEYPOINTS
    if ok:
        return
    looks_like = describe(signature)
    hint = ""
    if slot == "detector" and pose_keypoints(signature) is not None:
        hint = " The detector and pose models look swapped."
    elif slot == "pose" and detector_layout(signature) is not None:
        hint = " The detector and pose models look swapped."
    raise WrongModelError(
        f"{name}: this looks like {looks_like} ({signature}), but the {slot} slot expects {EXPECTED[slot]}.{hint}"
    )
