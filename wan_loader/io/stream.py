"""Stream converted tensors from the files into a module built on the meta device: one copy, on the target device.

For a GPU, raw tensor bytes are read by a deep queue of parallel positional reads (by default 16 threads, 32 MB pieces)
into a ring of page-aligned pinned staging buffers and copied asynchronously (non_blocking) into parameters preallocated
on the GPU, so disk/page-cache reads, host->device copies and on-device casts overlap. Each piece comes from the page
cache when it is there and with O_DIRECT past it when it is not (direct_io.py: a cold file reads faster that way, a warm
one stays a memory copy). A tensor that needs no conversion goes straight into its parameter's memory; one that needs a
rename-with-transform, a cast or fp8 quantization is assembled from its sources on the device. Host memory stays at the
staging ring (about 0.5 GB) whatever the model size. A CPU target is read buffered straight into its parameters. On any
error every parameter already placed is released, so nothing is left half-loaded on the device.
"""
from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..dtypes import fp32_keys, is_fp8
from ..errors import ShapeMismatchError, WanLoaderError
from ..keymaps import Plan, meta_shapes
from ..fp8 import FP8Linear, dequantize, quantize_fp8
from ..int8_convrot import Int8Linear, convrot_group, dequantize_int8, read_config
from .direct_io import ALIGN, aligned_empty, read_range
from .readers import SafetensorsFile, TensorSource, tensor_bytes

CHUNK_BYTES = int(os.environ.get("WAN_LOADER_CHUNK_MB", "32")) * 1024 * 1024
STAGING_BUFFERS = int(os.environ.get("WAN_LOADER_BUFFERS", "16"))
READ_THREADS = int(os.environ.get("WAN_LOADER_THREADS", "16"))  # cold O_DIRECT reads want a deep queue


@dataclass
class LoadStats:
    tensors: int = 0
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def gb_per_s(self) -> float:
        return self.bytes_read / max(self.seconds, 1e-9) / 1e9


class Stager:
    """Reads byte ranges of safetensors files into device tensors, overlapping reads and host->device copies."""

    def __init__(self, device: torch.device, chunk_bytes: int = CHUNK_BYTES, buffers: int = STAGING_BUFFERS,
                 threads: int = READ_THREADS, staged: bool | None = None):
        self.device = device
        self.cuda = device.type == "cuda"
        self.staged = self.cuda if staged is None else staged  # CPU targets read straight into the parameter
        self.chunk = chunk_bytes
        self.nbuf = max(2, buffers)
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="wan_loader_read")
        self.pending: deque = deque()
        self.buffers = [self._buffer() for _ in range(self.nbuf)] if self.staged else []
        self.events: list = [None] * self.nbuf
        self.slot = 0
        self.bytes = 0          # read through byte ranges (safetensors)
        self.extra_bytes = 0    # read through torch.load'ed (memory-mapped) tensors

    def _buffer(self) -> torch.Tensor:
        size = self.chunk + 2 * ALIGN  # room for a piece's page-aligned superset (O_DIRECT)
        if self.cuda:
            try:
                return aligned_empty(size, pin=True)
            except RuntimeError:  # pinned memory unavailable (container limits): slower, still correct
                pass
        return aligned_empty(size)

    def close(self) -> None:
        self.drain()
        self.pool.shutdown(wait=True)
        self.buffers = []

    def read(self, file: SafetensorsFile, start: int, end: int, dest: torch.Tensor,
             then: Callable[[], None] | None = None) -> None:
        """Queue the bytes [start, end) of `file` into contiguous `dest`; call `then` once they are enqueued."""
        flat = dest.reshape(-1).view(torch.uint8)
        n = end - start
        if n == 0:
            if then:
                then()
            return
        offset = 0
        while offset < n:
            size = min(self.chunk, n - offset)
            last = offset + size == n
            self._piece(file, start + offset, size, flat[offset:offset + size], then if last else None)
            offset += size
        self.bytes += n

    def _piece(self, file, pos, size, dest_slice, then):
        if len(self.pending) >= self.nbuf:
            self._complete(self.pending.popleft())
        if self.staged:
            slot = self.slot
            self.slot = (self.slot + 1) % self.nbuf
            if self.events[slot] is not None:
                self.events[slot].synchronize()
            fut = self.pool.submit(read_range, file, tensor_bytes(self.buffers[slot]), pos, size)
            self.pending.append((fut, slot, size, dest_slice, then))
        else:
            fut = self.pool.submit(file.read_into, tensor_bytes(dest_slice), pos)
            self.pending.append((fut, None, size, dest_slice, then))

    def _complete(self, item) -> None:
        fut, slot, size, dest_slice, then = item
        at = fut.result()  # where the piece starts in its staging buffer
        if slot is not None:
            dest_slice.copy_(self.buffers[slot][at:at + size], non_blocking=self.cuda)
            if self.cuda:
                ev = torch.cuda.Event()
                ev.record()
                self.events[slot] = ev
        if then:
            then()

    def drain(self) -> None:
        while self.pending:
            self._complete(self.pending.popleft())


