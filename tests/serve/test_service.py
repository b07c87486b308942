"""The HTTP service over real loopback HTTP: predictions, batching, feedback, auth, hot swap,
metrics, the bad-input corpus and a full queue."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from kennel.config import Project
from kennel.db.schema import FeedbackRow, PredictionRow
from kennel.deploy.certify import bad_inputs
from kennel.serve.holder import ModelHolder, Swap
from kennel.serve.runtime import Predictor
from kennel.serve.server import RunningServer, start_in_thread
from kennel.storage import digest_key
from kennel.wiring import Workspace
from tests.helpers import jpeg, odd_files
from tests.serving import register_copy, served_project, serving_production, unloadable, wait_until


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return served_project(tmp_path_factory.mktemp("svc"), poll_s=3600)  # reload only on request


@pytest.fixture
def server(project: Project) -> Iterator[tuple[RunningServer, Workspace]]:
    with serving_production(project) as served:
        yield served


def _tokens(ws: Workspace) -> dict[str, str]:
    return {
        role: ws.tokens.create(role, f"{role}-user")[0]
        for role in ("viewer", "operator", "qa", "admin")
    }


def test_predict_raw_multipart_batch_and_model(server: tuple[RunningServer, Workspace]) -> None:
    running, ws = server
    image = jpeg(80, 60, seed=5)
    with httpx.Client(base_url=running.url) as client:
        raw = client.post("/v1/predict", content=image, headers={"content-type": "image/jpeg"})
        assert raw.status_code == 200 and raw.headers["x-model-version"] == "1"
        body = raw.json()
        assert body["label"] in ("cat", "dog") and body["model"] == {"name": "pets", "version": 1}
        assert abs(sum(body["probabilities"].values()) - 1) < 1e-5
        assert isinstance(body["pet"], bool) and 0 <= body["pet_score"] <= 1  # a judgement
        wide = jpeg(320, 180, seed=6)  # a camera frame: tiles, like every runtime
        assert client.post("/v1/predict", content=wide).json()["probabilities"] == pytest.approx(
            ws.predictor("pets@1").predict_one(wide).probabilities, abs=1e-6
        )
        multi = client.post("/v1/predict", files={"file": ("x.jpg", image, "image/jpeg")})
        assert multi.status_code == 200 and multi.json()["probabilities"] == body["probabilities"]
        two = [("file", ("x.jpg", image, "image/jpeg")), ("file", ("y.jpg", wide, "image/jpeg"))]
        refused = client.post("/v1/predict", files=two)  # the last was answered, the first lost
        assert refused.status_code == 422 and "2 'file' parts" in refused.json()["detail"]
        batch = client.post(
            "/v1/predict/batch",
            files=[
                ("files", ("a.jpg", image, "image/jpeg")),
                ("files", ("b.txt", b"not an image", "text/plain")),
            ],
        )
        results = batch.json()["results"]
        assert batch.status_code == 200 and results[0]["prediction"]["label"] == body["label"]
        assert results[1]["error"] == "invalid_image" and batch.headers["x-model-version"] == "1"
        model = client.get("/v1/model").json()
        assert model["version"] == 1 and model["labels"] == ["cat", "dog"]
        assert model["frame"]["policy"] == "tiles" and model["ood"]["method"] == "embedding"
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready").json()
        digest = ws.registry.resolve("pets@1").files["kennel-model.json"]  # the bundle's own
        assert ready == {"status": "ready", "version": 1, "model": "pets", "sha256": digest}
        metrics = client.get("/metrics").text
    assert 'kennel_requests_total{route="/v1/predict",status="200"}' in metrics
    assert (
        "kennel_batch_size_bucket" in metrics
        and 'kennel_model_version{model="pets"} 1.0' in metrics
    )
    assert "kennel_predictions_total" in metrics and "kennel_queue_depth" in metrics
    assert "kennel_no_pet_predictions_total" in metrics
    # every prediction reaches the prediction log
    assert running.service.predlog is not None and running.service.predlog.flush()
    with ws.db.session() as s:
        ids = set(s.scalars(select(PredictionRow.id)))
        row = s.get(PredictionRow, body["prediction_id"])
    assert body["prediction_id"] in ids and row is not None
    assert row.environment == "production" and row.version == 1 and row.quality["width"] == 80
    assert row.quality["pet"] == float(body["pet"])  # what monitoring counts


def test_bad_inputs_get_json_4xx_never_5xx(server: tuple[RunningServer, Workspace]) -> None:
    running, _ws = server
    cases = list(bad_inputs())
    cases.append(("oversized", {"content-type": "image/jpeg"}, b"\xff" * (11 * 1024 * 1024)))
    with httpx.Client(base_url=running.url, timeout=30) as client:
        for name, headers, data in cases:
            response = client.post("/v1/predict", content=data, headers=headers)
            assert 400 <= response.status_code < 500, (name, response.status_code)
            assert set(response.json()) == {"error", "detail"}, name
        for name, (data, reason) in odd_files().items():
            response = client.post(
                "/v1/predict", content=data, headers={"content-type": "application/octet-stream"}
            )
            if reason is None or reason.startswith("too small"):
                assert response.status_code == 200, name
            elif not data:
                assert response.status_code == 400 and response.json()["error"] == "empty_body"
            else:
                assert response.status_code == 422 and response.json()["error"] == "invalid_image"
        assert client.post("/v1/feedback", content=b"{").status_code == 401  # auth before body
        assert client.get("/v1/nope").status_code == 404
        assert (
            client.post(
                "/v1/predict/batch", content=b"x", headers={"content-type": "image/jpeg"}
            ).status_code
            == 415
        )


def test_auth_matrix_and_feedback(server: tuple[RunningServer, Workspace]) -> None:
    running, ws = server
    tokens = _tokens(ws)
    with httpx.Client(base_url=running.url) as client:
        pid = client.post(
            "/v1/predict", content=jpeg(seed=9), headers={"content-type": "image/jpeg"}
        ).json()["prediction_id"]
        routes = [
            ("/v1/feedback", {"prediction_id": pid, "label": "cat"}),
            ("/v1/admin/reload", None),
        ]
        ws.registry.set_alias("pets", "production", 2, actor="test", reason="pending swap")
        for path, body in routes:
            for header, expected in (
                (None, 401),
                ("Bearer " + tokens["viewer"], 403),
                ("Bearer kn_wrong_token", 401),
                ("Basic abc", 401),
            ):
                headers = {"authorization": header} if header else {}
                response = client.post(path, json=body, headers=headers)
                assert response.status_code == expected, (path, header, response.text)
                assert response.json()["error"] in ("unauthorized", "forbidden")
        # nothing changed: no feedback row, no swap
        with ws.db.session() as s:
            assert s.scalar(select(func.count()).select_from(FeedbackRow)) == 0
        assert client.get("/v1/model").json()["version"] == 1
        ok = client.post(
            "/v1/feedback",
            json={"prediction_id": pid, "label": "dog"},
            headers={"authorization": "Bearer " + tokens["operator"]},
        )
        assert ok.status_code == 200 and ok.json()["recorded"]
        # a label may overtake its prediction's record, or name an id no service gave:
        # accepted either way, and the answer says whether the log holds the prediction
        assert running.service is not None and running.service.predlog is not None
        assert running.service.predlog.flush()
        again = client.post(
            "/v1/feedback",
            json={"prediction_id": pid, "label": "dog"},
            headers={"authorization": "Bearer " + tokens["operator"]},
        )
        assert again.json()["logged"] is True
        typo = client.post(
            "/v1/feedback",
            json={"prediction_id": pid[:-1] + ("1" if pid.endswith("0") else "0"), "label": "dog"},
            headers={"authorization": "Bearer " + tokens["operator"]},
        )
        assert typo.status_code == 200 and typo.json()["logged"] is False
        bad_label = client.post(
            "/v1/feedback",
            json={"prediction_id": pid, "label": "horse"},
            headers={"authorization": "Bearer " + tokens["qa"]},
        )
        assert bad_label.status_code == 422
        swapped = client.post(
            "/v1/admin/reload", headers={"authorization": "Bearer " + tokens["admin"]}
        )
        assert swapped.json() == {"version": 2, "swapped": True, "error": None}
    with ws.db.session() as s:
        row = s.get(FeedbackRow, pid)
    assert row is not None and row.label == "dog" and row.actor == "operator-user"


def test_corrupt_bundle_keeps_the_old_model(server: tuple[RunningServer, Workspace]) -> None:
    running, ws = server
    model = ws.registry.resolve("pets@2")
    blob = Path(ws.content.blobs.url) / digest_key(model.files["model.onnx"])
    original = blob.read_bytes()
    try:
        blob.write_bytes(b"corrupted")
        ws.registry.set_alias("pets", "production", 2, actor="test", reason="bad bundle")
        admin = {"authorization": "Bearer " + ws.tokens.create("admin", "ada")[0]}
        with httpx.Client(base_url=running.url) as client:
            refused = client.post("/v1/admin/reload", headers=admin)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == "model_unloadable"
            assert "pets@2" in refused.json()["detail"]
            assert running.service.holder.current is not None
            assert running.service.holder.current.version == 1
            assert "pets@2" in (running.service.holder.last_error or "")
            ok = client.post("/v1/predict", content=jpeg(), headers={"content-type": "image/jpeg"})
            assert ok.status_code == 200 and ok.json()["model"]["version"] == 1
            assert "kennel_model_load_failures_total 1.0" in client.get("/metrics").text
    finally:
        blob.write_bytes(original)


def _register_unloadable(ws: Workspace, like: str) -> int:
    """A new version whose every hash is right but whose model.onnx ONNX Runtime refuses."""
    return register_copy(ws, like, make=unloadable)


def _load_failures(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("kennel_model_load_failures_total "):
            return float(line.split()[1])
    raise AssertionError("no load-failure metric")


def test_unloadable_bundle_never_stops_alias_following(project: Project) -> None:
    ws = Workspace(project)
    bad = _register_unloadable(ws, "pets@2")
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="start")
    service = ws.service("production")
    service.holder.poll_s = 0.1
    running = start_in_thread(service)
    operator = {"authorization": "Bearer " + ws.tokens.create("operator", "olga")[0]}
    image = jpeg(64, 64, seed=2)
    try:
        with httpx.Client(base_url=running.url) as client:
            assert client.get("/v1/model").json()["version"] == 1
            ws.registry.set_alias("pets", "production", bad, actor="test", reason="unloadable")
            wait_until(lambda: _load_failures(client) >= 1, timeout=10)
            assert f"pets@{bad}" in (service.holder.last_error or "")
            answer = client.post("/v1/predict", content=image)
            assert answer.status_code == 200 and answer.json()["model"]["version"] == 1
            refused = client.post("/v1/admin/reload", headers=operator)
            assert refused.status_code == 409, refused.text
            body = refused.json()
            assert body["error"] == "model_unloadable" and f"pets@{bad}" in body["detail"]
            assert _load_failures(client) >= 2  # the explicit reload tried again and counted
            assert client.get("/health/ready").json()["version"] == 1
            # the poll thread is alive: the next good release is followed within a few polls
            ws.registry.set_alias("pets", "production", 2, actor="test", reason="good again")
            moved = time.monotonic()
            wait_until(lambda: client.get("/v1/model").json()["version"] == 2, timeout=10)
            assert time.monotonic() - moved < 5
            answer = client.post("/v1/predict", content=image)
            assert answer.status_code == 200 and answer.json()["model"]["version"] == 2
            assert service.holder.last_error is None
    finally:
        running.stop()
        ws.close()


def test_rollback_and_the_staged_release_swap_without_loading(project: Project) -> None:
    """Replicas follow a move within serve.poll_s only if swapping costs no load: the version
    served before and the one staging holds (the next release) are already loaded."""
    ws = Workspace(project)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="start")
    ws.registry.set_alias("pets", "staging", 2, actor="test", reason="next release")
    holder = ModelHolder.following(ws.registry, project.config, "production")
    loads: list[int] = []
    load = holder.load

    def counted(version: int) -> Predictor:
        loads.append(version)
        return load(version)

    holder.load = counted  # type: ignore[method-assign]
    try:
        assert holder.poll() == Swap(None, 1)
        assert loads == [1, 2]  # the staged version is loaded ahead, in the poll thread
        for old, new in ((1, 2), (2, 1), (1, 2)):  # release, rollback, release again
            ws.registry.set_alias("pets", "production", new, actor="test", reason="move")
            assert holder.poll() == Swap(old, new)
        assert loads == [1, 2]
        staging = ModelHolder.following(ws.registry, project.config, "staging")
        assert staging.warm is None  # staging has nothing ahead of it to load
    finally:
        ws.registry.set_alias("pets", "staging", None, actor="test", reason="clean up")
        ws.close()


def test_full_queue_answers_503_at_once(project: Project) -> None:
    ws = Workspace(project)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="queue test")
    service = ws.service("production")
    # kennel.yaml's serve section is frozen: the service takes a changed copy
    service.settings = service.settings.model_copy(update={"queue_size": 1, "max_batch": 1})
    gate = threading.Event()
    running = start_in_thread(service)
    try:
        assert service.batcher is not None
        original = service.batcher.run

        def slow(items):  # type: ignore[no-untyped-def]
            gate.wait(10)
            return original(items)

        service.batcher.run = slow
        buf = io.BytesIO()
        Image.new("RGB", (40, 40)).save(buf, "PNG")
        # A request announced as on its way keeps every batch off the event loop: a lone one
        # runs inline there, and the held model would then stall the loop itself, answering
        # nobody (not even with 503) until the gate timed out.
        with (
            service.batcher.announce(),
            httpx.Client(base_url=running.url, timeout=30) as client,
            ThreadPoolExecutor(8) as pool,
        ):
            futures = [
                pool.submit(
                    client.post,
                    "/v1/predict",
                    content=buf.getvalue(),
                    headers={"content-type": "image/png"},
                )
                for _ in range(8)
            ]
            wait_until(lambda: sum(f.done() for f in futures) >= 6)
            gate.set()
            responses = [f.result() for f in futures]
        codes = sorted(r.status_code for r in responses)
        assert 503 in codes and set(codes) <= {200, 503}
        rejected = next(r for r in responses if r.status_code == 503)
        assert rejected.headers["retry-after"] == "1" and rejected.json()["error"] == "overloaded"
    finally:
        gate.set()
        running.stop()
        ws.close()


def test_api_docs_pages_load_nothing_from_outside(server: tuple[RunningServer, Workspace]) -> None:
    import re

    running, _ws = server
    with httpx.Client(base_url=running.url) as client:
        for page in ("/docs", "/redoc"):
            answer = client.get(page)
            assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
            urls = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', answer.text)
            urls += re.findall(r'url:\s*["\']([^"\']+)', answer.text)
            assert urls and all(u.startswith("/") for u in urls), urls  # no CDN, no fonts
            if page == "/docs":  # no validator badge fetched from swagger.io on any host
                assert '"validatorUrl": null' in answer.text, answer.text
            for url in urls:
                asset = client.get(url)
                assert asset.status_code == 200 and len(asset.content) > 100, url
        assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_feedback_checks_the_token_first_and_bounds_its_body(
    server: tuple[RunningServer, Workspace],
) -> None:
    import socket

    import psutil

    running, ws = server
    token = _tokens(ws)["operator"]
    host, port = running.url.removeprefix("http://").split(":")
    before = psutil.Process().memory_info().rss

    def post(headers: str, body_mb: int) -> bytes:
        """A chunked body of ``body_mb`` MB sent as fast as the server takes it."""
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            head = (
                "POST /v1/feedback HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                f"\r\nTransfer-Encoding: chunked\r\n{headers}\r\n"
            )
            sock.sendall(head.encode())
            chunk = b"a" * 65536
            try:
                for _ in range(body_mb * 16):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server answered and closed before the body was done
            return sock.recv(4096)

    assert b" 401 " in post("", 50).split(b"\r\n")[0]  # no token: refused, body unread
    answer = post(f"Authorization: Bearer {token}\r\n", 50)
    assert b" 413 " in answer.split(b"\r\n")[0] and b"too_large" in answer
    assert psutil.Process().memory_info().rss - before < 100 * 1024 * 1024
    with httpx.Client(base_url=running.url) as client:  # a normal, small body still works
        bad = client.post("/v1/feedback", json={"prediction_id": "x"},
                          headers={"authorization": f"Bearer {token}"})  # fmt: skip
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_request"


def test_raw_image_route_answers_as_the_fastapi_route(
    server: tuple[RunningServer, Workspace],
) -> None:
    """Raw image bodies are answered ahead of FastAPI (``routes.raw_predict``); multipart goes
    through the FastAPI route. Both give the same JSON, headers, errors and metrics."""
    running, ws = server
    image = jpeg(64, 48, seed=11)
    limit = running.service.settings.max_upload_bytes if running.service else 0

    def both(data: bytes, content_type: str = "image/jpeg") -> tuple[httpx.Response, ...]:
        raw = client.post("/v1/predict", content=data, headers={"content-type": content_type})
        form = client.post("/v1/predict", files={"file": ("x.jpg", data, content_type)})
        return raw, form

    with httpx.Client(base_url=running.url, timeout=30) as client:
        raw, form = both(image)
        assert raw.status_code == form.status_code == 200
        a, b = raw.json(), form.json()
        assert a.keys() == b.keys() and a["prediction_id"] != b["prediction_id"]
        for key in ("label", "probabilities", "pet", "pet_score", "model", "confidence"):
            assert a[key] == b[key], key
        for header in ("content-type", "x-model-version"):
            assert raw.headers[header] == form.headers[header], header
        assert int(raw.headers["content-length"]) == len(raw.content)
        # the same errors, as the same JSON
        for data in (b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 64):
            raw, form = both(data)
            assert raw.status_code == form.status_code and raw.status_code in (400, 422)
            assert raw.json() == form.json() and set(raw.json()) == {"error", "detail"}
        big = b"\xff" * (limit + 1)
        raw, form = both(big)
        assert raw.status_code == 413 and raw.json()["error"] == "too_large"
        assert form.status_code == 413 and form.json() == raw.json()

        # without Content-Length (chunked): refused as the bytes arrive, not after
        def chunks() -> Iterator[bytes]:
            for _ in range(limit // 65536 + 2):
                yield b"\xff" * 65536

        chunked = client.post(
            "/v1/predict", content=chunks(), headers={"content-type": "image/jpeg"}
        )
        assert chunked.status_code == 413 and chunked.json()["error"] == "too_large"
        # what the raw route passes on is the FastAPI route's, unchanged
        text = client.post("/v1/predict", content=b"x", headers={"content-type": "text/plain"})
        assert text.status_code == 415 and text.json()["error"] == "unsupported_media_type"
        assert client.get("/v1/predict").status_code == 405
        # media types are case-insensitive: both ways in took only lower case (a 415)
        shouted = client.post("/v1/predict", content=image, headers={"content-type": "IMAGE/JPEG"})
        assert shouted.status_code == 200, shouted.text
        boundary = "b0undary"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"'
                f"\r\nContent-Type: image/jpeg\r\n\r\n"
            ).encode()
            + image
            + f"\r\n--{boundary}--\r\n".encode()
        )
        for kind in ("Multipart/Form-Data", "MULTIPART/FORM-DATA"):
            headers = {"content-type": f"{kind}; boundary={boundary}"}
            answer = client.post("/v1/predict", content=body, headers=headers)
            assert answer.status_code == 200, (kind, answer.text)
            batch = client.post("/v1/predict/batch", content=body.replace(
                b'name="file"', b'name="files"'), headers=headers)  # fmt: skip
            assert batch.status_code == 200, (kind, batch.text)
        assert client.post("/v1/predict/", content=image).status_code in (307, 404)
        source = client.post(
            "/v1/predict",
            content=image,
            headers={"content-type": "image/jpeg", "x-kennel-source": "camera-7"},
        )
        assert source.status_code == 200
        metrics = client.get("/metrics").text
        schema = client.get("/openapi.json").json()
    assert 'kennel_requests_total{route="/v1/predict",status="413"}' in metrics
    assert 'kennel_requests_total{route="/v1/predict",status="422"}' in metrics
    assert "image/jpeg" in schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert running.service is not None and running.service.predlog is not None
    assert running.service.predlog.flush()
    with ws.db.session() as s:
        row = s.get(PredictionRow, source.json()["prediction_id"])
    assert row is not None and row.source == "camera-7"


def test_a_service_whose_alias_names_nothing_says_so(project: Project) -> None:
    """An environment nothing was released to yet answered "cannot be loaded (see the service
    log)", and the log held nothing above info level."""
    ws = Workspace(project)
    ws.registry.set_alias("pets", "production", None, actor="test", reason="nothing yet")
    running = start_in_thread(ws.service("production"))
    try:
        with httpx.Client(base_url=running.url) as client:
            ready = client.get("/health/ready")
            predicted = client.post(
                "/v1/predict", content=jpeg(32, 32, seed=1), headers={"content-type": "image/jpeg"}
            )
        said = "no model version is released to this environment yet (alias 'production'"
        assert ready.status_code == 503 and said in ready.json()["detail"], ready.text
        assert predicted.status_code == 503 and said in predicted.json()["detail"]
    finally:
        running.stop()
        ws.registry.set_alias("pets", "production", 1, actor="test", reason="back")
        ws.close()


