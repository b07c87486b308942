"""A corpus of odd and hostile images, made on the spot: every format and mode Pillow can write,
truncations, bit flips, pixel bombs that declare huge sizes in a few bytes, and non-images.
Deterministic (fixed seeds), a few hundred items, each small enough to send many times."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image

ALLOWED = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
MODES = ("1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LA", "I", "I;16", "F")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png16(width: int, height: int) -> bytes:
    """A real 16-bit greyscale PNG of ``width`` x ``height`` black pixels: a few hundred KB that
    decode to width x height x 2 bytes (7000x7000: 95 KB in, 98 MB as I;16)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    squeeze = zlib.compressobj(9)
    row = b"\x00" * (1 + 2 * width)  # filter byte + samples
    parts, rows = [], max(1, (1 << 20) // len(row))
    for top in range(0, height, rows):
        parts.append(squeeze.compress(row * min(rows, height - top)))
    parts.append(squeeze.flush())
    idat = b"".join(parts)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _tiff_declaring(width: int, height: int) -> bytes:
    """A little-endian TIFF whose only IFD declares width x height 8-bit grey in one strip."""
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 8),  # StripOffsets
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, width * height & 0xFFFFFFFF),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8 + 16) + b"\x00" * 16 + ifd


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose SOF header is patched to declare width x height."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 20, 200)).save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _gif_declaring(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("P", (8, 8), 3).save(out, "GIF")
    data = bytearray(out.getvalue())
    data[6:10] = struct.pack("<HH", width, height)  # logical screen
    image = data.index(b",")  # the image descriptor
    data[image + 5 : image + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def _bmp_declaring(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "BMP")
    data = bytearray(out.getvalue())
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def _dds(fourcc: bytes) -> bytes:
    """A DDS header asking for a pixel format Pillow does not implement."""
    header = struct.pack("<7I", 124, 0x1007, 64, 64, 0, 0, 0) + b"\x00" * 44
    pixel_format = struct.pack("<2I", 32, 0x4) + fourcc + b"\x00" * 20
    return b"DDS " + header + pixel_format + b"\x00" * 20 + b"\x00" * 4096


def _picture(mode: str, seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16))
    if mode == "I":
        return Image.fromarray(rng.integers(-9, 90000, (size[1], size[0]), dtype=np.int32), "I")
    if mode == "F":
        return Image.fromarray(rng.normal(0, 1e3, (size[1], size[0])).astype(np.float32), "F")
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    return rgb.convert(mode)


def _saved(image: Image.Image, fmt: str, **options: object) -> bytes | None:
    out = io.BytesIO()
    try:
        image.save(out, fmt, **options)
    except Exception:  # this format cannot hold this mode; the corpus just skips it
        return None
    return out.getvalue() or None


def _flip(data: bytes, seed: int, flips: int = 6) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for _ in range(flips):
        at = int(rng.integers(min(8, len(out) - 1), len(out)))
        out[at] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def corpus() -> dict[str, bytes]:
    """name -> bytes; names are unique and say what each item is."""
    items: dict[str, bytes] = {}
    Image.init()
    for fmt in sorted(Image.SAVE):
        # ICNS writes every size up to 1024 px whatever it is given: one is enough
        for i, mode in enumerate(("RGB",) if fmt == "ICNS" else MODES):
            data = _saved(_picture(mode, seed=i), fmt)
            if data is not None:
                items[f"{fmt}-{mode}"] = data
    allowed = [(name, data) for name, data in items.items() if name.split("-")[0] in ALLOWED]
    for k, (name, data) in enumerate(allowed):
        items[f"{name}-truncated-third"] = data[: max(1, len(data) // 3)]
        items[f"{name}-header-only"] = data[:40]
        for j in range(2):
            items[f"{name}-bitflip{j}"] = _flip(data, seed=k * 10 + j)
    rgb = _picture("RGB", seed=99)
    for compression in ("tiff_lzw", "tiff_deflate", "packbits", "jpeg", "tiff_adobe_deflate"):
        items[f"TIFF-{compression}"] = _saved(rgb, "TIFF", compression=compression) or b""
    items["TIFF-group4"] = _saved(rgb.convert("1"), "TIFF", compression="group4") or b""
    frames = [_picture("RGB", seed=s) for s in range(3)]
    for fmt in ("GIF", "PNG", "WEBP", "TIFF"):
        items[f"{fmt}-animated"] = _saved(frames[0], fmt, save_all=True, append_images=frames[1:])
    for orientation in (*range(1, 9), 0, 9, 65535):
        exif = Image.Exif()
        exif[0x0112] = orientation
        items[f"JPEG-orientation{orientation}"] = _saved(rgb, "JPEG", exif=exif.tobytes())
    items["PNG-1x1"] = _saved(Image.new("RGB", (1, 1)), "PNG")
    items["PNG-1x4000"] = _saved(Image.new("L", (1, 4000), 128), "PNG")
    items["PNG-16bit-7000x7000"] = png16(7000, 7000)
    items["PNG-bomb-100000x100000"] = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
        + _chunk(b"IEND", b"")
    )
    items["TIFF-bomb-100000x100000"] = _tiff_declaring(100000, 100000)
    items["TIFF-bomb-30000x30000"] = _tiff_declaring(30000, 30000)
    items["JPEG-bomb-65500x65500"] = _jpeg_declaring(65500, 65500)
    items["JPEG-bomb-9000x9000"] = _jpeg_declaring(9000, 9000)
    items["GIF-bomb-65535x65535"] = _gif_declaring(65535, 65535)
    items["BMP-bomb-30000x30000"] = _bmp_declaring(30000, 30000)
    items["BMP-negative-size"] = _bmp_declaring(-5, -70000)
    items["DDS-unimplemented-XXXX"] = _dds(b"XXXX")
    items["DDS-unimplemented-DX10"] = _dds(b"DX10")
    items["EPS-ghostscript"] = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"
    items["PDF-header"] = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    items["SVG"] = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>'
    items["HTML"] = b"<!doctype html><html><body>hello</body></html>"
    items["text"] = b"this is a text file, not a picture\n" * 8
    items["zeros"] = b"\x00" * 4096
    items["random"] = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    items["PNG-signature-only"] = b"\x89PNG\r\n\x1a\n"
    items["GIF-magic-only"] = b"GIF89a"
    items["single-byte"] = b"\xff"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cat.jpg", items["JPEG-RGB"])
    items["ZIP"] = archive.getvalue()
    return {name: data for name, data in items.items() if data}