def _slots(model: nn.Module) -> dict[str, tuple]:
    """State-dict key -> (owning module, attribute, is_parameter, aliases). Tied weights (one tensor under several
    names, e.g. umT5's shared / encoder.embed_tokens) share one alias list of (module, attribute, is_parameter)."""
    out, groups = {}, {}
    for mname, mod in model.named_modules(remove_duplicate=False):
        pre = f"{mname}." if mname else ""
        entries = [(n, p, True) for n, p in mod._parameters.items() if p is not None]
        entries += [(n, b, False) for n, b in mod._buffers.items()
                    if b is not None and n not in mod._non_persistent_buffers_set]
        for name, t, is_param in entries:
            group = groups.setdefault(id(t), [])
            if not any(m is mod and a == name for m, a, _ in group):
                group.append((mod, name, is_param))
            out[pre + name] = (mod, name, is_param, group)
    return out


def _place(slot, tensor: torch.Tensor) -> None:
    value = None
    for mod, name, is_param in slot[3]:
        if is_param:
            value = value if isinstance(value, nn.Parameter) else nn.Parameter(tensor, requires_grad=False)
            mod._parameters[name] = value
        else:
            mod._buffers[name] = tensor


def release(model: nn.Module) -> None:
    """Drop every parameter/buffer to the meta device (frees device memory of a failed or discarded load)."""
    for mod in model.modules():
        for name, p in list(mod._parameters.items()):
            if p is not None:
                mod._parameters[name] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device="meta"),
                                                     requires_grad=False)
        for name, b in list(mod._buffers.items()):
            if b is not None:
                mod._buffers[name] = torch.empty(b.shape, dtype=b.dtype, device="meta")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_plan(model: nn.Module, plan: Plan, view: TensorSource, component: str, ignorable=lambda k: False) -> None:
    """Every model weight has a recipe with the right shape, and the file has no weights the model lacks."""
    where = view.describe()
    slots = _slots(model)
    quant_scales = {k for k, (m, n, *_) in slots.items() if isinstance(m, (FP8Linear, Int8Linear)) and n == "scale"}
    missing_src = sorted({k for r in plan.values() for k in r.sources if k not in view})
    if missing_src:
        raise ShapeMismatchError(f"{where}: the {component} weights lack {len(missing_src)} tensor(s), e.g. "
                                 f"{missing_src[:3]}. The file is incomplete or another model.")
    missing = sorted(k for k in slots if k not in plan and k not in quant_scales)
    # tied weights (e.g. umT5's shared/embed_tokens) are satisfied by any alias
    planned_groups = {id(slots[k][3]) for k in plan if k in slots}
    missing = [k for k in missing if id(slots[k][3]) not in planned_groups]
    used = {k for r in plan.values() for k in r.sources}
    unexpected = sorted(k for k in view.keys() if k not in used and not ignorable(k))
    extra_targets = sorted(k for k in plan if k not in slots)
    shapes = meta_shapes(plan, view)
    wrong = [f"{k}: file {shapes[k]} vs model {tuple(getattr(slots[k][0], slots[k][1]).shape)}"
             for k in plan if k in slots and shapes[k] != tuple(getattr(slots[k][0], slots[k][1]).shape)]
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es), e.g. " + "; ".join(wrong[:3]))
    if missing:
        problems.append(f"{len(missing)} weight(s) missing from the file, e.g. {missing[:3]}")
    if extra_targets or unexpected:
        problems.append(f"{len(extra_targets) + len(unexpected)} weight(s) the model does not have, e.g. "
                        f"{(extra_targets + unexpected)[:3]}")
    if problems:
        raise ShapeMismatchError(
            f"{where}: the {component} weights do not fit the model built from its config: " + "; ".join(problems) +
            ". The config belongs to another model size, or the file is another model or damaged: check it with "
            "`python -m wan_loader inspect`.")


