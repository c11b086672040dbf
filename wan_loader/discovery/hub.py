"""Downloads from the Hugging Face Hub: only the files the loader needs, resumable, HF cache and offline honoured.

A download that fails on a transient network error (a dropped or timed-out connection, the Hub answering 408, 429 or
5xx) is tried again after a pause, resuming what it had; any other failure (no such repo, access refused, offline
mode, a full disk) is reported at once.
"""
from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

DIFFUSERS_REPO = "Wan-AI/Wan2.2-Animate-14B-Diffusers"
ORIGINAL_REPO = "Wan-AI/Wan2.2-Animate-14B"
UMT5_TOKENIZER_REPO = "google/umt5-xxl"
ANIMATE2_REPO = "Wan-AI/Wan2.2-Animate-2-14B-Diffusers"


def is_animate2_diffusers(repo_id: str) -> bool:
    """A Wan-Animate-2 Diffusers repo (the full one, its distilled sibling): modular layout, same folders."""
    return repo_id.startswith("Wan-AI/") and "Animate-2" in repo_id and repo_id.endswith("Diffusers")

_DIFFUSERS_PATTERNS = {
    "transformer": ["transformer/*"], "vae": ["vae/*"], "text_encoder": ["text_encoder/*"],
    "tokenizer": ["tokenizer/*"], "image_encoder": ["image_encoder/*"], "image_processor": ["image_processor/*"],
}
TRANSIENT_HTTP_STATUS = (408, 429, 500, 502, 503, 504)
# connection drops and timeouts of the HTTP clients huggingface_hub has used (httpx2, httpx, requests)
_TRANSPORT_ERRORS = (
    ("httpx2", ("TimeoutException", "NetworkError", "RemoteProtocolError")),
    ("httpx", ("TimeoutException", "NetworkError", "RemoteProtocolError")),
    ("requests.exceptions", ("ConnectionError", "Timeout", "ChunkedEncodingError")),
)
_log = logging.getLogger("wan_loader")
_ORIGINAL_PATTERNS = {
    "transformer": ["config.json", "diffusion_pytorch_model*.safetensors*"], "vae": ["Wan2.1_VAE.pth"],
    "text_encoder": ["models_t5_umt5-xxl-enc-bf16.pth"], "tokenizer": ["google/umt5-xxl/*"],
    "image_encoder": ["models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"],
}


@dataclass(frozen=True)
class Retries:
    """How often a download that failed on a transient network error is tried in all; the first pause is
    first_wait_s and each later one twice as long."""

    attempts: int = 4
    first_wait_s: float = 2.0


def is_repo_id(text: str) -> bool:
    """'owner/name' and not a path (no leading . or ~, no backslash, no drive colon as in `C:/models`): what to fetch
    from the Hub (repo ids never hold a colon)."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and not any(c in text for c in "\\:")


def is_transient(error: BaseException) -> bool:
    """A network failure worth retrying, anywhere in the exception's cause chain (huggingface_hub wraps a dropped
    connection into LocalEntryNotFoundError). Offline mode, missing repos and refused access are not."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    transport = _transport_error_types()
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OfflineModeIsEnabled):
            return False
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status is not None:
            return status in TRANSIENT_HTTP_STATUS
        if isinstance(error, transport):
            return True
        error = error.__cause__ or error.__context__
    return False


def _transport_error_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name, names in _TRANSPORT_ERRORS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found += [getattr(module, n) for n in names if isinstance(getattr(module, n, None), type)]
    return tuple(found)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def cache_dir() -> str:
    """The hub cache, read from the environment at call time (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return os.path.join(home, "hub")


def allow_patterns(repo_id: str, components=None) -> list[str]:
    """The files of a known Wan2.2-Animate repo that the given components need (all components by default)."""
    table = _ORIGINAL_PATTERNS if repo_id == ORIGINAL_REPO else _DIFFUSERS_PATTERNS
    wanted = components or list(table)
    if "text_encoder" in wanted and "tokenizer" not in wanted:
        wanted = [*wanted, "tokenizer"]
    if "image_encoder" in wanted and "image_processor" in table and "image_processor" not in wanted:
        wanted = [*wanted, "image_processor"]
    pats = ["model_index.json", "*/config.json", "*.json"] if table is _DIFFUSERS_PATTERNS else ["*.json"]
    for c in wanted:
        pats += table.get(c, [])
    if is_animate2_diffusers(repo_id):  # modular_model_index.json, no image_processor folder, a scheduler
        pats = [p for p in pats if not p.startswith("image_processor")] + ["scheduler/*"]
    elif repo_id not in (DIFFUSERS_REPO, ORIGINAL_REPO):
        pats = ["*.json", "*.safetensors", "*.pth", "*.model", "*.txt", "*/*"]
    return pats


def download(repo_id: str = DIFFUSERS_REPO, dir: str | None = None, components=None,
             patterns: list[str] | None = None, progress: Callable | None = None, retries: Retries = Retries(),
             endpoint: str | None = None) -> str:
    """Fetch (or find in the cache) the needed files of `repo_id`; returns the local folder.

    With `dir` the files land there (a plain folder); otherwise in the HF cache. Interrupted downloads resume;
    with HF_HUB_OFFLINE=1 only the cache is used. `progress(done, total)` follows the download; `endpoint` is a Hub
    mirror's URL (default: HF_ENDPOINT or huggingface.co).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    kwargs = dict(repo_id=repo_id, allow_patterns=patterns or allow_patterns(repo_id, components), endpoint=endpoint,
                  local_files_only=offline())
    if dir is not None:
        kwargs["local_dir"] = dir
    else:
        kwargs["cache_dir"] = cache_dir()
    if progress is not None:
        kwargs["tqdm_class"] = _reporting_tqdm(progress)
    attempts = 1 if offline() else max(1, retries.attempts)
    for attempt in range(1, attempts + 1):
        try:
            return snapshot_download(**kwargs)
        except Exception as error:  # noqa: BLE001 - only transient network errors are retried, the rest re-raised
            if attempt < attempts and is_transient(error):
                _pause(repo_id, error, attempt, attempts, retries)
                continue
            if not isinstance(error, LocalEntryNotFoundError):
                raise
            where = dir or cache_dir()
            why = "offline mode (HF_HUB_OFFLINE=1) is on" if offline() else "the Hub is unreachable"
            raise FileNotFoundError(
                f"{repo_id}: not in {where} and {why} ({error}). Download it on a machine with internet "
                f"(`python -m wan_loader download {repo_id} --dir DIR`) and pass that folder, or unset HF_HUB_OFFLINE."
            ) from None


def _pause(repo_id: str, error: BaseException, attempt: int, attempts: int, retries: Retries) -> None:
    wait = retries.first_wait_s * 2 ** (attempt - 1)
    reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
    _log.warning("Hub download of %s failed (%s); attempt %d of %d in %.0f s", repo_id, reason, attempt + 1,
                 attempts, wait)
    time.sleep(wait)


def _reporting_tqdm(progress: Callable):
    """A tqdm class forwarding the first bar huggingface_hub opens for the snapshot (bytes in huggingface_hub 1.x
    and later, files before) to `progress(done, total)`; the other bars only draw in the console."""
    from tqdm.auto import tqdm

    reporter: list = []

    class ReportingTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)  # huggingface_hub passes its bar names; plain tqdm refuses them
            super().__init__(*args, **kwargs)
            if not reporter:
                reporter.append(self)

        def update(self, n=1):
            shown = super().update(n)
            if reporter[0] is self:
                progress(int(self.n), int(self.total or 0))
            return shown

    return ReportingTqdm
