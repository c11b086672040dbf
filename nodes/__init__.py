"""Thin ComfyUI node classes. Each module defines NODES = {class_name: (cls, display_name)}; they are merged here."""
import importlib
import logging

_log = logging.getLogger("wan_animate.nodes")

_MODULES: list[str] = []

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

for _name in _MODULES:
    _mod = importlib.import_module(f".{_name}", __name__)
    for _cls_name, (_cls, _display) in _mod.NODES.items():
        NODE_CLASS_MAPPINGS[_cls_name] = _cls
        NODE_DISPLAY_NAME_MAPPINGS[_cls_name] = _display
