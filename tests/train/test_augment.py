from __future__ import annotations

import torch

from kennel.train.augment import augment, to_input


def _batch() -> torch.Tensor:
    return torch.randint(
        0, 256, (4, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )


def test_to_input_is_normalised_channels_last() -> None:
    x = to_input(_batch())
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_augment_is_seeded_and_changes_pixels() -> None:
    a = augment(_batch(), 0.8, torch.Generator().manual_seed(3))
    b = augment(_batch(), 0.8, torch.Generator().manual_seed(3))
    c = augment(_batch(), 0.8, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(augment(_batch(), 0.0, torch.Generator()), to_input(_batch()))
    assert a.is_contiguous(memory_format=torch.channels_last)
