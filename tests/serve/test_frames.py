"""The frame policy: how a picture far from square becomes the model's input, and how the
winning view and the pet judgement are chosen (kennel.portable.frames and .model)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from kennel.portable import (
    FILL,
    FrameSpec,
    PetCheck,
    letterbox,
    normalise,
    pick,
    score,
    square,
    tile_boxes,
    views,
)


def _picture(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    return Image.fromarray(np.broadcast_to((x + y) / 2, (height, width, 3)).astype(np.uint8))


@pytest.mark.parametrize("size", [(640, 360), (360, 640), (1920, 1080), (400, 300), (875, 250)])
def test_tiles_cover_the_picture_and_overlap_by_half(size: tuple[int, int]) -> None:
    width, height = size
    boxes = tile_boxes(width, height)
    side = min(width, height)
    assert all(right - left == side == bottom - top for left, top, right, bottom in boxes)
    along = [(box[0], box[2]) if width >= height else (box[1], box[3]) for box in boxes]
    assert along[0][0] == 0 and along[-1][1] == max(width, height)
    for (_start, end), (start, _end) in itertools.pairwise(along):
        assert end - start >= side / 2  # neighbours share at least half a tile


def test_a_thin_picture_gives_a_bounded_number_of_views() -> None:
    from kennel.portable import MAX_TILES

    assert len(tile_boxes(1, 4000)) == MAX_TILES
    thin = views(Image.new("RGB", (1, 4000)), 32, FrameSpec("letterbox+tiles"))
    assert thin.shape == (MAX_TILES + 1, 32, 32, 3)


def test_a_picture_close_to_square_gets_its_centre_square_under_every_policy() -> None:
    picture = _picture(220, 200)  # aspect 1.1
    centre = views(picture, 64, FrameSpec("centre"))
    for policy in ("letterbox", "tiles", "letterbox+tiles"):
        assert np.array_equal(views(picture, 64, FrameSpec(policy)), centre)
    assert centre.shape == (1, 64, 64, 3)


def test_a_wide_frame_gives_the_views_its_policy_names() -> None:
    frame = _picture(640, 360)
    assert views(frame, 64, FrameSpec("centre")).shape == (1, 64, 64, 3)
    assert views(frame, 64, FrameSpec("tiles")).shape == (3, 64, 64, 3)
    assert views(frame, 64, FrameSpec("letterbox+tiles")).shape == (4, 64, 64, 3)
    boxed = views(frame, 64, FrameSpec("letterbox"))[0]
    assert (boxed[:8] == FILL).all() and (boxed[-8:] == FILL).all()  # bars above and below
    assert not (boxed[32] == FILL).all()  # the picture in between, whole width
    assert np.array_equal(boxed, letterbox(frame, 64))
    assert FrameSpec("tiles").count(640, 360) == 3


@pytest.mark.parametrize("size", [(640, 360), (360, 640), (1920, 1080), (875, 250), (90, 40)])
def test_each_tile_is_its_square_cropped_then_resized_to_within_a_pixel(
    size: tuple[int, int],
) -> None:
    """The frame is resized once and the tiles cut from it: each tile differs from its box
    cropped from the picture and resized on its own by less than that square moved by one
    model pixel does."""
    cells = 12 / min(size)  # detail: 12 cells across a tile
    shape = (max(2, round(size[1] * cells)), max(2, round(size[0] * cells)), 3)
    photo = np.random.default_rng(5).integers(0, 256, shape).astype(np.uint8)
    picture = Image.fromarray(photo).resize(size, Image.Resampling.BICUBIC)
    cut = views(picture, 64, FrameSpec("tiles"))
    boxes = tile_boxes(*size)
    assert cut.shape == (len(boxes), 64, 64, 3)
    side, wide = min(size), size[0] >= size[1]
    step = max(1, round(side / 64))  # one model pixel, in the picture's pixels
    for tile, (left, top, right, bottom) in zip(cut, boxes, strict=True):
        alone = square(picture.crop((left, top, right, bottom)), 64).astype(np.float64)
        move = step if (right if wide else bottom) + step <= max(size) else -step
        dx, dy = (move, 0) if wide else (0, move)
        moved = square(picture.crop((left + dx, top + dy, right + dx, bottom + dy)), 64)
        assert np.abs(tile - alone).mean() < np.abs(moved - alone).mean()


@pytest.mark.parametrize(
    ("size", "model"),
    [((450, 100), 299), ((11390, 2176), 416), ((100, 450), 299), ((640, 360), 224)],
)
def test_the_tiles_reach_both_ends_of_the_picture(size: tuple[int, int], model: int) -> None:
    """The first tile starts at the resized picture's start and the last ends at its end, at
    odd model sizes too (a start scaled from the box and rounded fell a pixel short)."""
    picture = _picture(*size)
    cut = views(picture, model, FrameSpec("tiles"))
    scale = model / min(size)
    whole = np.asarray(
        picture.resize(
            (max(model, round(size[0] * scale)), max(model, round(size[1] * scale))),
            Image.Resampling.BILINEAR,
        )
    )
    if size[0] >= size[1]:
        assert np.array_equal(cut[0], whole[:, :model])
        assert np.array_equal(cut[-1], whole[:, -model:])
    else:
        assert np.array_equal(cut[0], whole[:model])
        assert np.array_equal(cut[-1], whole[-model:])


def test_normalise_is_the_training_arithmetic_bit_for_bit() -> None:
    """The table lookup gives exactly ``(x / 255 - mean) / std`` in float32, CHW, for one
    picture (HWC) and for a picture's views (NHWC)."""
    pixels = np.random.default_rng(3).integers(0, 256, (3, 37, 29, 3), dtype=np.uint8)
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)
    expected = (pixels.astype(np.float32).transpose(0, 3, 1, 2) / 255.0 - mean) / std
    many, one = normalise(pixels, mean, std), normalise(pixels[1], mean, std)
    assert many.dtype == one.dtype == np.float32 and many.flags.c_contiguous
    assert many.shape == (3, 3, 37, 29) and one.shape == (3, 37, 29)
    assert np.array_equal(many, expected) and np.array_equal(one, expected[1])
    floats = pixels[0].astype(np.float32)  # already floats: the same arithmetic, no table
    assert np.array_equal(normalise(floats, mean, std), expected[0])


