"""Input files of a job (images, videos): base64 or URL, size-capped, SSRF-safe, safely named, uploaded to ComfyUI.

A job lists them as {"images": [{"name": "ref.png", "image": "<base64 or data: URI>"}, {"name": "drive.mp4",
"url": "https://..."}]} ("files" is accepted as an alias, "data" as an alias of "image"). The workflow refers to
each by its name; a name changed by sanitising is rewritten in the workflow too.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver

from .errors import WorkerError
from .settings import WorkerSettings

MAX_REDIRECTS = 5
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


def address_refusal(ip: str, settings: WorkerSettings) -> str | None:
    """Why a URL may not reach this address (loopback, private, link-local, ...), or None when it may."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if getattr(addr, "ipv4_mapped", None):
        addr = addr.ipv4_mapped
    if any(addr in net for net in settings.input_url_allow_networks):
        return None
    for attr, what in (("is_loopback", "loopback"), ("is_unspecified", "unspecified"), ("is_link_local", "link-local"),
                       ("is_multicast", "multicast"), ("is_private", "private"), ("is_reserved", "reserved")):
        if getattr(addr, attr):
            return f"{addr} is a {what} address"
    if not addr.is_global:
        return f"{addr} is not a public address"
    return None


class UnsafeAddress(OSError):
    pass


class CheckedResolver(AbstractResolver):
    """Resolves with the system resolver and refuses the host if ANY of its addresses is not public.

    aiohttp connects to exactly the addresses returned here, so a name cannot re-resolve elsewhere in between."""

    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self._inner = ThreadedResolver()

    async def resolve(self, host, port=0, family=socket.AF_INET):
        infos = await self._inner.resolve(host, port, family)
        for info in infos:
            why = address_refusal(info["host"], self.settings)
            if why:
                raise UnsafeAddress(f"{host} resolves to {why}")
        return infos

    async def close(self):
        await self._inner.close()


def _check_url(url: str, settings: WorkerSettings) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in settings.input_url_schemes:
        raise WorkerError("url_refused", f"URL {url!r}: scheme '{parts.scheme}' is not allowed (allowed: "
                          f"{', '.join(settings.input_url_schemes)}; WORKER_INPUT_URL_SCHEMES)")
    if not parts.hostname:
        raise WorkerError("url_refused", f"URL {url!r} has no host")
    if parts.username or parts.password:
        raise WorkerError("url_refused", "URLs with credentials in them are not accepted")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return
    why = address_refusal(str(literal), settings)
    if why:
        raise WorkerError("url_refused", f"URL host refused: {why} (only public addresses are fetched)")


async def fetch_url(name: str, url: str, settings: WorkerSettings) -> bytes:
    """GET a URL with scheme/address checks on every redirect hop, a size cap and a timeout."""
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(settings), force_close=True)
    timeout = aiohttp.ClientTimeout(total=settings.input_url_timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for _ in range(MAX_REDIRECTS + 1):
            _check_url(url, settings)
            try:
                async with session.get(url, allow_redirects=False) as r:
                    if r.status in (301, 302, 303, 307, 308) and "Location" in r.headers:
                        url = urljoin(url, r.headers["Location"])
                        continue
                    if r.status != 200:
                        raise WorkerError("url_failed", f"input '{name}': GET {_redact(url)} answered HTTP {r.status}")
                    if (r.content_length or 0) > settings.max_input_bytes:
                        raise _too_large(name, r.content_length, settings)
                    chunks, size = [], 0
                    async for chunk in r.content.iter_chunked(1 << 20):
                        size += len(chunk)
                        if size > settings.max_input_bytes:
                            raise _too_large(name, size, settings)
                        chunks.append(chunk)
                    return b"".join(chunks)
            except aiohttp.ClientConnectorError as e:
                if isinstance(e.os_error, UnsafeAddress):
                    raise WorkerError("url_refused", f"input '{name}': {e.os_error} (only public addresses are "
                                      "fetched)") from None
                raise WorkerError("url_failed", f"input '{name}': cannot connect to {urlsplit(url).hostname}: "
                                  f"{e.os_error}") from None
            except asyncio.TimeoutError:
                raise WorkerError("url_failed", f"input '{name}': download did not finish within "
                                  f"{settings.input_url_timeout_s:.0f} s") from None
        raise WorkerError("url_failed", f"input '{name}': more than {MAX_REDIRECTS} redirects")


def _too_large(name: str, size: int, settings: WorkerSettings) -> WorkerError:
    return WorkerError("input_too_large", f"input '{name}' is over {size} bytes; the limit is "
                       f"{settings.max_input_bytes} bytes (WORKER_MAX_INPUT_BYTES)")


def _redact(url: str) -> str:
    """Drop the query string (often a signature or token) from URLs that appear in messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}{'?…' if parts.query else ''}"


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


def rename_references(prompt: dict, renames: dict[str, str]) -> None:
    """Point string widget values that named an input file by its original name at the stored name."""
    if not renames:
        return
    for node in prompt.values():
        inputs = node.get("inputs", {})
        for key, value in inputs.items():
            if isinstance(value, str) and value in renames:
                inputs[key] = renames[value]
