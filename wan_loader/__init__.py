"""Find, download, convert and load Wan2.2-Animate-14B weights from any released layout. No ComfyUI imports.

Layers, bottom up: errors, dtypes; io/ (reading files), keymaps/ (layout conversion plans); model/ (what a model and
a file are: components, configs, identification, FP8Linear); discovery/ (where the weights are: folders, files, the
Hub); the operations load, conversion, writers, inspection, processors; lora/; testing/ (tiny models); cli.
"""
from .conversion import convert
from .discovery.hub import download
from .errors import CorruptFileError, MissingComponentError, ShapeMismatchError, WanLoaderError, WrongModelError
from .inspection import inspect
from .load import load_components, load_transformer
from .model.components import COMPONENT_NAMES, WanAnimateComponents

__all__ = ["COMPONENT_NAMES", "WanAnimateComponents", "load_components", "load_transformer", "inspect", "convert",
           "download", "WanLoaderError", "CorruptFileError", "MissingComponentError", "ShapeMismatchError",
           "WrongModelError"]
