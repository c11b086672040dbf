"""memory="auto": the planner's decisions for declared cards, and its estimates against the real modules.

The weights are counted on the real modules at full size, built on the meta device with the loader's dtypes
(tests/memory_helpers.py), so the plans below are the ones a 14B fp8 model (Animate-14B or Wan-Animate-2) gets
on those cards; the activation estimates are checked against a trace of the real diffusers code at full size (the
device's allocator would have to hold at least the traced bytes).
"""
from __future__ import annotations

import contextlib
import importlib.util

import pytest
import torch
import torch.nn.functional as F

from tests.memory_helpers import AllocationTrace, flash_like_attention, meta_components
from wan_animate.engine.forward import AnimateDiT
from wan_animate.engine.memory import (
    CACHE_DEVICE,
    CACHE_HOST,
    CACHE_HOST_INT8,
    ENCODERS_RESIDENT,
    ENCODERS_STREAMED,
    GIB,
    MARGIN_FRACTION,
    DeviceBudget,
    Footprint,
    JobShape,
    RESIDENT_CACHE_LAYERS,
    NotEnoughMemory,
    dit_activation_bytes,
    driving_cache_bytes,
    plan_memory,
    tensor_bytes,
    vae_peak_bytes,
    _plan,
)

JOB = JobShape(frames=77, height=480, width=832)


@contextlib.contextmanager
def patch_sdpa():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(F, "scaled_dot_product_attention", flash_like_attention)
        yield


@pytest.fixture(scope="module")
def full():
    return meta_components("fp8")


@pytest.fixture(scope="module")
def footprint(full):
    return Footprint.of(full)


def test_footprint_counts_every_weight_once(tiny):
    fp = Footprint.of(tiny)
    total = sum(tensor_bytes(getattr(tiny, n)) for n in ("transformer", "vae", "text_encoder", "image_encoder"))
    assert fp.dit_bytes + fp.vae_bytes + fp.encoder_bytes == total
    assert fp.blocks == len(tiny.transformer.blocks) and fp.block_bytes == tensor_bytes(tiny.transformer.blocks[0])
    shared = tiny.text_encoder.shared.weight  # tied to encoder.embed_tokens: counted once
    assert tensor_bytes(tiny.text_encoder) == sum(
        p.numel() * p.element_size() for p in {id(p): p for p in tiny.text_encoder.parameters()}.values())
    assert shared is tiny.text_encoder.encoder.embed_tokens.weight


def test_full_size_fp8_footprint(footprint):
    fp = footprint
    assert fp.blocks == 40 and fp.dim == 5120 and fp.ffn_dim == 13824
    assert 0.35 * GIB < fp.block_bytes < 0.40 * GIB  # ~350M fp8 weights per block
    assert 15.5 * GIB < fp.dit_bytes < 17.5 * GIB
    assert 11 * GIB < fp.encoder_bytes < 12.5 * GIB  # umT5-XXL encoder + CLIP ViT-H in bf16
    assert fp.encoder_unit_bytes <= 2 * GIB  # the largest streamed piece: umT5's 256k x 4096 embedding


@pytest.mark.parametrize("card_gib", [12, 16, 24, 32, 48, 80])
def test_a_480p_job_fits_every_card(footprint, card_gib):
    budget = DeviceBudget(card_gib * GIB)
    plan = plan_memory(footprint, JOB, budget)
    assert plan.peak_bytes <= budget.usable_bytes
    assert plan.budget_bytes == budget.usable_bytes
    assert "memory plan:" in plan.describe() and f"{plan.blocks_on_cpu} of 40" in plan.describe()


def test_bigger_cards_swap_less(footprint):
    plans = {g: plan_memory(footprint, JOB, DeviceBudget(g * GIB)) for g in (12, 16, 24, 32, 80)}
    swapped = [plans[g].blocks_on_cpu for g in (12, 16, 24, 32, 80)]
    assert swapped == sorted(swapped, reverse=True) and swapped[0] > 0 and swapped[-1] == 0
    assert plans[80].encoders == ENCODERS_RESIDENT and not plans[80].tiled_vae
    assert plans[12].encoders == ENCODERS_STREAMED
    assert not any(p.tiled_vae for p in plans.values())  # tiling costs seconds; swapping blocks hides behind compute
    assert plans[32].blocks_on_cpu == 0  # 32 GB: the whole fp8 transformer stays


