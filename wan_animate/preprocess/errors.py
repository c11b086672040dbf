"""Errors raised for bad preprocessing input: each says what is wrong, where, and what to do.

They derive from ValueError so callers that only know "bad input" can catch them without importing this module.
"""
from __future__ import annotations


class PreprocessError(ValueError):
    """Base class for input the preprocessing cannot work with."""


class VideoReadError(PreprocessError):
    """The driving video (or a mask video) cannot be decoded or has no frames."""


class ImageReadError(PreprocessError):
    """An image file cannot be decoded."""


class InputSizeError(PreprocessError):
    """An image or video whose size cannot be turned into a valid working size."""


class NoPersonError(PreprocessError):
    """No person was found where one is required (the whole driving video, or the reference for retargeting)."""


class MaskInputError(PreprocessError):
    """An external character-mask sequence that does not fit the driving video."""
