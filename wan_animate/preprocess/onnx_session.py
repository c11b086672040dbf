"""onnxruntime sessions for the preprocessing models: the CUDA provider when it works, the CPU otherwise.

Falling back to the CPU makes preprocessing 20-50x slower, and it happens silently in onnxruntime (a common ComfyUI
complaint: "onnxruntime runs on CPU"). So the fallback is logged ONCE per process with the concrete reason: no CUDA
device, onnxruntime-gpu not installed (or shadowed by the CPU-only wheel), or the CUDA provider failed to load or to
run (library/architecture mismatch). A failure at run time switches that model to the CPU and carries on.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

log = logging.getLogger("wan_animate.preprocess")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

Providers = Sequence["str | tuple[str, dict]"]

_warned: set[str] = set()
_warn_lock = threading.Lock()


def warn_cpu_fallback(reason: str) -> None:
    """Log the CPU fallback once per process and reason."""
    with _warn_lock:
        if reason in _warned:
            return
        _warned.add(reason)
    log.warning("Detection/pose models run on the CPU, which is much slower: %s", reason)


def _cuda_device_count() -> int | None:
    """CUDA devices visible to this process, or None when that can't be told without onnxruntime itself."""
    try:
        import torch
    except ImportError:
        return None
    if torch.version.cuda is None:
        return None  # a CPU-only torch can't tell whether there is a GPU
    try:
        return torch.cuda.device_count()
    except Exception:  # a broken driver counts as no device
        return 0


def cuda_unavailable_reason() -> str | None:
    """Why the CUDA provider can't be used in this process, or None when it should be tried."""
    if _cuda_device_count() == 0:
        return "no CUDA device is visible to this process (no GPU, no driver, or CUDA_VISIBLE_DEVICES hides it)"
    available = ort.get_available_providers()
    if CUDA not in available:
        return (
            f"onnxruntime-gpu is not installed: onnxruntime {ort.__version__} offers only {', '.join(available)}. "
            "Run `pip uninstall -y onnxruntime && pip install onnxruntime-gpu` (the CPU-only wheel shadows the GPU one "
            "when both are installed)"
        )
    return None


def resolve_providers(providers: Providers | str | None) -> tuple[list, bool]:
    """Turn the user's choice into an onnxruntime provider list; the flag says whether CPU fallback should warn.

    None or "auto": CUDA when usable, else CPU with a warning. "cpu": CPU, no warning. "cuda" / "cuda:N": that GPU,
    warning if it can't be used. A list is passed to onnxruntime as is.
    """
    if providers is None or providers == "auto":
        reason = cuda_unavailable_reason()
        if reason is not None:
            warn_cpu_fallback(reason)
            return [CPU], False
        return [(CUDA, {"device_id": 0}), CPU], True
    if isinstance(providers, str):
        name = providers.lower()
        if name == "cpu":
            return [CPU], False
        if name == "cuda" or name.startswith("cuda:"):
            reason = cuda_unavailable_reason()
            if reason is not None:
                warn_cpu_fallback(reason)
                return [CPU], False
            device_id = int(name.partition(":")[2] or 0)
            return [(CUDA, {"device_id": device_id}), CPU], True
        raise ValueError(f"providers={providers!r}: use None/'auto', 'cpu', 'cuda', 'cuda:N' or a list of onnxruntime providers")
    provider_list = list(providers)
    names = [p[0] if isinstance(p, tuple) else p for p in provider_list]
    return provider_list, CUDA in names


def _session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; our own warning explains a CPU fallback
    return options


def create_session(path: str | os.PathLike, providers: Providers | str | None = None) -> ort.InferenceSession:
    """Open an ONNX file (external data is read from next to it) on the chosen providers."""
    provider_list, expect_cuda = resolve_providers(providers)
    try:
        session = ort.InferenceSession(os.fspath(path), sess_options=_session_options(), providers=provider_list)
    except Exception as error:
        if not expect_cuda:
            raise
        session = ort.InferenceSession(os.fspath(path), sess_options=_session_options(), providers=[CPU])
        warn_cpu_fallback(f"the CUDA provider of onnxruntime {ort.__version__} could not be set up: {error}")
        return session
    if expect_cuda and CUDA not in session.get_providers():
        warn_cpu_fallback(
            f"the CUDA provider of onnxruntime {ort.__version__} failed to load (usually CUDA/cuDNN libraries that do "
            "not match this onnxruntime-gpu build; onnxruntime's own error is printed above)"
        )
    return session


class OnnxModel:
    """One model's session plus how to feed it: first input and first output (names never assumed), batch limits.

    A model exported with a static batch dimension (e.g. 1) is fed in chunks of exactly that size, the last one
    padded; a dynamic one in chunks of at most `max_batch`.
    """

    def __init__(self, session: ort.InferenceSession, path: Path | None = None):
        self.session = session
        self.path = path
        first = session.get_inputs()[0]
        self.input_name = first.name
        self.input_shape = list(first.shape)
        self.output_name = session.get_outputs()[0].name
        batch = self.input_shape[0] if self.input_shape else None
        self.static_batch = batch if isinstance(batch, int) and batch > 0 else None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "in-memory session"

    def spatial_size(self, default: tuple[int, int]) -> tuple[int, int]:
        """(height, width) the model takes, from its input shape when static, else `default`."""
        if len(self.input_shape) == 4 and all(isinstance(d, int) and d > 0 for d in self.input_shape[2:]):
            return int(self.input_shape[2]), int(self.input_shape[3])
        return default

    def run(self, batch: np.ndarray, max_batch: int) -> np.ndarray:
        """Run the whole batch through the model in allowed chunk sizes and return the stacked first output."""
        if len(batch) == 0:
            raise ValueError("empty batch")
        chunk = self.static_batch or max(1, max_batch)
        outputs = []
        for start in range(0, len(batch), chunk):
            part = batch[start:start + chunk]
            real = len(part)
            size = self._padded_size(real, chunk)
            if size > real:
                part = np.concatenate([part, np.repeat(part[-1:], size - real, axis=0)])
            outputs.append(self._run_once(np.ascontiguousarray(part))[:real])
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def _padded_size(self, count: int, chunk: int) -> int:
        """Batch size to run `count` items at: the static size, or on CUDA a bucket (1, 2, 4, 8, then multiples of 8).

        cuDNN searches convolution algorithms for every new input shape, which costs far more than a few padded
        items when the number of people changes from batch to batch.
        """
        if self.static_batch:
            return self.static_batch
        if CUDA not in self.session.get_providers():
            return count
        bucket = 1 << max(0, count - 1).bit_length() if count <= 8 else -(-count // 8) * 8
        return max(count, min(bucket, chunk))

    def _run_once(self, part: np.ndarray) -> np.ndarray:
        try:
            return self.session.run([self.output_name], {self.input_name: part})[0]
        except Exception as error:
            if CUDA not in self.session.get_providers() or self.path is None:
                raise
            # e.g. "no kernel image is available for execution on the device": switch to the CPU and go on.
            with self._lock:
                if CUDA in self.session.get_providers():
                    warn_cpu_fallback(f"the CUDA provider failed while running {self.name}: {error}")
                    self.session = ort.InferenceSession(
                        os.fspath(self.path), sess_options=_session_options(), providers=[CPU]
                    )
            return self.session.run([self.output_name], {self.input_name: part})[0]
