"""One job from start to finish: ComfyUI up, workflow converted and checked, inputs uploaded into the job's own
namespace, prompt run with progress, timeout and cancel withdrawing the prompt, outputs delivered, namespace removed.
Every failure becomes {"error": "[code] sentence"}."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import aiohttp

from .comfy_client import ComfyClient, ComfyUnreachable
from .comfy_process import ComfyProcess
from .errors import WorkerError, describe_execution_error, describe_prompt_error
from .file_refs import check_file_references, point_at_namespace
from .inputs import load_input_files
from .namespace import JobNamespace, sweep_stale
from .outputs import collect_outputs, deliver_outputs
from .profiles import core_node_hints
from .settings import WorkerSettings
from .workflow import apply_overrides, check_cycles, to_api_prompt

log = logging.getLogger("comfy_worker.job")

ProgressSink = Callable[[dict], None]


class Worker:
    """Holds what outlives a job: the settings, the ComfyUI process and its cached /object_info."""

    def __init__(self, settings: WorkerSettings | None = None):
        self.settings = settings or WorkerSettings.from_env()
        self.process = ComfyProcess(self.settings)
        self._server: tuple[int, dict, str | None] | None = None  # (restarts seen, /object_info, version)
        self._ended: list[EndedPrompt] = []  # prompts of ended jobs whose temp files are not deleted yet
        swept = sweep_stale(self.settings.comfy_dirs, older_than_s=2 * self.settings.job_timeout_s)
        if swept:
            log.info("removed %d job folders left by an earlier worker", swept)

    async def _server_info(self, client: ComfyClient) -> tuple[dict, str | None]:
        """(/object_info, ComfyUI version), fetched once per ComfyUI process."""
        if self._server is None or self._server[0] != self.process.restarts:
            version = ((await client.system_stats()).get("system") or {}).get("comfyui_version")
            self._server = (self.process.restarts, await client.object_info(), version)
        return self._server[1], self._server[2]

    def _timeout(self, job_input: dict) -> float:
        asked = job_input.get("timeout_s")
        if asked is None:
            return self.settings.job_timeout_s
        if not isinstance(asked, (int, float)) or asked <= 0:
            raise WorkerError("bad_input", "'timeout_s' must be a positive number of seconds")
        return min(float(asked), self.settings.job_timeout_s)

    def _inline_max(self, job_input: dict) -> int:
        asked = (job_input.get("output") or {}).get("inline_max_bytes")
        if asked is None:
            return self.settings.inline_max_bytes
        if not isinstance(asked, int) or asked < 0:
            raise WorkerError("bad_input", "'output.inline_max_bytes' must be a non-negative integer")
        return min(asked, self.settings.inline_max_bytes)

    async def run(self, job: dict, progress: ProgressSink | None = None) -> dict:
        job_input = job.get("input")
        started = time.monotonic()
        try:
            if not isinstance(job_input, dict) or "workflow" not in job_input:
                raise WorkerError("bad_input", "the job input needs a 'workflow' (API or editor format)")
            timeout = self._timeout(job_input)
            inline_max = self._inline_max(job_input)
            namespace = JobNamespace.create(str(job.get("id", "")), self.settings.comfy_dirs)
            submission = Submission(str(uuid.uuid4()))
            async with aiohttp.ClientSession() as session:
                client = ComfyClient(self.settings.comfy_url, session)
                try:
                    await self.process.ensure_running(client)
                    await self._settle(client)
                    result = await self._run_with_deadline(client, job, submission, namespace, timeout, inline_max,
                                                           progress)
                finally:
                    await self._clean_up(client, submission, namespace)
            result["seconds"] = round(time.monotonic() - started, 3)
            return result
        except WorkerError as e:
            log.warning("job %s failed: [%s] %s", job.get("id"), e.code, e.message.splitlines()[0][:300])
            return e.to_result()
        except Exception as e:  # noqa: BLE001 - a bug or an unexpected answer: one sentence, never a traceback
            log.exception("job %s failed unexpectedly", job.get("id"))
            return WorkerError("internal_error", f"The worker failed unexpectedly ({type(e).__name__}: "
                               f"{str(e)[:300]}); the worker's log has the details.").to_result()

    async def _run_with_deadline(self, client, job, submission, namespace, timeout, inline_max, progress) -> dict:
        """The prompt's run, bounded by the job's timeout; a timeout or a cancel withdraws the prompt."""
        try:
            return await asyncio.wait_for(self._run_prompt(
                client, job, job["input"], submission, namespace, inline_max, progress), timeout)
        except asyncio.TimeoutError:
            await self._withdraw(client, submission)
            raise WorkerError("timeout", f"The job did not finish within {timeout:.0f} s (timeout_s / "
                              f"WORKER_JOB_TIMEOUT_S); its prompt {submission.prompt_id} was removed from "
                              "ComfyUI's queue and interrupted.", prompt_id=submission.prompt_id) from None
        except asyncio.CancelledError:
            log.info("job %s cancelled: withdrawing ComfyUI prompt %s", job.get("id"), submission.prompt_id)
            await self._withdraw(client, submission)
            raise
        except (ComfyUnreachable, aiohttp.ClientConnectionError) as e:
            died = await self.process.explain_death(client)
            raise died or WorkerError("comfyui_unreachable", f"Lost ComfyUI at {self.settings.comfy_url}: "
                                      f"{e}") from None

    async def _clean_up(self, client: ComfyClient, submission: "Submission", namespace: JobNamespace) -> None:
        """Whatever the outcome: the job's folders go now; a prompt that was submitted is remembered until it has
        stopped, then its previews (and anything it saved after the job ended) go too."""
        namespace.remove()
        if submission.task is not None:
            self._ended.append(EndedPrompt(submission.prompt_id, namespace, self.process.restarts))
        await self._settle(client)

    async def _settle(self, client: ComfyClient) -> None:
        """Finish the clean-up of ended jobs whose prompt has stopped: delete the temp files their prompt history
        lists (previews carry names ComfyUI picks, outside any namespace) and their folders once more. A prompt
        ComfyUI still runs or queues waits for the next call; a restarted ComfyUI emptied temp/ when it started."""
        for ended in list(self._ended):
            if ended.restarts == self.process.restarts:
                try:
                    if ended.prompt_id in await client.queued_ids():
                        continue
                    entry = await client.history(ended.prompt_id) or {}
                except (ComfyUnreachable, aiohttp.ClientError) as e:
                    log.warning("clean-up of prompt %s postponed: %s", ended.prompt_id, e)
                    return
                for f in collect_outputs(entry, include_temp=True):
                    if f.type == "temp":
                        ended.namespace.remember_temp(f.subfolder, f.filename)
            ended.namespace.remove()
            if ended in self._ended:
                self._ended.remove(ended)

    async def _withdraw(self, client: ComfyClient, submission: "Submission") -> None:
        """Take the job's prompt back. A submission still in flight is awaited first (ComfyUI queues a prompt only
        after validating it; the POST has its own HTTP timeout), then the prompt is deleted from the queue and
        interrupted, repeatedly until ComfyUI no longer lists it: an interrupt that lands between ComfyUI taking
        the prompt and starting it is reset by ComfyUI and lost."""
        if submission.task is None:
            return
        try:
            await asyncio.shield(submission.task)
        except (ComfyUnreachable, aiohttp.ClientError) as e:
            log.warning("submission of prompt %s failed (%s); withdrawing anyway", submission.prompt_id, e)
        deadline = time.monotonic() + self.settings.health_timeout_s
        try:
            while True:
                await asyncio.shield(client.withdraw(submission.prompt_id))
                if submission.prompt_id not in await client.queued_ids() or time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.2)
        except (ComfyUnreachable, aiohttp.ClientError) as e:
            log.warning("could not withdraw prompt %s: %s", submission.prompt_id, e)

    async def _run_prompt(self, client, job, job_input, submission, namespace, inline_max, progress) -> dict:
        object_info, version = await self._server_info(client)
        prompt = to_api_prompt(job_input["workflow"], object_info, lambda missing: core_node_hints(missing, version))
        apply_overrides(prompt, job_input.get("overrides"), object_info)
        check_cycles(prompt)
        uploads = {}
        for f in await load_input_files(job_input, self.settings):
            uploads[f.original_name] = await client.upload(f.name, f.data, namespace.subfolder)
        point_at_namespace(prompt, uploads, namespace, object_info)
        check_file_references(prompt, object_info, namespace)

        client_id = uuid.uuid4().hex
        on_event = ProgressTracker(progress, prompt, self.settings.progress_interval_s) if progress else None
        async with client.websocket(client_id) as ws:
            submission.task = asyncio.ensure_future(client.queue_prompt(prompt, client_id, submission.prompt_id))
            status, body = await asyncio.shield(submission.task)
            if status != 200:
                folders = await client.model_folders()
                raise describe_prompt_error(body, prompt, folders, str(self.settings.models_root))
            outcome = await client.follow(ws, submission.prompt_id, on_event)
        files = collect_outputs(outcome.history, include_temp=bool(job_input.get("include_previews")))
        if outcome.status == "error":
            raise describe_execution_error(outcome.error or {}, prompt)
        if outcome.status == "interrupted":
            raise WorkerError("interrupted", "ComfyUI interrupted the job (someone called /interrupt).")
        outputs = await deliver_outputs(client, files, str(job.get("id", "")), inline_max, self.settings.bucket,
                                        namespace.public_subfolder)
        result = {"prompt_id": submission.prompt_id, "outputs": outputs}
        if not outputs:
            result["warning"] = "The workflow ran but saved no files (add a Save Image / Save Video node)."
        return result


@dataclass(eq=False)
class EndedPrompt:
    """The prompt of a job that has ended, and ComfyUI's restart count then (a restart empties temp/)."""

    prompt_id: str
    namespace: JobNamespace
    restarts: int


