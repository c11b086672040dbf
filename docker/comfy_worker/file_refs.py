"""File names inside the workflow: pointed at the job's namespace, and refused when they reach outside it.

ComfyUI's own loaders join a widget value onto their folder (`os.path.join(input_dir, value)`), so `../x`, `/etc/x`,
`C:\\x`, a symlink or `name [output]` reads any file the server can. LoadImage's check only asks whether the file
exists, and V3 combos (LoadVideo) are not validated at submit time at all: the guard has to be here, before submit.
"""
from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

from .errors import WorkerError, node_label
from .namespace import ROOT, JobNamespace

_ANNOTATIONS = {" [input]": "input", " [output]": "output", " [temp]": "temp"}
_DRIVE = re.compile(r"^[A-Za-z]:")
_UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "file_upload", "animated_image_upload")
# How ComfyUI 0.3.64's core nodes name the files they write (read from nodes.py, comfy_extras/, comfy_api/ and
# comfy_api_nodes/): a text input joined under output/ (temp/ for LossGraphNode) by get_save_image_path:
# `filename_prefix` (SaveImage, SaveLatent, SaveAnimatedWEBP/PNG, SaveVideo, SaveWEBM, SaveAudio/MP3/Opus,
# SaveSVGNode, SaveGLB, CheckpointSave, CLIPSave, VAESave, ModelSave, ImageOnlyCheckpointSave, LoraSave,
# LossGraphNode) or SaveLoRANode's `prefix`. Previews (PreviewImage, MaskPreview, PreviewAudio, V3 nodes' previews)
# go to temp/ under random names (the job removes them by its prompt's history). The Tripo and Rodin 3D API nodes
# write into output/ under names their service returns: no input can confine them.
SAVE_PATH_INPUTS = ("filename_prefix", "prefix")
UNCONFINED_WRITERS = {"comfy_api_nodes.nodes_tripo": "Tripo 3D", "comfy_api_nodes.nodes_rodin": "Rodin 3D"}


def _input_specs(class_type: str, object_info: dict) -> dict:
    spec = (object_info.get(class_type) or {}).get("input", {})
    return {**(spec.get("optional") or {}), **(spec.get("required") or {})}


def _is_combo(spec) -> bool:
    return isinstance(spec, (list, tuple)) and bool(spec) and (isinstance(spec[0], list) or spec[0] == "COMBO")


