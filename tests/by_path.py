"""A repository file loaded as a module by its path.

nodes/ registers its nodes only inside ComfyUI (its package imports comfy_api), and in a process that has imported
ComfyUI, ComfyUI's own nodes.py shadows the name `nodes`; scripts/ is no package. Tests reach such files by path.
"""
from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.comfyui_server import REPO_ROOT


def load_by_path(relative: str, name: str) -> ModuleType:
    """REPO_ROOT / `relative` executed as a fresh module called `name`."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
