"""Optional face detector (insightface FaceAnalysis, SCRFD) for frames whose pose face landmarks are weak.

insightface is an optional dependency: without it this module still imports, and building a detector raises an
error saying how to install it. Models come from a local directory only (FaceAnalysis' default model zoo downloads
from the internet): either a model pack folder holding the .onnx files (e.g. buffalo_l with det_10g.onnx), or an
insightface root holding models/<pack>/ (ComfyUI keeps it in models/insightface). Only the detection model is
loaded.
"""
from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import PreprocessError

INSTALL_HINT = (
    "The face detector needs insightface: `pip install insightface` (0.7.3 builds from source in about a minute; "
    "it needs a C++ compiler and Cython)."
)


class FaceDetectorError(PreprocessError):
    """insightface missing, or a models directory without a usable face detection model."""


def find_model_pack(models_dir: str | Path, pack: str | None = None) -> Path:
    """The folder holding the pack's .onnx files: models_dir itself, models_dir/<pack>, or models_dir/models/<pack>."""
    root = Path(models_dir).expanduser()
    if not root.is_dir():
        raise FaceDetectorError(f"Face detector models directory not found: {root}.")
    candidates = [root] if pack is None else []
    for base in (root, root / "models"):
        if pack is not None:
            candidates.append(base / pack)
        elif base.is_dir():
            candidates.extend(sorted(p for p in base.iterdir() if p.is_dir()))
    for folder in candidates:
        if _is_pack(folder):
            return folder.resolve()
    wanted = f"pack {pack!r} " if pack else ""
    raise FaceDetectorError(
        f"No insightface model {wanted}(a folder of .onnx files with a SCRFD detector such as det_10g.onnx) under {root}. "
        "Give the pack folder (e.g. .../insightface/models/buffalo_l) or its insightface root."
    )


def _is_pack(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.onnx"))


def model_packs(roots: Iterable[str | os.PathLike]) -> list[str]:
    """The packs under insightface roots (folders of .onnx files in a root or its models/), as paths relative to
    their root: 'buffalo_l', 'models/antelopev2'."""
    packs: list[str] = []
    for root in map(Path, roots):
        for base in (root, root / "models"):
            if base.is_dir():
                packs += [str(p.relative_to(root)) for p in sorted(base.iterdir()) if _is_pack(p)]
    return packs


def pack_in_roots(pack: str, roots: Iterable[str | os.PathLike]) -> Path:
    """The folder of `pack` (as model_packs names it) under the first root that has it."""
    roots = [Path(r) for r in roots]
    for root in roots:
        if _is_pack(root / pack):
            return root / pack
    where = ", ".join(map(str, roots)) or "(no folders given)"
    raise FaceDetectorError(f"Face detector pack {pack!r} is not in {where}: put the pack folder (its .onnx files) "
                            "there, or pick another pack.")


class InsightFaceDetector:
    """SCRFD face detection through insightface's FaceAnalysis on RGB frames; boxes in frame pixels."""

    def __init__(self, models_dir: str | Path, pack: str | None = None, det_size: tuple[int, int] = (640, 640),
                 det_thresh: float = 0.5, providers: list[str] | None = None):
        try:
            from insightface.app import FaceAnalysis
        except ImportError as exc:
            raise FaceDetectorError(INSTALL_HINT) from exc
        self.pack_dir = find_model_pack(models_dir, pack)
        kwargs = {"providers": providers or ["CPUExecutionProvider"]}
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                # An absolute name makes FaceAnalysis use that folder as it is (os.path.join keeps the last absolute
                # part), so no download is attempted and any folder layout works.
                self.app = FaceAnalysis(name=str(self.pack_dir), root=str(self.pack_dir), allowed_modules=["detection"],
                                        **kwargs)
                self.app.prepare(ctx_id=-1 if kwargs["providers"] == ["CPUExecutionProvider"] else 0,
                                 det_size=tuple(det_size), det_thresh=det_thresh)
        except AssertionError as exc:
            raise FaceDetectorError(
                f"{self.pack_dir} has no face detection model insightface recognises (SCRFD/RetinaFace, e.g. "
                "det_10g.onnx from buffalo_l)."
            ) from exc

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """(n, 5) x1, y1, x2, y2, score of the faces in an RGB uint8 frame, best first."""
        bgr = np.ascontiguousarray(frame[..., ::-1])
        det, _ = self.app.det_model.detect(bgr, max_num=0, metric="default")
        if det is None or len(det) == 0:
            return np.zeros((0, 5), np.float32)
        return det[np.argsort(-det[:, 4])].astype(np.float32)


def pick_face(faces: np.ndarray, person_box: np.ndarray, head: np.ndarray | None) -> np.ndarray | None:
    """The detected face box belonging to the person: centre inside the person box, nearest the head point."""
    best, best_d = None, np.inf
    for x1, y1, x2, y2, _ in faces:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        if not (person_box[0] <= cx <= person_box[2] and person_box[1] <= cy <= person_box[3]):
            continue
        d = 0.0 if head is None or not np.isfinite(head).all() else float(np.hypot(cx - head[0], cy - head[1]))
        if d < best_d:
            best, best_d = np.array([x1, y1, x2, y2], np.float64), d
    return best
