"""The real editor page in headless Chromium (Debian's chromium + chromedriver, driven by selenium): each UI workflow
opens with no missing or red nodes, and queued from the page it runs to completion.

scripts/test.sh installs chromium when it is missing; without it these tests skip with a loud reason.
"""
from __future__ import annotations

import json
import shutil
import time
import urllib.request

import pytest

from tests.comfyui_server import REPO_ROOT
from tests.test_workflows_support import cpu_overrides, install_workflow_assets

pytestmark = pytest.mark.comfyui

WORKFLOWS = sorted((REPO_ROOT / "workflows" / "ui").glob("*.json"))
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
)

OPEN_JS = """
const done = arguments[arguments.length - 1];
(async () => {
  for (const button of document.querySelectorAll('.p-dialog-close-button')) button.click();
  await new Promise(r => setTimeout(r, 300));
  await app.loadGraphData(arguments[0], true, true, arguments[1]);
  const all = [];
  const walk = (graph) => { for (const n of graph.nodes) { all.push(n); if (n.subgraph) walk(n.subgraph); } };
  walk(app.graph);
  await new Promise(r => setTimeout(r, 300));
  const registered = LiteGraph.registered_node_types;
  done({
    count: all.length,
    missing: all.filter(n => !(n.type in registered) || n.has_errors).map(n => `${n.id}:${n.type}`),
    dialogs: [...document.querySelectorAll('.p-dialog')].map(d => d.innerText.slice(0, 300)),
  });
})().catch(e => done({error: String(e)}));
"""

SET_WIDGETS_JS = """
const overrides = arguments[0];
for (const node of app.graph.nodes) {
  for (const [name, value] of Object.entries(overrides[node.type] || {})) {
    const widget = (node.widgets || []).find(w => w.name === name);
    if (widget) widget.value = value;
  }
}
"""

QUEUE_JS = """
const done = arguments[arguments.length - 1];
const seen = [];
const listener = (e) => seen.push(e.detail);
app.api.addEventListener('promptQueued', listener);
app.queuePrompt(0, 1).then((ok) => done({ok, queued: seen.length})).catch(e => done({error: String(e)}));
"""

RED_NODES_JS = """
return app.graph.nodes.filter(n => n.has_errors).map(n => `${n.id}:${n.type}`);
"""


def _chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -r requirements-test.txt")
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _chromium(), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("!!! BROWSER TESTS SKIPPED: Debian's chromium and chromium-driver are not installed "
                    "(scripts/test.sh installs them: apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    import tempfile

    profile = tempfile.mkdtemp(prefix="wan_chromium_")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = chromium
    drv = webdriver.Chrome(service=Service(driver), options=options)
    drv.set_script_timeout(120)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def editor(comfy_server, browser):
    req = urllib.request.Request(comfy_server.url + "/settings/Comfy.TutorialCompleted", data=b"true", method="POST")
    urllib.request.urlopen(req, timeout=30).close()
    browser.get(comfy_server.url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if browser.execute_script("return !!(window.app && app.graph && window.LiteGraph && "
                                  "'WanAnimateSampler' in LiteGraph.registered_node_types)"):
            return browser
        time.sleep(0.5)
    pytest.fail("the editor page did not load our nodes within 120 s")


@pytest.fixture(scope="module")
def assets(comfy_server, tmp_path_factory):
    return install_workflow_assets(comfy_server.base_dir, tmp_path_factory.mktemp("browser_assets"))


def test_a_missing_node_type_is_detected(editor):
    """The check itself: a workflow naming an unknown node type is reported."""
    workflow = json.loads(WORKFLOWS[0].read_text())
    workflow["nodes"][0]["type"] = "NoSuchNodeType"
    result = editor.execute_async_script(OPEN_JS, workflow, "broken.json")
    assert any(m.endswith(":NoSuchNodeType") for m in result["missing"]), result


def _open(editor, path):
    result = editor.execute_async_script(OPEN_JS, json.loads(path.read_text()), path.name)
    assert "error" not in result, result
    return result


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_ui_workflow_opens_with_no_missing_or_red_nodes(editor, path):
    result = _open(editor, path)
    assert result["count"] == len(json.loads(path.read_text())["nodes"])
    assert result["missing"] == [], result
    assert not any("missing" in d.lower() for d in result["dialogs"]), result["dialogs"]


@pytest.mark.slow
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_ui_workflow_queued_from_the_editor_completes(editor, comfy_server, assets, path):
    if path.stem == "wan_animate_core_native":
        pytest.skip("core's CLIPLoader (umT5-XXL) and CLIPVisionLoader (ViT-H) build full-size modules no tiny file fits; "
                    "this graph runs headlessly in test_workflows with stand-in encoders")
    _open(editor, path)
    editor.execute_script(SET_WIDGETS_JS, cpu_overrides(path.stem))
    before = set(comfy_server.get_json("/history"))
    result = editor.execute_async_script(QUEUE_JS)
    assert "error" not in result and result["queued"] == 1, result
    deadline = time.monotonic() + 900
    new = []
    while time.monotonic() < deadline:
        new = [pid for pid in comfy_server.get_json("/history") if pid not in before]
        if new:
            entry = comfy_server.wait(new[0], timeout=900)
            break
        time.sleep(0.5)
    assert new, "nothing was queued from the page"
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"], indent=1)[-4000:]
    assert editor.execute_script(RED_NODES_JS) == []
