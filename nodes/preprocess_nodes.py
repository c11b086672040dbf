"""Driving-video preprocessing as ComfyUI nodes: pose skeleton video, 512x512 face crops, character mask, background.

Outputs are plain IMAGE/MASK batches, so they feed this package's sampler and core's WanAnimateToVideo
(pose_video, face_video, background_video, character_mask) alike.
"""
from __future__ import annotations

import logging

import numpy as np

from wan_animate.preprocess.masks import DILATION_ITERATIONS
from wan_animate.preprocess.person_select import FILL_MODES, STRATEGIES
from wan_animate.preprocess.resolution import OFFICIAL_AREA
from wan_animate.preprocess.video_io import OFFICIAL_FPS

from .convert import array_to_mask, frames_to_image, image_to_frames, mask_to_array
from .folders import folder_paths_for
from .model_nodes import CATEGORY
from .progress import NodeProgress, raise_if_interrupted

_log = logging.getLogger("wan_animate.nodes")
POSE_MODEL_TYPE = "WANANIMATE_POSE_MODEL"
FACE_DETECTOR_TYPE = "WANANIMATE_FACE_DETECTOR"
DEVICES = ["auto", "cuda", "cpu"]
MODES = ("animate", "replace")


def detection_choices(slot: str) -> list[str]:
    """Files in models/detection, then the known model names not there yet (picked: downloaded from the Hub)."""
    import folder_paths

    from wan_animate.preprocess.model_files import SLOT_FILES

    files = folder_paths.get_filename_list("detection")
    return files + [name for name in SLOT_FILES[slot] if name not in files]


def detection_source(choice: str) -> str:
    """A file found in the detection folders -> its path; a known model name not found -> the name (downloaded)."""
    import folder_paths

    return folder_paths.get_full_path("detection", choice) or choice


class WanAnimatePoseModelLoader:
    DESCRIPTION = (
        "Loads the person detector (YOLOv10m ONNX) and the whole-body pose model (ViTPose ONNX, single file or with "
        "its _data.bin) from models/detection. Runs on the GPU through onnxruntime-gpu when installed, else on the CPU."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (POSE_MODEL_TYPE,)
    RETURN_NAMES = ("pose_model",)
    OUTPUT_TOOLTIPS = ("Detector + pose estimator, for Wan Animate Preprocess.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "detector": (detection_choices("detector"), {"default": "yolov10m.onnx", "tooltip": "Person detector from models/detection (yolov10m.onnx from Wan-AI/Wan2.2-Animate-14B process_checkpoint/det). A known name not in the folder is downloaded from the Hub."}),
                "pose": (detection_choices("pose"), {"default": "vitpose_h_wholebody.onnx", "tooltip": "Whole-body pose model from models/detection (vitpose_h_wholebody.onnx, vitpose_h_wholebody_model.onnx with its _data.bin, or vitpose-l-wholebody.onnx)."}),
                "device": (DEVICES, {"default": "auto", "tooltip": "auto: CUDA when onnxruntime-gpu can use it (a warning says why not), else CPU."}),
            }
        }

    def load(self, detector, pose, device):
        from wan_animate.preprocess.estimator import PoseEstimator

        return (
            PoseEstimator(
                detection_source(detector),
                detection_source(pose),
                providers=device,
                search_dirs=folder_paths_for("detection"),
            ),
        )


def face_detector_packs() -> list[str]:
    """Sub-folders of the insightface model folders holding .onnx files (buffalo_l, antelopev2, ...)."""
    import os

    packs = []
    for root in folder_paths_for("insightface"):
        for base in (root, os.path.join(root, "models")):
            if os.path.isdir(base):
                packs += [os.path.relpath(os.path.join(base, d), root) for d in sorted(os.listdir(base))
                          if os.path.isdir(os.path.join(base, d)) and any(f.endswith(".onnx") for f in os.listdir(os.path.join(base, d)))]
    return packs


class WanAnimateFaceDetectorLoader:
    DESCRIPTION = (
        "Loads an insightface face detector (SCRFD, e.g. buffalo_l's det_10g.onnx) from models/insightface. Given to "
        "Wan Animate Preprocess, it places the face crop on frames where the pose model's face landmarks are weak. "
        "Needs `pip install insightface`."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (FACE_DETECTOR_TYPE,)
    RETURN_NAMES = ("face_detector",)
    OUTPUT_TOOLTIPS = ("For Wan Animate Preprocess' face_detector input.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pack": (face_detector_packs(), {"tooltip": "A model pack folder in models/insightface (or models/insightface/models) with a detection .onnx."}),
                "threshold": ("FLOAT", {"default": 0.5, "min": 0.05, "max": 0.99, "step": 0.05, "tooltip": "Minimum face score."}),
                "device": (["cpu", "cuda"], {"default": "cpu", "tooltip": "onnxruntime provider for the detector."}),
            }
        }

    def load(self, pack, threshold, device):
        import os

        from wan_animate.preprocess.face_detector import InsightFaceDetector

        root = next((r for r in folder_paths_for("insightface") if os.path.isdir(os.path.join(r, pack))), None)
        if root is None:
            raise FileNotFoundError(f"face detector pack '{pack}' is no longer in models/insightface.")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        return (InsightFaceDetector(os.path.join(root, pack), det_thresh=threshold, providers=providers),)