@dataclass
class Submission:
    """The job's prompt id (chosen by the worker) and the POST /prompt in flight, which a timeout must outwait."""

    prompt_id: str
    task: asyncio.Future | None = None


class ProgressTracker:
    """Turns ComfyUI's websocket events into progress payloads: which node runs, its own value/max, and how many of
    the prompt's nodes are done; sent at most every `interval` seconds (and always when a node's bar completes)."""

    def __init__(self, sink: ProgressSink, prompt: dict, interval: float):
        self.sink, self.prompt, self.interval = sink, prompt, interval
        self.total = len(prompt)
        self.started: list[str] = []
        self.cached: set[str] = set()
        self._last = 0.0

    def __call__(self, etype: str, data: dict) -> None:
        node = str(data.get("node")) if data.get("node") is not None else None
        value = maximum = None
        if etype == "execution_cached":
            self.cached.update(map(str, data.get("nodes") or []))
            return
        if etype == "executing" and node and node not in self.started:
            self.started.append(node)
        if etype == "progress":
            value, maximum = data.get("value"), data.get("max")
        now = time.monotonic()
        finished_bar = maximum and value == maximum
        if now - self._last < self.interval and not finished_bar:
            return
        self._last = now
        to_run = max(1, self.total - len(self.cached))
        done = max(0, len(self.started) - 1) + (1 if finished_bar else 0)
        self.sink({
            "node": node, "class_type": self.prompt.get(node or "", {}).get("class_type"), "value": value,
            "max": maximum, "nodes_done": min(done, to_run), "nodes_total": to_run,
            "percent": round(100.0 * min(done, to_run) / to_run, 1),
        })
