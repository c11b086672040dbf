"""Self-attention through cuDNN's fused fp8 attention kernel (Hopper), via the cuDNN frontend's graph API.

torch's SDPA reaches cuDNN's bf16 flash attention only; cuDNN 9 also has an fp8 one (e4m3 Q·K^T and P·V, fp32
softmax), which NVIDIA tunes per GPU generation. The Python frontend (`nvidia-cudnn-frontend`, in the
requirements) builds it as a graph on the libcudnn that torch already loaded. On Hopper its output is e4m3
too. Quantisation, exact in real arithmetic except for the fp8 rounding:
- K is smoothed (its mean over the tokens subtracted per head and channel): every score of a query moves by the
  same amount, which softmax ignores, and the shared component no longer eats the fp8 range.
- V is smoothed the same way and its mean added back to the output: softmax rows sum to 1, so P·V = P·(V - mean)
  + mean. This narrows both V's and the output's range, which matters because the output is e4m3 as well.
- Q, K and V get one scale each (amax / 448; cuDNN takes scalar descales). e4m3 keeps 3 mantissa bits over
  2^17 of range, so one scale per tensor loses no more than per-block scales unless values span that range.
- P (in [0, 1]) is scaled by 448 into e4m3 inside the kernel. The output, a convex combination of V's rows, is
  bounded by V's amax, so it is written with V's scale and cannot overflow.
The kernel call is a torch custom op, so compiled blocks fuse the quantisation around it without a graph break.
"""
from __future__ import annotations

import threading

import torch

from .attention_quant import E4M3, E4M3_MAX, cuda_index, probe, quantize, smooth

try:
    import cudnn
except (ImportError, OSError):  # not installed, or no libcudnn it can load: `available()` says so
    cudnn = None

MIN_CUDNN = 90100  # fp8 fused attention forward on Hopper arrived in cuDNN 9.1
_UIDS = {"q": 1, "k": 2, "v": 3, "o": 4, "descale_q": 5, "descale_k": 6, "descale_v": 7, "descale_s": 8,
         "scale_s": 9, "scale_o": 10, "amax_s": 11, "amax_o": 12}
_lock = threading.Lock()
_handles: dict[int, object] = {}
_graphs: dict[tuple, object] = {}
_constants: dict[int, dict[str, torch.Tensor]] = {}
_probe: dict[int, str | None] = {}


def available(device=None) -> bool:
    """The frontend imports, libcudnn is new enough, and a small fp8 attention graph builds on this GPU."""
    return unavailable_reason(device) is None


def unavailable_reason(device=None) -> str | None:
    """Why cuDNN fp8 attention cannot run on `device` (None when it can); the probe runs once per GPU."""
    if cudnn is None:
        return "the cuDNN frontend is not installed (pip install nvidia-cudnn-frontend)"
    index, reason = cuda_index(device)
    if reason:
        return reason
    if torch.cuda.get_device_capability(index) < (9, 0):
        return "cuDNN's fp8 attention needs a Hopper or newer GPU"
    if cudnn.backend_version() < MIN_CUDNN:
        return f"cuDNN {cudnn.backend_version_string()} is older than 9.1"
    return probe(cudnn_fp8_attention, torch.device("cuda", index), _probe, "cuDNN could not build its fp8 attention here")


def _handle(index: int):
    if index not in _handles:
        with torch.cuda.device(index):
            _handles[index] = cudnn.create_handle()
    return _handles[index]


