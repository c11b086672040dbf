"""Optional training-free sparse self-attention for long and 720p videos: comfy-kitchen's Sol-Attn (`sol_attn`).

Sol-Attn (arXiv 2607.24027, comfy-kitchen >= 0.2.40) splits the tokens into blocks of 64. Each query block attends
exactly the key blocks whose score against its centroid clears `tau` standard deviations of that row (and always
its neighbouring blocks); every other key block enters the same softmax through one pooled term (mean key, summed
values), so all tokens stay in the denominator. It needs no trained parameters. The work saved grows with the
sequence length (below ~12k tokens dense attention is faster, comfy-kitchen says): Animate-14B has 32,760 tokens
at 480p and 75,600 at 720p. comfy-kitchen's CUDA kernel (sm80+, bf16/fp16, head_dim 128, int8 scores) runs it on
GPUs; its eager reference (fp32, dense O(T^2) scores) defines the algorithm and is what the CPU tests run.

Its error depends on how much structure the attention has: on benchmarks.attention's structured inputs (smooth
low-rank signal, channel offsets) the eager reference stays at bf16 SDPA's level, on random inputs (no block is
more relevant than another) it is tens of percent off. The 3 % rule of "auto" holds on both kinds, so this kernel is
asked for by name ("sparse") and never chosen by "auto". Where it cannot run (comfy-kitchen missing, no CUDA GPU or
one below sm80, a failed one-call probe) the choice falls back to auto's kernel with one log line; calls it does not
fit (short sequences, another head size, cross-length attention such as Animate-2's in-context frames, fp32 on a
GPU) take the dense kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .attention_quant import cuda_index, probe
from .kitchen import KITCHEN_REQUIREMENT, kitchen, kitchen_installed
from .processors import Kernel

SPARSE = "sparse"
HEAD_DIM = 128  # the only head size comfy-kitchen's kernels take (Wan's 14B models: 5120 / 40)
MIN_TOKENS = 12288  # shorter sequences: dense attention (comfy-kitchen: "below roughly 12k tokens ... faster")
FUSED_DTYPES = (torch.bfloat16, torch.float16)
_PROBE: dict[int, str | None] = {}  # per GPU


@dataclass(frozen=True)
class SparseSettings:
    """How sparse one model's self-attention is (kept by that model's attention processors)."""

    tau: float = 1.0  # routing threshold in standard deviations: higher routes fewer blocks exactly (faster, less exact)
    min_tokens: int = MIN_TOKENS  # sequences shorter than this take the dense kernel

    def check(self) -> None:
        if not math.isfinite(self.tau):
            raise ValueError(f"sparse_tau={self.tau}: must be a finite number (1.0 is comfy-kitchen's default; "
                             "higher is sparser and faster, lower closer to dense attention).")
        if self.min_tokens < 0:
            raise ValueError(f"sparse min_tokens={self.min_tokens}: must be >= 0.")

    def describe(self) -> dict:
        return {"sparse_tau": self.tau, "sparse_min_tokens": self.min_tokens}


def unavailable_reason(device) -> str | None:
    """Why Sol-Attn's fused kernel cannot run on `device` (None when it can); the probe runs once per GPU."""
    index, reason = cuda_index(device)
    if reason:
        return f"{reason} (comfy-kitchen's sol_attn kernel runs on CUDA GPUs)"
    ck = kitchen() if kitchen_installed() else None
    if ck is None or not hasattr(ck, "sol_attn"):
        return f"its kernel comes from {KITCHEN_REQUIREMENT}, which is not installed (pip install '{KITCHEN_REQUIREMENT}')"
    gpu = torch.device("cuda", index)
    if not ck.sol_attn_is_available(gpu):
        return f"comfy-kitchen's sol_attn kernel does not run on {gpu} (it needs compute capability >= 8.0)"
    return probe(lambda q, k, v: ck.sol_attn(q, k, v), gpu, _PROBE, "comfy-kitchen's sol_attn does not run here")


class SparseAttention:
    """A (B, S, H, D) self-attention kernel: Sol-Attn where the call fits it, `dense` otherwise."""

    def __init__(self, settings: SparseSettings, dense: Kernel):
        settings.check()
        if not kitchen_installed() or not hasattr(kitchen(), "sol_attn"):
            raise ValueError(f"attention='sparse' needs {KITCHEN_REQUIREMENT}: pip install '{KITCHEN_REQUIREMENT}'.")
        self.settings, self.dense, self.sol_attn = settings, dense, kitchen().sol_attn

    def fits(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
        return (q.shape == k.shape == v.shape and q.shape[-1] == HEAD_DIM and q.shape[1] >= self.settings.min_tokens
                and (q.device.type != "cuda" or q.dtype in FUSED_DTYPES))

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if not self.fits(q, k, v):
            return self.dense(q, k, v)
        return self.sol_attn(q.contiguous(), k.contiguous(), v.contiguous(), tau=self.settings.tau)