def test_a_deploy_never_takes_another_projects_service_for_its_own(
    server: tuple[RunningServer, Workspace],
) -> None:
    """``kennel deploy`` waits for its environment's port to serve the version it deployed;
    it compared the version number only, so another project's service on that port (the
    default model name is the same in every project) could be certified in its place."""
    import dataclasses

    from kennel.deploy.environments import wait_for_version
    from kennel.errors import ServiceError

    running, ws = server
    ours = ws.registry.resolve("pets@1")

    def bundle_of(version: int) -> str | None:
        return ws.registry.resolve(f"pets@{version}").files["kennel-model.json"]

    wait_for_version(running.url, 1, timeout=5, model=ours, bundle_of=bundle_of)  # its own
    # while it still serves 1, a deploy of 2 waits for it to move, as a deploy does
    with pytest.raises(ServiceError, match="did not start serving version 2"):
        wait_for_version(running.url, 2, timeout=1, model=ours, bundle_of=bundle_of)
    renamed = dataclasses.replace(ours, name="birds")
    for stranger, theirs in (
        (renamed, bundle_of),
        # the same name and version, the same ONNX bytes even, registered in another project
        (ours, lambda _version: "0" * 64),
        (ours, lambda _version: None),  # a version this project does not have
    ):
        began = time.monotonic()
        with pytest.raises(ServiceError, match="is held by another service"):
            wait_for_version(running.url, 1, timeout=30, model=stranger, bundle_of=theirs)
        assert time.monotonic() - began < 5  # at once, not after the timeout
    # a service that reports no digest (another project's older kennel) is not taken for ours
    from kennel.deploy.environments import check_owner, served

    body = served(running.url)
    assert body is not None
    check_owner(running.url, body, ours, bundle_of)  # its own: nothing said
    for stripped in ({**body, "sha256": None}, {k: v for k, v in body.items() if k != "model"}):
        with pytest.raises(ServiceError, match="is held by another service"):
            check_owner(running.url, stripped, ours, bundle_of)


def test_the_deadline_covers_the_decode_too(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of pictures that each declare many megapixels answered after 34-99 s where
    timeout_s was 10: the deadline covered only the inference queue. A slow decode now ends
    the request with 504 at the deadline."""
    ws = Workspace(project)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="deadline test")
    service = ws.service("production")
    service.settings = service.settings.model_copy(update={"timeout_s": 1.0})
    original = Predictor.prepare

    def slow_decode(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(3.0)  # a decode of a huge declared picture
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "prepare", slow_decode)
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")  # over the inline size: a decoder thread's work
    assert len(buf.getvalue()) > 256 * 1024
    running = start_in_thread(service)
    try:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            began = time.monotonic()
            answer = client.post("/v1/predict", content=buf.getvalue(),
                                 headers={"content-type": "image/png"})  # fmt: skip
            took = time.monotonic() - began
            assert answer.status_code == 504 and answer.json()["error"] == "timeout"
            assert took < 2.5, took
            files = [("files", (f"{i}.png", buf.getvalue(), "image/png")) for i in range(4)]
            began = time.monotonic()
            batch = client.post("/v1/predict/batch", files=files)
            assert batch.status_code == 504 and time.monotonic() - began < 2.5
    finally:
        running.stop()
        ws.close()
