"""Wan-Animate-2 on the engine's memory and speed paths, on the CPU: block swap, the driving K/V cache in host
memory, compiled blocks, placement.

Block swap runs through its CPU branch (the copies into the two device slots are plain copies; the CUDA streams
and pinned memory are measured on a GPU by benchmarks/animate2.py), so a swapped job must give exactly the frames
of the resident one: the driving pass fills the K/V cache once per segment through swapped blocks, and the CFG
pass that skips block 9 skips a swapped block. The host K/V cache (animate2.kvcache) runs the same bookkeeping on
the CPU (its copies out and in are plain copies, its events None): same frames as the device cache, with and
without block swap, compiled or not, and never more than RESIDENT_CACHE_LAYERS layers held on the device.
Compiled blocks: torch.compile with the `aot_eager` backend stands in for inductor in the job-level test (it
traces the same graphs through dynamo and AOT autograd, but skips inductor's C++ code generation, a minute per graph
on two cores); one block is compiled with inductor itself.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import weakref

import numpy as np
import pytest
import torch

from wan_animate.engine.accel import AccelOptions
from wan_animate.engine.animate2 import Animate2Inputs, Animate2Options, animate2
from wan_animate.engine.animate2.accel import accelerate_animate2
from wan_animate.engine.animate2.forward import (UNCONDITIONAL_SKIPPED_BLOCK, Animate2DiT, BlockFunctions,
                                                 driving_block, generation_block)
from wan_animate.engine.animate2.kvcache import HostDrivingCache
from wan_animate.engine.copystream import CopyStream
from wan_animate.engine.memory import (CACHE_HOST, ENCODERS_STREAMED, GIB, RESIDENT_CACHE_LAYERS, DeviceBudget,
                                       Footprint, JobShape)
from wan_animate.engine.placement import place_for_job, place_transformer
from tests.animate2_inputs import REFERENCE, clip

AREA, SEGMENT, STEPS = 32 * 32, 9, 2


def frames(components, fast, **overrides) -> np.ndarray:
    """Two segments of the full model (CFG: the unconditional pass skips block 9)."""
    options = Animate2Options(**{**dict(prompt="a man dancing", steps=STEPS, segment_frames=SEGMENT, area=AREA,
                                        seed=5), **overrides})
    return animate2(components, Animate2Inputs(REFERENCE, clip(17)), options, device="cpu", fast=fast).frames


@pytest.fixture(scope="module")
def resident(tiny2):
    """The two segments with every block and the K/V cache on the device."""
    return frames(tiny2, accelerate_animate2(tiny2.transformer, "cpu"))


def test_block_swapped_sampling_equals_resident(tiny2, resident):
    swapped = copy.deepcopy(tiny2)
    swap = place_transformer(swapped.transformer, "cpu", blocks_on_cpu=5)
    assert UNCONDITIONAL_SKIPPED_BLOCK in swap.indices
    fast = accelerate_animate2(swapped.transformer, "cpu", swap=swap)
    assert fast.describe()["blocks_on_cpu"] == 5
    assert np.array_equal(frames(swapped, fast), resident)


@pytest.mark.parametrize("blocks_on_cpu", [0, 5])
def test_host_driving_cache_gives_the_frames_of_the_device_cache(tiny2, resident, blocks_on_cpu):
    """Two segments of CFG (the unconditional pass skips block 9, which swaps with 5 blocks on the CPU)."""
    model = copy.deepcopy(tiny2)
    swap = place_transformer(model.transformer, "cpu", blocks_on_cpu) if blocks_on_cpu else None
    fast = accelerate_animate2(model.transformer, "cpu", swap=swap)
    assert np.array_equal(frames(model, fast, driving_cache=CACHE_HOST), resident)


def test_host_cache_fetches_each_layer_once_a_pass_and_holds_two(tiny2):
    """The DiT's passes read the host cache: CFG's two passes (block 9 skipped in the second), a step outside the
    driving window, a second segment; the same outputs as the device cache, every layer copied in once per pass
    (the next pass's first layer at the end of a pass), never more than two layers' K/V held on the device."""
    dit = Animate2DiT(tiny2.transformer)
    layers = len(tiny2.transformer.blocks)
    g = torch.Generator().manual_seed(0)
    frames_, h, w = 3, 4, 6
    context = dit.encode_context(torch.randn(1, 20, 32, generator=g), torch.randn(1, 257, 1280, generator=g))
    host = HostDrivingCache("cpu", layers)
    step = torch.tensor([500.0])
    for _segment in range(2):
        driving = torch.randn(1, 36, frames_ - 1, h, w, generator=g)
        latent = torch.randn(1, 36, frames_, h, w, generator=g)
        device = dit.driving_pass(driving, context)
        assert dit.driving_pass(driving, context, host) is host and host.peak_resident <= RESIDENT_CACHE_LAYERS
        slabs = [t.data_ptr() for layer in host.stored for t in layer]
        assert all(torch.equal(a, b) for layer, k, v in zip(host.stored, device.keys, device.values)
                   for a, b in zip(layer, (k, v)))
        fetched = host.fetches
        for unconditional in (False, True, False, True):
            assert torch.equal(dit(latent, step, context, host, unconditional), dit(latent, step, context, device,
                                                                                       unconditional))
        first = layers + 1  # layer 0 is not prefetched in a segment's first pass
        assert host.fetches - fetched == first + (layers - 1) + layers + (layers - 1)
        fetched = host.fetches
        dit(latent, step, context, None)  # outside the driving window: nothing read
        assert host.fetches == fetched and len(host.slots) == RESIDENT_CACHE_LAYERS
        host.release()  # the segment's end: its device slots go before the VAE decodes
        assert host.resident == 0 and host.peak_resident == RESIDENT_CACHE_LAYERS
    assert [t.data_ptr() for layer in host.stored for t in layer] == slabs  # allocated once per job


def test_compiled_blocks_equal_eager_with_one_graph_per_kind_of_pass(tiny2, monkeypatch):
    """aot_eager stands in for inductor (see the module docstring); the blocks are also swapped."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, dynamic=None, mode=None: compile(fn, backend=counter,
                                                                                        dynamic=dynamic))
    eager = frames(tiny2, accelerate_animate2(tiny2.transformer, "cpu"), driving_end=0.5)
    model = copy.deepcopy(tiny2)
    fast = accelerate_animate2(model.transformer, "cpu", AccelOptions(compile=True))
    fast = fast.with_swap(place_transformer(model.transformer, "cpu", blocks_on_cpu=3))
    assert fast.describe()["compiled"] is True
    assert np.array_equal(frames(model, fast, driving_end=0.5), eager)
    # the driving pass, steps attending the driving video, steps past the driving window: one graph each for all
    # ten blocks, both segments and both CFG passes (no graph breaks, no recompiles per block)
    assert counter.frame_count == 3
    # the K/V cache in host memory: fetched outside the compiled functions, which take its slots as they are
    assert np.array_equal(frames(model, fast, driving_end=0.5, driving_cache=CACHE_HOST), eager)
    assert counter.frame_count == 3


