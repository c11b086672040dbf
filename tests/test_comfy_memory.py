"""memory="auto" inside ComfyUI's real memory manager (comfy.model_management of ComfyUI 0.3.64, in process).

What cannot exist here is a GPU: the `meta` device stands in for it, with a declared capacity (ComfyUI's
get_free_memory answers capacity minus what sits on it), and moving weights off it gives zeros on the host (meta
tensors hold no values). Everything else is real: ComfyUI's load_models_gpu / free_memory decide, our ManagedModel
answers them with the library's planner and placement, on the tiny model.
"""
from __future__ import annotations

import importlib.util
import sys
import weakref

import pytest
import torch

from tests.comfyui_server import REPO_ROOT
from wan_animate.engine.memory import (
    CACHE_DEVICE,
    CACHE_HOST,
    ENCODERS_RESIDENT,
    ENCODERS_STREAMED,
    GIB,
    MARGIN_BYTES,
    JobShape,
    NotEnoughMemory,
    _plan,
    tensor_bytes,
)

pytestmark = pytest.mark.comfyui
DEVICE = torch.device("meta")
JOB = JobShape(frames=5, height=32, width=32)


@pytest.fixture(scope="module")
def mm(comfyui_source):
    """comfy.model_management as `python main.py --cpu` imports it (no GPU here), also when other tests imported
    ComfyUI's argument module before."""
    if str(comfyui_source) not in sys.path:
        sys.path.insert(0, str(comfyui_source))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management

    return comfy.model_management


