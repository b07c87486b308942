"""Whether a PNG holds all of its pixels. Pillow decodes an image whose compressed data ends
cleanly but early (a zlib stream of one row for a 6000 x 6000 picture) without a word, the
missing rows left black; libpng calls it "not enough image data". The inflated length is
counted here, in bounded steps and without keeping it, against what the header declares."""

from __future__ import annotations

import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
# Adam7's seven passes: first column, first row, column step, row step
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # fmt: skip
_STEP = 1 << 20  # inflated bytes per step


def _row_bytes(width: int, channels: int, depth: int) -> int:
    return 1 + (width * channels * depth + 7) // 8  # a filter byte, then the packed samples


def expected_bytes(width: int, height: int, depth: int, colour: int, interlace: int) -> int:
    """The inflated length of a PNG's image data as its header declares it."""
    channels = _CHANNELS.get(colour, 4)
    if not interlace:
        return height * _row_bytes(width, channels, depth)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        columns = (width - x0 + dx - 1) // dx if width > x0 else 0
        rows = (height - y0 + dy - 1) // dy if height > y0 else 0
        if columns and rows:
            total += rows * _row_bytes(columns, channels, depth)
    return total


def short_data(data: bytes) -> str | None:
    """Why ``data`` (a PNG Pillow has opened) lacks image data, else None."""
    if not data.startswith(_SIGNATURE) or len(data) < 33:
        return None  # not a PNG: left to the decoder
    width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", data[16:29])
    want = expected_bytes(width, height, depth, colour, interlace)
    inflate, got, at = zlib.decompressobj(), 0, 8
    while at + 8 <= len(data) and got < want:
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind == b"IDAT":
            chunk = data[at + 8 : at + 8 + length]
            while chunk and got < want and not inflate.eof:
                try:
                    got += len(inflate.decompress(chunk, _STEP))
                except zlib.error as exc:
                    return f"corrupt or truncated image: its pixel data does not inflate ({exc})"
                chunk = inflate.unconsumed_tail
        elif kind == b"IEND":
            break
        at += 12 + length
    if got < want:
        return (
            f"corrupt or truncated image: its pixel data holds {got} of the {want} bytes "
            "its header declares"
        )
    return None
