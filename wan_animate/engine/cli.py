"""`python -m wan_animate animate`: reference image + driving video -> animated mp4, preprocessing included.

Under torchrun (`torchrun --nproc-per-node N -m wan_animate animate ... --sequence-parallel ulysses`) the N
processes run one job together (wan_animate.engine.parallel): rank 0 preprocesses (Animate-14B) and writes the mp4,
every rank loads the model on its GPU and runs its share of the DiT's tokens.

The mp4 carries the driving video's sound in sync with the frames (wan_animate.preprocess.audio) unless --no-audio.

Preprocessing streams its outputs into memory-mapped files in a temporary folder, and the engine reads them one
segment at a time and streams decoded frames into the mp4, so host memory stays bounded for any video length.
The mp4 appears under its name only when the whole job succeeded.

`--tiny` builds a tiny random model and tiny ONNX detection models (and, without --video/--ref, a synthetic driving
video and reference) and runs the same job on them: the whole pipeline on a CPU in seconds.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from .cli_common import accel_options, check_sources, device_and_dtype, output, pick, place_by_plan, plans_memory, print_progress

HELP = ("Reference image + driving video -> animated video (Wan2.2-Animate-14B with preprocessing, or Wan-Animate-2 "
        "on the raw video), written as mp4")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..modes import MODES
    from .accel import INT8_WEIGHT_CHOICES, AccelOptions
    from .accel.attention import CHOICES as ATTENTION_CHOICES
    from .memory import DRIVING_CACHES
    from .options import COLOR_ANCHORS, LORA_MODES, AnimateOptions
    from .parallel.sequence import MODES as PARALLEL_MODES
    from .schedulers import SOLVERS

    d = AnimateOptions()
    parser.add_argument("--ref", help="reference image of the character (PNG/JPEG/WebP)")
    parser.add_argument("--video", help="driving video")
    parser.add_argument("--models", help="Wan2.2-Animate-14B or Wan-Animate-2 weights: a Diffusers folder, the Wan-AI "
                                         "release folder or a ComfyUI models folder (which model is read from the "
                                         "weights; the detection ONNX files are also looked up here)")
    parser.add_argument("--out", required=True, help="output mp4")
    parser.add_argument("--tiny", action="store_true", help="run on a tiny random built-in model (demo, CPU)")
    parser.add_argument("--model", choices=("auto", "animate", "animate2"), default="auto",
                        help="auto: whatever --models holds; animate2 also reads an unmarked Wan2.1-I2V-shaped file "
                             "as Wan-Animate-2 (and picks the tiny Animate-2 with --tiny)")
    parser.add_argument("--mode", choices=MODES, default=d.mode)
    parser.add_argument("--prompt", default=None, help="default: the official prompt (Animate-2: empty); "
                                                        "Animate-2 reads viewpoint and background from it")
    parser.add_argument("--negative-prompt", default=None, help="used with --guide-scale > 1; default: official")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"sampling steps per segment (official {d.steps}; Animate-2 40, distilled 10)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--guide-scale", type=float, default=None,
                        help=f"> 1 enables CFG (2 forwards/step); default {d.guide_scale} (Animate-2 3.0, distilled 1.0)")
    parser.add_argument("--shift", type=float, default=d.shift)
    parser.add_argument("--solver", choices=SOLVERS, default=None,
                        help=f"default {d.solver} (Animate-2: dpm++, distilled euler; it takes dpm++ or euler)")
    parser.add_argument("--segment-frames", type=int, default=None,
                        help=f"frames per segment, 4n+1 (default {d.segment_frames}; Animate-2 81)")
    parser.add_argument("--guide-frames", type=int, choices=(1, 5), default=d.guide_frames)
    parser.add_argument("--color-anchor", choices=COLOR_ANCHORS, default=d.color_anchor)
    parser.add_argument("--color-anchor-strength", type=float, default=d.color_anchor_strength)
    parser.add_argument("--tiled-vae", action="store_true", help="tiled VAE encode/decode (less memory)")
    parser.add_argument("--step-cache", type=float, default=d.step_cache,
                        help="> 0: reuse the DiT's last transformation while the estimated change stays below this "
                             "(20+ undistilled steps, e.g. Animate-2's full model; e.g. 0.1)")
    parser.add_argument("--lora", action="append", default=[], metavar="FILE[:STRENGTH]",
                        help="a LoRA and its strength (default 1.0); repeat for several")
    parser.add_argument("--lora-mode", choices=LORA_MODES, default="merge",
                        help="merge into the weights (fastest) or apply at run time")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--memory", choices=("auto", "gpu"), default="auto",
                        help="auto: on a GPU, plan where the weights live from its free memory (blocks swapped from "
                             "host memory, encoders streamed, VAE tiled as needed; the plan is printed), for both "
                             "models; gpu: all on the GPU")
    parser.add_argument("--dtype", default="auto", help="weight dtype: auto (bf16 on CUDA, fp32 on CPU), bf16, "
                                                         "fp16, fp32, fp8_e4m3fn")
    parser.add_argument("--attention", choices=ATTENTION_CHOICES, default=None,
                        help="the DiT's attention kernel (default: diffusers' SDPA): auto picks the fastest within 3 %% "
                             "of bf16 attention on this GPU; sparse is comfy-kitchen's training-free Sol-Attn for "
                             "long and 720p videos (needs comfy-kitchen and a CUDA GPU; else auto's kernel is used)")
    parser.add_argument("--sparse-tau", type=float, default=AccelOptions().sparse_tau,
                        help="--attention sparse: routing threshold (higher: sparser and faster, further from dense "
                             "attention)")
    parser.add_argument("--int8-weights", choices=INT8_WEIGHT_CHOICES, default="auto",
                        help="Animate-2 int8 ConvRot files: auto keeps the weights int8 where comfy-kitchen's int8 "
                             "kernels run on the GPU (else dequantises them at load, saying why); keep insists "
                             "(an error names what to install where it cannot); dequantize at load")
    parser.add_argument("--detection-models", default=None,
                        help="folder with yolov10m.onnx and a ViTPose whole-body .onnx (default: look in --models)")
    parser.add_argument("--no-download", action="store_true", help="never download missing detection models")
    parser.add_argument("--fps", type=float, default=None, help="frame rate to resample the driving video to "
                                                                 "(official 30, Animate-2 24; -1 keeps the video's)")
    parser.add_argument("--resolution-area", type=int, nargs=2, default=None, metavar=("W", "H"),
                        help="working size area (official 1280 720, Animate-2 640 800; --tiny: 96 64)")
    parser.add_argument("--variant", choices=("auto", "full", "distilled"), default="auto",
                        help="Animate-2: auto follows the weights (distilled: 10 steps, no CFG)")
    parser.add_argument("--prompt-ref", default=None, help="Animate-2: text of the driving-video pass "
                                                           "(default: the model's own)")
    parser.add_argument("--driving-strength", type=float, default=1.0,
                        help="Animate-2: how strongly the driving video is followed (1 = as trained)")
    parser.add_argument("--driving-window", type=float, nargs=2, default=(0.0, 1.0), metavar=("START", "END"),
                        help="Animate-2: fractions of the steps in which the driving video is attended")
    parser.add_argument("--reference-strength", type=float, default=1.0,
                        help="Animate-2: how strongly the reference image is kept (1 = as trained)")
    parser.add_argument("--driving-cache", choices=DRIVING_CACHES, default="auto",
                        help="Animate-2: where the segment's driving-video K/V cache lives (25 GiB for 81 frames at "
                             "480p): device; host (host memory, brought to the GPU a layer at a time: fits 12-32 GB "
                             "cards); host_int8 (stored as int8: half the host memory and transfers, a small error); "
                             "auto: --memory auto's plan (the GPU when it fits, else host), else the GPU")
    parser.add_argument("--retarget", action="store_true", help="animate mode: driving pose to the reference's body")
    parser.add_argument("--no-reference-check", action="store_true",
                        help="accept a reference in which no person is detected (non-human characters)")
    parser.add_argument("--mask", default=None, help="replace mode: your own character masks (video or folder)")
    parser.add_argument("--no-audio", action="store_true",
                        help="write the video without the driving video's sound (kept in sync by default)")
    parser.add_argument("--sequence-parallel", choices=PARALLEL_MODES, default=d.sequence_parallel,
                        help="under torchrun: split the DiT's tokens across the processes' GPUs (Animate-14B: "
                             "ulysses falls back to ring where the heads do not divide by the number of GPUs)")
    parser.add_argument("--shard-weights", action="store_true",
                        help="with --sequence-parallel: shard the DiT blocks' weights across the GPUs (FSDP2) "
                             "instead of a whole copy per GPU (bf16/fp16/fp32 weights; no memory planning)")


def run(args: argparse.Namespace) -> int:
    from wan_loader.errors import WanLoaderError

    from ..preprocess.errors import PreprocessError
    from .jobs import AnimationCancelled, EngineOutOfMemory
    from .parallel import launch

    try:
        rank = launch.join(args.device) if args.sequence_parallel != "off" else None
        if rank is None and args.shard_weights:
            raise ValueError("--shard-weights shards the DiT across the GPUs of a --sequence-parallel job.")
        # The job's memory-mapped frames may still be open while an error unwinds; Windows cannot delete a mapped
        # file, and the cleanup's PermissionError would replace the one-line error below with a traceback.
        with tempfile.TemporaryDirectory(prefix="wan_animate_", ignore_cleanup_errors=True) as work:
            _run(args, Path(work), rank)
    except (ValueError, FileNotFoundError, PreprocessError, WanLoaderError, EngineOutOfMemory) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (AnimationCancelled, KeyboardInterrupt):
        print("cancelled; nothing was written", file=sys.stderr)
        return 130
    finally:
        launch.leave()
    return 0


def model_family(args: argparse.Namespace) -> str:
    """Which model the command runs: --model, else what --models holds (read from the weights)."""
    if args.tiny or not args.models or not Path(args.models).exists():
        return "animate" if args.model == "auto" else args.model
    from wan_loader import inspect

    found = inspect(args.models, model="animate2" if args.model == "animate2" else None)["family"] or "animate"
    if args.model not in ("auto", found):
        names = {"animate": "Wan2.2-Animate-14B", "animate2": "Wan2.2-Animate-2-14B"}
        raise ValueError(f"{args.models} holds {names[found]} weights, but {names[args.model]} is required by "
                         f"--model {args.model}. Drop --model to run what the weights are.")
    return found


def _run(args: argparse.Namespace, work: Path, rank) -> None:
    if model_family(args) == "animate2":
        from .animate2.cli import run_animate2

        run_animate2(args, work, rank)
        return

    import torch.distributed as dist

    from wan_loader import load_components
    from wan_loader.lora import parse_lora_spec

    from ..preprocess.audio import DrivingSound
    from .accel import accelerate
    from .forward import run_block
    from .memory import JobShape
    from .options import AnimateOptions
    from .parallel import shard_blocks
    from .placement import swapping
    from .run import animate

    d = AnimateOptions()
    options = AnimateOptions(
        mode=args.mode, prompt=args.prompt, negative_prompt=args.negative_prompt, steps=pick(args.steps, d.steps),
        guide_scale=pick(args.guide_scale, d.guide_scale), shift=args.shift, solver=pick(args.solver, d.solver),
        seed=args.seed, segment_frames=pick(args.segment_frames, d.segment_frames), guide_frames=args.guide_frames,
        color_anchor=args.color_anchor,
        color_anchor_strength=args.color_anchor_strength, tiled_vae=args.tiled_vae, lora_mode=args.lora_mode,
        step_cache=args.step_cache, sequence_parallel=args.sequence_parallel,
    )
    options.check()
    accel = accel_options(args)
    loras = [parse_lora_spec(text) for text in args.lora]
    for lora in loras:
        if not Path(lora.path).is_file():
            raise FileNotFoundError(f"LoRA file not found: {lora.path}")
    device, dtype = device_and_dtype(args, rank)
    first = rank is None or rank.is_first
    prepare = lambda: _prepare(args, work, device)
    models, inputs, fps, video = prepare() if rank is None else prepare_on_first_rank(rank, prepare)
    height, width = inputs.size

    sound = None if args.no_audio or not first else DrivingSound.probe(video)
    planned = plans_memory(args, device)
    components = load_components(models, device="cpu" if planned else str(device), weight_dtype=dtype)
    runner = accelerate(components.transformer, device, accel).block_runner if accel else run_block
    if planned:  # placed from the CPU block by block: never more GPU memory than the plan
        swap = place_by_plan(components, device, JobShape(options.segment_frames, height, width), options, first)
        runner = swapping(swap, runner)
    if args.shard_weights:
        shard_blocks(components.transformer, device)
    with output(args.out, first, fps, sound, len(inputs)) as sink:
        result = animate(components, inputs, options, device=device, sink=sink,
                         progress=print_progress if first else None,
                         loras=[(lora.path, lora.strength) for lora in loras], block_runner=runner)
    if first:
        print(f"wrote {args.out}: {result.num_frames} frames in {result.segments} segment(s) of "
              f"{result.segment_frames} ({result.seconds:.1f} s)", file=sys.stderr)
    if rank is not None:
        dist.barrier()  # rank 0's folder of preprocessed frames stays until every rank is done


def _prepare(args, work: Path, device):
    """Preprocess the driving video into `work`: (model folder, AnimateInputs, fps, driving video path)."""
    from ..preprocess.estimator import PoseEstimator
    from ..preprocess.pipeline import PreprocessOptions
    from ..preprocess.video_io import OFFICIAL_FPS

    models, detection, video, ref, area = _sources(args, work)
    estimator = PoseEstimator(providers="cuda" if device.type == "cuda" else "cpu",
                              search_dirs=[p for p in (detection, models) if p], allow_download=not args.no_download)
    fps = pick(args.fps, OFFICIAL_FPS)
    pre_options = PreprocessOptions(mode=args.mode, target_fps=None if fps <= 0 else fps,
                                    resolution_area=area[0] * area[1], retarget=args.retarget,
                                    check_reference=not args.no_reference_check)
    pre_options.validate()
    began = time.perf_counter()
    inputs, fps = preprocess_to_disk(estimator, pre_options, video, ref, args.mask, work)
    height, width = inputs.size
    print(f"preprocessed {len(inputs)} frames, {width}x{height} at {fps:g} fps "
          f"({time.perf_counter() - began:.1f} s)", file=sys.stderr)
    return models, inputs, fps, video


def prepare_on_first_rank(rank, prepare):
    """`prepare()` on rank 0 only; the other ranks open the memory-mapped frames it wrote (the ranks of one torchrun
    share the machine). Returns (models, AnimateInputs, fps, video) on every rank; an error on rank 0 stops all."""
    import torch.distributed as dist

    prepared, message = None, [None]
    try:
        if rank.is_first:
            prepared = prepare()
            models, inputs, fps, video = prepared
            message = [(models, Path(inputs.pose.filename).parent, inputs.reference, fps, video)]
    finally:
        dist.broadcast_object_list(message, src=0)
    if message[0] is None:
        raise ValueError("rank 0 could not prepare the job (its error is printed above).")
    if prepared is not None:
        return prepared
    models, work, reference, fps, video = message[0]
    return models, open_preprocessed(work, reference), fps, video


def open_preprocessed(work: Path, reference):
    """The AnimateInputs over the .npy memory maps `preprocess_to_disk` wrote into `work`."""
    import numpy as np

    from .inputs import AnimateInputs

    arrays = {name: np.load(Path(work) / f"{name}.npy", mmap_mode="r") if (Path(work) / f"{name}.npy").exists()
              else None for name in ("pose", "face", "background", "mask")}
    return AnimateInputs(reference, arrays["pose"], arrays["face"], arrays["background"], arrays["mask"])


def _sources(args, work: Path):
    """(model dir, detection dir, video, reference, working area) from the arguments, made up for --tiny."""
    from ..preprocess.cli import area_argument

    models, detection, video, ref = args.models, args.detection_models, args.video, args.ref
    area = args.resolution_area or ((96, 64) if args.tiny else (1280, 720))
    area_argument(area)
    if args.tiny:
        from .demo import write_demo_inputs, write_demo_models

        models, detection = write_demo_models(work / "models")
        if video is None or ref is None:
            demo_video, demo_ref = write_demo_inputs(work / "inputs")
            video, ref = video or demo_video, ref or demo_ref
    check_sources(models, video, ref)
    return models, detection, Path(video), Path(ref), area


def preprocess_to_disk(estimator, options, video: Path, ref: Path, mask, work: Path):
    """Run preprocessing chunk by chunk into .npy memory maps; returns (AnimateInputs over them, fps)."""
    import numpy as np

    from ..preprocess.pipeline import Preprocessor
    from .inputs import AnimateInputs

    pre = Preprocessor(estimator, options, progress=_print_preprocess_progress)
    prepared = pre.prepare(str(video), ref, mask=mask)
    h, w = prepared.work_hw
    n = prepared.count
    first = None
    arrays = {}
    for chunk in pre.chunks(prepared):
        if first is None:
            first = chunk
            shapes = {"pose": (n, h, w, 3), "face": (n,) + chunk.face.shape[1:]}
            if options.mode == "replace":
                shapes.update(background=(n, h, w, 3), mask=(n, h, w))
            arrays = {k: np.lib.format.open_memmap(work / f"{k}.npy", "w+", np.uint8, s) for k, s in shapes.items()}
        end = chunk.start + len(chunk.pose)
        for name, array in arrays.items():
            array[chunk.start:end] = getattr(chunk, name)
    for array in arrays.values():
        array.flush()
    inputs = AnimateInputs(prepared.reference, arrays["pose"], arrays["face"], arrays.get("background"),
                           arrays.get("mask"))
    return inputs, prepared.fps


def _print_preprocess_progress(done: int, total: int) -> None:
    print(f"\rpreprocessing {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)
