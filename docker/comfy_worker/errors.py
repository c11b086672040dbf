"""Readable job failures: ComfyUI's node_errors and execution errors turned into sentences a user can act on."""
from __future__ import annotations

# Which models/ folder a core (or our) loader input reads from. Inputs not listed here are matched by the folder
# listing ComfyUI reports (see describe_prompt_error's `model_folders`).
MODEL_INPUT_FOLDERS = {
    "ckpt_name": "checkpoints",
    "unet_name": "diffusion_models",
    "vae_name": "vae",
    "lora_name": "loras",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
    "control_net_name": "controlnet",
    "model_name": "upscale_models",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
    "audio_encoder_name": "audio_encoders",
}
CLASS_INPUT_FOLDERS = {
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    # this package's loaders (nodes/model_nodes.py, nodes/preprocess_nodes.py)
    ("WanAnimateModelLoader", "model"): "diffusion_models",
    ("WanAnimateModelLoader", "vae"): "vae",
    ("WanAnimateModelLoader", "text_encoder"): "text_encoders",
    ("WanAnimateModelLoader", "clip_vision"): "clip_vision",
    ("WanAnimateLoraSelect", "lora"): "loras",
    ("WanAnimateFaceDetectorLoader", "pack"): "insightface",
    ("WanAnimatePoseModelLoader", "detector"): "detection",
    ("WanAnimatePoseModelLoader", "pose"): "detection",
}
INPUT_FILE_INPUTS = ("image", "file", "video", "audio")  # loader inputs that read ComfyUI's input folder
MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx", ".pt2")


class WorkerError(Exception):
    """A job failure with a stable code and a message meant for the person who sent the job."""

    def __init__(self, code: str, message: str, **details):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_result(self) -> dict:
        return {"error": f"[{self.code}] {self.message}", "details": self.details}


def node_label(node_id: str, prompt: dict | None, class_type: str | None = None) -> str:
    node = (prompt or {}).get(str(node_id)) or {}
    class_type = class_type or node.get("class_type") or "?"
    title = (node.get("_meta") or {}).get("title")
    named = f" '{title}'" if title and title != class_type else ""
    return f"node {node_id}{named} ({class_type})"


def _named_model_folder(class_type: str, input_name: str | None) -> str | None:
    """The models/ folder of a loader input known by its class and name, else None."""
    return CLASS_INPUT_FOLDERS.get((class_type, input_name)) or MODEL_INPUT_FOLDERS.get(input_name or "")


def model_folder_for(class_type: str, input_name: str, value, model_folders: dict | None) -> str | None:
    """The models/ folder a missing file belongs in, or None when the input is not a model file."""
    folder = _named_model_folder(class_type, input_name)
    if folder:
        return folder
    if not isinstance(value, str) or not value.lower().endswith(MODEL_SUFFIXES):
        return None
    return "the models folder this node reads"


def _folder_location(folder: str, model_folders: dict | None, models_root: str) -> str:
    """Where to put a file: a directory ComfyUI searches, preferring those under models_root and, among them, the
    one named like the folder (diffusion_models, not the legacy unet that ComfyUI lists first)."""
    paths = ((model_folders or {}).get(folder) or {}).get("paths") or []
    under_root = [p for p in paths if p.startswith(models_root.rstrip("/") + "/")] or paths
    if under_root:
        named = [p for p in under_root if p.rstrip("/").rsplit("/", 1)[-1] == folder]
        return (named or under_root)[0]
    return f"{models_root}/{folder}" if not folder.startswith("the ") else folder


def _prompt_value(prompt: dict | None, node_id, name: str | None):
    return (((prompt or {}).get(str(node_id)) or {}).get("inputs") or {}).get(name)


def _missing_input_file(label: str, name: str, value) -> str:
    return (f"Missing input file: {label} input '{name}' wants '{value}'; send it in the job's 'images' list with "
            "that name (each job sees only the files sent with it).")


