"""Every file a workflow produced (images, videos, animated images, gifs, audio): base64 inline when the job's
results stay under the inline budget, otherwise uploaded to S3-compatible storage with a presigned URL."""
from __future__ import annotations

import asyncio
import base64
import mimetypes
import uuid
from dataclasses import dataclass

from .comfy_client import ComfyClient
from .errors import WorkerError
from .settings import BucketSettings

VIDEO_EXT = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"}
AUDIO_EXT = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a"}
EXTRA_TYPES = {".webp": "image/webp", ".mkv": "video/x-matroska", ".webm": "video/webm", ".flac": "audio/flac",
               ".opus": "audio/opus", ".safetensors": "application/octet-stream", ".latent": "application/octet-stream"}


@dataclass
class OutputFile:
    node_id: str
    key: str
    filename: str
    subfolder: str
    type: str
    animated: bool = False

    @property
    def ext(self) -> str:
        return ("." + self.filename.rsplit(".", 1)[-1].lower()) if "." in self.filename else ""

    @property
    def kind(self) -> str:
        if self.ext in VIDEO_EXT:
            return "video"
        if self.ext == ".gif":
            return "gif"
        if self.ext in AUDIO_EXT:
            return "audio"
        if self.animated:
            return "animated"
        return "image" if self.key == "images" else self.key

    @property
    def content_type(self) -> str:
        return EXTRA_TYPES.get(self.ext) or mimetypes.guess_type(self.filename)[0] or "application/octet-stream"


def collect_outputs(history_entry: dict, include_temp: bool = False) -> list[OutputFile]:
    """Files listed under any key of any node's output (images, gifs, videos, audio, ...) that this prompt wrote.

    A node ComfyUI answered from its cache lists the temp files of the earlier prompt that ran it (removed with
    that prompt's job): those are skipped."""
    files = []
    cached = cached_nodes(history_entry)
    for node_id, output in (history_entry.get("outputs") or {}).items():
        animated = bool(output.get("animated") and any(output.get("animated")))
        for key, items in output.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if not (isinstance(item, dict) and item.get("filename")):
                    continue
                kind = item.get("type", "output")
                if kind != "output" and (not include_temp or str(node_id) in cached):
                    continue
                files.append(OutputFile(str(node_id), key, item["filename"], item.get("subfolder", ""), kind,
                                        animated))
    return files


def cached_nodes(history_entry: dict) -> set[str]:
    """The nodes ComfyUI did not run for this prompt but took from its cache (its execution_cached message)."""
    for kind, data in (history_entry.get("status") or {}).get("messages") or []:
        if kind == "execution_cached":
            return {str(n) for n in (data or {}).get("nodes") or []}
    return set()


def _s3_client(bucket: BucketSettings):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=bucket.endpoint_url, aws_access_key_id=bucket.access_key_id or None,
        aws_secret_access_key=bucket.secret_access_key or None, region_name=bucket.region,
        config=Config(signature_version="s3v4", retries={"max_attempts": 3}),
    )


def upload_to_bucket(bucket: BucketSettings, key: str, data: bytes, content_type: str) -> str:
    """Put one object with its Content-Type and return a presigned GET URL (errors never carry the secret)."""
    client = _s3_client(bucket)
    try:
        client.put_object(Bucket=bucket.name, Key=key, Body=data, ContentType=content_type)
        return client.generate_presigned_url("get_object", Params={"Bucket": bucket.name, "Key": key},
                                             ExpiresIn=bucket.presign_expires_s)
    except Exception as e:  # botocore raises many types; report which bucket and why, never credentials
        raise WorkerError("upload_failed", f"uploading {key} to bucket '{bucket.name}' at {bucket.endpoint_url} "
                          f"failed: {type(e).__name__}: {str(e)[:300]}") from None


async def deliver_outputs(client: ComfyClient, files: list[OutputFile], job_id: str, inline_max_bytes: int,
                          bucket: BucketSettings | None, public_subfolder=lambda s: s) -> list[dict]:
    """Download each file; inline while the total stays under inline_max_bytes, upload the rest (largest last).

    public_subfolder maps ComfyUI's subfolder to the one reported (the job's namespace taken off)."""
    blobs = [(f, await client.download(f.__dict__)) for f in files]
    budget = inline_max_bytes
    results = []
    prefix = f"{job_id or 'job'}-{uuid.uuid4().hex[:8]}"
    for f, data in blobs:
        subfolder = public_subfolder(f.subfolder)
        entry = {"node_id": f.node_id, "filename": f.filename, "subfolder": subfolder, "kind": f.kind,
                 "content_type": f.content_type, "size": len(data)}
        if len(data) <= budget:
            budget -= len(data)
            entry["base64"] = base64.b64encode(data).decode("ascii")
        elif bucket is None:
            raise WorkerError(
                "output_too_large",
                f"Output {f.filename} from node {f.node_id} is {len(data)} bytes, over what can be returned inline "
                f"({inline_max_bytes} bytes for the whole job, WORKER_INLINE_MAX_BYTES; RunPod refuses large "
                "results). Configure S3-compatible storage (BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, "
                "BUCKET_SECRET_ACCESS_KEY, optionally BUCKET_NAME) to receive a URL instead.",
                filename=f.filename, size=len(data),
            )
        else:
            key = f"{prefix}/{subfolder + '/' if subfolder else ''}{f.filename}"
            entry["url"] = await asyncio.to_thread(upload_to_bucket, bucket, key, data, f.content_type)
            entry["bucket_key"] = key
        results.append(entry)
    return results