def load_into(model: nn.Module, plan: Plan, view: TensorSource, device: torch.device | str,
              weight_dtype: torch.dtype, compute_dtype: torch.dtype, per_channel: bool = False,
              component: str = "model", ignorable=lambda k: False, progress=None) -> LoadStats:
    """Fill the meta-device `model` from `view` through `plan`, on `device`. See the module docstring.

    progress(done_bytes, total_bytes) is called about every 256 MB read."""
    device = torch.device(device)
    if device.type != "cuda":
        return _load_into(model, plan, view, device, weight_dtype, compute_dtype, per_channel, component, ignorable,
                          progress)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    with torch.cuda.device(device):  # copies, events and casts all on that GPU's current stream
        return _load_into(model, plan, view, device, weight_dtype, compute_dtype, per_channel, component, ignorable,
                          progress)


def _load_into(model, plan, view, device, weight_dtype, compute_dtype, per_channel, component, ignorable,
               progress) -> LoadStats:
    check_plan(model, plan, view, component, ignorable)
    slots = _slots(model)
    keep32 = fp32_keys(model, weight_dtype)
    if device.type == "cuda":
        check_device_memory(model, keep32, weight_dtype, compute_dtype, device, view, component)
    total = sum(view.nbytes(k) for r in plan.values() for k in r.sources)
    reported = 0
    scale_of = getattr(view, "scale", lambda k: None)
    t0 = time.perf_counter()
    stats = LoadStats()
    stager = Stager(device)
    done_slots: set = set()

    def order(item):
        recipe = item[1]
        if not recipe.sources:
            return ("", 0)
        br = view.byte_range(recipe.sources[0])
        return (br[0].path, br[1]) if br else (view.where(recipe.sources[0]), 0)

    try:
        for target, recipe in sorted(plan.items(), key=order):
            if target not in slots:
                continue
            slot = slots[target]
            if id(slot[3]) in done_slots:
                continue
            done_slots.add(id(slot[3]))
            mod, name = slot[0], slot[1]
            current = getattr(mod, name)
            fp8_target = isinstance(mod, FP8Linear) and name == "weight"
            if fp8_target or not current.dtype.is_floating_point:  # an Int8Linear's weight stays int8
                final = current.dtype
            elif target in keep32:
                final = torch.float32
            else:
                final = compute_dtype if is_fp8(weight_dtype) else weight_dtype
            stats.tensors += 1
            _load_one(stager, view, recipe, slot, current, final, fp8_target, per_channel, device, scale_of)
            done = stager.bytes + stager.extra_bytes
            if progress is not None and done - reported >= 256 * 1024 * 1024:
                reported = done
                progress(min(done, total), total)
        stager.drain()
        for mod in model.modules():  # non-persistent buffers (rope tables, blur kernels) were built on the CPU
            for name, b in list(mod._buffers.items()):
                if b is not None and b.device.type != "meta":
                    mod._buffers[name] = b.to(device)
        left = [n for n, p in model.named_parameters() if p.device.type == "meta"]
        if left:
            raise WanLoaderError(f"{view.describe()}: {len(left)} {component} weight(s) were not loaded, e.g. "
                                 f"{left[:3]}. This is a bug in the key map: please report it.")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if progress is not None:
            progress(total, total)
    except BaseException:
        stager.pool.shutdown(wait=True, cancel_futures=True)
        stager.pending.clear()
        release(model)
        raise
    stager.close()
    stats.bytes_read = stager.bytes + stager.extra_bytes
    stats.seconds = time.perf_counter() - t0
    return stats