def test_one_block_compiled_by_inductor_matches_eager(tiny2):
    """The real backend (C++ code generated by inductor with the system compiler) on one sampling block."""
    from wan_animate.engine.accel.compile import compile_function
    from wan_animate.engine.animate2.attention import sdpa_with_lse
    from wan_animate.engine.parallel.sequence import WholeSequence

    torch._dynamo.reset()
    dit = Animate2DiT(tiny2.transformer)
    g = torch.Generator().manual_seed(0)
    frames_, hw, heads, dim = 3, 6, 2, 16
    hidden = torch.randn(1, frames_ * hw, 32, generator=g)
    context = dit.encode_context(torch.randn(1, 20, 32, generator=g), torch.randn(1, 257, 1280, generator=g))
    rotary = dit.rotary((frames_, 2, 3))
    k_ref, v_ref = (torch.randn(1, (frames_ - 1) * hw, heads, dim, generator=g) for _ in range(2))
    proj = dit.time_embedding(torch.tensor([500.0]))[1]
    args = (hidden, proj, context, rotary, WholeSequence(hidden.shape[1]), dit.kernel, sdpa_with_lse, hw, k_ref,
            v_ref, 1.0, 1.0)
    compiled = compile_function(generation_block)
    with torch.no_grad():
        for block in list(tiny2.transformer.blocks)[:2]:  # a second block reuses the graph
            torch.testing.assert_close(compiled(block, *args), generation_block(block, *args), atol=1e-5, rtol=1e-4)


