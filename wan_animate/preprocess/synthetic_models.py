"""ONNX stand-ins for yolov10m.onnx and the ViTPose whole-body models, built with onnx.helper (no download).

They have the real models' input/output shapes and dtypes (names as common exporters write them, though nothing
depends on names), in three kinds:

- planted: tiny graphs whose output is configured, so tests can check that what was planted is recovered: a
  detector returning given boxes, a pose model whose heatmaps peak at given sub-pixel positions (both optionally
  drifting with the image's mean brightness, so every frame of a batch gets a different answer), and a pose model
  whose heatmaps follow a colour in the image (to test crops on real photographs);
- architecture: a YOLO-style CNN and a ViTPose-style transformer with random weights, at "real" size (the compute
  and parameters of YOLOv10m and ViTPose-H/L, for benchmarks) or "tiny" (same graph, small widths, fast on CPU);
- any of them with a static batch dimension (`static_batch=1`) or with weights in an external-data file
  (`external_data="name_data.bin"`, written next to the .onnx, as vitpose_h_wholebody_model.onnx +
  vitpose_h_wholebody_data.bin).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .detector import DETECTOR_SIZE as DETECTOR_HW
from .pose_model import IMAGENET_MEAN, IMAGENET_STD, POSE_SIZE
from .types import NUM_KEYPOINTS

OPSET = 17
DETECTOR_SIZE = DETECTOR_HW[0]
POSE_HEIGHT, POSE_WIDTH = POSE_SIZE
HEATMAP_HEIGHT, HEATMAP_WIDTH = POSE_HEIGHT // 4, POSE_WIDTH // 4
NUM_ROWS = 300
NUM_CLASSES = 80


class _Graph:
    """Collects nodes and weights; weights can stream into one external-data file as they are made."""

    def __init__(self, path: Path, external_data: str | None):
        self.path = path
        self.nodes: list = []
        self.initializers: list = []
        self.external_data = external_data
        self._data = open(path.parent / external_data, "wb") if external_data else None
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, array, prefix: str = "w") -> str:
        array = np.asarray(array)
        name = self.name(prefix)
        if self._data is not None and array.nbytes >= 64:
            offset = self._data.tell()
            padding = -offset % 4096
            self._data.write(b"\0" * padding)
            offset += padding
            self._data.write(np.ascontiguousarray(array).tobytes())
            tensor = TensorProto()
            tensor.name = name
            tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
            tensor.dims.extend(array.shape)
            for key, value in (("location", self.external_data), ("offset", offset), ("length", array.nbytes)):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, str(value)
            tensor.data_location = TensorProto.EXTERNAL
        else:
            tensor = numpy_helper.from_array(array, name)
        self.initializers.append(tensor)
        return name

    def op(self, op_type: str, inputs: Sequence[str], output: str | None = None, **attrs) -> str:
        output = output or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attrs))
        return output

    def save(self, input_name: str, input_shape: list, output: str, output_shape: list, graph_name: str) -> Path:
        if self._data is not None:
            self._data.close()
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="wan_animate.synthetic")
        model.ir_version = 8
        with open(self.path, "wb") as handle:
            handle.write(model.SerializeToString())
        return self.path


def _start(path: str | os.PathLike, external_data: str | None) -> _Graph:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _Graph(path, external_data)


def _batch(static_batch: int | None):
    return static_batch if static_batch else "batch"


def _image_mean(g: _Graph, image: str) -> str:
    """[B, 1, 1(, 1)] mean of each image (used to make planted outputs differ from frame to frame)."""
    return g.op("ReduceMean", [image], axes=[1, 2, 3], keepdims=1)


# ----------------------------------------------------------------------------------------------------- planted


def planted_detector(
    path: str | os.PathLike,
    boxes: Sequence[Sequence[float]],
    *,
    drift: Sequence[Sequence[float]] | None = None,
    static_batch: int | None = None,
    input_size: int = DETECTOR_SIZE,
    input_name: str = "images",
    output_name: str = "output0",
    external_data: str | None = None,
) -> Path:
    """A YOLOv10-shaped detector ([B,3,S,S] -> [B,300,6]) returning the given rows (x1, y1, x2, y2, score, class in
    model pixels), the rest zero. `drift` (same shape as `boxes`) is added times the image's mean value in [0, 1]."""
    rows = np.zeros((1, NUM_ROWS, 6), np.float32)
    rows[0, : len(boxes)] = np.asarray(boxes, np.float32).reshape(-1, 6)
    g = _start(path, external_data)
    out = g.const(rows, "rows")
    if drift is not None:
        slope = np.zeros_like(rows)
        slope[0, : len(drift)] = np.asarray(drift, np.float32).reshape(-1, 6)
        mean = g.op("Squeeze", [_image_mean(g, input_name), g.const(np.array([3], np.int64))])  # [B,1,1]
        out = g.op("Add", [out, g.op("Mul", [mean, g.const(slope, "drift")])])
    else:
        zero = g.op("Mul", [_image_mean(g, input_name), g.const(np.zeros((1,), np.float32))])  # [B,1,1,1] zeros
        out = g.op("Add", [out, g.op("Squeeze", [zero, g.const(np.array([3], np.int64))])])
    g.op("Identity", [out], output_name)
    b = _batch(static_batch)
    return g.save(input_name, [b, 3, input_size, input_size], output_name, [b, NUM_ROWS, 6], "planted_detector")


