"""wan_loader.discovery and the face-pack search: model folders under given roots, the umT5 tokenizer kept beside a
text-encoder file, and Hub downloads that retry only transient network failures.

The Hub is a real HTTP server on the loopback (no internet here) answering as the Hub does when it fails; the
client is the real huggingface_hub, pointed at it with `endpoint`.
"""
from __future__ import annotations

import logging

import pytest

from wan_animate.preprocess.face_detector import FaceDetectorError, model_packs, pack_in_roots
from wan_loader import load_components
from wan_loader.discovery.folders import find_model_folder, model_folders
from wan_loader.discovery.hub import Retries, download, is_repo_id
from wan_loader.writers import write_components
from tests.hub_helpers import StandInHub

ALWAYS = 10**6  # failures: every request


def test_model_folders_under_several_roots(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    (first / "animate_diffusers").mkdir(parents=True)
    (first / "animate_diffusers" / "model_index.json").write_text("{}")
    (first / "not_a_model").mkdir()
    (second / "Wan2.2-Animate-14B").mkdir(parents=True)
    (second / "Wan2.2-Animate-14B" / "config.json").write_text("{}")
    (second / "animate_diffusers").mkdir()
    (second / "animate_diffusers" / "config.json").write_text("{}")
    roots = [first, second, tmp_path / "missing"]
    assert model_folders(roots) == ["animate_diffusers", "Wan2.2-Animate-14B"]
    assert find_model_folder("animate_diffusers", roots) == str(first / "animate_diffusers")
    assert find_model_folder("Wan2.2-Animate-14B", roots) == str(second / "Wan2.2-Animate-14B")
    with pytest.raises(FileNotFoundError, match="'not_a_model' is not in .*model_index.json"):
        find_model_folder("not_a_model", roots)


@pytest.fixture(scope="module")
def comfy(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy_tokenizer")
    write_components(tiny, root, "comfy", "fp32")
    return root


def test_tokenizer_kept_beside_a_text_encoder_file_is_used(comfy, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text_encoder = next((comfy / "text_encoders").glob("*.safetensors"))
    out = load_components(files={"text_encoder": str(text_encoder)}, components=["text_encoder", "tokenizer"],
                          weight_dtype="fp32")
    assert out.sources["tokenizer"] == str(comfy / "text_encoders" / "umt5_tokenizer")
    assert out.tokenizer("a man dancing").input_ids


def test_face_packs_listed_and_found_under_roots(tmp_path):
    root = tmp_path / "insightface"
    for pack in ("buffalo_l", "models/antelopev2"):
        (root / pack).mkdir(parents=True)
        (root / pack / "det_10g.onnx").write_bytes(b"x")
    (root / "empty_pack").mkdir()
    assert model_packs([root, tmp_path / "missing"]) == ["buffalo_l", "models/antelopev2"]
    assert pack_in_roots("models/antelopev2", [root]) == root / "models" / "antelopev2"
    with pytest.raises(FaceDetectorError, match="'empty_pack' is not in"):
        pack_in_roots("empty_pack", [root])


@pytest.mark.parametrize("text, expected", [
    ("Wan-AI/Wan2.2-Animate-14B-Diffusers", True), ("./models/x", False), ("~/x", False), ("a/b/c", False),
    ("C:\\models\\x", False), ("C:/models", False), ("models", False),
])
def test_repo_ids_told_from_paths(text, expected):
    assert is_repo_id(text) is expected


@pytest.fixture
def online(tmp_path, monkeypatch):
    """Online as far as huggingface_hub knows (conftest makes the suite offline; the library read that at import)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.mark.parametrize("status, attempts", [(503, 3), (429, 3), (404, 1), (401, 1)])
def test_hub_download_retries_only_transient_answers(online, status, attempts, caplog):
    hub = StandInHub({}, failures=ALWAYS, failure_status=status)
    try:
        with caplog.at_level(logging.WARNING, logger="wan_loader"), pytest.raises(Exception) as failure:
            download("someone/some-model", endpoint=hub.url, retries=Retries(attempts=3, first_wait_s=0))
    finally:
        hub.close()
    assert hub.requests == attempts, (hub.requests, failure.value)
    retries = [r for r in caplog.records if "someone/some-model failed" in r.getMessage()]
    assert len(retries) == attempts - 1


def test_hub_download_resumes_after_the_hub_recovers(online, tmp_path, caplog):
    files = {"config.json": b'{"a": 1}', "weights/part.bin": bytes(range(256)) * 64}
    hub = StandInHub({"someone/some-model": files}, failures=2, failure_status=503)
    seen = []
    try:
        with caplog.at_level(logging.WARNING, logger="wan_loader"):
            folder = download("someone/some-model", dir=str(tmp_path / "got"), endpoint=hub.url,
                              retries=Retries(attempts=3, first_wait_s=0), progress=lambda done, total: seen.append(done))
    finally:
        hub.close()
    assert folder == str(tmp_path / "got")
    for name, data in files.items():
        assert (tmp_path / "got" / name).read_bytes() == data
    assert len([r for r in caplog.records if "someone/some-model failed" in r.getMessage()]) == 2
    assert seen and seen[-1] > 0  # the node's bar moved


def test_hub_download_retries_a_refused_connection_then_says_what_to_do(online, caplog):
    closed = StandInHub({})
    url = closed.url
    closed.close()  # nothing listens there any more: connection refused, as when the network is down
    with caplog.at_level(logging.WARNING, logger="wan_loader"), pytest.raises(FileNotFoundError) as failure:
        download("someone/some-model", endpoint=url, retries=Retries(attempts=2, first_wait_s=0))
    assert "the Hub is unreachable" in str(failure.value) and "python -m wan_loader download" in str(failure.value)
    assert len([r for r in caplog.records if "someone/some-model failed" in r.getMessage()]) == 1


def test_offline_mode_is_not_retried(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.WARNING, logger="wan_loader"), pytest.raises(FileNotFoundError, match="offline mode"):
        download("someone/some-model", retries=Retries(attempts=3, first_wait_s=0))
    assert not [r for r in caplog.records if "failed" in r.getMessage()]
