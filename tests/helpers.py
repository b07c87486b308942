"""Builders for test images, including the hostile and odd files a data lake really holds."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.engine import Engine

from kennel.deploy.certify import png_declaring


def jpeg(
    width: int = 64,
    height: int = 48,
    colour: tuple[int, int, int] = (200, 30, 30),
    seed: int = 0,
    **save: object,
) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour) + rng.normal(0, 20, (height, width, 3)), 0, 255)
    out = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), "RGB").save(out, "JPEG", quality=90, **save)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but carries no pixel data (a bomb's shape)."""
    return png_declaring(width, height)


def exif_rotated_jpeg(width: int = 80, height: int = 40) -> bytes:
    """Stored landscape, EXIF orientation 6: the picture is really portrait."""
    image = Image.new("RGB", (width, height), (10, 120, 240))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def odd_files() -> dict[str, tuple[bytes, str | None]]:
    """name -> (bytes, expected quarantine reason prefix, or None when it must be ingested)."""
    good = jpeg(64, 48, seed=1)
    grey16 = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (48, 1))
    rgba = Image.new("RGBA", (64, 48), (255, 0, 0, 128))
    palette = Image.new("RGB", (64, 48), (0, 200, 0)).convert("P", palette=Image.Palette.ADAPTIVE)
    gif = io.BytesIO()
    palette.save(gif, "GIF")
    frames = [Image.new("RGB", (64, 48), (i * 80, 40, 200 - i * 60)) for i in range(3)]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], duration=100)
    cmyk = io.BytesIO()
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(cmyk, "JPEG")
    return {
        "cat/good.jpg": (good, None),
        "cat/truncated.jpg": (jpeg(256, 256, seed=2)[:1500], "corrupt or truncated image"),
        "cat/empty.jpg": (b"", "empty file (0 bytes)"),
        "dog/notes.jpg": (b"this is a text file, not a picture\n" * 4, "not an image"),
        "dog/tiny.png": (png(Image.new("RGB", (1, 1))), "too small"),
        "dog/bomb.png": (png_header_only(40000, 40000), "decompression bomb"),
        "dog/cmyk.jpg": (cmyk.getvalue(), None),
        "cat/grey16.png": (png(Image.fromarray(grey16)), None),
        "cat/rgba.png": (png(rgba), None),
        "dog/palette.gif": (gif.getvalue(), None),
        "dog/animated.gif": (animated.getvalue(), None),
        "cat/rotated.jpg": (exif_rotated_jpeg(), None),
    }


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def labelled_jpegs(
    count: int, *, seed: int = 0, labels: tuple[str, ...] = ("cat", "dog")
) -> dict[str, bytes]:
    """``count`` distinct small JPEGs as ImageFolder paths, labels alternating."""
    return {
        f"{labels[i % len(labels)]}/img{seed}_{i:04d}.jpg": jpeg(48, 40, seed=seed * 100_000 + i)
        for i in range(count)
    }


def schema_at(metadata_url: str, revision: str) -> Engine:
    """An engine on ``metadata_url`` whose database is migrated up to ``revision`` only: for a
    test that writes rows as an older kennel did, then upgrades (``kennel.db.engine.upgrade``)."""
    from alembic import command
    from alembic.config import Config

    from kennel.db.engine import _MIGRATIONS, make_engine

    engine = make_engine(metadata_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
    return engine
