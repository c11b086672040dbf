"""The Wan2.2-Animate animation engine: reference image + driving signals -> video, any length, bounded memory.

    from wan_animate.engine import animate, AnimateInputs, AnimateOptions, Mp4Writer
    result = animate(components, AnimateInputs(reference, pose, face), AnimateOptions(seed=1))
"""
from .forward import AnimateDiT
from .inputs import AnimateInputs
from .jobs import AnimateResult, AnimationCancelled, EngineOutOfMemory
from .options import AnimateOptions
from .run import animate
from .sinks import FrameCollector, FrameSink, Mp4Writer

__all__ = [
    "AnimateDiT",
    "AnimateInputs",
    "AnimateOptions",
    "AnimateResult",
    "AnimationCancelled",
    "EngineOutOfMemory",
    "FrameCollector",
    "FrameSink",
    "Mp4Writer",
    "animate",
]
