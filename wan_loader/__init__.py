"""Find, download, convert and load Wan2.2-Animate-14B weights from any released layout. No ComfyUI imports.

Layers, bottom up: errors, dtypes; io/ (reading files), keymaps/ (layout conversion plans); model/ (what a model and
a file are: components, configs, identification, FP8Linear); discovery/ (where the weights are: folders, files, the
Hub); the operations load, conversion, writers, inspection, processors; lora/; testing/ (tiny models); cli.

The operations are imported on first use (PEP 562), so `import wan_loader.errors` or `wan_loader.COMPONENT_NAMES`
does not import torch, accelerate and the model code.
"""
from importlib import import_module

from .errors import CorruptFileError, MissingComponentError, ShapeMismatchError, WanLoaderError, WrongModelError
from .model.components import COMPONENT_NAMES, WanAnimateComponents

_OPERATIONS = {"load_components": ".load", "load_transformer": ".load", "inspect": ".inspection",
               "convert": ".conversion", "download": ".discovery.hub"}


def __getattr__(name: str):
    if name in _OPERATIONS:
        return getattr(import_module(_OPERATIONS[name], __name__), name)
    raise AttributeError(f"module 'wan_loader' has no attribute {name!r}")


__all__ = ["COMPONENT_NAMES", "WanAnimateComponents", "load_components", "load_transformer", "inspect", "convert",
           "download", "WanLoaderError", "CorruptFileError", "MissingComponentError", "ShapeMismatchError",
           "WrongModelError"]
