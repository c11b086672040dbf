"""The one harness every benchmark uses: one report shape, timing, device facts, the GPU memory cap, child runs.

Every benchmark writes the same JSON shape (`Report`):

    {"benchmark": "...", "device": {python, torch, gpu, ...}, "config": {the command's options},
     "rows": [{one measured thing per row}], "ratios": {"what vs what": x}, "goals": {...}, "notes": ["..."]}

and prints its ratios at the end. Run the scripts as modules from the repository root:
`python -m benchmarks.step --size tiny --device cpu`.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
GIB = 1024 ** 3


class Report:
    """A benchmark's results, rewritten to `out` (when given) after every change so a run cut short keeps them."""

    def __init__(self, benchmark: str, out: str | os.PathLike | None, device="cpu", config: dict | None = None,
                 goals: dict | None = None):
        self.out = out
        self.data = {"benchmark": benchmark, "device": environment(device),
                     "config": {k: str(v) if isinstance(v, Path) else v for k, v in (config or {}).items()},
                     "rows": [], "ratios": {}, "goals": goals or {}, "notes": []}

    @property
    def rows(self) -> list[dict]:
        return self.data["rows"]

    def add(self, **row) -> dict:
        self.rows.append(row)
        self.write()
        return row

    def note(self, text: str) -> None:
        print(text, flush=True)
        self.data["notes"].append(text)
        self.write()

    def ratio(self, name: str, value: float) -> None:
        self.data["ratios"][name] = round(value, 3)
        self.write()

    def set(self, **fields) -> None:
        """Report-level facts beyond the common keys (e.g. setup seconds, the file measured)."""
        self.data.update(fields)
        self.write()

    def write(self) -> None:
        write_json(self.out, self.data)

    def print_table(self, columns: Sequence[str]) -> None:
        """The rows as a markdown table of `columns` (missing values as '-'), then the ratios."""
        print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
        for row in self.rows:
            print("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
        self.print_ratios()

    def print_ratios(self) -> None:
        for name, value in self.data["ratios"].items():
            goal = self.data["goals"].get(name)
            verdict = "" if goal is None else f"  (goal {goal}: {'met' if value >= goal else 'NOT met'})"
            print(f"ratio {name}: {value}{verdict}")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def model_parser(doc: str) -> argparse.ArgumentParser:
    """The flags every DiT benchmark takes (--size full|tiny, --device, --out); each adds its own."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--size", choices=["full", "tiny"], default="full", help="tiny: the tiny model (CPU smoke runs)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    return p


def write_json(path: str | os.PathLike | None, data: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)


def environment(device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    try:
        import diffusers
        info["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / GIB, 1)
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device, warmup: int, repeats: int) -> tuple[list[float], object]:
    """Seconds of each of `repeats` calls after `warmup` calls (device synchronised around each); last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    sync(device)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - began)
    return times, out


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0).item()


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| (Frobenius), in float64."""
    ref = ref.double()
    return ((out.double() - ref).norm() / ref.norm()).item()


def reset_peak(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device, reserved: bool = False) -> float | None:
    """Peak GPU memory allocated (or reserved by the caching allocator) since `reset_peak`; None off the GPU."""
    if torch.device(device).type != "cuda":
        return None
    peak = torch.cuda.max_memory_reserved(device) if reserved else torch.cuda.max_memory_allocated(device)
    return round(peak / GIB, 2)


def rss_bytes() -> int:
    """Resident memory of this process now: /proc/self/statm on Linux (in pages of the system's size, 64 KiB on
    some ARM servers), else psutil where installed (Windows, macOS); 0 when neither is there."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, AttributeError, ValueError):
        pass
    try:
        import psutil
    except ImportError:
        return 0
    return psutil.Process().memory_info().rss


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far: VmHWM on Linux (restartable, see `reset_peak_rss`), else
    getrusage on macOS (bytes there), else psutil's peak working set on Windows; 0 when none is available."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except ImportError:
        pass
    try:
        import psutil
    except ImportError:
        return 0
    return getattr(psutil.Process().memory_info(), "peak_wset", 0)


def reset_peak_rss() -> bool:
    """Restart the peak-RSS counter (VmHWM) so import-time peaks don't count; Linux >= 4.0 only."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def allocated_gib(device) -> float | None:
    return round(torch.cuda.memory_allocated(device) / GIB, 2) if torch.device(device).type == "cuda" else None


def free(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def cap_gpu_memory(device, gib: float | None) -> float | None:
    """Let this process use at most `gib` GiB of the GPU (what a smaller card would have); None or a CPU: no cap.
    Returns the fraction set."""
    device = torch.device(device)
    if not gib or device.type != "cuda":
        return None
    free(device)
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, gib * GIB / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device.index if device.index is not None
                                               else torch.cuda.current_device())
    return fraction


def run_child(module: str, args: Sequence[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    """`python -m benchmarks.<module> ARGS` in a fresh process (its own peaks, caches and imports), from the
    repository root so the packages import."""
    return subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def last_json_line(stdout: str) -> dict | None:
    """A child's result: the last stdout line that is a JSON object."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def drop_page_cache(files: Sequence[Path], system_wide: bool = True) -> str:
    """Empty the page cache of `files` so the next read comes from the disk: the whole cache through
    /proc/sys/vm/drop_caches where allowed (root on a machine of one's own) and `system_wide`, else fsync +
    posix_fadvise(DONTNEED) per file (which leaves other people's cache alone on a shared machine). Returns how."""
    os.sync()
    if system_wide:
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            return "drop_caches"
        except OSError:
            pass
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return "posix_fadvise(DONTNEED)"


def raw_read(path: Path) -> float:
    """Seconds to read the file once, sequentially, through the page cache."""
    view = memoryview(bytearray(16 * 1024 * 1024))
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.readinto(view):
            pass
    return time.perf_counter() - t0

