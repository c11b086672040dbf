"""Where the SAM2 / SAM3 segmentation model is: a folder or file, a name in the model folders, the Hugging Face cache
or Hub.

The segmenter reads transformers-format model folders (config.json + model.safetensors + processor files), the
layout of facebook/sam2.1-hiera-* and facebook/sam3 on the Hub, and SAM 2 / 2.1 single files in the original layout
(sam2_hiera_large.pt of the official preprocessing, sam2.1_hiera_*.safetensors that other ComfyUI packs keep in
models/sam2; converted by sam2_checkpoint.py). A name is looked for in the search folders (ComfyUI passes
models/sam2, models/sam3 and models/sams), also under its Hub owner (`facebook/...`); a Hub id not found there is
taken from the Hugging Face cache or downloaded into it through wan_loader's Hub downloader (HF_HOME,
HF_HUB_OFFLINE and tokens apply; facebook/sam3 is gated: accept its licence on the Hub and log in first).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from wan_loader.discovery import hub

from .model_files import LFS_POINTER_PREFIX, ModelFileError, ModelNotFoundError

DEFAULT_SEGMENTER = "facebook/sam2.1-hiera-large"
KNOWN_SEGMENTERS = (
    "facebook/sam2.1-hiera-large", "facebook/sam2.1-hiera-base-plus", "facebook/sam2.1-hiera-small",
    "facebook/sam2.1-hiera-tiny", "facebook/sam3",
)
HUB_PATTERNS = ["*.json", "*.safetensors"]  # the transformers files; not the original .pt checkpoints beside them
# Hub model -> its original single file's name without suffix (the .pt beside it on the Hub, the .safetensors other
# ComfyUI packs keep): such a file in the model folders serves a Hub name without a download.
ORIGINAL_FILES = {
    "facebook/sam2.1-hiera-large": "sam2.1_hiera_large", "facebook/sam2.1-hiera-base-plus": "sam2.1_hiera_base_plus",
    "facebook/sam2.1-hiera-small": "sam2.1_hiera_small", "facebook/sam2.1-hiera-tiny": "sam2.1_hiera_tiny",
}
SINGLE_FILE_SUFFIXES = (".safetensors", ".pt", ".pth")
SINGLE_FILE_PREFIX = "sam2"  # models/sams also holds SAM 1 files (sam_vit_*.pth), which are no video models


def is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file()


def is_sam2_file(path: Path) -> bool:
    """Windows keeps the names as typed, so suffix and prefix are compared case-insensitively."""
    name = path.name.lower()
    return path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES and name.startswith(SINGLE_FILE_PREFIX)


def list_model_folders(search_dirs: Iterable[str | os.PathLike]) -> list[str]:
    """Names (relative to their search folder) of the model folders (one level deep or under an owner) and SAM 2
    single files found."""
    names: list[str] = []
    for root in map(Path, search_dirs):
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if is_model_folder(child) or is_sam2_file(child):
                names.append(child.name)
            elif child.is_dir():
                names += [f"{child.name}/{g.name}" for g in sorted(child.iterdir()) if is_model_folder(g)]
    return list(dict.fromkeys(names))


def find_model_folder(name: str, search_dirs: Iterable[str | os.PathLike]) -> Path | None:
    """`name` (a folder name, Hub id or SAM 2 file name) as a model folder or file in the search folders; a known Hub
    model also as its original single file."""
    candidates = [name, name.split("/")[-1]]
    if name in ORIGINAL_FILES:
        candidates += [ORIGINAL_FILES[name] + suffix for suffix in SINGLE_FILE_SUFFIXES]
    for root in map(Path, search_dirs):
        for candidate in candidates:
            if is_model_folder(root / candidate) or is_sam2_file(root / candidate):
                return root / candidate
    return None


def check_single_file(path: Path) -> Path:
    """A checkpoint file given as the model: refused when it cannot be one (LFS pointer, other file type)."""
    with open(path, "rb") as handle:
        if handle.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX:
            raise ModelFileError(f"{path} is a Git LFS pointer, not the model: fetch the real files (git lfs pull)")
    if path.suffix not in SINGLE_FILE_SUFFIXES:
        raise ModelFileError(
            f"{path} is not a SAM checkpoint (.safetensors, .pt or .pth) nor a model folder; pick a SAM 2 file, a "
            f"transformers SAM2/SAM3 folder, or {DEFAULT_SEGMENTER} (downloaded into the Hugging Face cache)"
        )
    return path


def resolve_segmenter(source: str | os.PathLike = DEFAULT_SEGMENTER, search_dirs: Sequence[str | os.PathLike] = (),
                      allow_download: bool = True, progress=None) -> Path:
    """The local model folder or SAM 2 file for `source`: a path, a name in `search_dirs`, or a Hub id (cache, else
    download, reported to `progress(done, total)`)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not is_model_folder(path):
            raise ModelFileError(
                f"{path} is a folder without config.json: not a transformers SAM2/SAM3 model. Download a whole model "
                f"repository (e.g. {DEFAULT_SEGMENTER}) into it, or pick the model by its Hub id."
            )
        return path
    if path.is_file():
        return path.parent if path.name == "config.json" else check_single_file(path)
    text = str(source)
    found = find_model_folder(text, search_dirs)
    if found is not None:
        return found
    where = ", ".join(str(d) for d in search_dirs) or "(no folders given)"
    if not hub.is_repo_id(text):
        raise ModelNotFoundError(
            f"segmenter '{text}' is neither a model folder or file nor in {where}; give a path or a Hub id such as "
            f"{DEFAULT_SEGMENTER}"
        )
    return Path(hub_folder(text, allow_download, where, progress))


def hub_folder(repo_id: str, allow_download: bool, where: str, progress=None) -> str:
    """The Hub model's folder in the Hugging Face cache, downloaded there when missing and allowed."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json", cache_dir=hub.cache_dir())
    if isinstance(cached, str) and any(Path(cached).parent.glob("*.safetensors")):
        return str(Path(cached).parent)
    if not allow_download:
        raise ModelNotFoundError(
            f"segmenter {repo_id} is not in {where} nor in the Hugging Face cache ({hub.cache_dir()}) and downloads "
            f"are off; download https://huggingface.co/{repo_id} into one of those folders"
        )
    try:
        return hub.download(repo_id, patterns=HUB_PATTERNS, progress=progress)
    except Exception as error:
        gated = " (facebook/sam3 is gated: accept its licence on the Hub and log in with `hf auth login`)" \
            if repo_id == "facebook/sam3" else ""
        raise ModelNotFoundError(
            f"segmenter {repo_id} is not in {where} and could not be downloaded{gated}: {error}"
        ) from error


def check_segmenter_source(source: str, search_dirs: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse, before any work, a segmenter that is neither a model folder here nor a Hub id (what the node checks)."""
    path = Path(source).expanduser()
    if path.is_dir() or find_model_folder(source, search_dirs) is not None or (not path.exists() and hub.is_repo_id(source)):
        return
    if path.is_file():
        check_single_file(path)
        return
    where = ", ".join(str(d) for d in search_dirs) or "(no folders given)"
    raise ModelNotFoundError(
        f"segmenter '{source}' is not a model folder or file in {where}; put the model there (a SAM 2 .safetensors/.pt, "
        f"or a folder with config.json and model.safetensors) and refresh, or pick a Hub id such as {DEFAULT_SEGMENTER}"
    )
