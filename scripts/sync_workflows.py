"""Keep the saved workflows in sync: UI format is the source, the template copy and the API twin are derived.

    workflows/ui/<name>.json         UI format (what the editor saves) — edit these
    example_workflows/<name>.json    the same file, listed in the editor's template browser
    workflows/api/<name>.json        API format for POST /prompt and the RunPod worker

The UI -> API conversion is comfy-cli's (`comfy_cli.workflow_to_api.convert_ui_to_api`) with /object_info from a real
ComfyUI server that has this package installed, so widget names and order come from the nodes themselves.

    python scripts/sync_workflows.py                      # start a throwaway ComfyUI from COMFYUI_DIR, rewrite twins
    python scripts/sync_workflows.py --server URL         # use a running server with this package loaded
    python scripts/sync_workflows.py --check              # exit 1 (and name them) when twins are stale
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# UI sources sit one level down: ComfyUI lists */workflows/*.json as templates too, and they would appear twice.
UI_DIR = REPO_ROOT / "workflows" / "ui"
API_DIR = REPO_ROOT / "workflows" / "api"
TEMPLATE_DIR = REPO_ROOT / "example_workflows"
# UI-only nodes the editor drops when it queues a workflow
_VIRTUAL_NODES = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}


def ui_workflows() -> list[Path]:
    return sorted(UI_DIR.glob("*.json"))


def dump(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def to_api(ui: dict, object_info: dict) -> dict:
    from comfy_cli.workflow_to_api import convert_ui_to_api

    missing = sorted({n["type"] for n in ui["nodes"] if n.get("type") not in object_info} - _VIRTUAL_NODES)
    if missing:
        raise SystemExit(f"the server does not know these node types: {', '.join(missing)} (is this package loaded?)")
    return convert_ui_to_api(ui, object_info)


def expected_files(object_info: dict) -> dict[Path, str]:
    """Every derived file and the text it must have."""
    out: dict[Path, str] = {}
    for path in ui_workflows():
        text = path.read_text()
        ui = json.loads(text)
        out[TEMPLATE_DIR / path.name] = text
        out[API_DIR / path.name] = dump(to_api(ui, object_info))
    return out


def stale_files(object_info: dict) -> list[Path]:
    """Derived files that are missing, differ from what the UI workflows give, or have no UI source any more."""
    expected = expected_files(object_info)
    stale = [p for p, text in expected.items() if not p.is_file() or p.read_text() != text]
    orphans = [p for d in (API_DIR, TEMPLATE_DIR) for p in d.glob("*.json") if p not in expected]
    return stale + orphans


def write(object_info: dict) -> list[Path]:
    expected = expected_files(object_info)
    changed = []
    for path, text in expected.items():
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    for d in (API_DIR, TEMPLATE_DIR):
        for path in d.glob("*.json"):
            if path not in expected:
                path.unlink()
                changed.append(path)
    return changed


def fetch_object_info(url: str) -> dict:
    with urllib.request.urlopen(url.rstrip("/") + "/object_info", timeout=60) as r:
        return json.loads(r.read())


def object_info_from_fresh_server() -> dict:
    sys.path.insert(0, str(REPO_ROOT))
    from tests.comfyui_server import ComfyServer

    with tempfile.TemporaryDirectory(prefix="wan_sync_") as base:
        server = ComfyServer(Path(base)).start()
        try:
            return server.get_json("/object_info", timeout=120)
        finally:
            server.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", help="URL of a running ComfyUI with this package (default: start one)")
    parser.add_argument("--check", action="store_true", help="only report stale twins; exit 1 when any")
    args = parser.parse_args(argv)
    info = fetch_object_info(args.server) if args.server else object_info_from_fresh_server()
    if args.check:
        stale = stale_files(info)
        for path in stale:
            print(f"stale: {path.relative_to(REPO_ROOT)}")
        if stale:
            print("run: python scripts/sync_workflows.py")
        return 1 if stale else 0
    for path in write(info):
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
