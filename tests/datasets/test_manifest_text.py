"""The version id's canonical text: floats written as Python's ``format(x, ".4f")`` writes
them, whatever the value (the id of identical data must never change)."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa

from kennel.datasets.manifest import fixed4


def test_floats_are_written_as_python_formats_them_to_four_places() -> None:
    rng = np.random.default_rng(7)
    edges = [0.0, -0.0, 5e-5, -5e-5, 1.5e-4, 2.5e-4, 1.23445, 0.99995, -9.99995, 127.49995,
             1e-9, -1e-9, 0.5, 255.0, 2.0**52 / 1e4, 4.5e11, 1e15, -1e300,
             float("nan"), float("inf"), -float("inf")]  # fmt: skip
    values = [
        *edges,
        *rng.uniform(-300, 300, 20_000),  # image statistics and their like
        *rng.uniform(0, 1e-3, 5_000),
        *(round(v, 5) for v in rng.uniform(0, 300, 20_000)),  # a 5th decimal: halfway often
        *(k / 20_000 for k in range(-20_000, 20_000)),  # halfway in decimal, not in binary
        *(struct.unpack("d", rng.bytes(8))[0] for _ in range(5_000)),  # any bit pattern
    ]
    written = fixed4(pa.array(values, pa.float64())).to_pylist()
    wrong = [(v, w) for v, w in zip(values, written, strict=True) if w != format(v, ".4f")]
    assert wrong == []
    assert fixed4(pa.array([], pa.float64())).to_pylist() == []
    assert fixed4(pa.array([1.0, -0.00001], pa.float32())).to_pylist() == ["1.0000", "-0.0000"]
