"""fp8 operands for attention kernels that take scalar or per-head descales (cuDNN, FlashAttention-3), and the
one-call probe that tells whether such a kernel runs on a GPU.

Smoothing (exact in real arithmetic): K minus its mean over the tokens shifts every score of a query by the same
amount, which softmax ignores; V minus its mean over the tokens changes the output by exactly that mean, because
softmax rows sum to 1 (added back afterwards). Both take a shared component out of the e4m3 range.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from wan_loader.dtypes import E4M3, E4M3_MAX

log = logging.getLogger(__name__)


def smooth(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S, H, D) -> x minus its mean over the tokens, and that (B, 1, H, D) mean, in fp32."""
    x = x.float()
    mean = x.mean(dim=1, keepdim=True)
    return x - mean, mean


def quantize(x: torch.Tensor, per_head: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S, H, D) -> contiguous e4m3 values and the fp32 descale (amax / 448): (1, 1, 1, 1) for the whole tensor,
    or (B, H) with `per_head`."""
    x = x.float()
    if per_head:
        amax = x.abs().amax(dim=(1, 3)).clamp(min=1e-12)
        return (x * (E4M3_MAX / amax)[:, None, :, None]).to(E4M3).contiguous(), amax / E4M3_MAX
    amax = x.abs().amax().clamp(min=1e-12)
    return (x * (E4M3_MAX / amax)).to(E4M3).contiguous(), (amax / E4M3_MAX).reshape(1, 1, 1, 1)


def heads_first_padded(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """(B, S, H, D) -> (B, H, S zero-padded to a multiple of `multiple`, D): the layout of the Triton kernels."""
    x = x.transpose(1, 2)
    pad = -x.shape[2] % multiple
    return torch.nn.functional.pad(x, (0, 0, 0, pad)) if pad else x


def device_index(device: torch.device) -> int:
    """A CUDA device's index; a bare 'cuda' names the current device."""
    return device.index if device.index is not None else torch.cuda.current_device()


def cuda_index(device=None) -> tuple[int | None, str | None]:
    """(index of the CUDA GPU that `device` names (None: the current one), None), or (None, why it is none here)."""
    if not torch.cuda.is_available():
        return None, "no CUDA GPU"
    device = torch.device(device or "cuda")
    if device.type != "cuda":
        return None, f"{device} is not a CUDA GPU"
    return device_index(device), None


def probe(kernel: Callable, device: torch.device, results: dict[int, str | None], what: str) -> str | None:
    """None when `kernel` runs a tiny (1, 128, 1, 128) attention on `device`, else why not; once per GPU (`results`
    caches it; a failure logs one line). Library builds and versions differ in what they support, and only a call
    tells."""
    index = device_index(device)
    if index not in results:
        try:
            with torch.cuda.device(index):
                q = torch.zeros(1, 128, 1, 128, device="cuda", dtype=torch.bfloat16)
                kernel(q, q, q)
                torch.cuda.synchronize()
            results[index] = None
        except Exception as error:  # noqa: BLE001  # any build/launch failure means: use another kernel
            results[index] = f"{what}: {str(error).splitlines()[0][:200] if str(error) else type(error).__name__}"
            log.warning("cuda:%d: %s; another kernel is used", index, results[index])
    return results[index]
