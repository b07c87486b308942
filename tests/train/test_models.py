from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from kennel.train.models import EfficientNetLite, SmallCNN
from kennel.train.pretrained import load_imagenet, weights_path
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("variant", "size"),
    [("efficientnet_lite0", 224), ("efficientnet_lite1", 224), ("efficientnet_lite2", 256)],
)
def test_lite_matches_reference_implementation_with_imagenet_weights(
    variant: str, size: int
) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNetLite(1000, variant=variant)
    ours = load_imagenet(model, keep_classifier=True).eval()
    # the reference pads for the size it is built for; ours is exact at multiples of 32
    reference = EfficientNet.from_name(variant.replace("_", "-"), image_size=size)
    state = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    reference.load_state_dict(state)
    reference.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, embedding = ours(x)
        assert torch.allclose(logits, reference(x), atol=1e-5)
    assert embedding.shape == (2, 1280)


def test_flip_average_is_the_mean_of_both_views() -> None:
    """Test-time flips inside the forward pass: logits are the mean of the image's and its
    mirror image's; a left-right symmetric image is unchanged."""
    model = EfficientNetLite(2, variant="efficientnet_lite1").eval()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain, _ = model(x)
        mirrored, _ = model(torch.flip(x, dims=[3]))
        model.flip_average = True
        averaged, embedding = model(x)
        symmetric = torch.cat([x[..., :32], torch.flip(x[..., :32], dims=[3])], dim=3)
        model.flip_average = False
        expected, _ = model(symmetric)
        model.flip_average = True
        assert torch.allclose(model(symmetric)[0], expected, atol=1e-5)
    assert torch.allclose(averaged, (plain + mirrored) / 2, atol=1e-5)
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

    model = load_imagenet(EfficientNetLite(1000), keep_classifier=True).eval()
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
    for model, size in ((SmallCNN(2), 64), (EfficientNetLite(2), 128)):
        logits, embedding = model.eval()(torch.zeros(2, 3, size, size))
        assert logits.shape == (2, 2)
        assert embedding.shape == (2, model.embedding_dim)


def test_freeze_stops_gradients_and_bn_updates() -> None:
    model = EfficientNetLite(2)
    model.freeze(5)
    assert not any(p.requires_grad for p in model._blocks[4].parameters())
    assert all(p.requires_grad for p in model._blocks[5].parameters())
    assert not model._blocks[0].training and not model._bn0.training
    model.train()
    model.freeze_backbone()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"_fc.weight", "_fc.bias"}
    assert not model._bn1.training and not model._blocks[-1].training


def test_lite_variants_have_the_reference_depth_and_width() -> None:
    for variant, blocks, last in (
        ("efficientnet_lite0", 16, 320),
        ("efficientnet_lite1", 21, 320),
        ("efficientnet_lite2", 21, 352),
    ):
        model = EfficientNetLite(2, variant=variant)
        assert model.num_blocks == blocks
        assert model._conv_head.in_channels == last


def test_weights_files_are_plain_state_dicts(tmp_path: Path) -> None:
    for variant in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        state = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
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
