"""The preprocessing contract and a minimal model runtime, kennel-free.

Training, the Predictor and the embedded wheel built by ``kennel export package`` all use
this package; the wheel ships it verbatim (as ``_portable``), so an embedded model sees
exactly the pixels, frame policy, ONNX Runtime settings and pet judgement the service uses.
It needs only numpy, Pillow and onnxruntime: keep it free of kennel imports (its modules
import each other relatively).
"""

from __future__ import annotations

from .decoding import (
    FORMATS,
    MAX_PIXELS,
    Header,
    ImageRejected,
    bytes_per_pixel,
    decode_cost,
    decode_rgb,
    open_checked,
    probe,
    rejecting,
    to_rgb,
)
from .frames import (
    FILL,
    JPEG_DRAFT,
    MAX_TILES,
    POLICIES,
    FrameSpec,
    jpeg_draft,
    letterbox,
    normalise,
    square,
    tile_boxes,
    views,
)
from .model import (
    EMBEDDING_THRESHOLD,
    PET_OUTPUT,
    PET_THRESHOLD,
    Model,
    PetCheck,
    Scored,
    pick,
    run,
    score,
    session,
    softmax,
)

__all__ = [
    "EMBEDDING_THRESHOLD",
    "FILL",
    "FORMATS",
    "JPEG_DRAFT",
    "MAX_PIXELS",
    "MAX_TILES",
    "PET_OUTPUT",
    "PET_THRESHOLD",
    "POLICIES",
    "FrameSpec",
    "Header",
    "ImageRejected",
    "Model",
    "PetCheck",
    "Scored",
    "bytes_per_pixel",
    "decode_cost",
    "decode_rgb",
    "jpeg_draft",
    "letterbox",
    "normalise",
    "open_checked",
    "pick",
    "probe",
    "rejecting",
    "run",
    "score",
    "session",
    "softmax",
    "square",
    "tile_boxes",
    "to_rgb",
    "views",
]
