"""int8 GEMMs for int8 weights kept int8 (wan_loader.int8_convrot.Int8Linear): comfy-kitchen's `int8_linear`.

Comfy-Org's int8 ConvRot repack of Wan-Animate-2 stores each block Linear as int8 rows with one fp32 scale per row,
rotated group-wise by a Hadamard matrix. comfy-kitchen (ComfyUI's kernel library) multiplies with such a weight as
ComfyUI itself does: it rotates the activations by the same Hadamard groups, quantises them to int8 with one scale
per token (absolute max / 127), runs an int8 tensor-core GEMM (CUTLASS/cuBLASLt in its CUDA backend, Triton in its
Triton backend; compute capability >= 7.5) and scales the int32 result back, bias in the epilogue. The activation
rounding is the only difference from the dequantised product: per token, at most (absolute max of the rotated
activations / 254) times the L1 norm of each rotated weight row (tests check that bound).

Its registry picks a backend per call; on the CPU that is its eager backend (torch's int8 matmul: right answers,
no speed), which is why "auto" keeps weights int8 only on GPUs where a native backend passes a one-call probe
(selection.device_facts). comfy-kitchen is imported when first needed: its import takes seconds.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from wan_loader.int8_convrot import Int8Linear, quantize_int8

from .attention_quant import probe
from .kitchen import KITCHEN_REQUIREMENT, kitchen, kitchen_installed

INT8_LINEAR_CAPABILITY = (7, 5)  # int8 tensor cores (Turing and later): comfy-kitchen's int8 GEMMs need them
NATIVE_BACKENDS = ("cuda", "triton")  # comfy-kitchen's backends with real int8 kernels (eager: a torch fallback)
INSTALL_HINT = (f"pip install '{KITCHEN_REQUIREMENT}' and run on a CUDA GPU of compute capability >= "
                f"{INT8_LINEAR_CAPABILITY[0]}.{INT8_LINEAR_CAPABILITY[1]} (Turing or newer)")
_PROBE: dict[int, str | None] = {}  # per GPU


@dataclass(frozen=True)
class KitchenInt8Matmul:
    """An Int8Linear matmul through comfy-kitchen's `int8_linear` (the backend its registry picks for the tensors)."""

    def __call__(self, x, weight, scale, bias, group_size, compute_dtype):
        out = kitchen().int8_linear(x.to(compute_dtype), weight, scale,
                                    None if bias is None else bias.to(compute_dtype), compute_dtype,
                                    convrot=group_size > 0, convrot_groupsize=group_size or 256)
        return out.to(x.dtype)


def backend_for(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, group_size: int) -> str:
    """The comfy-kitchen backend that would run `int8_linear` on these tensors."""
    return kitchen().registry.get_capable_backend("int8_linear", {
        "x": x, "weight": weight, "weight_scale": scale, "bias": None, "out_dtype": x.dtype,
        "convrot": group_size > 0, "convrot_groupsize": group_size})


def _probe_call(q, k, v) -> None:
    """One 256 x 256 ConvRot layer through the kernel on q's GPU, checked against the dequantised product (a build
    that runs but computes wrongly, e.g. comfy-kitchen's CUDA backend under an older CUDA torch, fails too)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=generator)
    w = torch.randn(256, 256, generator=generator) / 16
    weight, scale = quantize_int8(w, 256)
    x, weight, scale = x.to(q.device, torch.bfloat16), weight.to(q.device), scale.reshape(-1).to(q.device)
    backend = backend_for(x, weight, scale, 256)
    if backend not in NATIVE_BACKENDS:
        raise RuntimeError(f"only comfy-kitchen's {backend} fallback runs int8_linear here ({native_status()})")
    layer = Int8Linear(256, 256, bias=False, device=q.device, matmul=KitchenInt8Matmul())
    layer.weight.data, layer.scale.data, layer.group_size = weight, scale, 256
    got, want = layer(x).float(), (x.float() @ w.to(q.device).T)
    error = ((got - want).norm() / want.norm()).item()
    if not error < 0.05:  # activation rounding gives ~1 %
        raise RuntimeError(f"comfy-kitchen's {backend} int8_linear is off by {error:.1%} relative error")


def native_status() -> str:
    """Why comfy-kitchen's native backends are not serving, as its registry reports them (ComfyUI disables the CUDA
    backend under a torch built for CUDA < 13, and the Triton backend unless started with --enable-triton-backend)."""
    backends = kitchen().list_backends()
    return "; ".join(f"{name} backend " + ("disabled" if info["disabled"] else info["unavailable_reason"] or
                                          "available but not capable")
                     for name, info in backends.items() if name in NATIVE_BACKENDS)


def unavailable_reason(device: torch.device) -> str | None:
    """Why comfy-kitchen's int8 GEMMs do not run on CUDA `device` (None when they do); probed once per GPU."""
    if not kitchen_installed():
        return "comfy-kitchen is not installed"
    return probe(_probe_call, device, _PROBE, "comfy-kitchen's int8_linear does not run here")


def int8_layers(model: torch.nn.Module) -> list[Int8Linear]:
    return [m for m in model.modules() if isinstance(m, Int8Linear)]