def test_a_bundle_without_a_frame_policy_keeps_its_centre_square() -> None:
    assert FrameSpec.of({"resize": "shorter side", "crop": "centre"}) == FrameSpec("centre")
    spec = FrameSpec("tiles", max_aspect=1.3)
    assert FrameSpec.of({"frame": spec.as_dict()}) == spec
    with pytest.raises(ValueError, match="unknown frame policy"):
        FrameSpec.of({"frame": {"policy": "stretch"}})


def test_the_most_confident_pet_view_wins() -> None:
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]], np.float32)
    assert pick(probs, np.array([0.1, 0.7, 0.6]), 0.5) == 2  # of the pet views, most confident
    assert pick(probs, np.array([0.6, 0.7, 0.1]), 0.5) == 0
    assert pick(probs, np.array([0.1, 0.3, 0.2]), 0.5) == 1  # no pet view: the most pet-like
    assert pick(probs, None) == 0  # no judgement: the most confident view


def test_score_groups_views_per_picture_and_judges_the_winner() -> None:
    logits = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], np.float32))
    outputs = {"logits": logits, "embedding": np.eye(3, 4), "pet": np.array([0.05, 0.6, 0.01])}
    # picture 1: views 0 and 1 (only view 1 is a pet, though view 0 is more confident)
    check = PetCheck("imagenet", 0.2)
    wide, photo = score(outputs, [2, 1], temperature=1.0, check=check)
    assert (wide.view, wide.views, wide.pet) == (1, 2, True)
    assert wide.probabilities.argmax() == 1 and np.array_equal(wide.embedding, np.eye(3, 4)[1])
    assert (photo.view, photo.views, photo.pet) == (0, 1, False)
    assert photo.pet_score == pytest.approx(0.01)


def test_the_embedding_check_tells_a_far_embedding_from_the_reference() -> None:
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(200, 4))
    meta = {
        "reference": {
            "embedding_pca": {
                "mean": [0.0] * 6,
                "components": np.eye(4, 6).tolist(),
                "sample": sample.tolist(),
            }
        }
    }
    check = PetCheck.of(meta, ["logits", "embedding"])
    assert check.method == "embedding"
    near = np.concatenate([rng.normal(size=(50, 4)), np.zeros((50, 2))], axis=1)
    far = near + np.array([12.0, 0, 0, 0, 0, 0])
    near_scores = check.scores({"embedding": near})
    far_scores = check.scores({"embedding": far})
    assert near_scores is not None and far_scores is not None
    assert np.mean(near_scores >= check.threshold) >= 0.9
    assert np.mean(far_scores >= check.threshold) == 0.0
    assert PetCheck.of({}, ["logits", "embedding"]).method == "none"
    assert PetCheck.of({}, ["logits", "embedding", "pet"]).method == "imagenet"
