"""Deployment profiles: which Wan system an image serves (workflows, model manifest, extra packages, custom nodes, the
ComfyUI release it needs), one docker/profiles/<name>/profile.json each.

Chosen at build time (`--build-arg PROFILES=animate,s2v`: everything those profiles need is installed) and at deploy
time (`WORKER_PROFILE=s2v`: which of the built profiles' manifest the doctor checks and the download strategy
fetches). The worker also reads every profile to tell a user which ComfyUI release a workflow's core nodes need.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"
DEFAULT_PROFILE = "animate"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    comfyui_version: str
    path: Path
    pip: tuple[str, ...] = ()
    registry_nodes: tuple[str, ...] = ()
    core_nodes: tuple[str, ...] = ()
    workflows: tuple[str, ...] = field(default=())

    @classmethod
    def load(cls, name: str, root: Path = PROFILES_DIR) -> "Profile":
        path = root / name / "profile.json"
        if not path.is_file():
            known = ", ".join(available(root)) or "none"
            raise ValueError(f"profile '{name}' does not exist (known profiles: {known}; see docker/profiles/)")
        data = json.loads(path.read_text())
        return cls(name=data["name"], description=data["description"], comfyui_version=data["comfyui_version"],
                   path=path, pip=tuple(data.get("pip", ())),
                   registry_nodes=tuple(data.get("registry_nodes", ())), core_nodes=tuple(data.get("core_nodes", ())),
                   workflows=tuple(data.get("workflows", ())))


def available(root: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/profile.json"))


def parse_names(value: str) -> list[str]:
    return [n.strip() for n in value.replace(" ", ",").split(",") if n.strip()]


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.lstrip("v").split(".") if p.isdigit())


def comfyui_version_for(profiles: list[Profile]) -> str:
    """The ComfyUI release an image with these profiles needs: the newest any of them pins."""
    return max((p.comfyui_version for p in profiles), key=version_tuple)


def core_node_hints(missing: list[str], running_version: str | None, root: Path = PROFILES_DIR) -> dict[str, str]:
    """For missing node types that are ComfyUI core nodes of a known profile: the sentence saying what to deploy."""
    hints = {}
    for name in available(root):
        profile = Profile.load(name, root)
        served_here = running_version and version_tuple(profile.comfyui_version) <= version_tuple(running_version)
        for node in set(missing) & set(profile.core_nodes):
            if served_here:  # the profile runs the same model through this package's nodes on this ComfyUI
                hints[node] = (f"'{node}' is a core node of a newer ComfyUI than this worker runs "
                               f"({running_version}); the '{profile.name}' profile serves that model with this "
                               f"package's nodes instead (workflows: {', '.join(profile.workflows[:2]) or 'none yet'})")
                continue
            running = f" (this worker runs ComfyUI {running_version})" if running_version else ""
            hints[node] = (f"'{node}' is a ComfyUI core node of the '{profile.name}' profile that needs ComfyUI "
                           f"{profile.comfyui_version} or newer{running}; deploy an image built with "
                           f"--build-arg PROFILES={profile.name}")
    return hints


def main(argv=None) -> int:
    """Build helper: `python -m comfy_worker.profiles plan animate,s2v` prints shell assignments for the install."""
    parser = argparse.ArgumentParser(prog="profiles")
    parser.add_argument("command", choices=["plan", "list"])
    parser.add_argument("names", nargs="?", default=DEFAULT_PROFILE)
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in available():
            p = Profile.load(name)
            print(f"{name}: ComfyUI {p.comfyui_version}; {p.description}")
        return 0
    try:
        profiles = [Profile.load(n) for n in parse_names(args.names)]
    except ValueError as e:
        print(f"profiles: {e}", file=sys.stderr)
        return 2
    pip = sorted({p for prof in profiles for p in prof.pip})
    nodes = sorted({n for prof in profiles for n in prof.registry_nodes})
    print(f"COMFYUI_VERSION={comfyui_version_for(profiles)}")
    print(f"PROFILE_PIP='{' '.join(pip)}'")
    print(f"PROFILE_REGISTRY_NODES='{' '.join(nodes)}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
