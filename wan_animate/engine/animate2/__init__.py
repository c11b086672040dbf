"""The Wan-Animate-2 engine: reference image + raw driving video (no pose preprocessing) -> video.

    from wan_animate.engine.animate2 import animate2, Animate2Inputs, Animate2Options
    result = animate2(components, Animate2Inputs(reference, frames, video_fps=30), Animate2Options(seed=1))
"""
from .forward import Animate2DiT
from .options import Animate2Options
from .run import Animate2Inputs, animate2, check_is_animate2, job_shape

__all__ = ["Animate2DiT", "Animate2Inputs", "Animate2Options", "animate2", "check_is_animate2", "job_shape"]
