"""An error page is shown to any signed-in role: it never names where the project or its
artifact store lies on the server's disk (a corrupt blob's 500 did, to a viewer)."""

from __future__ import annotations

from pathlib import Path

from kennel.db.registry import RegistryStore
from kennel.storage import digest_key
from kennel.ui.app import create_app
from kennel.wiring import Workspace
from tests.conftest import make_project


def test_a_corrupt_or_missing_blob_is_said_without_the_servers_paths(tmp_path: Path) -> None:
    from tests.ui.test_origins import client_of, serving, sign_in

    ws = Workspace(make_project(tmp_path / "p"))
    try:
        digest = ws.content.put(b"an onnx file, say")
        registry = RegistryStore(ws.db)
        for files in ({"model.onnx": digest}, {"model.onnx": "e" * 64}):  # 1 corrupt, 2 missing
            registry.add_version("pets", lambda v, f=files: f, run_id=None, dataset=None,  # type: ignore[misc]
                                 dataset_version=None, metrics={}, gates_passed=True,
                                 gate_reasons=[], actor="kennel")  # fmt: skip
        blob = Path(ws.project.artifacts_url) / digest_key(digest)
        blob.chmod(0o644)
        blob.write_bytes(b"tampered")
        token, _ = ws.tokens.create("viewer", "vera")
        with serving(create_app(ws)) as url, client_of(url) as client:
            sign_in(client, token)
            for version, status, said in ((1, 500, "is corrupt in the artifact store"),
                                          (2, 404, "not found in the artifact store")):  # fmt: skip
                page = client.get(f"/models/pets/{version}/bundle.zip")
                assert page.status_code == status, page.text[:300]
                assert said in page.text
                assert str(tmp_path) not in page.text
    finally:
        ws.close()


def test_a_store_named_by_a_file_url_is_not_shown_either(tmp_path: Path) -> None:
    from tests.ui.test_origins import client_of, serving, sign_in

    store = tmp_path / "elsewhere" / "art"
    ws = Workspace(
        make_project(tmp_path / "p", sections={"store": {"artifacts_url": f"file://{store}"}})
    )
    try:
        digest = ws.content.put(b"an onnx file, say")
        RegistryStore(ws.db).add_version(
            "pets",
            lambda v: {"model.onnx": digest},
            run_id=None,
            dataset=None,
            dataset_version=None,
            metrics={},
            gates_passed=True,
            gate_reasons=[],
            actor="kennel",
        )
        blob = next(p for p in store.rglob(digest))
        blob.chmod(0o644)
        blob.write_bytes(b"tampered")
        token, _ = ws.tokens.create("viewer", "vera")
        with serving(create_app(ws)) as url, client_of(url) as client:
            sign_in(client, token)
            page = client.get("/models/pets/1/bundle.zip")
            assert page.status_code == 500 and "is corrupt in the artifact store" in page.text
            assert str(tmp_path) not in page.text
    finally:
        ws.close()
