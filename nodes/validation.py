"""Validation of widget values before a prompt runs, by the libraries' own checks.

ComfyUI calls a node's `validate_inputs` with the values of the inputs it names; an input fed by a link is None there
(it is computed later) and is left to the check's default, and an optional input absent from the prompt keeps the
function's default (NOT_CONNECTED where that matters). ComfyUI files a refusal under every input the function names,
so each node names only a few related inputs (e.g. segment_length with guide_frames); the other values are checked by
the same library code when the node runs, before any work is done.
"""
from __future__ import annotations

from collections.abc import Callable

NOT_CONNECTED = object()  # validate_inputs default of an optional socket: nothing is linked to it


def check_message(check: Callable[..., object], **values) -> bool | str:
    """True when `check(**values)` accepts the known values, else its message (shown on the node, prompt refused).
    A check that needs a linked value is not called at all (`return value is None or check_message(...)`)."""
    given = {name: value for name, value in values.items() if value is not None}
    try:
        check(**given)
    except (ValueError, FileNotFoundError) as error:
        return str(error)
    return True


def as_int(value):
    """A numeric dropdown value ("1", "5") as an int; anything else as it is, for the check to name."""
    return int(value) if isinstance(value, str) and value.isdigit() else value
