"""The package's layering, read from the source with ast (nothing is imported): the libraries stay free of ComfyUI,
data flows wan_loader -> wan_animate -> nodes, no import cycles, and nodes/ holds no model code.

Every import statement counts, function-local ones included: a function-local import dodges a cycle at load time but
is still a dependency."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIBRARIES = ("wan_loader", "wan_animate")
# ComfyUI's top-level modules and packages (and this repository's ComfyUI-only packages)
COMFYUI_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "comfy_config", "folder_paths",
                   "execution", "server", "latent_preview", "node_helpers", "nodes", "app", "utils"}
# model definitions: nodes/ reaches models only through wan_loader / wan_animate functions
MODEL_DEFINITIONS = ("torch.nn", "diffusers", "transformers", "wan_loader.model", "wan_animate.engine.forward",
                     "wan_animate.engine.animate2.forward", "wan_animate.preprocess.models")
def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(*packages: str) -> dict[str, Path]:
    return {module_name(p): p for package in packages for p in sorted((REPO / package).rglob("*.py"))}


KNOWN = package_modules(*LIBRARIES, "nodes")


def imported_names(path: Path, own: str | None = None) -> list[str]:
    """Every module an import statement in `path` (module `own`) names, relative ones resolved; `from m import x`
    names m.x when that is a module of this repository, else m."""
    own = own or module_name(path)
    package = own.split(".") if path.name == "__init__.py" else own.split(".")[:-1]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            submodules = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in KNOWN]
            names += submodules if len(submodules) == len(node.names) else [module, *submodules]
    return names


def repo_module(name: str) -> str | None:
    """The longest prefix of `name` that is a module of this repository."""
    parts = name.split(".")
    return next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in KNOWN), None)


def import_graph(modules: dict[str, Path], group=lambda m: m) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target in filter(None, map(repo_module, imported_names(path))):
            if target in modules and group(target) != group(name):
                graph[group(name)].add(group(target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while not component or node not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.append(component)

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def offending_imports(modules: dict[str, Path], forbidden) -> list[str]:
    return [f"{path.relative_to(REPO)} imports {name}" for path in modules.values()
            for name in imported_names(path) if forbidden(name)]


def is_under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("library", LIBRARIES)
def test_libraries_import_nothing_from_comfyui(library):
    assert offending_imports(package_modules(library), lambda n: n.split(".")[0] in COMFYUI_MODULES) == []


def test_wan_loader_imports_nothing_from_wan_animate():
    assert offending_imports(package_modules("wan_loader"), lambda n: is_under(n, ["wan_animate"])) == []


def test_no_import_cycles_between_library_modules():
    assert cycles(import_graph(package_modules(*LIBRARIES))) == []


def test_no_import_cycles_between_wan_loader_subpackages():
    """wan_loader is layered: errors, dtypes and the weight formats (fp8, int8_convrot) at the bottom; io, keymaps, model, discovery, lora, testing above
    them, none of which closes a cycle with another."""
    def subpackage(name: str) -> str:
        return ".".join(name.split(".")[:2])

    assert cycles(import_graph(package_modules("wan_loader"), subpackage)) == []


def test_nodes_hold_no_model_code():
    """nodes/ is thin: no torch.nn.Module subclasses, and no imports of model definitions."""
    modules = package_modules("nodes")
    assert offending_imports(modules, lambda n: is_under(n, MODEL_DEFINITIONS)) == []
    subclasses = [f"{path.relative_to(REPO)}: {node.name}" for path in modules.values()
                  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                  if isinstance(node, ast.ClassDef)
                  and any(ast.unparse(base).split(".")[-1] == "Module" for base in node.bases)]
    assert subclasses == []


def test_the_checks_see_a_cycle_and_comfyui_imports(tmp_path):
    """The checks above can fail: a hand-made cycle is found, and function-local ComfyUI imports are named."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    import folder_paths\n    from comfy.utils import x\n    from ..errors import E\n")
    assert \
        sorted(imported_names(fake, "wan_loader.io.fake")) == ["comfy.utils", "folder_paths", "wan_loader.errors"]
