"""Thin ComfyUI node classes. Each module defines NODES = {class_name: (cls, display_name)}; they are merged here."""
import importlib
import logging

_log = logging.getLogger("wan_animate.nodes")

_MODULES: list[str] = ["model_nodes", "preprocess_nodes", "sampler_nodes"]

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

from .folders import register_model_folders  # noqa: E402

register_model_folders()

for _name in _MODULES:
    _mod = importlib.import_module(f".{_name}", __name__)
    for _cls_name, (_cls, _display) in _mod.NODES.items():
        NODE_CLASS_MAPPINGS[_cls_name] = _cls
        NODE_DISPLAY_NAME_MAPPINGS[_cls_name] = _display
