"""The one decoder: an allow-list of formats, a decode-memory budget checked on the header,
16-bit scaling without float64 copies, and out-of-memory turned into a rejection."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from kennel.imaging import FORMATS, ImageRejected, decode, decode_cost, probe
from kennel.portable import to_rgb
from tests.helpers import png_header_only
from tests.hostile.corpus import png16

MB = 1024 * 1024


@pytest.mark.parametrize("fmt", ["DDS", "ICO", "PCX", "TGA", "SGI", "PPM", "QOI", "EPS", "PDF"])
def test_formats_outside_the_allow_list_are_refused_before_their_decoder_runs(fmt: str) -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(out, fmt)
    assert fmt not in FORMATS
    with pytest.raises(ImageRejected, match="not one of the accepted formats"):
        decode(out.getvalue(), min_side=1)


def test_the_decode_budget_is_checked_on_the_header_before_any_pixel() -> None:
    bomb = png16(7000, 7000)  # 95 KB declaring 49 MP of 16-bit grey
    header = probe(bomb, max_pixels=10**9)
    assert (header.format, header.mode, header.width, header.height) == ("PNG", "I;16", 7000, 7000)
    assert header.cost == decode_cost(7000, 7000, "I;16") == 7000 * 7000 * (2 + 4)
    began = time.monotonic()
    with pytest.raises(ImageRejected, match="decompression bomb: a 7000x7000 I;16 image needs"):
        decode(bomb, max_pixels=10**9, max_bytes=100 * MB, min_side=1)
    with pytest.raises(ImageRejected, match="decompression bomb: declares 7000x7000"):
        decode(bomb, min_side=1)  # 49 MP is over the 40 MP default
    assert time.monotonic() - began < 0.5
    # past Pillow's own ceiling (twice its 89 MP default) the refusal still names kennel's
    # limit, not Pillow's
    huge = png_header_only(30_000, 30_000)
    with pytest.raises(ImageRejected, match=r"^decompression bomb: declares 900000000 pixels "
                       r"\(limit 24000000\)$"):  # fmt: skip
        decode(huge, max_pixels=24_000_000, min_side=1)


def test_sixteen_bit_pictures_are_scaled_without_wide_copies() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 65536, (3000, 3000), dtype=np.uint16)  # 9 MP, 18 MB
    image = Image.fromarray(grey)
    tracemalloc.start()
    try:
        rgb = to_rgb(image)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # numpy reports its buffers to tracemalloc: a float64 copy alone would be 72 MB
    assert peak < 24 * MB, f"{peak / MB:.0f} MB of numpy buffers"
    expected = np.clip(grey.astype(np.float64) * (255 / 65535) + 0.5, 0, 255).astype(np.uint8)
    assert rgb.mode == "RGB" and np.array_equal(np.asarray(rgb)[:, :, 0], expected)


def test_running_out_of_memory_is_a_rejection_not_a_crash() -> None:
    # A real MemoryError: the address space is capped just above what the process holds,
    # then a picture under the pixel limit but over that headroom is decoded.
    script = (
        "import resource\n"
        "from kennel.imaging import ImageRejected, decode\n"
        "from tests.hostile.corpus import png16\n"
        "bomb = png16(7000, 7000)\n"
        "size = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + 120 * 2**20, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    decode(bomb, max_pixels=10**9, min_side=1)\n"
        "    print('decoded')\n"
        "except ImageRejected as exc:\n"
        "    print('rejected:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("rejected: too large to decode: out of memory"), done.stdout


def test_decode_budget_counts_alpha_compositing_and_libwebp() -> None:
    # measured peaks were about twice the plain estimate for these: the cost says so up front
    plain = decode_cost(4000, 4000, "RGB")
    assert decode_cost(4000, 4000, "RGBA") >= 2 * plain
    assert decode_cost(4000, 4000, "RGB", "WEBP") > plain
    assert decode_cost(4000, 4000, "RGBA", "WEBP") >= 2.5 * plain


def _png(width: int, height: int, raw: bytes, *, depth: int = 8, colour: int = 2,
         interlace: int = 0) -> bytes:  # fmt: skip
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))  # fmt: skip


def test_a_png_whose_pixel_data_ends_early_is_rejected() -> None:
    """One row of pixel data for a 600 x 600 picture, its zlib stream ended cleanly: Pillow
    decoded it with the rest black and the ingest kept it; libpng says "not enough image
    data". Whole pictures of every colour type, bit depth and interlacing still decode."""
    width = 600
    one_row = b"\0" * (1 + width * 3)
    with pytest.raises(ImageRejected, match="holds 1801 of the 1080600 bytes"):
        decode(_png(width, 600, one_row), min_side=1)
    with pytest.raises(ImageRejected, match="corrupt or truncated"):
        decode(_png(width, 600, one_row * 599), min_side=1)  # one row short
    assert decode(_png(width, 600, one_row * 600), min_side=1).width == width
    # Adam7: seven passes of 1 + packed bytes per row; 13 x 7 RGB at 8 bits
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2)]  # fmt: skip
    raw = b"".join(
        (b"\0" * (1 + 3 * -(-(13 - x) // dx))) * -(-(7 - y) // dy) for x, y, dx, dy in passes
    )
    assert decode(_png(13, 7, raw, interlace=1), min_side=1).height == 7
    with pytest.raises(ImageRejected, match="corrupt or truncated"):
        decode(_png(13, 7, raw[:-5], interlace=1), min_side=1)
    for mode in ("1", "L", "P", "RGB", "RGBA", "LA", "I;16"):  # Pillow's own files
        buffer = io.BytesIO()
        Image.new(mode, (37, 11)).save(buffer, "PNG")
        decoded = decode(buffer.getvalue(), min_side=1)
        assert (decoded.width, decoded.height) == (37, 11), mode
