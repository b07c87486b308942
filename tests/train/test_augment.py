from __future__ import annotations

import pytest
import torch

from kennel.train.augment import Prefetcher, augment, to_input


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


def test_the_letterbox_share_shows_pictures_as_letterboxed_wide_frames() -> None:
    from kennel.portable import FILL, letterbox
    from kennel.train.augment import IMAGENET_MEAN, IMAGENET_STD, letterboxed

    batch = _batch()
    boxed = augment(batch, 0.0, torch.Generator().manual_seed(0), letterbox=1.0)
    fill = (torch.tensor(FILL) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    for picture in boxed:  # bars of the serving fill colour above and below, the picture between
        assert torch.allclose(picture[:, 0, :], fill.view(3, 1), atol=1e-5)
        assert torch.allclose(picture[:, -1, :], fill.view(3, 1), atol=1e-5)
        assert not torch.allclose(picture[:, 16, :], fill.view(3, 1), atol=1e-2)
    # the same geometry as serving's letterbox of a 16:9 frame: bars of the same height
    from PIL import Image

    served = letterbox(Image.new("RGB", (64, 36), (0, 0, 0)), 32)
    served_bar = int((served[:, 16] == FILL).all(axis=1).sum())
    x01 = batch.permute(0, 3, 1, 2).float() / 255
    trained = letterboxed(x01, torch.full((4,), 9 / 16))
    trained_bar = int((trained[0, :, :, 16] == torch.tensor(FILL).view(3, 1) / 255).all(0).sum())
    assert abs(served_bar - trained_bar) <= 2
    # none asked: the random stream and the pixels are what they always were
    assert torch.equal(
        augment(batch, 0.8, torch.Generator().manual_seed(3), letterbox=0.0),
        augment(batch, 0.8, torch.Generator().manual_seed(3)),
    )


def test_cached_features_get_a_letterboxed_view_when_the_frame_policy_letterboxes() -> None:
    import numpy as np

    from kennel.progress import silent
    from kennel.train.data import ImageSet
    from kennel.train.features import encode
    from kennel.train.models import EfficientNetLite

    images = _batch().numpy()
    data = ImageSet(images, np.array([0, 1, 0, 1]), np.array(["train"] * 4), (), ("cat", "dog"))
    model = EfficientNetLite(2).eval()
    train = np.arange(3)
    args = {"frozen_blocks": 2, "mirrored": True, "device": torch.device("cpu")}
    plain, labels, _val_x, _val_y = encode(
        model, data, train, np.arange(3, 4), progress=silent, **args
    )  # type: ignore[arg-type]
    boxed, boxed_labels, _, _ = encode(
        model,
        data,
        train,
        np.arange(3, 4),
        progress=silent,
        letterbox=True,
        **args,  # type: ignore[arg-type]
    )
    assert len(plain) == 6 and len(boxed) == 9  # as is, mirrored, and letterboxed
    assert torch.equal(boxed[:6], plain) and not torch.equal(boxed[6:], plain[:3])
    assert boxed_labels.tolist() == labels.tolist() + labels[:3].tolist()


def test_the_colour_jitter_is_brightness_then_contrast_then_saturation_clipped() -> None:
    """Flat pictures, where crop and flip change nothing: the pixels are the plain sequential
    definition (the same draws, in the order augment documents)."""
    from kennel.train.augment import IMAGENET_MEAN, IMAGENET_STD

    n, strength = 16, 1.0
    colours = torch.randint(0, 256, (n, 1, 1, 3), generator=torch.Generator().manual_seed(2))
    flat = colours.byte().expand(n, 24, 24, 3).contiguous()
    out = augment(flat, strength, torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    draws = [torch.rand(n, generator=g) for _ in range(8)]  # area, ratio, x, y, flip, b, c, s
    j = 0.4 * strength
    b, c, s = (1 - j + 2 * j * d.view(n, 1) for d in draws[5:])
    weights = torch.tensor([0.299, 0.587, 0.114])
    x = colours.view(n, 3).float() / 255 * b
    m = x @ weights  # the mean grey of a flat picture is its grey
    x = (x - m.view(n, 1)) * c + m.view(n, 1)
    grey = (x @ weights).view(n, 1)
    x = ((x - grey) * s + grey).clamp(0, 1)
    expected = (x - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out.mean(dim=(2, 3)), expected, atol=1e-4)
    assert torch.allclose(out.amax(dim=(2, 3)), out.amin(dim=(2, 3)), atol=1e-4)  # still flat


def test_the_crop_zooms_into_the_picture_and_half_the_pictures_are_mirrored() -> None:
    n, side = 64, 32
    ramp = torch.linspace(0, 255, side).round().byte()  # grey, dark at the left
    pictures = ramp.view(1, 1, side, 1).expand(n, side, side, 3).contiguous()
    out = augment(pictures, 1.0, torch.Generator().manual_seed(4))[:, 0]  # the red channel
    steps = out.diff(dim=2)
    rising = (steps >= -1e-5).all(dim=(1, 2))
    falling = (steps <= 1e-5).all(dim=(1, 2))
    assert bool((rising | falling).all())  # a crop of a ramp, mirrored or not, is a ramp
    assert 0.3 < float(falling.float().mean()) < 0.7
    assert bool((out[:, :, -1] - out[:, :, 0]).abs().gt(0.5).all())  # and not a flat one


def test_a_prefetcher_left_early_stops_its_thread() -> None:
    """A consumer that stops mid-epoch (Ctrl-C, SIGTERM, an error in the step) must not leave the
    thread blocked on a full queue or inside a torch operation while the interpreter exits."""
    made: list[int] = []

    def make(i: int) -> torch.Tensor:
        made.append(i)
        return torch.full((2,), float(i))

    prefetcher = Prefetcher(make, 1000, depth=2)
    feed = iter(prefetcher)
    assert float(next(feed)[0]) == 0.0
    feed.close()  # what the trainer's closing() does when the epoch is cut short
    assert not prefetcher.thread.is_alive()
    assert len(made) < 10  # it stopped, it did not run on to the end


def test_a_prefetcher_passes_on_the_error_of_a_batch() -> None:
    def make(i: int) -> torch.Tensor:
        if i == 2:
            raise ValueError("bad batch 2")
        return torch.zeros(1)

    prefetcher = Prefetcher(make, 5)
    with pytest.raises(ValueError, match="bad batch 2"):
        list(prefetcher)
    assert not prefetcher.thread.is_alive()


def test_an_interrupt_while_the_prefetch_thread_starts_still_stops_it() -> None:
    """A Ctrl-C or SIGTERM that lands inside ``Thread.start`` (it waits for the new thread to
    run) once escaped before the generator's clean-up could join the thread: it ran on, in
    torch, while the interpreter exited ("terminate called without an active exception")."""
    import os
    import signal
    import time

    def make(i: int) -> torch.Tensor:
        time.sleep(0.01)
        return torch.full((2,), float(i))

    prefetcher = Prefetcher(make, 1000, depth=2)
    start = prefetcher.thread.start

    def started_then_interrupted() -> None:
        start()
        os.kill(os.getpid(), signal.SIGINT)  # lands before start() has returned to its caller

    prefetcher.thread.start = started_then_interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        for _ in prefetcher:
            pass
    assert not prefetcher.thread.is_alive()