def test_the_vae_tiles_only_when_nothing_else_fits(footprint):
    whole = _plan(footprint, JOB, 40, ENCODERS_STREAMED, None, 0).peak_bytes
    tiled = _plan(footprint, JOB, 40, ENCODERS_STREAMED, 512, 0).peak_bytes
    assert tiled < whole
    plan = plan_memory(footprint, JOB, DeviceBudget(int((tiled + whole) / 2 / (1 - MARGIN_FRACTION))))
    assert (plan.blocks_on_cpu, plan.encoders, plan.vae_tile) == (40, ENCODERS_STREAMED, 512)
    with pytest.raises(NotEnoughMemory) as error:
        plan_memory(footprint, JOB, DeviceBudget(6 * GIB))
    message = str(error.value)
    assert "\n" not in message and "needs at least" in message and "6.0 GiB is free" in message
    minimum = float(message.split("needs at least ")[1].split(" GiB")[0])
    plan_memory(footprint, JOB, DeviceBudget(int(minimum * GIB) + GIB // 10))  # the minimum named is enough


def test_a_fixed_block_swap_count_is_kept(footprint):
    plan = plan_memory(footprint, JOB, DeviceBudget(80 * GIB), blocks_on_cpu=8)
    assert plan.blocks_on_cpu == 8 and plan.encoders == ENCODERS_RESIDENT
    with pytest.raises(NotEnoughMemory, match="0 of 40 blocks swapped"):
        plan_memory(footprint, JOB, DeviceBudget(12 * GIB), blocks_on_cpu=0)


def test_comfyui_flags(footprint):
    reserved = plan_memory(footprint, JOB, DeviceBudget(32 * GIB, reserve_bytes=8 * GIB))
    assert reserved.budget_bytes == DeviceBudget(24 * GIB).usable_bytes
    assert reserved.blocks_on_cpu == plan_memory(footprint, JOB, DeviceBudget(24 * GIB)).blocks_on_cpu
    low = plan_memory(footprint, JOB, DeviceBudget(80 * GIB, lowvram=True))
    assert low.encoders == ENCODERS_STREAMED and low.tiled_vae and low.vae_tile == 512
    none = plan_memory(footprint, JOB, DeviceBudget(80 * GIB, novram=True))
    assert none.blocks_on_cpu == 40 and none.encoders == ENCODERS_STREAMED


def test_larger_jobs_need_more(footprint):
    small = plan_memory(footprint, JobShape(33, 480, 832), DeviceBudget(16 * GIB))
    large = plan_memory(footprint, JobShape(77, 720, 1280), DeviceBudget(16 * GIB))
    assert small.blocks_on_cpu < plan_memory(footprint, JOB, DeviceBudget(16 * GIB)).blocks_on_cpu
    assert large.peak_bytes > small.peak_bytes - small.weights_bytes + large.weights_bytes


def test_measured_low_memory_run_is_within_the_estimate(footprint):
    """H100, 22 GiB cap, 28 blocks swapped, encoders borrowed whole, VAE tiled at 256: measured peak 19.6 GiB
    (benchmarks/results/e2e_lowmem_h100.json) with 6.9 GiB of weights on the device between jobs."""
    plan = _plan(footprint, JOB, 28, ENCODERS_RESIDENT, 256, 22 * GIB)
    between_jobs = plan.weights_bytes - footprint.encoder_bytes
    assert abs(between_jobs / GIB - 6.9) < 0.3
    assert plan.peak_bytes >= 19.6 * GIB


def test_dit_activation_estimate_bounds_the_traced_forward(full, footprint, monkeypatch):
    """One whole DiT forward of the real full-size diffusers model at 480p, 77 frames, traced on meta tensors."""
    monkeypatch.setattr(F, "scaled_dot_product_attention", flash_like_attention)
    dit = AnimateDiT(full.transformer)
    latent_frames = (JOB.frames - 1) // 4 + 1
    h, w = JOB.height // 8, JOB.width // 8
    latent = torch.empty(1, 36, latent_frames + 1, h, w, device="meta")
    context = torch.empty(1, 257 + 512, footprint.dim, device="meta", dtype=torch.bfloat16)
    with torch.no_grad():
        step = dit.time_embedding(torch.tensor([500.0], device="meta"), context)
        motion = torch.empty(1, latent_frames + 1, 5, footprint.dim, device="meta", dtype=torch.bfloat16)
        pose = torch.empty(1, footprint.dim, latent_frames, h // 2, w // 2, device="meta", dtype=torch.bfloat16)
        rotary = dit.rotary(latent.shape)
        with AllocationTrace() as trace:
            dit(latent, step, context, motion, pose, rotary)
    estimate = dit_activation_bytes(footprint, JOB)
    assert trace.peak <= estimate <= 2.5 * trace.peak, (trace.peak / GIB, estimate / GIB)


@pytest.mark.parametrize("tile", [None, 128])
def test_vae_estimate_bounds_the_traced_decode(full, footprint, tile):
    """The full-size Wan2.1 VAE decoding a small segment (whole frames, and 128-pixel tiles), traced."""
    from wan_animate.engine.conditioning import LatentCodec

    job = JobShape(frames=9, height=192, width=256)
    codec = LatentCodec(full.vae, tiled=tile is not None, tile=tile or 256)
    codec.mean, codec.inv_std = codec.mean.to("meta"), codec.inv_std.to("meta")
    latents = torch.empty(1, 16, 3, job.height // 8, job.width // 8, device="meta")
    with AllocationTrace() as trace:
        codec.decode(latents)
    estimate = vae_peak_bytes(footprint, job, tile)
    assert trace.peak <= estimate <= 4 * trace.peak, (trace.peak / GIB, estimate / GIB)


# --- Wan-Animate-2: the same planner on its full-size model (fp8 blocks), 81 frames at 480p -----------------------

JOB2 = JobShape(frames=81, height=480, width=832)


@pytest.fixture(scope="module")
def full2():
    return meta_components("fp8", model="animate2")


@pytest.fixture(scope="module")
def footprint2(full2):
    return Footprint.of(full2)


def test_full_size_animate2_footprint(footprint2):
    fp = footprint2
    assert (fp.blocks, fp.dim, fp.ffn_dim, fp.kv_cache_layers, fp.face_size) == (40, 5120, 13824, 40, 0)
    assert 0.35 * GIB < fp.block_bytes < 0.40 * GIB and 15 * GIB < fp.dit_bytes < 17 * GIB
    assert 11 * GIB < fp.encoder_bytes < 12.5 * GIB
    # the driving K/V of 21 latent frames x 60 x 104 / 4 tokens, 40 layers, keys and values in bf16
    assert driving_cache_bytes(fp, JOB2) == 2 * 40 * 21 * 1560 * 5120 * 2


def test_animate2_keeps_its_cache_on_large_cards(footprint2):
    plans = {g: plan_memory(footprint2, JOB2, DeviceBudget(g * GIB)) for g in (48, 56, 64, 80, 141)}
    swapped = [plans[g].blocks_on_cpu for g in sorted(plans)]
    assert swapped == sorted(swapped, reverse=True) and swapped[0] > 0 and swapped[-1] == 0
    assert plans[48].encoders == ENCODERS_STREAMED and plans[141].encoders == ENCODERS_RESIDENT
    assert not any(p.tiled_vae for p in plans.values())
    for g, plan in plans.items():
        assert plan.driving_cache == CACHE_DEVICE and plan.peak_bytes <= DeviceBudget(g * GIB).usable_bytes
        assert plan.parts["dit_activations"] > driving_cache_bytes(footprint2, JOB2)  # the cache is in the peak
    assert "driving K/V cache 25.0 GiB on the device" in plans[80].describe()


def test_animate2_puts_its_cache_in_host_memory_on_24_and_32_gb_cards(footprint2):
    """81 frames at 480p: the 25 GiB cache with the weights fits no 24 or 32 GB card; in host memory the device
    holds two of its layers, and the fp8 model plans on both cards (32 GB: no block swapped)."""
    cache = driving_cache_bytes(footprint2, JOB2)
    layers = cache // 40 * RESIDENT_CACHE_LAYERS
    plans = {g: plan_memory(footprint2, JOB2, DeviceBudget(g * GIB)) for g in (12, 16, 24, 32)}
    for g, plan in plans.items():
        assert plan.driving_cache == CACHE_HOST and not plan.tiled_vae
        assert plan.peak_bytes <= DeviceBudget(g * GIB).usable_bytes
        with_cache = dit_activation_bytes(footprint2, JOB2)
        assert plan.parts["dit_activations"] == with_cache - cache + layers  # two layers on the device, not 40
        assert plan.host_bytes == plan.blocks_on_cpu * footprint2.block_bytes + footprint2.encoder_bytes + cache
        text = plan.describe()
        assert "driving K/V cache 25.0 GiB in host memory (2 of 40 layers on the device at a time)" in text
        assert f"host memory {plan.host_bytes / GIB:.1f} GiB" in text
    assert plans[32].blocks_on_cpu == 0 and 0 < plans[24].blocks_on_cpu < plans[16].blocks_on_cpu
    # a card with room for the cache keeps it there although the host could take it: the device's is never slower
    assert plan_memory(footprint2, JOB2, DeviceBudget(48 * GIB)).driving_cache == CACHE_DEVICE


def test_animate2_minimum_card_names_what_is_enough(footprint2):
    with pytest.raises(NotEnoughMemory) as error:
        plan_memory(footprint2, JOB2, DeviceBudget(6 * GIB))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("Wan-Animate-2 needs at least") and "81 frames at 832x480" in message
    assert "driving K/V cache in host memory" in message
    minimum = float(message.split("needs at least ")[1].split(" GiB")[0])
    assert 8 < minimum < 12  # was 35.1 GiB with the cache on the device
    plan = plan_memory(footprint2, JOB2, DeviceBudget(int(minimum * GIB) + GIB // 10))  # the minimum named is enough
    assert plan.driving_cache == CACHE_HOST and plan.blocks_on_cpu == 40
    # a shorter segment has a smaller cache: 33 frames keep it on a 24 GB card with blocks swapped
    short = plan_memory(footprint2, JobShape(33, 480, 832), DeviceBudget(24 * GIB))
    assert 0 < short.blocks_on_cpu <= 40 and short.driving_cache == CACHE_DEVICE


def test_animate2_int8_host_cache_is_chosen_by_the_user_or_for_short_host_memory(footprint2):
    """host_int8 halves the cache's host memory (a byte per value, a float32 scale per token and head) and changes
    the numbers a little, so memory="auto" picks it only where the bf16 cache does not fit the host memory (and
    never when that is unknown, as here)."""
    cache = driving_cache_bytes(footprint2, JOB2)
    for g in (8, 12, 24, 32, 48, 80, 141):
        try:
            assert plan_memory(footprint2, JOB2, DeviceBudget(g * GIB)).driving_cache in (CACHE_DEVICE, CACHE_HOST)
        except NotEnoughMemory:
            assert g < 12
    int8 = plan_memory(footprint2, JOB2, DeviceBudget(24 * GIB), driving_cache=CACHE_HOST_INT8)
    assert int8.driving_cache == CACHE_HOST_INT8
    assert int8.parts["driving_cache_host"] == cache // 2 + cache // 2 // 128 * 4
    assert int8.host_bytes == (int8.blocks_on_cpu * footprint2.block_bytes + footprint2.encoder_bytes
                               + int8.parts["driving_cache_host"])
    assert "driving K/V cache 25.0 GiB in host memory as int8 (12.9 GiB)" in int8.describe()


def test_animate2_auto_weighs_the_host_memory_for_its_cache(footprint2):
    """memory="auto" with the host memory known: the bf16 cache where it fits, int8 where only that fits, else one
    line naming the host memory it needs; a card that holds the cache does not care."""
    def plan(host_gib, device_gib=24, **choice):
        return plan_memory(footprint2, JOB2, DeviceBudget(device_gib * GIB, host_available_bytes=int(host_gib * GIB)),
                           **choice)

    assert plan(64).driving_cache == CACHE_HOST
    assert plan(64).blocks_on_cpu == plan_memory(footprint2, JOB2, DeviceBudget(24 * GIB)).blocks_on_cpu
    short = plan(16)
    assert short.driving_cache == CACHE_HOST_INT8 and short.parts["driving_cache_host"] <= 16 * GIB
    assert "as int8" in short.describe()
    with pytest.raises(NotEnoughMemory) as error:
        plan(8)
    message = str(error.value)
    assert "in host memory it needs 12.9 GiB (int8) where 8.0 GiB is available" in message
    assert "shorter segments" in message and "\n" not in message
    assert plan(1, device_gib=80).driving_cache == CACHE_DEVICE  # nothing kept on the host
    assert plan(8, driving_cache=CACHE_HOST).driving_cache == CACHE_HOST  # the user's choice: warned of, not changed


def test_animate2_host_cache_larger_than_the_host_memory_is_warned_of(footprint2):
    from wan_animate.engine.memory import available_host_bytes, host_memory_warning

    plan = plan_memory(footprint2, JOB2, DeviceBudget(24 * GIB))
    assert host_memory_warning(plan, 64 * GIB) is None and host_memory_warning(plan, None) is None
    warning = host_memory_warning(plan, 16 * GIB)
    assert warning.startswith("the driving K/V cache in host memory needs 25.0 GiB and 16.0 GiB of host memory")
    assert "host_int8" in warning and "\n" not in warning
    assert host_memory_warning(plan_memory(footprint2, JOB2, DeviceBudget(80 * GIB)), 0) is None  # on the device
    available = available_host_bytes()  # psutil comes with ComfyUI; without it nothing is known
    assert available > 0 if importlib.util.find_spec("psutil") else available is None


def test_animate2_cache_placement_chosen_by_the_user_is_kept(footprint2):
    on_host = plan_memory(footprint2, JOB2, DeviceBudget(80 * GIB), driving_cache=CACHE_HOST)
    assert on_host.driving_cache == CACHE_HOST and on_host.blocks_on_cpu == 0
    assert on_host.peak_bytes < plan_memory(footprint2, JOB2, DeviceBudget(80 * GIB)).peak_bytes
    with pytest.raises(NotEnoughMemory) as error:  # 32 GB cannot hold it with anything else
        plan_memory(footprint2, JOB2, DeviceBudget(32 * GIB), driving_cache=CACHE_DEVICE)
    message = str(error.value)
    assert "driving K/V cache on the device" in message and "(driving_cache host)" in message
    minimum = float(message.split("needs at least ")[1].split(" GiB")[0])
    assert 32 < minimum < 48
    plan = plan_memory(footprint2, JOB2, DeviceBudget(int(minimum * GIB) + GIB // 10), driving_cache=CACHE_DEVICE)
    assert plan.driving_cache == CACHE_DEVICE
    with pytest.raises(ValueError, match="driving_cache='disk'"):
        plan_memory(footprint2, JOB2, DeviceBudget(80 * GIB), driving_cache="disk")


def test_animate2_with_bf16_weights_swaps_more(footprint2):
    bf16 = Footprint.of(meta_components("bf16", model="animate2"))
    assert bf16.block_bytes > 1.9 * footprint2.block_bytes
    assert (plan_memory(bf16, JOB2, DeviceBudget(64 * GIB)).blocks_on_cpu
            > plan_memory(footprint2, JOB2, DeviceBudget(64 * GIB)).blocks_on_cpu)


def test_animate2_estimate_bounds_the_traced_passes(full2, footprint2):
    """The full-size Animate-2 forward at 480p, 81 frames, traced on meta tensors: the driving pass (which fills
    the K/V cache) and a sampling step against the cache; both stay under the estimate (activations + cache)."""
    from wan_animate.engine.animate2.forward import Animate2DiT, DrivingCache

    def lse_kernel(q, k, v):
        return flash_like_attention(q, k, v), torch.empty(q.shape[0], q.shape[2], q.shape[1], device=q.device)

    dit = Animate2DiT(full2.transformer, kernel=flash_like_attention, lse_kernel=lse_kernel)
    frames, h, w = (JOB2.frames - 1) // 4 + 1, JOB2.height // 8, JOB2.width // 8
    bf16 = dict(device="meta", dtype=torch.bfloat16)
    estimate = dit_activation_bytes(footprint2, JOB2)
    cache = driving_cache_bytes(footprint2, JOB2)
    with torch.no_grad(), patch_sdpa():
        context = dit.encode_context(torch.empty(1, 512, 4096, **bf16), torch.empty(1, 257, 1280, **bf16))
        with AllocationTrace() as driving_trace:
            dit.driving_pass(torch.empty(1, 36, frames, h, w, device="meta"), context)
        kv = [torch.empty(1, frames * h * w // 4, 40, 128, **bf16) for _ in range(40)]
        with AllocationTrace() as step_trace:  # the cache is an input here: added below
            dit(torch.empty(1, 36, frames + 1, h, w, device="meta"), torch.tensor([500.0], device="meta"), context,
                DrivingCache(kv, kv, (frames, h // 2, w // 2)))
    assert cache <= driving_trace.peak <= estimate
    assert step_trace.peak + cache <= estimate <= 1.5 * (step_trace.peak + cache), (step_trace.peak / GIB, estimate / GIB)


@pytest.mark.parametrize("where", [CACHE_HOST, CACHE_HOST_INT8])
def test_animate2_host_cache_estimate_bounds_the_traced_passes(full2, footprint2, where):
    """The same passes with the cache in host memory (on the meta device the host copy is meta too), traced from a
    second segment (the host copy is allocated by the first, once per job): the driving pass and a sampling step
    stay under the host-cache estimate, which counts two of the cache's layers (int8: and their int8 copies)."""
    from wan_animate.engine.animate2.forward import Animate2DiT
    from wan_animate.engine.animate2.kvcache import HostDrivingCache

    def lse_kernel(q, k, v):
        return flash_like_attention(q, k, v), torch.empty(q.shape[0], q.shape[2], q.shape[1], device=q.device)

    dit = Animate2DiT(full2.transformer, kernel=flash_like_attention, lse_kernel=lse_kernel)
    frames, h, w = (JOB2.frames - 1) // 4 + 1, JOB2.height // 8, JOB2.width // 8
    bf16 = dict(device="meta", dtype=torch.bfloat16)
    estimate = dit_activation_bytes(footprint2, JOB2, where)
    layer = driving_cache_bytes(footprint2, JOB2) // 40
    host = HostDrivingCache("meta", 40, int8=where == CACHE_HOST_INT8)
    driving = torch.empty(1, 36, frames, h, w, device="meta")
    with torch.no_grad(), patch_sdpa():
        context = dit.encode_context(torch.empty(1, 512, 4096, **bf16), torch.empty(1, 257, 1280, **bf16))
        dit.driving_pass(driving, context, host)
        with AllocationTrace() as driving_trace:
            dit.driving_pass(driving, context, host)
        with AllocationTrace() as step_trace:
            dit(torch.empty(1, 36, frames + 1, h, w, device="meta"), torch.tensor([500.0], device="meta"), context,
                host)
    assert host.peak_resident == RESIDENT_CACHE_LAYERS
    assert driving_trace.peak <= estimate and step_trace.peak <= estimate
    assert step_trace.peak >= RESIDENT_CACHE_LAYERS * layer  # the slots, allocated by the segment's first step
    assert estimate <= 1.5 * step_trace.peak, (step_trace.peak / GIB, estimate / GIB)
