"""Fuzzing the image entry points with hypothesis, bounded and deterministic for CI: arbitrary
bytes and mutated real files (flipped, overwritten, cut, spliced) go through the decoder and
the Predictor, which may answer or reject, and nothing else."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kennel.config import Project
from kennel.imaging import ImageRejected, decode
from kennel.serve.runtime import Predictor
from kennel.wiring import Workspace


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(11)
    picture = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8), "RGB")
    grey16 = Image.fromarray(rng.integers(0, 65536, (40, 48), dtype=np.uint16))
    out = []
    for image, fmt, options in [
        (picture, "JPEG", {}),
        (picture, "PNG", {}),
        (picture.convert("RGBA"), "WEBP", {}),
        (picture.convert("P"), "GIF", {}),
        (picture, "BMP", {}),
        (picture, "TIFF", {"compression": "tiff_lzw"}),
        (grey16, "PNG", {}),
        (grey16, "TIFF", {}),
        (picture.convert("1"), "TIFF", {}),
        (picture.convert("RGBA"), "DDS", {}),  # outside the allow-list: must stay refused
        (picture, "PCX", {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        out.append(buffer.getvalue())
    return out


SEEDS = _seeds()
FIELDS = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\x00\x01", b"\x00\x01\x00\x00"]


@st.composite
def hostile_bytes(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=2048))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        if action == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":  # sizes and counts often live in 16/32-bit fields
            data[at : at + 4] = draw(st.sampled_from(FIELDS))
        elif action == "cut":
            del data[at:]
            if not data:
                break
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


@pytest.fixture(scope="module")
def predictor(hostile_project: Project) -> Predictor:
    ws = Workspace(hostile_project)
    try:
        return ws.predictor("pets@1")
    finally:
        ws.close()


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=hostile_bytes())
def test_decode_and_predict_answer_or_reject(predictor: Predictor, data: bytes) -> None:
    try:
        decoded = decode(data, min_side=1)
        assert decoded.image.mode == "RGB" and decoded.image.size[0] >= 1
    except ImageRejected as exc:
        assert str(exc)
    try:
        [prediction] = predictor.predict_prepared([predictor.prepare(data)])
        assert prediction.label in predictor.bundle.labels
    except ImageRejected:
        pass
