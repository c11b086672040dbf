"""Downloads from the Hugging Face Hub: only the files the loader needs, resumable, HF cache and offline honoured."""
from __future__ import annotations

import os

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
_ORIGINAL_PATTERNS = {
    "transformer": ["config.json", "diffusion_pytorch_model*.safetensors*"], "vae": ["Wan2.1_VAE.pth"],
    "text_encoder": ["models_t5_umt5-xxl-enc-bf16.pth"], "tokenizer": ["google/umt5-xxl/*"],
    "image_encoder": ["models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"],
}


def is_repo_id(text: str) -> bool:
    """'owner/name' and not a path (no leading . or ~, no backslash): what to fetch from the Hub."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text


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
             patterns: list[str] | None = None, tqdm_class=None) -> str:
    """Fetch (or find in the cache) the needed files of `repo_id`; returns the local folder.

    With `dir` the files land there (a plain folder); otherwise in the HF cache. Interrupted downloads resume;
    with HF_HUB_OFFLINE=1 only the cache is used. `tqdm_class` shows the download's progress elsewhere (a node's bar).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    kwargs = dict(repo_id=repo_id, allow_patterns=patterns or allow_patterns(repo_id, components))
    if tqdm_class is not None:
        kwargs["tqdm_class"] = tqdm_class
    if dir is not None:
        kwargs["local_dir"] = dir
    else:
        kwargs["cache_dir"] = cache_dir()
    try:
        return snapshot_download(local_files_only=offline(), **kwargs)
    except LocalEntryNotFoundError as e:
        where = dir or cache_dir()
        why = "offline mode (HF_HUB_OFFLINE=1) is on" if offline() else "the Hub is unreachable"
        raise FileNotFoundError(
            f"{repo_id}: not in {where} and {why} "
            f"({e}). Download it on a machine with internet (`python -m wan_loader download {repo_id} --dir DIR`) "
            "and pass that folder, or unset HF_HUB_OFFLINE.") from None
