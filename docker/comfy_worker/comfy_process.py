"""Keep one ComfyUI available: attach to a running server, or start it (COMFY_START_COMMAND), wait a bounded time,
notice when it died, and start it again for the next job."""
from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time

from .comfy_client import ComfyClient
from .errors import WorkerError
from .settings import WorkerSettings

log = logging.getLogger("comfy_worker.process")


class ComfyProcess:
    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._log_file = None

    @property
    def can_start(self) -> bool:
        return bool(self.settings.comfy_start_command)

    def exited(self) -> int | None:
        """The exit code of a ComfyUI this worker started and that has stopped; None while it runs (or if attached)."""
        return self.proc.poll() if self.proc else None

    def log_tail(self, chars: int = 1500) -> str:
        try:
            with open(self.settings.comfy_log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - chars))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def start(self) -> None:
        cmd = list(self.settings.comfy_start_command)
        log.info("starting ComfyUI: %s", " ".join(cmd))
        self.settings.comfy_log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log_file:
            self._log_file.close()
        self._log_file = open(self.settings.comfy_log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)
        if self.settings.comfy_pid_file:
            self.settings.comfy_pid_file.write_text(str(self.proc.pid))

    def prestart(self) -> None:
        """At worker boot: start ComfyUI right away (if this worker may and nothing answers) to save the first job
        the start-up time; ensure_running() then only waits."""
        import urllib.request

        if not self.can_start:
            return
        try:
            urllib.request.urlopen(self.settings.comfy_url + "/system_stats", timeout=2).close()
        except OSError:
            self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    async def ensure_running(self, client: ComfyClient) -> None:
        """Return once ComfyUI answers; start (or restart) it when this worker may; fail after startup_timeout_s."""
        if await client.ping():
            return
        code = self.exited()
        if self.proc is not None and code is None:
            pass  # still starting: wait for it below
        elif self.can_start:
            if self.proc is not None:
                self.restarts += 1
                log.warning("ComfyUI had exited (code %s); restarting it (restart %d)", code, self.restarts)
            self.start()
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            if await client.ping():
                log.info("ComfyUI answers at %s", self.settings.comfy_url)
                return
            if self.exited() is not None:
                raise WorkerError(
                    "comfyui_failed_to_start",
                    f"ComfyUI exited with code {self.exited()} while starting. Last log lines:\n{self.log_tail()}",
                )
            await asyncio.sleep(0.5)
        how = "it was started by this worker" if self.proc else "nothing is set to start it (COMFY_START_COMMAND)"
        raise WorkerError(
            "comfyui_unavailable",
            f"ComfyUI did not answer at {self.settings.comfy_url} within {self.settings.startup_timeout_s:.0f} s "
            f"({how}; raise COMFY_STARTUP_TIMEOUT_S if model loading is slow). Last log lines:\n{self.log_tail()}",
        )

    async def explain_death(self, client: ComfyClient) -> WorkerError | None:
        """After a connection failure: a WorkerError saying ComfyUI died (and restarting it), or None if it lives."""
        await asyncio.sleep(0.5)
        if await client.ping():
            return None
        code = self.exited()
        what = f"exited with code {code}" if code is not None else "stopped answering"
        tail = self.log_tail()
        restarted = ""
        if self.can_start:
            try:
                await self.ensure_running(client)
                restarted = " It has been restarted for the next job."
            except WorkerError as e:
                restarted = f" Restarting it failed too: {e.message}"
        return WorkerError(
            "comfyui_died",
            f"ComfyUI {what} during the job (often: out of memory or a crash in a node).{restarted} "
            f"Last log lines:\n{tail}",
            exit_code=code,
        )
