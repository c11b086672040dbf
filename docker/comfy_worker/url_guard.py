"""Fetching a job's input URL without letting it reach the worker's own network (SSRF guard).

The host is read exactly as the HTTP client reads it (yarl, the parser aiohttp uses: IDNA/UTS-46 folds fullwidth
digits and ideographic dots into ASCII), resolved once by the worker the way the socket layer would (getaddrinfo also
reads 2130706433, 0x7f.1, 0177.0.0.1, 127.1), and every address is vetted. The connection is then pinned to the
vetted addresses: the resolver answers only with them, and the socket factory refuses to dial any other address (the
last gate before connect(), so the address connected to is the address checked). All of this repeats on every
redirect hop.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from .errors import WorkerError
from .settings import WorkerSettings

MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


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


def client_host(url: str, settings: WorkerSettings) -> tuple[URL, str, int]:
    """(parsed URL, host, port) as aiohttp will use them; refuses schemes, credentials and hosts it cannot read."""
    try:
        parsed = URL(url)
        host, port = parsed.raw_host, parsed.port
    except (ValueError, UnicodeError) as e:
        raise WorkerError("url_refused", f"URL {redact(url)!r} cannot be read: {e}") from None
    if parsed.scheme.lower() not in settings.input_url_schemes:
        raise WorkerError("url_refused", f"URL {redact(url)!r}: scheme '{parsed.scheme}' is not allowed (allowed: "
                          f"{', '.join(settings.input_url_schemes)}; WORKER_INPUT_URL_SCHEMES)")
    if not host or port is None:
        raise WorkerError("url_refused", f"URL {redact(url)!r} has no host")
    if parsed.user or parsed.password:
        raise WorkerError("url_refused", "URLs with credentials in them are not accepted")
    if host.endswith(".."):
        host = host.rstrip(".") + "."  # what aiohttp's connector does before resolving
    return parsed, host, port


async def vetted_addresses(host: str, port: int, settings: WorkerSettings) -> list[dict]:
    """Resolve host like the socket layer and return aiohttp resolver entries, or refuse if ANY address is not public
    (a name with one private address could be answered with it on the next lookup)."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        infos = [(socket.AF_INET6 if literal.version == 6 else socket.AF_INET, (str(literal), port))]
    except ValueError:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise WorkerError("url_failed", f"the host {host!r} cannot be resolved ({e})") from None
        infos = [(family, sockaddr) for family, _, _, _, sockaddr in found]
    entries = []
    for family, sockaddr in infos:
        why = address_refusal(sockaddr[0], settings)
        if why:
            raise WorkerError("url_refused", f"URL host {host!r} refused: {why} (only public addresses are fetched)")
        entries.append({"hostname": host, "host": sockaddr[0], "port": port, "family": family, "proto": 0,
                        "flags": _NUMERIC})
    return entries


class UnvettedAddress(OSError):
    """A connection attempt to an address the guard did not vet for this hop."""


class PinnedResolver(AbstractResolver):
    """Answers only for hosts the worker vetted, with exactly the vetted addresses: no second lookup that a DNS
    answer could change (rebinding) between the check and the connect."""

    def __init__(self):
        self.pinned: dict[tuple[str, int], list[dict]] = {}

    def pin(self, host: str, port: int, entries: list[dict]) -> None:
        self.pinned = {(host, port): entries}

    def allowed(self) -> set:
        return {ipaddress.ip_address(e["host"]) for entries in self.pinned.values() for e in entries}

    async def resolve(self, host, port=0, family=socket.AF_INET):
        entries = self.pinned.get((host, port))
        if entries is None:
            raise UnvettedAddress(f"{host}:{port} was not vetted")
        return [e for e in entries if family in (socket.AF_UNSPEC, e["family"])] or entries

    async def close(self):
        self.pinned.clear()

    def socket_for(self, addr_info) -> socket.socket:
        """aiohttp's socket factory: the last gate before connect(), given the exact address about to be dialled."""
        family, type_, proto, _, sockaddr = addr_info
        if ipaddress.ip_address(sockaddr[0].split("%", 1)[0]) not in self.allowed():
            raise UnvettedAddress(f"{sockaddr[0]} was not vetted for this request")
        return socket.socket(family, type_, proto)


async def fetch_url(name: str, url: str, settings: WorkerSettings) -> bytes:
    """GET a URL with the host vetted and pinned on every redirect hop, a size cap and a timeout."""
    resolver = PinnedResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, force_close=True, use_dns_cache=False,
                                     socket_factory=resolver.socket_for)
    timeout = aiohttp.ClientTimeout(total=settings.input_url_timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for _ in range(MAX_REDIRECTS + 1):
            parsed, host, port = client_host(url, settings)
            resolver.pin(host, port, await vetted_addresses(host, port, settings))
            try:
                async with session.get(parsed, allow_redirects=False) as r:
                    if r.status in _REDIRECTS and "Location" in r.headers:
                        url = str(parsed.join(URL(r.headers["Location"])))
                        continue
                    if r.status != 200:
                        raise WorkerError("url_failed", f"input '{name}': GET {redact(url)} answered HTTP {r.status}")
                    return await _read_capped(name, r, settings)
            except asyncio.TimeoutError:
                raise WorkerError("url_failed", f"input '{name}': download from {redact(url)} did not finish within "
                                  f"{settings.input_url_timeout_s:.0f} s (WORKER_INPUT_URL_TIMEOUT_S)") from None
            except aiohttp.ClientConnectorError as e:
                if isinstance(e.os_error, UnvettedAddress):
                    raise WorkerError("url_refused", f"input '{name}': {e.os_error}") from None
                raise WorkerError("url_failed", f"input '{name}': cannot connect to the file host {host}: "
                                  f"{e.os_error}") from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as e:
                raise WorkerError("url_failed", f"input '{name}': the file host {host} closed the connection before "
                                  f"sending the whole file ({type(e).__name__}); try again or use another host") from None
            except aiohttp.ClientError as e:
                raise WorkerError("url_failed", f"input '{name}': downloading {redact(url)} failed: "
                                  f"{type(e).__name__}: {e}") from None
        raise WorkerError("url_failed", f"input '{name}': more than {MAX_REDIRECTS} redirects")


async def _read_capped(name: str, r: aiohttp.ClientResponse, settings: WorkerSettings) -> bytes:
    if (r.content_length or 0) > settings.max_input_bytes:
        raise _too_large(name, r.content_length, settings)
    chunks, size = [], 0
    async for chunk in r.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > settings.max_input_bytes:
            raise _too_large(name, size, settings)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(name: str, size: int, settings: WorkerSettings) -> WorkerError:
    return WorkerError("input_too_large", f"input '{name}' is over {size} bytes; the limit is "
                       f"{settings.max_input_bytes} bytes (WORKER_MAX_INPUT_BYTES)")


def redact(url: str) -> str:
    """Drop the query string (often a signature or token) from URLs that appear in messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}{'?…' if parts.query else ''}"