def planted_pose_model(
    path: str | os.PathLike,
    keypoints: np.ndarray,
    *,
    confidences: np.ndarray | float = 0.9,
    sigma: float = 2.0,
    drift: np.ndarray | None = None,
    static_batch: int | None = None,
    input_name: str = "input",
    output_name: str = "output",
    external_data: str | None = None,
) -> Path:
    """A ViTPose-shaped model ([B,3,256,192] -> [B,133,64,48]) whose heatmaps are Gaussians (sigma in heatmap
    pixels, as ViTPose was trained) peaking at `keypoints` [133, 2] (x, y heatmap pixels, sub-pixel) with height
    `confidences`. `drift` [133, 2] moves the peaks by that much per unit of the input's mean normalised value."""
    keypoints = np.asarray(keypoints, np.float32).reshape(NUM_KEYPOINTS, 2)
    conf = np.broadcast_to(np.asarray(confidences, np.float32), (NUM_KEYPOINTS,))
    g = _start(path, external_data)
    cx = g.const(keypoints[:, 0].reshape(1, -1, 1, 1), "cx")
    cy = g.const(keypoints[:, 1].reshape(1, -1, 1, 1), "cy")
    mean = _image_mean(g, input_name)  # [B,1,1,1]
    drift = np.zeros_like(keypoints) if drift is None else np.asarray(drift, np.float32).reshape(NUM_KEYPOINTS, 2)
    cx = g.op("Add", [cx, g.op("Mul", [mean, g.const(drift[:, 0].reshape(1, -1, 1, 1))])])
    cy = g.op("Add", [cy, g.op("Mul", [mean, g.const(drift[:, 1].reshape(1, -1, 1, 1))])])
    dx = g.op("Sub", [g.const(np.arange(HEATMAP_WIDTH, dtype=np.float32).reshape(1, 1, 1, -1), "gx"), cx])
    dy = g.op("Sub", [g.const(np.arange(HEATMAP_HEIGHT, dtype=np.float32).reshape(1, 1, -1, 1), "gy"), cy])
    d2 = g.op("Add", [g.op("Mul", [dx, dx]), g.op("Mul", [dy, dy])])
    gauss = g.op("Exp", [g.op("Mul", [d2, g.const(np.array(-0.5 / sigma**2, np.float32))])])
    g.op("Mul", [gauss, g.const(conf.reshape(1, -1, 1, 1).copy(), "conf")], output_name)
    b = _batch(static_batch)
    return g.save(
        input_name, [b, 3, POSE_HEIGHT, POSE_WIDTH], output_name, [b, NUM_KEYPOINTS, HEATMAP_HEIGHT, HEATMAP_WIDTH],
        "planted_pose",
    )


