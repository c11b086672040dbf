"""ComfyUI entry point: registers this package's nodes.

ComfyUI imports this folder as a module named after the folder (any name works). The library packages
`wan_loader` and `wan_animate` live beside this file and are imported as top-level packages, so the folder is
appended to sys.path (appended, not prepended, so nothing here can shadow ComfyUI's own modules).
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
else:
    # Imported as a bare module, not as ComfyUI's package: pytest does this when the clone's folder name is not a
    # valid identifier (e.g. "comfyui-wan-animate"). There is no ComfyUI to register with.
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
