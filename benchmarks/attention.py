"""Self-attention kernels at the Wan step's sizes: speed, and error against fp32 attention on two kinds of input.

    python -m benchmarks.attention --out benchmarks/results/attention_h200.json
    python -m benchmarks.attention --device cpu --tokens 4096 --heads 4 --out benchmarks/results/attention_cpu.json

40 heads x 128, one sequence of 32760 (480p) / 75600 (720p) tokens. Per kernel: ms and TFLOP/s (4 * S^2 * heads *
dim), and the relative error (||out - ref|| / ||ref||) and cosine against fp32 attention (4096 queries x 4 heads)
on
- random inputs: Gaussian q/k/v, k with a shared offset;
- structured inputs (`structured_qkv`): what real activations have and random ones lack - a low-rank signal that
  varies smoothly along the sequence, shared by q and k (peaky, position-dependent scores: the largest
  probability of a row ~0.5), channel offsets on K (a few channels large) and on V, and noise.
bf16 SDPA's own error is the floor. "kernel only" rows run on operands quantised beforehand (what a compiled block
leaves to the kernel); "compiled quantisation" rows torch.compile the whole call, as a compiled block does.

Sparse rows (attention="sparse": comfy-kitchen's Sol-Attn, one per --sparse-taus value) add `exact_blocks_*`: the
fraction of (query block, key block) pairs its routing computes exactly (the rest is pooled), which is what its
speed follows, and their time on the structured inputs too (the routing depends on the data). On a GPU they run
comfy-kitchen's CUDA kernel; on the CPU (`--device cpu`: torch SDPA and the sparse rows only, at small sizes) its
eager reference, whose time says nothing about the kernel's but whose error is the algorithm's own.
"""
from __future__ import annotations

import argparse
import math
import sys
from functools import partial

import torch

from wan_animate.engine.accel import cudnn_fp8_attention, fa3_attention, fp8_attention, int8_attention
from wan_animate.engine.accel import sparse_attention
from wan_animate.engine.accel.attention_quant import quantize, smooth
from wan_animate.engine.accel.processors import sdpa_kernel

from .harness import Report, cosine, median, relative_error, time_calls

HEADS, DIM = 40, 128
REFERENCE_QUERIES, REFERENCE_HEADS = 4096, 4


