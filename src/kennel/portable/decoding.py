"""Safe decoding: any accepted file as 8-bit RGB with its EXIF orientation applied, and a
rejection naming the problem for everything else (see :mod:`kennel.imaging`)."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from .pngcheck import short_data  # relative: the package is copied into wheels as is

# What cameras, phones, browsers and scanners produce (MPO, a phone's multi-picture JPEG, is
# opened by the JPEG plugin). Every other Pillow plugin is refused before its code runs: EPS
# and PS would start Ghostscript, and the rarely used decoders (DDS, PSD, ICNS, FITS, ...) are
# where the crafted files that crash Pillow live.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# 40 megapixels: every common phone or camera photo (12-24 MP, an 8K frame is 33 MP) and
# 160 MB as 8-bit RGB; a model sees a few hundred pixels a side, so nothing is lost by asking
# for a smaller file beyond that.
MAX_PIXELS = 40_000_000
_ROWS_PIXELS = 1 << 18  # high-bit-depth images are scaled to 8 bits this many pixels at a time
_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transposition that undoes it (ImageOps.exif_transpose's table)
_UNDO_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageRejected(ValueError):
    """The bytes are not an acceptable image; ``str()`` says why. The only error decoding
    raises, whatever the file holds."""


def bytes_per_pixel(mode: str) -> int:
    """What Pillow holds per pixel of ``mode`` (RGB is stored in 4 bytes, like RGBA)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La", "P"})


def decode_cost(width: int, height: int, mode: str, format: str = "") -> int:
    """Bytes a decode holds at its peak: the raster in the file's own mode plus its 8-bit RGB
    copy (high-bit-depth scaling works in bounded row chunks, so it adds nothing that grows);
    alpha over white adds an RGBA copy, a white RGBA background and their composite; libwebp
    decodes into a buffer of its own before Pillow copies it."""
    per_pixel = bytes_per_pixel(mode) + 4
    if mode in _ALPHA_MODES:
        per_pixel += 12
    if format == "WEBP":
        per_pixel += 4
    return width * height * per_pixel


@dataclass(frozen=True)
class Header:
    """What a file declares, read before any pixel is decoded."""

    format: str
    mode: str
    width: int  # as stored, before EXIF orientation
    height: int

    @property
    def cost(self) -> int:
        return decode_cost(self.width, self.height, self.mode, self.format)


