"""Weight files as lazy tensor sources: names, shapes and dtypes from the headers, one tensor read at a time.

Nothing here reads a whole file into memory. safetensors headers are parsed directly (8-byte length + JSON) so the
byte range of every tensor is known and the streaming loader (stream.py) can read it straight into its destination;
`get()` reads one tensor with positional reads (no shared file position, safe from threads). `.pth`/`.pt`/`.ckpt`
files are opened with torch.load(mmap=True, weights_only=True): the storages stay memory-mapped until touched.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .direct_io import RangeFile
from ..errors import CorruptFileError

SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
SAFETENSORS_EXTENSIONS = (".safetensors", ".sft")
TORCH_EXTENSIONS = (".pth", ".pt", ".ckpt", ".bin")
WEIGHT_EXTENSIONS = SAFETENSORS_EXTENSIONS + TORCH_EXTENSIONS
MAX_HEADER_BYTES = 100 * 1024 * 1024

# Scaled-fp8 conventions (ComfyUI / Kijai): a marker tensor and one scale per quantized weight.
SCALED_FP8_MARKER = "scaled_fp8"
# Files written from the tiny test models say so (safetensors metadata, or a string entry of a .pth state dict):
# only such files are matched against the test sizes, never taken for a released model.
TEST_MODEL_KEY, TEST_MODEL_VALUE = "wan_loader_test_model", "tiny"
WEIGHT_SCALE_SUFFIXES = ("scale_weight", "weight_scale")      # comfy.ops scaled_fp8_ops / newer comfy_quant files
AUX_SCALE_SUFFIXES = ("scale_input", "input_scale", "comfy_quant")


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor as a writable memoryview (works for bf16/fp8 too)."""
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())


class TensorSource:
    """Read-only mapping of tensor names to lazily read tensors."""

    files: list[str]
    metadata: dict

    def keys(self) -> list[str]:
        raise NotImplementedError

    def shape(self, key: str) -> tuple[int, ...]:
        raise NotImplementedError

    def dtype(self, key: str) -> torch.dtype:
        raise NotImplementedError

    def get(self, key: str) -> torch.Tensor:
        """One tensor on the CPU."""
        raise NotImplementedError

    def byte_range(self, key: str) -> tuple["SafetensorsFile", int, int] | None:
        """(file, start, end) when the raw bytes can be read directly (safetensors), else None."""
        return None

    def where(self, key: str) -> str:
        return self.files[0]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self.shape(k) for k in self.keys()}

    def __contains__(self, key: str) -> bool:
        return key in set(self.keys())

    def nbytes(self, key: str) -> int:
        n = 1
        for d in self.shape(key):
            n *= d
        return n * self.dtype(key).itemsize

    def describe(self) -> str:
        return ", ".join(self.files)


