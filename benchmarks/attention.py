"""Self-attention kernels at the Wan step's sizes: torch SDPA (cuDNN, FLASH) vs the Triton and cuDNN fp8 kernels.

    python -m benchmarks.attention --out benchmarks/results/attention_h100.json

40 heads x 128, one sequence of 32760 (480p) / 75600 (720p) tokens, random q/k/v (k with a shared offset, as
real keys have). Reports ms, TFLOP/s (4 * S^2 * heads * dim) and cosine / relative error vs an fp32 reference
computed over 4 heads.
"""
from __future__ import annotations

import argparse
import sys
from functools import partial

import torch

from wan_animate.engine.accel import cudnn_fp8_attention, fa3_attention, fp8_attention
from wan_animate.engine.accel.attention_quant import quantize, smooth

from .harness import Report, cosine, relative_error


def sdpa(backend):
    from torch.nn.attention import sdpa_kernel

    def run(q, k, v):
        with sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    return run


def kernel_only(pre, buf, tokens, warps, stages, fast_exp, q, k, v):
    """The fp8 kernel on operands quantised beforehand (what a compiled block leaves to it)."""
    fp8_attention.launch(pre, buf, tokens, warps, stages, fast_exp)
    return buf


def cudnn_kernel_only(pre, q, k, v):
    """cuDNN's fp8 kernel on operands quantised beforehand."""
    return cudnn_fp8_attention.fp8_sdpa(*pre, 128 ** -0.5)


def fa3_call(q, k, v, **descales):
    out = fa3_attention.flash_attn_interface.flash_attn_func(q, k, v, **descales)
    return out[0] if isinstance(out, tuple) else out


def fa3_kernel_only(pre, q, k, v):
    """FlashAttention-3's fp8 kernel on operands quantised beforehand (per head)."""
    q8, dq, k8, dk, v8, dv = pre
    return fa3_call(q8, k8, v8, q_descale=dq, k_descale=dk, v_descale=dv)


def bench(fn, reps: int = 10) -> float:
    import triton.testing
    return triton.testing.do_bench(fn, warmup=50, rep=reps * 60, return_mode="median")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", default="32760,75600")
    p.add_argument("--configs", default="8:3:1,8:3:0,8:4:1,8:2:1",
                   help="num_warps:num_stages:fast_exp variants of the fp8 kernel")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from torch.nn.attention import SDPBackend
    kernels = {"cudnn": sdpa(SDPBackend.CUDNN_ATTENTION), "flash": sdpa(SDPBackend.FLASH_ATTENTION)}
    for cfg in args.configs.split(","):
        w, s, e = (int(x) for x in cfg.split(":"))
        kernels[f"fp8 kernel only w{w} s{s} fast_exp={e}"] = (w, s, bool(e))
    report = Report("self-attention kernels", args.out, "cuda", vars(args))
    for tokens in (int(t) for t in args.tokens.split(",")):
        g = torch.Generator("cuda").manual_seed(tokens)
        q, k, v = (torch.randn(1, tokens, 40, 128, generator=g, device="cuda", dtype=torch.bfloat16) for _ in "qkv")
        k = k + 0.5 * torch.randn(1, 1, 40, 128, generator=g, device="cuda", dtype=torch.bfloat16)
        rows = slice(0, 4096)  # fp32 reference for 4096 queries x 4 heads (the math kernel holds S x S scores)
        ref = sdpa(SDPBackend.MATH)(q[:, rows, :4].float(), k[:, :, :4].float(), v[:, :, :4].float())
        flops = 4 * tokens * tokens * 40 * 128
        pre = fp8_attention.quantize_qkv(q, k, v, 128 ** -0.5)
        buf = torch.empty_like(q)
        kernels["fp8 incl. eager quantisation"] = fp8_attention.fp8_attention
        reason = cudnn_fp8_attention.unavailable_reason("cuda")
        if reason is None:
            q8, dq = quantize(q)
            k8, dk = quantize(smooth(k)[0])
            v8, dv = quantize(smooth(v)[0])
            kernels["cudnn fp8 kernel only"] = partial(cudnn_kernel_only, (q8, k8, v8, dq, dk, dv, 1.0 / dv))
            kernels["cudnn fp8 incl. eager quantisation"] = cudnn_fp8_attention.cudnn_fp8_attention
            kernels["cudnn fp8 compiled quantisation"] = torch.compile(cudnn_fp8_attention.cudnn_fp8_attention)
        else:
            print(f"cudnn fp8: {reason}", flush=True)
        reason = fa3_attention.unavailable_reason("cuda")
        if reason is None:
            kernels["fa3 bf16"] = fa3_call
            fa3_pre = (*quantize(q, per_head=True), *quantize(smooth(k)[0], per_head=True),
                       *quantize(smooth(v)[0], per_head=True))
            kernels["fa3 fp8 kernel only"] = partial(fa3_kernel_only, fa3_pre)
            kernels["fa3 fp8 incl. eager quantisation"] = fa3_attention.fa3_fp8_attention
            kernels["fa3 fp8 compiled quantisation"] = torch.compile(fa3_attention.fa3_fp8_attention)
        else:
            print(f"fa3: {reason}", flush=True)
        for name, fn in kernels.items():
            if isinstance(fn, tuple):
                fn = partial(kernel_only, pre, buf, tokens, *fn)
            try:
                out = fn(q, k, v)
                ms = bench(partial(fn, q, k, v))
            except Exception as error:  # noqa: BLE001  # a kernel config that does not compile/launch on this GPU
                print(f"{tokens} {name}: failed: {error}", flush=True)
                report.add(tokens=tokens, kernel=name, error=str(error)[:300])
                continue
            row = {"tokens": tokens, "kernel": name, "ms": round(ms, 2), "tflops": round(flops / ms / 1e9, 1)}
            if out.dtype == q.dtype:  # kernel-only rows return raw (scaled fp8) outputs: no accuracy to report
                part = out[:, rows, :4].float()
                row.update(cosine=round(cosine(part, ref), 5), rel_err=round(relative_error(part, ref), 5))
            print(row, flush=True)
            report.add(**row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