def _graph(b: int, s_q: int, s_kv: int, h: int, d: int, scale: float, index: int):
    """A built cuDNN graph for (B, S, H, D) e4m3 inputs and output; cached per shape."""
    key = (b, s_q, s_kv, h, d, scale, index)
    with _lock:
        if key in _graphs:
            return _graphs[key]
        f32 = cudnn.data_type.FLOAT
        g = cudnn.pygraph(handle=_handle(index), io_data_type=cudnn.data_type.FP8_E4M3,
                          intermediate_data_type=f32, compute_data_type=f32)

        def bshd(name, s):
            return g.tensor(uid=_UIDS[name], dim=(b, h, s, d), stride=(s * h * d, d, h * d, 1),
                            data_type=cudnn.data_type.FP8_E4M3)

        def scalar(name):
            return g.tensor(uid=_UIDS[name], dim=(1, 1, 1, 1), stride=(1, 1, 1, 1), data_type=f32)

        o, _, amax_s, amax_o = g.sdpa_fp8(
            q=bshd("q", s_q), k=bshd("k", s_kv), v=bshd("v", s_kv),
            descale_q=scalar("descale_q"), descale_k=scalar("descale_k"), descale_v=scalar("descale_v"),
            descale_s=scalar("descale_s"), scale_s=scalar("scale_s"), scale_o=scalar("scale_o"),
            attn_scale=scale, generate_stats=False, use_causal_mask=False)
        o.set_uid(_UIDS["o"]).set_output(True).set_dim((b, h, s_q, d)).set_stride(
            (s_q * h * d, d, h * d, 1)).set_data_type(cudnn.data_type.FP8_E4M3)
        for name, t in (("amax_s", amax_s), ("amax_o", amax_o)):
            t.set_uid(_UIDS[name]).set_output(True).set_dim((1, 1, 1, 1)).set_stride((1, 1, 1, 1)).set_data_type(f32)
        g.validate()
        g.build_operation_graph()
        g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        g.check_support()
        g.build_plans()
        _graphs[key] = g
        return g


def _scalars(index: int) -> dict[str, torch.Tensor]:
    """P's scale/descale (P in [0, 1] mapped onto e4m3's 448) and the amax outputs' sinks; one set per GPU."""
    if index not in _constants:
        def const(v):
            return torch.full((1, 1, 1, 1), v, dtype=torch.float32, device=torch.device("cuda", index))
        _constants[index] = {"scale_s": const(E4M3_MAX), "descale_s": const(1.0 / E4M3_MAX), "amax_s": const(0.0),
                             "amax_o": const(0.0)}
    return _constants[index]


@torch.library.custom_op("wan_animate::cudnn_fp8_sdpa", mutates_args=())
def fp8_sdpa(q8: torch.Tensor, k8: torch.Tensor, v8: torch.Tensor, descale_q: torch.Tensor,
             descale_k: torch.Tensor, descale_v: torch.Tensor, scale_o: torch.Tensor, scale: float) -> torch.Tensor:
    """cuDNN fp8 attention on contiguous (B, S, H, D) e4m3 tensors with (1, 1, 1, 1) fp32 (de)scales; the
    (B, S_q, H, D) e4m3 output holds out * scale_o."""
    b, s_q, h, d = q8.shape
    index = q8.device.index
    graph = _graph(b, s_q, k8.shape[1], h, d, scale, index)
    out = torch.empty(q8.shape, dtype=E4M3, device=q8.device)
    pack = {_UIDS["q"]: q8, _UIDS["k"]: k8, _UIDS["v"]: v8, _UIDS["o"]: out, _UIDS["descale_q"]: descale_q,
            _UIDS["descale_k"]: descale_k, _UIDS["descale_v"]: descale_v, _UIDS["scale_o"]: scale_o}
    pack.update({_UIDS[n]: t for n, t in _scalars(index).items()})
    workspace = torch.empty(graph.get_workspace_size(), dtype=torch.uint8, device=q8.device)
    handle = _handle(index)
    cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream(q8.device).cuda_stream)
    graph.execute(pack, workspace, handle=handle)
    return out


@fp8_sdpa.register_fake
def _(q8, k8, v8, descale_q, descale_k, descale_v, scale_o, scale):
    return torch.empty(q8.shape, dtype=E4M3, device=q8.device)


def cudnn_fp8_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v for (B, S, H, D) bf16/fp16 CUDA tensors, computed by cuDNN in fp8."""
    if cudnn is None:
        raise RuntimeError("cuDNN fp8 attention needs the cuDNN frontend: pip install nvidia-cudnn-frontend")
    d = query.shape[-1]
    if d % 16 or d > 256:
        raise ValueError(f"cuDNN fp8 attention supports head dims that are multiples of 16 up to 256, not {d}")
    q8, dq = quantize(query)
    k8, dk = quantize(smooth(key)[0])
    v_smooth, v_mean = smooth(value)
    v8, dv = quantize(v_smooth)
    o8 = fp8_sdpa(q8, k8, v8, dq, dk, dv, 1.0 / dv, float(scale if scale is not None else d ** -0.5))
    return (o8.float() * dv + v_mean).to(query.dtype)
