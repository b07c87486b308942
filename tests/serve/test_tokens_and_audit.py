"""Tokens in a running service: a revocation by the CLI holds at the very next request, made-up
tokens leave nothing behind, and feedback, reload and sign-ins are audited with the token's
holder as the actor."""

from __future__ import annotations

import gc
import getpass
import json
import secrets
import tracemalloc
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from kennel.serve.server import RunningServer, start_in_thread
from kennel.wiring import Workspace
from tests.helpers import jpeg
from tests.serving import served_project

runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = served_project(tmp_path_factory.mktemp("tok"), models=1, poll_s=3600)
    ws = Workspace(project)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="start")
    ws.close()
    return project


@pytest.fixture
def running(project: Project) -> Iterator[RunningServer]:
    ws = Workspace(project)
    server = start_in_thread(ws.service("production"))
    yield server
    server.stop()
    ws.close()


def _cli(project: Project, *args: str) -> Any:
    result = runner.invoke(app, [*args, "-C", str(project.root)])
    assert result.exit_code == 0, result.output
    return result


def _token(project: Project, role: str, name: str) -> tuple[str, str]:
    out = json.loads(
        _cli(project, "token", "create", "--role", role, "--name", name, "--json").stdout
    )
    return out["token"], out["id"]


def _prediction(client: httpx.Client) -> str:
    r = client.post("/v1/predict", content=jpeg(seed=7), headers={"content-type": "image/jpeg"})
    assert r.status_code == 200
    return str(r.json()["prediction_id"])


def test_a_revoked_token_is_refused_at_the_next_request(
    project: Project, running: RunningServer
) -> None:
    token, token_id = _token(project, "operator", "ops-rita")
    with httpx.Client(base_url=running.url) as client:
        auth = {"authorization": f"Bearer {token}"}
        body = {"prediction_id": _prediction(client), "label": "cat"}
        assert client.post("/v1/feedback", json=body, headers=auth).status_code == 200
        _cli(project, "token", "revoke", token_id)  # another process's view of the database
        refused = client.post("/v1/feedback", json=body, headers=auth)
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"


def test_made_up_tokens_leave_nothing_behind(running: RunningServer) -> None:
    assert running.service is not None
    tokens = running.service.tokens
    with httpx.Client(base_url=running.url) as client:
        for _ in range(50):
            bogus = {"authorization": f"Bearer kn_{secrets.token_hex(4)}_{secrets.token_hex(16)}"}
            r = client.post("/v1/admin/reload", headers=bogus)
            assert r.status_code == 401
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(30_000):  # malformed: refused before any lookup
            assert tokens.identify(f"kn_{i:x}_bogus") is None
        for _ in range(1_500):  # well-formed: each one looked up in the database
            assert tokens.identify(f"kn_{secrets.token_hex(4)}_{secrets.token_urlsafe(24)}") is None
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 200_000, f"{grown} bytes kept after 31,500 unknown tokens"


def test_feedback_and_reload_are_audited_with_the_token_holder(
    project: Project, running: RunningServer
) -> None:
    token, token_id = _token(project, "operator", "ops-omar")
    with httpx.Client(base_url=running.url) as client:
        auth = {"authorization": f"Bearer {token}"}
        prediction_id = _prediction(client)
        body = {"prediction_id": prediction_id, "label": "dog"}
        assert client.post("/v1/feedback", json=body, headers=auth).status_code == 200
        assert client.post("/v1/admin/reload", headers=auth).status_code == 200
    log = json.loads(_cli(project, "audit", "log", "--limit", "3", "--json").stdout)
    assert [(e["action"], e["actor"], e["subject"]) for e in log[::-1]] == [
        ("token.create", f"bootstrap:{getpass.getuser()}", token_id),  # no admin token yet
        ("feedback", "ops-omar", prediction_id),
        ("service.reload", "ops-omar", "production"),
    ]
    said = log[1]["details"]
    assert said == {"label": "dog", "token": token_id, "at": said["at"]}  # and the row's time
    assert datetime.fromisoformat(said["at"]).tzinfo is not None
    assert log[0]["details"] == {"token": token_id, "version": 1, "error": None}
    verdict = json.loads(_cli(project, "audit", "verify", "--json").stdout)
    assert verdict["ok"] and verdict["anchored"] == verdict["checked"]


def test_sign_ins_are_audited_without_the_secret(project: Project) -> None:
    """The audit side of the dashboard's sign-in, ready before the dashboard exists."""
    token, token_id = _token(project, "qa", "qa-quinn")
    ws = Workspace(project)
    try:
        assert ws.tokens.login(token, via="dashboard") is not None
        assert ws.tokens.login(f"kn_{token_id}_{'x' * 32}", via="dashboard") is None
        assert ws.tokens.login("not a token", via="dashboard") is None
    finally:
        ws.close()
    log = json.loads(_cli(project, "audit", "log", "--limit", "3", "--json").stdout)
    assert [(e["action"], e["actor"], e["subject"], e["details"]) for e in log[::-1]] == [
        ("auth.login", "qa-quinn", token_id, {"via": "dashboard", "role": "qa"}),
        ("auth.login_failed", "anonymous", "dashboard", {"token": token_id}),
        ("auth.login_failed", "anonymous", "dashboard", {"token": None}),
    ]
    assert token.split("_", 2)[2] not in json.dumps(log)  # the secret may hold "_" too