def colour_pose_model(
    path: str | os.PathLike,
    colour: Sequence[int] = (0, 0, 255),
    *,
    static_batch: int | None = None,
    input_name: str = "input",
    output_name: str = "output",
) -> Path:
    """A ViTPose-shaped model whose 133 heatmaps all light up where the crop has `colour` (RGB, as fed): the
    heatmap is a pooled colour-match score of the normalised input, so a blob of that colour planted in a real
    photograph must be found at its frame position (tests the crop, the channel order and the mapping back)."""
    target = (np.asarray(colour, np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    weights = target / np.linalg.norm(target)  # projection on the target colour's direction
    g = _start(path, None)
    score = g.op("Conv", [input_name, g.const(weights.reshape(1, 3, 1, 1).astype(np.float32))])
    # 5x5 windows centred on every 4th pixel: heatmap pixel i stands for crop pixel 4i, as ViTPose was trained.
    pooled = g.op("AveragePool", [score], kernel_shape=[5, 5], strides=[4, 4], pads=[2, 2, 2, 2])
    scaled = g.op("Mul", [pooled, g.const(np.array(1 / np.linalg.norm(target), np.float32))])
    g.op("Tile", [scaled, g.const(np.array([1, NUM_KEYPOINTS, 1, 1], np.int64))], output_name)
    b = _batch(static_batch)
    return g.save(
        input_name, [b, 3, POSE_HEIGHT, POSE_WIDTH], output_name, [b, NUM_KEYPOINTS, HEATMAP_HEIGHT, HEATMAP_WIDTH],
        "colour_pose",
    )


# ------------------------------------------------------------------------------------------------ architecture

YOLO_SIZES = {
    # stem/stage widths at strides 2..32 and 3x3 blocks per stage at strides 4..32; "real" has YOLOv10m's
    # parameters (~15 M) and compute (~30 GMAC = ~60 GFLOP at 640x640).
    "real": {"widths": (48, 96, 192, 384, 576), "blocks": (1, 4, 4, 2), "head_blocks": 1},
    "tiny": {"widths": (4, 8, 8, 8, 8), "blocks": (0, 0, 0, 0), "head_blocks": 0},
}
VIT_SIZES = {
    "h": {"dim": 1280, "depth": 32, "heads": 16, "deconv": 256},  # ViTPose-H: ~632 M parameters
    "l": {"dim": 1024, "depth": 24, "heads": 16, "deconv": 256},  # ViTPose-L: ~306 M parameters
    "tiny": {"dim": 32, "depth": 1, "heads": 2, "deconv": 8},
}


def _conv(g: _Graph, x: str, c_in: int, c_out: int, k: int, stride: int, rng, act: str | None = "silu") -> str:
    w = (rng.standard_normal((c_out, c_in, k, k), dtype=np.float32) * math.sqrt(2.0 / (c_in * k * k))).astype(np.float32)
    y = g.op("Conv", [x, g.const(w), g.const(np.zeros(c_out, np.float32), "b")], strides=[stride, stride], pads=[k // 2] * 4)
    if act == "silu":
        y = g.op("Mul", [y, g.op("Sigmoid", [y])])
    elif act == "relu":
        y = g.op("Relu", [y])
    return y


def yolo_detector(
    path: str | os.PathLike,
    size: str = "real",
    *,
    planted_boxes: Sequence[Sequence[float]] | None = None,
    static_batch: int | None = None,
    input_size: int = DETECTOR_SIZE,
    seed: int = 0,
    external_data: str | None = None,
) -> Path:
    """A YOLO-style detector ([B,3,640,640] -> [B,300,6]) with random weights: conv backbone, per-scale heads at
    strides 8/16/32, top-300 selection. Random weights make ~300 confident boxes per frame; `planted_boxes` rows
    replace them (the network's rows are added times 1e-6, so the full compute still runs) for realistic
    person counts in benchmarks."""
    cfg = YOLO_SIZES[size]
    rng = np.random.default_rng(seed)
    g = _start(path, external_data)
    widths, blocks = cfg["widths"], cfg["blocks"]
    x = _conv(g, "images", 3, widths[0], 3, 2, rng)
    features = []
    for stage, (c_in, c_out, n) in enumerate(zip(widths[:-1], widths[1:], blocks)):
        x = _conv(g, x, c_in, c_out, 3, 2, rng)
        for _ in range(n):
            x = g.op("Add", [x, _conv(g, x, c_out, c_out, 3, 1, rng)])
        if stage >= 1:
            features.append((x, c_out))
    heads = []
    for feature, channels in features:
        for _ in range(cfg["head_blocks"]):
            feature = _conv(g, feature, channels, channels, 3, 1, rng)
        out = _conv(g, feature, channels, 4 + NUM_CLASSES, 1, 1, rng, act=None)
        heads.append(g.op("Reshape", [out, g.const(np.array([0, 4 + NUM_CLASSES, -1], np.int64))]))
    raw = g.op("Concat", heads, axis=2)  # [B, 84, anchors]
    box = g.op("Slice", [raw, g.const(np.array([0], np.int64)), g.const(np.array([4], np.int64)), g.const(np.array([1], np.int64))])
    cls = g.op("Sigmoid", [g.op("Slice", [raw, g.const(np.array([4], np.int64)), g.const(np.array([4 + NUM_CLASSES], np.int64)), g.const(np.array([1], np.int64))])])
    box = g.op("Mul", [g.op("Sigmoid", [box]), g.const(np.array(float(input_size), np.float32))])
    score = g.op("ReduceMax", [cls], axes=[1], keepdims=0)  # [B, anchors]
    label = g.op("Cast", [g.op("ArgMax", [cls], axis=1, keepdims=0)], to=TensorProto.FLOAT)
    top_score, top_index = g.name("top_score"), g.name("top_index")
    g.nodes.append(helper.make_node("TopK", [score, g.const(np.array([NUM_ROWS], np.int64))], [top_score, top_index], axis=1))
    index4 = g.op("Tile", [g.op("Unsqueeze", [top_index, g.const(np.array([1], np.int64))]), g.const(np.array([1, 4, 1], np.int64))])
    top_box = g.op("Transpose", [g.op("GatherElements", [box, index4], axis=2)], perm=[0, 2, 1])  # [B, 300, 4]
    top_label = g.op("GatherElements", [label, top_index], axis=1)
    last = g.const(np.array([-1], np.int64))
    rows = g.op("Concat", [top_box, g.op("Unsqueeze", [top_score, last]), g.op("Unsqueeze", [top_label, last])], axis=-1)
    if planted_boxes is not None:
        planted = np.zeros((1, NUM_ROWS, 6), np.float32)
        planted[0, : len(planted_boxes)] = np.asarray(planted_boxes, np.float32).reshape(-1, 6)
        rows = g.op("Add", [g.const(planted, "planted"), g.op("Mul", [rows, g.const(np.array(1e-6, np.float32))])])
    g.op("Identity", [rows], "output0")
    b = _batch(static_batch)
    return g.save("images", [b, 3, input_size, input_size], "output0", [b, NUM_ROWS, 6], f"yolo_{size}")


def _linear(g: _Graph, x: str, d_in: int, d_out: int, rng) -> str:
    w = (rng.standard_normal((d_in, d_out), dtype=np.float32) * 0.02).astype(np.float32)
    return g.op("Add", [g.op("MatMul", [x, g.const(w)]), g.const(np.zeros(d_out, np.float32), "b")])


def _layer_norm(g: _Graph, x: str, dim: int) -> str:
    return g.op(
        "LayerNormalization",
        [x, g.const(np.ones(dim, np.float32), "ln_w"), g.const(np.zeros(dim, np.float32), "ln_b")],
        axis=-1,
        epsilon=1e-6,
    )


def vitpose_model(
    path: str | os.PathLike,
    size: str = "h",
    *,
    static_batch: int | None = None,
    seed: int = 0,
    external_data: str | None = None,
) -> Path:
    """A ViTPose-style whole-body model ([B,3,256,192] -> [B,133,64,48]) with random weights: 16x16 patch embedding
    (padding 2), `depth` pre-norm transformer blocks, two 4x4 stride-2 deconvolutions and a 1x1 keypoint head, as
    ViTPose's classic decoder. Size "h" weighs ~2.5 GB: pass `external_data` (protobuf files stop at 2 GB)."""
    cfg = VIT_SIZES[size]
    dim, depth, heads = cfg["dim"], cfg["depth"], cfg["heads"]
    head_dim = dim // heads
    rng = np.random.default_rng(seed)
    g = _start(path, external_data)
    patch = (rng.standard_normal((dim, 3, 16, 16), dtype=np.float32) * 0.02).astype(np.float32)
    x = g.op("Conv", ["input", g.const(patch), g.const(np.zeros(dim, np.float32), "b")], strides=[16, 16], pads=[2, 2, 2, 2])
    grid_h, grid_w = (POSE_HEIGHT + 4 - 16) // 16 + 1, (POSE_WIDTH + 4 - 16) // 16 + 1
    tokens = grid_h * grid_w
    x = g.op("Transpose", [g.op("Reshape", [x, g.const(np.array([0, dim, -1], np.int64))])], perm=[0, 2, 1])
    x = g.op("Add", [x, g.const((rng.standard_normal((1, tokens, dim), dtype=np.float32) * 0.02).astype(np.float32), "pos")])
    qkv_shape = g.const(np.array([0, -1, 3, heads, head_dim], np.int64))
    merge_shape = g.const(np.array([0, -1, dim], np.int64))
    attn_scale = g.const(np.array(head_dim**-0.5, np.float32))
    inv_sqrt2 = g.const(np.array(1 / math.sqrt(2), np.float32))
    half, one = g.const(np.array(0.5, np.float32)), g.const(np.array(1.0, np.float32))
    for _ in range(depth):
        h = _layer_norm(g, x, dim)
        qkv = g.op("Transpose", [g.op("Reshape", [_linear(g, h, dim, 3 * dim, rng), qkv_shape])], perm=[2, 0, 3, 1, 4])
        q, k, v = (g.op("Gather", [qkv, g.const(np.array(i, np.int64))], axis=0) for i in range(3))
        scores = g.op("MatMul", [g.op("Mul", [q, attn_scale]), g.op("Transpose", [k], perm=[0, 1, 3, 2])])
        att = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        att = g.op("Reshape", [g.op("Transpose", [att], perm=[0, 2, 1, 3]), merge_shape])
        x = g.op("Add", [x, _linear(g, att, dim, dim, rng)])
        h = _linear(g, _layer_norm(g, x, dim), dim, 4 * dim, rng)
        h = g.op("Mul", [g.op("Mul", [h, half]), g.op("Add", [g.op("Erf", [g.op("Mul", [h, inv_sqrt2])]), one])])
        x = g.op("Add", [x, _linear(g, h, 4 * dim, dim, rng)])
    x = _layer_norm(g, x, dim)
    x = g.op("Reshape", [g.op("Transpose", [x], perm=[0, 2, 1]), g.const(np.array([0, dim, grid_h, grid_w], np.int64))])
    channels, width = dim, cfg["deconv"]
    for _ in range(2):
        w = (rng.standard_normal((channels, width, 4, 4), dtype=np.float32) * math.sqrt(2.0 / (channels * 4))).astype(np.float32)
        x = g.op("Relu", [g.op("ConvTranspose", [x, g.const(w)], strides=[2, 2], pads=[1, 1, 1, 1])])
        channels = width
    _conv(g, x, width, NUM_KEYPOINTS, 1, 1, rng, act=None)
    g.nodes[-1].output[0] = "output"
    b = _batch(static_batch)
    return g.save(
        "input", [b, 3, POSE_HEIGHT, POSE_WIDTH], "output", [b, NUM_KEYPOINTS, HEATMAP_HEIGHT, HEATMAP_WIDTH],
        f"vitpose_{size}",
    )


def parameter_count(path: str | os.PathLike) -> int:
    """Number of weights in an ONNX file (external data is not read)."""
    model = onnx.load(os.fspath(path), load_external_data=False)
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer)
