"""Thin ComfyUI nodes (V3 schema, `comfy_api.latest`), offered to ComfyUI through `comfy_entrypoint`.

Outside ComfyUI (e.g. pytest importing the repository folder as a package) there is no `folder_paths` module and
no node module is imported, so the libraries and the tests import cleanly.
"""
import importlib.util
import logging

_log = logging.getLogger("wan_animate.nodes")

if importlib.util.find_spec("folder_paths") is not None:
    from comfy_api.latest import ComfyExtension, io

    from .animate2_nodes import NODES as _ANIMATE2_NODES
    from .encode_nodes import NODES as _ENCODE_NODES
    from .folders import register_model_folders
    from .model_nodes import NODES as _MODEL_NODES
    from .preprocess_nodes import NODES as _PREPROCESS_NODES
    from .sampler_nodes import NODES as _SAMPLER_NODES
    from .segment_nodes import NODES as _SEGMENT_NODES

    NODES: list[type[io.ComfyNode]] = [*_MODEL_NODES, *_PREPROCESS_NODES, *_SEGMENT_NODES, *_SAMPLER_NODES,
                                       *_ANIMATE2_NODES, *_ENCODE_NODES]

    class WanAnimateExtension(ComfyExtension):
        async def get_node_list(self) -> list[type[io.ComfyNode]]:
            return list(NODES)

    async def comfy_entrypoint() -> WanAnimateExtension:
        """What ComfyUI calls on loading this package (V3 entry point). The model folders are registered first: the
        node schemas list their files. (ComfyUI 0.3.64 never calls ComfyExtension.on_load, so it is not done there.)"""
        register_model_folders()
        return WanAnimateExtension()

    __all__ = ["comfy_entrypoint"]
else:
    __all__ = []
    _log.debug("not running inside ComfyUI: no nodes offered")
