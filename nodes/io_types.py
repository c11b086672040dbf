"""The socket types that connect this package's nodes, and the menu category they are listed under.

One definition each: every node module takes its types from here, so a wire's name cannot drift between the node
that produces it and the node that consumes it. The names are the ones saved workflows carry.
"""
from comfy_api.latest import io

CATEGORY = "Wan Animate"

ModelSocket = io.Custom("WANANIMATE_MODEL")
LorasSocket = io.Custom("WANANIMATE_LORAS")
PoseModelSocket = io.Custom("WANANIMATE_POSE_MODEL")
FaceDetectorSocket = io.Custom("WANANIMATE_FACE_DETECTOR")
SegmenterSocket = io.Custom("WANANIMATE_SEGMENTER")
