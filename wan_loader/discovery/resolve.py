"""Where each component's weights are: from a folder, a file, a Hub repo id, or a {component: path} dict.

Every weights file found is identified by its contents (model.detect.identify), so file names and folder structure don't
matter: a Diffusers folder, the original Wan-AI folder, ComfyUI's models folder or one loose file all work. The
result says what was found, where it looked, and what is missing.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..dtypes import dominant_dtype, dtype_name, is_fp8, parse_dtype
from ..errors import WrongModelError
from ..io.readers import LegacyCheckpointError, MergedSource, open_file, open_index, weight_files
from ..model.detect import ANIMATE2_MODEL_TYPES, Identified, animate2_name, identify
from .hub import download, is_repo_id

WEIGHT_COMPONENTS = ("transformer", "vae", "text_encoder", "image_encoder")
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json")
# umT5 tokenizer folders users keep next to a text-encoder file (ComfyUI's files carry none): saves a Hub download
TOKENIZER_FOLDERS_BESIDE = ("umt5_tokenizer", "umt5-xxl", os.path.join("google", "umt5-xxl"))


@dataclass
class Resolved:
    parts: dict[str, Identified] = field(default_factory=dict)
    configs: dict[str, dict] = field(default_factory=dict)       # diffusers config.json per component
    original_config: dict | None = None                           # Wan-AI config.json (_class_name WanAnimateModel)
    tokenizer_dirs: list[str] = field(default_factory=list)       # candidate umT5 tokenizer folders, best first
    image_processor_dir: str | None = None
    diffusers_root: str | None = None
    looked: list[str] = field(default_factory=list)
    others: list[tuple[str, str, str]] = field(default_factory=list)  # (file, what it is, component) not used
    alternatives: dict[str, list[Identified]] = field(default_factory=dict)  # other usable copies per component
    as_animate2: bool = False  # take an unmarked Wan2.1-I2V-shaped transformer as Wan-Animate-2

    def found(self) -> dict[str, str]:
        return {c: f"{p.model}, {p.layout} layout, {', '.join(p.files)}" for c, p in self.parts.items()}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _is_umt5_tokenizer_dir(d: Path) -> bool:
    if not any((d / f).is_file() for f in TOKENIZER_FILES):
        return False
    cfg = _read_json(d / "tokenizer_config.json") or {}
    cls = str(cfg.get("tokenizer_class", ""))
    return "T5" in cls or (d / "spiece.model").is_file() or not cls


def resolve(source, files: dict[str, str] | None = None, components=None, model: str | None = None,
            progress=None) -> Resolved:
    """Find the components in `source` (folder / file / Hub id / dict) and in the explicit `files`.

    A Hub repo id is fetched (or found in the HF cache) with only the files `components` need, reporting to
    `progress(done, total)`. A text-encoder file given on its own brings the umT5 tokenizer folder kept beside it.
    model "animate2": an unmarked Wan2.1-I2V-shaped transformer is Wan-Animate-2 (same weights layout)."""
    res = Resolved(as_animate2=model == "animate2")
    explicit = dict(files or {})
    if isinstance(source, dict):
        explicit = {**source, **explicit}
        source = None
    if source is not None:
        path = local_path(source)
        if not path.exists() and is_repo_id(str(source)):
            res.looked.append(f"Hugging Face Hub repo {source}")
            path = Path(download(str(source), components=components, progress=progress))
        if path.is_dir():
            _scan_folder(path, res)
        elif path.is_file():
            res.looked.append(str(path))
            _add_file(path, res, wanted=None)
        else:
            raise FileNotFoundError(f"{source}: no such file or folder (and not a Hugging Face repo id)."
                                    f"{_separator_hint(source)}")
    for component, p in explicit.items():
        if p is None:
            continue
        p = local_path(p)
        if component in ("tokenizer", "image_processor"):
            if component == "tokenizer":
                res.tokenizer_dirs.insert(0, str(p))
            else:
                res.image_processor_dir = str(p)
            res.looked.append(f"{p} ({component}, given)")
            continue
        if p.is_dir():
            _scan_folder(p, res, wanted=component)
        elif p.is_file():
            _add_file(p, res, wanted=component)
            if component == "text_encoder":
                _add_tokenizers_beside(p, res)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder (given as the {component}).{_separator_hint(p)}")
    return res


def local_path(given) -> Path:
    """A path as the user gave it, as this system names it: `~` expanded; where it does not exist as written and
    this system separates folders with '/' only, the same path with its backslashes read as separators (a path
    typed the Windows way, e.g. `models\\wan.safetensors`), if that one exists."""
    text = os.fspath(given)
    path = Path(text).expanduser()
    if path.exists() or "\\" not in text or os.sep == "\\":
        return path
    forward = Path(text.replace("\\", "/")).expanduser()
    return forward if forward.exists() else path


def _separator_hint(given) -> str:
    if "\\" in os.fspath(given) and os.sep != "\\":
        return " The path has backslashes: on this system folders are separated by '/'."
    return ""


def _add_tokenizers_beside(weights_file: Path, res: Resolved) -> None:
    for name in TOKENIZER_FOLDERS_BESIDE:
        d = weights_file.parent / name
        if _is_umt5_tokenizer_dir(d) and str(d) not in res.tokenizer_dirs:
            res.tokenizer_dirs.append(str(d))


def _scan_folder(root: Path, res: Resolved, wanted: str | None = None) -> None:
    res.looked.append(str(root))
    index = _read_json(root / "model_index.json") or _read_json(root / "modular_model_index.json")
    if index is not None and wanted is None:
        _scan_diffusers(root, res, index)
        return
    cfg = _read_json(root / "config.json")
    if cfg and cfg.get("_class_name") == "WanAnimateModel":
        res.original_config = cfg
    elif cfg and str(cfg.get("model_type", "")).lower() in ANIMATE2_MODEL_TYPES:  # a Wan-style Animate-2 release
        res.original_config = cfg
        res.as_animate2 = True
    candidates = {f.parent for name in ("spiece.model", "tokenizer_config.json") for f in root.rglob(name)}
    for d in sorted(candidates):
        if _is_umt5_tokenizer_dir(d) and str(d) not in res.tokenizer_dirs:
            res.tokenizer_dirs.append(str(d))
    grouped: set[str] = set()
    for idx in sorted(root.rglob("*.safetensors.index.json")):
        src = open_index(idx)
        grouped.update(src.files)
        _add_source(src, res, wanted)
    for f in weight_files(root):
        if str(f) not in grouped:
            _add_file(f, res, wanted)
    transformer = res.parts.get("transformer")
    if transformer is not None and transformer.family == "animate2" and (res.original_config or {}).get("distilled"):
        transformer.distilled = True
        transformer.model = animate2_name(True)


def _scan_diffusers(root: Path, res: Resolved, index: dict) -> None:
    res.diffusers_root = str(root)
    for component in WEIGHT_COMPONENTS:
        sub = root / component
        if component not in index or not sub.is_dir():
            continue
        res.looked.append(str(sub))
        cfg = _read_json(sub / "config.json")
        if cfg is not None:
            res.configs[component] = cfg
        indexes = sorted(sub.glob("*.safetensors.index.json"))
        if indexes:
            _add_source(open_index(indexes[0]), res, component, layout="diffusers")
        else:
            for f in weight_files(sub, max_depth=0):
                _add_file(f, res, component, layout="diffusers")
    transformer = res.parts.get("transformer")
    if transformer is not None and transformer.family == "animate2" and "Distilled" in str(
            index.get("_blocks_class_name", "")):  # modular_model_index.json of the distilled repo
        transformer.distilled = True
        transformer.model = animate2_name(True)
    if (root / "tokenizer").is_dir():
        res.tokenizer_dirs.insert(0, str(root / "tokenizer"))
    if (root / "image_processor").is_dir():
        res.image_processor_dir = str(root / "image_processor")


def _add_file(path: Path, res: Resolved, wanted: str | None, layout: str | None = None) -> None:
    try:
        src = open_file(path, allow_unmapped=wanted is not None)
    except LegacyCheckpointError as e:
        res.others.append((str(path), str(e), "unknown"))
        return
    _add_source(src, res, wanted, layout)


def _add_source(src, res: Resolved, wanted: str | None, layout: str | None = None) -> None:
    found = identify(src, res.as_animate2)
    name = ", ".join(src.files)
    if found.component == "unknown" or not found.is_animate_part:
        if wanted is not None:
            raise WrongModelError(
                f"{name}: given as the {wanted} of Wan2.2-Animate, but it is {found.model}. Use the Wan2.2-Animate-14B "
                "file for that part (see `python -m wan_loader download`).")
        res.others.append((name, found.model, found.component))
        return
    if wanted is not None and found.component != wanted:
        raise WrongModelError(f"{name}: given as the {wanted}, but it is the {found.component} ({found.model}). "
                              f"Pass it as {found.component}= instead.")
    if layout == "diffusers" and found.layout == "original":
        found.layout = "diffusers"
    if found.component == "transformer" and found.layout == "original" and len(src.files) == 1 and \
            res.original_config is None:
        found.layout = "comfy"  # one unsharded file without the release's config.json: a ComfyUI model file
    if found.component in res.parts:
        prev = res.parts[found.component]
        same_dir = Path(prev.files[0]).parent == Path(src.files[0]).parent
        disjoint = not (set(prev.view.base.keys()) & set(src.keys()))
        if same_dir and disjoint and prev.layout == found.layout and prev.prefix == found.prefix and wanted is None:
            merged = identify(MergedSource([prev.view.base, src]), res.as_animate2)
            merged.layout = prev.layout
            res.parts[found.component] = merged
            return
        if wanted is None:
            res.alternatives.setdefault(found.component, []).append(found)
            return
    res.parts[found.component] = found


def stored_dtype(part: Identified) -> str:
    """How a component's big weights are stored: its fp8 format if it has fp8 tensors, else the dominant dtype."""
    view = part.view
    fp8 = {view.dtype(k) for k in view.keys() if is_fp8(view.dtype(k))}
    return dtype_name(fp8.pop()) if len(fp8) == 1 else dominant_dtype(view)


def prefer_dtype(res: Resolved, weight_dtype) -> None:
    """Where a folder holds several copies of a component (e.g. ComfyUI's bf16 and fp8-scaled Animate files), use
    the one stored in the asked-for weight dtype (fewer bytes to read, no re-quantization); list the others."""
    want = dtype_name(parse_dtype(weight_dtype))
    for component, alts in res.alternatives.items():
        copies = [res.parts[component], *alts]
        best = next((c for c in copies if stored_dtype(c) == want), copies[0])
        res.parts[component] = best
        for c in copies:
            if c is not best:
                res.others.append((", ".join(c.files), f"another copy of the {component} ({c.model}, "
                                   f"{stored_dtype(c)}); using {', '.join(best.files)}", "duplicate"))
    res.alternatives = {}