def test_place_for_job_plans_animate2_and_places_it(tiny2):
    """The planner reads Animate-2 from the loaded model: its K/V cache layers, no face input."""
    components = copy.deepcopy(tiny2)
    fp = Footprint.of(components)
    assert (fp.kv_cache_layers, fp.face_size, fp.model) == (10, 0, "Wan-Animate-2")
    job = JobShape(9, 32, 16)
    all_resident = place_for_job(copy.deepcopy(tiny2), torch.device("meta"), job, DeviceBudget(64 * GIB))[0]
    plan, swap = place_for_job(components, torch.device("meta"), job, DeviceBudget(64 * GIB), blocks_on_cpu=4)
    assert all_resident.blocks_on_cpu == 0 and plan.blocks_on_cpu == 4 and len(swap.indices) == 4
    assert plan.encoders != ENCODERS_STREAMED
    for i, block in enumerate(components.transformer.blocks):
        assert {p.device.type for p in block.parameters()} == {"cpu" if i in swap.indices else "meta"}
    assert {p.device.type for p in components.vae.parameters()} == {"meta"}


class StreamLog:
    """torch.cuda's streams and events as a log of the operations queued on them (the CUDA code path forced on the
    CPU: copies still happen at once, in host order), and the order the GPU would have to keep: `before(a, b)`
    when operation a must finish before b starts (program order on one stream, plus each wait on an event)."""

    def __init__(self):
        self.ops: list[tuple[str, str, object]] = []  # (stream, kind, what)
        self.compute = self.Stream(self, "compute")
        self.current = self.compute
        self.generation: dict[int, int] = {}  # data_ptr -> times its memory was freed (a reused address is new)
        self.live: set[int] = set()  # data_ptrs whose free is watched

    class Stream:
        def __init__(self, log, name):
            self.log, self.name = log, name

        def wait_event(self, event):
            if event.at is not None:
                self.log.op(self, "wait", event.at)

    def event(self):
        log = self

        class Event:
            at = None

            def record(self, stream):
                self.at = log.op(stream, "record", None)
        return Event()

    def op(self, stream, kind: str, what) -> int:
        self.ops.append((stream.name, kind, what))
        return len(self.ops) - 1

    def key(self, t: torch.Tensor) -> tuple[int, int]:
        """The tensor's memory in this lifetime; its free is logged as a compute-stream point (after it, the
        caching allocator may hand the memory to the compute stream's next work)."""
        ptr = t.untyped_storage().data_ptr()
        if ptr not in self.live:
            self.live.add(ptr)
            weakref.finalize(t.untyped_storage(), self.freed, ptr)
        return ptr, self.generation.get(ptr, 0)

    def freed(self, ptr: int) -> None:
        self.live.discard(ptr)
        self.op(self.compute, "free", (ptr, self.generation.get(ptr, 0)))
        self.generation[ptr] = self.generation.get(ptr, 0) + 1

    def before(self, a: int, b: int) -> bool:
        seen, todo = set(), [a]
        while todo:
            i = todo.pop()
            if i == b:
                return True
            if i in seen or i > b:
                continue
            seen.add(i)
            todo += [j for j in range(i + 1, len(self.ops)) if self.ops[j][0] == self.ops[i][0]][:1]
            todo += [j for j, (_, kind, at) in enumerate(self.ops) if kind == "wait" and at == i]
        return False

    def install(self, monkeypatch, copies: CopyStream) -> None:
        log = self

        @contextlib.contextmanager
        def stream(s):
            log.current = s
            try:
                yield
            finally:
                log.current = log.compute

        side = self.Stream(self, "copy")
        copies.cuda, copies.stream = True, side
        monkeypatch.setattr(torch.cuda, "Event", self.event)
        monkeypatch.setattr(torch.cuda, "stream", stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: log.compute)
        copy = CopyStream.copy

        def logged(pairs, after=None):
            def each():
                for dst, src in pairs:
                    log.op(side, "copy", (log.key(dst), log.key(src)))
                    yield dst, src
            return copy(copies, each(), after)

        monkeypatch.setattr(copies, "copy", logged)


