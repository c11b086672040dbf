"""ComfyUI entry point: offers this package's nodes through `comfy_entrypoint` (V3 custom-node API).

ComfyUI imports this folder as a module named after the folder (any name works). The library packages
`wan_loader` and `wan_animate` live beside this file and are imported as top-level packages, so the folder is
appended to sys.path (appended, not prepended, so nothing here can shadow ComfyUI's own modules).

No NODE_CLASS_MAPPINGS here: ComfyUI takes a module that has one as a V1 package and never calls comfy_entrypoint.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

if __package__:
    from .nodes import *  # noqa: E402,F403 - comfy_entrypoint, defined only inside ComfyUI
# Imported as a bare module, not as ComfyUI's package (pytest does this when the clone's folder name is not a valid
# identifier, e.g. "comfyui-wan-animate"): there is no ComfyUI to register with, so nothing is offered.