def _flatten_node_error(node_id, entry: dict, prompt: dict | None, model_folders, models_root: str) -> list[str]:
    label = node_label(node_id, prompt, entry.get("class_type"))
    sentences = []
    for err in entry.get("errors", []):
        info = err.get("extra_info") or {}
        name = info.get("input_name")
        value = info.get("received_value")
        if err.get("type") == "value_not_in_list":
            options = (info.get("input_config") or [[]])[0]
            folder = model_folder_for(entry.get("class_type", ""), name or "", value, model_folders)
            if folder:
                where = _folder_location(folder, model_folders, models_root)
                have = f"; available there: {', '.join(map(str, options[:8]))}" if options else "; that folder is empty"
                sentences.append(
                    f"Missing model file: {label} input '{name}' wants '{value}', which is not in {where}{have}. "
                    f"Put the file in {where} (or fix the name)."
                )
                continue
            if name in INPUT_FILE_INPUTS:
                sentences.append(_missing_input_file(label, name, value))
                continue
            listed = ", ".join(map(str, options[:12])) if isinstance(options, list) else ""
            sentences.append(f"{label} input '{name}': {value!r} is not one of the allowed values ({listed}).")
        elif err.get("type") == "custom_validation_failed" and name in INPUT_FILE_INPUTS and "Invalid" in str(
                err.get("details")):
            sentences.append(_missing_input_file(label, name, _prompt_value(prompt, node_id, name)))
        elif err.get("type") == "custom_validation_failed" and (
                folder := _named_model_folder(entry.get("class_type", ""), name)):
            where = _folder_location(folder, model_folders, models_root)
            sentences.append(f"Missing model file: {label} input '{name}' wants '{_prompt_value(prompt, node_id, name)}'"
                             f", which is not in {where}. Put the file in {where} (or fix the name). ComfyUI: "
                             f"{err.get('details') or err.get('message')}")
        elif err.get("type") == "required_input_missing":
            sentences.append(f"{label} is missing its required input '{name}'; connect it or give it a value.")
        elif err.get("type") in ("value_bigger_than_max", "value_smaller_than_min"):
            limit = "max" if err["type"] == "value_bigger_than_max" else "min"
            bound = (info.get("input_config") or [None, {}])[1] or {}
            sentences.append(f"{label} input '{name}': {err.get('message', 'out of range')} "
                             f"(allowed {bound.get('min', '-inf')}..{bound.get('max', 'inf')}; the {limit}imum "
                             f"is ComfyUI's limit for this input).")
        else:
            detail = err.get("details") or ""
            detail = "" if detail == name else detail
            sentences.append(f"{label}{' input ' + repr(name) if name else ''}: {err.get('message', 'invalid')}"
                             f"{': ' + detail if detail else ''}.")
    return [s[:1].upper() + s[1:] for s in sentences]


def describe_prompt_error(body, prompt: dict | None, model_folders=None, models_root: str = "models") -> WorkerError:
    """Turn a /prompt 400 response into one WorkerError whose message lists every problem as a sentence."""
    if not isinstance(body, dict):
        return WorkerError("invalid_workflow", f"ComfyUI refused the workflow: {str(body)[:2000]}")
    error = body.get("error") or {}
    node_errors = body.get("node_errors") or {}
    sentences = []
    for node_id, entry in sorted(node_errors.items(), key=lambda kv: str(kv[0])):
        sentences.extend(_flatten_node_error(node_id, entry, prompt, model_folders, models_root))
    etype = error.get("type", "invalid_prompt")
    if not sentences:
        detail = error.get("details") or ""
        sentences.append(f"{error.get('message', 'ComfyUI refused the workflow')}{' (' + detail + ')' if detail else ''}.")
    code = "missing_model" if any(s.startswith("Missing model file") for s in sentences) else "invalid_workflow"
    return WorkerError(code, "ComfyUI refused the workflow. " + " ".join(sentences), comfy_error_type=etype,
                       node_errors=node_errors)


def missing_nodes_error(missing: dict[str, list[str]], hints: dict[str, str] | None = None) -> WorkerError:
    """missing: class_type -> node ids that use it; hints: class_type -> what deploys it (core nodes of a newer
    ComfyUI that a profile pins)."""
    hints = hints or {}
    parts = [f"'{cls}' (used by node{'s' if len(ids) > 1 else ''} {', '.join(ids)})" for cls, ids in sorted(missing.items())]
    message = f"The workflow uses node types this worker does not have: {'; '.join(parts)}."
    if hints:
        message += " " + ". ".join(hints[c] for c in sorted(hints)) + "."
    if set(missing) - set(hints):
        message += " Install the custom node packs that provide the others in the image (build argument " \
                   "REGISTRY_NODES, Comfy Registry ids) or remove those nodes."
    return WorkerError("needs_newer_comfyui" if set(missing) <= set(hints) else "missing_custom_nodes", message,
                       missing_node_types=sorted(missing))


def describe_execution_error(data: dict, prompt: dict | None) -> WorkerError:
    """A websocket/history execution_error message as one sentence (traceback kept in details, not the message)."""
    label = node_label(data.get("node_id", "?"), prompt, data.get("node_type"))
    etype = (data.get("exception_type") or "Exception").rsplit(".", 1)[-1]
    msg = (data.get("exception_message") or "").strip()
    code = "missing_model" if etype == "FileNotFoundError" else "execution_error"
    return WorkerError(code, f"{label} failed while running: {etype}: {msg}", traceback=data.get("traceback"))
