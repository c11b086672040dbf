"""Find, download, convert and load Wan2.2-Animate-14B weights from any released layout. No ComfyUI imports."""
from .components import COMPONENT_NAMES, WanAnimateComponents
from .errors import CorruptFileError, MissingComponentError, ShapeMismatchError, WanLoaderError, WrongModelError


def load_components(*args, **kwargs) -> WanAnimateComponents:
    from .load import load_components as _load
    return _load(*args, **kwargs)


def load_transformer(*args, **kwargs):
    from .load import load_transformer as _load
    return _load(*args, **kwargs)


def inspect(path, files=None) -> dict:
    from .inspection import inspect as _inspect
    return _inspect(path, files)


def convert(src, dst, to: str, dtype=None, **kwargs):
    from .convert import convert as _convert
    return _convert(src, dst, to, dtype, **kwargs)


def download(repo_id: str | None = None, dir: str | None = None, components=None) -> str:
    from .hub import DIFFUSERS_REPO, download as _download
    return _download(repo_id or DIFFUSERS_REPO, dir, components)


__all__ = ["COMPONENT_NAMES", "WanAnimateComponents", "load_components", "load_transformer", "inspect", "convert",
           "download", "WanLoaderError", "CorruptFileError", "MissingComponentError", "ShapeMismatchError",
           "WrongModelError"]
