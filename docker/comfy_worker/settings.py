"""Worker configuration, read once from the environment (the only place the worker reads os.environ)."""
from __future__ import annotations

import ipaddress
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path


def _int(env, name: str, default: int) -> int:
    raw = env.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def _float(env, name: str, default: float) -> float:
    raw = env.get(name, "")
    try:
        return float(raw) if raw.strip() else default
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None


def _list(env, name: str, default: str) -> tuple[str, ...]:
    return tuple(p.strip().lower() for p in env.get(name, default).split(",") if p.strip())


@dataclass(frozen=True)
class BucketSettings:
    """S3-compatible storage for outputs too large to return inline. The secret never appears in repr()."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    name: str
    region: str | None
    presign_expires_s: int

    @classmethod
    def from_env(cls, env) -> "BucketSettings | None":
        endpoint = env.get("BUCKET_ENDPOINT_URL", "").strip()
        if not endpoint:
            return None
        name = env.get("BUCKET_NAME", "").strip() or _bucket_from_endpoint(endpoint)
        return cls(
            endpoint_url=endpoint,
            access_key_id=env.get("BUCKET_ACCESS_KEY_ID", ""),
            secret_access_key=env.get("BUCKET_SECRET_ACCESS_KEY", ""),
            name=name,
            region=env.get("BUCKET_REGION") or None,
            presign_expires_s=_int(env, "BUCKET_PRESIGN_EXPIRES_S", 24 * 3600),
        )


def _bucket_from_endpoint(endpoint: str) -> str:
    """RunPod's convention: https://<bucket>.s3.<region>.amazonaws.com names the bucket in its first host label."""
    from urllib.parse import urlparse

    host = urlparse(endpoint).hostname or ""
    label = host.split(".")[0]
    if not label or host.replace(".", "").isdigit() or host == "localhost":
        raise ValueError(
            f"BUCKET_ENDPOINT_URL={endpoint!r} does not name a bucket in its host; set BUCKET_NAME as well"
        )
    return label


@dataclass(frozen=True)
class WorkerSettings:
    comfy_url: str = "http://127.0.0.1:8188"
    comfy_start_command: tuple[str, ...] = ()
    comfy_log_path: Path = Path("/tmp/comfyui.log")
    comfy_pid_file: Path | None = None
    startup_timeout_s: float = 300.0
    health_timeout_s: float = 20.0
    job_timeout_s: float = 1800.0
    max_input_bytes: int = 100 * 1024 * 1024
    input_url_schemes: tuple[str, ...] = ("https",)
    input_url_allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    input_url_timeout_s: float = 60.0
    inline_max_bytes: int = 7 * 1024 * 1024
    progress_interval_s: float = 1.0
    bucket: BucketSettings | None = None
    model_strategy: str = "baked"
    comfyui_dir: Path = Path("/comfyui")
    volume_dir: Path = Path("/runpod-volume")
    comfy_base_dir: Path = Path("/comfyui")
    profile: str = "animate"
    built_profiles: tuple[str, ...] = ("animate",)

    @property
    def comfy_dirs(self) -> dict[str, Path]:
        """ComfyUI's input/output/temp folders (its --base-directory, COMFY_BASE_DIR): jobs get subfolders there."""
        return {kind: self.comfy_base_dir / kind for kind in ("input", "output", "temp")}

    @property
    def models_root(self) -> Path:
        """Where model files belong under the chosen strategy (used in messages and by the doctor)."""
        return self.volume_dir / "models" if self.model_strategy in ("volume", "download") else self.comfyui_dir / "models"

    @classmethod
    def from_env(cls, env=None) -> "WorkerSettings":
        env = os.environ if env is None else env
        networks = tuple(
            ipaddress.ip_network(n, strict=False) for n in _list(env, "WORKER_INPUT_URL_ALLOW_NETWORKS", "")
        )
        pid_file = env.get("COMFY_PID_FILE", "").strip()
        built = _list(env, "WORKER_PROFILES", "animate") or ("animate",)  # what the image was built with
        return cls(
            comfy_url=env.get("COMFY_URL", cls.comfy_url).rstrip("/"),
            comfy_start_command=tuple(shlex.split(env.get("COMFY_START_COMMAND", ""))),
            comfy_log_path=Path(env.get("COMFY_LOG_PATH", str(cls.comfy_log_path))),
            comfy_pid_file=Path(pid_file) if pid_file else None,
            startup_timeout_s=_float(env, "COMFY_STARTUP_TIMEOUT_S", cls.startup_timeout_s),
            health_timeout_s=_float(env, "COMFY_HEALTH_TIMEOUT_S", cls.health_timeout_s),
            job_timeout_s=_float(env, "WORKER_JOB_TIMEOUT_S", cls.job_timeout_s),
            max_input_bytes=_int(env, "WORKER_MAX_INPUT_BYTES", cls.max_input_bytes),
            input_url_schemes=_list(env, "WORKER_INPUT_URL_SCHEMES", "https"),
            input_url_allow_networks=networks,
            input_url_timeout_s=_float(env, "WORKER_INPUT_URL_TIMEOUT_S", cls.input_url_timeout_s),
            inline_max_bytes=_int(env, "WORKER_INLINE_MAX_BYTES", cls.inline_max_bytes),
            progress_interval_s=_float(env, "WORKER_PROGRESS_INTERVAL_S", cls.progress_interval_s),
            bucket=BucketSettings.from_env(env),
            model_strategy=_strategy(env),
            comfyui_dir=Path(env.get("COMFYUI_DIR", str(cls.comfyui_dir))),
            volume_dir=Path(env.get("RUNPOD_VOLUME_DIR", str(cls.volume_dir))),
            comfy_base_dir=Path(env.get("COMFY_BASE_DIR") or env.get("COMFYUI_DIR") or str(cls.comfy_base_dir)),
            built_profiles=built,
            profile=(env.get("WORKER_PROFILE") or "").strip().lower() or built[0],
        )


MODEL_STRATEGIES = ("baked", "volume", "download")


def _strategy(env) -> str:
    value = env.get("MODEL_STRATEGY", "baked").strip().lower() or "baked"
    if value not in MODEL_STRATEGIES:
        raise ValueError(f"MODEL_STRATEGY={value!r}: use one of {', '.join(MODEL_STRATEGIES)}")
    return value
