"""The job's workflow: API or editor (UI) format, checked against the server's node types, with overrides applied.

UI-format graphs are converted by comfy-cli's converter against the server's /object_info (the only source of
which inputs are widgets and in what order)."""
from __future__ import annotations

import copy
from typing import Callable

from comfy_cli.workflow_to_api import WorkflowConversionError, convert_ui_to_api, is_api_format, is_subgraph_uuid

from .errors import WorkerError, missing_nodes_error, node_label

UI_ONLY_TYPES = {"Note", "MarkdownNote", "PrimitiveNode", "GetNode", "SetNode", "Reroute"}
_MUTED_OR_BYPASSED = (2, 4)


def is_ui_format(workflow) -> bool:
    return isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list) and "links" in workflow


def _malformed(where: str, what: str) -> WorkerError:
    return WorkerError("invalid_workflow", f"The editor workflow is malformed: {where} {what}. Save it again from "
                       "the editor (Workflow > Save), or send the API format (Export (API)).")


def _check_ui_nodes(nodes, where: str) -> None:
    if not isinstance(nodes, list):
        raise _malformed(where, "'nodes' must be a list")
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise _malformed(f"{where} node #{i + 1}", "is not an object")
        if not isinstance(node.get("type"), str) or not node["type"]:
            raise _malformed(f"{where} node {node.get('id', '#' + str(i + 1))}", "has no node type (a string)")
        if isinstance(node.get("id"), (dict, list)) or node.get("id") is None:
            raise _malformed(f"{where} node #{i + 1} ({node['type']})", "has no id")
        for key in ("inputs", "outputs", "widgets_values"):
            if node.get(key) is not None and not isinstance(node[key], (list, dict) if key == "widgets_values" else list):
                raise _malformed(f"{where} node {node['id']} ({node['type']})", f"has '{key}' that is not a list")


def _check_ui_links(links, where: str) -> None:
    if not isinstance(links, list):
        raise _malformed(where, "'links' must be a list")
    for link in links:
        if not (isinstance(link, list) and len(link) >= 5) and not (isinstance(link, dict) and "id" in link):
            raise _malformed(where, f"has a link that is not [id, from node, from slot, to node, to slot, type]: "
                             f"{str(link)[:80]}")


def check_ui_structure(workflow: dict) -> list[dict]:
    """The shape the converter relies on; returns the subgraph definitions."""
    _check_ui_nodes(workflow["nodes"], "the workflow's")
    _check_ui_links(workflow["links"], "the workflow")
    definitions = workflow.get("definitions") or {}
    if not isinstance(definitions, dict):
        raise _malformed("'definitions'", "must be an object")
    subgraphs = definitions.get("subgraphs") or []
    if not isinstance(subgraphs, list):
        raise _malformed("'definitions.subgraphs'", "must be a list")
    for i, sg in enumerate(subgraphs):
        if not isinstance(sg, dict) or not isinstance(sg.get("id"), str):
            raise _malformed(f"subgraph definition #{i + 1}", "has no id")
        _check_ui_nodes(sg.get("nodes") or [], f"subgraph '{sg.get('name') or sg['id']}'")
        _check_ui_links(sg.get("links") or [], f"subgraph '{sg.get('name') or sg['id']}'")
    return subgraphs


def _ui_missing_types(workflow: dict, object_info: dict) -> dict[str, list[str]]:
    definitions = check_ui_structure(workflow)
    subgraphs = {sg["id"] for sg in definitions}
    nodes = list(workflow["nodes"])
    for sg in definitions:
        nodes.extend(sg.get("nodes") or [])
    missing: dict[str, list[str]] = {}
    for node in nodes:
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


def to_api_prompt(workflow, object_info: dict, hints: Callable[[list[str]], dict[str, str]] = lambda m: {}) -> dict:
    """An API-format prompt from either format; names every node type the server lacks (hints: what deploys them)."""
    if is_ui_format(workflow):
        missing = _ui_missing_types(workflow, object_info)
        if missing:
            raise missing_nodes_error(missing, hints(list(missing)))
        try:
            prompt = convert_ui_to_api(workflow, object_info)
        except WorkflowConversionError as e:
            raise WorkerError("invalid_workflow", f"The UI-format workflow could not be converted: {e}") from None
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            raise _malformed("the workflow", f"has a part the converter cannot read ({type(e).__name__}: "
                             f"{str(e)[:200]})") from None
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
        raise missing_nodes_error(missing, hints(list(missing)))
    return prompt


def check_cycles(prompt: dict) -> None:
    """Name a loop of links (ComfyUI cannot order nodes that feed each other)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in prompt:
        if state.get(start):
            continue
        path, stack = [], [(start, iter(_sources(prompt, start)))]
        state[start] = 1
        path.append(start)
        while stack:
            node_id, sources = stack[-1]
            nxt = next(sources, None)
            if nxt is None:
                state[node_id] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                loop = (path[path.index(nxt):] + [nxt])[::-1]
                described = " -> ".join(node_label(n, prompt) for n in loop)
                raise WorkerError("invalid_workflow", f"The workflow has a cycle: {described} (each feeds the "
                                  "next). ComfyUI cannot run nodes that depend on each other; remove one of "
                                  "these links.", cycle=loop)
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(_sources(prompt, nxt))))


def _sources(prompt: dict, node_id: str) -> list[str]:
    """Node ids linked into node_id's inputs ([source id, output index] values)."""
    found = []
    for value in (prompt[node_id].get("inputs") or {}).values():
        if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt and isinstance(value[1], int):
            found.append(str(value[0]))
    return found


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
