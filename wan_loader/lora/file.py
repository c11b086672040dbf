"""A LoRA file read into one normalised form, keyed by diffusers WanAnimateTransformer3DModel parameter names.

A LoraWeights knows nothing of a particular model; plan.py matches it to one (names present, shapes fitting).
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from ..errors import WanLoaderError
from ..io.readers import open_file
from .keys import (
    MUSUBI_PREFIX,
    LoraKey,
    Transform,
    convert_musubi,
    detect_naming,
    split_key,
    summarize,
    wan_to_diffusers_params,
)

log = logging.getLogger(__name__)

# Parameters that are not the `.weight` of a module: a `.diff` on these paths targets the path itself.
BARE_PARAMETERS = ("modulation", "scale_shift_table", "padding_tokens", "motion_synthesis_weight")


class LoraError(WanLoaderError):
    """A LoRA file cannot be used; the message names the file and says why."""


class LoraFormatError(LoraError):
    """The file is not a LoRA we can read (unknown kind, inconsistent factors, DoRA)."""


class LoraMismatchError(LoraError):
    """The LoRA does not fit the model (shapes, or most of its layers are not in the model): another model's LoRA."""


@dataclass
class LowRank:
    """delta W = scale * up @ down (reshaped to the weight's shape for convolutions)."""

    down: torch.Tensor  # (rank, in, *kernel)
    up: torch.Tensor    # (out, rank, *1)
    scale: float        # alpha / rank (1 when the file has no alpha)

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    def delta(self, shape: torch.Size, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        up = self.up.to(device=device, dtype=dtype).flatten(1)
        down = self.down.to(device=device, dtype=dtype).flatten(1)
        return (up @ down).mul_(self.scale).reshape(shape)


@dataclass
class LoraWeights:
    """One LoRA file, normalised. Keys are diffusers WanAnimateTransformer3DModel parameter names."""

    name: str
    low_rank: dict[str, LowRank] = field(default_factory=dict)    # "blocks.0.attn1.to_q.weight" -> factors
    diffs: dict[str, torch.Tensor] = field(default_factory=dict)  # full deltas: biases, norms, modulation tables, ...
    naming: str = "wan"                                           # source naming: wan, diffusers or musubi
    sources: dict[str, list[str]] = field(default_factory=dict)   # target -> source keys
    ignored: list[str] = field(default_factory=list)              # source keys that are not LoRA tensors we know

    def targets(self) -> list[str]:
        return sorted(set(self.low_rank) | set(self.diffs))

    def describe(self) -> str:
        ranks = sorted({lr.rank for lr in self.low_rank.values()})
        return (f"{os.path.basename(self.name)}: {len(self.low_rank)} low-rank layers (rank {ranks or '-'}), "
                f"{len(self.diffs)} full deltas, {self.naming} names")


# The last few LoRAs read, by file identity: jobs that reuse a LoRA (ComfyUI re-runs, serverless workers) skip the read.
_CACHE: OrderedDict[tuple, LoraWeights] = OrderedDict()
CACHE_SIZE = 4


def load_lora(path: str | os.PathLike, name: str | None = None, cache: bool = True) -> LoraWeights:
    """Read a LoRA file (.safetensors, or .ckpt/.pt/.pth saved by torch, `{"state_dict": ...}` unwrapped).

    With cache, the last CACHE_SIZE files read are kept (treat the result as read-only); a file changed on disk
    (size or modification time) is read again.
    """
    path = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise LoraError(f"LoRA file not found: {path}") from None
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, name)
    if cache and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    try:
        source = open_file(path)
    except WanLoaderError as e:  # truncated / corrupt: the reader's message names the file and the fix
        raise LoraFormatError(f"LoRA {e}") from None
    names = source.keys()  # a TensorSource, read one tensor at a time
    state_dict = {k: source.get(k) for k in names}
    lora = lora_from_state_dict(state_dict, name or path, getattr(source, "metadata", {}) or {})
    if cache:
        _CACHE[key] = lora
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return lora


