"""Two-way key renaming from a table of templates, for the key maps of one component.

A table lists pairs (layout template, diffusers template). A template is a key with placeholders:
`{n}` matches a decimal index, `{p:weight|bias}` one of the listed words. The same table renames in both
directions, so a map and its inverse cannot drift apart. Keys that match no template are reported, never
passed through silently: they mean the file is not the component the caller thinks it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

Groups = dict[str, str]
_PLACEHOLDER = re.compile(r"\{(\w+)(?::([^}]*))?\}")


class _Template:
    def __init__(self, text: str):
        self.text = text
        parts, last = [], 0
        for m in _PLACEHOLDER.finditer(text):
            parts.append(re.escape(text[last : m.start()]))
            choices = m.group(2)
            body = "|".join(re.escape(c) for c in choices.split("|")) if choices else r"\d+"
            parts.append(f"(?P<{m.group(1)}>{body})")
            last = m.end()
        parts.append(re.escape(text[last:]))
        self.regex = re.compile("".join(parts))
        self.names = [m.group(1) for m in _PLACEHOLDER.finditer(text)]

    def match(self, key: str) -> Groups | None:
        m = self.regex.fullmatch(key)
        return m.groupdict() if m else None

    def fill(self, groups: Groups) -> str:
        missing = [n for n in self.names if n not in groups]
        if missing:
            raise ValueError(f"cannot fill {self.text!r}: no value for {missing} in {groups}")
        return _PLACEHOLDER.sub(lambda m: str(groups[m.group(1)]), self.text)


class KeyTable:
    """Renames keys between one layout ("layout" side) and the diffusers/transformers module ("diffusers" side)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        self.pairs = [(_Template(a), _Template(b)) for a, b in pairs]

    def rename(self, key: str, to_diffusers: bool, convert: Callable[[Groups], Groups] | None = None) -> str | None:
        """The key on the other side, or None when no template matches. `convert` rewrites the captured
        placeholders (for indices that are numbered differently on the two sides)."""
        for layout_t, diffusers_t in self.pairs:
            src, dst = (layout_t, diffusers_t) if to_diffusers else (diffusers_t, layout_t)
            groups = src.match(key)
            if groups is not None:
                return dst.fill(convert(groups) if convert else groups)
        return None

    def rename_all(
        self,
        keys: Iterable[str],
        to_diffusers: bool,
        what: str,
        convert: Callable[[Groups], Groups] | None = None,
    ) -> dict[str, str]:
        """{target: source} for every key; ValueError naming the keys that match nothing or collide."""
        out: dict[str, str] = {}
        unknown: list[str] = []
        for key in keys:
            target = self.rename(key, to_diffusers, convert)
            if target is None:
                unknown.append(key)
            elif target in out:
                raise ValueError(f"{what}: keys {out[target]!r} and {key!r} both map to {target!r}")
            else:
                out[target] = key
        if unknown:
            raise ValueError(
                f"{what}: {len(unknown)} key(s) are not part of this component: {_preview(unknown)}. "
                "Check that the file holds this component in this layout."
            )
        return out


def _preview(keys: list[str], most: int = 5) -> str:
    shown = ", ".join(repr(k) for k in keys[:most])
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


def require(shapes: dict[str, tuple], keys: Iterable[str], what: str) -> None:
    """ValueError listing the keys of `keys` that `shapes` lacks."""
    missing = [k for k in keys if k not in shapes]
    if missing:
        raise ValueError(f"{what}: missing key(s) {_preview(missing)}; the file is incomplete or another model.")
