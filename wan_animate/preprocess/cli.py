"""`python -m wan_animate preprocess`: write the official file set from a driving video and a reference image.

Writes src_pose.mp4, src_face.mp4, src_ref.png (a byte copy of the reference file) and, in replace mode,
src_bg.mp4 and src_mask.mp4, so results can be compared with the official preprocess_data.py. Each video carries
the driving video's sound in sync with its frames unless --no-audio. Everything is
written into a temporary folder beside --out and moved into place only when all of it succeeded.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from ..modes import MODES

HELP = "Driving video + reference image -> src_pose/src_face/src_ref (+ src_bg/src_mask) as the official script writes"
ANIMATE_FILES = ("src_pose.mp4", "src_face.mp4", "src_ref.png")
REPLACE_FILES = ANIMATE_FILES + ("src_bg.mp4", "src_mask.mp4")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, help="driving video file")
    parser.add_argument("--ref", required=True, help="reference image of the character (PNG/JPEG/WebP)")
    parser.add_argument("--models", default=None,
                        help="folder with yolov10m.onnx and a ViTPose whole-body .onnx (also det/, pose2d/ and "
                             "process_checkpoint/ sub-folders); missing files are downloaded unless --no-download")
    parser.add_argument("--out", required=True, help="output folder (created; existing files of the set are replaced)")
    parser.add_argument("--mode", choices=MODES, default="animate")
    parser.add_argument("--detector", default=None, help="detector .onnx file (default: yolov10m.onnx in --models)")
    parser.add_argument("--pose", default=None, help="pose .onnx file (default: the first ViTPose found in --models)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when usable), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per detector call")
    parser.add_argument("--no-download", action="store_true", help="never download missing models")
    parser.add_argument("--fps", type=float, default=30.0, help="output frame rate (official 30; -1 keeps the video's)")
    parser.add_argument("--source-fps", type=float, default=None, help="override the video's own frame rate")
    parser.add_argument("--resolution-area", type=int, nargs=2, default=(1280, 720), metavar=("W", "H"),
                        help="target area W*H for the working size (official 1280 720)")
    parser.add_argument("--resolution-rule", choices=("official", "exact"), default="official",
                        help="official: what the official code produces; exact: largest divisible size within the area")
    parser.add_argument("--person", choices=("largest", "index", "track"), default="largest",
                        help="whom to follow: largest box per frame, N-th from the left, or tracked from a start frame")
    parser.add_argument("--person-index", type=int, default=0, help="N for --person index/track (0 = leftmost)")
    parser.add_argument("--track-start", type=int, default=0, help="frame where --person track picks the person")
    parser.add_argument("--fill", choices=("interpolate", "hold"), default="interpolate",
                        help="frames without the person: interpolate between neighbours, or hold the nearest")
    parser.add_argument("--retarget", action="store_true",
                        help="animate mode: rescale the driving pose to the reference's body proportions")
    parser.add_argument("--no-reference-check", action="store_true",
                        help="accept a reference image in which no person is detected (non-human characters)")
    parser.add_argument("--smoothing", type=float, default=0.0,
                        help="0 off; 0-1 strength of keypoint/face-box smoothing (no lag on fast motion)")
    parser.add_argument("--face-detector", default=None,
                        help="insightface model pack folder (e.g. buffalo_l with det_10g.onnx) used where face "
                             "landmarks are weak")
    parser.add_argument("--mask", default=None,
                        help="replace mode: your own character masks (video or folder of images, one per frame)")
    parser.add_argument("--segmenter", default=None,
                        help="replace mode: segment the person with SAM2/SAM3 prompted from the pose: a SAM 2 file "
                             "(sam2_hiera_large.pt, sam2.1_hiera_*.safetensors), a transformers model folder, a name "
                             "in --models, or a Hub id (e.g. facebook/sam2.1-hiera-large, downloaded into the Hugging "
                             "Face cache). Default: the pose box + keypoints mask")
    parser.add_argument("--segment-chunk", type=int, default=400,
                        help="frames per segmentation session (official 400; memory grows with it, not with the video)")
    parser.add_argument("--segment-points-only", action="store_true",
                        help="prompt SAM with the 8 official body points only (default adds the person box)")
    parser.add_argument("--iterations", type=int, default=3, help="mask dilation iterations (official 3; 0: raw mask)")
    parser.add_argument("--k", type=int, default=7, help="mask dilation kernel size (official 7)")
    parser.add_argument("--w-len", type=int, default=1, help="mask grid cells across (official 1: one box)")
    parser.add_argument("--h-len", type=int, default=1, help="mask grid cells down (official 1: one box)")
    parser.add_argument("--crf", type=int, default=18, help="x264 quality of the written videos (lower is better)")
    parser.add_argument("--no-audio", action="store_true",
                        help="write the videos without the driving video's sound (kept in sync by default)")


def area_argument(width_height) -> int:
    """The working area W*H of `--resolution-area W H`; below the minimum, an error that names the flag."""
    from .resolution import MIN_AREA, OFFICIAL_DIVISOR

    width, height = width_height
    if width <= 0 or height <= 0 or width * height < MIN_AREA:
        raise ValueError(f"--resolution-area {width} {height}: W and H must be positive and W*H at least {MIN_AREA} "
                         f"(the working size is a multiple of {OFFICIAL_DIVISOR}); the official value is 1280 720.")
    return width * height


def run(args: argparse.Namespace) -> int:
    from wan_loader.errors import WrongModelError

    from .errors import PreprocessError
    from .model_files import ModelFileError, ModelNotFoundError

    out = Path(args.out)
    try:
        written = _run(args, out)
    except (PreprocessError, WrongModelError, ModelNotFoundError, ModelFileError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(written)} to {out}")
    return 0


def _run(args: argparse.Namespace, out: Path) -> list[str]:
    from .audio import DrivingSound
    from .estimator import PoseEstimator
    from .pipeline import PreprocessOptions, Preprocessor
    from .video_io import VideoWriter, read_image

    ref_path = Path(args.ref)
    read_image(ref_path)  # fail early, before loading models, on an unreadable reference
    if not Path(args.video).is_file():
        raise FileNotFoundError(f"driving video not found: {args.video}")
    options = PreprocessOptions(
        mode=args.mode, target_fps=None if args.fps <= 0 else args.fps,
        resolution_area=area_argument(args.resolution_area), resolution_rule=args.resolution_rule,
        person=args.person, person_index=args.person_index, track_start_frame=args.track_start, fill=args.fill,
        retarget=args.retarget, check_reference=not args.no_reference_check, smoothing=args.smoothing, mask_kernel=args.k, mask_iterations=args.iterations,
        mask_grid=(args.w_len, args.h_len),
    )
    options.validate()
    search = [args.models] if args.models else []
    estimator = PoseEstimator(args.detector, args.pose, providers=args.device, batch_size=args.batch_size,
                              search_dirs=search, allow_download=not args.no_download)
    segmenter = None
    if args.segmenter:
        if args.mode != "replace":
            raise ValueError("--segmenter works in replace mode only (--mode replace)")
        from .sam_tracker import load_segmenter
        from .segmenter import SegmentOptions

        segmenter = load_segmenter(args.segmenter, search, device=args.device, allow_download=not args.no_download,
                                   options=SegmentOptions(chunk_frames=args.segment_chunk,
                                                          use_box=not args.segment_points_only))
    face_detector = None
    if args.face_detector:
        from .face_detector import InsightFaceDetector

        face_detector = InsightFaceDetector(args.face_detector)
    pre = Preprocessor(estimator, options, face_detector, progress=_print_progress, segmenter=segmenter)
    prepared = pre.prepare(str(args.video), ref_path, fps=args.source_fps, mask=args.mask)

    out.parent.mkdir(parents=True, exist_ok=True)
    files = REPLACE_FILES if args.mode == "replace" else ANIMATE_FILES
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        tmp_dir = Path(tmp)
        shutil.copyfile(ref_path, tmp_dir / "src_ref.png")
        sound = None if args.no_audio else DrivingSound.probe(args.video)
        writers = {name: VideoWriter(tmp_dir / name, prepared.fps, crf=args.crf, sound=sound,
                                     expected_frames=prepared.count) for name in files if name.endswith(".mp4")}
        try:
            for chunk in pre.chunks(prepared):
                writers["src_pose.mp4"].write(chunk.pose)
                writers["src_face.mp4"].write(chunk.face)
                if args.mode == "replace":
                    writers["src_bg.mp4"].write(chunk.background)
                    writers["src_mask.mp4"].write(chunk.mask * 255)
        finally:
            for writer in writers.values():
                writer.close()
        out.mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.move(str(tmp_dir / name), str(out / name))
    track = prepared.track
    print(
        f"{prepared.count} frames at {prepared.fps:g} fps, {prepared.work_hw[1]}x{prepared.work_hw[0]}; person missing "
        f"in {len(track.missing_frames)} frame(s) ({int(track.interpolated.sum())} interpolated, "
        f"{int(track.held.sum())} held); weak face landmarks in {prepared.weak_face_frames} frame(s)",
        file=sys.stderr,
    )
    if segmenter is not None:
        report = segmenter.report
        print(f"segmented {prepared.count} frames in {report.chunks} chunk(s): {len(report.key_frames)} key frame(s), "
              f"{len(report.reprompts)} re-prompt(s), {report.empty_frames} frame(s) in chunks without the person",
              file=sys.stderr)
    return list(files)


def _print_progress(done: int, total: int) -> None:
    print(f"\rpreprocessing {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)