@contextlib.contextmanager
def rejecting() -> Iterator[None]:
    """Turn anything a decoder raises into ImageRejected naming the problem: a crafted file
    must cost one rejection, never a crashed worker or a 500."""
    try:
        yield
    except ImageRejected:
        raise
    except MemoryError as exc:
        raise ImageRejected("too large to decode: out of memory") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(
            f"not an image: not one of the accepted formats ({', '.join(FORMATS)})"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(f"corrupt or truncated image: {exc}") from exc
    except Exception as exc:  # any decoder failure is the file's fault
        raise ImageRejected(f"undecodable image: {exc.__class__.__name__}: {exc}") from exc


def open_checked(
    data: bytes,
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int | None = None,
    min_side: int = 1,
) -> tuple[Image.Image, Header]:
    """Open ``data`` (header only: no pixel is decoded) with the allowed formats and check the
    declared size against ``max_pixels`` and the decode's memory against ``max_bytes``."""
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    with rejecting():
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
        except Image.DecompressionBombError as exc:  # Pillow's own ceiling, twice its default
            declared = re.search(r"\((\d+) pixels\)", str(exc))  # "Image size (N pixels) ..."
            if declared is None:
                raise
            raise ImageRejected(
                f"decompression bomb: declares {int(declared.group(1))} pixels (limit {max_pixels})"
            ) from exc
        width, height = image.size
        header = Header(image.format or "unknown", image.mode, width, height)
        if width * height > max_pixels:
            raise ImageRejected(
                f"decompression bomb: declares {width}x{height} pixels (limit {max_pixels})"
            )
        if max_bytes is not None and header.cost > max_bytes:
            raise ImageRejected(
                f"decompression bomb: a {width}x{height} {header.mode} image needs "
                f"{header.cost} bytes to decode (limit {max_bytes})"
            )
        if min(width, height) < min_side:
            raise ImageRejected(f"too small: {width}x{height} (minimum side {min_side})")
        return image, header


def probe(
    data: bytes, *, max_pixels: int = MAX_PIXELS, max_bytes: int | None = None, min_side: int = 1
) -> Header:
    """The checked header of ``data``; raises ImageRejected like a decode would, but cheaply."""
    image, header = open_checked(
        data, max_pixels=max_pixels, max_bytes=max_bytes, min_side=min_side
    )
    image.close()
    return header


def _grey8(image: Image.Image) -> Image.Image:
    """A 16/32-bit integer or float image as 8-bit grey, scaled (not clipped), computed in row
    chunks so no full-size wide copy is ever made. 16-bit spans 0-65535; 32-bit integers do
    too when any value exceeds 255, else they are already 8-bit; floats are stretched from
    min(0, lowest) to max(1, highest)."""
    width, height = image.size
    rows = max(1, _ROWS_PIXELS // max(width, 1))
    out = np.empty((height, width), dtype=np.uint8)

    def chunks() -> Iterator[tuple[int, np.ndarray]]:
        for top in range(0, height, rows):
            bottom = min(height, top + rows)
            yield top, np.asarray(image.crop((0, top, width, bottom)))

    if image.mode == "F":
        lo, hi = 0.0, 1.0
        for _top, chunk in chunks():
            finite = chunk[np.isfinite(chunk)]
            if finite.size:
                lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        for top, chunk in chunks():
            wide = np.nan_to_num(chunk.astype(np.float64), nan=lo, posinf=hi, neginf=lo)
            scaled = (wide - lo) / max(hi - lo, 1e-12) * 255
            out[top : top + len(chunk)] = np.clip(scaled, 0, 255).astype(np.uint8)
    else:
        sixteen = image.mode.startswith("I;16") or any(c.max(initial=0) > 255 for _t, c in chunks())
        for top, chunk in chunks():
            if sixteen:  # round(v * 255 / 65535) in 32-bit integers (at most 16.7 M)
                wide = np.clip(chunk, 0, 65535).astype(np.uint32)
                wide *= 255
                wide += 32767
                wide //= 65535
                out[top : top + len(chunk)] = wide
            else:
                out[top : top + len(chunk)] = np.clip(chunk, 0, 255)
    return Image.fromarray(out, mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB: 16-bit scaled (not clipped), alpha over white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _grey8(image).convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        over = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        del rgba  # a converted copy is freed before the RGB one is made
        return over.convert("RGB")
    return image.convert("RGB")


def decode_rgb(
    data: bytes,
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int | None = None,
    min_side: int = 1,
    draft: tuple[int, int] | None = None,
    opened: tuple[Image.Image, Header] | None = None,
    grey: bool = False,
) -> tuple[Image.Image, Header, int, int]:
    """``data`` as 8-bit RGB with its EXIF orientation applied, its header, its EXIF
    orientation and its frame count; raises ImageRejected and nothing else.

    ``draft`` lets JPEG decode at a reduced scale no smaller than the given size. ``opened``:
    what ``open_checked`` already returned for these very bytes (with limits at least as
    strict), so the header is not parsed twice; the limits given here are then not checked
    again. ``grey``: the picture's 8-bit luma ("L") instead of RGB. A colour JPEG gives its
    luma channel straight from the decoder (no chroma upsampling, no colour conversion: the
    same grey levels as RGB converted to "L", to within the rounding of the round trip); the
    whole file is still decoded, so a truncated or corrupt one is rejected exactly as in RGB.
    Every other file is decoded to RGB, then to "L"."""
    image, header = opened or open_checked(
        data, max_pixels=max_pixels, max_bytes=max_bytes, min_side=min_side
    )
    with rejecting():
        frames = int(getattr(image, "n_frames", 1) or 1)
        if frames > 1:
            image.seek(0)
        if header.format == "JPEG" and (draft is not None or grey):
            # Pillow turns only an RGB (YCbCr) JPEG into "L"; others keep their mode here
            image.draft("L" if grey else "RGB", draft or image.size)
        image.load()
        if header.format == "PNG" and (short := short_data(data)) is not None:
            raise ImageRejected(short)  # Pillow leaves the missing rows black, silently
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        out = image if grey and image.mode == "L" else to_rgb(image)
        if grey and out.mode != "L":
            out = out.convert("L")
        if out is not image:
            image.close()  # free the source raster before the transposition copies
        undo = _UNDO_ORIENTATION.get(orientation) if isinstance(orientation, int) else None
        if undo is not None:
            out = out.transpose(undo)  # after conversion: only one copy is ever made
        return out, header, orientation if undo is not None else 1, frames