def test_host_cache_copies_are_ordered_by_events_forced_cuda_path(tiny2, monkeypatch):
    """The CUDA code path of the host cache, forced on the CPU with torch.cuda's streams and events replaced by a
    log: same outputs, and in the order the log imposes on a GPU, every block reads a slot only after the copy that
    filled it, no copy overwrites a slot before the blocks that read it are done, a driving layer's device memory
    is freed only after its copy out, and a slot's only after the copies into it."""
    log = StreamLog()
    copies = CopyStream("cpu")
    log.install(monkeypatch, copies)

    def generation(block, hidden, proj, context, rotary, split, kernel, lse_kernel, hw, k_ref, v_ref, *strengths):
        if k_ref is not None:
            log.op(log.compute, "read", (log.key(k_ref), log.key(v_ref)))
        return generation_block(block, hidden, proj, context, rotary, split, kernel, lse_kernel, hw, k_ref, v_ref,
                                *strengths)

    def driving(*args):
        hidden, k, v = driving_block(*args)
        log.op(log.compute, "produce", (log.key(k), log.key(v)))
        return hidden, k, v

    dit = Animate2DiT(tiny2.transformer)
    logged = Animate2DiT(tiny2.transformer, blocks=BlockFunctions(generation, driving))
    host = HostDrivingCache("cpu", len(tiny2.transformer.blocks), copies)
    g = torch.Generator().manual_seed(1)
    context = dit.encode_context(torch.randn(1, 20, 32, generator=g), torch.randn(1, 257, 1280, generator=g))
    step = torch.tensor([500.0])
    for _segment in range(2):
        driving_input = torch.randn(1, 36, 2, 4, 6, generator=g)
        latent = torch.randn(1, 36, 3, 4, 6, generator=g)
        device = dit.driving_pass(driving_input, context)
        logged.driving_pass(driving_input, context, host)
        for unconditional in (False, True, False):
            assert torch.equal(logged(latent, step, context, host, unconditional),
                               dit(latent, step, context, device, unconditional))
        del device
        host.release()
    del host
    gc.collect()
    ops = log.ops
    copies_ = [(i, dst, src) for i, (_, kind, what) in enumerate(ops) if kind == "copy" for dst, src in [what]]
    reads = [(i, key) for i, (_, kind, what) in enumerate(ops) if kind == "read" for key in what]
    frees = {what: i for i, (_, kind, what) in enumerate(ops) if kind == "free"}
    produced = {key: i for i, (_, kind, what) in enumerate(ops) if kind == "produce" for key in what}
    assert reads and len(produced) == 2 * 2 * len(tiny2.transformer.blocks)
    for r, key in reads:
        (filled,) = [c for c, dst, _ in copies_ if dst == key and c < r][-1:]
        assert log.before(filled, r)
        assert all(log.before(r, c) for c, dst, _ in copies_ if dst == key and c > r)
    for c, dst, src in copies_:
        if src in produced:  # out: after the block produced it, before its memory can serve anything else
            assert log.before(produced[src], c) and log.before(c, frees[src])
        else:  # in: the slot's memory is let go only after the copy
            assert log.before(c, frees[dst])


def test_int8_host_cache_error_to_the_bf16_cache(tiny2, resident):
    """driving_cache="host_int8" (off by default): the K/V stored as int8 with a scale per token and head. Prints
    the error of the stored K/V and of the DiT's output (both CFG passes) to the exact cache, and of a job's frames."""
    dit = Animate2DiT(tiny2.transformer)
    g = torch.Generator().manual_seed(2)
    context = dit.encode_context(torch.randn(1, 20, 32, generator=g), torch.randn(1, 257, 1280, generator=g))
    driving = torch.randn(1, 36, 2, 4, 6, generator=g)
    latent = torch.randn(1, 36, 3, 4, 6, generator=g)
    step = torch.tensor([500.0])
    device = dit.driving_pass(driving, context)
    host = dit.driving_pass(driving, context, HostDrivingCache("cpu", len(tiny2.transformer.blocks), int8=True))
    assert host.stored[0][0].dtype == torch.int8 and host.stored[0][1].shape[-1] == 1
    kv = max(float((host.layer(i)[j] - t).norm() / t.norm())
             for i, (k, v) in enumerate(zip(device.keys, device.values)) for j, t in enumerate((k, v)))
    host.release()
    errors = []
    for unconditional in (False, True):
        want = dit(latent, step, context, device, unconditional)
        errors.append(float((dit(latent, step, context, host, unconditional) - want).norm() / want.norm()))
    assert host.peak_resident <= RESIDENT_CACHE_LAYERS
    job = frames(tiny2, accelerate_animate2(tiny2.transformer, "cpu"), driving_cache="host_int8").astype(int)
    diff = np.abs(job - resident.astype(int))
    print(f"int8 K/V cache: K/V relative error {kv:.2e}, DiT output relative error {max(errors):.2e}, frames of a "
          f"job (2 segments, CFG): mean {diff.mean():.3f} / max {diff.max()} of 255")
    assert kv < 0.01 and max(errors) < 0.01 and diff.mean() < 1
