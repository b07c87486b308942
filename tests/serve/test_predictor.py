"""The Predictor: verified bundles, training-identical preprocessing, PyTorch parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from kennel.config import TrainConfig
from kennel.errors import IntegrityError
from kennel.serve.runtime import Bundle, Predictor
from kennel.train.augment import to_input
from kennel.train.trainer import make_model
from kennel.wiring import Workspace
from tests.helpers import odd_files
from tests.serving import served_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return served_project(tmp_path_factory.mktemp("pred"), models=1)


def test_predictor_matches_pytorch_on_the_same_images(project) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace(project)
    try:
        predictor = ws.predictor("pets@1")
        model = ws.registry.resolve("pets@1")
        run = ws.tracker.get(model.run_id or "")
        state = safetensors.torch.load(ws.content.get(run.metrics["weights_sha256"]))
        rows = [r for r in ws.catalog.rows(ws.catalog.resolve("park")) if r.split == "test"]
        images = [ws.content.get(r.sha256) for r in rows]
    finally:
        ws.close()
    torch_model = make_model(TrainConfig.model_validate(run.params), 2)
    torch_model.load_state_dict(state)
    torch_model.eval()
    prepared = [predictor.prepare(data) for data in images]
    from kennel.imaging import decode, square

    pixels = np.stack([square(decode(d).image, predictor.bundle.image_size) for d in images])
    with torch.no_grad():
        torch_logits = torch_model(to_input(torch.from_numpy(pixels)))[0].numpy()
    ort_logits, _ = predictor.infer(np.stack([p.tensor for p in prepared]))
    assert np.abs(torch_logits - ort_logits).max() < 1e-4
    results = predictor.predict(images)
    assert [r.label for r in results] == [["cat", "dog"][i] for i in torch_logits.argmax(1)]
    assert all(abs(sum(r.probabilities.values()) - 1) < 1e-5 for r in results)


def test_tampered_bundle_is_refused(project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace(project)
    try:
        _model, _files = ws.registry.download("pets@1", tmp_path / "b")
    finally:
        ws.close()
    assert Bundle.from_dir(tmp_path / "b").version == 1
    onnx = tmp_path / "b" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(IntegrityError, match="corrupt"):
        Bundle.from_dir(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "kennel-model.json").read_text())
    meta["format"] = "something-else"
    (tmp_path / "b" / "kennel-model.json").write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match="format"):
        Bundle.from_dir(tmp_path / "b")


def test_odd_images_get_an_answer_or_a_reason(project) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace(project)
    try:
        predictor: Predictor = ws.predictor("pets@1")
    finally:
        ws.close()
    from kennel.imaging import ImageRejected

    for name, (data, reason) in odd_files().items():
        if reason is None or reason.startswith("too small"):
            assert predictor.predict_one(data).label in ("cat", "dog"), name
        else:
            with pytest.raises(ImageRejected):
                predictor.predict_one(data)


def test_configured_pixel_limit_reaches_the_predictor(project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from kennel.imaging import ImageRejected
    from tests.helpers import jpeg

    ws = Workspace(project)
    try:
        service = ws.service("production")
        service.holder.max_pixels = 1000  # as if kennel.yaml said serve.max_pixels: 1000
        predictor = service.holder.load(1)
    finally:
        ws.close()
    with pytest.raises(ImageRejected, match="decompression bomb"):
        predictor.predict_one(jpeg(64, 48))  # 3,072 pixels > 1,000


def test_a_bundle_without_a_frame_policy_keeps_the_centre_square(  # type: ignore[no-untyped-def]
    project, tmp_path: Path
) -> None:
    """Bundles made before frame policies and the pet output: a wide frame is read as its
    centre square, as they always did, and the judgement falls back to the embedding."""
    from kennel.imaging import decode, square
    from kennel.portable import normalise
    from tests.helpers import jpeg

    ws = Workspace(project)
    try:
        ws.registry.download("pets@1", tmp_path / "b")
    finally:
        ws.close()
    meta_path = tmp_path / "b" / "kennel-model.json"
    meta = json.loads(meta_path.read_text())
    assert meta["preprocessing"]["frame"]["policy"] == "tiles"
    wide = jpeg(320, 180, seed=3)
    assert len(Predictor(Bundle.from_dir(tmp_path / "b")).prepare(wide).views) == 3
    del meta["preprocessing"]["frame"], meta["ood"]
    meta_path.write_text(json.dumps(meta))
    old = Predictor(Bundle.from_dir(tmp_path / "b"))
    assert old.frame.policy == "centre" and old.check.method == "embedding"
    views = old.prepare(wide).views
    pre = meta["preprocessing"]
    mean = np.array(pre["mean"], np.float32).reshape(3, 1, 1)
    std = np.array(pre["std"], np.float32).reshape(3, 1, 1)
    centre = normalise(square(decode(wide).image, old.bundle.image_size), mean, std)
    assert views.shape[0] == 1 and np.array_equal(views[0], centre)
    assert old.predict_one(wide).pet is not None  # judged from the embedding reference


def test_a_large_jpeg_is_read_at_a_reduced_scale_as_training_read_it(  # type: ignore[no-untyped-def]
    project, tmp_path: Path
) -> None:
    """A JPEG several times the model's size is decoded at 1/2, 1/4 or 1/8 scale, the pixels
    are those the training cache holds for the same file, and monitoring still sees the
    file's own size; a bundle that does not record the draft decodes in full."""
    from kennel.imaging import decode, square
    from kennel.portable import normalise
    from kennel.train.data import _decode_chunk
    from tests.helpers import jpeg

    ws = Workspace(project)
    try:
        ws.registry.download("pets@1", tmp_path / "b")
        big = jpeg(1000, 760, seed=5)
        digest = ws.content.put(big)
        size = Bundle.from_dir(tmp_path / "b").image_size
        trained = _decode_chunk((ws.project.artifacts_url, [digest], size))[0]
    finally:
        ws.close()
    predictor = Predictor(Bundle.from_dir(tmp_path / "b"))
    assert predictor.draft == (2 * size, 2 * size)
    prepared = predictor.prepare(big)
    mean, std = predictor._mean, predictor._std
    assert np.array_equal(prepared.views[0], normalise(trained, mean, std))
    assert (prepared.quality["width"], prepared.quality["height"]) == (1000, 760)
    full = normalise(square(decode(big).image, size), mean, std)
    assert not np.array_equal(prepared.views[0], full)
    assert np.abs(prepared.views[0] - full).mean() < 0.02  # about a grey level (0.017) at most
    meta_path = tmp_path / "b" / "kennel-model.json"
    meta = json.loads(meta_path.read_text())
    del meta["preprocessing"]["jpeg_draft"]  # a bundle made before drafts
    meta_path.write_text(json.dumps(meta))
    old = Predictor(Bundle.from_dir(tmp_path / "b"))
    assert old.draft is None and np.array_equal(old.prepare(big).views[0], full)
