"""Driving-video preprocessing: person detection, whole-body pose, skeleton video, face crops, masks, background.

    from wan_animate.preprocess import PoseEstimator, load_segmenter, preprocess
    result = preprocess(PoseEstimator(search_dirs=["models/detection"]), "drive.mp4", "ref.png", mode="replace",
                        segmenter=load_segmenter("facebook/sam2.1-hiera-large"))

Names are imported lazily, so importing one submodule does not load onnxruntime, OpenCV or PyAV.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "PoseEstimator": "estimator",
    "preprocess": "pipeline",
    "Preprocessor": "pipeline",
    "PreprocessOptions": "pipeline",
    "PreprocessResult": "pipeline",
    "PreprocessError": "errors",
    "NoPersonError": "errors",
    "InsightFaceDetector": "face_detector",
    "load_segmenter": "sam_tracker",
    "PersonSegmenter": "segmenter",
    "SegmentOptions": "segmenter",
}

__all__ = list(sorted(_EXPORTS))


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