def structured_qkv(tokens: int, heads: int, dim: int, generator: torch.Generator, device="cpu",
                   gain: float = 2.0, rank: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(1, tokens, heads, dim) bf16 q, k, v with real activations' structure (see the module docstring).
    `gain` scales the shared signal: 2.0 gives rows whose largest probability is ~0.5 on average."""
    def randn(*shape):
        return torch.randn(*shape, generator=generator, device=device)
    position = torch.arange(tokens, device=device, dtype=torch.float32)[:, None] / tokens
    freqs = torch.rand(heads, rank // 2, generator=generator, device=device) * 60 + 1
    phase = 2 * math.pi * position[None] * freqs[:, None, :]  # (H, S, rank / 2)
    features = torch.cat([phase.cos(), phase.sin()], -1)  # (H, S, rank)
    signal = torch.einsum("hsr,hrd->shd", features, randn(heads, rank, dim) * (2 * gain / math.sqrt(rank)))[None]
    q = signal + 0.5 * randn(1, tokens, heads, dim)
    k = signal + 0.5 * randn(1, tokens, heads, dim) + 4.0 * randn(1, 1, heads, dim)
    values = torch.einsum("hsr,hrd->shd", features, randn(heads, rank, dim) / math.sqrt(rank))[None]
    v = values + 0.5 * randn(1, tokens, heads, dim) + randn(1, 1, heads, dim)
    return q.bfloat16(), k.bfloat16(), v.bfloat16()


def random_qkv(tokens: int, heads: int, dim: int, generator: torch.Generator, device="cpu"):
    q, k, v = (torch.randn(1, tokens, heads, dim, generator=generator, device=device, dtype=torch.bfloat16)
               for _ in "qkv")
    return q, k + 0.5 * torch.randn(1, 1, heads, dim, generator=generator, device=device, dtype=torch.bfloat16), v


def sdpa(backend):
    from torch.nn.attention import sdpa_kernel

    def run(q, k, v):
        with sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    return run


def reference(q, k, v) -> torch.Tensor:
    """fp32 attention of the first REFERENCE_QUERIES queries of the first REFERENCE_HEADS heads."""
    from torch.nn.attention import SDPBackend
    rows, heads = slice(0, REFERENCE_QUERIES), slice(0, REFERENCE_HEADS)
    return sdpa(SDPBackend.MATH)(q[:, rows, heads].float(), k[:, :, heads].float(), v[:, :, heads].float())


def accuracy(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    part = out[:, :REFERENCE_QUERIES, :REFERENCE_HEADS].float()
    return relative_error(part, ref), cosine(part, ref)


def fp8_kernel_only(pre, buf, tokens, warps, stages, q, k, v):
    fp8_attention.launch(pre, buf, tokens, warps, stages, False)
    return buf


def int8_kernel_only(pre, buf, tokens, pv, warps, stages, block_n, q, k, v):
    int8_attention.launch(pre, buf, tokens, pv, warps, stages, block_n)
    return buf


def cudnn_kernel_only(pre, q, k, v):
    return cudnn_fp8_attention.fp8_sdpa(*pre, DIM ** -0.5)


def fa3_call(q, k, v, **descales):
    out = fa3_attention.flash_attn_interface.flash_attn_func(q, k, v, **descales)
    return out[0] if isinstance(out, tuple) else out


def bench(fn, device: str = "cuda") -> float:
    """Milliseconds per call: triton's do_bench median on a GPU, the median of 3 timed calls on the CPU."""
    if device == "cpu":
        return 1000 * median(time_calls(fn, device, warmup=1, repeats=3)[0])
    import triton.testing
    return triton.testing.do_bench(fn, warmup=50, rep=600, return_mode="median")


SOL_BLOCK = 64  # Sol-Attn's block of tokens
LOG2E = 1.4426950408889634


def block_means(x: torch.Tensor) -> torch.Tensor:
    """(B, S, H, D) -> (B, S / 64, H, D) means over whole blocks of 64 tokens (a ragged tail block is left out)."""
    b, s, h, d = x.shape
    blocks = s // SOL_BLOCK
    return x[:, :blocks * SOL_BLOCK].float().reshape(b, blocks, SOL_BLOCK, h, d).mean(2)


def exact_block_fraction(q: torch.Tensor, k: torch.Tensor, tau: float) -> float:
    """Fraction of (query block, key block) pairs that Sol-Attn's threshold routing computes exactly: a key block is
    exact for a query block when the query centroid's score against the key block's centred mean clears `tau`
    standard deviations of that score over the key blocks (the spread of the centred key means, per channel); the
    block itself and its neighbours always are. The rule of comfy-kitchen's eager reference, restated to count."""
    scale = q.shape[-1] ** -0.5 * LOG2E
    centroid = block_means(q)  # (B, N, H, D)
    keys = block_means(k)
    keys = keys - keys.mean(1, keepdim=True)
    spread = keys.pow(2).mean(1)  # (B, H, D)
    score = torch.einsum("bnhd,bmhd->bhnm", centroid, keys) * scale
    threshold = tau * torch.sqrt((centroid.pow(2) * spread[:, None]).sum(-1) * scale ** 2 + 1e-6)  # (B, N, H)
    exact = score > threshold.permute(0, 2, 1)[..., None]
    n = score.shape[-1]
    index = torch.arange(n, device=score.device)
    exact |= ((index[None] - index[:, None]).abs() <= 1)
    return exact.float().mean().item()


def sparse_kernels(taus: list[float]) -> dict:
    """attention="sparse" as the engine runs it (SparseAttention; every sequence length sparse), per tau."""
    return {f"sparse sol_attn tau={tau:g}": sparse_attention.SparseAttention(
        sparse_attention.SparseSettings(tau=tau, min_tokens=0), sdpa_kernel) for tau in taus}


def kernels_for(q, k, v, tokens: int, configs: list[tuple[int, int, int]]) -> dict:
    """name -> (callable(q, k, v), whether its output is the attention itself (accuracy measurable))."""
    from torch.nn.attention import SDPBackend
    kernels = {"sdpa cudnn bf16": (sdpa(SDPBackend.CUDNN_ATTENTION), True),
               "sdpa flash bf16": (sdpa(SDPBackend.FLASH_ATTENTION), True)}
    buf = torch.empty_like(q)
    for pv in ("fp16", "fp8"):
        name = f"int8 QK {pv} PV"
        call = partial(int8_attention.int8_attention, pv=pv)
        kernels[f"{name} compiled quantisation"] = (torch.compile(call, dynamic=False), True)
        pre = int8_attention.quantize_qkv(q, k, v, DIM ** -0.5, pv)
        kernels[f"{name} kernel only, tuned launch"] = (
            partial(int8_kernel_only, pre, buf, tokens, pv, None, 3, int8_attention.BLOCK_N), False)
    for warps, stages, block_n in configs:
        pre = int8_attention.quantize_qkv(q, k, v, DIM ** -0.5, "fp16", block_n)
        kernels[f"int8 QK fp16 PV kernel only w{warps} s{stages} n{block_n}"] = (
            partial(int8_kernel_only, pre, buf, tokens, "fp16", warps, stages, block_n), False)
    kernels["triton fp8 incl. eager quantisation"] = (fp8_attention.fp8_attention, True)
    if cudnn_fp8_attention.unavailable_reason("cuda") is None:
        q8, dq = quantize(q)
        k8, dk = quantize(smooth(k)[0])
        v8, dv = quantize(smooth(v)[0])
        kernels["cudnn fp8 kernel only"] = (partial(cudnn_kernel_only, (q8, k8, v8, dq, dk, dv, 1.0 / dv)), False)
        kernels["cudnn fp8 compiled quantisation"] = (torch.compile(cudnn_fp8_attention.cudnn_fp8_attention,
                                                                    dynamic=False), True)
    if fa3_attention.unavailable_reason("cuda") is None:
        kernels["fa3 bf16"] = (fa3_call, True)
        kernels["fa3 fp8 compiled quantisation"] = (torch.compile(fa3_attention.fa3_fp8_attention, dynamic=False),
                                                     True)
    return kernels


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", default="32760,75600")
    p.add_argument("--heads", type=int, default=HEADS, help="attention heads (the model's 40; fewer on the CPU)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--sparse-taus", default="0.5,1,2", help="Sol-Attn thresholds of the sparse rows ('' for none)")
    p.add_argument("--configs", default="",
                   help="num_warps:num_stages:block_n variants of the int8 fp16-P·V kernel (kernel-only rows), e.g. 8:3:64")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    configs = [tuple(int(x) for x in c.split(":")) for c in args.configs.split(",") if c]
    taus = [float(t) for t in args.sparse_taus.split(",") if t]
    device, heads = args.device, args.heads
    report = Report("self-attention kernels", args.out, device, vars(args))
    reasons = [sparse_attention.unavailable_reason(device) if device == "cuda" else None]
    if device == "cuda":
        reasons += [cudnn_fp8_attention.unavailable_reason("cuda"), fa3_attention.unavailable_reason("cuda")]
    for reason in reasons:
        if reason:
            report.note(reason)
    baseline = "sdpa cudnn bf16" if device == "cuda" else "sdpa bf16"
    for tokens in (int(t) for t in args.tokens.split(",")):
        g = torch.Generator(device).manual_seed(tokens)
        inputs = {"random": random_qkv(tokens, heads, DIM, g, device),
                  "structured": structured_qkv(tokens, heads, DIM, g, device)}
        refs = {kind: reference(*qkv) for kind, qkv in inputs.items()}
        flops = 4 * tokens * tokens * heads * DIM
        kernels = kernels_for(*inputs["random"], tokens, configs) if device == "cuda" else \
            {baseline: (sdpa_kernel, True)}
        if reasons[0] is None:
            kernels.update({name: (fn, True) for name, fn in sparse_kernels(taus).items()})
        for name, (fn, exact) in kernels.items():
            row = {"tokens": tokens, "kernel": name}
            try:
                if exact:
                    for kind, qkv in inputs.items():
                        row[f"rel_err_{kind}"], row[f"cosine_{kind}"] = (round(x, 5) for x in accuracy(fn(*qkv), refs[kind]))
                if isinstance(fn, sparse_attention.SparseAttention):
                    for kind, (q, k, _) in inputs.items():
                        row[f"exact_blocks_{kind}"] = round(exact_block_fraction(q, k, fn.settings.tau), 4)
                    row["ms_structured"] = round(bench(partial(fn, *inputs["structured"]), device), 2)
                fn(*inputs["random"])
                row["ms"] = round(bench(partial(fn, *inputs["random"]), device), 2)
            except Exception as error:  # noqa: BLE001  # a kernel config that does not compile/launch on this GPU
                row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
            if "ms" in row:
                row["tflops"] = round(flops / row["ms"] / 1e9, 1)
            print(row, flush=True)
            report.add(**row)
        sdpa_ms = next(r["ms"] for r in report.rows if r["tokens"] == tokens and r["kernel"] == baseline)
        for r in report.rows:
            if r["tokens"] == tokens and "ms" in r and ("compiled" in r["kernel"] or "sparse" in r["kernel"]):
                report.ratio(f"{tokens} {r['kernel']} vs {baseline}", sdpa_ms / r["ms"])
    report.print_table(["tokens", "kernel", "ms", "ms_structured", "tflops", "rel_err_random", "rel_err_structured",
                        "cosine_structured", "exact_blocks_random", "exact_blocks_structured", "error"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
