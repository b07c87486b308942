"""Pattern 1, the model embedded in an application: a bundle as an installable wheel.

The wheel holds the bundle files, the :mod:`kennel.portable` package copied verbatim (the
preprocessing contract, the frame policy, a small ONNX Runtime model class and the pet
judgement) and a two-function API: ``predict(image)`` and ``info()``. It needs only
onnxruntime, numpy and Pillow; kennel is not a dependency. The wheel is written by hand (it is
a zip with a RECORD of hashes), so building needs no network.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

from kennel import portable
from kennel.errors import ConfigError
from kennel.fsutil import write_atomic

INIT = '''"""{name}@{version}, a kennel model embedded as a package.

    from {package} import predict
    predict("photo.jpg")  # {{"label": ..., "confidence": ..., "probabilities": {{...}},
                          #   "pet": True, "pet_score": ...}}

Needs only onnxruntime, numpy and Pillow.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ._portable import ImageRejected, Model

__all__ = ["ImageRejected", "info", "model", "predict"]

BUNDLE = Path(__file__).with_name("bundle")
_model: Model | None = None
_lock = threading.Lock()


def model() -> Model:
    """The bundled model, loaded (and its file hashes checked) on first use."""
    global _model
    with _lock:
        if _model is None:
            _model = Model(BUNDLE)
        return _model


def predict(image: Any) -> dict[str, Any]:
    """Classify bytes, a file path or a Pillow image; ``pet`` is False when the picture
    shows no cat or dog at all (None when the model cannot judge). A file that is not an
    acceptable image (not JPEG, PNG, WebP, GIF, BMP or TIFF, corrupt, or over 40 megapixels)
    raises ImageRejected, a ValueError, and nothing else."""
    return model().predict(image)


def info() -> dict[str, Any]:
    """The bundle metadata: name, version, labels, metrics, lineage."""
    return dict(model().meta)
'''


def package_name(model: str) -> str:
    return "kennel_model_" + re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(files: Mapping[str, bytes], meta: Mapping[str, object], out_dir: Path) -> Path:
    """Write ``<package>-<version>-py3-none-any.whl`` into ``out_dir``; returns its path."""
    if "model.onnx" not in files or "kennel-model.json" not in files:
        raise ConfigError("a bundle needs model.onnx and kennel-model.json to be embedded")
    name, version = str(meta["name"]), int(str(meta["version"]))
    package = package_name(name)
    dist_info = f"{package}-{version}.dist-info"
    contents: dict[str, bytes] = {
        f"{package}/__init__.py": INIT.format(name=name, version=version, package=package).encode(),
        f"{package}/py.typed": b"",
    }
    for module in sorted(Path(portable.__file__).parent.glob("*.py")):
        contents[f"{package}/_portable/{module.name}"] = module.read_bytes()
    for file, data in sorted(files.items()):
        contents[f"{package}/bundle/{file}"] = data
    contents[f"{dist_info}/METADATA"] = (
        "Metadata-Version: 2.1\n"
        f"Name: {package}\n"
        f"Version: {version}\n"
        f"Summary: {name}@{version}, a kennel image classifier embedded as a package\n"
        "Requires-Python: >=3.10\n"
        "Requires-Dist: numpy\n"
        "Requires-Dist: onnxruntime\n"
        "Requires-Dist: pillow\n"
    ).encode()
    contents[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: kennel\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    contents[f"{dist_info}/top_level.txt"] = f"{package}\n".encode()
    record = [_record_line(path, data) for path, data in contents.items()]
    record.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = _zip(contents)
    path = out_dir / f"{package}-{version}-py3-none-any.whl"
    write_atomic(path, buffer)
    return path


def _zip(contents: Mapping[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in contents.items():
            info = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return out.getvalue()
