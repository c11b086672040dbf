"""Find, download, convert and load Wan2.2-Animate-14B weights from any released layout. No ComfyUI imports."""
from .components import COMPONENT_NAMES, WanAnimateComponents

__all__ = ["COMPONENT_NAMES", "WanAnimateComponents"]