def _options(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def reads_input_folder(spec) -> str | None:
    """The folder ("input" or "output") a combo with an upload button reads from, else None."""
    if not _is_combo(spec):
        return None
    opts = _options(spec)
    if any(opts.get(flag) for flag in _UPLOAD_FLAGS):
        return opts.get("image_folder") or "input"
    return None


def _is_path_text(key: str, spec) -> bool:
    """A free-text input that custom nodes read as a file or folder path (VHS' video/directory paths, ...)."""
    return (isinstance(spec, (list, tuple)) and bool(spec) and spec[0] == "STRING"
            and any(word in key.lower() for word in ("path", "directory", "folder")))


def path_problem(value: str) -> str | None:
    """Why a file-name value reaches outside its folder, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if value.startswith(("/", "\\", "~")) or _DRIVE.match(value):
        return "is an absolute path"
    if ".." in re.split(r"[\\/]", value):
        return "climbs out of the folder with '..'"
    return None


def save_path_inputs(class_type: str, object_info: dict) -> dict[str, str]:
    """{input name: default} of the text inputs by which a node names the files it writes: `filename_prefix` (any
    node), and `prefix` on output nodes (SaveLoRANode)."""
    info = object_info.get(class_type) or {}
    found = {}
    for key, spec in _input_specs(class_type, object_info).items():
        if key in SAVE_PATH_INPUTS and (key == "filename_prefix" or info.get("output_node")):
            found[key] = str(_options(spec).get("default", "ComfyUI"))
    return found


def point_at_namespace(prompt: dict, uploads: dict[str, str], namespace: JobNamespace, object_info: dict) -> None:
    """Names the job uploaded -> where ComfyUI stored them (uploads: original name -> stored reference); every save
    node's path input (also one the workflow left out: its default) -> under the job's output subfolder. A path input
    fed by another node, a prefix that leaves the job's folder, and nodes that write where no input says are refused."""
    for node_id, node in prompt.items():
        label = node_label(node_id, prompt)
        service = UNCONFINED_WRITERS.get((object_info.get(node["class_type"]) or {}).get("python_module"))
        if service:
            raise WorkerError("path_refused", f"{label} is a {service} API node, which saves its files into "
                              "ComfyUI's output folder under names the service picks, outside this job's folder; "
                              "the worker does not run it.")
        inputs = node.setdefault("inputs", {})
        saves = save_path_inputs(node["class_type"], object_info)
        for key, value in inputs.items():
            if key not in saves and isinstance(value, str) and value in uploads:
                inputs[key] = uploads[value]
        for key, default in saves.items():
            value = inputs.get(key, default)
            where = f"{label} input '{key}'"
            if not isinstance(value, str):
                raise WorkerError("path_refused", f"{where} is connected to another node; the worker files each job's "
                                  "outputs under the job's own folder from the text in this widget, so type the "
                                  "name there.")
            why = path_problem(value) or ("names no file" if posixpath.normpath(value) == "." else None)
            if why:
                raise WorkerError("path_refused", f"{where}: '{value}' {why}; it names a file under this job's part "
                                  "of ComfyUI's output folder (e.g. 'video/wan').")
            inputs[key] = namespace.output_prefix(value)


def check_file_references(prompt: dict, object_info: dict, namespace: JobNamespace) -> None:
    """Refuse combo values that escape their folder, and input-file values that name another job's files, a
    symlink leading out, or another folder through an annotation ("x.png [output]")."""
    for node_id, node in prompt.items():
        specs = _input_specs(node["class_type"], object_info)
        for key, value in node.get("inputs", {}).items():
            spec = specs.get(key)
            where = f"{node_label(node_id, prompt)} input '{key}'"
            why = path_problem(value) if isinstance(value, str) and _is_path_text(key, spec) else None
            if why:
                raise WorkerError("path_refused", f"{where}: '{value}' {why}; paths typed into "
                                  "custom nodes must stay inside ComfyUI's folders.")
            if not isinstance(value, str) or not _is_combo(spec):
                continue
            folder = reads_input_folder(spec)
            name, annotated = _strip_annotation(value)
            why = path_problem(name)
            if why:
                raise WorkerError("path_refused", f"{where}: '{value}' {why}. Send the file in the job's 'images' "
                                  "list and refer to it by its name.")
            if folder is None:
                continue
            base = annotated or folder
            if annotated and annotated != folder and not namespace.owns(os.path.dirname(name)):
                raise WorkerError("path_refused", f"{where}: '{value}' reads ComfyUI's {annotated} folder; only files "
                                  "sent with this job can be loaded.")
            if name.startswith(ROOT + "/") and not namespace.owns(os.path.dirname(name)):
                raise WorkerError("path_refused", f"{where}: '{value}' belongs to another job; only files sent with "
                                  "this job can be loaded.")
            _check_inside(namespace.dirs[base], name, where, value)


def _check_inside(base: Path, name: str, where: str, value: str) -> None:
    """A symlink (anywhere along the path) must not lead out of the folder."""
    path = base / name
    if not os.path.lexists(path):
        return  # missing: ComfyUI's validation names it
    root = os.path.realpath(base)
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        raise WorkerError("path_refused", f"{where}: '{value}' is a link that leads out of ComfyUI's input folder.")


def _strip_annotation(value: str) -> tuple[str, str | None]:
    """As ComfyUI's folder_paths.annotated_filepath reads it (it cuts the suffix and the character before it)."""
    for suffix, folder in _ANNOTATIONS.items():
        if value.endswith(suffix.strip()):
            return value[: -len(suffix)], folder
    return value, None
