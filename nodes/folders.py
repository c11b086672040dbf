"""Register the model folders this package reads, merged into ComfyUI's folder_paths.

extra_model_paths.yaml is applied before custom nodes load, so a folder such as `detection` may already carry the
user's paths (with an empty extension filter): we only ever add our default path and extensions, never replace
what is there.
"""
from __future__ import annotations

import os

import folder_paths

# folder name -> file extensions listed in the node dropdowns
MODEL_FOLDERS: dict[str, set[str]] = {
    "detection": {".onnx"},
    "insightface": {".onnx"},  # face detector packs (buffalo_l/, models/buffalo_l/, ...), as other packs keep them
    # SAM model folders (transformers layout) where segmentation packs keep SAM files; listed by the segmenter loader
    "sam2": {".safetensors", ".pt"},
    "sam3": {".safetensors", ".pt"},
    "sams": {".safetensors", ".pt", ".pth"},
}
SEGMENTER_FOLDERS = ("sam2", "sam3", "sams")


def register_model_folders() -> None:
    """Add models/<folder> for each of our folders, keeping every path ComfyUI or extra_model_paths.yaml set."""
    for name, extensions in MODEL_FOLDERS.items():
        default = os.path.join(folder_paths.models_dir, name)
        paths, current = folder_paths.folder_names_and_paths.get(name, ([], set()))
        if default not in paths:
            paths = [*paths, default]
        merged = set(current or ()) | extensions
        folder_paths.folder_names_and_paths[name] = (paths, merged)
        folder_paths.filename_list_cache.pop(name, None)


def folder_paths_for(name: str) -> list[str]:
    """All directories of one model folder, in ComfyUI's order (what the libraries take as search dirs)."""
    return folder_paths.get_folder_paths(name)


def full_path(folder: str, filename: str) -> str:
    """The absolute path of a file picked in a dropdown, or a FileNotFoundError that names the folder to put it in."""
    path = folder_paths.get_full_path(folder, filename)
    if path is None:
        dirs = ", ".join(folder_paths.get_folder_paths(folder)) or f"models/{folder}"
        raise FileNotFoundError(f"'{filename}' is not in the '{folder}' model folder ({dirs}). Put the file there and press R in the editor to refresh the list.")
    return path
