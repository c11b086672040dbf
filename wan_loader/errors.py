"""Errors the loader raises: each names the file, says what is wrong and what to do about it.

All derive from WanLoaderError (a ValueError), so callers (nodes, CLI) can show `str(err)` to the user as is.
"""
from __future__ import annotations


class WanLoaderError(ValueError):
    """Base class: the message is meant for the user."""


class CorruptFileError(WanLoaderError):
    """A weights file is truncated, not a weights file, or its header is damaged."""


class WrongModelError(WanLoaderError):
    """A real model, but not the one asked for: not Wan2.2-Animate, another component, or (preprocessing's model
    files) another kind of ONNX model than the slot needs."""


class MissingComponentError(WanLoaderError):
    """A component was asked for but no file holding it was found."""

    def __init__(self, message: str, found: dict | None = None, looked: list[str] | None = None,
                 missing: list[str] | None = None):
        super().__init__(message)
        self.found = found or {}
        self.looked = looked or []
        self.missing = missing or []


class ShapeMismatchError(WanLoaderError):
    """The weights do not fit the model built from the config (wrong config, wrong model, or a damaged file)."""


def missing_component_message(missing: list[str], found: dict[str, str], looked: list[str]) -> str:
    lines = [f"Missing Wan2.2-Animate component(s): {', '.join(missing)}."]
    found_text = "; ".join(f"{k} ({v})" for k, v in found.items()) if found else "nothing usable."
    lines.append("Found: " + found_text)
    lines.append("Looked in: " + ("; ".join(looked) if looked else "(nowhere)"))
    lines.append(
        "Put the missing files next to the others (any file name: the layout is read from the file contents), pass "
        "them "
        "explicitly (files={component: path}), or download them with `python -m wan_loader download`."
    )
    return "\n".join(lines)