class WanAnimatePreprocess:
    DESCRIPTION = (
        "Turns a driving video into what Wan2.2-Animate needs, by the official recipe: skeleton video, RGB 512x512 "
        "face crops, and for replacement the character mask and the background. Batched, with person choice, "
        "gap filling, retargeting to the reference's proportions and optional smoothing of keypoints and face boxes."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "IMAGE", "IMAGE", "IMAGE", "MASK", "FLOAT", "INT", "INT", "INT")
    RETURN_NAMES = (
        "pose_video", "face_video", "reference_image", "background_video", "character_mask", "fps", "width", "height", "frame_count",
    )
    OUTPUT_TOOLTIPS = (
        "Skeleton frames at the working size (letterboxed to the reference's aspect in animate mode).",
        "RGB 512x512 face crops, one per frame (core WanAnimateToVideo's face_video takes them as they are).",
        "The reference image letterboxed to the working size.",
        "Replace mode: the driving frames with the character blacked out. Animate mode: one black frame (not used).",
        "Replace mode: per-frame mask, 1 on the character. Animate mode: one all-ones mask (not used).",
        "Frame rate of the outputs (target_fps, or the driving video's).",
        "Working width (divisible by 16).",
        "Working height (divisible by 16).",
        "Number of output frames.",
    )
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pose_model": (POSE_MODEL_TYPE, {"tooltip": "From Load Wan Animate Pose Models."}),
                "video": ("IMAGE", {"tooltip": "Driving video frames (core Load Video -> Get Video Components, or any IMAGE batch)."}),
                "reference_image": ("IMAGE", {"tooltip": "The character (core Load Image). Only the first image is used."}),
                "mode": (list(MODES), {"default": "animate", "tooltip": "animate: the reference character performs the driving motion. replace: the reference character replaces the person in the driving video."}),
                "resolution_area": ("INT", {"default": OFFICIAL_AREA, "min": 256, "max": 4096 * 4096, "step": 256, "tooltip": "Target pixel area (official 1280x720). Width and height keep the aspect and are divisible by 16."}),
                "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 240.0, "step": 0.001, "tooltip": "Frame rate of the driving video (link Get Video Components' fps here)."}),
                "target_fps": ("FLOAT", {"default": OFFICIAL_FPS, "min": 0.0, "max": 240.0, "step": 0.001, "tooltip": "Resample the motion to this rate (official 30). 0 keeps the driving video's rate."}),
                "person": (list(STRATEGIES), {"default": "largest", "tooltip": "Whom to follow when several people are present: the largest in each frame, the person_index-th from the left, or tracked from track_start_frame."}),
                "person_index": ("INT", {"default": 0, "min": 0, "max": 63, "tooltip": "For index/track: which person, counted from the left (0 = leftmost)."}),
                "track_start_frame": ("INT", {"default": 0, "min": 0, "max": 1000000, "tooltip": "For track: the frame where person_index is picked before being followed both ways."}),
                "fill": (list(FILL_MODES), {"default": "interpolate", "tooltip": "Frames where the person is not found: interpolate between neighbours or hold the last pose (counted in the log)."}),
                "retarget": ("BOOLEAN", {"default": False, "tooltip": "Animate mode: rescale each limb of the driving pose to the reference character's proportions (official per-limb ratios)."}),
                "check_reference": ("BOOLEAN", {"default": True, "tooltip": "Stop with a clear error when no person is detected in the reference image. Turn off for characters the detector cannot see (animals, stylised figures)."}),
                "smoothing": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": "Temporal smoothing of keypoints and face boxes (one-euro): 0 off, 1 strongest. Removes jitter without lagging on fast motion."}),
                "mask_dilation": ("INT", {"default": DILATION_ITERATIONS, "min": 0, "max": 20, "tooltip": "Replace mode: dilation passes on the character mask (official 3, kernel 7). 0 uses the mask as it is."}),
            },
            "optional": {
                "character_mask": ("MASK", {"tooltip": "Replace mode: your own per-frame mask from any segmenter (SAM2, ...), 1 on the character; one per frame or one for all. Without it the mask comes from the pose."}),
                "face_detector": (FACE_DETECTOR_TYPE, {"tooltip": "Optional, from Load Wan Animate Face Detector: places face crops where the pose's face landmarks are weak."}),
            },
        }

    def run(self, pose_model, video, reference_image, mode, resolution_area, fps, target_fps, person, person_index,
            track_start_frame, fill, retarget, check_reference, smoothing, mask_dilation, character_mask=None, face_detector=None):
        from wan_animate.preprocess.pipeline import PreprocessOptions, preprocess

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
        )
        if result.missing_frames:
            _log.warning("Wan Animate Preprocess: person not found in %d of %d frames (%d interpolated, %d held)",
                         len(result.missing_frames), result.frame_count, result.interpolated_frames, result.held_frames)
        h, w = result.height, result.width
        background = result.background if result.background is not None else np.zeros((1, h, w, 3), np.uint8)
        char_mask = result.mask if result.mask is not None else np.ones((1, h, w), np.uint8)
        return (
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


NODES = {
    "WanAnimatePoseModelLoader": (WanAnimatePoseModelLoader, "Load Wan Animate Pose Models"),
    "WanAnimateFaceDetectorLoader": (WanAnimateFaceDetectorLoader, "Load Wan Animate Face Detector"),
    "WanAnimatePreprocess": (WanAnimatePreprocess, "Wan Animate Preprocess"),
}
