"""ComfyProcess ends the ComfyUI it started, whatever that process does, with real child processes.

The "ComfyUI" here is a Python child that ignores SIGTERM and starts a grandchild that ignores it too (what a node's
worker process or a stuck CUDA teardown looks like from outside). Windows has no process groups: its path is forced
on Linux by removing os.killpg (Popen.terminate is SIGTERM there, so the escalation to Popen.kill is real). A process
that outlives SIGKILL (uninterruptible I/O: a hung GPU driver or network disk) cannot be made here: that test drops
the SIGKILL on its way to the kernel, and delivers it later.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.comfyui_server import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "docker"))

from comfy_worker.comfy_process import ComfyProcess  # noqa: E402
from comfy_worker.settings import WorkerSettings  # noqa: E402

STUBBORN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE)
    child.stdout.readline()
    open(sys.argv[1], "w").write(str(child.pid))
    time.sleep(600)
""")


def _state(pid: int) -> str | None:
    """The process' state letter (R, S, Z, ...) or None when it no longer exists."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def _start_stubborn(tmp_path: Path) -> tuple[ComfyProcess, int]:
    pid_file = tmp_path / "grandchild.pid"
    settings = WorkerSettings(comfy_start_command=(sys.executable, "-c", STUBBORN, str(pid_file)),
                              comfy_log_path=tmp_path / "comfyui.log")
    process = ComfyProcess(settings)
    process.term_grace_s, process.kill_wait_s = 0.5, 10.0
    process.start()
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and process.exited() is None, process.log_tail()
        time.sleep(0.05)
    return process, int(pid_file.read_text())


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; forces Windows on Linux")


def test_stop_escalates_to_sigkill_for_the_whole_group_and_reaps(tmp_path):
    process, grandchild = _start_stubborn(tmp_path)
    leader = process.proc.pid
    began = time.monotonic()
    process.stop()
    assert process.proc.returncode == -signal.SIGKILL and time.monotonic() - began < 5
    assert _state(leader) is None  # reaped: no zombie left behind
    deadline = time.monotonic() + 10  # the orphaned grandchild is reaped by init, not by us
    while _state(grandchild) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(grandchild) in (None, "Z")
    assert process.unreaped == []


def test_forced_windows_path_terminates_then_kills_the_process(tmp_path, monkeypatch):
    """Without os.killpg only the process itself is signalled (Windows kills no process tree this way)."""
    process, grandchild = _start_stubborn(tmp_path)
    monkeypatch.delattr(os, "killpg")
    try:
        process.stop()  # terminate() is ignored, kill() after term_grace_s is not
        assert process.proc.returncode == -signal.SIGKILL and _state(process.proc.pid) is None
        process.start()
        process.kill()  # straight to Popen.kill
        assert process.proc.returncode == -signal.SIGKILL and _state(process.proc.pid) is None
    finally:
        os.kill(grandchild, signal.SIGKILL)


def test_process_outliving_sigkill_is_reaped_later_not_raised(tmp_path, monkeypatch, caplog):
    process, grandchild = _start_stubborn(tmp_path)
    os.kill(grandchild, signal.SIGKILL)
    stuck = process.proc
    real_killpg = os.killpg

    def killpg_dropping_sigkill(pgid, sig):
        if sig != signal.SIGKILL:
            real_killpg(pgid, sig)

    monkeypatch.setattr(os, "killpg", killpg_dropping_sigkill)
    process.kill_wait_s = 0.5
    with caplog.at_level(logging.ERROR, logger="comfy_worker.process"):
        process.kill()  # was: subprocess.TimeoutExpired out of the job
    assert f"pid {stuck.pid}) is still there" in caplog.text
    assert process.unreaped == [stuck] and _state(stuck.pid) not in (None, "Z")
    monkeypatch.setattr(os, "killpg", real_killpg)
    process.start()  # the worker goes on with a new ComfyUI
    try:
        assert process.proc is not stuck and process.exited() is None
        real_killpg(stuck.pid, signal.SIGKILL)  # the I/O returned: the kernel delivers the kill
        deadline = time.monotonic() + 10
        while _state(stuck.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(stuck.pid) == "Z"  # exited, not yet reaped
        process.reap()
        assert process.unreaped == [] and _state(stuck.pid) is None and stuck.returncode == -signal.SIGKILL
    finally:
        process.kill()