def check_device_memory(model, keep32, weight_dtype, compute_dtype, device, view, component) -> None:
    """Refuse up front when the weights cannot fit in the device's free memory (instead of failing half-way)."""
    need, seen = 0, set()
    for name, p in model.state_dict(keep_vars=True).items():
        if isinstance(p, torch.Tensor) and p.device.type == "meta" and id(p) not in seen:
            seen.add(id(p))
            if is_fp8(p.dtype) or not p.dtype.is_floating_point:
                size = p.dtype.itemsize
            elif name in keep32:
                size = 4
            else:
                size = (compute_dtype if is_fp8(weight_dtype) else weight_dtype).itemsize
            need += p.numel() * size
    free, _ = torch.cuda.mem_get_info(device)
    if need > free:
        raise WanLoaderError(
            f"{view.describe()}: the {component} needs {need / 1e9:.1f} GB on {device} but only {free / 1e9:.1f} GB "
            "is free. Load it with weight_dtype='fp8_e4m3fn' (half the memory), free the GPU (other models), or "
            "load to the CPU and offload.")


def _load_one(stager: Stager, view, recipe, slot, current, final, fp8_target, per_channel, device, scale_of):
    srcs = recipe.sources
    direct = (len(srcs) == 1 and recipe.transform is None and view.byte_range(srcs[0]) is not None
              and view.dtype(srcs[0]) == final)
    if direct:  # raw bytes straight into the parameter (an fp8 file keeps its own scale: no dequant round trip)
        dest = torch.empty(current.shape, dtype=final, device=device)
        file, start, end = view.byte_range(srcs[0])
        stager.read(file, start, end, dest)
        _place(slot, dest)
        if fp8_target:
            scale = scale_of(srcs[0])
            _place_scale(slot, scale if scale is not None else torch.ones(()), device)
        elif isinstance(slot[0], Int8Linear) and slot[1] == "weight":  # kept int8: its scale and ConvRot group
            _place_scale(slot, scale_of(srcs[0]), device)
            slot[0].group_size = convrot_group(read_config(view.quant_marker(srcs[0])))
        return
    # Assemble on the device: fetch sources raw, then transform / dequantize / cast / quantize.
    fetched: dict[str, torch.Tensor] = {}
    pending = len(srcs)

    def finish():
        values = {}
        scales = []
        for k in srcs:
            t = fetched[k]
            s = scale_of(k)
            scales.append(s if t.dtype == final else None)  # a scale is only reusable for the same fp8 format
            if is_fp8(t.dtype):
                values[k] = dequantize(t, s, torch.float32)
            elif t.dtype == torch.int8 and s is not None:  # ComfyUI int8 (ConvRot) weights: read exactly
                values[k] = dequantize_int8(t, s, read_config(view.quant_marker(k)))
            else:
                values[k] = t
        value = recipe.build(values.__getitem__)
        if fp8_target:
            q, s = quantize_fp8(value, per_channel=per_channel, dtype=final, scale=_shared_scale(scales, value))
            _place(slot, q.contiguous())
            _place_scale(slot, s, device)
        else:
            _place(slot, value.to(final).contiguous())

    def arrived(k):
        nonlocal pending
        pending -= 1
        if pending == 0:
            finish()

    if not srcs:
        finish()
        return
    for k in srcs:
        br = view.byte_range(k)
        if br is not None:
            t = torch.empty(view.shape(k), dtype=view.dtype(k), device=device)
            fetched[k] = t
            stager.read(br[0], br[1], br[2], t, then=lambda k=k: arrived(k))
        else:
            fetched[k] = view.get(k).to(device)
            stager.extra_bytes += view.nbytes(k)
            arrived(k)


def _shared_scale(scales: list, value: torch.Tensor) -> torch.Tensor | None:
    """The one scale every source was stored with, when it fits the result (a scalar, or one per output row).

    Re-quantizing with it reproduces the sources' fp8 values exactly (e.g. a fused k|v weight split in two)."""
    if not scales or any(s is None for s in scales):
        return None
    first = scales[0].flatten()
    if any(not torch.equal(s.flatten(), first) for s in scales):
        return None
    if first.numel() == 1:
        return first.reshape(())
    return first if first.numel() == value.shape[0] else None


def _place_scale(slot, scale: torch.Tensor, device) -> None:
    s = scale.to(device=device, dtype=torch.float32)
    s = s.reshape(()) if s.numel() == 1 else s.reshape(-1)
    slot[0]._parameters["scale"] = nn.Parameter(s, requires_grad=False)