def lora_from_state_dict(state_dict: dict[str, torch.Tensor], name: str = "<state dict>",
                         metadata: dict | None = None) -> LoraWeights:
    """Normalise a LoRA state dict in any supported layout (see keys.py)."""
    if not state_dict:
        raise LoraFormatError(f"{name}: holds no tensors; it is not a LoRA file.")
    naming = None
    if any(k.startswith(MUSUBI_PREFIX) for k in state_dict):
        try:
            state_dict = convert_musubi(state_dict)
        except (KeyError, ValueError, IndexError) as e:
            raise LoraFormatError(f"{name}: looks like a musubi-tuner LoRA (lora_unet_* keys) but does not have its "
                                  f"usual layout ({type(e).__name__}: {e}).") from None
        naming = "musubi"

    parsed, ignored = [], []
    for key in state_dict:
        entry = split_key(key)
        (parsed.append(entry) if entry else ignored.append(key))
    dora = [e.source for e in parsed if e.role == "dora_scale"]
    if dora:
        raise LoraFormatError(f"{name}: is a DoRA (weight-decomposed LoRA, {len(dora)} dora_scale keys); DoRA is not "
                              "supported. Use a plain LoRA export of it.")
    if not parsed:
        raise LoraFormatError(f"{name}: none of its {len(state_dict)} keys is a LoRA tensor we know (lora_down/lora_up, "
                              f"lora_A/lora_B, alpha, diff, diff_b); e.g. {summarize(list(state_dict), 4)}. LoKr/LoHa "
                              "files are not supported.")
    try:
        source_naming = detect_naming([e.path for e in parsed]) if naming is None else "diffusers"
    except ValueError as e:
        raise LoraFormatError(f"{name}: {e}") from None

    lora = LoraWeights(name=name, naming=naming or source_naming, ignored=ignored)
    groups: dict[str, dict[str, LoraKey]] = {}
    for e in parsed:
        groups.setdefault(e.path, {})[e.role] = e
    wanted = [p for path in groups for p in (path, path + ".weight", path + ".bias")]
    names = wan_to_diffusers_params(wanted) if source_naming == "wan" else {}

    def targets(param: str) -> list[tuple[str, Transform]]:
        # Names the key map does not know pass through: matching to the model reports them as not in the model.
        return names.get(param) or [(param, None)]

    alpha_for = _metadata_alphas(metadata or {})
    for path, roles in groups.items():
        _add_group(lora, path, {role: (e.source, state_dict[e.source]) for role, e in roles.items()}, targets,
                   alpha_for)
    if lora.ignored:
        log.warning("%s: %d keys are not LoRA tensors we can use and are ignored: %s", name, len(lora.ignored),
                    summarize(lora.ignored))
    return lora


def _add_group(lora: LoraWeights, path: str, roles: dict[str, tuple[str, torch.Tensor]], targets, alpha_for) -> None:
    """Add the tensors of one source module (its lora_down/lora_up/alpha/diff/diff_b) to `lora`."""
    def add(store: dict, target: str, value, sources: list[str]):
        if target in store and store is lora.low_rank:
            raise LoraFormatError(f"{lora.name}: two sets of LoRA factors for {target} "
                                  f"({', '.join(lora.sources[target])} and {', '.join(sources)}).")
        store[target] = store[target] + value if target in store else value
        lora.sources.setdefault(target, []).extend(sources)

    def rows(transform: Transform, t: torch.Tensor) -> torch.Tensor:
        return t if transform is None else transform(t)

    scale = 1.0
    if ("down" in roles) != ("up" in roles):
        present, absent = ("down", "up") if "down" in roles else ("up", "down")
        lora.ignored.append(roles[present][0])
        log.warning("%s: %s has lora_%s but no lora_%s; ignored.", lora.name, path, present, absent)
    elif "down" in roles:
        (down_key, down), (up_key, up) = roles["down"], roles["up"]
        rank = down.shape[0]
        if up.ndim < 2 or up.shape[1] != rank:
            raise LoraFormatError(f"{lora.name}: {up_key} has shape {tuple(up.shape)}, which does not fit "
                                  f"{down_key} of rank {rank} (shape {tuple(down.shape)}).")
        alpha = float(roles["alpha"][1].float().item()) if "alpha" in roles else alpha_for(path, rank)
        scale = alpha / rank if alpha is not None else 1.0
        for target, transform in targets(path + ".weight"):
            add(lora.low_rank, target, LowRank(down, rows(transform, up), scale), [down_key, up_key])
    elif "alpha" in roles:
        lora.ignored.append(roles["alpha"][0])

    if "diff" in roles:
        key, diff = roles["diff"]
        bare = path.rsplit(".", 1)[-1] in BARE_PARAMETERS
        for target, transform in targets(path if bare else path + ".weight"):
            add(lora.diffs, target, rows(transform, diff), [key])
    for role, factor in (("diff_b", 1.0), ("up_bias", scale)):
        if role in roles:
            key, bias = roles[role]
            for target, transform in targets(path + ".bias"):
                add(lora.diffs, target, rows(transform, bias) * factor, [key])


def _metadata_alphas(metadata: dict):
    """alpha for a module from diffusers' PEFT metadata (`lora_adapter_metadata`), else None (scale 1)."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return lambda path, rank: None
    try:
        meta = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (TypeError, ValueError):
        return lambda path, rank: None
    meta = {k.removeprefix("transformer."): v for k, v in meta.items()}
    alpha = meta.get("lora_alpha")
    alpha_pattern = meta.get("alpha_pattern") or {}

    def alpha_for(path: str, rank: int):
        for pattern, value in alpha_pattern.items():
            if re.match(rf"(.*\.)?({pattern})$", path):
                return float(value)
        return float(alpha) if alpha is not None else None

    return alpha_for
