"""Async talk to one ComfyUI server over HTTP and its websocket (aiohttp, which the runpod SDK already brings)."""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Callable

import aiohttp

log = logging.getLogger("comfy_worker.client")


class ComfyUnreachable(Exception):
    """The server did not answer (not started, crashed, or restarting)."""


@dataclass
class RunResult:
    """What happened to one prompt: status is success, error or interrupted."""

    prompt_id: str
    status: str
    history: dict = field(default_factory=dict)
    error: dict | None = None


EventCallback = Callable[[str, dict], None]


class ComfyClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession):
        self.base_url = base_url.rstrip("/")
        self.session = session

    async def _get_json(self, path: str, timeout: float = 30):
        try:
            async with self.session.get(self.base_url + path, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                r.raise_for_status()
                return await r.json(content_type=None)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            raise ComfyUnreachable(f"ComfyUI at {self.base_url} did not answer {path}: {e or type(e).__name__}") from e

    async def _post_json(self, path: str, body, timeout: float = 30):
        """Returns (status, parsed body); HTTP error statuses are returned, not raised."""
        try:
            async with self.session.post(self.base_url + path, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                text = await r.text()
                try:
                    return r.status, json.loads(text) if text else None
                except ValueError:
                    return r.status, text
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            raise ComfyUnreachable(f"ComfyUI at {self.base_url} did not answer {path}: {e or type(e).__name__}") from e

    async def ping(self, timeout: float = 3) -> bool:
        try:
            await self._get_json("/system_stats", timeout=timeout)
            return True
        except (ComfyUnreachable, aiohttp.ClientResponseError):
            return False

    async def system_stats(self) -> dict:
        return await self._get_json("/system_stats")

    async def object_info(self) -> dict:
        return await self._get_json("/object_info", timeout=120)

    async def model_folders(self) -> dict[str, dict]:
        """{folder name: {"paths": [directories searched], "files": [names listed]}} for every model folder."""
        out = {}
        for entry in await self._get_json("/experiment/models"):
            try:
                files = await self._get_json(f"/models/{entry['name']}")
            except aiohttp.ClientResponseError:
                files = []
            out[entry["name"]] = {"paths": entry.get("folders", []), "files": files}
        return out

    async def upload(self, name: str, data: bytes, subfolder: str = "") -> str:
        """Upload bytes into ComfyUI's input folder; returns the name a loader node refers to."""
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name, content_type="application/octet-stream")
        form.add_field("overwrite", "true")
        if subfolder:
            form.add_field("subfolder", subfolder)
        try:
            async with self.session.post(self.base_url + "/upload/image", data=form,
                                         timeout=aiohttp.ClientTimeout(total=300)) as r:
                if r.status != 200:
                    raise RuntimeError(f"ComfyUI refused the upload of '{name}' (HTTP {r.status}: {(await r.text())[:300]})")
                body = await r.json(content_type=None)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            raise ComfyUnreachable(f"ComfyUI at {self.base_url} did not accept an upload: {e}") from e
        return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else body["name"]

    async def queue_prompt(self, prompt: dict, client_id: str, prompt_id: str):
        return await self._post_json("/prompt", {"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id})

    async def history(self, prompt_id: str) -> dict | None:
        return (await self._get_json(f"/history/{prompt_id}")).get(prompt_id)

    async def queued_ids(self) -> set[str]:
        """Ids of the prompts ComfyUI is running or holding in its queue."""
        queue = await self._get_json("/queue", timeout=10)
        return {item[1] for key in ("queue_running", "queue_pending") for item in queue.get(key, [])}

    async def withdraw(self, prompt_id: str) -> None:
        """Drop the prompt from the queue if it still waits, then stop it if it already runs (in that order, so it
        cannot start in between)."""
        await self._post_json("/queue", {"delete": [prompt_id]}, timeout=10)
        await self._post_json("/interrupt", {"prompt_id": prompt_id}, timeout=10)

    async def download(self, file_info: dict) -> bytes:
        params = {k: file_info.get(k, "") for k in ("filename", "subfolder", "type")}
        try:
            async with self.session.get(self.base_url + "/view", params=params,
                                        timeout=aiohttp.ClientTimeout(total=600)) as r:
                r.raise_for_status()
                return await r.read()
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            raise ComfyUnreachable(f"ComfyUI at {self.base_url} did not serve {params['filename']}: {e}") from e

    def websocket(self, client_id: str):
        ws_url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        return self.session.ws_connect(f"{ws_url}/ws?clientId={client_id}", heartbeat=20, max_msg_size=0)

    async def follow(self, ws, prompt_id: str, on_event: EventCallback | None = None,
                     poll_s: float = 2.0) -> RunResult:
        """Read websocket events until the prompt ends; polls /history when the socket is quiet (missed events).

        on_event gets the progress-related events (executing, execution_cached, progress) of this prompt."""
        while True:
            try:
                msg = await ws.receive(timeout=poll_s)
            except asyncio.TimeoutError:
                entry = await self.history(prompt_id)
                if entry and entry.get("status", {}).get("completed") is not None:
                    return _result_from_history(prompt_id, entry)
                continue
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSE,
                            aiohttp.WSMsgType.ERROR):
                raise ComfyUnreachable("ComfyUI closed the websocket during the job")
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue  # binary frames are previews
            event = json.loads(msg.data)
            etype, data = event.get("type"), event.get("data") or {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if on_event and etype in ("executing", "execution_cached", "progress"):
                on_event(etype, data)
            if etype == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                # Sent after the history entry is stored (execution_success/_error come before it).
                return _result_from_history(prompt_id, await self.history(prompt_id) or {})


def _result_from_history(prompt_id: str, entry: dict) -> RunResult:
    status = entry.get("status", {})
    if status.get("status_str") == "error":
        for kind, data in status.get("messages", []):
            if kind == "execution_error":
                return RunResult(prompt_id, "error", entry, data)
            if kind == "execution_interrupted":
                return RunResult(prompt_id, "interrupted", entry, data)
        return RunResult(prompt_id, "error", entry, {})
    return RunResult(prompt_id, "success", entry)
