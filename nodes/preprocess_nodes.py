"""Driving-video preprocessing as ComfyUI nodes: pose skeleton video, 512x512 face crops, character mask, background.

Outputs are plain IMAGE/MASK batches, so they feed this package's sampler and core's WanAnimateToVideo
(pose_video, face_video, background_video, character_mask) alike.
"""
from __future__ import annotations

import logging

import folder_paths
import numpy as np
from comfy_api.latest import io

from wan_animate.modes import MODES
from wan_animate.preprocess.face_detector import InsightFaceDetector, model_packs, pack_in_roots
from wan_animate.preprocess.masks import DILATION_ITERATIONS
from wan_animate.preprocess.model_files import SLOT_FILES, check_model_source
from wan_animate.preprocess.person_select import FILL_MODES, STRATEGIES
from wan_animate.preprocess.pipeline import PreprocessOptions
from wan_animate.preprocess.resolution import OFFICIAL_AREA
from wan_animate.preprocess.video_io import OFFICIAL_FPS

from .convert import array_to_mask, frames_to_image, image_to_frames, mask_to_array
from .folders import folder_paths_for
from .io_types import CATEGORY, FaceDetectorSocket, PoseModelSocket, SegmenterSocket
from .progress import NodeProgress, raise_if_interrupted
from .validation import check_message

_log = logging.getLogger("wan_animate.nodes")
DEVICES = ["auto", "cuda", "cpu"]


def _check_options(**values) -> None:
    PreprocessOptions(**values).validate()


def detection_choices(slot: str) -> list[str]:
    """Files in models/detection, then the known model names not there yet (picked: downloaded from the Hub)."""
    files = folder_paths.get_filename_list("detection")
    return files + [name for name in SLOT_FILES[slot] if name not in files]


def detection_source(choice: str) -> str:
    """A file found in the detection folders -> its path; a known model name not found -> the name (downloaded)."""
    return folder_paths.get_full_path("detection", choice) or choice


class WanAnimatePoseModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanAnimatePoseModelLoader",
            display_name="Load Wan Animate Pose Models",
            category=CATEGORY,
            description=(
                "Loads the person detector (YOLOv10m ONNX) and the whole-body pose model (ViTPose ONNX, single file "
                "or with its _data.bin) from models/detection. Runs on the GPU through onnxruntime-gpu when "
                "installed, else on the CPU."
            ),
            inputs=[
                io.Combo.Input("detector", options=detection_choices("detector"), default="yolov10m.onnx", tooltip="Person detector from models/detection (yolov10m.onnx from Wan-AI/Wan2.2-Animate-14B process_checkpoint/det). A known name not in the folder is downloaded from the Hub."),
                io.Combo.Input("pose", options=detection_choices("pose"), default="vitpose_h_wholebody.onnx", tooltip="Whole-body pose model from models/detection (vitpose_h_wholebody.onnx, vitpose_h_wholebody_model.onnx with its _data.bin, or vitpose-l-wholebody.onnx)."),
                io.Combo.Input("device", options=DEVICES, default="auto", tooltip="auto: CUDA when onnxruntime-gpu can use it (a warning says why not), else CPU."),
            ],
            outputs=[PoseModelSocket.Output(display_name="pose_model", tooltip="Detector + pose estimator, for Wan Animate Preprocess.")],
        )

    @classmethod
    def validate_inputs(cls, detector=None, pose=None) -> bool | str:
        dirs = folder_paths_for("detection")
        for slot, source in (("detector", detector), ("pose", pose)):
            message = source is None or check_message(
                check_model_source, slot=slot, source=detection_source(source), search_dirs=dirs)
            if message is not True:
                return message
        return True

    @classmethod
    def execute(cls, detector, pose, device) -> io.NodeOutput:
        from wan_animate.preprocess.estimator import PoseEstimator

        return io.NodeOutput(
            PoseEstimator(
                detection_source(detector),
                detection_source(pose),
                providers=device,
                search_dirs=folder_paths_for("detection"),
            )
        )


class WanAnimateFaceDetectorLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanAnimateFaceDetectorLoader",
            display_name="Load Wan Animate Face Detector",
            category=CATEGORY,
            description=(
                "Loads an insightface face detector (SCRFD, e.g. buffalo_l's det_10g.onnx) from models/insightface. "
                "Given to Wan Animate Preprocess, it places the face crop on frames where the pose model's face "
                "landmarks are weak. Needs `pip install insightface`."
            ),
            inputs=[
                io.Combo.Input("pack", options=model_packs(folder_paths_for("insightface")), tooltip="A model pack folder in models/insightface (or models/insightface/models) with a detection .onnx."),
                io.Float.Input("threshold", default=0.5, min=0.05, max=0.99, step=0.05, tooltip="Minimum face score."),
                io.Combo.Input("device", options=["cpu", "cuda"], default="cpu", tooltip="onnxruntime provider for the detector."),
            ],
            outputs=[FaceDetectorSocket.Output(display_name="face_detector", tooltip="For Wan Animate Preprocess' face_detector input.")],
        )

    @classmethod
    def validate_inputs(cls, pack=None) -> bool | str:
        return pack is None or check_message(pack_in_roots, pack=pack, roots=folder_paths_for("insightface"))

    @classmethod
    def execute(cls, pack, threshold, device) -> io.NodeOutput:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        return io.NodeOutput(InsightFaceDetector(pack_in_roots(pack, folder_paths_for("insightface")), det_thresh=threshold, providers=providers))


