"""Driving-video preprocessing as ComfyUI nodes: pose skeleton video, 512x512 face crops, character mask, background.

Outputs are plain IMAGE/MASK batches, so they feed this package's sampler and core's WanAnimateToVideo
(pose_video, face_video, background_video, character_mask) alike.
"""
from __future__ import annotations

from .convert import array_to_mask, frames_to_image, image_to_frames, mask_to_array
from .folders import folder_paths_for
from .model_nodes import CATEGORY
from .progress import NodeProgress, raise_if_interrupted

POSE_MODEL_TYPE = "WANANIMATE_POSE_MODEL"
DEVICES = ["auto", "cuda", "cpu"]
PERSON_CHOICES = ["largest", "index_left_to_right", "track_from_first"]


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
        from wan_animate.preprocess import PoseEstimator

        return (
            PoseEstimator(
                detection_source(detector),
                detection_source(pose),
                providers=device,
                search_dirs=folder_paths_for("detection"),
            ),
        )


class WanAnimatePreprocess:
    DESCRIPTION = (
        "Turns a driving video into what Wan2.2-Animate needs, by the official recipe: skeleton video, RGB 512x512 "
        "face crops, and for replacement the character mask and the background. Batched, with person choice, "
        "retargeting to the reference's proportions and optional smoothing of face boxes and keypoints."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "IMAGE", "IMAGE", "IMAGE", "MASK", "FLOAT", "INT", "INT", "INT")
    RETURN_NAMES = (
        "pose_video", "face_video", "reference_image", "background_video", "character_mask", "fps", "width", "height", "frame_count",
    )
    OUTPUT_TOOLTIPS = (
        "Skeleton frames at the working size (letterboxed to the reference's aspect in animate mode).",
        "RGB 512x512 face crops, one per frame (core WanAnimateToVideo's face_video accepts them as they are).",
        "The reference image resized to the working size.",
        "The driving frames with the character masked out (replace mode; the resized driving frames in animate mode).",
        "Per-frame character mask, 1 where the character is (replace mode; all ones in animate mode).",
        "Frame rate of the outputs.",
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
                "reference_image": ("IMAGE", {"tooltip": "The character to animate (core Load Image). Only the first image is used."}),
                "mode": (["animate", "replace"], {"default": "animate", "tooltip": "animate: the reference character performs the driving motion. replace: the reference character replaces the person in the driving video."}),
                "resolution_area": ("INT", {"default": 1280 * 720, "min": 64 * 64, "max": 4096 * 4096, "step": 256, "tooltip": "Target pixel area (official rule: 1280x720). Width and height keep the aspect and are divisible by 16."}),
                "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 240.0, "step": 0.001, "tooltip": "Frame rate of the driving video (link GetVideoComponents' fps here)."}),
                "target_fps": ("FLOAT", {"default": 30.0, "min": 0.0, "max": 240.0, "step": 0.001, "tooltip": "Resample the motion to this rate (official: 30). 0 keeps the driving video's rate."}),
                "person": (PERSON_CHOICES, {"default": "largest", "tooltip": "Whom to follow when several people are present: the largest, the N-th from the left, or tracked from the first frame."}),
                "person_index": ("INT", {"default": 0, "min": 0, "max": 63, "tooltip": "Which person for index_left_to_right / track_from_first (0 = leftmost)."}),
                "retarget": ("BOOLEAN", {"default": False, "tooltip": "Rescale each limb of the driving pose to the reference character's proportions (official per-limb ratios)."}),
                "smoothing": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": "Temporal smoothing of keypoints and face boxes: 0 off, 1 strongest. Removes jitter without lagging on fast motion."}),
                "mask_dilation": ("INT", {"default": 7, "min": 0, "max": 64, "tooltip": "Replace mode: grow the character mask by this many pixels (official kernel 7)."}),
            },
            "optional": {
                "character_mask": ("MASK", {"tooltip": "Replace mode: your own per-frame mask from any segmenter (SAM2, ...), 1 on the character. Without it the mask comes from the pose."}),
            },
        }

    def run(self, pose_model, video, reference_image, mode, resolution_area, fps, target_fps, person, person_index,
            retarget, smoothing, mask_dilation, character_mask=None):
        from wan_animate.preprocess import preprocess

        frames = image_to_frames(video, "video")
        reference = image_to_frames(reference_image[:1], "reference_image")[0]
        mask = mask_to_array(character_mask, frames=len(frames), name="character_mask") if character_mask is not None else None
        raise_if_interrupted()
        result = preprocess(
            pose_model,
            frames,
            reference,
            mode=mode,
            fps=fps,
            target_fps=target_fps or None,
            resolution_area=resolution_area,
            person=person,
            person_index=person_index,
            retarget=retarget,
            smoothing=smoothing,
            mask=mask,
            mask_dilation=mask_dilation,
            progress=NodeProgress(),
        )
        pose = frames_to_image(result.pose)
        h, w = pose.shape[1:3]
        return (
            pose,
            frames_to_image(result.face),
            frames_to_image(result.reference),
            frames_to_image(result.background),
            array_to_mask(result.mask),
            float(result.fps),
            int(w),
            int(h),
            int(pose.shape[0]),
        )


NODES = {
    "WanAnimatePoseModelLoader": (WanAnimatePoseModelLoader, "Load Wan Animate Pose Models"),
    "WanAnimatePreprocess": (WanAnimatePreprocess, "Wan Animate Preprocess"),
}
