"""Input files of a job (images, videos): base64 or URL, size-capped, SSRF-safe, safely named, uploaded to ComfyUI.

A job lists them as {"images": [{"name": "ref.png", "image": "<base64 or data: URI>"}, {"name": "drive.mp4",
"url": "https://..."}]} ("files" is accepted as an alias, "data" as an alias of "image"). The workflow refers to
each by its name; the file is stored in the job's namespace (namespace.py) and the workflow's references are
rewritten to it (file_refs.py).
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from .errors import WorkerError
from .settings import WorkerSettings
from .url_guard import fetch_url

_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class InputFile:
    original_name: str
    name: str
    data: bytes


def sanitize_name(name: str, index: int = 0) -> str:
    """A flat file name with no directory parts, no leading dots and only [A-Za-z0-9._-]."""
    base = str(name).replace("\\", "/").split("/")[-1].strip()
    base = _SAFE_CHARS.sub("_", base).lstrip(".")[-120:]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return base if stem.strip("_") else f"input_{index}{'.' + base.rsplit('.', 1)[1] if '.' in base else ''}"


def decode_base64(name: str, text: str, max_bytes: int) -> bytes:
    if not isinstance(text, str):
        raise WorkerError("bad_input", f"input '{name}': base64 data must be a string")
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    text = "".join(text.split())
    if len(text) * 3 // 4 > max_bytes + 3:
        raise WorkerError("input_too_large", f"input '{name}' is about {len(text) * 3 // 4} bytes; the limit is "
                          f"{max_bytes} bytes (WORKER_MAX_INPUT_BYTES)")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise WorkerError("bad_input", f"input '{name}' is not valid base64 ({e})") from None


def job_file_entries(job_input: dict) -> list[dict]:
    entries = []
    for key in ("images", "files"):
        value = job_input.get(key) or []
        if not isinstance(value, list):
            raise WorkerError("bad_input", f"'{key}' must be a list of {{name, image|url}} objects")
        entries.extend(value)
    return entries


async def load_input_files(job_input: dict, settings: WorkerSettings) -> list[InputFile]:
    files, seen = [], set()
    for i, entry in enumerate(job_file_entries(job_input)):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise WorkerError("bad_input", f"input file #{i + 1} needs a 'name' and 'image' (base64) or 'url'")
        original = str(entry["name"])
        name = sanitize_name(original, i)
        if name in seen:
            raise WorkerError("bad_input", f"two input files are both named '{name}'")
        seen.add(name)
        payload = entry.get("image", entry.get("data"))
        if entry.get("url"):
            data = await fetch_url(original, str(entry["url"]), settings)
        elif payload is not None:
            data = decode_base64(original, payload, settings.max_input_bytes)
        else:
            raise WorkerError("bad_input", f"input file '{original}' has neither 'image' (base64) nor 'url'")
        files.append(InputFile(original, name, data))
    return files
