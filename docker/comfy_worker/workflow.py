"""The job's workflow: API or editor (UI) format, checked against the server's node types, with overrides applied.

UI-format graphs are converted by comfy-cli's converter against the server's /object_info (the only source of
which inputs are widgets and in what order)."""
from __future__ import annotations

import copy

from comfy_cli.workflow_to_api import WorkflowConversionError, convert_ui_to_api, is_api_format, is_subgraph_uuid

from .errors import WorkerError, missing_nodes_error

UI_ONLY_TYPES = {"Note", "MarkdownNote", "PrimitiveNode", "GetNode", "SetNode", "Reroute"}
_MUTED_OR_BYPASSED = (2, 4)


def is_ui_format(workflow) -> bool:
    return isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list) and "links" in workflow


def _ui_missing_types(workflow: dict, object_info: dict) -> dict[str, list[str]]:
    subgraphs = {s.get("id") for s in (workflow.get("definitions") or {}).get("subgraphs", []) if isinstance(s, dict)}
    nodes = list(workflow["nodes"])
    for sg in (workflow.get("definitions") or {}).get("subgraphs", []):
        nodes.extend(n for n in sg.get("nodes", []) if isinstance(n, dict))
    missing: dict[str, list[str]] = {}
    for node in nodes:
        if not isinstance(node, dict):
            continue
        ntype = node.get("type")
        if (not ntype or ntype in UI_ONLY_TYPES or ntype in subgraphs or is_subgraph_uuid(ntype)
                or node.get("mode") in _MUTED_OR_BYPASSED or ntype in object_info):
            continue
        missing.setdefault(ntype, []).append(str(node.get("id")))
    return missing


def check_api_prompt(prompt) -> None:
    if not isinstance(prompt, dict) or not prompt:
        raise WorkerError("invalid_workflow", "'workflow' must be a non-empty JSON object (API or UI format)")
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise WorkerError("invalid_workflow", f"workflow node '{node_id}' has no 'class_type'; is this an "
                              "API-format workflow (Export (API)) or a UI workflow with 'nodes' and 'links'?")
        if not isinstance(node.get("inputs", {}), dict):
            raise WorkerError("invalid_workflow", f"workflow node '{node_id}': 'inputs' must be an object")


def to_api_prompt(workflow, object_info: dict) -> dict:
    """An API-format prompt from either format; names every node type the server lacks."""
    if is_ui_format(workflow):
        missing = _ui_missing_types(workflow, object_info)
        if missing:
            raise missing_nodes_error(missing)
        try:
            prompt = convert_ui_to_api(workflow, object_info)
        except WorkflowConversionError as e:
            raise WorkerError("invalid_workflow", f"The UI-format workflow could not be converted: {e}") from None
    elif isinstance(workflow, dict) and is_api_format(workflow):
        prompt = copy.deepcopy(workflow)
    else:
        raise WorkerError("invalid_workflow", "'workflow' is neither an API-format workflow ({id: {class_type, "
                          "inputs}}) nor an editor workflow ({nodes, links})")
    check_api_prompt(prompt)
    missing: dict[str, list[str]] = {}
    for node_id, node in prompt.items():
        if node["class_type"] not in object_info:
            missing.setdefault(node["class_type"], []).append(str(node_id))
    if missing:
        raise missing_nodes_error(missing)
    return prompt


def _known_inputs(class_type: str, object_info: dict) -> set[str]:
    spec = (object_info.get(class_type) or {}).get("input", {})
    return {name for section in ("required", "optional") for name in (spec.get(section) or {})}


def apply_overrides(prompt: dict, overrides, object_info: dict) -> None:
    """overrides: {node id or node title: {input name: value}}; a title must name exactly one node."""
    if not overrides:
        return
    if not isinstance(overrides, dict):
        raise WorkerError("bad_input", "'overrides' must map a node id or title to {input: value}")
    by_title: dict[str, list[str]] = {}
    for node_id, node in prompt.items():
        title = (node.get("_meta") or {}).get("title")
        if title:
            by_title.setdefault(title, []).append(node_id)
    for key, values in overrides.items():
        if not isinstance(values, dict):
            raise WorkerError("bad_input", f"overrides['{key}'] must be an object of input values")
        if str(key) in prompt:
            node_id = str(key)
        elif len(by_title.get(key, [])) == 1:
            node_id = by_title[key][0]
        elif by_title.get(key):
            raise WorkerError("bad_input", f"override '{key}': {len(by_title[key])} nodes have that title "
                              f"({', '.join(by_title[key])}); use a node id")
        else:
            raise WorkerError("bad_input", f"override '{key}': no node has that id or title")
        node = prompt[node_id]
        allowed = _known_inputs(node["class_type"], object_info) | set(node.get("inputs", {}))
        for name, value in values.items():
            if name not in allowed:
                raise WorkerError("bad_input", f"override '{key}': node {node_id} ({node['class_type']}) has no input "
                                  f"'{name}' (it has: {', '.join(sorted(allowed))})")
            node.setdefault("inputs", {})[name] = value
