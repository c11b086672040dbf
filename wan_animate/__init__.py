"""Wan2.2-Animate preprocessing (pose, face crops, masks) and the animation engine. No ComfyUI imports."""
