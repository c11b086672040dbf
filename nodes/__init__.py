"""Thin ComfyUI node classes. Each module defines NODES = {class_name: (cls, display_name)}; they are merged here.

Outside ComfyUI (e.g. pytest importing the repository folder as a package) there is no `folder_paths` module and
no node is registered, so the libraries and the tests import cleanly.
"""
import importlib
import importlib.util
import logging

_log = logging.getLogger("wan_animate.nodes")

_MODULES: list[str] = ["model_nodes", "preprocess_nodes", "sampler_nodes", "encode_nodes"]

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

if importlib.util.find_spec("folder_paths") is not None:
    from .folders import register_model_folders

    register_model_folders()
    for _name in _MODULES:
        _mod = importlib.import_module(f".{_name}", __name__)
        for _cls_name, (_cls, _display) in _mod.NODES.items():
            NODE_CLASS_MAPPINGS[_cls_name] = _cls
            NODE_DISPLAY_NAME_MAPPINGS[_cls_name] = _display
else:
    _log.debug("not running inside ComfyUI: no nodes registered")
