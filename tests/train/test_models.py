from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import torch

from kennel.train.models import EfficientNetLite0, SmallCNN
from kennel.train.pretrained import load_imagenet, weights_path
from tests.conftest import REPO


def test_lite0_matches_reference_implementation_with_imagenet_weights() -> None:
    from efficientnet_lite_pytorch import EfficientNet

    ours = load_imagenet(EfficientNetLite0(1000), keep_classifier=True).eval()
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    reference.eval()
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, embedding = ours(x)
        assert torch.allclose(logits, reference(x), atol=1e-5)
    assert embedding.shape == (3, 1280)


def test_imagenet_weights_know_cats_and_dogs(shared_data: Path) -> None:
    """The weights are meaningful, not just loadable: real photos from the shared set land in
    ImageNet's cat synsets (281-285) or its dog synsets (151-268), through kennel's own
    preprocessing."""
    import io
    import zipfile

    from PIL import Image

    from kennel.portable import square
    from kennel.train.augment import to_input

    model = load_imagenet(EfficientNetLite0(1000), keep_classifier=True).eval()
    names = [f"train/{label}.{i}.jpg" for label in ("cat", "dog") for i in range(5)]
    with zipfile.ZipFile(shared_data / "dogs-vs-cats-mini.zip") as archive:
        pixels = [
            square(Image.open(io.BytesIO(archive.read(n))).convert("RGB"), 224) for n in names
        ]
    with torch.no_grad():
        logits, _ = model(to_input(torch.from_numpy(np.stack(pixels))))
    top = logits.argmax(1).tolist()
    right = [
        281 <= t <= 285 if name.startswith("train/cat") else 151 <= t <= 268
        for name, t in zip(names, top, strict=True)
    ]
    # 9 of 10 here; by chance about 1 in 10 would land in those 123 classes
    assert sum(right) >= 7, list(zip(names, top, strict=True))


def test_every_torch_load_is_weights_only() -> None:
    """No code path may unpickle: every ``torch.load`` call passes ``weights_only=True``."""
    offenders = []
    for path in (REPO / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                flags = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                if flags.get("weights_only") is not True:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders


def test_models_return_logits_and_embedding() -> None:
    for model, size in ((SmallCNN(2), 64), (EfficientNetLite0(2), 128)):
        logits, embedding = model.eval()(torch.zeros(2, 3, size, size))
        assert logits.shape == (2, 2)
        assert embedding.shape == (2, model.embedding_dim)


def test_freeze_stops_gradients_and_bn_updates() -> None:
    model = EfficientNetLite0(2)
    model.freeze(5)
    assert not any(p.requires_grad for p in model._blocks[4].parameters())
    assert all(p.requires_grad for p in model._blocks[5].parameters())
    assert not model._blocks[0].training and not model._bn0.training


def test_weights_file_is_a_plain_state_dict(tmp_path: Path) -> None:
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_small_cnn_ignores_exposure_and_contrast() -> None:
    """A night camera's darker, flatter frame of the same scene gives the same answer."""
    torch.manual_seed(0)
    model = SmallCNN(2).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        logits, embedding = model(x)
        dim_logits, dim_embedding = model(0.3 * x - 1.2)
        flat_logits, _ = model(torch.full((1, 3, 64, 64), 0.7))
    assert torch.allclose(logits, dim_logits, atol=1e-4)
    assert torch.allclose(embedding, dim_embedding, atol=1e-4)
    assert torch.isfinite(flat_logits).all()  # a flat image does not divide by zero
