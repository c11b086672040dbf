"""Keep one ComfyUI available: attach to a running server, or start it (COMFY_START_COMMAND), wait a bounded time,
notice when it died or stopped answering (alive but hung: a health check with a deadline), and start it again."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time

from .comfy_client import ComfyClient
from .errors import WorkerError
from .settings import WorkerSettings

log = logging.getLogger("comfy_worker.process")


class ComfyProcess:
    """term_grace_s: how long stop() lets ComfyUI exit on SIGTERM before SIGKILL; kill_wait_s: how long to wait for
    a SIGKILLed process to be gone (a process in uninterruptible I/O, e.g. a hung GPU driver or network disk, outlives
    SIGKILL until the I/O returns)."""

    term_grace_s = 20.0
    kill_wait_s = 30.0

    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._log_file = None
        self.started_at = 0.0
        self.answered = False  # the running process has answered at least once (so silence now means hung)
        self.unreaped: list[subprocess.Popen] = []  # killed but not yet gone: reaped later, never left as zombies

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
        self.reap()
        cmd = list(self.settings.comfy_start_command)
        log.info("starting ComfyUI: %s", " ".join(cmd))
        self.settings.comfy_log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log_file:
            self._log_file.close()
        self._log_file = open(self.settings.comfy_log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at, self.answered = time.monotonic(), False
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
        """SIGTERM, then SIGKILL after term_grace_s (a process that ignores SIGTERM)."""
        self._end(self.term_grace_s)

    def kill(self) -> None:
        """SIGKILL at once (a hung or stopped process ignores SIGTERM)."""
        self._end(0.0)

    def _end(self, grace_s: float) -> None:
        """End the ComfyUI this worker started, with everything it started (its process group), and reap it. Where
        there are no process groups (Windows) the process itself is signalled (terminate, then kill). A process still
        there kill_wait_s after SIGKILL is logged and kept in `unreaped` for reap() instead of failing the job: the
        worker starts a new ComfyUI either way."""
        proc = self.proc
        if proc is None:
            return
        if grace_s > 0 and proc.poll() is None:
            _signal(proc, hard=False)
            _reap(proc, grace_s)
        _signal(proc, hard=True)  # also after the leader exited: children of it that ignored SIGTERM
        if not _reap(proc, self.kill_wait_s):
            log.error("ComfyUI (pid %d) is still there %.0f s after SIGKILL (stuck in uninterruptible I/O?); "
                      "starting a new one, the old one is reaped when it exits", proc.pid, self.kill_wait_s)
            self.unreaped.append(proc)
        self.reap()

    def reap(self) -> None:
        """Collect the exit status of killed processes that have exited since (so none stays a zombie)."""
        self.unreaped = [p for p in self.unreaped if p.poll() is None]

    def _restart(self, why: str) -> None:
        self.restarts += 1
        log.warning("ComfyUI %s; restarting it (restart %d)", why, self.restarts)
        self.kill()
        self.start()

    async def _answers(self, client: ComfyClient) -> bool:
        ok = await client.ping(timeout=self.settings.health_timeout_s)
        self.answered |= ok
        return ok

    async def ensure_running(self, client: ComfyClient) -> None:
        """Return once ComfyUI answers. A process this worker started is restarted when it exited, when it answered
        before but now misses the health deadline (hung), or when it never answered within the start-up timeout.
        An attached server (not started here) is waited for, up to the start-up timeout."""
        if await self._answers(client):
            return
        code = self.exited()
        if self.proc is None:
            if self.can_start:
                self.start()
        elif code is not None:
            self._restart(f"had exited (code {code})")
        elif self.answered:
            self._restart(f"did not answer within {self.settings.health_timeout_s:.0f} s (COMFY_HEALTH_TIMEOUT_S)")
        elif time.monotonic() - self.started_at > self.settings.startup_timeout_s:
            self._restart(f"did not answer within the start-up timeout ({self.settings.startup_timeout_s:.0f} s)")
        deadline = (self.started_at if self.proc else time.monotonic()) + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            if await client.ping(timeout=3):
                self.answered = True
                log.info("ComfyUI answers at %s", self.settings.comfy_url)
                return
            if self.exited() is not None:
                raise WorkerError(
                    "comfyui_failed_to_start",
                    f"ComfyUI exited with code {self.exited()} while starting. Last log lines:\n{self.log_tail()}",
                )
            await asyncio.sleep(0.5)
        how = "it was started by this worker; it is restarted for the next job" if self.proc else \
            "nothing is set to start it (COMFY_START_COMMAND)"
        raise WorkerError(
            "comfyui_unavailable",
            f"ComfyUI did not answer at {self.settings.comfy_url} within {self.settings.startup_timeout_s:.0f} s "
            f"({how}; raise COMFY_STARTUP_TIMEOUT_S if model loading is slow). Last log lines:\n{self.log_tail()}",
        )

    async def explain_death(self, client: ComfyClient) -> WorkerError | None:
        """After a connection failure: a WorkerError saying ComfyUI died (and restarting it), or None if it lives."""
        await asyncio.sleep(0.5)
        if await self._answers(client):
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


def _signal(proc: subprocess.Popen, hard: bool) -> None:
    """SIGKILL (hard) or SIGTERM to the process group that start() made (start_new_session); without process groups
    (Windows, which has neither killpg nor SIGKILL) Popen.kill / Popen.terminate on the process alone."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
        elif hard:
            proc.kill()
        else:
            proc.terminate()
    except (ProcessLookupError, PermissionError):
        pass  # already gone, with its whole group


def _reap(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait up to `timeout` for the process to exit and collect its status; False if it is still running."""
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False
