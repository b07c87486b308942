"""A service serving the bundle's int8 graph is certified against that graph's own answers:
the offline evaluation ran the fp32 model, and int8 (kept when within 0.5 points) may label a
few pictures otherwise, so every such model failed certification and could never be released."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import pytest

from kennel.deploy import certify
from kennel.serve.auth import Identity
from kennel.serve.runtime import INT8, METADATA, MODEL, Bundle, Prediction, Predictor
from kennel.wiring import Workspace
from tests.serving import register_copy, served_project, start_env


def test_a_service_serving_int8_is_held_to_the_int8_graph(tmp_path: Path) -> None:
    project = served_project(tmp_path, models=2)
    ws = Workspace(project)
    other = ws.registry.resolve("pets@2")
    # pets@1's bundle with an int8 graph that answers otherwise: pets@2's model, a network
    # trained from another seed, so that many test pictures get another label than pets@1's
    # offline evaluation gave them
    stand_in = ws.registry.read_file(other, MODEL)

    def with_int8(files: Mapping[str, bytes], version: int) -> dict[str, bytes]:
        meta = json.loads(files[METADATA])
        meta["version"] = version
        meta["files"][INT8] = hashlib.sha256(stand_in).hexdigest()
        return {**files, INT8: stand_in, METADATA: json.dumps(meta).encode()}

    version = register_copy(ws, "pets@1", with_int8)
    staging = start_env(ws, "staging")
    try:
        result = ws.releases().deploy(f"pets@{version}", "staging", who=Identity.system("ci"))
        served = httpx.get(f"{staging.url}/v1/model").json()
    finally:
        staging.stop()
        ws.close()
    assert served["graph"] == "int8" and served["version"] == version
    certification = result.certification
    assert certification.passed, certification.reasons
    assert certification.label_mismatches == 0 and certification.images > 0


def test_the_int8_graphs_labels_are_found_a_batch_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Certification's in-process int8 labels: the same as scoring every test picture in one
    call, with at most INT8_BATCH pictures decoded at once (all 2,000 of a test split were
    held as float tensors together, about 1.2 GB at 224 px)."""
    project = served_project(tmp_path, models=1)
    ws = Workspace(project)
    try:
        model = ws.registry.resolve("pets@1")
        version = ws.catalog.resolve(f"{model.dataset}@{model.dataset_version}")
        digests = [r.sha256 for r in ws.catalog.rows(version)][:23]
        files = {name: ws.content.get(d) for name, d in model.files.items()}
        whole = Predictor(Bundle.from_files(files, prefer_int8=True)).predict(
            [ws.content.get(d) for d in digests]
        )
        sizes: list[int] = []
        predict = Predictor.predict

        def counted(self: Predictor, images: Sequence[bytes]) -> list[Prediction]:
            sizes.append(len(images))
            return predict(self, images)

        monkeypatch.setattr(certify, "INT8_BATCH", 5)
        monkeypatch.setattr(Predictor, "predict", counted)
        labels = certify._int8_labels(model, ws.content, digests)
    finally:
        ws.close()
    assert set(labels) == set(digests) and sizes == [5, 5, 5, 5, 3]
    # batches of another size may round a float sum otherwise on another CPU: only a picture
    # the model found a near tie may change its label
    for digest, p in zip(digests, whole, strict=True):
        second = sorted(p.probabilities.values())[-2]
        assert labels[digest] == p.label or p.confidence - second < 1e-3, digest
