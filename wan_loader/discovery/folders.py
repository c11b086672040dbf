"""Model folders kept under a list of root folders (e.g. ComfyUI's `diffusers` model folders), by name.

A model folder is a directory holding a Diffusers `model_index.json` (`modular_model_index.json` for Wan-Animate-2)
or a Wan-style release's `config.json`; the loader finds everything else inside it. Callers pass the roots as plain
paths, so this knows nothing of who configured them.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

MODEL_FOLDER_MARKERS = ("model_index.json", "modular_model_index.json", "config.json")


def is_model_folder(path: str | os.PathLike) -> bool:
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, m)) for m in MODEL_FOLDER_MARKERS)


def model_folders(roots: Iterable[str | os.PathLike]) -> list[str]:
    """Names of the model folders directly under the roots, root by root (roots that don't exist are skipped)."""
    names = []
    for root in roots:
        if os.path.isdir(root):
            names += [e for e in sorted(os.listdir(root)) if e not in names and is_model_folder(os.path.join(root, e))]
    return names


def find_model_folder(name: str, roots: Iterable[str | os.PathLike]) -> str:
    """The path of model folder `name` under the first root that has it, or a FileNotFoundError naming the roots."""
    roots = [os.fspath(r) for r in roots]
    for root in roots:
        path = os.path.join(root, name)
        if is_model_folder(path):
            return path
    where = ", ".join(roots) or "(no folders given)"
    raise FileNotFoundError(f"model folder '{name}' is not in {where} (a model folder holds model_index.json or "
                            "config.json). Put it there, or pick another model.")