@pytest.fixture(scope="module")
def memory_nodes(mm):
    """nodes/memory.py by path: ComfyUI's own nodes.py shadows our nodes/ package in this process."""
    spec = importlib.util.spec_from_file_location("wan_nodes_memory_under_test", REPO_ROOT / "nodes" / "memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SimulatedGPU:
    """A device of `capacity` bytes: free = capacity - our weights on it - what others hold."""

    def __init__(self, memory_nodes, components, capacity: int):
        self.memory_nodes, self.components, self.capacity, self.others = memory_nodes, components, capacity, 0

    def free(self, dev=None, torch_free_too=False):
        free = self.capacity - self.others - self.memory_nodes.device_bytes(self.components, DEVICE)
        return (free, 0) if torch_free_too else free


def zeros_on_host(module, pinned):
    """Stands in for copying device memory back (meta tensors hold no values)."""
    module._apply(lambda t: torch.zeros(t.shape, dtype=t.dtype) if t.device == DEVICE else t)


@pytest.fixture(params=["animate", "animate2"])
def setup(mm, memory_nodes, monkeypatch, request):
    """Each test on Animate-14B and on Wan-Animate-2 (same manager, planner and placement)."""
    from wan_loader.testing.tiny import tiny_animate2_components, tiny_components

    components = (tiny_animate2_components if request.param == "animate2" else tiny_components)(seed=0)
    managed = memory_nodes.ManagedModel(components, DEVICE, kernels_runner=lambda *a: None, job=JOB)
    fp = managed.footprint
    everything = fp.dit_bytes + fp.vae_bytes + fp.encoder_bytes
    gpu = SimulatedGPU(memory_nodes, components, capacity=64 * GIB)
    monkeypatch.setattr(mm, "get_free_memory", gpu.free)
    monkeypatch.setattr(memory_nodes, "to_host", zeros_on_host)
    yield mm, managed, gpu, everything
    mm.current_loaded_models.clear()


def just_short_of_all_blocks(managed) -> int:
    """Free memory under which the encoders must stream and some blocks swap (the usable part 1 byte short of the
    plan that keeps every block on the device)."""
    return _plan(managed.footprint, JOB, 0, ENCODERS_STREAMED, None, 0).peak_bytes - 1 + MARGIN_BYTES


def test_placed_through_comfyui_and_unloaded_when_a_core_node_needs_the_device(setup):
    mm, managed, gpu, everything = setup
    managed.prepare(JOB)
    assert managed in mm.loaded_models()  # in ComfyUI's list of loaded models
    assert managed.plan.blocks_on_cpu == 0 and managed.plan.encoders == ENCODERS_RESIDENT
    assert managed.loaded_size() >= everything  # buffers sharing one host storage are separate copies there
    assert tensor_bytes(managed.components.transformer, "cpu") == 0
    mm.free_memory(gpu.capacity, DEVICE)  # what load_models_gpu does for a core model that needs the device
    assert managed.loaded_size() == 0 and managed.swap is None
    assert gpu.free() == gpu.capacity


def test_the_next_job_is_planned_on_what_comfyui_left_free(setup):
    mm, managed, gpu, everything = setup
    fp = managed.footprint
    gpu.others = gpu.capacity - mm.minimum_inference_memory() - just_short_of_all_blocks(managed)  # other programs
    managed.prepare(JOB)
    assert managed.plan.encoders == ENCODERS_STREAMED and managed.plan.blocks_on_cpu > 0
    on_device = managed.loaded_size()
    assert on_device == managed.plan.weights_bytes - 2 * fp.block_bytes  # the two swap slots are job-time memory
    assert on_device <= gpu.capacity - gpu.others
    gpu.others = gpu.capacity  # the device is full: one readable line naming the minimum
    with pytest.raises(NotEnoughMemory, match=r"needs at least [\d.]+ GiB of free device memory"):
        managed.prepare(JOB)


def test_the_job_s_driving_cache_choice_is_planned_with(setup):
    """The Animate-2 sampler's driving_cache input reaches the planner (Animate-14B has no such cache)."""
    mm, managed, gpu, everything = setup
    managed.prepare(JOB, CACHE_HOST)
    assert managed.plan.driving_cache == (CACHE_HOST if managed.footprint.kv_cache_layers else CACHE_DEVICE)
    managed.prepare(JOB)  # auto: everything fits, the cache stays on the device
    assert managed.plan.driving_cache == CACHE_DEVICE


def test_reserve_vram_is_kept_free(setup, monkeypatch):
    mm, managed, gpu, everything = setup
    reserve = gpu.capacity - just_short_of_all_blocks(managed)  # --reserve-vram
    monkeypatch.setattr(mm, "EXTRA_RESERVED_VRAM", reserve - (mm.minimum_inference_memory() - mm.EXTRA_RESERVED_VRAM))
    managed.prepare(JOB)
    assert managed.plan.encoders == ENCODERS_STREAMED and managed.plan.blocks_on_cpu > 0
    assert managed.plan.budget_bytes == just_short_of_all_blocks(managed) - MARGIN_BYTES


class OtherModel:
    """Another model in ComfyUI's list (what a core loader puts there), holding `size` bytes of the device."""

    def __init__(self, gpu, size: int):
        self.gpu, self.size, self.load_device, self.offload_device, self.parent = gpu, size, DEVICE, DEVICE, None
        self.model = torch.nn.Linear(1, 1)
        gpu.others += size

    def model_size(self):
        return self.size

    def loaded_size(self):
        return self.size if self.model is not None else 0

    def partially_unload(self, device, memory_to_free=0):
        return 0

    def detach(self, unpatch_all=True):
        self.gpu.others -= self.size
        self.size = 0


def test_comfyui_unloads_its_other_models_to_make_room_and_keeps_ours_placed(setup, memory_nodes, monkeypatch):
    mm, managed, gpu, everything = setup
    gpu.capacity = mm.minimum_inference_memory() + 2 * just_short_of_all_blocks(managed)
    other = OtherModel(gpu, gpu.capacity - just_short_of_all_blocks(managed))
    entry = mm.LoadedModel(other)  # as load_models_gpu leaves a loaded core model
    entry.real_model = weakref.ref(other.model)
    entry.model_finalizer = weakref.finalize(other.model, lambda: None)
    mm.current_loaded_models.append(entry)
    managed.prepare(JOB)
    assert other.size == 0 and entry not in mm.current_loaded_models  # ComfyUI unloaded it for us
    assert managed.plan.blocks_on_cpu == 0 and managed.plan.encoders == ENCODERS_RESIDENT
    moved_out = []
    monkeypatch.setattr(memory_nodes, "to_host", lambda module, pinned: moved_out.append(module))
    placed = managed.loaded_size()
    managed.prepare(JOB)  # the next job: already placed, nothing leaves the device
    assert moved_out == [] and managed.loaded_size() == placed
    assert sum(entry.model is managed for entry in mm.current_loaded_models) == 1


def test_the_plan_weighs_the_host_memory_available(setup, memory_nodes, monkeypatch):
    """memory="auto" inside ComfyUI knows the host memory (psutil) for a host K/V cache (the planner's rule:
    tests/test_memory_plan.py)."""
    mm, managed, gpu, everything = setup
    monkeypatch.setattr(memory_nodes, "available_host_bytes", lambda: 3 * GIB)
    assert memory_nodes.comfy_budget(DEVICE).host_available_bytes == 3 * GIB
    managed.prepare(JOB)  # and a plan is made with it
    assert managed.plan.driving_cache == CACHE_DEVICE