class WanAnimatePreprocess(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanAnimatePreprocess",
            display_name="Wan Animate Preprocess",
            category=CATEGORY,
            description=(
                "Turns a driving video into what Wan2.2-Animate needs, by the official recipe: skeleton video, RGB "
                "512x512 face crops, and for replacement the character mask and the background. Batched, with person "
                "choice, gap filling, retargeting to the reference's proportions and optional smoothing of keypoints "
                "and face boxes."
            ),
            inputs=[
                PoseModelSocket.Input("pose_model", tooltip="From Load Wan Animate Pose Models."),
                io.Image.Input("video", tooltip="Driving video frames (core Load Video -> Get Video Components, or any IMAGE batch)."),
                io.Image.Input("reference_image", tooltip="The character (core Load Image). Only the first image is used."),
                io.Combo.Input("mode", options=list(MODES), default="animate", tooltip="animate: the reference character performs the driving motion. replace: the reference character replaces the person in the driving video."),
                io.Int.Input("resolution_area", default=OFFICIAL_AREA, min=256, max=4096 * 4096, step=256, tooltip="Target pixel area (official 1280x720). Width and height keep the aspect and are divisible by 16."),
                io.Float.Input("fps", default=30.0, min=1.0, max=240.0, step=0.001, tooltip="Frame rate of the driving video (link Get Video Components' fps here)."),
                io.Float.Input("target_fps", default=OFFICIAL_FPS, min=0.0, max=240.0, step=0.001, tooltip="Resample the motion to this rate (official 30). 0 keeps the driving video's rate."),
                io.Combo.Input("person", options=list(STRATEGIES), default="largest", tooltip="Whom to follow when several people are present: the largest in each frame, the person_index-th from the left, or tracked from track_start_frame."),
                io.Int.Input("person_index", default=0, min=0, max=63, tooltip="For index/track: which person, counted from the left (0 = leftmost)."),
                io.Int.Input("track_start_frame", default=0, min=0, max=1000000, tooltip="For track: the frame where person_index is picked before being followed both ways."),
                io.Combo.Input("fill", options=list(FILL_MODES), default="interpolate", tooltip="Frames where the person is not found: interpolate between neighbours or hold the last pose (counted in the log)."),
                io.Boolean.Input("retarget", default=False, tooltip="Animate mode: rescale each limb of the driving pose to the reference character's proportions (official per-limb ratios)."),
                io.Boolean.Input("check_reference", default=True, tooltip="Stop with a clear error when no person is detected in the reference image. Turn off for characters the detector cannot see (animals, stylised figures)."),
                io.Float.Input("smoothing", default=0.0, min=0.0, max=1.0, step=0.05, tooltip="Temporal smoothing of keypoints and face boxes (one-euro): 0 off, 1 strongest. Removes jitter without lagging on fast motion."),
                io.Int.Input("mask_dilation", default=DILATION_ITERATIONS, min=0, max=20, tooltip="Replace mode: dilation passes on the character mask (official 3, kernel 7). 0 uses the mask as it is."),
                io.Mask.Input("character_mask", optional=True, tooltip="Replace mode: your own per-frame mask from any segmenter, 1 on the character; one per frame or one for all. Without it (and without a segmenter) the mask is the person's box and keypoints."),
                FaceDetectorSocket.Input("face_detector", optional=True, tooltip="Optional, from Load Wan Animate Face Detector: places face crops where the pose's face landmarks are weak."),
                SegmenterSocket.Input("segmenter", optional=True, tooltip="Replace mode, from Load Wan Animate Segmenter: segments the chosen person with SAM2/SAM3 prompted from the pose (official recipe, no clicks). Not used in animate mode."),
            ],
            outputs=[
                io.Image.Output(display_name="pose_video", tooltip="Skeleton frames at the working size (letterboxed to the reference's aspect in animate mode)."),
                io.Image.Output(display_name="face_video", tooltip="RGB 512x512 face crops, one per frame (core WanAnimateToVideo's face_video takes them as they are)."),
                io.Image.Output(display_name="reference_image", tooltip="The reference image letterboxed to the working size."),
                io.Image.Output(display_name="background_video", tooltip="Replace mode: the driving frames with the character blacked out. Animate mode: one black frame (not used)."),
                io.Mask.Output(display_name="character_mask", tooltip="Replace mode: per-frame mask, 1 on the character. Animate mode: one all-ones mask (not used)."),
                io.Float.Output(display_name="fps", tooltip="Frame rate of the outputs (target_fps, or the driving video's)."),
                io.Int.Output(display_name="width", tooltip="Working width (divisible by 16)."),
                io.Int.Output(display_name="height", tooltip="Working height (divisible by 16)."),
                io.Int.Output(display_name="frame_count", tooltip="Number of output frames."),
            ],
        )

    @classmethod
    def validate_inputs(cls, mode=None, retarget=None) -> bool | str:
        return check_message(_check_options, mode=mode, retarget=retarget)

    @classmethod
    def execute(cls, pose_model, video, reference_image, mode, resolution_area, fps, target_fps, person, person_index,
                track_start_frame, fill, retarget, check_reference, smoothing, mask_dilation, character_mask=None,
                face_detector=None, segmenter=None) -> io.NodeOutput:
        from wan_animate.preprocess.pipeline import preprocess

        frames = image_to_frames(video, "video")
        mask = None
        if character_mask is not None:
            mask = (mask_to_array(character_mask, frames=len(frames), name="character_mask") > 0.5).astype(np.uint8)
        options = PreprocessOptions(
            mode=mode, target_fps=target_fps or None, resolution_area=resolution_area, person=person,
            person_index=person_index, track_start_frame=track_start_frame, fill=fill, retarget=retarget,
            check_reference=check_reference, smoothing=smoothing, mask_iterations=mask_dilation,
        )
        options.validate()
        raise_if_interrupted()
        result = preprocess(
            pose_model, frames, image_to_frames(reference_image[:1], "reference_image")[0], fps=fps, mask=mask,
            face_detector=face_detector, options=options, progress=NodeProgress(),
            segmenter=segmenter if mode == "replace" else None,
        )
        if segmenter is not None and mode == "replace":
            report = segmenter.report
            _log.info("Wan Animate Preprocess: segmented %d frames in %d chunk(s), %d key frame(s), %d re-prompt(s)",
                      result.frame_count, report.chunks, len(report.key_frames), len(report.reprompts))
        if result.missing_frames:
            _log.warning("Wan Animate Preprocess: person not found in %d of %d frames (%d interpolated, %d held)",
                         len(result.missing_frames), result.frame_count, result.interpolated_frames, result.held_frames)
        h, w = result.height, result.width
        background = result.background if result.background is not None else np.zeros((1, h, w, 3), np.uint8)
        char_mask = result.mask if result.mask is not None else np.ones((1, h, w), np.uint8)
        return io.NodeOutput(
            frames_to_image(result.pose),
            frames_to_image(result.face),
            frames_to_image(result.reference),
            frames_to_image(background),
            array_to_mask(char_mask.astype(np.float32)),
            float(result.fps),
            w,
            h,
            result.frame_count,
        )


NODES = [WanAnimatePoseModelLoader, WanAnimateFaceDetectorLoader, WanAnimatePreprocess]