class SafetensorsFile(RangeFile, TensorSource):
    """One .safetensors file; the header is parsed at open, data is read on demand through the descriptors of
    RangeFile (`fd`, and `direct_fd` for cold reads past the page cache: direct_io.py), both closed by `close()`."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        self.files = [self.path]
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CorruptFileError(f"{self.path}: only {size} bytes, not a safetensors file (truncated?). "
                                       "Download it again.")
            n = int.from_bytes(head, "little")
            if n <= 1 or n > MAX_HEADER_BYTES or n > size - 8:
                raise CorruptFileError(
                    f"{self.path}: not a valid safetensors file (header length {n} for a {size}-byte file): it is "
                    "truncated, corrupt, or another format renamed. Download it again.")
            try:
                header = json.loads(f.read(n))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise CorruptFileError(f"{self.path}: damaged safetensors header ({e}). Download it again.") from None
        self.metadata = header.pop("__metadata__", None) or {}
        self.data_start = 8 + n
        self._entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        end_max = 0
        for key, info in header.items():
            try:
                dtype = SAFETENSORS_DTYPES[info["dtype"]]
                start, end = info["data_offsets"]
                shape = tuple(int(d) for d in info["shape"])
            except (KeyError, TypeError, ValueError):
                raise CorruptFileError(f"{self.path}: bad header entry for {key!r}: {info!r}. "
                                       "The file is damaged or uses an unsupported dtype.") from None
            self._entries[key] = (dtype, shape, self.data_start + start, self.data_start + end)
            end_max = max(end_max, end)
        if self.data_start + end_max > size:
            raise CorruptFileError(
                f"{self.path}: truncated: the header needs {self.data_start + end_max} bytes but the file has {size} "
                f"({100 * size / (self.data_start + end_max):.1f}%). The download or copy was interrupted: download it "
                "again (huggingface_hub resumes partial downloads).")

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def shape(self, key: str) -> tuple[int, ...]:
        return self._entries[key][1]

    def dtype(self, key: str) -> torch.dtype:
        return self._entries[key][0]

    def byte_range(self, key: str):
        _, _, start, end = self._entries[key]
        return self, start, end

    def get(self, key: str) -> torch.Tensor:
        dtype, shape, start, end = self._entries[key]
        out = torch.empty(shape, dtype=dtype)
        if end > start:
            self.read_into(tensor_bytes(out), start)
        return out


class TorchFile(TensorSource):
    """A pickled state dict (.pth/.pt/.ckpt/.bin), memory-mapped and loaded with weights_only=True."""

    def __init__(self, path: str | os.PathLike, allow_unmapped: bool = True):
        self.path = str(path)
        self.files = [self.path]
        self.metadata = {}
        try:
            obj = torch.load(self.path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as e:
            if "mmap" not in str(e) and "zip" not in str(e).lower():
                raise CorruptFileError(f"{self.path}: cannot be read as a PyTorch checkpoint ({e}). "
                                       "It is truncated or corrupt: download it again.") from None
            if not allow_unmapped:
                raise LegacyCheckpointError(f"{self.path}: legacy pickle checkpoint (cannot be memory-mapped); not "
                                            "read while scanning a folder. Pass it explicitly to load it.") from None
            try:  # legacy (non-zip) serialization cannot be memory-mapped
                obj = torch.load(self.path, map_location="cpu", weights_only=True)
            except Exception as e2:
                raise CorruptFileError(f"{self.path}: cannot be read as a PyTorch checkpoint ({e2}). "
                                       "It is truncated or corrupt: download it again.") from None
        except Exception as e:
            raise CorruptFileError(f"{self.path}: cannot be read as a PyTorch checkpoint ({type(e).__name__}: {e}). "
                                   "It is truncated, corrupt, or not a weights file: download it again.") from None
        if isinstance(obj, dict):
            self.metadata = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, str)}
        self._sd = self._unwrap(obj)

    def _unwrap(self, obj) -> dict[str, torch.Tensor]:
        for _ in range(3):
            if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                for name in ("state_dict", "model", "module", "model_state"):
                    if isinstance(obj.get(name), dict):
                        obj = obj[name]
                        break
                else:
                    if len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
                        obj = next(iter(obj.values()))
                    else:
                        break
        if not isinstance(obj, dict):
            raise CorruptFileError(f"{self.path}: holds a {type(obj).__name__}, not a state dict of tensors.")
        return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}

    def keys(self) -> list[str]:
        return list(self._sd)

    def __contains__(self, key: str) -> bool:
        return key in self._sd

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._sd[key].shape)

    def dtype(self, key: str) -> torch.dtype:
        return self._sd[key].dtype

    def get(self, key: str) -> torch.Tensor:
        return self._sd[key]


class MergedSource(TensorSource):
    """Several files (shards) seen as one."""

    def __init__(self, sources: list[TensorSource]):
        self.sources = sources
        self.files = [f for s in sources for f in s.files]
        self.metadata = {}
        for s in sources:
            self.metadata.update(s.metadata)
        self._owner: dict[str, TensorSource] = {}
        for s in sources:
            for k in s.keys():
                self._owner.setdefault(k, s)

    def keys(self) -> list[str]:
        return list(self._owner)

    def __contains__(self, key: str) -> bool:
        return key in self._owner

    def shape(self, key):
        return self._owner[key].shape(key)

    def dtype(self, key):
        return self._owner[key].dtype(key)

    def get(self, key):
        return self._owner[key].get(key)

    def byte_range(self, key):
        return self._owner[key].byte_range(key)

    def where(self, key):
        return self._owner[key].where(key)


class View(TensorSource):
    """The tensors of a base source under `prefix`, with the prefix removed and scaled-fp8 bookkeeping split off.

    Scale tensors (`X.scale_weight` / `X.weight_scale`) are not listed as keys; `scale("X.weight")` returns them.
    """

    def __init__(self, base: TensorSource, prefix: str = ""):
        self.base = base
        self.prefix = prefix
        self.files = base.files
        self.metadata = base.metadata
        names = [k[len(prefix):] for k in base.keys() if k.startswith(prefix)]
        self._keys = [k for k in names if not _is_scale_key(k)]
        self._scale_keys = {k for k in names if _is_scale_key(k)}
        self._keyset = set(self._keys)

    @property
    def is_scaled_fp8(self) -> bool:
        return bool(self._scale_keys)

    def keys(self):
        return self._keys

    def __contains__(self, key):
        return key in self._keyset

    def shape(self, key):
        return self.base.shape(self.prefix + key)

    def dtype(self, key):
        return self.base.dtype(self.prefix + key)

    def get(self, key):
        return self.base.get(self.prefix + key)

    def byte_range(self, key):
        return self.base.byte_range(self.prefix + key)

    def where(self, key):
        return self.base.where(self.prefix + key)

    def scale(self, key: str) -> torch.Tensor | None:
        """The fp32 dequantization scale of an fp8 weight (scalar or per output channel), or None."""
        if not key.endswith("weight") or not self._scale_keys:
            return None
        stem = key[: -len("weight")]
        for suffix in WEIGHT_SCALE_SUFFIXES:
            if stem + suffix in self._scale_keys:
                return self.base.get(self.prefix + stem + suffix).to(torch.float32)
        return None


    def quant_marker(self, key: str) -> torch.Tensor | None:
        """The `comfy_quant` marker tensor beside a quantised weight (ComfyUI's per-layer quantisation config)."""
        stem = key[: -len("weight")] if key.endswith("weight") else key + "."
        marker = stem + "comfy_quant"
        return self.base.get(self.prefix + marker) if marker in self._scale_keys else None


def is_test_model(source: TensorSource) -> bool:
    """Whether the file says it holds a tiny test model (see TEST_MODEL_KEY)."""
    return source.metadata.get(TEST_MODEL_KEY) == TEST_MODEL_VALUE


def _is_scale_key(key: str) -> bool:
    last = key.rsplit(".", 1)[-1]
    return key == SCALED_FP8_MARKER or last in WEIGHT_SCALE_SUFFIXES or last in AUX_SCALE_SUFFIXES


class LegacyCheckpointError(CorruptFileError):
    """An old-style pickle checkpoint: readable only by loading it whole."""


def open_file(path: str | os.PathLike, allow_unmapped: bool = True) -> TensorSource:
    """Open one weights file by its contents (safetensors magic vs. zip/pickle), not its extension.

    allow_unmapped=False refuses legacy (non-zip) pickles, which torch can only load whole into memory."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(9)
    # a safetensors header (JSON) starts at byte 8, whatever its length's first bytes are (they may read 0x80 or PK)
    if head[8:9] != b"{" and (head[:2] == b"PK" or head[:1] == b"\x80"):
        return TorchFile(path, allow_unmapped)
    return SafetensorsFile(path)


def open_index(index_path: str | os.PathLike) -> TensorSource:
    """A sharded checkpoint from its `*.safetensors.index.json` (weight_map: key -> shard file)."""
    index_path = Path(index_path)
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{index_path}: not a valid shard index ({e}). Download it again.") from None
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not (index_path.parent / s).is_file()]
    if missing:
        raise CorruptFileError(f"{index_path}: lists shard(s) that are not there: {', '.join(missing)}. "
                               "Download the missing shards (or the whole folder) again.")
    return MergedSource([open_file(index_path.parent / s) for s in shards])


def weight_files(folder: str | os.PathLike, max_depth: int = 3) -> list[Path]:
    """Candidate weight files under a folder (by extension; the contents decide what each one is)."""
    root = Path(folder)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and depth < max_depth)
        out += [Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(WEIGHT_EXTENSIONS)]
    return out
